//! Windows over a store: fixed-length windows with a stride, or epochs locked to annotations,
//! with labels from annotations or from recording-level fields. Windows are read straight from
//! the memory-mapped store, one window's bytes at a time.

// `!(a < b)` is deliberate: NaN parameters must fail the checks.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::steps::channels::standard_name;
use crate::store::{Entry, Store};

/// One window: `len` samples from sample `start` of entry `entry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Index into `store.entries()`.
    pub entry: usize,
    /// First sample.
    pub start: usize,
    pub len: usize,
    /// Index into [`WindowIndex::classes`].
    pub label: Option<usize>,
    pub subject: Option<String>,
}

/// Where window labels come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabelSource {
    /// Unlabelled fixed-length windows.
    #[default]
    None,
    /// Event-locked epochs: one window per annotation whose description is in `mapping`, from
    /// `onset + tmin_s` to `onset + tmax_s` (half-open, `round((tmax_s - tmin_s) · sfreq)`
    /// samples). `length_s` / `stride_s` are not used.
    Annotations {
        mapping: BTreeMap<String, String>,
        tmin_s: f64,
        tmax_s: f64,
    },
    /// Fixed-length windows labelled by a recording-level value: `key` is an entry label
    /// (`labels` in the manifest) or one of `subject`, `session`, `task`, `run`.
    Recording {
        key: String,
        mapping: BTreeMap<String, String>,
    },
    /// Fixed-length windows labelled by a time-aligned extra tensor `[k, n_times]` of the
    /// recording (e.g. the behaviour `covariates` of calcium recordings): the mean of row `row`
    /// over the window is binned by `thresholds` (ascending) into `classes`
    /// (`thresholds.len() + 1` names, lowest bin first). Windows whose mean is not finite are
    /// left unlabelled.
    Covariate {
        #[serde(default = "default_covariate_extra")]
        extra: String,
        row: usize,
        thresholds: Vec<f64>,
        classes: Vec<String>,
    },
}

fn default_covariate_extra() -> String {
    "covariates".into()
}

/// How to cut recordings into windows (TOML / JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub length_s: f64,
    pub stride_s: f64,
    #[serde(default)]
    pub labels: LabelSource,
}

impl WindowConfig {
    /// `(window_len, stride)` in samples at `sfreq_hz`.
    pub fn samples(&self, sfreq_hz: f64) -> Result<(usize, usize), DataError> {
        let (len_s, stride_s) = match &self.labels {
            LabelSource::Annotations { tmin_s, tmax_s, .. } => {
                if !(tmax_s > tmin_s) {
                    return Err(DataError::Window(format!(
                        "tmax_s ({tmax_s}) must be greater than tmin_s ({tmin_s})"
                    )));
                }
                (tmax_s - tmin_s, tmax_s - tmin_s)
            }
            _ => (self.length_s, self.stride_s),
        };
        let len = (len_s * sfreq_hz).round();
        let stride = (stride_s * sfreq_hz).round();
        if !(len >= 1.0 && len.is_finite()) {
            return Err(DataError::Window(format!(
                "window length {len_s} s is less than one sample at {sfreq_hz} Hz"
            )));
        }
        if !(stride >= 1.0 && stride.is_finite()) {
            return Err(DataError::Window(format!(
                "stride {stride_s} s is less than one sample at {sfreq_hz} Hz"
            )));
        }
        Ok((len as usize, stride as usize))
    }

    /// The window step recorded in a prepared entry's recipe, if any.
    pub fn from_entry(entry: &Entry) -> Result<Option<WindowConfig>, DataError> {
        let Some(recipe) = &entry.recipe else {
            return Ok(None);
        };
        let steps = recipe.get("steps").and_then(|s| s.as_array());
        let Some(last) = steps.and_then(|s| s.last()) else {
            return Ok(None);
        };
        if last.get("type").and_then(|t| t.as_str()) != Some("window") {
            return Ok(None);
        }
        let mut v = last.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("type");
        }
        serde_json::from_value(v).map(Some).map_err(|e| {
            DataError::Window(format!("entry `{}`: recorded window step: {e}", entry.id))
        })
    }

    /// The window step shared by every entry of a prepared store (error if they differ).
    pub fn from_store(store: &Store) -> Result<Option<WindowConfig>, DataError> {
        let mut found: Option<WindowConfig> = None;
        for e in store.entries() {
            let c = WindowConfig::from_entry(e)?;
            match (&found, c) {
                (None, Some(c)) => found = Some(c),
                (Some(f), Some(c)) if *f != c => {
                    return Err(DataError::Window(format!(
                        "entry `{}` records a different window step than the other entries",
                        e.id
                    )))
                }
                _ => {}
            }
        }
        Ok(found)
    }
}

