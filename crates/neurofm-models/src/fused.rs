//! Fused CPU kernels with a backward pass for the element-wise work of a training step.
//!
//! - [`gelu_erf`]: exact GELU `0.5 x (1 + erf(x / sqrt 2))`. candle's own `gelu_erf`
//!   backward builds the derivative from ~10 primitive ops (each a full-size temporary) with a
//!   rounded constant; here the backward is one parallel pass with the exact derivative
//!   `Phi(x) + x phi(x)`. In f32 both passes run the vectorized `erf`/`exp` of
//!   [`crate::vmath`] (erf's absolute error below 6e-7) instead of libm's scalar functions.
//! - [`linear`]: `x W^T + b` as one graph node (a bias-initialized matrix product), whose backward
//!   computes `dx`, `dW` and `db` directly: candle's `Linear` is a matmul, a transpose, a
//!   broadcast add and reshapes, and its backward pass zero-fills and adds a gradient buffer for
//!   each of them. Its products go through `par_gemm` (rows split over the rayon threads).
//! - [`masked_mse`]: the masked autoencoder's reconstruction loss as one node.
//! - [`mask_and_add`]: the masked autoencoder's token embedding (mask token, channel and time
//!   embeddings) as one node.
//!
//! Off the CPU (and under [`crate::ops::with_composed_ops`]) every op falls back to candle's
//! primitive ops, which have CUDA kernels and autograd. `tests/gradients.rs` checks both paths
//! against finite differences and against each other.

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

use crate::ops::{as_uninit_mut, build, contiguous, float_kernel, fused_on, par_zeros, Real};
use crate::vmath;
use std::mem::MaybeUninit;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

const INV_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

#[inline]
fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + candle_core::cpu::erf::erf_f64(x * INV_SQRT_2))
}

#[inline]
fn gelu_grad64(x: f64) -> f64 {
    0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x * INV_SQRT_2))
        + x * INV_SQRT_2PI * (-0.5 * x * x).exp()
}

fn gelu_vec<T: Gelu + Default + Copy + Send + Sync>(x: &[T]) -> Vec<T> {
    // SAFETY: `gelu_into` writes every element of an output as long as x.
    unsafe { build(x.len(), |out| T::gelu_into(x, out)) }
}

/// Exact GELU and its derivative on slices, for the element types of the CPU kernels: f32
/// through the vectorized `vmath` loops, f64 through libm.
pub(crate) trait Gelu: Copy + Send + Sync + Default {
    /// `out[i] = gelu(x[i])`, in parallel chunks; writes every element of `out` (panics unless
    /// the lengths match).
    fn gelu_into(x: &[Self], out: &mut [MaybeUninit<Self>]);
    /// `g[i] *= gelu'(x[i])`, in parallel chunks (panics unless the lengths match).
    fn gelu_grad_in_place(x: &[Self], g: &mut [Self]);
}

/// Runs `f` on matching `CHUNK`-sized pieces of `out` and `x`, in parallel (panics, naming
/// `what`, unless the lengths match).
fn par_chunks_zip<T: Sync, U: Send>(
    what: &str,
    x: &[T],
    out: &mut [U],
    f: impl Fn(&mut [U], &[T]) + Sync + Send,
) {
    assert_eq!(x.len(), out.len(), "{what}: lengths differ");
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| f(o, x));
}

impl Gelu for f32 {
    fn gelu_into(x: &[f32], out: &mut [MaybeUninit<f32>]) {
        par_chunks_zip("gelu", x, out, |o, x| vmath::gelu_into(x, o));
    }

    fn gelu_grad_in_place(x: &[f32], g: &mut [f32]) {
        par_chunks_zip("gelu backward", x, g, |g, x| {
            vmath::gelu_grad_in_place(x, g)
        });
    }
}

impl Gelu for f64 {
    fn gelu_into(x: &[f64], out: &mut [MaybeUninit<f64>]) {
        par_chunks_zip("gelu", x, out, |o, x| {
            o.iter_mut().zip(x).for_each(|(o, &x)| {
                o.write(gelu64(x));
            })
        });
    }

    fn gelu_grad_in_place(x: &[f64], g: &mut [f64]) {
        par_chunks_zip("gelu backward", x, g, |g, x| {
            for (g, &x) in g.iter_mut().zip(x) {
                *g *= gelu_grad64(x);
            }
        });
    }
}

