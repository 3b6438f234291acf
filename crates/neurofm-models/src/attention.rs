//! Fused multi-head scaled-dot-product attention on the CPU, with a backward pass.
//!
//! Input: the output of the `qkv` projection, `[B, L, 3 * D]` laid out as `[B, L, 3, H, Dh]`
//! (`D = H * Dh`); output `[B, L, D]`, laid out as `[B, L, H, Dh]`, i.e. already in the order
//! the output projection reads. Per batch element and head:
//! `O = softmax(scale * Q K^T [+ causal mask]) V`.
//!
//! What it saves against the composition of candle ops (`permute` + `contiguous` of q, k, v;
//! matmul; softmax; matmul; `transpose` + copy of the output): the three permuted copies of q, k,
//! v, the output transpose copy, and the `[B, H, L, L]` score and probability tensors kept for
//! the backward pass. The matrix products read q, k, v in place through strides (the `gemm`
//! crate candle itself uses), one batch element per rayon task; the `1/sqrt(Dh)` scale is
//! applied by the `Q K^T` product itself. The forward pass keeps only the log-sum-exp of every
//! probability row (`B x H x L` numbers); the backward pass recomputes the probabilities of one
//! head at a time (one `L x L` buffer per task) as `exp(scale Q K^T - logsumexp)`, as flash
//! attention does, instead of storing them:
//!
//! ```text
//! dV = P^T dO      dP = dO V^T      dS = scale * P * (dP - rowsum(dP * P))
//! dQ = dS K        dK = dS^T Q
//! ```
//!
//! The fused transformer block (`block.rs`) may instead ask the forward pass to keep the
//! probabilities (`forward(.., keep = true)`, `[B, H, L, L]`), when they fit its memory rule;
//! its backward pass then reads them instead of recomputing them.
//!
//! The forward softmax is computed as [`crate::ops::scaled_softmax`] computes it (max-subtracted,
//! sum in the element type), then multiplied by the reciprocal of the sum. `tests/gradients.rs` checks the op against finite differences and against
//! the composed path (the one CUDA runs) in f64 and f32.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use std::sync::{Arc, Mutex};

use crate::ops::{as_uninit_mut, assume_init_mut, build, contiguous, float_kernel, par_zeros};
use crate::vmath;
use std::mem::MaybeUninit;

/// Element types of the op.
pub(crate) trait Elem: Copy + Send + Sync + Default + PartialOrd + 'static {
    const ZERO: Self;
    const ONE: Self;
    const NEG_INF: Self;
    fn from_f64(v: f64) -> Self;
    fn exp(self) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn to_f64(self) -> f64;

    /// `v <- exp(v - sub)`.
    fn exp_sub(v: &mut [Self], sub: Self) {
        for x in v.iter_mut() {
            *x = x.sub(sub).exp();
        }
    }

    /// `v <- scale * v`, returning the maximum.
    fn scale_max(v: &mut [Self], scale: Self) -> Self {
        let mut max = Self::NEG_INF;
        for x in v.iter_mut() {
            *x = x.mul(scale);
            if *x > max {
                max = *x;
            }
        }
        max
    }

    /// `v <- exp(v - sub)`, returning the sum.
    fn exp_sub_sum(v: &mut [Self], sub: Self) -> Self {
        let mut sum = Self::ZERO;
        for x in v.iter_mut() {
            *x = x.sub(sub).exp();
            sum = sum.add(*x);
        }
        sum
    }

    fn dot(a: &[Self], b: &[Self]) -> Self {
        let mut s = Self::ZERO;
        for (&x, &y) in a.iter().zip(b) {
            s = s.add(x.mul(y));
        }
        s
    }

    /// `d <- scale * p * (d - dot)`.
    fn softmax_grad(p: &[Self], d: &mut [Self], dot: Self, scale: Self) {
        for (&pv, dv) in p.iter().zip(d.iter_mut()) {
            *dv = scale.mul(pv.mul(dv.sub(dot)));
        }
    }
}

