//! GFLOP/s of the base MAE's twelve linear-layer products (4096 rows: forward `x W^T`, `dx = g W`
//! and `dW = g^T x` of qkv, proj, fc1 and fc2) with `matrixmultiply` (what the fused kernels
//! use) and with the `gemm` crate (what they used before), both under the same split: the rows
//! of the output in one block per rayon thread, one single-threaded product per block.
//!
//!     cargo run --release -p neurofm-models --example matmul_shapes
//!
//! Prints one line per shape and the sums over the twelve (medians of 20 timed calls each).

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
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    lhs: &[f32],
    (lrs, lcs): (usize, usize),
    rhs: &[f32],
    (rrs, rcs): (usize, usize),
) {
    let block = m.div_ceil(rayon::current_num_threads().max(1));
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
                    0 => product(lib, (r, n, k), &mut y, &x, (k, 1), &w, (1, k)),
                    // dx (r x k) = g (r x n) W (n x k)
                    1 => product(lib, (r, k, n), &mut dx, &g, (n, 1), &w, (k, 1)),
                    // dW (n x k) = g^T (n x r) x (r x k)
                    _ => product(lib, (n, k, r), &mut dw, &g, (1, n), &x, (k, 1)),
                });
                sums[j] += rates[j];
            }
            line += &format!("  {what} {:.0} / {:.0}", rates[0], rates[1]);
        }
        println!("{line}");
    }
    println!(
        "sum over the 12 products: matrixmultiply {:.0}, gemm {:.0}",
        sums[0], sums[1]
    );
}
