//! What a masked autoencoder predicts for its masked patches.
//!
//! - `raw`: the raw samples (mean squared error) — the original MAE loss. Reconstructing the raw
//!   samples of a masked patch rewards predicting its slow trend (or zero): oscillations with a
//!   random phase cannot be predicted sample by sample, so the encoder never has to represent
//!   band power or its topography.
//! - `raw-normalized`: each target patch z-scored on its own (MAE's normalized-pixel loss).
//! - `spectral`: per masked patch, the log-amplitude spectrum (optionally binned into bands) and
//!   the phase of every bin as (cos, sin), each target dimension standardized with mean and
//!   standard deviation fitted on the training data before pretraining (stored with the
//!   model's configuration). Two heads, as the decoder of LaBraM's neural tokenizer
//!   ("Large Brain Model...", Jiang et al., ICLR 2024).
//!
//! Every objective has a trivial reference: the loss of a predictor that ignores the input
//! (zero for `raw`, the per-patch mean — that is zero — for `raw-normalized`, the fitted target
//! mean for `spectral`). [`trivial_loss`] computes it on a sample of windows.

use candle_core::{DType, Device, Result, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{check, ModelError};

/// The masked autoencoder's pretraining target (`[objective]` of a pretrain config; recorded
/// in the checkpoint's `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MaeObjective {
    /// Raw samples of the masked patches (mean squared error).
    #[default]
    Raw,
    /// Each masked patch z-scored on its own.
    RawNormalized,
    /// Standardized log-amplitude spectrum and phase (cos, sin) of each masked patch.
    Spectral(SpectralTarget),
}

impl MaeObjective {
    /// `"raw"`, `"raw-normalized"` or `"spectral"`.
    pub fn name(&self) -> &'static str {
        match self {
            MaeObjective::Raw => "raw",
            MaeObjective::RawNormalized => "raw-normalized",
            MaeObjective::Spectral(_) => "spectral",
        }
    }

    /// What the trivial reference of this objective predicts.
    pub fn trivial_description(&self) -> &'static str {
        match self {
            MaeObjective::Raw => "predicting zero (the mean square of the windows)",
            MaeObjective::RawNormalized => {
                "predicting each patch's mean (zero after z-scoring): the mean square of the z-scored patches"
            }
            MaeObjective::Spectral(_) => {
                "predicting the fitted target mean: the variance of the standardized targets"
            }
        }
    }
}

/// Taper applied to a patch before its Fourier transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Taper {
    /// Periodic Hann window (scipy's `get_window("hann", n)`).
    #[default]
    Hann,
    /// No taper (rectangular).
    None,
}

/// The `spectral` objective: targets and their fitted standardization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpectralTarget {
    /// Taper before the DFT.
    #[serde(default)]
    pub taper: Taper,
    /// Amplitude bands as half-open ranges `[lo, hi)` of rfft bins; empty = every bin. The log
    /// amplitude of a band is `0.5 ln(mean power of its bins)`.
    #[serde(default)]
    pub bands: Vec<[usize; 2]>,
    /// Weight of the phase loss against the amplitude loss.
    #[serde(default = "default_phase_weight")]
    pub phase_weight: f64,
    /// Fitted per-dimension mean and standard deviation of the amplitude targets.
    #[serde(default)]
    pub amp_mean: Vec<f64>,
    #[serde(default)]
    pub amp_std: Vec<f64>,
    /// Fitted per-dimension mean and standard deviation of the phase targets
    /// (cos of every inner bin, then sin of every inner bin).
    #[serde(default)]
    pub phase_mean: Vec<f64>,
    #[serde(default)]
    pub phase_std: Vec<f64>,
}

fn default_phase_weight() -> f64 {
    1.0
}

/// Floor under the amplitude before its logarithm (data are in model units, ~1).
const AMP_FLOOR: f64 = 1e-6;

impl SpectralTarget {
    /// An unfitted target over `bands` (rfft bin ranges; empty = every bin).
    pub fn new(taper: Taper, bands: Vec<[usize; 2]>, phase_weight: f64) -> Self {
        SpectralTarget {
            taper,
            bands,
            phase_weight,
            amp_mean: Vec::new(),
            amp_std: Vec::new(),
            phase_mean: Vec::new(),
            phase_std: Vec::new(),
        }
    }