#[derive(Debug, Clone, Copy)]
struct GeluOp;

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "neurofm-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(gelu_vec(contiguous(v, l, self.name())?)),
            CpuStorage::F64(v) => CpuStorage::F64(gelu_vec(contiguous(v, l, self.name())?)),
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        Ok(Some(arg.contiguous()?.apply_op2(&g, GeluBwd)?))
    }
}

/// `dx = g * (Phi(x) + x phi(x))`.
#[derive(Debug, Clone, Copy)]
struct GeluBwd;

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "neurofm-gelu-erf-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "{}: shape mismatch {:?} {:?}",
                self.name(),
                l1.shape(),
                l2.shape()
            );
        }
        let name = self.name();
        let out = float_kernel!(name, [s1 @ l1 => x, s2 @ l2 => g], {
            let mut out = g.to_vec();
            Gelu::gelu_grad_in_place(x, &mut out);
            out
        });
        Ok((out, l1.shape().clone()))
    }
}

/// Exact (erf) GELU, as `nn.GELU()`, with a fused parallel backward on the CPU.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if fused_on(x) {
        x.contiguous()?.apply_op1(GeluOp)
    } else {
        x.gelu_erf()
    }
}

/// `y = x W^T + b` as one graph node: `x` `[.., k]` (contiguous), `W` `[n, k]`, `b` `[n]` into
/// `y` `[.., n]`. Forward: the rows of `y` start as copies of `b` and the product adds `x W^T`.
/// Backward: `dx = g W`, `dW = g^T x` (products reading `g` in place, `dW` contiguous) and `db` = the
/// column sums of `g`. Every product goes through [`par_gemm`].
///
/// Against `matmul` + bias add + the reshapes around them, candle's backward pass has one node
/// to visit instead of five: each node it visits costs a zero-filled gradient buffer and an
/// add of the node's output size.
#[derive(Debug, Clone, Copy)]
struct LinearOp;

impl LinearOp {
    fn dims(&self, x: &Layout, w: &Layout, b: &Layout) -> Result<(usize, usize, usize)> {
        let (n, k) = w.shape().dims2()?;
        let xk = x.shape().dims().last().copied().unwrap_or(0);
        if xk != k || b.shape().dims() != [n] {
            bail!(
                "{}: input {:?}, weight {:?}, bias {:?} do not match",
                self.name(),
                x.shape(),
                w.shape(),
                b.shape()
            );
        }
        Ok((x.shape().elem_count() / k.max(1), n, k))
    }
}

/// `dst (m x n, row stride n) [+]= lhs (m x k) * rhs (k x n)`, `lhs` and `rhs` given by a
/// pointer and (row, column) strides in elements. The rows of `dst` are split into one block
/// per rayon thread, each a single-threaded product (`Real::matmul`: the `gemm` crate). On this
/// workload the row split beat the `gemm` crate's own two-thread split by 5-15%. On a quiet
/// machine the `gemm` crate's kernels beat `matrixmultiply`'s under the same split by ~10% on
/// the base MAE's shapes and the step by ~5% (BENCHMARKS.md, "Train step"; an earlier
/// measurement on a busy machine had found the opposite).
///
/// # Safety
/// Every element `(i, j)` of `lhs` (i < m, j < k) and of `rhs` (i < k, j < n) addressed through
/// its strides must be inside the allocation its pointer points into, and neither may overlap
/// `dst`.
#[allow(clippy::too_many_arguments)]
unsafe fn par_gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<T>],
    read_dst: bool,
    lhs: *const T,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const T,
    (rhs_rs, rhs_cs): (usize, usize),
) {
    let (zero, one) = (T::zero(), T::from_f64(1.0));
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            dst[..m * n].iter_mut().for_each(|d| {
                d.write(zero);
            });
        }
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let blocks = if m * n * k >= 1 << 16 {
        threads.min(m)
    } else {
        1
    };
    let block_rows = m.div_ceil(blocks);
    let (lhs, rhs) = (lhs as usize, rhs as usize);
    dst[..m * n]
        .par_chunks_mut(block_rows * n)
        .enumerate()
        .for_each(|(i, d)| {
            let r0 = i * block_rows;
            let rows = d.len() / n;
            let lhs = (lhs as *const T).wrapping_add(r0 * lhs_rs);
            // SAFETY: the caller's contract; this block reads lhs rows r0..r0 + rows and
            // writes its own rows of dst.
            unsafe {
                T::matmul(
                    (rows, k, n),
                    lhs,
                    (lhs_rs as isize, lhs_cs as isize),
                    rhs as *const T,
                    (rhs_rs as isize, rhs_cs as isize),
                    if read_dst { one } else { zero },
                    d.as_mut_ptr().cast::<T>(),
                    (n as isize, 1),
                )
            };
        });
}

