//! Reads every sample of the given recordings (benchmarks, memory checks).
//!
//! `cargo run --release -p neurofm-io --example read_all -- [--jobs N] [--block-seconds S] FILE...`
//!
//! Without `--block-seconds` each file is read whole (`open_raw` + `read_all`: header,
//! annotations, provenance sha256, every sample in SI units as f32); with it, the file is read
//! through the segment API in blocks of S seconds into one reused buffer (bounded memory) and the
//! data is discarded. `--jobs N` reads up to N files at a time (default 1: one file after the
//! other; each file's own read already uses the rayon pool). Prints files, channels, samples, a
//! checksum and the wall time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use neurofm_io::open_raw;
use rayon::prelude::*;

/// What one file contributed: channels, samples, checksum.
type Tally = (usize, u64, f64);

fn read_one(f: &Path, block_s: Option<f64>) -> Result<Tally, String> {
    let mut r = open_raw(f).map_err(|e| e.to_string())?;
    // `n_channels`, not `info()`: `info()` would compute the provenance hash up front, where
    // `read_all` computes it beside the decode from the bytes it has read anyway.
    let nc = r.n_channels();
    let n = r.n_times();
    let mut checksum = 0f64;
    match block_s {
        None => {
            let rec = r.read_all().map_err(|e| e.to_string())?;
            // every 997th sample: enough to tell runs apart, cheap next to the read
            checksum += rec
                .signal
                .data()
                .iter()
                .step_by(997)
                .map(|&v| v as f64)
                .sum::<f64>();
        }
        Some(s) => {
            let block = ((s * r.info().sfreq_hz).round() as usize).max(1);
            let mut buf = vec![0f32; nc * block];
            let mut start = 0;
            while start < n {
                let stop = (start + block).min(n);
                let out = &mut buf[..nc * (stop - start)];
                r.read_segment(start, stop, out)
                    .map_err(|e| e.to_string())?;
                checksum += out.first().map(|&v| v as f64).unwrap_or(0.0);
                start = stop;
            }
            r.finish().map_err(|e| e.to_string())?;
        }
    }
    Ok((nc, (nc * n) as u64, checksum))
}

fn main() -> ExitCode {
    // as the neurofm CLI does: reuse the memory of one file's buffers for the next
    neurofm_core::allocator::keep_freed_memory();
    let mut block_s: Option<f64> = None;
    let mut jobs = 1usize;
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
        } else if a == "--jobs" {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0 => jobs = v,
                _ => {
                    eprintln!("--jobs needs a positive integer");
                    return ExitCode::from(2);
                }
            }
        } else {
            files.push(PathBuf::from(a));
        }
    }
    if files.is_empty() {
        eprintln!("usage: read_all [--jobs N] [--block-seconds S] FILE...");
        return ExitCode::from(2);
    }
    let t0 = Instant::now();
    let results: Vec<Result<Tally, String>> = if jobs == 1 {
        files.iter().map(|f| read_one(f, block_s)).collect()
    } else {
        match rayon::ThreadPoolBuilder::new().num_threads(jobs).build() {
            Ok(pool) => pool.install(|| files.par_iter().map(|f| read_one(f, block_s)).collect()),
            Err(e) => {
                eprintln!("error: thread pool: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let (mut samples, mut checksum, mut channels) = (0u64, 0f64, 0usize);
    for r in results {
        match r {
            Ok((nc, n, c)) => {
                channels += nc;
                samples += n;
                checksum += c;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "files={} channels={channels} samples={samples} checksum={checksum:e} seconds={dt:.4}",
        files.len()
    );
    ExitCode::SUCCESS
}
