//! `scipy.signal.resample_poly(x, up, down)` with its defaults: a Kaiser (β = 5.0) windowed-sinc
//! anti-aliasing filter of `2·10·max(up, down) + 1` taps designed by `firwin`, scaled by `up`,
//! applied polyphase (`upfirdn`) with zero padding, and the output centred.

use super::windows::{firwin_lowpass, FirWindow};
use super::DspError;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Reduces a resampling ratio to lowest terms.
pub fn reduce_ratio(up: u64, down: u64) -> Result<(u64, u64), DspError> {
    if up == 0 || down == 0 {
        return Err(DspError::invalid(
            "resample",
            format!("factors must be positive, got up={up}, down={down}"),
        ));
    }
    let g = gcd(up, down);
    Ok((up / g, down / g))
}

/// Expresses `to_hz / from_hz` as a ratio of integers `(up, down)` in lowest terms, when both rates
/// are (within 1e-9 relative) multiples of 1/1000 Hz. Fails for zero, negative or non-finite
/// rates and for ratios that would need factors above 10⁶.
pub fn rational_ratio(from_hz: f64, to_hz: f64) -> Result<(u64, u64), DspError> {
    if !(from_hz.is_finite() && from_hz > 0.0 && to_hz.is_finite() && to_hz > 0.0) {
        return Err(DspError::invalid(
            "resample",
            format!("rates must be positive and finite, got {from_hz} Hz → {to_hz} Hz"),
        ));
    }
    let to_milli = |f: f64| -> Option<u64> {
        let m = (f * 1000.0).round();
        ((m - f * 1000.0).abs() <= 1e-9 * f * 1000.0 && m >= 1.0).then_some(m as u64)
    };
    match (to_milli(from_hz), to_milli(to_hz)) {
        (Some(a), Some(b)) => {
            let (up, down) = reduce_ratio(b, a)?;
            if up > 1_000_000 || down > 1_000_000 {
                return Err(DspError::invalid(
                    "resample",
                    format!("{from_hz} Hz → {to_hz} Hz needs factors {up}/{down}, too large"),
                ));
            }
            Ok((up, down))
        }
        _ => Err(DspError::invalid(
            "resample",
            format!("{from_hz} Hz → {to_hz} Hz is not a ratio of whole millihertz rates"),
        )),
    }
}

/// A prepared polyphase resampler for one `(up, down)` ratio.
#[derive(Debug, Clone)]
pub struct PolyphaseResampler {
    up: usize,
    down: usize,
    /// Polyphase components of the zero-padded, `up`-scaled filter scipy passes to `upfirdn`,
    /// reversed: `phases[r][M_r - 1 - m] = h[r + m·up]`, so each
    /// output is one contiguous dot product with the input.
    phases: Vec<Vec<f64>>,
    n_pre_remove: usize,
}

/// Splits `h` into its `up` polyphase components, each reversed.
fn polyphase(h: &[f64], up: usize) -> Vec<Vec<f64>> {
    (0..up)
        .map(|r| {
            let mut g: Vec<f64> = h.iter().skip(r).step_by(up).copied().collect();
            g.reverse();
            g
        })
        .collect()
}

/// `Σ a[i]·b[i]` with eight partial sums, so that the compiler vectorizes it (the order of
/// additions differs from a plain loop only by rounding).
#[inline(always)]
fn dot_lanes(a: &[f64], b: &[f64], fma: bool) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] = if fma {
                x[k].mul_add(y[k], acc[k])
            } else {
                acc[k] + x[k] * y[k]
            };
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// [`dot_lanes`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f64], b: &[f64]) -> f64 {
    dot_lanes(a, b, true)
}

/// Which dot product this CPU runs (checked once per [`PolyphaseResampler::apply`]).
#[derive(Clone, Copy)]
enum Dot {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Dot {
    fn detect() -> Dot {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Dot::Avx2;
        }
        Dot::Portable
    }

    #[inline]
    fn run(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Dot::Portable => dot_lanes(a, b, false),
            // SAFETY: `Dot::Avx2` is only made by `detect` when the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Dot::Avx2 => unsafe { dot_avx2(a, b) },
        }
    }
}

impl PolyphaseResampler {
    /// Designs the filter exactly as `resample_poly` does for `window=('kaiser', 5.0)`.
    pub fn new(up: u64, down: u64) -> Result<Self, DspError> {
        Self::with_window(up, down, FirWindow::Kaiser(5.0))
    }

    pub fn with_window(up: u64, down: u64, window: FirWindow) -> Result<Self, DspError> {
        let (up, down) = reduce_ratio(up, down)?;
        let (up, down) = (up as usize, down as usize);
        if up == 1 && down == 1 {
            return Ok(PolyphaseResampler {
                up,
                down,
                phases: vec![vec![1.0]],
                n_pre_remove: 0,
            });
        }
        let max_rate = up.max(down);
        let f_c = 1.0 / max_rate as f64;
        let half_len = 10 * max_rate;
        let mut h = firwin_lowpass(2 * half_len + 1, f_c, window);
        for v in &mut h {
            *v *= up as f64;
        }
        let n_pre_pad = down - half_len % down;
        let n_pre_remove = (half_len + n_pre_pad) / down;
        let mut padded = vec![0.0; n_pre_pad];
        padded.extend_from_slice(&h);
        Ok(PolyphaseResampler {
            up,
            down,
            phases: polyphase(&padded, up),
            n_pre_remove,
        })
    }