/// `y (rows x n) = b + x (rows x k) W^T`, with `W` `n x k` row-major.
fn linear_fwd<T: Real>(x: &[T], w: &[T], b: &[T], dims: (usize, usize, usize)) -> Vec<T> {
    linear_fwd_new(x, w, Some(b), None, dims)
}

/// `y (rows x n) = [b] + [resid] + x (rows x k) W^T`, with `W` `n x k` row-major: the rows of
/// `y` start as `b` plus the row of `resid` (both optional; zero without either), written in
/// parallel, then the product adds to them.
pub(crate) fn linear_fwd_new<T: Real>(
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    resid: Option<&[T]>,
    (rows, n, k): (usize, usize, usize),
) -> Vec<T> {
    assert!(x.len() >= rows * k && w.len() >= n * k);
    assert!(b.is_none_or(|b| b.len() == n) && resid.is_none_or(|r| r.len() >= rows * n));
    if n == 0 {
        return Vec::new();
    }
    let rows_per = (CHUNK / n).max(1);
    let prefill = |y: &mut [MaybeUninit<T>]| {
        y.par_chunks_mut(rows_per * n)
            .enumerate()
            .for_each(|(i, yc)| {
                let r0 = i * rows_per * n;
                for (j, row) in yc.chunks_mut(n).enumerate() {
                    let res = resid.map(|r| &r[r0 + j * n..r0 + (j + 1) * n]);
                    match (b, res) {
                        (Some(b), Some(r)) => {
                            for ((o, &b), &r) in row.iter_mut().zip(b).zip(r) {
                                o.write(b.add(r));
                            }
                        }
                        (Some(v), None) | (None, Some(v)) => {
                            for (o, &v) in row.iter_mut().zip(v) {
                                o.write(v);
                            }
                        }
                        (None, None) => row.iter_mut().for_each(|o| {
                            o.write(T::zero());
                        }),
                    }
                }
            })
    };
    // SAFETY (build): the prefill writes every row of y (rows * n elements in chunks of whole
    // rows, each row of n elements from b and/or resid, both n long per row, or zero), and the
    // product then reads and adds to them.
    unsafe {
        build(rows * n, |y| {
            prefill(y);
            // SAFETY: x is rows x k (row stride k); W^T is read as a k x n matrix with row
            // stride 1 and column stride k inside w (n x k); y is rows x n, initialized by the
            // prefill, and does not overlap x or w; the lengths are asserted above.
            par_gemm(
                (rows, n, k),
                y,
                true,
                x.as_ptr(),
                (k, 1),
                w.as_ptr(),
                (1, k),
            )
        })
    }
}

/// The two matrix products of the linear layer's backward pass, `g` `[.., n]` being the
/// output gradient: `Dx`: `g W` with `W` `[n, k]` -> `[.., k]`; `Dw`: `g^T x` with `x`
/// `[.., k]` -> `[n, k]`.
#[derive(Debug, Clone, Copy)]
enum LinearGrad {
    Dx,
    Dw,
}

/// `Dx`: `g (rows x n) W (n x k)`; `Dw`: `g^T (n x rows) x (rows x k)`.
fn linear_grad<T: Real>(
    kind: LinearGrad,
    g: &[T],
    o: &[T],
    (rows, n, k): (usize, usize, usize),
) -> Vec<T> {
    match kind {
        LinearGrad::Dx => linear_dx_new(g, o, (rows, n, k)),
        LinearGrad::Dw => {
            let mut dw = par_zeros(n * k);
            linear_dw_into(g, o, &mut dw, (rows, n, k));
            dw
        }
    }
}

/// `dx (rows x k) = g (rows x n) W (n x k)`, into a new vector.
pub(crate) fn linear_dx_new<T: Real>(g: &[T], w: &[T], dims: (usize, usize, usize)) -> Vec<T> {
    // SAFETY: `linear_dx_uninit` writes all rows * k elements.
    unsafe { build(dims.0 * dims.2, |dx| linear_dx_uninit(g, w, dx, dims)) }
}

