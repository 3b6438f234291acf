//! Helpers shared by the BrainVision / EEGLAB / FIF / BIDS integration tests: where the shared
//! real recordings live, a comparison against the golden JSONs written by MNE, and the common
//! reader checks (lazy segment reads equal the full read).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use neurofm_core::{ChannelKind, Recording, Signal};
use neurofm_io::RawReader;

/// `$NEUROFM_SHARED`, else `<repo root>/../shared`.
pub fn shared_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("NEUROFM_SHARED") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// A shared data file; panics with a clear message when the shared folder is absent (CI has it).
pub fn shared_file(rel: &str) -> PathBuf {
    let p = shared_dir().join("data").join(rel);
    assert!(
        p.exists(),
        "{} not found: set NEUROFM_SHARED or put shared/ beside the repository",
        p.display()
    );
    p
}

pub fn golden(rel: &str) -> serde_json::Value {
    let p = shared_dir()
        .join("golden")
        .join(format!("{}.json", rel.replace('/', "__")));
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("cannot read golden {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad golden {}: {e}", p.display()))
}

/// MNE's channel type name for a kind.
pub fn mne_type(k: ChannelKind) -> &'static str {
    match k {
        ChannelKind::Eeg => "eeg",
        ChannelKind::Eog => "eog",
        ChannelKind::Ecg => "ecg",
        ChannelKind::Emg => "emg",
        ChannelKind::MegMag => "mag",
        ChannelKind::MegGrad => "grad",
        ChannelKind::MegRef => "ref_meg",
        ChannelKind::Stim => "stim",
        ChannelKind::Resp => "resp",
        ChannelKind::Seeg => "seeg",
        ChannelKind::Ecog => "ecog",
        ChannelKind::Roi => "roi",
        ChannelKind::Neuron => "neuron",
        ChannelKind::Misc => "misc",
    }
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Compares a recording with a golden JSON: sfreq, channel names/types/units, n_times,
/// annotations and per-channel first5/mean/std/min/max (relative error ≤ 1e-5 of the
/// channel's range, or float32 resolution of the value for near-constant channels).
pub fn compare_with_golden(rec: &Recording, g: &serde_json::Value) {
    let file = g["file"].as_str().unwrap_or("?");
    assert!(
        (rec.info.sfreq_hz - f(&g["sfreq"])).abs() < 1e-9 * f(&g["sfreq"]),
        "{file}: sfreq {} vs {}",
        rec.info.sfreq_hz,
        g["sfreq"]
    );
    let chans = g["channels"].as_array().expect("channels");
    assert_eq!(rec.info.channels.len(), chans.len(), "{file}: n_channels");
    for (c, gc) in rec.info.channels.iter().zip(chans) {
        assert_eq!(
            c.name,
            gc["name"].as_str().unwrap_or(""),
            "{file}: channel name"
        );
        assert_eq!(
            mne_type(c.kind),
            gc["type"].as_str().unwrap_or(""),
            "{file}: type of {}",
            c.name
        );
        assert_eq!(
            c.unit.as_str(),
            gc["unit"].as_str().unwrap_or(""),
            "{file}: unit of {}",
            c.name
        );
    }
    let bads: Vec<&str> = g["bads"]
        .as_array()
        .map_or(vec![], |b| b.iter().filter_map(|x| x.as_str()).collect());
    let ours: Vec<&str> = rec
        .info
        .channels
        .iter()
        .filter(|c| c.bad)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(ours, bads, "{file}: bads");
    let n = rec.signal.n_times();
    assert_eq!(
        n as u64,
        g["n_times"].as_u64().expect("n_times"),
        "{file}: n_times"
    );

    let ga = g["annotations"].as_array().expect("annotations");
    assert_eq!(
        rec.annotations.len(),
        ga.len(),
        "{file}: number of annotations"
    );
    for (a, ga) in rec.annotations.iter().zip(ga) {
        assert!(
            (a.onset_s - f(&ga["onset"])).abs() < 1e-6,
            "{file}: onset {} vs {}",
            a.onset_s,
            ga["onset"]
        );
        assert!(
            (a.duration_s - f(&ga["duration"])).abs() < 1e-6,
            "{file}: duration {} vs {}",
            a.duration_s,
            ga["duration"]
        );
        assert_eq!(
            a.description,
            ga["description"].as_str().unwrap_or(""),
            "{file}: description"
        );
    }

    let Signal::Channels {
        data, n_samples, ..
    } = &rec.signal
    else {
        panic!("{file}: not a channel signal");
    };
    let d = &g["data_si"];
    for (ci, c) in rec.info.channels.iter().enumerate() {
        let row = &data[ci * n_samples..(ci + 1) * n_samples];
        let gmin = f(&d["min"][ci]);
        let gmax = f(&d["max"][ci]);
        let range = gmax - gmin;
        // float32 storage cannot do better than its resolution at the channel's magnitude.
        let magnitude = gmin.abs().max(gmax.abs());
        let tol = |_v: f64| {
            (1e-5 * range)
                .max(2.0 * f32::EPSILON as f64 * magnitude)
                .max(1e-30)
        };
        let check = |what: &str, ours: f64, theirs: f64| {
            assert!(
                (ours - theirs).abs() <= tol(theirs),
                "{file}: channel {} {what}: ours {ours} vs golden {theirs} (range {range})",
                c.name
            );
        };
        let first5 = d["first5"][ci].as_array().expect("first5");
        for (k, v) in first5.iter().enumerate() {
            check(&format!("first5[{k}]"), row[k] as f64, f(v));
        }
        let mean = row.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let min = row.iter().fold(f64::INFINITY, |m, &x| m.min(x as f64));
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        check("mean", mean, f(&d["mean"][ci]));
        check("std", var.sqrt(), f(&d["std"][ci]));
        check("min", min, gmin);
        check("max", max, gmax);
    }
}