    /// Output length for `n_in` input samples: `ceil(n_in · up / down)`.
    pub fn output_len(&self, n_in: usize) -> usize {
        let n = n_in * self.up;
        n / self.down + usize::from(!n.is_multiple_of(self.down))
    }

    /// Resamples one channel.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let n_in = x.len();
        if n_in == 0 {
            return Vec::new();
        }
        if self.up == 1 && self.down == 1 {
            return x.to_vec();
        }
        let n_out = self.output_len(n_in);
        let dot = Dot::detect();
        let mut y = Vec::with_capacity(n_out);
        for k in 0..n_out {
            // y_full[m] = Σ_i h[m·down − i·up] · x[i], m = k + n_pre_remove. With
            // t0 = m·down = q·up + r, the taps that reach x are h[r + j·up] · x[q − j]
            // (scipy appends zeros to h until upfirdn's output is long enough; those zeros add
            // nothing to the sum).
            let t0 = (k + self.n_pre_remove) * self.down;
            let (q, r) = (t0 / self.up, t0 % self.up);
            let g = &self.phases[r];
            // g[len - 1 - j] multiplies x[q - j]: x[q + 1 - len ..= q] against g[..]
            let first = (q + 1).saturating_sub(g.len());
            let last = q.min(n_in - 1);
            if first > last {
                y.push(0.0);
                continue;
            }
            let g_lo = first + g.len() - 1 - q;
            let len = last + 1 - first;
            y.push(dot.run(&g[g_lo..g_lo + len], &x[first..first + len]));
        }
        y
    }
}

/// `scipy.signal.resample_poly(x, up, down)` for one channel.
pub fn resample_poly(x: &[f64], up: u64, down: u64) -> Result<Vec<f64>, DspError> {
    Ok(PolyphaseResampler::new(up, down)?.apply(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_common_rates() {
        assert_eq!(rational_ratio(500.0, 200.0).unwrap(), (2, 5));
        assert_eq!(rational_ratio(160.0, 200.0).unwrap(), (5, 4));
        assert_eq!(rational_ratio(44100.0, 48000.0).unwrap(), (160, 147));
        assert!(rational_ratio(500.0, 0.0).is_err());
        assert!(rational_ratio(500.0, std::f64::consts::PI).is_err());
    }

    #[test]
    fn lengths_follow_scipy() {
        let r = PolyphaseResampler::new(2, 5).unwrap();
        assert_eq!(r.output_len(1000), 400);
        assert_eq!(r.output_len(1001), 401);
        assert_eq!(r.apply(&vec![1.0; 1001]).len(), 401);
    }

    /// The direct `upfirdn` sum, as scipy writes it.
    fn naive(x: &[f64], up: usize, down: usize) -> Vec<f64> {
        let max_rate = up.max(down);
        let half_len = 10 * max_rate;
        let mut h = firwin_lowpass(
            2 * half_len + 1,
            1.0 / max_rate as f64,
            FirWindow::Kaiser(5.0),
        );
        for v in &mut h {
            *v *= up as f64;
        }
        let n_pre_pad = down - half_len % down;
        let n_pre_remove = (half_len + n_pre_pad) / down;
        let mut padded = vec![0.0; n_pre_pad];
        padded.extend_from_slice(&h);
        let n_out = (x.len() * up).div_ceil(down);
        (0..n_out)
            .map(|k| {
                let t0 = ((k + n_pre_remove) * down) as i64;
                let mut acc = 0.0;
                for (i, xi) in x.iter().enumerate() {
                    let j = t0 - (i * up) as i64;
                    if j >= 0 && (j as usize) < padded.len() {
                        acc += padded[j as usize] * xi;
                    }
                }
                acc
            })
            .collect()
    }

    #[test]
    fn polyphase_equals_direct_sum() {
        let x: Vec<f64> = (0..517).map(|i| ((i * 7919) % 101) as f64 - 50.0).collect();
        for (up, down) in [(2, 5), (4, 3), (1, 4), (3, 1), (160, 147)] {
            let r = PolyphaseResampler::new(up as u64, down as u64).unwrap();
            for len in [1usize, 2, 7, 100, 517] {
                let got = r.apply(&x[..len]);
                let want = naive(&x[..len], up, down);
                assert_eq!(got.len(), want.len(), "{up}/{down} len {len}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-9, "{up}/{down} len {len}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn constant_is_preserved_away_from_edges() {
        let r = PolyphaseResampler::new(2, 5).unwrap();
        let y = r.apply(&vec![3.0; 2000]);
        for v in &y[50..750] {
            assert!((v - 3.0).abs() < 1e-3, "{v}");
        }
    }
}
