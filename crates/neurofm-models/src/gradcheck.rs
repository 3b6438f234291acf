//! Finite-difference gradient checks.
//!
//! [`check_gradients`] compares the backprop gradient of a scalar loss with respect to each
//! variable with central differences `(L(v + h) - L(v - h)) / 2h` at a few coordinates. A
//! variable whose gradient was silently dropped (e.g. by an op applied without backward)
//! gets an analytic gradient of zero and a relative error of 1.

use candle_core::{DType, Device, Result, Tensor, Var};

use crate::mask::SplitMix64;

/// The outcome for one variable.
#[derive(Debug, Clone)]
pub struct GradReport {
    pub name: String,
    /// `|analytic - numeric| / max(|analytic|, |numeric|)` over the probed coordinates (L2).
    pub rel_err: f64,
    /// L2 norm of the numeric gradient at the probed coordinates (a check is only
    /// meaningful when this is clearly non-zero).
    pub numeric_norm: f64,
    /// L2 norm of the backprop gradient at the probed coordinates.
    pub analytic_norm: f64,
    /// Whether backprop produced a gradient for the variable at all.
    pub has_grad: bool,
    pub n_probed: usize,
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// Checks `d loss / d var` for every `(name, var)` at up to `n_probe` coordinates each
/// (chosen by `seed`), with central differences of step `h`.
pub fn check_gradients(
    loss: &dyn Fn() -> Result<Tensor>,
    vars: &[(String, Var)],
    n_probe: usize,
    h: f64,
    seed: u64,
) -> Result<Vec<GradReport>> {
    let l0 = loss()?;
    let grads = l0.backward()?;
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(vars.len());
    for (name, var) in vars {
        let shape = var.shape().clone();
        let dtype = var.dtype();
        let n = shape.elem_count();
        let grad = grads.get(var.as_tensor());
        let analytic: Vec<f64> = match grad {
            Some(g) => g.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?,
            None => vec![0.0; n],
        };
        let base: Vec<f64> = var.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
        let idx: Vec<usize> = if n <= n_probe {
            (0..n).collect()
        } else {
            (0..n_probe).map(|_| rng.below(n)).collect()
        };
        let (mut d2, mut a2, mut n2) = (0.0, 0.0, 0.0);
        let mut vals = base.clone();
        for &i in &idx {
            vals[i] = base[i] + h;
            var.set(&Tensor::from_vec(vals.clone(), &shape, var.device())?.to_dtype(dtype)?)?;
            let lp = scalar(&loss()?)?;
            vals[i] = base[i] - h;
            var.set(&Tensor::from_vec(vals.clone(), &shape, var.device())?.to_dtype(dtype)?)?;
            let lm = scalar(&loss()?)?;
            vals[i] = base[i];
            let num = (lp - lm) / (2.0 * h);
            let ana = analytic[i];
            d2 += (num - ana) * (num - ana);
            a2 += ana * ana;
            n2 += num * num;
        }
        var.set(&Tensor::from_vec(base, &shape, var.device())?.to_dtype(dtype)?)?;
        let denom = a2.sqrt().max(n2.sqrt());
        out.push(GradReport {
            name: name.clone(),
            rel_err: if denom > 0.0 { d2.sqrt() / denom } else { 0.0 },
            numeric_norm: n2.sqrt(),
            analytic_norm: a2.sqrt(),
            has_grad: grad.is_some(),
            n_probed: idx.len(),
        });
    }
    Ok(out)
}

/// A deterministic tensor of uniform values in `[lo, hi)` (from `seed`), for tests.
pub fn seeded_uniform(
    shape: &[usize],
    lo: f64,
    hi: f64,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut rng = SplitMix64::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64))
        .collect();
    Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
}
