//! The AdamW update of one parameter tensor, in place on the CPU.
//!
//! Written with candle's tensor ops, one AdamW update is about a dozen element-wise ops per
//! parameter, each allocating a full-size result (`m * b1`, `g * (1 - b1)`, their sum, `g^2`,
//! ...). [`update`] instead rewrites the moments and the parameter in their own storage with
//! three parallel passes and no allocation: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! then `p <- p (1 - lr wd) - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)`.
//!
//! Every pass performs the same floating-point operations, in the same order and with the same
//! rounded constants, as the composed version ([`update_composed`], which runs off the CPU and
//! under [`crate::ops::with_composed_ops`]), so both give bit-identical results; the test
//! `adamw_in_place_equals_composed` in `tests/gradients.rs` checks that.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;

use crate::ops::fused_on;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The scalars of one AdamW step (PyTorch's `torch.optim.AdamW`, decoupled weight decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f64,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f64,
    /// `lr * weight_decay` for this tensor (0 for tensors without decay).
    pub lr_decay: f64,
}

impl AdamWStep {
    /// The scalars of update number `t` (1-based) with learning rate `lr`.
    pub fn new(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, t: i32) -> Self {
        AdamWStep {
            beta1,
            beta2,
            eps,
            step_size: lr / (1.0 - beta1.powi(t)),
            bc2_sqrt: (1.0 - beta2.powi(t)).sqrt(),
            lr_decay: lr * weight_decay,
        }
    }

    /// The same step without weight decay (for biases and norms).
    pub fn without_decay(self) -> Self {
        AdamWStep {
            lr_decay: 0.0,
            ..self
        }
    }
}

/// Updates the moments `m`, `v` and the variable `p` from its gradient `g`. On the CPU (all four
/// contiguous, same shape and dtype) it works in place; elsewhere it computes new moments with
/// candle's ops, replaces `*m` and `*v` with them (detached) and sets `p`.
pub fn update(p: &Var, m: &mut Tensor, v: &mut Tensor, g: &Tensor, s: &AdamWStep) -> Result<()> {
    let pt = p.as_tensor();
    let in_place = fused_on(pt)
        && [pt, &*m, &*v, g]
            .iter()
            .all(|t| t.shape() == pt.shape() && t.dtype() == pt.dtype())
        && [pt, &*m, &*v].iter().all(|t| t.is_contiguous());
    if !in_place {
        return update_composed(p, m, v, g, s);
    }
    // A transposed weight's gradient arrives as a strided view: one copy beats a dozen ops.
    let g = &g.contiguous()?;
    m.inplace_op2(
        g,
        &Moment {
            beta: s.beta1,
            square: false,
        },
    )?;
    v.inplace_op2(
        g,
        &Moment {
            beta: s.beta2,
            square: true,
        },
    )?;
    pt.inplace_op3(m, v, &Param(*s))
}

/// [`update`] with candle's element-wise ops (any device).
pub fn update_composed(
    p: &Var,
    m: &mut Tensor,
    v: &mut Tensor,
    g: &Tensor,
    s: &AdamWStep,
) -> Result<()> {
    let g = g.detach();
    let pt = p.as_tensor();
    let new_m = ((&*m * s.beta1)? + (&g * (1.0 - s.beta1))?)?;
    let new_v = ((&*v * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?;
    let decayed = if s.lr_decay != 0.0 {
        (pt * (1.0 - s.lr_decay))?
    } else {
        pt.clone()
    };
    let denom = (new_v.sqrt()? / s.bc2_sqrt)?.affine(1.0, s.eps)?;
    p.set(&(decayed - ((&new_m / denom)? * s.step_size)?)?.detach())?;
    *m = new_m.detach();
    *v = new_v.detach();
    Ok(())
}

/// The slice of a contiguous CPU tensor's storage.
fn slice_of<'a, T>(s: &'a [T], l: &Layout, op: &str) -> Result<&'a [T]> {
    crate::ops::contiguous(s, l, op)
}

fn slice_of_mut<'a, T>(s: &'a mut [T], l: &Layout, op: &str) -> Result<&'a mut [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => match s.get_mut(a..b) {
            Some(s) => Ok(s),
            None => bail!("{op}: storage shorter than its layout"),
        },
        None => bail!("{op}: input has to be contiguous"),
    }
}

