//! Window functions and the sinc, as scipy / numpy define them (symmetric windows, `fftbins=False`).

use std::f64::consts::PI;

/// Modified Bessel function of the first kind, order 0 (power series; accurate to machine
/// precision for the arguments window design uses).
pub fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    let mut k = 1.0f64;
    loop {
        term *= q / (k * k);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
        k += 1.0;
        if k > 500.0 {
            break;
        }
    }
    sum
}

/// numpy's normalized sinc: `sin(pi x) / (pi x)`, 1 at 0.
pub fn sinc(x: f64) -> f64 {
    let y = PI * if x == 0.0 { 1e-20 } else { x };
    y.sin() / y
}

/// `scipy.signal.windows.kaiser(m, beta, sym=True)`.
pub fn kaiser(m: usize, beta: f64) -> Vec<f64> {
    if m <= 1 {
        return vec![1.0; m];
    }
    let alpha = (m as f64 - 1.0) / 2.0;
    let denom = bessel_i0(beta);
    (0..m)
        .map(|n| {
            let r = (n as f64 - alpha) / alpha;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / denom
        })
        .collect()
}

/// `scipy.signal.windows.hamming(m, sym=True)` (general cosine with a = [0.54, 0.46] over
/// `linspace(-pi, pi, m)`).
pub fn hamming(m: usize) -> Vec<f64> {
    if m <= 1 {
        return vec![1.0; m];
    }
    let step = 2.0 * PI / (m as f64 - 1.0);
    (0..m)
        .map(|i| {
            let fac = if i == m - 1 { PI } else { i as f64 * step - PI };
            0.54 + 0.46 * fac.cos()
        })
        .collect()
}

/// The windows a FIR design can use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FirWindow {
    Hamming,
    Kaiser(f64),
}

impl FirWindow {
    pub fn make(self, m: usize) -> Vec<f64> {
        match self {
            FirWindow::Hamming => hamming(m),
            FirWindow::Kaiser(beta) => kaiser(m, beta),
        }
    }
}

/// `scipy.signal.firwin(numtaps, cutoff, window, pass_zero=True, scale=True)` for a low-pass with
/// `cutoff` relative to Nyquist (0 < cutoff < 1).
pub fn firwin_lowpass(numtaps: usize, cutoff: f64, window: FirWindow) -> Vec<f64> {
    let alpha = 0.5 * (numtaps as f64 - 1.0);
    let win = window.make(numtaps);
    let mut h: Vec<f64> = (0..numtaps)
        .map(|i| {
            let m = i as f64 - alpha;
            cutoff * sinc(cutoff * m) * win[i]
        })
        .collect();
    // scale so that the gain at DC is exactly 1 (scale_frequency = 0 → cos(0) = 1)
    let s: f64 = h.iter().sum();
    for v in &mut h {
        *v /= s;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i0_matches_known_values() {
        // scipy.special.i0
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-14);
        assert!((bessel_i0(5.0) - 27.239_871_823_604_45).abs() < 1e-11);
    }

    #[test]
    fn hamming_is_symmetric_with_054_ends() {
        let w = hamming(11);
        assert!((w[0] - 0.08).abs() < 1e-12);
        assert!((w[5] - 1.0).abs() < 1e-12);
        for i in 0..11 {
            assert!((w[i] - w[10 - i]).abs() < 1e-12);
        }
    }

    #[test]
    fn firwin_has_unit_dc_gain() {
        let h = firwin_lowpass(101, 0.2, FirWindow::Kaiser(5.0));
        let s: f64 = h.iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
        assert!((h[0] - h[100]).abs() < 1e-15);
    }
}
