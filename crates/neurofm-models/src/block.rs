//! A whole pre-norm transformer block as one graph node on the CPU, with its backward pass.
//!
//! `y = x1 + fc2(gelu(fc1(norm2(x1))))`, `x1 = x + proj(attn(qkv(norm1(x))))`, the block of
//! [`crate::layers::Block`]. The per-op path (fused layer norm, linear, attention and GELU
//! nodes, two residual adds) leaves candle's backward pass ten nodes per block to visit, and for
//! every input of every node it zero-fills a gradient buffer and adds the node's gradient into
//! it, on the calling thread while the worker threads wait (on the base MAE the step used
//! 1.72-1.78 of 2 cores; BENCHMARKS.md, "Train step"). Here candle sees one node with two
//! inputs: the block input `x` `[B, L, D]` and the block's parameters concatenated into one
//! vector (`Tensor::cat` of the flattened weights; its backward pass hands each parameter its
//! slice of the gradient).
//!
//! The forward pass keeps what the backward pass reads: the two layer-norm outputs, the `qkv`
//! projection, the attention output and its log-sum-exp rows (and its probabilities, while
//! [`keep_probabilities`] says so), `x1`, the MLP's pre-activation and its GELU. The backward
//! pass chains the same kernels as the per-op nodes
//! ([`crate::fused`] linear products and column sums, [`crate::ops`] layer norm,
//! [`crate::attention`]) and folds the residual gradients into the layer-norm backward passes.
//! `tests/gradients.rs` checks it against finite differences and against the composed path.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::attention::{self, Attn, Dims, Elem};
use crate::fused::{
    column_sum_into, linear_dw_into, linear_dx_into, linear_dx_new, linear_fwd_new, Gelu,
};
use crate::ops::{build, contiguous, layer_norm_bwd_into, layer_norm_rows, par_zeros, Real};

/// Shape and constants of one block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub dim: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    pub qkv_bias: bool,
    pub causal: bool,
    pub eps: f64,
}

/// Where each parameter lies in the concatenated parameter vector, in the order of
/// [`crate::layers::Block`]'s parameters: `norm1.{weight,bias}`, `attn.qkv.{weight,bias}` (the
/// bias only with `qkv_bias`), `attn.proj.{weight,bias}`, `norm2.{weight,bias}`,
/// `mlp.fc1.{weight,bias}`, `mlp.fc2.{weight,bias}`.
#[derive(Debug, Clone)]
struct Offsets {
    n1w: Range<usize>,
    n1b: Range<usize>,
    qkv_w: Range<usize>,
    qkv_b: Option<Range<usize>>,
    proj_w: Range<usize>,
    proj_b: Range<usize>,
    n2w: Range<usize>,
    n2b: Range<usize>,
    fc1_w: Range<usize>,
    fc1_b: Range<usize>,
    fc2_w: Range<usize>,
    fc2_b: Range<usize>,
    total: usize,
}

impl Offsets {
    fn new(s: &Spec) -> Self {
        let (d, m) = (s.dim, s.mlp_dim);
        let mut at = 0;
        let mut next = |len: usize| {
            let r = at..at + len;
            at += len;
            r
        };
        let n1w = next(d);
        let n1b = next(d);
        let qkv_w = next(3 * d * d);
        let qkv_b = s.qkv_bias.then(|| next(3 * d));
        let proj_w = next(d * d);
        let proj_b = next(d);
        let n2w = next(d);
        let n2b = next(d);
        let fc1_w = next(m * d);
        let fc1_b = next(m);
        let fc2_w = next(d * m);
        let fc2_b = next(d);
        Self {
            n1w,
            n1b,
            qkv_w,
            qkv_b,
            proj_w,
            proj_b,
            n2w,
            n2b,
            fc1_w,
            fc1_b,
            fc2_w,
            fc2_b,
            total: at,
        }
    }
}

/// The element types of the block kernels.
trait Num: Real + Elem + Gelu {}
impl Num for f32 {}
impl Num for f64 {}

