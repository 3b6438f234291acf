//! Euclidean Alignment (He & Wu, IEEE TBME 2020): per subject, `R` = mean of the window
//! covariance matrices and every window of that subject is whitened as `R^{-1/2} X`.
//!
//! `R` is computed from that subject's windows only, without their labels. Window covariances
//! are centred per channel (`(X - mean)(X - mean)^T / T`). `R^{-1/2}` comes from a symmetric
//! eigendecomposition (cyclic Jacobi, f64); directions with eigenvalue below `1e-12 * max`
//! (e.g. after average referencing) are dropped (pseudo-inverse square root).

use std::collections::BTreeMap;

use crate::error::EvalError;
use crate::source::WindowSource;

/// Per-subject whitening matrices `[C, C]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    pub n_channels: usize,
    pub per_subject: BTreeMap<String, Vec<f64>>,
}

/// Eigen-decomposition of a symmetric matrix `a` (`[n, n]`): (eigenvalues, eigenvectors as
/// columns of a row-major `[n, n]` matrix).
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| m[i * n + i] * m[i * n + i]).sum::<f64>();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let app = m[p * n + p];
                let aqq = m[q * n + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let mkp = m[k * n + p];
                    let mkq = m[k * n + q];
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let mpk = m[p * n + k];
                    let mqk = m[q * n + k];
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| m[i * n + i]).collect(), v)
}

/// `R^{-1/2}` of a symmetric positive semi-definite matrix (pseudo-inverse on tiny eigenvalues).
pub fn inv_sqrt(r: &[f64], n: usize) -> Result<Vec<f64>, EvalError> {
    if r.iter().any(|v| !v.is_finite()) {
        return Err(EvalError::Numerical {
            what: "Euclidean alignment".into(),
            reason: "non-finite covariance".into(),
        });
    }
    let (vals, vecs) = symmetric_eigen(r, n);
    let max = vals.iter().copied().fold(0.0f64, f64::max);
    if max <= 0.0 {
        return Err(EvalError::Numerical {
            what: "Euclidean alignment".into(),
            reason: "reference covariance is zero (flat signal)".into(),
        });
    }
    let inv: Vec<f64> = vals
        .iter()
        .map(|&l| if l > 1e-12 * max { 1.0 / l.sqrt() } else { 0.0 })
        .collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..n)
                .map(|k| vecs[i * n + k] * inv[k] * vecs[j * n + k])
                .sum();
        }
    }
    Ok(out)
}

/// Adds the centred covariance of window `x` (`[c, t]`) to `acc`.
fn add_covariance(x: &[f32], c: usize, t: usize, acc: &mut [f64]) {
    let mut centred = vec![0.0f64; c * t];
    for ch in 0..c {
        let row = &x[ch * t..(ch + 1) * t];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / t as f64;
        for (o, &v) in centred[ch * t..(ch + 1) * t].iter_mut().zip(row) {
            *o = v as f64 - mean;
        }
    }
    for i in 0..c {
        for j in i..c {
            let s: f64 = centred[i * t..(i + 1) * t]
                .iter()
                .zip(&centred[j * t..(j + 1) * t])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / t as f64;
            acc[i * c + j] += s;
            if i != j {
                acc[j * c + i] += s;
            }
        }
    }
}

