//! Differentiable layer norm and (scaled, optionally causal) softmax.
//!
//! candle's fused `candle_nn::ops::{softmax_last_dim, layer_norm, rms_norm}` are applied with
//! `apply_op*_no_bwd`: they drop out of the autograd graph and silently stop gradients.
//! The ops here are candle `CustomOp`s with a real `bwd`:
//! - on CPU the forward and the backward are fused kernels, vectorized over the last
//!   dimension and parallel (rayon) over rows, in f32 and f64;
//! - on any other device they fall back to a composition of primitive candle ops, all of
//!   which have a backward pass. In bf16 and f16 the composed ops compute in f32 and round
//!   the result back ([`widened`]), as PyTorch's half-precision kernels accumulate in f32:
//!   candle's CPU sums of half-precision tensors accumulate in the half type itself, which
//!   stalls once the running sum is large (its CUDA sums accumulate in f32).
//!
//! Every op is checked against finite differences in `tests/gradients.rs`, and the composed
//! path's gradients against the fused kernels' ([`with_composed_ops`] runs the composed path
//! on the CPU, as on CUDA).

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

thread_local! {
    static FORCE_COMPOSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every op of this module and of [`crate::fused`] taking its composed
/// (primitive-op) path, also on the CPU: the path CUDA and other devices use. For tests and
/// benchmarks; affects this thread only.
pub fn with_composed_ops<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCE_COMPOSED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCE_COMPOSED.with(|c| c.replace(true)));
    f()
}

/// Runs `f` on `xs` converted to f32 when the first is bf16 or f16 and rounds its result back
/// to that type (differentiably: `to_dtype` has a backward pass); other types go through as
/// they are. For the statistics of the composed ops (sums, means, softmax denominators).
pub(crate) fn widened<const N: usize>(
    xs: [&Tensor; N],
    f: impl FnOnce([&Tensor; N]) -> Result<Tensor>,
) -> Result<Tensor> {
    let dtype = xs.first().map(|x| x.dtype()).unwrap_or(DType::F32);
    if !matches!(dtype, DType::BF16 | DType::F16) {
        return f(xs);
    }
    let wide: Vec<Tensor> = xs
        .iter()
        .map(|x| x.to_dtype(DType::F32))
        .collect::<Result<_>>()?;
    let refs: [&Tensor; N] = std::array::from_fn(|i| &wide[i]);
    f(refs)?.to_dtype(dtype)
}

/// Whether `x` takes the fused CPU kernels.
pub(crate) fn fused_on(x: &Tensor) -> bool {
    x.device().is_cpu() && !FORCE_COMPOSED.with(|c| c.get())
}

/// The float types the CPU kernels run on.
pub(crate) trait Real: Copy + Send + Sync + Default + 'static {
    fn zero() -> Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn max(self, o: Self) -> Self;
    /// `c (m x n) = beta c + a (m x k) b (k x n)`, single-threaded (the `gemm` crate, the
    /// product candle itself uses); `(rs, cs)` are the row and column strides of each operand,
    /// in elements. With `beta` zero `c` is only written, never read (with `k == 0` it is set
    /// to zero here).
    ///
    /// # Safety
    /// Every element addressed through the strides (`i < m, j < k` of `a`, `i < k, j < n` of
    /// `b`, `i < m, j < n` of `c`) must lie inside the allocation its pointer points into; `c`
    /// must not overlap `a` or `b`, and nothing else may access it during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn matmul(
        mkn: (usize, usize, usize),
        a: *const Self,
        a_strides: (isize, isize),
        b: *const Self,
        b_strides: (isize, isize),
        beta: Self,
        c: *mut Self,
        c_strides: (isize, isize),
    );
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            unsafe fn matmul(
                (m, k, n): (usize, usize, usize),
                a: *const Self,
                (rsa, csa): (isize, isize),
                b: *const Self,
                (rsb, csb): (isize, isize),
                beta: Self,
                c: *mut Self,
                (rsc, csc): (isize, isize),
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                if k == 0 {
                    for i in 0..m as isize {
                        for j in 0..n as isize {
                            // SAFETY: (i, j) is an element of c (the caller's contract).
                            unsafe {
                                let p = c.offset(i * rsc + j * csc);
                                *p = if beta == 0.0 { 0.0 } else { beta * *p };
                            }
                        }
                    }
                    return;
                }
                // SAFETY: the caller's contract is what `gemm::gemm` needs. Its arguments:
                // `dst := alpha dst + beta lhs rhs`, the destination read only with `read_dst`,
                // strides given column stride first.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c,
                        csc,
                        rsc,
                        beta != 0.0,
                        a,
                        csa,
                        rsa,
                        b,
                        csb,
                        rsb,
                        beta,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
            }
            #[inline]
            fn zero() -> Self {
                0.0
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline]
            fn sub(self, o: Self) -> Self {
                self - o
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline]
            fn div(self, o: Self) -> Self {
                self / o
            }
            #[inline]
            fn max(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
        }
    };
}
impl_real!(f32);
impl_real!(f64);