    /// Number of rfft bins of a patch.
    pub fn n_bins(patch_len: usize) -> usize {
        patch_len / 2 + 1
    }

    /// Width of the amplitude target.
    pub fn amp_dim(&self, patch_len: usize) -> usize {
        if self.bands.is_empty() {
            Self::n_bins(patch_len)
        } else {
            self.bands.len()
        }
    }

    /// Width of the phase target: cos and sin of every bin except DC (and Nyquist for an even
    /// patch), whose phase is fixed.
    pub fn phase_dim(patch_len: usize) -> usize {
        2 * inner_bins(patch_len).len()
    }

    /// Whether the standardization has been fitted.
    pub fn is_fitted(&self, patch_len: usize) -> bool {
        self.amp_mean.len() == self.amp_dim(patch_len)
            && self.phase_mean.len() == Self::phase_dim(patch_len)
    }

    /// Checks the fields against `patch_len`.
    pub fn validate(&self, patch_len: usize) -> std::result::Result<(), ModelError> {
        let k = Self::n_bins(patch_len);
        for (i, b) in self.bands.iter().enumerate() {
            check(b[0] < b[1] && b[1] <= k, "objective.bands", || {
                format!("band {i} = [{}, {}) is not a non-empty range of the {k} rfft bins of a {patch_len}-sample patch", b[0], b[1])
            })?;
        }
        check(
            self.phase_weight.is_finite() && self.phase_weight >= 0.0,
            "objective.phase_weight",
            || format!("must be finite and >= 0, got {}", self.phase_weight),
        )?;
        let (na, np) = (self.amp_dim(patch_len), Self::phase_dim(patch_len));
        let fitted_or_empty = |v: &[f64], n: usize| v.is_empty() || v.len() == n;
        check(
            fitted_or_empty(&self.amp_mean, na) && fitted_or_empty(&self.amp_std, na),
            "objective.amp_mean",
            || format!("amp_mean / amp_std must have {na} values (or none before fitting)"),
        )?;
        check(
            fitted_or_empty(&self.phase_mean, np) && fitted_or_empty(&self.phase_std, np),
            "objective.phase_mean",
            || format!("phase_mean / phase_std must have {np} values (or none before fitting)"),
        )?;
        check(
            self.amp_std
                .iter()
                .chain(&self.phase_std)
                .all(|s| s.is_finite() && *s > 0.0),
            "objective.amp_std",
            || "standard deviations must be finite and > 0".into(),
        )?;
        Ok(())
    }