/// What the forward pass keeps for the backward pass (`rows = B * L`).
struct Saved<T> {
    /// `norm1(x)`, `[rows, D]`.
    ln1: Vec<T>,
    /// `qkv(ln1)`, `[rows, 3D]`.
    qkv: Vec<T>,
    /// The attention output, `[rows, D]`.
    att: Vec<T>,
    /// Its log-sum-exp rows, `[B, H, L]`.
    lse: Vec<f64>,
    /// Its probabilities `[B, H, L, L]`, where [`keep_probabilities`] says so.
    probs: Option<Vec<T>>,
    /// `x + proj(att)`, `[rows, D]`.
    x1: Vec<T>,
    /// `norm2(x1)`, `[rows, D]`.
    ln2: Vec<T>,
    /// `fc1(ln2)`, `[rows, M]`.
    h: Vec<T>,
    /// `gelu(h)`, `[rows, M]`.
    a: Vec<T>,
}

enum SavedAny {
    F32(Saved<f32>),
    F64(Saved<f64>),
}

/// The graph node.
struct BlockOp {
    spec: Spec,
    saved: Mutex<Option<Arc<SavedAny>>>,
}

fn dims(spec: &Spec, x: &Layout, p: &Layout) -> Result<Dims> {
    let (batch, len, d) = x.shape().dims3()?;
    let total = Offsets::new(spec).total;
    if d != spec.dim || spec.heads == 0 || !d.is_multiple_of(spec.heads) {
        bail!(
            "fused block: input {:?} does not match d_model {} / {} heads",
            x.shape(),
            spec.dim,
            spec.heads
        );
    }
    if p.shape().dims() != [total] {
        bail!(
            "fused block: parameter vector {:?}, expected [{total}]",
            p.shape()
        );
    }
    Ok(Dims {
        batch,
        len,
        heads: spec.heads,
        head_dim: d / spec.heads,
    })
}

fn attn_of(spec: &Spec) -> Attn {
    Attn {
        heads: spec.heads,
        scale: 1.0 / ((spec.dim / spec.heads) as f64).sqrt(),
        causal: spec.causal,
    }
}

/// Whether the forward pass keeps the attention probabilities for the backward pass, which then
/// skips recomputing them from the log-sum-exp rows (a `Q K^T` product and an `exp` per score;
/// on the 2-core benchmark machine the base MAE's step ~3% and the tiny one's ~2% faster, for
/// 287 and 32 MiB more peak RSS: BENCHMARKS.md, "Train step"). They take `B H L^2` values
/// against the `B L (7 D + 2 M)` the block saves anyway; they are kept while that at most
/// triples the block's saved memory, so long sequences still recompute them, as flash
/// attention does.
fn keep_probabilities(spec: &Spec, dm: Dims) -> bool {
    dm.heads * dm.len <= 2 * (7 * spec.dim + 2 * spec.mlp_dim)
}

fn forward<T: Num>(x: &[T], p: &[T], spec: &Spec, dm: Dims) -> (Vec<T>, Saved<T>) {
    let o = Offsets::new(spec);
    let (d, m) = (spec.dim, spec.mlp_dim);
    let rows = dm.batch * dm.len;
    let ln1 = layer_norm_rows(x, &p[o.n1w.clone()], &p[o.n1b.clone()], spec.eps);
    let qkv_b = o.qkv_b.clone().map(|r| &p[r]);
    let qkv = linear_fwd_new(&ln1, &p[o.qkv_w.clone()], qkv_b, None, (rows, 3 * d, d));
    let attention::Forward {
        out: att,
        lse,
        probs,
    } = attention::forward(&qkv, dm, &attn_of(spec), keep_probabilities(spec, dm));
    let proj_b = Some(&p[o.proj_b.clone()]);
    let x1 = linear_fwd_new(&att, &p[o.proj_w.clone()], proj_b, Some(x), (rows, d, d));
    let ln2 = layer_norm_rows(&x1, &p[o.n2w.clone()], &p[o.n2b.clone()], spec.eps);
    let fc1_b = Some(&p[o.fc1_b.clone()]);
    let h = linear_fwd_new(&ln2, &p[o.fc1_w.clone()], fc1_b, None, (rows, m, d));
    // SAFETY: `gelu_into` writes every element of an output as long as h.
    let a = unsafe { build(h.len(), |a| T::gelu_into(&h, a)) };
    let fc2_b = Some(&p[o.fc2_b.clone()]);
    let y = linear_fwd_new(&a, &p[o.fc2_w.clone()], fc2_b, Some(&x1), (rows, d, m));
    let saved = Saved {
        ln1,
        qkv,
        att,
        lse,
        probs,
        x1,
        ln2,
        h,
        a,
    };
    (y, saved)
}