/// The shared reader contract: reading in pieces equals reading at once; bad segment requests
/// are errors; annotations lie inside the recording; provenance is filled in.
pub fn check_reader(reader: &mut dyn RawReader) -> Recording {
    let rec = reader.read_all().expect("read_all");
    let n = reader.n_times();
    let nc = reader.info().n_channels();
    assert_eq!(rec.signal.shape(), vec![nc, n]);
    assert!(!reader.info().provenance.source_sha256.is_empty());
    assert!(!reader.info().provenance.reader.is_empty());
    // Lazy reads in 3 uneven pieces.
    let cuts = [0, n / 3, n / 3 + n / 5 + 1, n];
    for w in cuts.windows(2) {
        let (a, b) = (w[0].min(n), w[1].min(n));
        if a > b {
            continue;
        }
        let mut out = vec![0f32; nc * (b - a)];
        reader.read_segment(a, b, &mut out).expect("read_segment");
        for c in 0..nc {
            let full = &rec.signal.channel(c).expect("channel")[a..b];
            let part = &out[c * (b - a)..(c + 1) * (b - a)];
            assert!(
                full.iter()
                    .zip(part)
                    .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())),
                "segment [{a},{b}) differs from the full read on channel {c}"
            );
        }
    }
    let mut out = vec![0f32; nc];
    assert!(
        reader.read_segment(n, n + 1, &mut out).is_err(),
        "segment past the end must fail"
    );
    let mut small = vec![0f32; 1];
    if n > 0 && nc > 1 {
        assert!(
            reader.read_segment(0, 1, &mut small).is_err(),
            "wrong buffer size must fail"
        );
    }
    let dur = n as f64 / reader.info().sfreq_hz;
    for a in reader.annotations() {
        assert!(
            a.onset_s >= -1e-9 && a.onset_s <= dur + 1e-9,
            "annotation outside: {a:?}"
        );
    }
    rec
}