    /// Raw (unstandardized) targets of `patches` `[M, n]`: log amplitude `[M, amp_dim]` and
    /// phase `[M, phase_dim]`, computed in f32 or f64 as `patches`, without gradient.
    pub fn raw_targets(&self, patches: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, n) = patches.dims2()?;
        let dt = patches.dtype();
        let dev = patches.device();
        let x = match self.taper {
            Taper::Hann => patches.broadcast_mul(&hann(n, dt, dev)?)?,
            Taper::None => patches.clone(),
        };
        let (cos, sin) = crate::mae::dft_matrices(n, dt, dev)?;
        let re = x.matmul(&cos)?;
        let im = x.matmul(&sin)?;
        let power = (re.sqr()? + im.sqr()?)?;
        let amp = (power.clone() + 1e-30)?.sqrt()?;
        let log_amp = if self.bands.is_empty() {
            (amp + AMP_FLOOR)?.log()?
        } else {
            let cols = self
                .bands
                .iter()
                .map(|b| power.narrow(1, b[0], b[1] - b[0])?.mean_keepdim(1))
                .collect::<Result<Vec<_>>>()?;
            ((Tensor::cat(&cols, 1)? + AMP_FLOOR * AMP_FLOOR)?.log()? * 0.5)?
        };
        let inner = inner_bins(n);
        let (lo, len) = (inner.start, inner.len());
        let amp_inner = (re.narrow(1, lo, len)?.sqr()? + im.narrow(1, lo, len)?.sqr()?)?;
        let denom = (amp_inner + 1e-30)?.sqrt()?;
        let c = re.narrow(1, lo, len)?.div(&denom)?;
        let s = im.narrow(1, lo, len)?.div(&denom)?;
        let phase = Tensor::cat(&[c, s], 1)?;
        Ok((log_amp.detach(), phase.detach()))
    }

    /// Standardized targets of `patches` `[M, n]` (the fit must have been done).
    pub fn targets(&self, patches: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, n) = patches.dims2()?;
        if !self.is_fitted(n) {
            candle_core::bail!(
                "spectral objective: the target standardization is not fitted (amp_mean / phase_mean missing)"
            );
        }
        let (a, p) = self.raw_targets(patches)?;
        let st = |v: &Tensor, m: &[f64], s: &[f64]| -> Result<Tensor> {
            let dt = v.dtype();
            let dev = v.device();
            let m = Tensor::new(m, &Device::Cpu)?
                .to_dtype(dt)?
                .to_device(dev)?
                .unsqueeze(0)?;
            let s = Tensor::new(s, &Device::Cpu)?
                .to_dtype(dt)?
                .to_device(dev)?
                .unsqueeze(0)?;
            v.broadcast_sub(&m)?.broadcast_div(&s)
        };
        Ok((
            st(&a, &self.amp_mean, &self.amp_std)?,
            st(&p, &self.phase_mean, &self.phase_std)?,
        ))
    }

    /// Fits the per-dimension mean and standard deviation on `patches` `[M, n]` (f64 sums). A
    /// dimension with (near) zero spread gets standard deviation 1.
    pub fn fit(&mut self, patches: &Tensor) -> Result<()> {
        let (a, p) = self.raw_targets(&patches.to_dtype(DType::F64)?)?;
        let stats = |v: &Tensor| -> Result<(Vec<f64>, Vec<f64>)> {
            let mean = v.mean(0)?;
            let var = v.broadcast_sub(&mean.unsqueeze(0)?)?.sqr()?.mean(0)?;
            let mean = mean.to_vec1::<f64>()?;
            let std = var
                .to_vec1::<f64>()?
                .into_iter()
                .map(|v| {
                    let s = v.sqrt();
                    if s.is_finite() && s > 1e-6 {
                        s
                    } else {
                        1.0
                    }
                })
                .collect();
            Ok((mean, std))
        };
        (self.amp_mean, self.amp_std) = stats(&a)?;
        (self.phase_mean, self.phase_std) = stats(&p)?;
        Ok(())
    }
}

/// The rfft bins whose phase varies: 1 .. k-1 (without Nyquist for even n).
fn inner_bins(n: usize) -> std::ops::Range<usize> {
    let k = n / 2 + 1;
    let hi = if n.is_multiple_of(2) { k - 1 } else { k };
    1..hi.max(1)
}