impl Alignment {
    /// Fits one whitening matrix per subject from all of that subject's windows in `source`
    /// (labels are not looked at).
    pub fn fit(source: &dyn WindowSource) -> Result<Alignment, EvalError> {
        let info = source.info();
        let (c, t) = (info.n_channels, info.window_len);
        let mut sums: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
        let mut buf = vec![0f32; c * t];
        for (i, w) in info.windows.iter().enumerate() {
            let s = w.subject.as_deref().ok_or_else(|| EvalError::Source {
                index: i,
                reason: "Euclidean alignment needs every window's subject".into(),
            })?;
            source.read(i, &mut buf)?;
            let e = sums
                .entry(s.to_string())
                .or_insert_with(|| (vec![0.0; c * c], 0));
            add_covariance(&buf, c, t, &mut e.0);
            e.1 += 1;
        }
        let mut per_subject = BTreeMap::new();
        for (s, (mut acc, n)) in sums {
            acc.iter_mut().for_each(|v| *v /= n as f64);
            let m = inv_sqrt(&acc, c).map_err(|e| EvalError::Numerical {
                what: format!("Euclidean alignment of subject {s}"),
                reason: e.to_string(),
            })?;
            per_subject.insert(s, m);
        }
        Ok(Alignment {
            n_channels: c,
            per_subject,
        })
    }

    /// Whitens one window `[C, t]` of `subject` in place.
    pub fn apply(&self, subject: &str, x: &mut [f32], t: usize) -> Result<(), EvalError> {
        let c = self.n_channels;
        let m = self.per_subject.get(subject).ok_or_else(|| {
            EvalError::config(
                "subject",
                format!("no alignment fitted for subject {subject:?}"),
            )
        })?;
        if x.len() != c * t {
            return Err(EvalError::Shape {
                what: "window for alignment".into(),
                expected: c * t,
                got: x.len(),
            });
        }
        let orig: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for i in 0..c {
            let out = &mut x[i * t..(i + 1) * t];
            out.iter_mut().for_each(|v| *v = 0.0);
            let mut acc = vec![0.0f64; t];
            for k in 0..c {
                let w = m[i * c + k];
                if w != 0.0 {
                    for (a, &v) in acc.iter_mut().zip(&orig[k * t..(k + 1) * t]) {
                        *a += w * v;
                    }
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = a as f32;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WindowMeta;
    use crate::source::{MemorySource, SourceInfo};

    #[test]
    fn eigen_reconstructs_matrix() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let (vals, v) = symmetric_eigen(&a, 3);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| v[i * 3 + k] * vals[k] * v[j * 3 + k]).sum();
                assert!((r - a[i * 3 + j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn aligned_subject_has_identity_mean_covariance() {
        // Two subjects with very different channel scales and mixing.
        let (c, t, n) = (3usize, 64usize, 6usize);
        let mut data = Vec::new();
        let mut windows = Vec::new();
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        for s in 0..2 {
            for w in 0..n {
                let raw: Vec<f64> = (0..c * t).map(|_| rnd()).collect();
                for ch in 0..c {
                    for k in 0..t {
                        let mix =
                            raw[k] * (1.0 + s as f64 * 5.0) + raw[ch * t + k] * (ch as f64 + 1.0);
                        data.push((mix * 1e-5) as f32);
                    }
                }
                windows.push(WindowMeta {
                    entry: s,
                    start: w * t,
                    len: t,
                    label: Some(w % 2),
                    subject: Some(format!("S{s}")),
                });
            }
        }
        let src = MemorySource {
            info: SourceInfo {
                windows,
                classes: vec!["a".into(), "b".into()],
                n_channels: c,
                window_len: t,
                sfreq_hz: 100.0,
                channel_names: vec!["x".into(), "y".into(), "z".into()],
            },
            data,
        };
        let a = Alignment::fit(&src).unwrap_or_else(|e| panic!("{e}"));
        for s in 0..2 {
            let mut acc = vec![0.0; c * c];
            let mut buf = vec![0f32; c * t];
            for w in 0..n {
                src.read(s * n + w, &mut buf)
                    .unwrap_or_else(|e| panic!("{e}"));
                a.apply(&format!("S{s}"), &mut buf, t)
                    .unwrap_or_else(|e| panic!("{e}"));
                add_covariance(&buf, c, t, &mut acc);
            }
            for i in 0..c {
                for j in 0..c {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((acc[i * c + j] / n as f64 - want).abs() < 1e-4);
                }
            }
        }
        assert!(a.apply("S9", &mut vec![0f32; c * t], t).is_err());
    }
}
