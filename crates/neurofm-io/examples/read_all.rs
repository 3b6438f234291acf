//! Reads every sample of the given recordings (benchmarks, memory checks).
//!
//! `cargo run --release -p neurofm-io --example read_all -- [--block-seconds S] FILE...`
//!
//! Without `--block-seconds` each file is read whole (`read_all`); with it, the file is read
//! through the segment API in blocks of S seconds into one reused buffer (bounded memory) and the
//! data is discarded. Prints files, channels, samples, a checksum and the wall time.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use neurofm_io::open_raw;

fn main() -> ExitCode {
    let mut block_s: Option<f64> = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--block-seconds" {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0.0 => block_s = Some(v),
                _ => {
                    eprintln!("--block-seconds needs a positive number");
                    return ExitCode::from(2);
                }
            }
        } else {
            files.push(PathBuf::from(a));
        }
    }
    if files.is_empty() {
        eprintln!("usage: read_all [--block-seconds S] FILE...");
        return ExitCode::from(2);
    }
    let t0 = Instant::now();
    let (mut samples, mut checksum) = (0u64, 0f64);
    let mut channels = 0usize;
    for f in &files {
        let mut r = match open_raw(f) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let nc = r.info().n_channels();
        let n = r.n_times();
        channels += nc;
        match block_s {
            None => match r.read_all() {
                Ok(rec) => {
                    // every 997th sample: enough to tell runs apart, cheap next to the read
                    checksum += rec
                        .signal
                        .data()
                        .iter()
                        .step_by(997)
                        .map(|&v| v as f64)
                        .sum::<f64>();
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            Some(s) => {
                let block = ((s * r.info().sfreq_hz).round() as usize).max(1);
                let mut buf = vec![0f32; nc * block];
                let mut start = 0;
                while start < n {
                    let stop = (start + block).min(n);
                    let out = &mut buf[..nc * (stop - start)];
                    if let Err(e) = r.read_segment(start, stop, out) {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                    checksum += out.first().map(|&v| v as f64).unwrap_or(0.0);
                    start = stop;
                }
            }
        }
        samples += (nc * n) as u64;
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "files={} channels={channels} samples={samples} checksum={checksum:e} seconds={dt:.4}",
        files.len()
    );
    ExitCode::SUCCESS
}
