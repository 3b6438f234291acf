//! MNE's default FIR filters (`mne.filter.create_filter` with `fir_design='firwin'`,
//! `fir_window='hamming'`, `phase='zero'`, automatic transition bands and filter length) and
//! their application by FFT overlap-add with `pad='reflect_limited'`
//! (`mne.filter._overlap_add_filter`).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::num_traits::Float;
use realfft::{ComplexToReal, FftNum, RealFftPlanner, RealToComplex};

use super::windows::{firwin_lowpass, FirWindow};
use super::DspError;

/// MNE's `_length_factors['hamming']`: filter length = 3.3 / transition bandwidth.
const HAMMING_LENGTH_FACTOR: f64 = 3.3;

/// Python's `round` (ties to even).
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// MNE's `filter_length='auto'` for the firwin design: `ceil(3.3 / min_tb * sfreq)` made odd.
fn auto_length(min_trans_hz: f64, sfreq: f64) -> usize {
    let seconds = HAMMING_LENGTH_FACTOR * 1.0 / min_trans_hz;
    let mut n = ((seconds * 1.0 * sfreq).ceil() as i64).max(1) as usize;
    n += (n - 1) % 2;
    n
}

/// `mne.filter._firwin_design`: sums of windowed-sinc low-passes, one per gain change, each as
/// long as its own transition band needs, centred in an `n`-tap filter.
/// `freq` is normalized to Nyquist (0 … 1), `gain` is 0 or 1 at each point.
fn firwin_design(n: usize, freq: &[f64], gain: &[f64], sfreq: f64) -> Result<Vec<f64>, DspError> {
    let mut h = vec![0.0f64; n];
    let k = freq.len();
    let mut prev_freq = freq[k - 1];
    let mut prev_gain = gain[k - 1];
    if prev_gain == 1.0 {
        h[n / 2] = 1.0;
    }
    for i in (0..k - 1).rev() {
        let this_freq = freq[i];
        let this_gain = gain[i];
        if this_gain != prev_gain {
            let transition = (prev_freq - this_freq) / 2.0;
            let mut this_n = py_round(HAMMING_LENGTH_FACTOR / transition) as i64;
            this_n += 1 - this_n.rem_euclid(2);
            let this_n = this_n.max(1) as usize;
            if this_n > n {
                return Err(DspError::invalid(
                    "FIR design",
                    format!(
                        "the filter length {n} is too short for the {:.2} Hz transition band, \
                         which requires {this_n} samples",
                        transition * sfreq
                    ),
                ));
            }
            let this_h = firwin_lowpass(this_n, (prev_freq + this_freq) / 2.0, FirWindow::Hamming);
            let offset = (n - this_n) / 2;
            for (j, v) in this_h.iter().enumerate() {
                if this_gain == 0.0 {
                    h[offset + j] -= v;
                } else {
                    h[offset + j] += v;
                }
            }
        }
        prev_gain = this_gain;
        prev_freq = this_freq;
    }
    Ok(h)
}

fn construct(sfreq: f64, freq_hz: &[f64], gain: &[f64], n: usize) -> Result<Vec<f64>, DspError> {
    let nyq = sfreq / 2.0;
    let freq: Vec<f64> = freq_hz.iter().map(|f| f / nyq).collect();
    firwin_design(n, &freq, gain, sfreq)
}

/// MNE's automatic lower transition bandwidth: `min(max(0.25 l_freq, 2), l_freq)`.
pub fn auto_l_trans(l_freq: f64) -> f64 {
    (0.25 * l_freq).max(2.0).min(l_freq)
}

/// MNE's automatic upper transition bandwidth: `min(max(0.25 h_freq, 2), sfreq/2 - h_freq)`.
pub fn auto_h_trans(h_freq: f64, sfreq: f64) -> f64 {
    (0.25 * h_freq).max(2.0).min(sfreq / 2.0 - h_freq)
}