/// Periodic Hann window of length `n` as a `[n]` tensor.
pub fn hann(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let w: Vec<f64> = (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect();
    Tensor::from_vec(w, n, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)
}

/// Each row of `patches` `[.., n]` z-scored on its own (population standard deviation, with
/// 1e-6 added to the variance as in MAE's `norm_pix_loss`).
pub fn normalize_patches(patches: &Tensor) -> Result<Tensor> {
    let mean = patches.mean_keepdim(D::Minus1)?;
    let c = patches.broadcast_sub(&mean)?;
    let var = c.sqr()?.mean_keepdim(D::Minus1)?;
    c.broadcast_div(&(var + 1e-6)?.sqrt()?)?
        .detach()
        .contiguous()
}

/// The trivial reference of `objective` on windows `x` `[N, C, T]` cut into patches of
/// `patch_len`: the mean loss per target element of a predictor that ignores its input.
pub fn trivial_loss(objective: &MaeObjective, x: &Tensor, patch_len: usize) -> Result<f64> {
    let (n, c, t) = x.dims3()?;
    if patch_len == 0 || !t.is_multiple_of(patch_len) {
        candle_core::bail!(
            "trivial loss: window of {t} samples is not a multiple of patch_len {patch_len}"
        );
    }
    let patches = x
        .to_dtype(DType::F64)?
        .reshape((n * c * (t / patch_len), patch_len))?;
    let ms = |v: &Tensor| -> Result<f64> { v.sqr()?.mean_all()?.to_scalar::<f64>() };
    match objective {
        MaeObjective::Raw => ms(&patches),
        MaeObjective::RawNormalized => ms(&normalize_patches(&patches)?),
        MaeObjective::Spectral(s) => {
            let (a, p) = s.targets(&patches)?;
            Ok(ms(&a)? + s.phase_weight * ms(&p)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectral_targets_of_a_sinusoid() -> Result<()> {
        // A cosine at bin 5 with phase 0.7: amplitude peak at bin 5, phase (cos 0.7, sin 0.7).
        let n = 64;
        let x: Vec<f64> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 5.0 * i as f64 / n as f64 + 0.7).cos())
            .collect();
        let t = Tensor::from_vec(x, (1, n), &Device::Cpu)?;
        let s = SpectralTarget::new(Taper::None, vec![], 1.0);
        let (a, p) = s.raw_targets(&t)?;
        let a = a.flatten_all()?.to_vec1::<f64>()?;
        assert_eq!(a.len(), 33);
        // |rfft|/n of a unit cosine is 0.5 at its bin (plus the floor under the logarithm).
        assert!((a[5] - (0.5 + AMP_FLOOR).ln()).abs() < 1e-9, "{}", a[5]);
        assert!(a[4] < (1e-5f64).ln());
        let p = p.flatten_all()?.to_vec1::<f64>()?;
        let inner = 31; // bins 1..32
        assert_eq!(p.len(), 2 * inner);
        assert!((p[5 - 1] - 0.7f64.cos()).abs() < 1e-9);
        assert!((p[inner + 5 - 1] - 0.7f64.sin()).abs() < 1e-9);
        // Bands: mean power of bins [4, 7) = 0.25 / 3.
        let b = SpectralTarget::new(Taper::None, vec![[4, 7], [0, 2]], 1.0);
        let (a, _) = b.raw_targets(&t)?;
        let a = a.flatten_all()?.to_vec1::<f64>()?;
        assert!((a[0] - 0.5 * (0.25f64 / 3.0).ln()).abs() < 1e-9, "{}", a[0]);
        Ok(())
    }

    #[test]
    fn fitted_targets_are_standardized() -> Result<()> {
        let x = Tensor::randn(0f64, 1.0, (500, 20), &Device::Cpu)?;
        let mut s = SpectralTarget::new(Taper::Hann, vec![], 0.5);
        assert!(s.targets(&x).is_err());
        s.fit(&x)?;
        s.validate(20)?;
        let (a, p) = s.targets(&x)?;
        for v in [a, p] {
            let mean = v.mean(0)?.to_vec1::<f64>()?;
            let var = v.sqr()?.mean(0)?.to_vec1::<f64>()?;
            assert!(mean.iter().all(|m| m.abs() < 1e-9));
            assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-9), "{var:?}");
        }
        let obj = MaeObjective::Spectral(s);
        let tl = trivial_loss(&obj, &x.reshape((25, 2, 200))?, 20)?;
        assert!((tl - 1.5).abs() < 1e-9, "{tl}");
        Ok(())
    }

    #[test]
    fn normalized_patches_have_zero_mean_unit_variance() -> Result<()> {
        let x = (Tensor::randn(0f64, 3.0, (7, 50), &Device::Cpu)? + 2.0)?;
        let z = normalize_patches(&x)?;
        let m = z.mean(1)?.to_vec1::<f64>()?;
        let v = z.sqr()?.mean(1)?.to_vec1::<f64>()?;
        assert!(m.iter().all(|m| m.abs() < 1e-12));
        assert!(v.iter().all(|v| (v - 1.0).abs() < 1e-5));
        Ok(())
    }

    #[test]
    fn bad_bands_are_refused() {
        let s = SpectralTarget::new(Taper::Hann, vec![[3, 3]], 1.0);
        assert!(s.validate(100).is_err());
        let s = SpectralTarget::new(Taper::Hann, vec![[3, 52]], 1.0);
        assert!(s.validate(100).is_err());
        let s = SpectralTarget::new(Taper::Hann, vec![[3, 51]], -1.0);
        assert!(s.validate(100).is_err());
    }

    #[test]
    fn objective_serializes_tagged() -> std::result::Result<(), serde_json::Error> {
        let j = serde_json::to_string(&MaeObjective::RawNormalized)?;
        assert_eq!(j, r#"{"kind":"raw-normalized"}"#);
        let o: MaeObjective = serde_json::from_str(r#"{"kind":"raw-normalized"}"#)?;
        assert_eq!(o, MaeObjective::RawNormalized);
        assert!(serde_json::from_str::<MaeObjective>(r#"{"kind":"pixels"}"#).is_err());
        Ok(())
    }
}