macro_rules! elem {
    ($t:ty $(, $extra:item)*) => {
        impl Elem for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INF: Self = <$t>::NEG_INFINITY;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            $($extra)*
        }
    };
}
// f32: the vectorized loops of `vmath` (lane-wise sums, polynomial exp)
elem!(
    f32,
    fn scale_max(v: &mut [f32], scale: f32) -> f32 {
        vmath::scale_max(v, scale)
    },
    fn exp_sub_sum(v: &mut [f32], sub: f32) -> f32 {
        vmath::exp_sub_sum(v, sub)
    },
    fn exp_sub(v: &mut [f32], sub: f32) {
        vmath::exp_sub(v, sub)
    },
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        vmath::dot(a, b)
    },
    fn softmax_grad(p: &[f32], d: &mut [f32], dot: f32, scale: f32) {
        vmath::softmax_grad(p, d, dot, scale)
    }
);
elem!(f64);

/// Shape of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) batch: usize,
    pub(crate) len: usize,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
}

impl Dims {
    fn d(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// The op: attention of `[B, L, 3D]` into `[B, L, D]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attn {
    pub(crate) heads: usize,
    pub(crate) scale: f64,
    pub(crate) causal: bool,
}

impl Attn {
    fn dims(&self, l: &Layout) -> Result<Dims> {
        let (batch, len, three_d) = l.shape().dims3()?;
        if self.heads == 0 || !three_d.is_multiple_of(3 * self.heads) || three_d == 0 {
            bail!(
                "fused attention: last dimension {three_d} is not 3 x heads ({}) x head_dim",
                self.heads
            );
        }
        Ok(Dims {
            batch,
            len,
            heads: self.heads,
            head_dim: three_d / (3 * self.heads),
        })
    }
}

/// `dst (m x n) = beta * lhs (m x k) * rhs (k x n)`, every operand given by its pointer and its row
/// and column strides (in elements).
///
/// # Safety
/// Every element `(i, j)` addressed through the strides, for `i < rows` and `j < cols` of each
/// operand, must lie inside the allocation its pointer points into; `dst` must not overlap
/// `lhs` or `rhs`, and nothing else may access `dst` during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    (dst_rs, dst_cs): (usize, usize),
    lhs: *const T,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const T,
    (rhs_rs, rhs_cs): (usize, usize),
    beta: T,
) {
    // SAFETY: the caller's contract above is what `gemm::gemm` needs: in-bounds operands
    // through the given strides, a destination that nothing else accesses; `T` is f32 or f64.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            false,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            T::ZERO,
            beta,
            false,
            false,
            false,
            Parallelism::None,
        )
    };
}

/// `p = softmax(scale * (Q K^T) [+ mask])` for head `h` of one batch element `x` (`[L, 3D]`).
/// The forward pass (`lse` = `Store`) normalizes each row by its sum and keeps
/// `logsumexp = max + ln(sum)` of the row; the backward pass (`Use`) gets the probabilities back
/// in one pass as `exp(s - logsumexp)`.
///
/// `p` may be uninitialized: the product writes all of its first `l * l` elements (the `gemm`
/// crate's product with `read_dst` false does not read the destination; the debug-build NaN
/// fill of [`build`] would show it if it did), and the initialized view of them is returned.
fn probabilities<'p, T: Elem>(
    x: &[T],
    dm: Dims,
    h: usize,
    a: &Attn,
    p: &'p mut [MaybeUninit<T>],
    lse: Lse<'_>,
) -> &'p mut [T] {
    let (l, d, dh) = (dm.len, dm.d(), dm.head_dim);
    let rs = 3 * d;
    assert!(x.len() >= l * rs && p.len() >= l * l);
    let q = x[h * dh..].as_ptr();
    let k = x[d + h * dh..].as_ptr();
    let scale = T::from_f64(a.scale);
    // SAFETY: q and k rows i < l, columns < dh lie at offsets < (l - 1) * 3d + 2d + d <= x.len();
    // p is l x l, its own buffer.
    unsafe {
        matmul(
            (l, l, dh),
            p.as_mut_ptr().cast::<T>(),
            (l, 1),
            q,
            (rs, 1),
            k,
            (1, rs),
            scale,
        )
    };
    // SAFETY: the product above wrote all l * l elements.
    let p = unsafe { assume_init_mut(&mut p[..l * l]) };
    let mut lse = lse;
    for (i, row) in p.chunks_exact_mut(l).take(l).enumerate() {
        let keep = if a.causal { i + 1 } else { l };
        match &mut lse {
            Lse::Use(v) => T::exp_sub(&mut row[..keep], T::from_f64(v[i])),
            Lse::Store(v) => {
                let max = T::scale_max(&mut row[..keep], T::ONE);
                let sum = T::exp_sub_sum(&mut row[..keep], max);
                let inv = T::ONE.div(sum);
                for v in row[..keep].iter_mut() {
                    *v = v.mul(inv);
                }
                v[i] = max.to_f64() + sum.to_f64().ln();
            }
        }
        row[keep..].fill(T::ZERO);
    }
    p
}

