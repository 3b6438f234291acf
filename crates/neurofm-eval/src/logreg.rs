//! Multinomial logistic regression with an L2 penalty, fitted in f64 by L-BFGS.
//!
//! Objective (scikit-learn's `LogisticRegression(multi_class="multinomial", solver="lbfgs")`):
//! `C * sum_i w_i * (-log p(y_i | x_i)) + 0.5 * ||W||^2`, softmax over all `K` classes, the
//! intercepts unpenalized (and returned centred: they sum to zero, as the gradient keeps them).
//! Checked against scikit-learn by `tests/logreg_reference.rs`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::metrics::{balanced_accuracy, confusion_matrix};

/// How training samples are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every sample weighs 1.
    None,
    /// `n / (n_classes * count(class))`, as scikit-learn's `class_weight="balanced"`.
    #[default]
    Balanced,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRegConfig {
    /// Inverse regularization strength (scikit-learn's `C`).
    pub c: f64,
    pub class_weight: ClassWeight,
    pub max_iter: usize,
    /// Stop when the largest gradient component of the (sample-weight normalized) objective is
    /// below this.
    pub gtol: f64,
}

impl Default for LogRegConfig {
    fn default() -> Self {
        LogRegConfig {
            c: 1.0,
            class_weight: ClassWeight::Balanced,
            max_iter: 2000,
            gtol: 1e-9,
        }
    }
}

/// A fitted model: `coef` is `[n_classes, n_features]` row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogReg {
    pub n_classes: usize,
    pub n_features: usize,
    pub coef: Vec<f64>,
    pub intercept: Vec<f64>,
    pub n_iter: usize,
    pub converged: bool,
}

/// Per-sample weights for `y` under `cw`.
pub fn sample_weights(y: &[usize], n_classes: usize, cw: ClassWeight) -> Vec<f64> {
    match cw {
        ClassWeight::None => vec![1.0; y.len()],
        ClassWeight::Balanced => {
            let mut counts = vec![0usize; n_classes];
            for &v in y {
                if v < n_classes {
                    counts[v] += 1;
                }
            }
            y.iter()
                .map(|&v| y.len() as f64 / (n_classes as f64 * counts[v].max(1) as f64))
                .collect()
        }
    }
}

/// Numerically stable softmax of `z` in place.
fn softmax(z: &mut [f64]) {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in z.iter_mut() {
        *v /= s;
    }
}

struct Problem<'a> {
    x: &'a [f64],
    y: &'a [usize],
    w: Vec<f64>,
    n: usize,
    d: usize,
    k: usize,
    /// Penalty factor on ||W||^2 / 2 after dividing the objective by `C * sum(w)`.
    lambda: f64,
    wsum: f64,
}

impl Problem<'_> {
    /// Objective and gradient at `theta = [W (k*d), b (k)]`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let (k, d) = (self.k, self.d);
        let (wmat, b) = theta.split_at(k * d);
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0.0;
        let mut z = vec![0.0; k];
        for i in 0..self.n {
            let xi = &self.x[i * d..(i + 1) * d];
            for c in 0..k {
                z[c] = b[c] + dot(&wmat[c * d..(c + 1) * d], xi);
            }
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let yi = self.y[i];
            let wi = self.w[i] / self.wsum;
            loss += wi * (lse - z[yi]);
            for c in 0..k {
                let p = (z[c] - lse).exp();
                let r = wi * (p - if c == yi { 1.0 } else { 0.0 });
                if r != 0.0 {
                    axpy(r, xi, &mut grad[c * d..(c + 1) * d]);
                    grad[k * d + c] += r;
                }
            }
        }
        let mut pen = 0.0;
        for (g, t) in grad[..k * d].iter_mut().zip(wmat) {
            pen += t * t;
            *g += self.lambda * t;
        }
        loss + 0.5 * self.lambda * pen
    }
}

/// `y += a * x`.
fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// Dot product with eight independent partial sums, so the compiler can keep them in vector
/// registers (a single running sum is a serial dependency chain in IEEE arithmetic).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

impl LogReg {
    /// Fits on `x` (`[n, d]` row-major) with labels `y` in `0..n_classes`. Every class must
    /// be present.
    pub fn fit(
        x: &[f64],
        d: usize,
        y: &[usize],
        n_classes: usize,
        cfg: &LogRegConfig,
    ) -> Result<LogReg, EvalError> {
        Self::fit_from(x, d, y, n_classes, cfg, None)
    }

