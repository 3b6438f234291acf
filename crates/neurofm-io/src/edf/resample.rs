//! MNE's FFT resampling as the EDF/BDF/GDF readers use it.
//!
//! MNE reads a channel whose rate is lower than the recording's highest rate in full and calls
//! `mne.filter.resample(x, up=n_out, down=n_in, npad=0)` (method "fft", window "boxcar"), which
//! comes down to: `X = rfft(x)`; halve the Nyquist bin when `n_in` is even; scale by
//! `n_out / n_in`; `y = irfft(X, n_out)` (the spectrum zero-padded to `n_out`). Float64 throughout,
//! as MNE does.

use realfft::RealFftPlanner;

/// Upsamples `x` (length `n_in`) to `n_out >= n_in` samples exactly as MNE does (see module doc).
pub(crate) fn resample_fft(x: &[f64], n_out: usize) -> Vec<f64> {
    let n_in = x.len();
    if n_in == 0 || n_out == 0 {
        return vec![0.0; n_out];
    }
    if n_in == n_out {
        return x.to_vec();
    }
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n_in);
    let inv = planner.plan_fft_inverse(n_out);
    let mut input = x.to_vec();
    let mut spec = fwd.make_output_vec();
    // Lengths match the plan, so this cannot fail.
    if fwd.process(&mut input, &mut spec).is_err() {
        return vec![0.0; n_out];
    }
    let shorter = n_out < n_in;
    let use_len = if shorter { n_out } else { n_in };
    if use_len.is_multiple_of(2) {
        if let Some(v) = spec.get_mut(use_len / 2) {
            *v *= if shorter { 2.0 } else { 0.5 };
        }
    }
    let w = n_out as f64 / n_in as f64;
    let mut out_spec = inv.make_input_vec();
    for (o, s) in out_spec.iter_mut().zip(spec.iter()) {
        *o = *s * w;
    }
    // irfft ignores the imaginary parts of the DC and (even length) Nyquist bins.
    if let Some(v) = out_spec.first_mut() {
        v.im = 0.0;
    }
    if n_out.is_multiple_of(2) {
        if let Some(v) = out_spec.last_mut() {
            v.im = 0.0;
        }
    }
    let mut y = inv.make_output_vec();
    if inv.process(&mut out_spec, &mut y).is_err() {
        return vec![0.0; n_out];
    }
    let norm = 1.0 / n_out as f64;
    for v in &mut y {
        *v *= norm;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_stays_constant() {
        let y = resample_fft(&[2.0; 6], 12);
        for v in y {
            assert!((v - 2.0).abs() < 1e-12);
        }
    }

    #[test]
    fn matches_scipy_irfft_reference() {
        // numpy: X = rfft([1,2,3,4]); X[2] *= 0.5; X *= 2; irfft(X, 8)
        let y = resample_fft(&[1.0, 2.0, 3.0, 4.0], 8);
        let want = [
            1.0,
            1.0857864376269049,
            2.0,
            2.5,
            3.0,
            3.914213562373095,
            4.0,
            2.5,
        ];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{y:?}");
        }
    }
}