/// Designs MNE's default FIR high-pass (`l_freq` only), low-pass (`h_freq` only) or band-pass
/// (`l_freq < h_freq`) filter. Transition bandwidths default to MNE's `'auto'`.
pub fn design_pass(
    sfreq: f64,
    l_freq: Option<f64>,
    h_freq: Option<f64>,
    l_trans: Option<f64>,
    h_trans: Option<f64>,
) -> Result<Vec<f64>, DspError> {
    let nyq = sfreq / 2.0;
    if !(sfreq.is_finite() && sfreq > 0.0) {
        return Err(DspError::invalid(
            "filter",
            format!("sampling rate {sfreq} Hz"),
        ));
    }
    if let Some(l) = l_freq {
        if !(l > 0.0) {
            return Err(DspError::invalid(
                "l_freq",
                format!("high-pass frequency {l} Hz must be greater than zero"),
            ));
        }
    }
    if let Some(h) = h_freq {
        if !(h < nyq) || !(h > 0.0) {
            return Err(DspError::invalid(
                "h_freq",
                format!("low-pass frequency {h} Hz must be in (0, Nyquist = {nyq} Hz)"),
            ));
        }
    }
    if let (Some(l), Some(h)) = (l_freq, h_freq) {
        if !(l < h) {
            return Err(DspError::invalid(
                "l_freq/h_freq",
                format!("band-pass needs l_freq < h_freq, got {l} and {h} Hz"),
            ));
        }
    }
    let mut l_stop = None;
    let mut lt = f64::INFINITY;
    if let Some(l) = l_freq {
        let t = l_trans.unwrap_or_else(|| auto_l_trans(l));
        if !(t > 0.0) {
            return Err(DspError::invalid(
                "l_trans_bandwidth",
                format!("must be positive, got {t}"),
            ));
        }
        let s = l - t;
        if s < 0.0 {
            return Err(DspError::invalid(
                "l_trans_bandwidth",
                format!("lower stop frequency negative ({s:.2} Hz): increase l_freq or reduce the transition bandwidth"),
            ));
        }
        l_stop = Some(s);
        lt = t;
    }
    let mut h_stop = None;
    let mut ht = f64::INFINITY;
    if let Some(h) = h_freq {
        let t = h_trans.unwrap_or_else(|| auto_h_trans(h, sfreq));
        if !(t > 0.0) {
            return Err(DspError::invalid(
                "h_trans_bandwidth",
                format!("must be positive, got {t}"),
            ));
        }
        let s = h + t;
        if s > nyq {
            return Err(DspError::invalid(
                "h_trans_bandwidth",
                format!("upper stop frequency {s} Hz is above Nyquist ({nyq} Hz)"),
            ));
        }
        h_stop = Some(s);
        ht = t;
    }
    let n = match (l_freq, h_freq) {
        (None, None) => return Ok(vec![1.0]),
        _ => auto_length(lt.min(ht), sfreq),
    };
    let (mut freq, mut gain): (Vec<f64>, Vec<f64>);
    match (l_freq, l_stop, h_freq, h_stop) {
        (None, _, Some(h), Some(hs)) => {
            freq = vec![0.0, h, hs];
            gain = vec![1.0, 1.0, 0.0];
            if hs != nyq {
                freq.push(nyq);
                gain.push(0.0);
            }
        }
        (Some(l), Some(ls), None, _) => {
            freq = vec![ls, l, nyq];
            gain = vec![0.0, 1.0, 1.0];
            if ls != 0.0 {
                freq.insert(0, 0.0);
                gain.insert(0, 0.0);
            }
        }
        (Some(l), Some(ls), Some(h), Some(hs)) => {
            freq = vec![ls, l, h, hs];
            gain = vec![0.0, 1.0, 1.0, 0.0];
            if hs != nyq {
                freq.push(nyq);
                gain.push(0.0);
            }
            if ls != 0.0 {
                freq.insert(0, 0.0);
                gain.insert(0, 0.0);
            }
        }
        _ => return Ok(vec![1.0]),
    }
    construct(sfreq, &freq, &gain, n)
}

