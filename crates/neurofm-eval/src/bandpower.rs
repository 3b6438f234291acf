//! Log band-power features: Welch PSD per channel (as `scipy.signal.welch` with its defaults:
//! periodic Hann window, 50 % overlap, constant detrend, density scaling, one-sided, mean over
//! segments), integrated over the classic bands, natural log.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::error::EvalError;
use crate::source::FeatureExtractor;

/// δ, θ, α, β, γ in Hz, `[low, high)`.
pub const BANDS: [(&str, f64, f64); 5] = [
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 45.0),
];

/// Welch power spectral density estimator for signals of one sampling rate.
pub struct Welch {
    nperseg: usize,
    sfreq_hz: f64,
    window: Vec<f64>,
    scale: f64,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl Welch {
    pub fn new(nperseg: usize, sfreq_hz: f64) -> Result<Welch, EvalError> {
        if nperseg < 2 {
            return Err(EvalError::config(
                "nperseg",
                format!("must be >= 2, got {nperseg}"),
            ));
        }
        if !(sfreq_hz.is_finite() && sfreq_hz > 0.0) {
            return Err(EvalError::config(
                "sfreq_hz",
                format!("must be > 0, got {sfreq_hz}"),
            ));
        }
        let window: Vec<f64> = (0..nperseg)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / nperseg as f64).cos())
            .collect();
        let scale = 1.0 / (sfreq_hz * window.iter().map(|w| w * w).sum::<f64>());
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(nperseg);
        Ok(Welch {
            nperseg,
            sfreq_hz,
            window,
            scale,
            fft,
        })
    }

    /// Frequencies of the PSD bins.
    pub fn freqs(&self) -> Vec<f64> {
        (0..=self.nperseg / 2)
            .map(|k| k as f64 * self.sfreq_hz / self.nperseg as f64)
            .collect()
    }

    /// One-sided PSD of `x` (length >= nperseg), in units²/Hz.
    pub fn psd(&self, x: &[f64]) -> Result<Vec<f64>, EvalError> {
        let n = self.nperseg;
        if x.len() < n {
            return Err(EvalError::Shape {
                what: "signal for Welch (at least nperseg samples)".into(),
                expected: n,
                got: x.len(),
            });
        }
        let step = n - n / 2;
        let n_seg = (x.len() - n) / step + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut psd = vec![0.0; n / 2 + 1];
        for s in 0..n_seg {
            let seg = &x[s * step..s * step + n];
            let mean = seg.iter().sum::<f64>() / n as f64;
            for ((o, &v), w) in input.iter_mut().zip(seg).zip(&self.window) {
                *o = (v - mean) * w;
            }
            self.fft
                .process(&mut input, &mut spectrum)
                .map_err(|e| EvalError::Numerical {
                    what: "FFT".into(),
                    reason: e.to_string(),
                })?;
            for (p, c) in psd.iter_mut().zip(&spectrum) {
                *p += c.norm_sqr();
            }
        }
        let last = psd.len() - 1;
        for (k, p) in psd.iter_mut().enumerate() {
            let one_sided = if k == 0 || (n.is_multiple_of(2) && k == last) {
                1.0
            } else {
                2.0
            };
            *p *= self.scale * one_sided / n_seg as f64;
        }
        Ok(psd)
    }
}

/// Log band power per channel and band: features `[n_channels * 5]`, channel-major.
pub struct BandPower {
    welch: Welch,
    n_channels: usize,
    window_len: usize,
    /// For every band, the PSD bins inside it.
    bins: Vec<Vec<usize>>,
    df: f64,
}

impl BandPower {
    /// `nperseg`: Welch segment length; `None` = 2 s of signal, at most the window length.
    pub fn new(
        n_channels: usize,
        window_len: usize,
        sfreq_hz: f64,
        nperseg: Option<usize>,
    ) -> Result<BandPower, EvalError> {
        let nperseg = nperseg
            .unwrap_or((2.0 * sfreq_hz).round() as usize)
            .min(window_len);
        let welch = Welch::new(nperseg, sfreq_hz)?;
        let freqs = welch.freqs();
        let mut bins = Vec::new();
        for (name, lo, hi) in BANDS {
            let b: Vec<usize> = (0..freqs.len())
                .filter(|&k| freqs[k] >= lo && freqs[k] < hi)
                .collect();
            if b.is_empty() {
                return Err(EvalError::config(
                    "bandpower",
                    format!(
                        "band {name} ({lo}-{hi} Hz) has no PSD bin at {sfreq_hz} Hz with {nperseg}-sample segments"
                    ),
                ));
            }
            bins.push(b);
        }
        Ok(BandPower {
            df: sfreq_hz / nperseg as f64,
            welch,
            n_channels,
            window_len,
            bins,
        })
    }
}

impl FeatureExtractor for BandPower {
    fn name(&self) -> String {
        "bandpower".into()
    }
    fn dim(&self) -> usize {
        self.n_channels * BANDS.len()
    }
    fn extract(&mut self, x: &[f32], batch: usize) -> Result<Vec<f64>, EvalError> {
        let (c, t) = (self.n_channels, self.window_len);
        if x.len() != batch * c * t {
            return Err(EvalError::Shape {
                what: "band-power batch".into(),
                expected: batch * c * t,
                got: x.len(),
            });
        }
        let mut out = Vec::with_capacity(batch * self.dim());
        let mut row = vec![0.0f64; t];
        for w in x.chunks(c * t) {
            for ch in w.chunks(t) {
                for (o, &v) in row.iter_mut().zip(ch) {
                    *o = v as f64;
                }
                let psd = self.welch.psd(&row)?;
                for b in &self.bins {
                    let p: f64 = b.iter().map(|&k| psd[k]).sum::<f64>() * self.df;
                    out.push(p.max(f64::MIN_POSITIVE).ln());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_power_lands_in_its_band() {
        let fs = 200.0;
        let x: Vec<f32> = (0..800)
            .map(|i| (2.0 * std::f64::consts::PI * 10.0 * i as f64 / fs).sin() as f32)
            .collect();
        let mut bp = BandPower::new(1, 800, fs, None).unwrap_or_else(|e| panic!("{e}"));
        let f = bp.extract(&x, 1).unwrap_or_else(|e| panic!("{e}"));
        // alpha (index 2) holds the sine: its power is ~0.5 (amplitude^2 / 2).
        assert!(
            (f[2].exp() - 0.5).abs() < 0.01,
            "alpha power {}",
            f[2].exp()
        );
        for (k, v) in f.iter().enumerate() {
            if k != 2 {
                assert!(*v < f[2] - 5.0);
            }
        }
    }
}