/// The elements of a contiguous CPU tensor's storage (`op` names the op in the error).
pub(crate) fn contiguous<'a, T>(s: &'a [T], l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => s.get(a..b).ok_or_else(|| {
            candle_core::Error::Msg(format!("{op}: storage shorter than its layout"))
        }),
        None => bail!("{op}: input has to be contiguous"),
    }
}

/// `n` elements written by `init`, without clearing them first (the buffers a kernel overwrites
/// completely: a cleared buffer cost a pass over memory, ~3% of the base MAE's step and ~7% of
/// the tiny one's). In builds with debug assertions (the tests) the memory is first filled with
/// `0xFF` bytes, a NaN in f32 and f64, so an element `init` fails to write shows up as NaN in
/// the gradient tests.
///
/// # Safety
/// `init` must write every element of the slice it gets.
pub(crate) unsafe fn build<T: Copy>(n: usize, init: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    if cfg!(debug_assertions) {
        // SAFETY: the n elements are inside the allocation, and any bytes are a valid
        // `MaybeUninit`.
        unsafe { std::ptr::write_bytes(spare.as_mut_ptr(), 0xFF, n) };
    }
    init(spare);
    // SAFETY: the capacity is at least n, and the caller guarantees that init wrote all n.
    unsafe { v.set_len(n) };
    v
}

