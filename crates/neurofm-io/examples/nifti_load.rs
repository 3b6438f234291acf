//! Times loading NIfTI files into memory (`open` + `read_all`: header, sha256 of the file for
//! provenance, decompression, scaling, transpose to `[t, x, y, z]` f32).
//!
//! ```text
//! cargo run --release -p neurofm-io --example nifti_load -- REPEATS FILE...
//! ```
//! Prints one line per file: `file <TAB> median_ms <TAB> min_ms <TAB> voxels`.

use std::path::Path;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let reps: usize = match args.next().and_then(|a| a.parse().ok()) {
        Some(r) if r > 0 => r,
        _ => {
            eprintln!("usage: nifti_load REPEATS FILE...");
            std::process::exit(2);
        }
    };
    for f in args {
        let mut times = Vec::with_capacity(reps);
        let mut n = 0;
        for _ in 0..reps {
            let t0 = Instant::now();
            match neurofm_io::read_recording(Path::new(&f)) {
                Ok(rec) => n = rec.signal.data().len(),
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            }
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("{f}\t{:.3}\t{:.3}\t{n}", times[reps / 2], times[0]);
    }
}