/// Designs MNE's `notch_filter(method='fir')` band-stop: for each line frequency `f` with notch
/// width `w` (default `f / 200`) and `trans_bandwidth` (default 1 Hz), a stop band from
/// `f - w/2` to `f + w/2` with transition bands of `trans_bandwidth / 2`.
pub fn design_notch(
    sfreq: f64,
    freqs: &[f64],
    notch_widths: Option<&[f64]>,
    trans_bandwidth: f64,
) -> Result<Vec<f64>, DspError> {
    let nyq = sfreq / 2.0;
    if freqs.is_empty() {
        return Err(DspError::invalid("notch", "no frequencies given"));
    }
    let widths: Vec<f64> = match notch_widths {
        None => freqs.iter().map(|f| f / 200.0).collect(),
        Some([w]) => vec![*w; freqs.len()],
        Some(w) if w.len() == freqs.len() => w.to_vec(),
        Some(w) => {
            return Err(DspError::invalid(
                "notch_widths",
                format!("{} widths for {} frequencies", w.len(), freqs.len()),
            ))
        }
    };
    if widths.iter().any(|w| !(*w >= 0.0)) {
        return Err(DspError::invalid("notch_widths", "must be >= 0"));
    }
    if !(trans_bandwidth > 0.0) {
        return Err(DspError::invalid(
            "trans_bandwidth",
            format!("must be positive, got {trans_bandwidth}"),
        ));
    }
    let tb_2 = trans_bandwidth / 2.0;
    let lows: Vec<f64> = freqs
        .iter()
        .zip(&widths)
        .map(|(f, w)| f - w / 2.0 - tb_2)
        .collect();
    let highs: Vec<f64> = freqs
        .iter()
        .zip(&widths)
        .map(|(f, w)| f + w / 2.0 + tb_2)
        .collect();
    // _triage_filter_params(l_freq=lows, h_freq=highs, reverse=True)
    for &l in &lows {
        if !(l > 0.0) {
            return Err(DspError::invalid(
                "notch",
                format!("stop band starts at {l} Hz, must be above 0"),
            ));
        }
    }
    for &h in &highs {
        if !(h < nyq) {
            return Err(DspError::invalid(
                "notch",
                format!("stop band ends at {h} Hz, must be below Nyquist ({nyq} Hz)"),
            ));
        }
    }
    // l side: l_stop = lows - tb + tb = lows (pass edge), l_freq = lows + tb (stop edge)
    let f_p1: Vec<f64> = lows.iter().map(|l| (l - tb_2) + tb_2).collect();
    let f_s1: Vec<f64> = lows.iter().map(|l| l + tb_2).collect();
    // h side: h_stop = highs + tb - tb (pass edge), h_freq = highs - tb (stop edge)
    let f_p2: Vec<f64> = highs.iter().map(|h| (h + tb_2) - tb_2).collect();
    let f_s2: Vec<f64> = highs.iter().map(|h| h - tb_2).collect();
    for &p in &f_p2 {
        if p > nyq {
            return Err(DspError::invalid(
                "notch",
                format!("effective band-stop frequency {p} Hz is above Nyquist ({nyq} Hz)"),
            ));
        }
    }
    let n = auto_length(tb_2, sfreq);
    let mut pts: Vec<(f64, f64)> = Vec::new();
    pts.extend(f_p1.iter().map(|f| (*f, 1.0)));
    pts.extend(f_s1.iter().map(|f| (*f, 0.0)));
    pts.extend(f_s2.iter().map(|f| (*f, 0.0)));
    pts.extend(f_p2.iter().map(|f| (*f, 1.0)));
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if pts.first().is_some_and(|p| p.0 != 0.0) {
        pts.insert(0, (0.0, 1.0));
    }
    if pts.last().is_some_and(|p| p.0 != nyq) {
        pts.push((nyq, 1.0));
    }
    let gain: Vec<f64> = pts.iter().map(|p| p.1).collect();
    for w in gain.windows(3) {
        if (w[2] - 2.0 * w[1] + w[0]).abs() > 1.0 {
            return Err(DspError::invalid(
                "notch",
                "stop bands are not sufficiently separated",
            ));
        }
    }
    let freq: Vec<f64> = pts.iter().map(|p| p.0).collect();
    construct(sfreq, &freq, &gain, n)
}

/// A zero-phase FIR filter ready to apply with FFT overlap-add, in `f64` or `f32` arithmetic.
///
/// Before the FFTs the signal's mean `c` is removed and `c · Σh` added back to the output (exact
/// for a linear filter whenever the odd extension covers half the filter, which is when it is
/// done); this keeps a large DC offset from dominating the rounding error of `f32` FFTs.
pub struct OlaFilter<T: FftNum = f64> {
    n_h: usize,
    n_fft: usize,
    h_spec: Vec<Complex<T>>,
    fwd: Arc<dyn RealToComplex<T>>,
    inv: Arc<dyn ComplexToReal<T>>,
    sum_h: f64,
    /// `h` itself when it has a single tap.
    scalar: Option<f64>,
}