/// All windows of a store, with what a model needs to know about them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowIndex {
    pub windows: Vec<Window>,
    /// Label names; a window's `label` indexes this list.
    pub classes: Vec<String>,
    pub n_channels: usize,
    pub window_len: usize,
    pub sfreq_hz: f64,
    pub channel_names: Vec<String>,
}

/// What an amplitude rejection removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RejectReport {
    pub kept: usize,
    pub rejected: usize,
    /// Rejected windows per entry id.
    pub per_entry: BTreeMap<String, usize>,
}

pub(crate) fn recording_value(entry: &Entry, key: &str) -> Option<String> {
    if let Some(v) = entry.labels.get(key) {
        return Some(match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    match key {
        "subject" => entry.subject.clone(),
        "session" => entry.session.clone(),
        "task" => entry.task.clone(),
        "run" => entry.run.clone(),
        _ => entry.metadata.get(key).cloned(),
    }
}

impl WindowIndex {
    /// Lists the windows of every entry. All entries must have `[channels, samples]` data with
    /// the same sampling rate and the same channels in the same order.
    pub fn build(store: &Store, cfg: &WindowConfig) -> Result<WindowIndex, DataError> {
        let entries = store.entries();
        let Some(first) = entries.first() else {
            return Err(DataError::Window("the store has no recordings".into()));
        };
        let sfreq = first.sfreq_hz;
        let names: Vec<String> = first.channels.iter().map(standard_name).collect();
        for e in entries {
            if e.shape.len() != 2 {
                return Err(DataError::Window(format!(
                    "entry `{}` has a {:?} tensor, windows need [channels, samples]",
                    e.id, e.shape
                )));
            }
            if (e.sfreq_hz - sfreq).abs() > 1e-9 * sfreq {
                return Err(DataError::Window(format!(
                    "entry `{}` is sampled at {} Hz, entry `{}` at {} Hz: resample first",
                    e.id, e.sfreq_hz, first.id, sfreq
                )));
            }
            let these: Vec<String> = e.channels.iter().map(standard_name).collect();
            if these != names {
                return Err(DataError::Window(format!(
                    "entry `{}` has channels [{}], entry `{}` has [{}]: pick a common montage first",
                    e.id,
                    these.join(", "),
                    first.id,
                    names.join(", ")
                )));
            }
        }
        let (len, stride) = cfg.samples(sfreq)?;
        let classes: Vec<String> = match &cfg.labels {
            LabelSource::None => Vec::new(),
            LabelSource::Annotations { mapping, .. } | LabelSource::Recording { mapping, .. } => {
                mapping
                    .values()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }
            LabelSource::Covariate {
                thresholds,
                classes,
                ..
            } => {
                if classes.len() != thresholds.len() + 1 {
                    return Err(DataError::Window(format!(
                        "labels.classes: {} names for {} thresholds (need thresholds + 1)",
                        classes.len(),
                        thresholds.len()
                    )));
                }
                if thresholds.windows(2).any(|w| !(w[0] < w[1]))
                    || thresholds.iter().any(|t| !t.is_finite())
                {
                    return Err(DataError::Window(
                        "labels.thresholds must be finite and strictly ascending".into(),
                    ));
                }
                classes.clone()
            }
        };
        let class_of = |name: &str| classes.iter().position(|c| c == name);
        let mut windows = Vec::new();
        for (ei, e) in entries.iter().enumerate() {
            let n = e.n_times;
            match &cfg.labels {
                LabelSource::None | LabelSource::Recording { .. } => {
                    let label = match &cfg.labels {
                        LabelSource::Recording { key, mapping } => {
                            let v = recording_value(e, key).ok_or_else(|| {
                                DataError::Window(format!("entry `{}` has no `{key}`", e.id))
                            })?;
                            let class = mapping.get(&v).ok_or_else(|| {
                                DataError::Window(format!(
                                    "entry `{}`: {key} = `{v}` is not in the label mapping",
                                    e.id
                                ))
                            })?;
                            class_of(class)
                        }
                        _ => None,
                    };
                    let mut start = 0;
                    while start + len <= n {
                        windows.push(Window {
                            entry: ei,
                            start,
                            len,
                            label,
                            subject: e.subject.clone(),
                        });
                        start += stride;
                    }
                }
                LabelSource::Covariate {
                    extra,
                    row,
                    thresholds,
                    ..
                } => {
                    let view = store.view(&e.id)?;
                    let (shape, data) = view.extra(extra).map_err(|err| {
                        DataError::Window(format!(
                            "entry `{}`: labels.extra `{extra}`: {err}",
                            e.id
                        ))
                    })?;
                    let (k, t) = match shape.as_slice() {
                        [t] => (1, *t),
                        [k, t] => (*k, *t),
                        _ => (0, 0),
                    };
                    if t != n || *row >= k {
                        return Err(DataError::Window(format!(
                            "entry `{}`: extra `{extra}` has shape {shape:?}; labels need [rows > {row}, {n}] (time-aligned with the recording)",
                            e.id
                        )));
                    }
                    let series = &data[row * t..(row + 1) * t];
                    let mut start = 0;
                    while start + len <= n {
                        let w = &series[start..start + len];
                        let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / len as f64;
                        let label = mean
                            .is_finite()
                            .then(|| thresholds.iter().filter(|&&th| mean >= th).count());
                        windows.push(Window {
                            entry: ei,
                            start,
                            len,
                            label,
                            subject: e.subject.clone(),
                        });
                        start += stride;
                    }
                }
                LabelSource::Annotations {
                    mapping, tmin_s, ..
                } => {
                    for a in &e.annotations {
                        let Some(class) = mapping.get(&a.description) else {
                            continue;
                        };
                        let s = ((a.onset_s + tmin_s) * sfreq).round();
                        if s < 0.0 || s as usize + len > n {
                            continue; // epoch outside the recording
                        }
                        windows.push(Window {
                            entry: ei,
                            start: s as usize,
                            len,
                            label: class_of(class),
                            subject: e.subject.clone(),
                        });
                    }
                }
            }
        }
        Ok(WindowIndex {
            windows,
            classes,
            n_channels: names.len(),
            window_len: len,
            sfreq_hz: sfreq,
            channel_names: names,
        })
    }

    /// Copies window `i` (`[n_channels, window_len]`, row-major) into `out`, reading only that
    /// window's bytes from the memory-mapped store.
    pub fn read(&self, store: &Store, i: usize, out: &mut [f32]) -> Result<(), DataError> {
        let w = self.windows.get(i).ok_or_else(|| {
            DataError::Window(format!("window {i} out of range ({})", self.windows.len()))
        })?;
        let view = store.view_index(w.entry)?;
        view.window_into(w.start, w.len, out)?;
        Ok(())
    }

    /// The distinct subjects, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.windows
            .iter()
            .filter_map(|w| w.subject.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Keeps the windows of the subjects in `include` (all when `None`) that are not in
    /// `exclude`. A listed subject the index does not have is an error (a typo would otherwise
    /// silently change what a model is trained or evaluated on), and so is a selection that
    /// keeps no window.
    pub fn retain_subjects(
        &mut self,
        include: Option<&[String]>,
        exclude: &[String],
    ) -> Result<(), DataError> {
        let known = self.subjects();
        for s in include.unwrap_or(&[]).iter().chain(exclude) {
            if !known.contains(s) {
                return Err(DataError::Window(format!(
                    "subject `{s}` has no window here (subjects: {})",
                    known.join(", ")
                )));
            }
        }
        self.windows.retain(|w| {
            let s = w.subject.as_deref().unwrap_or("");
            include.is_none_or(|inc| inc.iter().any(|i| i == s)) && !exclude.iter().any(|e| e == s)
        });
        if self.windows.is_empty() {
            return Err(DataError::Window(
                "the subject selection keeps no window".into(),
            ));
        }
        Ok(())
    }

    /// Drops windows in which any sample's absolute value exceeds `max_abs` (stored units) and
    /// reports how many were dropped per entry.
    pub fn reject_amplitude(
        &mut self,
        store: &Store,
        max_abs: f32,
    ) -> Result<RejectReport, DataError> {
        let mut report = RejectReport::default();
        let mut buf = vec![0f32; self.n_channels * self.window_len];
        let mut keep = Vec::with_capacity(self.windows.len());
        for (i, w) in self.windows.iter().enumerate() {
            buf.resize(self.n_channels * w.len, 0.0);
            self.read(store, i, &mut buf)?;
            let bad = buf.iter().any(|v| !(v.abs() <= max_abs));
            if bad {
                report.rejected += 1;
                let id = store
                    .entries()
                    .get(w.entry)
                    .map(|e| e.id.clone())
                    .unwrap_or_default();
                *report.per_entry.entry(id).or_insert(0) += 1;
            }
            keep.push(!bad);
        }
        let mut it = keep.iter();
        self.windows.retain(|_| *it.next().unwrap_or(&true));
        report.kept = self.windows.len();
        Ok(report)
    }
}