/// `dx (rows x k) = g (rows x n) W (n x k)`, overwriting `dx`.
pub(crate) fn linear_dx_into<T: Real>(g: &[T], w: &[T], dx: &mut [T], dims: (usize, usize, usize)) {
    // SAFETY: `linear_dx_uninit` only writes computed values.
    linear_dx_uninit(g, w, unsafe { as_uninit_mut(dx) }, dims)
}

/// `dx (rows x k) = g (rows x n) W (n x k)`: writes `dx[..rows * k]`, reads nothing of it.
fn linear_dx_uninit<T: Real>(
    g: &[T],
    w: &[T],
    dx: &mut [MaybeUninit<T>],
    (rows, n, k): (usize, usize, usize),
) {
    assert!(g.len() >= rows * n && w.len() >= n * k && dx.len() >= rows * k);
    // SAFETY: g is rows x n (row stride n), W is n x k (row stride k), both in bounds (asserted);
    // dx is a distinct `&mut`, written and not read (`read_dst` false).
    unsafe {
        par_gemm(
            (rows, k, n),
            dx,
            false,
            g.as_ptr(),
            (n, 1),
            w.as_ptr(),
            (k, 1),
        )
    };
}

/// `dw (n x k) = g^T (n x rows) x (rows x k)`.
pub(crate) fn linear_dw_into<T: Real>(
    g: &[T],
    x: &[T],
    dw: &mut [T],
    (rows, n, k): (usize, usize, usize),
) {
    assert!(g.len() >= rows * n && x.len() >= rows * k && dw.len() >= n * k);
    let threads = rayon::current_num_threads().max(1);
    if threads < 2 || rows < 2 * threads * 64 || n * k == 0 {
        // SAFETY: g^T is n x rows (row stride 1, column stride n) inside g; x is rows x k (row
        // stride k); both in bounds (asserted); dw is a distinct `&mut`, into which the product
        // writes only computed values.
        unsafe {
            par_gemm(
                (n, k, rows),
                as_uninit_mut(dw),
                false,
                g.as_ptr(),
                (1, n),
                x.as_ptr(),
                (k, 1),
            )
        };
        return;
    }
    // Split the sum over rows instead of the rows of dw: each thread multiplies its own block
    // of rows of g and x (so each packs only its part of x, where splitting dw's rows had every
    // thread pack all of x), the first into dw, the others into buffers added in afterwards.
    let block = rows.div_ceil(threads);
    let mut partials: Vec<Vec<T>> = (1..threads).map(|_| par_zeros(n * k)).collect();
    let dw = &mut dw[..n * k];
    let mut outs: Vec<&mut [T]> = Vec::with_capacity(threads);
    outs.push(dw);
    outs.extend(partials.iter_mut().map(|p| p.as_mut_slice()));
    outs.into_par_iter().enumerate().for_each(|(i, out)| {
        let r0 = (i * block).min(rows);
        let r = block.min(rows - r0);
        // SAFETY: rows r0..r0 + r of g (n wide) and x (k wide) are in bounds (asserted above);
        // g^T of the block is n x r with row stride 1 and column stride n; out is this task's
        // own n x k buffer. With r = 0 the product writes zeros.
        unsafe {
            T::matmul(
                (n, r, k),
                g[r0 * n..].as_ptr(),
                (1, n as isize),
                x[r0 * k..].as_ptr(),
                (k as isize, 1),
                T::zero(),
                out.as_mut_ptr(),
                (k as isize, 1),
            )
        };
    });
    dw.par_chunks_mut(CHUNK).enumerate().for_each(|(c, d)| {
        for p in &partials {
            for (o, &v) in d.iter_mut().zip(&p[c * CHUNK..]) {
                *o = o.add(v);
            }
        }
    });
}

