//! The reader conformance check every reader's tests run (MNE's `_test_raw_reader`).

use std::path::Path;

use neurofm_core::Signal;

use crate::error::IoError;
use crate::reader::{open_raw, RawReader};

/// What [`check_reader`] found wrong, one line per problem.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub problems: Vec<String>,
    pub n_channels: usize,
    pub n_times: usize,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Opens `path` with [`open_raw`] and runs [`check_raw_reader`] on it.
pub fn check_reader(path: &Path) -> Result<CheckReport, IoError> {
    let mut r = open_raw(path)?;
    check_raw_reader(r.as_mut())
}

/// Checks an opened reader:
/// * `read_all` gives one row per channel and `n_times` columns;
/// * every value is finite;
/// * lazy reads of several segments (start, middle, end, a one-sample one, segments crossing
///   record boundaries) equal the same columns of the full read, bit for bit;
/// * out-of-range segments are refused with an error;
/// * annotations lie inside the recording (onset >= 0, onset + duration <= duration of the
///   recording, with one sample of slack); files with no channels (annotation-only) are exempt;
/// * the sampling rate is positive and finite, provenance is filled in.
pub fn check_raw_reader(r: &mut dyn RawReader) -> Result<CheckReport, IoError> {
    let mut rep = CheckReport::default();
    let info = r.info().clone();
    let n = r.n_times();
    let nc = info.n_channels();
    rep.n_channels = nc;
    rep.n_times = n;
    if !(info.sfreq_hz.is_finite() && info.sfreq_hz > 0.0) {
        rep.problems
            .push(format!("sampling rate {} is not positive", info.sfreq_hz));
    }
    if info.provenance.source_sha256.len() != 64 || info.provenance.reader.is_empty() {
        rep.problems.push("provenance is not filled in".into());
    }
    let rec = r.read_all()?;
    let data = match &rec.signal {
        Signal::Channels {
            n_channels,
            n_samples,
            data,
        } => {
            if *n_channels != nc || *n_samples != n {
                rep.problems.push(format!(
                    "read_all shape [{n_channels}, {n_samples}] != [{nc}, {n}]"
                ));
            }
            data.clone()
        }
        Signal::Volumes { data, .. } => data.clone(),
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        rep.problems.push(format!(
            "non-finite value {} at channel {}, sample {}",
            data[i],
            i / n.max(1),
            i % n.max(1)
        ));
    }
    let is_channels = matches!(rec.signal, Signal::Channels { .. });
    if is_channels && nc > 0 && n > 0 {
        let mut segs = vec![
            (0, n.min(7)),
            (n / 3, (n / 3 + 1).min(n)),
            (n.saturating_sub(5), n),
        ];
        let mid = n / 2;
        segs.push((mid.saturating_sub(n / 4), (mid + n / 4 + 1).min(n)));
        segs.push((1.min(n), n));
        for (a, b) in segs {
            if a >= b {
                continue;
            }
            let len = b - a;
            let mut out = vec![0f32; nc * len];
            r.read_segment(a, b, &mut out)?;
            for c in 0..nc {
                let lazy = &out[c * len..(c + 1) * len];
                let full = &data[c * n + a..c * n + b];
                let same = lazy
                    .iter()
                    .zip(full)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                if !same {
                    rep.problems.push(format!(
                        "segment [{a}, {b}) of channel {c} differs from the full read"
                    ));
                    break;
                }
            }
        }
        let mut out = vec![0f32; nc];
        if r.read_segment(n, n + 1, &mut out).is_ok() {
            rep.problems
                .push("a segment past the end was accepted".into());
        }
    }
    if nc > 0 {
        let dur = n as f64 / info.sfreq_hz;
        let slack = 1.0 / info.sfreq_hz + 1e-9;
        for a in &rec.annotations {
            if !(a.onset_s >= 0.0 && a.duration_s >= 0.0 && a.onset_s + a.duration_s <= dur + slack)
            {
                rep.problems.push(format!(
                    "annotation {:?} at {} s (+{} s) is outside the recording (0..{dur} s)",
                    a.description, a.onset_s, a.duration_s
                ));
            }
        }
    }
    Ok(rep)
}
