//! GFLOP/s of the base MAE's twelve linear-layer products (4096 rows: forward `x W^T`, `dx = g W`
//! and `dW = g^T x` of qkv, proj, fc1 and fc2) with `matrixmultiply` and with the `gemm` crate
//! (what the fused kernels use), both under the same split: the rows of the output in one block
//! per rayon thread, one single-threaded product per block.
//!
//!     cargo run --release -p neurofm-models --example matmul_shapes
//!
//! Prints one line per shape and the sums over the twelve (medians of 20 timed calls each), then
//! the attention's per-head products (one single-threaded product per thread at once).

use rayon::prelude::*;
use std::time::Instant;

#[derive(Clone, Copy)]
enum Lib {
    Matrixmultiply,
    Gemm,
}

/// A row-major `m x n` output `dst = lhs (m x k) rhs (k x n)`, operands given by pointer and
/// (row, column) strides, split into one block of rows per rayon thread.
#[allow(clippy::too_many_arguments)]
fn product(
    lib: Lib,
    blocks: usize,
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    lhs: &[f32],
    (lrs, lcs): (usize, usize),
    rhs: &[f32],
    (rrs, rcs): (usize, usize),
) {
    let block = m.div_ceil(blocks.max(1));
    dst[..m * n]
        .par_chunks_mut(block * n)
        .enumerate()
        .for_each(|(i, d)| {
            let rows = d.len() / n;
            let a = &lhs[i * block * lrs..];
            // SAFETY: rows i * block .. + rows of lhs (row stride lrs, column stride lcs, k
            // columns) and all of rhs (k x n) lie inside the slices, which are built with those
            // exact sizes in main; d is this task's own block of dst.
            unsafe {
                match lib {
                    Lib::Matrixmultiply => matrixmultiply::sgemm(
                        rows,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        lrs as isize,
                        lcs as isize,
                        rhs.as_ptr(),
                        rrs as isize,
                        rcs as isize,
                        0.0,
                        d.as_mut_ptr(),
                        n as isize,
                        1,
                    ),
                    Lib::Gemm => gemm::gemm(
                        rows,
                        n,
                        k,
                        d.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        lcs as isize,
                        lrs as isize,
                        rhs.as_ptr(),
                        rcs as isize,
                        rrs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    ),
                }
            }
        });
}

/// Median GFLOP/s of `f` over 20 calls, after 3 untimed ones.
fn gflops(flops: f64, f: &mut dyn FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<f64> = (0..20)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    flops / t[t.len() / 2] / 1e9
}

fn fill(len: usize, mul: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * mul) % 1000) as f32 / 1000.0)
        .collect()
}

fn main() {
    let r = 4096;
    let threads = rayon::current_num_threads();
    println!(
        "{} rayon threads; GFLOP/s, matrixmultiply / gemm",
        rayon::current_num_threads()
    );
    let mut sums = [0.0f64; 2];
    for (name, k, n) in [
        ("qkv", 256, 768),
        ("proj", 256, 256),
        ("fc1", 256, 1024),
        ("fc2", 1024, 256),
    ] {
        let (x, w, g) = (fill(r * k, 7919), fill(n * k, 104_729), fill(r * n, 31));
        let (mut y, mut dx, mut dw) = (vec![0f32; r * n], vec![0f32; r * k], vec![0f32; n * k]);
        let flops = 2.0 * (r * n * k) as f64;
        let mut line = format!("{name:>4}:");
        for (what, i) in [("fwd", 0), ("dx", 1), ("dW", 2)] {
            let mut rates = [0.0f64; 2];
            for (j, lib) in [Lib::Matrixmultiply, Lib::Gemm].into_iter().enumerate() {
                rates[j] = gflops(flops, &mut || match i {
                    // y (r x n) = x (r x k) W^T
                    0 => product(lib, threads, (r, n, k), &mut y, &x, (k, 1), &w, (1, k)),
                    // dx (r x k) = g (r x n) W (n x k)
                    1 => product(lib, threads, (r, k, n), &mut dx, &g, (n, 1), &w, (k, 1)),
                    // dW (n x k) = g^T (n x r) x (r x k)
                    _ => product(lib, threads, (n, k, r), &mut dw, &g, (1, n), &x, (k, 1)),
                });
                sums[j] += rates[j];
            }
            line += &format!("  {what} {:.0} / {:.0}", rates[0], rates[1]);
        }
        println!("{line}");
    }
    attention_shapes();
    println!(
        "sum over the 12 products: matrixmultiply {:.0}, gemm {:.0}",
        sums[0], sums[1]
    );
}

/// The attention's per-head products at base (L = 256, head dim 32, q/k/v rows 768 apart), each
/// single-threaded, one per rayon thread at once, as the fused attention runs them.
fn attention_shapes() {
    let (l, dh, rs) = (256usize, 32usize, 768usize);
    let x = fill(l * rs, 7919);
    let p = fill(l * l, 31);
    let threads = rayon::current_num_threads();
    let flops = 2.0 * (l * l * dh) as f64 * threads as f64;
    let mut line = String::from("attention, per head:");
    // name, (m, n, k), lhs strides, rhs strides, whether lhs is the L x L matrix (else q rows)
    let shapes = [
        ("Q K^T", (l, l, dh), (rs, 1), (1, rs), false),
        ("P V", (l, dh, l), (l, 1), (rs, 1), true),
        ("P^T dO", (l, dh, l), (1, l), (rs, 1), true),
    ];
    for (name, mnk, ls, rsd, lhs_is_p) in shapes {
        let mut rates = [0.0f64; 2];
        for (j, lib) in [Lib::Matrixmultiply, Lib::Gemm].into_iter().enumerate() {
            let mut outs: Vec<Vec<f32>> = (0..threads).map(|_| vec![0f32; mnk.0 * mnk.1]).collect();
            let lhs = if lhs_is_p { &p } else { &x };
            rates[j] = gflops(flops, &mut || {
                outs.par_iter_mut()
                    .for_each(|d| product(lib, 1, mnk, d, lhs, ls, &x, rsd))
            });
        }
        line += &format!("  {name} {:.0} / {:.0}", rates[0], rates[1]);
    }
    println!("{line}");
}
