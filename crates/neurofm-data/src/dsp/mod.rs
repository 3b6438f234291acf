//! Signal processing kernels, written to reproduce the reference implementations exactly:
//!
//! - [`fir`]: MNE's default FIR design (`mne.filter.create_filter`: firwin design, Hamming window,
//!   automatic transition bands and length) and its zero-phase overlap-add filtering with
//!   `reflect_limited` edge padding (`mne.filter.filter_data`, `notch_filter`);
//! - [`resample`]: `scipy.signal.resample_poly` (Kaiser window β = 5, zero padding);
//! - [`iir`]: Butterworth design as second-order sections and forward-backward filtering as
//!   `scipy.signal.sosfiltfilt` (odd padding, `sosfilt_zi` initial conditions).
//!
//! All kernels work on one channel in `f64`; the FIR overlap-add also in `f32`, which recipes use.

// `!(x > 0.0)` is deliberate: NaN parameters must fail the checks.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod fir;
pub mod iir;
pub mod resample;
pub mod windows;

use thiserror::Error;

/// A filter or resampler that cannot be built for the given parameters.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DspError {
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl DspError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        DspError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Odd (point-symmetric) extension by `n` samples on each side: `2 x[0] - x[n..1]`, `x`,
/// `2 x[-1] - x[-2..-n-1]` — scipy's `odd_ext` and MNE's `reflect_limited` when `n < len(x)`.
/// MNE additionally zero-pads when `n >= len(x)` (handled by the caller).
pub(crate) fn odd_extend(x: &[f64], n: usize) -> Vec<f64> {
    let len = x.len();
    let mut out = Vec::with_capacity(len + 2 * n);
    if len == 0 {
        return out;
    }
    let first = x[0];
    let last = x[len - 1];
    // left: x[n], x[n-1], ..., x[1] (only indices < len exist)
    for i in (1..=n).rev() {
        out.push(if i < len { 2.0 * first - x[i] } else { 0.0 });
    }
    out.extend_from_slice(x);
    for i in 1..=n {
        out.push(if i < len {
            2.0 * last - x[len - 1 - i]
        } else {
            0.0
        });
    }
    out
}
