//! Measures how long `Store::open` takes on a store of N recordings (default 10,000).
//!
//! Writes N real recordings through `Store::add` (64 channels x 16 samples each, 20 annotations),
//! then opens the store several times and prints the best and median wall time.
//!
//! `cargo run --release -p neurofm-data --example open_large_store -- [N] [DIR]`

use std::time::Instant;

use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};
use neurofm_data::{NewEntry, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("neurofm-open-bench-{}", std::process::id())),
    };
    if !dir.join("manifest.json").exists() {
        let t = Instant::now();
        let mut store = Store::create(&dir)?;
        store.set_commit_every(usize::MAX, std::time::Duration::from_secs(3600));
        let chans: Vec<ChannelInfo> = (0..64)
            .map(|i| ChannelInfo::new(format!("EEG{i:03}"), ChannelKind::Eeg, Unit::Volt))
            .collect();
        for k in 0..n {
            let mut info = Info::new(Modality::Eeg, 256.0, chans.clone());
            info.subject = Some(format!("{:05}", k / 4));
            info.run = Some(format!("{}", k % 4));
            info.provenance.source_path = format!("/data/rec{k}.edf");
            info.provenance.source_sha256 = format!("{k:064x}");
            let ann = (0..20)
                .map(|j| Annotation {
                    onset_s: j as f64 * 0.01,
                    duration_s: 0.0,
                    description: format!("T{}", j % 3),
                })
                .collect();
            let rec = Recording::new(info, Signal::channels(64, 16, vec![0.0; 64 * 16])?, ann)?;
            store.add(&rec, NewEntry::default())?;
        }
        store.commit()?;
        eprintln!("wrote {n} recordings in {:.1} s", t.elapsed().as_secs_f64());
    }
    let manifest_bytes = std::fs::metadata(dir.join("manifest.json"))?.len();
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let s = Store::open(&dir)?;
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(s.len(), n);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "Store::open of {n} recordings (manifest {:.1} MiB): best {:.3} s, median {:.3} s",
        manifest_bytes as f64 / (1 << 20) as f64,
        times[0],
        times[times.len() / 2]
    );
    Ok(())
}