/// The per-row log-sum-exp of the attention probabilities: written by the forward pass, read
/// by the backward pass.
enum Lse<'a> {
    Store(&'a mut [f64]),
    Use(&'a [f64]),
}

/// Forward pass of one batch element: `x` `[L, 3D]` into `out` `[L, D]`; with `keep` (`H x L x L`)
/// the probabilities of every head are left there for the backward pass.
fn forward_one<T: Elem>(
    x: &[T],
    out: &mut [MaybeUninit<T>],
    lse: &mut [f64],
    dm: Dims,
    a: &Attn,
    scratch: &mut Vec<T>,
    mut keep: Option<&mut [MaybeUninit<T>]>,
) {
    let (l, d, dh) = (dm.len, dm.d(), dm.head_dim);
    if keep.is_none() {
        scratch.resize(l * l, T::ZERO);
    }
    for (h, lse) in lse.chunks_exact_mut(l).enumerate().take(dm.heads) {
        let p = match keep.as_deref_mut() {
            Some(all) => &mut all[h * l * l..(h + 1) * l * l],
            // SAFETY: `probabilities` writes only computed values.
            None => unsafe { as_uninit_mut(scratch) },
        };
        let p = probabilities(x, dm, h, a, p, Lse::Store(lse));
        let v = x[2 * d + h * dh..].as_ptr();
        let o = out[h * dh..].as_mut_ptr().cast::<T>();
        // SAFETY: rows < l, columns < dh of v (row stride 3d) and of o (row stride d) lie inside
        // x and out; p is l x l; out does not overlap x or p. The product writes (does not
        // read) those columns of out, so the heads together write all of it.
        unsafe {
            matmul(
                (l, dh, l),
                o,
                (d, 1),
                p.as_ptr(),
                (l, 1),
                v,
                (3 * d, 1),
                T::ONE,
            )
        };
    }
}

/// Backward pass of one batch element: `x` `[L, 3D]`, `g` = dL/d(out) `[L, D]` into
/// `dx` `[L, 3D]`; `kept` is what the forward pass left in its `keep`, else the probabilities are
/// recomputed from the log-sum-exp rows.
#[allow(clippy::too_many_arguments)]
fn backward_one<T: Elem>(
    x: &[T],
    g: &[T],
    dx: &mut [MaybeUninit<T>],
    lse: &[f64],
    dm: Dims,
    a: &Attn,
    bufs: &mut (Vec<T>, Vec<T>),
    kept: Option<&[T]>,
) {
    let (l, d, dh) = (dm.len, dm.d(), dm.head_dim);
    let rs = 3 * d;
    let (scratch, dp) = bufs;
    if kept.is_none() {
        scratch.resize(l * l, T::ZERO);
    }
    dp.resize(l * l, T::ZERO);
    let scale = T::from_f64(a.scale);
    for (h, lse) in lse.chunks_exact(l).enumerate().take(dm.heads) {
        let p: &[T] = match kept {
            Some(all) => &all[h * l * l..(h + 1) * l * l],
            // SAFETY: `probabilities` writes only computed values.
            None => probabilities(
                x,
                dm,
                h,
                a,
                unsafe { as_uninit_mut(scratch) },
                Lse::Use(lse),
            ),
        };
        let q = x[h * dh..].as_ptr();
        let k = x[d + h * dh..].as_ptr();
        let v = x[2 * d + h * dh..].as_ptr();
        let go = g[h * dh..].as_ptr();
        // SAFETY (all four products): rows < l, columns < dh of q, k, v, dq, dk, dv (row stride
        // 3d) and of go (row stride d) lie inside x, dx and g; p and dp are l x l buffers of
        // their own; dx does not overlap x, g, p or dp.
        unsafe {
            // dV = P^T dO
            let dv = dx[2 * d + h * dh..].as_mut_ptr().cast::<T>();
            matmul(
                (l, dh, l),
                dv,
                (rs, 1),
                p.as_ptr(),
                (1, l),
                go,
                (d, 1),
                T::ONE,
            );
            // dP = dO V^T
            matmul(
                (l, l, dh),
                dp.as_mut_ptr(),
                (l, 1),
                go,
                (d, 1),
                v,
                (1, rs),
                T::ONE,
            );
        }
        // dS = scale * P * (dP - rowsum(dP * P)), in place in dp
        for (prow, drow) in p.chunks_exact(l).zip(dp.chunks_exact_mut(l)) {
            let dot = T::dot(prow, drow);
            T::softmax_grad(prow, drow, dot, scale);
        }
        unsafe {
            // dQ = dS K
            let dq = dx[h * dh..].as_mut_ptr().cast::<T>();
            matmul(
                (l, dh, l),
                dq,
                (rs, 1),
                dp.as_ptr(),
                (l, 1),
                k,
                (rs, 1),
                T::ONE,
            );
            // dK = dS^T Q
            let dk = dx[d + h * dh..].as_mut_ptr().cast::<T>();
            matmul(
                (l, dh, l),
                dk,
                (rs, 1),
                dp.as_ptr(),
                (1, l),
                q,
                (rs, 1),
                T::ONE,
            );
        }
    }
}

/// The output `[B, L, D]` and the log-sum-exp of every probability row `[B, H, L]`.
pub(crate) fn forward<T: Elem>(x: &[T], dm: Dims, a: &Attn, keep: bool) -> Forward<T> {
    let (l, d) = (dm.len, dm.d());
    assert!(x.len() == dm.batch * l * 3 * d);
    let mut lse = vec![0f64; dm.batch * dm.heads * l];
    let per = dm.heads * l * l;
    if l == 0 || d == 0 {
        let (out, probs) = (
            par_zeros(dm.batch * l * d),
            keep.then(|| par_zeros(dm.batch * per)),
        );
        return Forward { out, lse, probs };
    }
    let mut probs = None;
    // SAFETY (both builds): the chunks cover the vectors (batch chunks of l d and of per
    // elements), and `forward_one` writes all of its chunk of out (each head's product writes
    // its dh columns of every row, and the heads cover the d columns) and, when given one, all
    // of its chunk of probabilities (each head's l x l block, by `probabilities`).
    let out = unsafe {
        build(dm.batch * l * d, |out| {
            let work = out
                .par_chunks_mut(l * d)
                .zip(lse.par_chunks_mut(dm.heads * l))
                .zip(x.par_chunks(l * 3 * d));
            if keep {
                probs = Some(build(dm.batch * per, |pr| {
                    work.zip(pr.par_chunks_mut(per))
                        .for_each_init(Vec::new, |s, (((o, lse), x), p)| {
                            forward_one(x, o, lse, dm, a, s, Some(p))
                        })
                }));
            } else {
                work.for_each_init(Vec::new, |s, ((o, lse), x)| {
                    forward_one(x, o, lse, dm, a, s, None)
                });
            }
        })
    };
    Forward { out, lse, probs }
}

/// What [`forward`] returns: the output `[B, L, D]`, the log-sum-exp rows `[B, H, L]` and, when
/// asked to keep them, the probabilities `[B, H, L, L]`.
pub(crate) struct Forward<T> {
    pub(crate) out: Vec<T>,
    pub(crate) lse: Vec<f64>,
    pub(crate) probs: Option<Vec<T>>,
}

pub(crate) fn backward<T: Elem>(
    x: &[T],
    g: &[T],
    lse: &[f64],
    probs: Option<&[T]>,
    dm: Dims,
    a: &Attn,
) -> Vec<T> {
    let (l, d) = (dm.len, dm.d());
    assert!(x.len() == dm.batch * l * 3 * d && g.len() == dm.batch * l * d);
    assert!(lse.len() == dm.batch * dm.heads * l);
    let per = dm.heads * l * l;
    assert!(probs.is_none_or(|p| p.len() == dm.batch * per));
    if l == 0 || d == 0 {
        return par_zeros(dm.batch * l * 3 * d);
    }
    // SAFETY: the batch chunks of l 3d elements cover dx, and `backward_one` writes all of its
    // chunk: for every head the dV, dQ and dK products write (do not read) that head's dh
    // columns of the v, q and k thirds of every row.
    unsafe {
        build(dm.batch * l * 3 * d, |dx| {
            let work = dx
                .par_chunks_mut(l * 3 * d)
                .zip(x.par_chunks(l * 3 * d).zip(g.par_chunks(l * d)))
                .zip(lse.par_chunks(dm.heads * l));
            let bufs = || (Vec::new(), Vec::new());
            match probs {
                Some(pr) => work
                    .zip(pr.par_chunks(per))
                    .for_each_init(bufs, |b, (((dx, (x, g)), lse), p)| {
                        backward_one(x, g, dx, lse, dm, a, b, Some(p))
                    }),
                None => work.for_each_init(bufs, |b, ((dx, (x, g)), lse)| {
                    backward_one(x, g, dx, lse, dm, a, b, None)
                }),
            }
        })
    }
}

/// The graph node: [`Attn`] plus the log-sum-exp rows its forward pass computed, which its
/// backward pass reads instead of recomputing the row maxima and sums.
struct AttnOp {
    a: Attn,
    lse: Mutex<Option<Arc<Vec<f64>>>>,
}

impl CustomOp1 for AttnOp {
    fn name(&self) -> &'static str {
        "neurofm-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = self.a.dims(l)?;
        let name = self.name();
        let (out, lse) = match s {
            CpuStorage::F32(v) => {
                let f = forward(contiguous(v, l, name)?, dm, &self.a, false);
                (CpuStorage::F32(f.out), f.lse)
            }
            CpuStorage::F64(v) => {
                let f = forward(contiguous(v, l, name)?, dm, &self.a, false);
                (CpuStorage::F64(f.out), f.lse)
            }
            other => bail!("{name}: unsupported dtype {:?}", other.dtype()),
        };
        match self.lse.lock() {
            Ok(mut slot) => *slot = Some(Arc::new(lse)),
            Err(_) => bail!("{name}: poisoned lock"),
        }
        Ok((out, Shape::from((dm.batch, dm.len, dm.d()))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let lse = match self.lse.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => bail!("{}: poisoned lock", self.name()),
        };
        let Some(lse) = lse else {
            bail!("{}: backward pass before the forward pass", self.name());
        };
        let g = grad_res.contiguous()?;
        Ok(Some(
            arg.contiguous()?
                .apply_op2(&g, AttnBwd { a: self.a, lse })?,
        ))
    }
}

/// `(x, dL/d(out)) -> dL/dx` of [`AttnOp`].
struct AttnBwd {
    a: Attn,
    lse: Arc<Vec<f64>>,
}

impl CustomOp2 for AttnBwd {
    fn name(&self) -> &'static str {
        "neurofm-attention-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dm = self.a.dims(l1)?;
        if l2.shape().dims() != [dm.batch, dm.len, dm.d()] {
            bail!(
                "{}: gradient {:?} does not match the output of {:?}",
                self.name(),
                l2.shape(),
                l1.shape()
            );
        }
        if self.lse.len() != dm.batch * dm.heads * dm.len {
            bail!("{}: saved rows do not match {:?}", self.name(), l1.shape());
        }
        let name = self.name();
        let out = float_kernel!(name, [s1 @ l1 => x, s2 @ l2 => g], {
            backward(x, g, &self.lse, None, dm, &self.a)
        });
        Ok((out, l1.shape().clone()))
    }
}

/// Multi-head attention of `qkv` `[B, L, 3 * D]` (laid out `[B, L, 3, H, Dh]`, as the `qkv`
/// projection produces it) into `[B, L, D]` (laid out `[B, L, H, Dh]`), fused on the CPU (see
/// the module docs). Callers use it where [`crate::ops`] takes its fused kernels, and the
/// composition of candle ops elsewhere.
pub fn fused_attention(qkv: &Tensor, heads: usize, scale: f64, causal: bool) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1(AttnOp {
        a: Attn {
            heads,
            scale,
            causal,
        },
        lse: Mutex::new(None),
    })
}
