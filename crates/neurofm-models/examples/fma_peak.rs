//! Measures the f32 fused-multiply-add peak of this CPU: every thread runs independent FMA
//! chains in registers (AVX-512 when the CPU has it, else AVX2 + FMA, else scalar).
//!
//! ```text
//! cargo run --release -p neurofm-models --example fma_peak -- [--threads N] [--seconds S]
//! ```
//!
//! Prints one JSON line: `{"peak_gflops": ..., "isa": ..., "threads": ...}`. The best of
//! several rounds is reported (a peak, not a typical value). Default threads: all logical CPUs.

use std::time::Instant;

/// Accumulators per thread: enough independent chains to cover FMA latency × ports.
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// `iters` rounds of `CHAINS` 16-wide FMAs; returns a value that depends on all of them.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: u64) -> f32 {
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-6);
        let mut acc = [_mm512_set1_ps(0.5); CHAINS];
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm512_fmadd_ps(*r, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for r in acc {
            s = _mm512_add_ps(s, r);
        }
        _mm512_reduce_add_ps(s)
    }

    /// Same with 8-wide AVX2 FMAs.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: u64) -> f32 {
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-6);
        let mut acc = [_mm256_set1_ps(0.5); CHAINS];
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm256_fmadd_ps(*r, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for r in acc {
            s = _mm256_add_ps(s, r);
        }
        let mut out = [0f32; 8];
        // SAFETY: `out` holds 8 f32, the unaligned store writes exactly 8.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }
}

/// One thread's work: returns (flops done, a checksum that keeps the loop alive).
fn run(isa: &str, iters: u64) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == "avx512" {
            // SAFETY: only chosen when the CPU reports avx512f.
            let v = unsafe { x86::avx512(iters) };
            return ((iters * CHAINS as u64 * 16 * 2) as f64, v);
        }
        if isa == "avx2" {
            // SAFETY: only chosen when the CPU reports avx2 and fma.
            let v = unsafe { x86::avx2(iters) };
            return ((iters * CHAINS as u64 * 8 * 2) as f64, v);
        }
    }
    let _ = isa;
    let mut acc = [0.5f32; CHAINS];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = r.mul_add(0.999_999, 1e-6);
        }
    }
    ((iters * CHAINS as u64 * 2) as f64, acc.iter().sum())
}

fn detect() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2";
        }
    }
    "scalar"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut seconds = 0.5f64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--threads" => threads = v.parse()?,
            "--seconds" => seconds = v.parse()?,
            _ => return Err(format!("unknown argument {flag} (--threads N, --seconds S)").into()),
        }
    }
    let isa = detect();
    // Calibrate the iteration count to about `seconds` per round on one thread.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(run(isa, iters));
        if t.elapsed().as_secs_f64() > 0.05 || iters > 1 << 40 {
            let per = t.elapsed().as_secs_f64() / iters as f64;
            iters = ((seconds / per) as u64).max(1);
            break;
        }
        iters *= 4;
    }
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let flops: f64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || std::hint::black_box(run(isa, iters))))
                .collect();
            hs.into_iter()
                .map(|h| h.join().map_or(0.0, |(f, _)| f))
                .sum()
        });
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    println!(
        "{}",
        serde_json::json!({"peak_gflops": best, "isa": isa, "threads": threads})
    );
    Ok(())
}