/// `[dx (rows * D), dparams]` for the output gradient `g`.
fn backward<T: Num>(x: &[T], p: &[T], g: &[T], s: &Saved<T>, spec: &Spec, dm: Dims) -> Vec<T> {
    let o = Offsets::new(spec);
    let (d, m) = (spec.dim, spec.mlp_dim);
    let rows = dm.batch * dm.len;
    let zeros = |n: usize| par_zeros::<T>(n);
    let mut out = zeros(rows * d + o.total);
    let (dx, dp) = out.split_at_mut(rows * d);

    // y = x1 + fc2(a)
    let mut dh = linear_dx_new(g, &p[o.fc2_w.clone()], (rows, d, m)); // da for now
    linear_dw_into(g, &s.a, &mut dp[o.fc2_w.clone()], (rows, d, m));
    column_sum_into(g, &mut dp[o.fc2_b.clone()]);
    // a = gelu(h): da becomes dh in place
    T::gelu_grad_in_place(&s.h, &mut dh);
    // h = fc1(ln2)
    let dln2 = linear_dx_new(&dh, &p[o.fc1_w.clone()], (rows, m, d));
    linear_dw_into(&dh, &s.ln2, &mut dp[o.fc1_w.clone()], (rows, m, d));
    column_sum_into(&dh, &mut dp[o.fc1_b.clone()]);
    drop(dh);
    // ln2 = norm2(x1); the residual path adds g
    let mut dx1 = zeros(rows * d);
    {
        let (dw, db) = split_pair(dp, &o.n2w, &o.n2b);
        let w = &p[o.n2w.clone()];
        layer_norm_bwd_into(&s.x1, w, &dln2, spec.eps, Some(g), &mut dx1, dw, db);
    }
    // x1 = x + proj(att)
    let mut datt = dln2; // same size, no longer needed
    linear_dx_into(&dx1, &p[o.proj_w.clone()], &mut datt, (rows, d, d));
    linear_dw_into(&dx1, &s.att, &mut dp[o.proj_w.clone()], (rows, d, d));
    column_sum_into(&dx1, &mut dp[o.proj_b.clone()]);
    let probs = s.probs.as_deref();
    let dqkv = attention::backward(&s.qkv, &datt, &s.lse, probs, dm, &attn_of(spec));
    // qkv = qkv(ln1)
    let mut dln1 = datt;
    linear_dx_into(&dqkv, &p[o.qkv_w.clone()], &mut dln1, (rows, 3 * d, d));
    linear_dw_into(&dqkv, &s.ln1, &mut dp[o.qkv_w.clone()], (rows, 3 * d, d));
    if let Some(r) = o.qkv_b.clone() {
        column_sum_into(&dqkv, &mut dp[r]);
    }
    // ln1 = norm1(x); the residual path adds dx1
    let (dw, db) = split_pair(dp, &o.n1w, &o.n1b);
    let w = &p[o.n1w.clone()];
    layer_norm_bwd_into(x, w, &dln1, spec.eps, Some(&dx1), dx, dw, db);
    out
}

/// Two disjoint, adjacent ranges `a` then `b` of `v`, mutably.
fn split_pair<'a, T>(
    v: &'a mut [T],
    a: &Range<usize>,
    b: &Range<usize>,
) -> (&'a mut [T], &'a mut [T]) {
    debug_assert!(a.end == b.start);
    let (first, second) = v[a.start..b.end].split_at_mut(a.len());
    (first, second)
}