/// The FFT length for overlap-add: the power of two (at least `2 n_h - 1`) with the fewest FFT
/// operations over the whole extended signal, `ceil(n_x / (n - n_h + 1)) · n · (log2 n + 1)`.
/// Every length gives the same result up to rounding; MNE's own choice adds a penalty for long
/// FFTs that makes it pick the shortest, which costs 15–25% more work for 3301–5501 taps.
fn choose_n_fft(n_h: usize, n_x: usize) -> usize {
    let min_fft = (2 * n_h - 1).next_power_of_two();
    let max_fft = (n_x + n_h - 1).next_power_of_two().max(min_fft);
    let mut best = (f64::INFINITY, min_fft);
    let mut n = min_fft;
    while n <= max_fft {
        let blocks = n_x.div_ceil(n - n_h + 1) as f64;
        let cost = blocks * n as f64 * ((n as f64).log2() + 1.0);
        if cost < best.0 {
            best = (cost, n);
        }
        n *= 2;
    }
    best.1
}

impl<T: FftNum + Float> OlaFilter<T> {
    /// Prepares `h` (odd length) for signals of `n_samples` samples (the FFT length is chosen
    /// for that length; other lengths are filtered correctly too).
    pub fn new(h: &[f64], n_samples: usize) -> Result<Self, DspError> {
        let n_h = h.len();
        if n_h == 0 || n_h.is_multiple_of(2) {
            return Err(DspError::invalid(
                "FIR filter",
                format!("zero-phase filtering needs an odd number of taps, got {n_h}"),
            ));
        }
        let mut planner = RealFftPlanner::<T>::new();
        let sum_h = h.iter().sum();
        if n_h == 1 {
            let fwd = planner.plan_fft_forward(2);
            let inv = planner.plan_fft_inverse(2);
            return Ok(OlaFilter {
                n_h,
                n_fft: 2,
                h_spec: Vec::new(),
                fwd,
                inv,
                sum_h,
                scalar: Some(h[0]),
            });
        }
        let n_edge = n_h.min(n_samples).saturating_sub(1);
        let n_x = n_samples + 2 * n_edge;
        let n_fft = choose_n_fft(n_h, n_x);
        // the filter spectrum in f64, with the inverse FFT's 1/n scaling folded in
        let mut p64 = RealFftPlanner::<f64>::new();
        let fwd64 = p64.plan_fft_forward(n_fft);
        let mut buf = vec![0.0f64; n_fft];
        buf[..n_h].copy_from_slice(h);
        let mut spec64 = fwd64.make_output_vec();
        fwd64
            .process(&mut buf, &mut spec64)
            .map_err(|e| DspError::invalid("FFT", e.to_string()))?;
        let scale = 1.0 / n_fft as f64;
        let cast = |v: f64| T::from_f64(v * scale).unwrap_or_else(T::zero);
        let h_spec = spec64
            .iter()
            .map(|c| Complex::new(cast(c.re), cast(c.im)))
            .collect();
        Ok(OlaFilter {
            n_h,
            n_fft,
            h_spec,
            fwd: planner.plan_fft_forward(n_fft),
            inv: planner.plan_fft_inverse(n_fft),
            sum_h,
            scalar: None,
        })
    }

    /// Filters one channel: MNE's `_1d_overlap_filter` with `phase='zero'` and
    /// `pad='reflect_limited'` (the output has the input's length and no delay).
    pub fn apply(&self, x: &[T]) -> Vec<T> {
        let mut out = vec![T::zero(); x.len()];
        self.apply_into(x, &mut out);
        out
    }

    /// [`OlaFilter::apply`] into `out`, which must be as long as `x` (extra samples of a
    /// longer `out` are left alone).
    pub fn apply_into(&self, x: &[T], out: &mut [T]) {
        let n = x.len().min(out.len());
        if let Some(g) = self.scalar {
            for (o, v) in out.iter_mut().zip(x) {
                *o = scale(*v, g);
            }
            return;
        }
        let (x_ext, c) = self.extend(&x[..n]);
        self.convolve(&x_ext, c, &mut out[..n]);
    }