/// `s` viewed as initialized.
///
/// # Safety
/// Every element of `s` must have been written.
pub(crate) unsafe fn assume_init_mut<T>(s: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, and the caller guarantees that every
    // element is initialized.
    unsafe { &mut *(s as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// `s` viewed as possibly uninitialized, for kernels that take both kinds of output buffer.
///
/// # Safety
/// The callee may only write initialized values into it (writing `MaybeUninit::uninit()`
/// would leave `s` holding uninitialized `T`s).
pub(crate) unsafe fn as_uninit_mut<T>(s: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: same layout; the caller's contract keeps the elements initialized.
    unsafe { &mut *(s as *mut [T] as *mut [MaybeUninit<T>]) }
}

/// `n` zeros, written in parallel chunks. A `vec![0.0; n]` is zeroed by the allocating thread
/// alone (glibc's `calloc` clears reused heap memory with `memset`, and fresh pages fault in
/// one at a time); for the activation-sized buffers of a training step that serial clearing
/// left the other cores idle for a tenth of the step.
pub(crate) fn par_zeros<T: Copy + Send + Sync + Default>(n: usize) -> Vec<T> {
    const CHUNK: usize = 1 << 15;
    let mut v = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .for_each(|c| {
            c.iter_mut().for_each(|x| {
                x.write(T::default());
            })
        });
    // SAFETY: the capacity is at least n and the loop above initialized elements 0..n.
    unsafe { v.set_len(n) };
    v
}

/// The dtype dispatch of the CPU kernels. `float_kernel!(name, [s1 @ l1 => x, ...], body)`
/// binds each storage's contiguous elements (`x`, ...), evaluates `body` (a `Vec` of the element
/// type, written once and typed by inference) for f32 and for f64, and wraps the result in the
/// matching `CpuStorage` variant; any other or mixed dtypes are an error naming the op.
macro_rules! float_kernel {
    ($name:expr, [$($s:ident @ $l:ident => $v:ident),+], $body:expr) => {
        match ($($s,)+) {
            ($(CpuStorage::F32($v),)+) => {
                $(let $v = $crate::ops::contiguous($v, $l, $name)?;)+
                CpuStorage::F32($body)
            }
            ($(CpuStorage::F64($v),)+) => {
                $(let $v = $crate::ops::contiguous($v, $l, $name)?;)+
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!(
                "{}: unsupported dtypes {:?}",
                $name,
                [$($s.dtype()),+]
            ),
        }
    };
}
pub(crate) use float_kernel;

fn last_dim(shape: &Shape, op: &str) -> Result<usize> {
    match shape.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!("{op}: needs a non-empty last dimension, got {shape:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// softmax
// ---------------------------------------------------------------------------------------

/// `softmax(scale * x)` over the last dimension; with `causal`, row `q` of each `[L, L]`
/// matrix only sees columns `0..=q` (the others get probability 0).
#[derive(Debug, Clone, Copy)]
struct ScaledSoftmax {
    scale: f64,
    causal: bool,
}

fn softmax_rows<T: Real>(src: &[T], n: usize, scale: f64, causal: bool) -> Vec<T> {
    let mut dst = par_zeros(src.len());
    let scale = T::from_f64(scale);
    dst.par_chunks_mut(n)
        .zip(src.par_chunks(n))
        .enumerate()
        .for_each(|(row, (d, s))| {
            let lim = if causal { (row % n) + 1 } else { n };
            let (d, s) = (&mut d[..lim], &s[..lim]);
            let mut m = T::from_f64(f64::NEG_INFINITY);
            for &v in s {
                m = m.max(v.mul(scale));
            }
            let mut sum = T::zero();
            for (o, &v) in d.iter_mut().zip(s) {
                let e = v.mul(scale).sub(m).exp();
                *o = e;
                sum = sum.add(e);
            }
            for o in d.iter_mut() {
                *o = o.div(sum);
            }
        });
    dst
}

impl CustomOp1 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "neurofm-scaled-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = last_dim(l.shape(), self.name())?;
        let out = float_kernel!(self.name(), [s @ l => v], {
            softmax_rows(v, n, self.scale, self.causal)
        });
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        let y = res.contiguous()?;
        Ok(Some(y.apply_op2(&g, SoftmaxBwd { scale: self.scale })?))
    }
}

/// `dx = scale * y * (g - sum(g * y))` per row (masked entries have y = 0, so dx = 0).
#[derive(Debug, Clone, Copy)]
struct SoftmaxBwd {
    scale: f64,
}

fn softmax_bwd_rows<T: Real>(y: &[T], g: &[T], n: usize, scale: f64) -> Vec<T> {
    let mut dx = par_zeros(y.len());
    let scale = T::from_f64(scale);
    dx.par_chunks_mut(n)
        .zip(y.par_chunks(n).zip(g.par_chunks(n)))
        .for_each(|(d, (y, g))| {
            let mut dot = T::zero();
            for (&a, &b) in y.iter().zip(g) {
                dot = dot.add(a.mul(b));
            }
            for ((o, &a), &b) in d.iter_mut().zip(y).zip(g) {
                *o = scale.mul(a).mul(b.sub(dot));
            }
        });
    dx
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "neurofm-scaled-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = last_dim(l1.shape(), self.name())?;
        if l1.shape() != l2.shape() {
            bail!(
                "{}: shape mismatch {:?} {:?}",
                self.name(),
                l1.shape(),
                l2.shape()
            );
        }
        let out = float_kernel!(self.name(), [s1 @ l1 => y, s2 @ l2 => g], {
            softmax_bwd_rows(y, g, n, self.scale)
        });
        Ok((out, l1.shape().clone()))
    }
}

/// `softmax(x)` over the last dimension, with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    scaled_softmax(x, 1.0, false)
}

/// `softmax(scale * x)` over the last dimension, with a backward pass. With `causal`, the
/// last two dimensions must be square `[L, L]` and entry `(q, k)` is masked for `k > q`.
pub fn scaled_softmax(x: &Tensor, scale: f64, causal: bool) -> Result<Tensor> {
    if causal {
        let dims = x.dims();
        if dims.len() < 2 || dims[dims.len() - 1] != dims[dims.len() - 2] {
            bail!(
                "causal softmax needs square [.., L, L] scores, got {:?}",
                x.shape()
            );
        }
    }
    if fused_on(x) {
        let x = x.contiguous()?;
        x.apply_op1(ScaledSoftmax { scale, causal })
    } else {
        scaled_softmax_composed(x, scale, causal)
    }
}

/// The same softmax as a composition of primitive ops (used off-CPU, and as a reference).
pub fn scaled_softmax_composed(x: &Tensor, scale: f64, causal: bool) -> Result<Tensor> {
    widened([x], |[x]| scaled_softmax_wide(x, scale, causal))
}

fn scaled_softmax_wide(x: &Tensor, scale: f64, causal: bool) -> Result<Tensor> {
    let mut x = (x * scale)?;
    if causal {
        let l = x.dim(D::Minus1)?;
        let mask: Vec<f32> = (0..l * l)
            .map(|i| {
                if i % l > i / l {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (l, l), x.device())?.to_dtype(x.dtype())?;
        x = x.broadcast_add(&mask)?;
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// `log_softmax(x)` over the last dimension (a composition of primitive ops).
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    widened([x], |[x]| {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let d = x.broadcast_sub(&max)?;
        let lse = d.exp()?.sum_keepdim(D::Minus1)?.log()?;
        d.broadcast_sub(&lse)
    })
}

// ---------------------------------------------------------------------------------------
// layer norm
// ---------------------------------------------------------------------------------------

/// `y = (x - mean) / sqrt(var + eps) * w + b` over the last dimension (biased variance, as
/// PyTorch's `nn.LayerNorm`).
#[derive(Debug, Clone, Copy)]
struct LayerNormOp {
    eps: f64,
}

/// `sum f(x[i])` in f64 with eight interleaved partial sums: independent adds the compiler
/// can keep in vector registers, where one running sum waits for each add in turn.
#[inline(always)]
fn sum8<T: Copy>(x: &[T], f: impl Fn(T) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Mean and `1 / sqrt(var + eps)` of one row (two passes, f64 accumulation).
#[inline]
fn row_stats<T: Real>(x: &[T], eps: f64) -> (T, T) {
    let n = x.len() as f64;
    let mean = sum8(x, |v| v.to_f64()) / n;
    let ss = sum8(x, |v| {
        let d = v.to_f64() - mean;
        d * d
    });
    let rstd = 1.0 / (ss / n + eps).sqrt();
    (T::from_f64(mean), T::from_f64(rstd))
}

/// Layer norm of the rows of `x` (`[.., w.len()]`), in parallel over rows.
pub(crate) fn layer_norm_rows<T: Real>(x: &[T], w: &[T], b: &[T], eps: f64) -> Vec<T> {
    let n = w.len();
    assert!(n > 0 && b.len() == n && x.len().is_multiple_of(n));
    // SAFETY: the rows of y and x pair up one to one (equal lengths, both split by n), and
    // every element of every row of y is written.
    unsafe {
        build(x.len(), |y| {
            y.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(|(y, x)| {
                let (mean, rstd) = row_stats(x, eps);
                for (((o, &v), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    o.write(v.sub(mean).mul(rstd).mul(w).add(b));
                }
            })
        })
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "neurofm-layer-norm"
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
        let n = last_dim(l1.shape(), self.name())?;
        if l2.shape().dims() != [n] || l3.shape().dims() != [n] {
            bail!(
                "{}: weight/bias must be [{n}], got {:?} {:?}",
                self.name(),
                l2.shape(),
                l3.shape()
            );
        }
        let name = self.name();
        let out = float_kernel!(name, [s1 @ l1 => x, s2 @ l2 => w, s3 @ l3 => b], {
            layer_norm_rows(x, w, b, self.eps)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = w.dim(0)?;
        let rows = x.elem_count() / n;
        let g = grad_res.contiguous()?;
        // One fused kernel returns [rows + 2, n]: dx rows, then dw, then db.
        let all = x.apply_op3(w, &g, LayerNormBwd { eps: self.eps })?;
        let dx = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = all.narrow(0, rows, 1)?.reshape(n)?;
        let db = all.narrow(0, rows + 1, 1)?.reshape(n)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

#[derive(Debug, Clone, Copy)]
struct LayerNormBwd {
    eps: f64,
}

fn layer_norm_bwd_rows<T: Real>(x: &[T], w: &[T], g: &[T], eps: f64) -> Vec<T> {
    let n = w.len();
    let rows = x.len() / n;
    let mut out = par_zeros((rows + 2) * n);
    let (dx, dwdb) = out.split_at_mut(rows * n);
    let (dw, db) = dwdb.split_at_mut(n);
    layer_norm_bwd_into(x, w, g, eps, None, dx, dw, db);
    out
}

/// Backward pass of the layer norm of the rows of `x` (`[.., w.len()]`) for the output gradient
/// `g`: `dx = [resid] + d(loss)/dx` (`resid`, when given, is added in the same pass), and the
/// weight and bias gradients `dw`, `db` (`[w.len()]`, accumulated in f64).
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_bwd_into<T: Real>(
    x: &[T],
    w: &[T],
    g: &[T],
    eps: f64,
    resid: Option<&[T]>,
    dx: &mut [T],
    dw: &mut [T],
    db: &mut [T],
) {
    let n = w.len();
    assert!(n > 0 && g.len() == x.len() && dx.len() == x.len());
    assert!(dw.len() == n && db.len() == n && resid.is_none_or(|r| r.len() == x.len()));
    let inv_n = T::from_f64(1.0 / n as f64);
    let row = |(dx, (x, g)): (&mut [T], (&[T], &[T])),
               res: Option<&[T]>,
               dw: &mut [f64],
               db: &mut [f64]| {
        let (mean, rstd) = row_stats(x, eps);
        // Eight interleaved partial sums of g w and g w xhat (see `sum8`).
        let mut acc_gw = [T::zero(); 8];
        let mut acc_gwx = [T::zero(); 8];
        for (i, (((&xv, &gv), &wv), (dwv, dbv))) in x
            .iter()
            .zip(g)
            .zip(w)
            .zip(dw.iter_mut().zip(db.iter_mut()))
            .enumerate()
        {
            let xhat = xv.sub(mean).mul(rstd);
            let gw = gv.mul(wv);
            acc_gw[i % 8] = acc_gw[i % 8].add(gw);
            acc_gwx[i % 8] = acc_gwx[i % 8].add(gw.mul(xhat));
            *dwv += gv.mul(xhat).to_f64();
            *dbv += gv.to_f64();
        }
        let total = |a: [T; 8]| a.iter().fold(T::zero(), |s, &v| s.add(v));
        let m_gw = total(acc_gw).mul(inv_n);
        let m_gwx = total(acc_gwx).mul(inv_n);
        for (((o, &xv), &gv), &wv) in dx.iter_mut().zip(x).zip(g).zip(w) {
            let xhat = xv.sub(mean).mul(rstd);
            *o = rstd.mul(gv.mul(wv).sub(m_gw).sub(xhat.mul(m_gwx)));
        }
        if let Some(r) = res {
            dx.iter_mut().zip(r).for_each(|(o, &r)| *o = o.add(r));
        }
    };
    let init = || (vec![0.0f64; n], vec![0.0f64; n]);
    let (dw_acc, db_acc) = dx
        .par_chunks_mut(n)
        .zip(x.par_chunks(n).zip(g.par_chunks(n)))
        .enumerate()
        .fold(init, |(mut dw, mut db), (i, args)| {
            row(
                args,
                resid.map(|r| &r[i * n..(i + 1) * n]),
                &mut dw,
                &mut db,
            );
            (dw, db)
        })
        .reduce(init, |(mut a, mut b), (c, d)| {
            a.iter_mut().zip(&c).for_each(|(a, c)| *a += c);
            b.iter_mut().zip(&d).for_each(|(b, d)| *b += d);
            (a, b)
        });
    dw.iter_mut()
        .zip(&dw_acc)
        .for_each(|(o, &v)| *o = T::from_f64(v));
    db.iter_mut()
        .zip(&db_acc)
        .for_each(|(o, &v)| *o = T::from_f64(v));
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "neurofm-layer-norm-bwd"
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
        let n = last_dim(l1.shape(), self.name())?;
        let rows = l1.shape().elem_count() / n;
        if l2.shape().dims() != [n] || l3.shape() != l1.shape() {
            bail!("{}: shape mismatch", self.name());
        }
        let name = self.name();
        let out = float_kernel!(name, [s1 @ l1 => x, s2 @ l2 => w, s3 @ l3 => g], {
            layer_norm_bwd_rows(x, w, g, self.eps)
        });
        Ok((out, Shape::from((rows + 2, n))))
    }
}

/// Layer norm over the last dimension with a backward pass for `x`, `w` and `b`.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if fused_on(x) {
        let x = x.contiguous()?;
        x.apply_op3(w, b, LayerNormOp { eps })
    } else {
        layer_norm_composed(x, w, b, eps)
    }
}

/// The same layer norm as a composition of primitive ops (used off-CPU, and as a reference).
pub fn layer_norm_composed(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    widened([x, w, b], |[x, w, b]| {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
        xhat.broadcast_mul(w)?.broadcast_add(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c = beta c + a b` by the definition, in f64.
    fn reference(
        a: &[f64],
        b: &[f64],
        c0: &[f64],
        (m, k, n): (usize, usize, usize),
        beta: f64,
    ) -> Vec<f64> {
        (0..m * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                let s: f64 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
                s + if beta == 0.0 { 0.0 } else { beta * c0[ij] }
            })
            .collect()
    }

    fn check<T: Real>(mkn: (usize, usize, usize), beta: f64, tol: f64) {
        let (m, k, n) = mkn;
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 2003) as f64 / 1001.0 - 1.0;
        let a: Vec<f64> = (0..m * k).map(|i| val(i, 1)).collect();
        let b: Vec<f64> = (0..k * n).map(|i| val(i, 2)).collect();
        // With beta 0 the destination starts as NaN: the product must not read it.
        let c0: Vec<f64> = (0..m * n)
            .map(|i| if beta == 0.0 { f64::NAN } else { val(i, 3) })
            .collect();
        let want = reference(&a, &b, &c0, mkn, beta);
        let conv = |v: &[f64]| v.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>();
        let (at, bt, mut ct) = (conv(&a), conv(&b), conv(&c0));
        // SAFETY: a is m x k, b is k x n, c is m x n, all row-major and distinct.
        unsafe {
            T::matmul(
                mkn,
                at.as_ptr(),
                (k as isize, 1),
                bt.as_ptr(),
                (n as isize, 1),
                T::from_f64(beta),
                ct.as_mut_ptr(),
                (n as isize, 1),
            )
        };
        for (i, (g, w)) in ct.iter().zip(&want).enumerate() {
            let g = g.to_f64();
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()) * (k as f64 + 1.0),
                "{mkn:?} beta {beta}: c[{i}] = {g}, want {w}"
            );
        }
    }

    #[test]
    fn matmul_matches_the_definition_and_never_reads_c_with_beta_zero() {
        // Small, odd and large enough for the library's packed paths; k = 0 included.
        for mkn in [
            (1, 1, 1),
            (7, 3, 5),
            (33, 17, 65),
            (300, 200, 130),
            (257, 64, 256),
            (5, 0, 4),
        ] {
            for beta in [0.0, 1.0, 0.5] {
                check::<f64>(mkn, beta, 1e-12);
                check::<f32>(mkn, beta, 1e-5);
            }
        }
    }
}