impl CustomOp2 for BlockOp {
    fn name(&self) -> &'static str {
        "neurofm-block"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dm = dims(&self.spec, l1, l2)?;
        let name = self.name();
        let (y, saved) = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(p)) => {
                let (x, p) = (contiguous(x, l1, name)?, contiguous(p, l2, name)?);
                let (y, s) = forward(x, p, &self.spec, dm);
                (CpuStorage::F32(y), SavedAny::F32(s))
            }
            (CpuStorage::F64(x), CpuStorage::F64(p)) => {
                let (x, p) = (contiguous(x, l1, name)?, contiguous(p, l2, name)?);
                let (y, s) = forward(x, p, &self.spec, dm);
                (CpuStorage::F64(y), SavedAny::F64(s))
            }
            (a, b) => bail!("{name}: unsupported dtypes {:?} {:?}", a.dtype(), b.dtype()),
        };
        match self.saved.lock() {
            Ok(mut slot) => *slot = Some(Arc::new(saved)),
            Err(_) => bail!("{name}: poisoned lock"),
        }
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = match self.saved.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => bail!("{}: poisoned lock", self.name()),
        };
        let Some(saved) = saved else {
            bail!("{}: backward pass before the forward pass", self.name());
        };
        let n = x.elem_count();
        let total = params.elem_count();
        let all = x.detach().contiguous()?.apply_op3(
            &params.detach().contiguous()?,
            &grad_res.contiguous()?,
            BlockBwd {
                spec: self.spec,
                saved,
            },
        )?;
        let dx = all.narrow(0, 0, n)?.reshape(x.shape())?;
        let dp = all.narrow(0, n, total)?;
        Ok((Some(dx), Some(dp)))
    }
}

/// `(x, params, dL/dy) -> [dL/dx, dL/dparams]` (flattened, concatenated) of [`BlockOp`].
struct BlockBwd {
    spec: Spec,
    saved: Arc<SavedAny>,
}

impl CustomOp3 for BlockBwd {
    fn name(&self) -> &'static str {
        "neurofm-block-bwd"
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
        let dm = dims(&self.spec, l1, l2)?;
        let name = self.name();
        if l3.shape() != l1.shape() {
            bail!(
                "{name}: gradient {:?} does not match the block output {:?}",
                l3.shape(),
                l1.shape()
            );
        }
        let out = match (s1, s2, s3, self.saved.as_ref()) {
            (CpuStorage::F32(x), CpuStorage::F32(p), CpuStorage::F32(g), SavedAny::F32(s)) => {
                let x = contiguous(x, l1, name)?;
                let (p, g) = (contiguous(p, l2, name)?, contiguous(g, l3, name)?);
                CpuStorage::F32(backward(x, p, g, s, &self.spec, dm))
            }
            (CpuStorage::F64(x), CpuStorage::F64(p), CpuStorage::F64(g), SavedAny::F64(s)) => {
                let x = contiguous(x, l1, name)?;
                let (p, g) = (contiguous(p, l2, name)?, contiguous(g, l3, name)?);
                CpuStorage::F64(backward(x, p, g, s, &self.spec, dm))
            }
            (a, b, c, _) => bail!(
                "{name}: unsupported or mismatched dtypes {:?} {:?} {:?}",
                a.dtype(),
                b.dtype(),
                c.dtype()
            ),
        };
        let len = l1.shape().elem_count() + l2.shape().elem_count();
        Ok((out, Shape::from(len)))
    }
}

/// The block `x` `[B, L, D]` -> `[B, L, D]` as one node, `params` in the order of [`Offsets`]
/// (each tensor flattened into one vector here; its gradient flows back to each of them).
pub(crate) fn fused_block(x: &Tensor, params: &[&Tensor], spec: Spec) -> Result<Tensor> {
    let flat = params
        .iter()
        .map(|p| p.flatten_all())
        .collect::<Result<Vec<_>>>()?;
    let flat = Tensor::cat(&flat, 0)?;
    x.contiguous()?.apply_op2(
        &flat,
        BlockOp {
            spec,
            saved: Mutex::new(None),
        },
    )
}