fn same_len(op: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        bail!("{op}: {a} elements against {b}");
    }
    Ok(())
}

/// `m <- beta m + (1 - beta) g` (or `g * g` with `square`), as candle's
/// `(m * beta) + (g * (1 - beta))` computes it: `x * c + 0` per affine, rounded constants.
struct Moment {
    beta: f64,
    square: bool,
}

macro_rules! moment_pass {
    ($t:ty, $m:expr, $g:expr, $beta:expr, $square:expr) => {{
        let (m, g): (&mut [$t], &[$t]) = ($m, $g);
        let b = $beta as $t;
        let c = (1.0 - $beta) as $t;
        let zero: $t = 0.0;
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                for (m, &g) in m.iter_mut().zip(g) {
                    let g = if $square { g * g } else { g };
                    *m = (*m * b + zero) + (g * c + zero);
                }
            });
    }};
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "neurofm-adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let name = self.name();
        match (s1, s2) {
            (CpuStorage::F32(m), CpuStorage::F32(g)) => {
                let (m, g) = (slice_of_mut(m, l1, name)?, slice_of(g, l2, name)?);
                same_len(name, m.len(), g.len())?;
                moment_pass!(f32, m, g, self.beta, self.square);
            }
            (CpuStorage::F64(m), CpuStorage::F64(g)) => {
                let (m, g) = (slice_of_mut(m, l1, name)?, slice_of(g, l2, name)?);
                same_len(name, m.len(), g.len())?;
                moment_pass!(f64, m, g, self.beta, self.square);
            }
            (a, b) => bail!("{name}: unsupported dtypes {:?} {:?}", a.dtype(), b.dtype()),
        }
        Ok(())
    }
}

/// `p <- p (1 - lr wd) - step_size * m / (sqrt(v) * (1 / bc2_sqrt) + eps)` from the updated
/// moments, in the composed version's operation order.
struct Param(AdamWStep);

macro_rules! param_pass {
    ($t:ty, $p:expr, $m:expr, $v:expr, $s:expr) => {{
        let (p, m, v): (&mut [$t], &[$t], &[$t]) = ($p, $m, $v);
        let s: &AdamWStep = $s;
        let decay = s.lr_decay != 0.0;
        let keep = (1.0 - s.lr_decay) as $t;
        let inv_bc2 = (1.0 / s.bc2_sqrt) as $t;
        let eps = s.eps as $t;
        let step = s.step_size as $t;
        let (zero, one): ($t, $t) = (0.0, 1.0);
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(p, (m, v))| {
                for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                    let decayed = if decay { *p * keep + zero } else { *p };
                    let denom = (v.sqrt() * inv_bc2 + zero) * one + eps;
                    *p = decayed - ((m / denom) * step + zero);
                }
            });
    }};
}

impl InplaceOp3 for Param {
    fn name(&self) -> &'static str {
        "neurofm-adamw-param"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let name = self.name();
        match (s1, s2, s3) {
            (CpuStorage::F32(p), CpuStorage::F32(m), CpuStorage::F32(v)) => {
                let p = slice_of_mut(p, l1, name)?;
                let (m, v) = (slice_of(m, l2, name)?, slice_of(v, l3, name)?);
                same_len(name, p.len(), m.len())?;
                same_len(name, p.len(), v.len())?;
                param_pass!(f32, p, m, v, &self.0);
            }
            (CpuStorage::F64(p), CpuStorage::F64(m), CpuStorage::F64(v)) => {
                let p = slice_of_mut(p, l1, name)?;
                let (m, v) = (slice_of(m, l2, name)?, slice_of(v, l3, name)?);
                same_len(name, p.len(), m.len())?;
                same_len(name, p.len(), v.len())?;
                param_pass!(f64, p, m, v, &self.0);
            }
            (a, b, c) => bail!(
                "{name}: unsupported dtypes {:?} {:?} {:?}",
                a.dtype(),
                b.dtype(),
                c.dtype()
            ),
        }
        Ok(())
    }
}