    /// [`OlaFilter::apply`] overwriting `x` with the result.
    pub fn apply_in_place(&self, x: &mut [T]) {
        if let Some(g) = self.scalar {
            for v in x.iter_mut() {
                *v = scale(*v, g);
            }
            return;
        }
        let (x_ext, c) = self.extend(x);
        self.convolve(&x_ext, c, x);
    }

    /// The odd extension of `x - c` MNE's `reflect_limited` padding makes, and the mean `c`
    /// removed (zero when the extension does not cover every tap's reach; see the type's docs).
    fn extend(&self, x: &[T]) -> (Vec<T>, f64) {
        let n = x.len();
        if n == 0 {
            return (Vec::new(), 0.0);
        }
        let half = (self.n_h - 1) / 2;
        let n_edge = self.n_h.min(n) - 1;
        let c = if n_edge >= half {
            x.iter().map(|v| v.to_f64().unwrap_or(0.0)).sum::<f64>() / n as f64
        } else {
            0.0
        };
        (odd_extend_shifted(x, n_edge, c), c)
    }

    /// Overlap-add of the extension `x_ext` of a signal of `out.len()` samples into `out`.
    fn convolve(&self, x_ext: &[T], c: f64, out: &mut [T]) {
        let n = out.len();
        if n == 0 {
            return;
        }
        let n_h = self.n_h;
        let n_edge = (x_ext.len() - n) / 2;
        let n_x = x_ext.len();
        let shift = (n_h - 1) / 2 + n_edge;
        // output[i] = full_conv[i + shift], i in 0..n
        out.fill(T::zero());
        let n_seg = self.n_fft - n_h + 1;
        let mut buf = vec![T::zero(); self.n_fft];
        let mut spec = self.fwd.make_output_vec();
        let mut scratch_f = self.fwd.make_scratch_vec();
        let mut scratch_i = self.inv.make_scratch_vec();
        let mut start = 0usize;
        while start < n_x {
            let stop = (start + n_seg).min(n_x);
            // this block contributes to full_conv[start .. start + n_fft)
            let block_end = start + self.n_fft;
            if block_end > shift && start < shift + n {
                buf[..stop - start].copy_from_slice(&x_ext[start..stop]);
                buf[stop - start..].fill(T::zero());
                // processing errors only arise from wrong buffer lengths, which are fixed here
                let _ = self
                    .fwd
                    .process_with_scratch(&mut buf, &mut spec, &mut scratch_f);
                for (s, h) in spec.iter_mut().zip(&self.h_spec) {
                    *s = *s * *h;
                }
                let _ = self
                    .inv
                    .process_with_scratch(&mut spec, &mut buf, &mut scratch_i);
                let lo = start.max(shift);
                let hi = block_end.min(shift + n);
                for (o, b) in out[lo - shift..hi - shift]
                    .iter_mut()
                    .zip(&buf[lo - start..hi - start])
                {
                    *o = *o + *b;
                }
            }
            start += n_seg;
        }
        if c != 0.0 {
            let dc = c * self.sum_h;
            for o in out.iter_mut() {
                *o = T::from_f64(o.to_f64().unwrap_or(0.0) + dc).unwrap_or_else(T::zero);
            }
        }
    }
}

/// `v · g` computed in `f64`.
fn scale<T: Float>(v: T, g: f64) -> T {
    T::from(v.to_f64().unwrap_or(0.0) * g).unwrap_or_else(T::zero)
}

/// [`odd_extend`] of `x - c`, computed in `f64` and stored as `T` (`n < x.len()`).
fn odd_extend_shifted<T: Float>(x: &[T], n: usize, c: f64) -> Vec<T> {
    let len = x.len();
    let mut out = Vec::with_capacity(len + 2 * n);
    let (Some(first), Some(last)) = (x.first(), x.last()) else {
        return out;
    };
    let f = |v: T| v.to_f64().unwrap_or(0.0);
    let t = |v: f64| T::from(v).unwrap_or_else(T::zero);
    let (first, last) = (f(*first), f(*last));
    for i in (1..=n.min(len - 1)).rev() {
        out.push(t(2.0 * first - f(x[i]) - c));
    }
    out.extend(x.iter().map(|v| t(f(*v) - c)));
    for i in 1..=n.min(len - 1) {
        out.push(t(2.0 * last - f(x[len - 1 - i]) - c));
    }
    out
}