impl CustomOp2 for LinearGrad {
    fn name(&self) -> &'static str {
        match self {
            LinearGrad::Dx => "neurofm-linear-dx",
            LinearGrad::Dw => "neurofm-linear-dw",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let n = l1.shape().dims().last().copied().unwrap_or(0);
        let rows = l1.shape().elem_count() / n.max(1);
        let (k, shape) = match self {
            LinearGrad::Dx => {
                let (wn, k) = l2.shape().dims2()?;
                if wn != n {
                    bail!(
                        "{name}: gradient {:?} and weight {:?}",
                        l1.shape(),
                        l2.shape()
                    );
                }
                let mut dims = l1.shape().dims().to_vec();
                if let Some(last) = dims.last_mut() {
                    *last = k;
                }
                (k, Shape::from(dims))
            }
            LinearGrad::Dw => {
                let k = l2.shape().dims().last().copied().unwrap_or(0);
                if l2.shape().elem_count() != rows * k {
                    bail!(
                        "{name}: gradient {:?} and input {:?}",
                        l1.shape(),
                        l2.shape()
                    );
                }
                (k, Shape::from((n, k)))
            }
        };
        let kind = *self;
        let out = float_kernel!(name, [s1 @ l1 => g, s2 @ l2 => o], {
            linear_grad(kind, g, o, (rows, n, k))
        });
        Ok((out, shape))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "neurofm-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(l1, l2, l3)?;
        let name = self.name();
        let out = float_kernel!(name, [s1 @ l1 => x, s2 @ l2 => w, s3 @ l3 => b], {
            linear_fwd(x, w, b, d)
        });
        let mut dims = l1.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = d.1;
        }
        Ok((out, Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k) = w.dims2()?;
        let rows = x.elem_count() / k.max(1);
        let g = grad_res.contiguous()?.reshape((rows, n))?;
        let dx = g
            .apply_op2(&w.detach().contiguous()?, LinearGrad::Dx)?
            .reshape(x.shape())?;
        let dw = g.apply_op2(&x.detach().contiguous()?, LinearGrad::Dw)?;
        let db = g.apply_op1(ColumnSum)?.reshape(b.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Sum over all rows of `g` `[.., n]` -> `[n]` (f64 accumulation, parallel over row blocks).
#[derive(Debug, Clone, Copy)]
struct ColumnSum;

fn column_sum<T: Real>(g: &[T], n: usize) -> Vec<T> {
    let mut out = vec![T::zero(); n];
    column_sum_into(g, &mut out);
    out
}

/// `out[j] = sum_i g[i, j]` for `g` `[.., out.len()]` (f64 accumulation, parallel over row
/// blocks).
pub(crate) fn column_sum_into<T: Real>(g: &[T], out: &mut [T]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    let rows_per = (CHUNK / n).max(1) * n;
    let acc = g
        .par_chunks(rows_per)
        .fold(
            || vec![0f64; n],
            |mut a, g| {
                for row in g.chunks(n) {
                    for (a, &v) in a.iter_mut().zip(row) {
                        *a += v.to_f64();
                    }
                }
                a
            },
        )
        .reduce(
            || vec![0f64; n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    for (o, a) in out.iter_mut().zip(acc) {
        *o = T::from_f64(a);
    }
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "neurofm-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = match l.shape().dims().last() {
            Some(&n) if n > 0 => n,
            _ => bail!("{}: empty last dimension {:?}", self.name(), l.shape()),
        };
        let out = float_kernel!(self.name(), [s @ l => g], column_sum(g, n));
        Ok((out, Shape::from(n)))
    }
}

/// `x W^T + b` of a `candle_nn::Linear` (weight `[out, in]`): on the CPU one fused node
/// (`LinearOp`: bias-initialized `gemm` forward, matmul backward); elsewhere (and without a
/// bias) `Linear::forward`.
pub fn linear(lin: &candle_nn::Linear, x: &Tensor) -> Result<Tensor> {
    use candle_core::Module;
    let Some(b) = lin.bias() else {
        return lin.forward(x);
    };
    if !fused_on(x) || x.rank() == 0 {
        return lin.forward(x);
    }
    x.contiguous()?.apply_op3(lin.weight(), b, LinearOp)
}

/// Masked mean squared error of the MAE: `sum(m * (pred - target)^2) / (max(sum(m), 1) * n)` for
/// `pred`, `target` `[.., n]` and `m` `[.., 1]` (1 = masked patch), the gradient flowing into
/// `pred` only. On the CPU one node: a parallel pass with f64 sums forward, one pass for
/// `dpred = 2 g m (pred - target) / (max(sum(m), 1) n)` backward. Elsewhere candle's ops (in
/// f32 for bf16 and f16 inputs).
pub fn masked_mse(pred: &Tensor, target: &Tensor, m: &Tensor) -> Result<Tensor> {
    let n = pred.dims().last().copied().unwrap_or(1);
    if !fused_on(pred) || target.shape() != pred.shape() || m.elem_count() * n != pred.elem_count()
    {
        return crate::ops::widened([pred, target, m], |[pred, target, m]| {
            let n_masked = m.sum_all()?.maximum(1.0)?.detach();
            let err = (pred - target)?.sqr()?.broadcast_mul(m)?;
            err.sum_all()? / &(&n_masked * n as f64)?
        });
    }
    pred.contiguous()?.apply_op3(
        &target.detach().contiguous()?,
        &m.detach().contiguous()?,
        MaskedMse,
    )
}

#[derive(Debug, Clone, Copy)]
struct MaskedMse;

/// `(sum over masked rows of sum (pred - target)^2, number of masked rows)` in f64.
fn masked_sq_sum<T: Real>(p: &[T], t: &[T], m: &[T], n: usize) -> (f64, f64) {
    p.par_chunks(n * 64)
        .zip(t.par_chunks(n * 64).zip(m.par_chunks(64)))
        .map(|(p, (t, m))| {
            let mut s = 0f64;
            let mut k = 0f64;
            for ((p, t), &m) in p.chunks(n).zip(t.chunks(n)).zip(m) {
                let m = m.to_f64();
                if m != 0.0 {
                    let mut r = 0f64;
                    for (&a, &b) in p.iter().zip(t) {
                        let d = a.to_f64() - b.to_f64();
                        r += d * d;
                    }
                    s += m * r;
                }
                k += m;
            }
            (s, k)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

impl CustomOp3 for MaskedMse {
    fn name(&self) -> &'static str {
        "neurofm-masked-mse"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let name = self.name();
        let out = float_kernel!(name, [s1 @ l1 => p, s2 @ l2 => t, s3 @ l3 => m], {
            let (s, k) = masked_sq_sum(p, t, m, n);
            vec![Real::from_f64(s / (k.max(1.0) * n as f64))]
        });
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        pred: &Tensor,
        target: &Tensor,
        m: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad_res
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        let dpred = pred.apply_op3(target, m, MaskedMseBwd { g })?;
        Ok((Some(dpred), None, None))
    }
}

/// `dpred = 2 g m (pred - target) / (max(sum(m), 1) n)`.
#[derive(Debug, Clone, Copy)]
struct MaskedMseBwd {
    g: f64,
}

fn masked_mse_bwd<T: Real>(p: &[T], t: &[T], m: &[T], n: usize, g: f64) -> Vec<T> {
    let k: f64 = m.iter().map(|v| v.to_f64()).sum();
    let c = 2.0 * g / (k.max(1.0) * n as f64);
    let mut out = par_zeros(p.len());
    out.par_chunks_mut(n * 64)
        .zip(
            p.par_chunks(n * 64)
                .zip(t.par_chunks(n * 64).zip(m.par_chunks(64))),
        )
        .for_each(|(o, (p, (t, m)))| {
            for (((o, p), t), &m) in o.chunks_mut(n).zip(p.chunks(n)).zip(t.chunks(n)).zip(m) {
                if m.to_f64() != 0.0 {
                    let cm = T::from_f64(c).mul(m);
                    for ((o, &a), &b) in o.iter_mut().zip(p).zip(t) {
                        *o = cm.mul(a.sub(b));
                    }
                }
            }
        });
    out
}

impl CustomOp3 for MaskedMseBwd {
    fn name(&self) -> &'static str {
        "neurofm-masked-mse-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let name = self.name();
        let out = float_kernel!(name, [s1 @ l1 => p, s2 @ l2 => t, s3 @ l3 => m], {
            masked_mse_bwd(p, t, m, n, self.g)
        });
        Ok((out, l1.shape().clone()))
    }
}

/// `x * (1 - m) + m * token + pos` for tokens `x` `[B, C, P, d]`, a patch mask `m`
/// `[B, C, P, 1]` (1 = masked; `None`: no masking), a mask token `[1, 1, 1, d]` and position
/// embeddings `pos` `[1, C, P, d]`, returned as `[B, C * P, d]`. On the CPU one node (one pass forward; backward
/// `dx = g (1 - m)`, `dtoken = sum m g`, `dpos = sum_b g`) instead of five broadcast ops on
/// full-size tensors; elsewhere candle's ops.
pub fn mask_and_add(
    x: &Tensor,
    m: Option<&Tensor>,
    token: &Tensor,
    pos: &Tensor,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let ok = dims.len() == 4
        && pos.dims() == [1, dims[1], dims[2], dims[3]]
        && token.elem_count() == dims[3]
        && m.is_none_or(|m| m.dims() == [dims[0], dims[1], dims[2], 1]);
    if !fused_on(x) || !ok {
        let x = match m {
            Some(m) => {
                let keep = m.affine(-1.0, 1.0)?;
                (x.broadcast_mul(&keep)? + m.broadcast_mul(token)?)?
            }
            None => x.clone(),
        };
        let (b, c, p, d) = x.dims4()?;
        return x.broadcast_add(pos)?.reshape((b, c * p, d));
    }
    let mask = match m {
        Some(m) => Some(
            m.to_dtype(candle_core::DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?,
        ),
        None => None,
    };
    x.contiguous()?.apply_op3(
        &token.contiguous()?,
        &pos.contiguous()?,
        MaskAndAdd { mask },
    )
}

/// See [`mask_and_add`]; `mask` holds one value per `[B, C, P]` row.
struct MaskAndAdd {
    mask: Option<Vec<f64>>,
}

/// Row `r` of `x` (`d` wide): `x (1 - m[r]) + m[r] token + pos[r mod (pos rows)]`.
fn mask_add_rows<T: Real>(x: &[T], tok: &[T], pos: &[T], mask: Option<&[f64]>, d: usize) -> Vec<T> {
    let n_pos = pos.len();
    let one = T::from_f64(1.0);
    let mut out = par_zeros(x.len());
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .enumerate()
        .for_each(|(r, (o, x))| {
            let m = T::from_f64(mask.map_or(0.0, |m| m[r]));
            let p = &pos[(r * d) % n_pos..][..d];
            for (((o, &x), &t), &p) in o.iter_mut().zip(x).zip(tok).zip(p) {
                *o = x.mul(one.sub(m)).add(m.mul(t)).add(p);
            }
        });
    out
}

impl CustomOp3 for MaskAndAdd {
    fn name(&self) -> &'static str {
        "neurofm-mask-and-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = l1.shape().dims().last().copied().unwrap_or(0);
        let rows = l1.shape().elem_count() / d.max(1);
        let n_pos = l3.shape().elem_count();
        if d == 0 || n_pos == 0 || !n_pos.is_multiple_of(d) || !(rows * d).is_multiple_of(n_pos) {
            bail!(
                "{}: shapes {:?} {:?} do not match",
                self.name(),
                l1.shape(),
                l3.shape()
            );
        }
        if self.mask.as_ref().is_some_and(|m| m.len() != rows) {
            bail!("{}: mask of the wrong length", self.name());
        }
        let name = self.name();
        let mask = self.mask.as_deref();
        let out = float_kernel!(name, [s1 @ l1 => x, s2 @ l2 => t, s3 @ l3 => p], {
            mask_add_rows(x, t, p, mask, d)
        });
        // [B, C, P, d] -> [B, C * P, d], the transformer's token layout
        let dims = l1.shape().dims();
        let shape = if dims.len() == 4 {
            Shape::from((dims[0], dims[1] * dims[2], dims[3]))
        } else {
            l1.shape().clone()
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        token: &Tensor,
        pos: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = token.elem_count();
        let g = grad_res.contiguous()?;
        let rows = g.elem_count() / d.max(1);
        let g2 = g.reshape((rows, d))?;
        // dpos: sum over the batch of [B, C*P*d] rows of g
        let n_pos = pos.elem_count();
        let dpos = g
            .reshape((g.elem_count() / n_pos, n_pos))?
            .apply_op1(ColumnSum)?
            .reshape(pos.shape())?;
        let Some(mask) = &self.mask else {
            return Ok((Some(g.reshape(x.shape())?), None, Some(dpos)));
        };
        let m = Tensor::from_slice(mask, (rows, 1), g.device())?.to_dtype(g.dtype())?;
        let dx = g2
            .broadcast_mul(&m.affine(-1.0, 1.0)?)?
            .reshape(x.shape())?;
        let dtoken = g2
            .broadcast_mul(&m)?
            .apply_op1(ColumnSum)?
            .reshape(token.shape())?;
        Ok((Some(dx), Some(dtoken), Some(dpos)))
    }
}