    /// [`LogReg::fit`] started from `init` (a fit of the same data at another C, as along a
    /// regularization path) instead of zero. The objective is strictly convex, so the optimum
    /// is the same; only the number of iterations changes.
    pub fn fit_from(
        x: &[f64],
        d: usize,
        y: &[usize],
        n_classes: usize,
        cfg: &LogRegConfig,
        init: Option<&LogReg>,
    ) -> Result<LogReg, EvalError> {
        let n = y.len();
        if x.len() != n * d {
            return Err(EvalError::Shape {
                what: "features [n, d]".into(),
                expected: n * d,
                got: x.len(),
            });
        }
        if !(cfg.c.is_finite() && cfg.c > 0.0) {
            return Err(EvalError::config(
                "C",
                format!("must be > 0, got {}", cfg.c),
            ));
        }
        if n_classes < 2 {
            return Err(EvalError::config("classes", "need at least 2 classes"));
        }
        let mut counts = vec![0usize; n_classes];
        for &v in y {
            if v >= n_classes {
                return Err(EvalError::config(
                    "labels",
                    format!("label {v} out of range for {n_classes} classes"),
                ));
            }
            counts[v] += 1;
        }
        if let Some(missing) = counts.iter().position(|&c| c == 0) {
            return Err(EvalError::NotEnoughData(format!(
                "class {missing} has no training sample"
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(EvalError::Numerical {
                what: "logistic regression".into(),
                reason: "non-finite feature value".into(),
            });
        }
        let w = sample_weights(y, n_classes, cfg.class_weight);
        let wsum: f64 = w.iter().sum();
        let prob = Problem {
            x,
            y,
            n,
            d,
            k: n_classes,
            lambda: 1.0 / (cfg.c * wsum),
            w,
            wsum,
        };
        let p = n_classes * (d + 1);
        let mut theta = vec![0.0; p];
        if let Some(m) = init {
            if m.n_classes == n_classes && m.n_features == d {
                theta[..n_classes * d].copy_from_slice(&m.coef);
                theta[n_classes * d..].copy_from_slice(&m.intercept);
            }
        }
        let mut grad = vec![0.0; p];
        let mut f = prob.eval(&theta, &mut grad);
        let m = 10;
        let mut s_hist: Vec<Vec<f64>> = Vec::new();
        let mut y_hist: Vec<Vec<f64>> = Vec::new();
        let mut rho: Vec<f64> = Vec::new();
        let mut converged = false;
        let mut iter = 0;
        let mut new_grad = vec![0.0; p];
        let mut trial = vec![0.0; p];
        while iter < cfg.max_iter {
            let gmax = grad.iter().fold(0.0f64, |a, g| a.max(g.abs()));
            if gmax < cfg.gtol {
                converged = true;
                break;
            }
            iter += 1;
            // Two-loop recursion: direction = -H g.
            let mut q = grad.clone();
            let mut alpha = vec![0.0; s_hist.len()];
            for j in (0..s_hist.len()).rev() {
                alpha[j] = rho[j] * dot(&s_hist[j], &q);
                for (qv, yv) in q.iter_mut().zip(&y_hist[j]) {
                    *qv -= alpha[j] * yv;
                }
            }
            let gamma = match (s_hist.last(), y_hist.last()) {
                (Some(s), Some(yv)) => dot(s, yv) / dot(yv, yv),
                _ => 1.0 / grad.iter().map(|g| g * g).sum::<f64>().sqrt().max(1e-300),
            };
            q.iter_mut().for_each(|v| *v *= gamma);
            for j in 0..s_hist.len() {
                let beta = rho[j] * dot(&y_hist[j], &q);
                for (qv, sv) in q.iter_mut().zip(&s_hist[j]) {
                    *qv += (alpha[j] - beta) * sv;
                }
            }
            let dir: Vec<f64> = q.iter().map(|v| -v).collect();
            let mut slope = dot(&grad, &dir);
            let dir = if slope >= 0.0 {
                // Not a descent direction (numerical trouble): restart from steepest descent.
                s_hist.clear();
                y_hist.clear();
                rho.clear();
                let d: Vec<f64> = grad.iter().map(|g| -g).collect();
                slope = dot(&grad, &d);
                d
            } else {
                dir
            };
            // Backtracking line search (Armijo).
            let mut step = 1.0;
            let mut accepted = false;
            let mut f_new = f;
            for _ in 0..60 {
                for ((t, th), dv) in trial.iter_mut().zip(&theta).zip(&dir) {
                    *t = th + step * dv;
                }
                f_new = prob.eval(&trial, &mut new_grad);
                if f_new.is_finite() && f_new <= f + 1e-4 * step * slope {
                    accepted = true;
                    break;
                }
                step *= 0.5;
            }
            if !accepted {
                // No decrease possible at machine precision: we are at the minimum.
                converged = grad.iter().fold(0.0f64, |a, g| a.max(g.abs())) < cfg.gtol.sqrt();
                break;
            }
            let s: Vec<f64> = trial.iter().zip(&theta).map(|(a, b)| a - b).collect();
            let yv: Vec<f64> = new_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
            let sy = dot(&s, &yv);
            std::mem::swap(&mut theta, &mut trial);
            std::mem::swap(&mut grad, &mut new_grad);
            let df = f - f_new;
            f = f_new;
            if sy > 1e-300 {
                if s_hist.len() == m {
                    s_hist.remove(0);
                    y_hist.remove(0);
                    rho.remove(0);
                }
                s_hist.push(s);
                y_hist.push(yv);
                rho.push(1.0 / sy);
            }
            if df.abs() <= f64::EPSILON * f.abs().max(1e-300) && df >= 0.0 {
                // Stalled at machine precision.
                converged = grad.iter().fold(0.0f64, |a, g| a.max(g.abs())) < cfg.gtol.sqrt();
                break;
            }
        }
        if !f.is_finite() {
            return Err(EvalError::Numerical {
                what: "logistic regression".into(),
                reason: "objective became non-finite".into(),
            });
        }
        let k = n_classes;
        let mut intercept = theta[k * d..].to_vec();
        let mean_b = intercept.iter().sum::<f64>() / k as f64;
        intercept.iter_mut().for_each(|b| *b -= mean_b);
        theta.truncate(k * d);
        Ok(LogReg {
            n_classes: k,
            n_features: d,
            coef: theta,
            intercept,
            n_iter: iter,
            converged,
        })
    }

    /// Class probabilities `[n, n_classes]` for `x` (`[n, n_features]`).
    pub fn predict_proba(&self, x: &[f64]) -> Result<Vec<f64>, EvalError> {
        let (k, d) = (self.n_classes, self.n_features);
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(EvalError::Shape {
                what: "features [n, d]: length must be a multiple of d".into(),
                expected: d,
                got: x.len(),
            });
        }
        let n = x.len() / d;
        let mut out = vec![0.0; n * k];
        for i in 0..n {
            let xi = &x[i * d..(i + 1) * d];
            let z = &mut out[i * k..(i + 1) * k];
            for (c, zc) in z.iter_mut().enumerate() {
                *zc = self.intercept[c] + dot(&self.coef[c * d..(c + 1) * d], xi);
            }
            softmax(z);
        }
        Ok(out)
    }
}

/// Index of the largest value of each row (first one on ties, as `numpy.argmax`).
pub fn argmax_rows(proba: &[f64], k: usize) -> Vec<usize> {
    proba
        .chunks(k)
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Standardization fitted on training rows only (population std as scikit-learn's
/// `StandardScaler`; a constant feature is left unscaled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Standardizer {
    pub fn fit(x: &[f64], d: usize) -> Result<Standardizer, EvalError> {
        if d == 0 || x.is_empty() || !x.len().is_multiple_of(d) {
            return Err(EvalError::NotEnoughData(
                "standardizer needs at least one row".into(),
            ));
        }
        let n = (x.len() / d) as f64;
        let mut mean = vec![0.0; d];
        for row in x.chunks(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; d];
        for row in x.chunks(d) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        let scale = var
            .iter()
            .map(|v| {
                let s = (v / n).sqrt();
                if s > 0.0 && s.is_finite() {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Standardizer { mean, scale })
    }

    pub fn transform(&self, x: &[f64]) -> Vec<f64> {
        let d = self.mean.len();
        let mut out = x.to_vec();
        for row in out.chunks_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        out
    }
}

/// Result of the inner cross-validation that picks `C`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CSelection {
    pub best_c: f64,
    /// `(C, mean balanced accuracy over inner folds)` for every candidate.
    pub scores: Vec<(f64, f64)>,
    pub n_inner_folds: usize,
}

/// Picks `C` from `cs` by grouped K-fold cross-validation on the training side only: samples
/// of one group (a subject) are never split across inner folds. Groups are assigned to
/// `min(n_folds, n_groups)` folds round-robin in sorted order. Score: balanced accuracy
/// (mean over inner folds); ties go to the smaller `C` (stronger regularization). The
/// features are standardized inside each inner fold on its training part.
#[allow(clippy::too_many_arguments)]
pub fn select_c(
    x: &[f64],
    d: usize,
    y: &[usize],
    groups: &[usize],
    n_classes: usize,
    cs: &[f64],
    n_folds: usize,
    base: &LogRegConfig,
) -> Result<CSelection, EvalError> {
    if cs.is_empty() {
        return Err(EvalError::config("probe.cs", "no candidate C"));
    }
    if groups.len() != y.len() {
        return Err(EvalError::Shape {
            what: "groups".into(),
            expected: y.len(),
            got: groups.len(),
        });
    }
    let mut uniq: Vec<usize> = groups.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let k = n_folds.min(uniq.len());
    if k < 2 || cs.len() == 1 {
        return Ok(CSelection {
            best_c: cs[0],
            scores: vec![],
            n_inner_folds: 0,
        });
    }
    let fold_of = |g: usize| uniq.binary_search(&g).map(|p| p % k).unwrap_or(0);
    // The C path in increasing order, each fit warm-started from the previous one.
    let mut path: Vec<usize> = (0..cs.len()).collect();
    path.sort_by(|&a, &b| cs[a].total_cmp(&cs[b]));
    // Inner folds in parallel; per fold the balanced accuracy of every C (None: fold unusable).
    let per_fold: Vec<Option<Vec<f64>>> = (0..k)
        .into_par_iter()
        .map(|f| -> Result<Option<Vec<f64>>, EvalError> {
            let (mut xtr, mut ytr, mut xte, mut yte) = (vec![], vec![], vec![], vec![]);
            for i in 0..y.len() {
                let row = &x[i * d..(i + 1) * d];
                if fold_of(groups[i]) == f {
                    xte.extend_from_slice(row);
                    yte.push(y[i]);
                } else {
                    xtr.extend_from_slice(row);
                    ytr.push(y[i]);
                }
            }
            let mut present = vec![false; n_classes];
            ytr.iter().for_each(|&v| present[v] = true);
            if yte.is_empty() || present.iter().any(|p| !p) {
                return Ok(None);
            }
            let st = Standardizer::fit(&xtr, d)?;
            let (xtr, xte) = (st.transform(&xtr), st.transform(&xte));
            let mut acc = vec![0.0; cs.len()];
            let mut prev: Option<LogReg> = None;
            for &ci in &path {
                let cfg = LogRegConfig {
                    c: cs[ci],
                    ..base.clone()
                };
                let model = LogReg::fit_from(&xtr, d, &ytr, n_classes, &cfg, prev.as_ref())?;
                let pred = argmax_rows(&model.predict_proba(&xte)?, n_classes);
                acc[ci] = balanced_accuracy(&confusion_matrix(&yte, &pred, n_classes)?);
                prev = Some(model);
            }
            Ok(Some(acc))
        })
        .collect::<Result<_, _>>()?;
    let used: Vec<&Vec<f64>> = per_fold.iter().flatten().collect();
    let mut scores = Vec::new();
    if !used.is_empty() {
        for (ci, &c) in cs.iter().enumerate() {
            let sum: f64 = used.iter().map(|a| a[ci]).sum();
            scores.push((c, sum / used.len() as f64));
        }
    }
    let mut best: Option<(f64, f64)> = None;
    let mut sorted = scores.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    for &(c, s) in &sorted {
        if best.is_none_or(|(_, bs)| s > bs + 1e-12) {
            best = Some((c, s));
        }
    }
    let best_c = best.map(|b| b.0).unwrap_or(cs[0]);
    Ok(CSelection {
        best_c,
        scores,
        n_inner_folds: k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let x = [0.5, -1.0, 1.5, 2.0, -0.3, 0.7, 1.1, 0.2, -2.0, 0.4];
        let y = [0, 1, 2, 1, 0];
        let prob = Problem {
            x: &x,
            y: &y,
            w: vec![1.0, 2.0, 1.0, 0.5, 1.0],
            n: 5,
            d: 2,
            k: 3,
            lambda: 0.3,
            wsum: 5.5,
        };
        let theta: Vec<f64> = (0..9).map(|i| 0.1 * i as f64 - 0.4).collect();
        let mut g = vec![0.0; 9];
        prob.eval(&theta, &mut g);
        let mut scratch = vec![0.0; 9];
        for j in 0..9 {
            let h = 1e-6;
            let mut tp = theta.clone();
            tp[j] += h;
            let mut tm = theta.clone();
            tm[j] -= h;
            let fd = (prob.eval(&tp, &mut scratch) - prob.eval(&tm, &mut scratch)) / (2.0 * h);
            assert!((fd - g[j]).abs() < 1e-7, "param {j}: fd {fd} vs {}", g[j]);
        }
    }

    #[test]
    fn separable_data_is_learned_and_missing_class_is_an_error() {
        let x: Vec<f64> = (0..40)
            .map(|i| if i < 20 { -1.0 } else { 1.0 } + 0.01 * i as f64)
            .collect();
        let y: Vec<usize> = (0..40).map(|i| usize::from(i >= 20)).collect();
        let m =
            LogReg::fit(&x, 1, &y, 2, &LogRegConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.converged);
        let pred = argmax_rows(&m.predict_proba(&x).unwrap_or_default(), 2);
        assert_eq!(pred, y);
        assert!(LogReg::fit(&x, 1, &vec![0; 40], 2, &LogRegConfig::default()).is_err());
    }
}