/// Filters one channel with MNE's zero-phase overlap-add in `f64` (convenience for one use).
pub fn filter_zero_phase(h: &[f64], x: &[f64]) -> Result<Vec<f64>, DspError> {
    Ok(OlaFilter::<f64>::new(h, x.len())?.apply(x))
}

/// Filters one channel with the `f32` overlap-add that recipes use.
pub fn filter_zero_phase_f32(h: &[f64], x: &[f32]) -> Result<Vec<f32>, DspError> {
    Ok(OlaFilter::<f32>::new(h, x.len())?.apply(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_lengths_match_mne_log() {
        // MNE logs "Filter length: 5501 samples" for 0.3-75 Hz at 500 Hz and 3301 for a 50 Hz notch
        assert_eq!(
            design_pass(500.0, Some(0.3), Some(75.0), None, None)
                .unwrap()
                .len(),
            5501
        );
        assert_eq!(design_notch(500.0, &[50.0], None, 1.0).unwrap().len(), 3301);
        assert_eq!(
            design_pass(500.0, Some(1.0), None, None, None)
                .unwrap()
                .len(),
            1651
        );
        assert_eq!(
            design_pass(500.0, None, Some(40.0), None, None)
                .unwrap()
                .len(),
            165
        );
    }

    #[test]
    fn lowpass_has_unit_dc_gain_and_highpass_zero() {
        let h = design_pass(500.0, None, Some(40.0), None, None).unwrap();
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let h = design_pass(500.0, Some(1.0), None, None, None).unwrap();
        assert!(h.iter().sum::<f64>().abs() < 1e-9);
    }

    #[test]
    fn rejects_band_edges_beyond_nyquist() {
        assert!(design_pass(100.0, None, Some(50.0), None, None).is_err());
        assert!(design_pass(100.0, Some(0.0), None, None, None).is_err());
        assert!(design_notch(100.0, &[50.0], None, 1.0).is_err());
    }

    #[test]
    fn in_place_equals_apply_and_fft_length_does_not_matter() {
        let h = design_pass(100.0, Some(1.0), Some(20.0), None, None).unwrap();
        for n in [5usize, 200, 3000] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 101) as f32 - 50.0 + 1000.0)
                .collect();
            let f = OlaFilter::<f32>::new(&h, n).unwrap();
            let y = f.apply(&x);
            let mut z = x.clone();
            f.apply_in_place(&mut z);
            assert_eq!(y, z);
            // an FFT length chosen for another signal length gives the same result
            let g = OlaFilter::<f64>::new(&h, 10 * n + 7).unwrap();
            let x64: Vec<f64> = x.iter().map(|v| f64::from(*v)).collect();
            let w = filter_zero_phase(&h, &x64).unwrap();
            for (a, b) in g.apply(&x64).iter().zip(&w) {
                assert!((a - b).abs() < 1e-9, "{a} vs {b}");
            }
            for (a, b) in y.iter().zip(&w) {
                assert!((f64::from(*a) - b).abs() < 1e-3, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn ola_equals_direct_convolution() {
        let h = design_pass(100.0, None, Some(20.0), None, None).unwrap();
        let x: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 101) as f64 - 50.0)
            .collect();
        let y = filter_zero_phase(&h, &x).unwrap();
        let n_edge = h.len() - 1;
        let ext = crate::dsp::odd_extend(&x, n_edge);
        let half = (h.len() - 1) / 2;
        for i in [0usize, 1, 17, 500, 998, 999] {
            let mut acc = 0.0;
            for (j, hj) in h.iter().enumerate() {
                let k = (i + n_edge + half) as i64 - j as i64;
                if k >= 0 && (k as usize) < ext.len() {
                    acc += hj * ext[k as usize];
                }
            }
            assert!((acc - y[i]).abs() < 1e-9, "{i}: {acc} vs {}", y[i]);
        }
    }
}
