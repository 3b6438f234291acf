//! C. elegans whole-brain calcium imaging: readers, homogenization onto the canonical 302
//! neurons, and connectomes.
//!
//! ## Readers
//! * [`read_dag2023`]: the Flavell-lab HDF5 files of Dag et al. (Cell 2023) — `gcamp/trace_array`
//!   (time × ROI as h5py and `hdf5-reader` show it; Julia wrote it, so Julia sees ROI × time),
//!   `timing/timestamp_confocal` (seconds), behaviour (`velocity`, `head_angle`,
//!   `angular_velocity`, `worm_curvature`, `pumping`, `reversal_vec`) and the NeuroPAL
//!   registration (`neuropal_registration/roi_match`: for NeuroPAL ROI `i` (1-based), the GCaMP
//!   ROI it matched (1-based, 0 = none), with `roi_match_confidence`). The files store **no
//!   neuron names**: names come from a NeuroPAL label table (CSV `neuropal_roi,neuron`) given as
//!   [`Dag2023Options::neuropal_labels`]; without it every ROI is unidentified.
//! * [`read_neuron_matrix`]: any time × neuron matrix in HDF5 (dataset path), CSV (header =
//!   names), NPY or MAT v5/v7.3, with a list of names and either a sampling rate or a timestamp vector.
//!
//! ## Homogenization ([`homogenize`])
//! 1. Resample every trace and covariate to a common step `dt_s` by linear interpolation on
//!    the recording's own timestamps (grid `t0, t0 + dt, ...` up to the last timestamp).
//! 2. Optional smoothing: centred moving average over `smooth_samples` (odd) samples of the
//!    resampled series; the window shrinks at the edges.
//! 3. Optional per-neuron z-score (mean 0, population std 1); a constant trace becomes zeros
//!    and is reported.
//! 4. Canonical ordering: row `i` is `NEURONS_302[i]`. A `mask` (302 values, 1 = recorded and
//!    identified) says which rows hold data; the other rows are **0, explicitly, with mask 0**
//!    — never mistaken for data by a consumer that reads the mask. ROIs without a neuron name
//!    (unidentified) are not placed and are counted in the report. Two ROIs with the same
//!    neuron: the one with the higher NeuroPAL confidence (else the first) is kept, reported.
//! 5. NaN samples inside a trace or covariate are filled by linear interpolation between the
//!    nearest finite samples (edges: nearest finite sample) and counted in the report; an
//!    all-NaN covariate is dropped (reported); an all-NaN trace is treated as not recorded.
//!
//! Behaviour series become a `covariates` tensor `[n_covariates, n_times]` (usable as labels).
//! Unknown neuron names (not one of the 302 after normalization) are an error by default
//! ([`UnknownNames::Error`]) or dropped and reported ([`UnknownNames::Drop`]).
//!
//! ## Connectomes ([`read_connectome`])
//! Edge lists (`pre,post,weight` header, in that order or named) or square matrices (header row
//! of post-synaptic names, first column pre-synaptic names) → `[302, 302]` weights on the
//! canonical neurons. Chemical synapses are directed; repeated edges are summed (reported).
//! Gap junctions are symmetric: `w[i][j] = w[j][i] = max` of the weights listed either way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5_reader::{Datatype, Hdf5File};
use neurofm_core::neurons::{canonical_neuron, neuron_index, NEURONS_302};
use neurofm_core::{ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};

use crate::csv_series::read_csv_table;
use crate::error::IoError;

/// Reader name recorded in provenance.
pub const READER_NAME: &str = "celegans-dag2023";

/// A calcium recording before homogenization: ROI × time traces with their timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct CalciumRecording {
    /// `[n_rois, n_times]`; `channels[i].standard_name` is the canonical neuron when identified.
    pub recording: Recording,
    /// Time of each sample in seconds from the first sample.
    pub time_s: Vec<f64>,
    pub covariate_names: Vec<String>,
    /// `[n_covariates, n_times]`, row-major (NaN where the source has NaN).
    pub covariates: Vec<f64>,
    /// Per ROI: NeuroPAL match confidence, when a registration exists.
    pub confidence: Vec<Option<f64>>,
}

fn h5err(path: &Path, what: &str, e: impl std::fmt::Display) -> IoError {
    IoError::header(path, what, e.to_string())
}

/// Reads a whole numeric HDF5 dataset as `f64` with its shape (as h5py reports it).
pub fn read_h5_f64(
    path: &Path,
    file: &Hdf5File,
    name: &str,
) -> Result<(Vec<usize>, Vec<f64>), IoError> {
    let ds = file.dataset(name).map_err(|e| h5err(path, name, e))?;
    let shape: Vec<usize> = ds.shape().iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    macro_rules! rd {
        ($t:ty) => {{
            let mut v = vec![<$t>::default(); n];
            ds.read_into::<$t>(&mut v)
                .map_err(|e| h5err(path, name, e))?;
            v.into_iter().map(|x| x as f64).collect::<Vec<f64>>()
        }};
    }
    let data = match ds.dtype() {
        Datatype::FloatingPoint { size: 8, .. } => rd!(f64),
        Datatype::FloatingPoint { size: 4, .. } => rd!(f32),
        Datatype::FixedPoint {
            size: 8,
            signed: true,
            ..
        } => rd!(i64),
        Datatype::FixedPoint {
            size: 8,
            signed: false,
            ..
        } => rd!(u64),
        Datatype::FixedPoint {
            size: 4,
            signed: true,
            ..
        } => rd!(i32),
        Datatype::FixedPoint {
            size: 4,
            signed: false,
            ..
        } => rd!(u32),
        Datatype::FixedPoint {
            size: 2,
            signed: true,
            ..
        } => rd!(i16),
        Datatype::FixedPoint {
            size: 2,
            signed: false,
            ..
        } => rd!(u16),
        Datatype::FixedPoint {
            size: 1,
            signed: true,
            ..
        } => rd!(i8),
        Datatype::FixedPoint {
            size: 1,
            signed: false,
            ..
        } => rd!(u8),
        other => {
            return Err(IoError::Unsupported {
                path: path.into(),
                what: format!("dataset `{name}` has a non-numeric type {other:?}"),
            })
        }
    };
    Ok((shape, data))
}

/// Opens `path` and reads one numeric dataset as `f64` with its shape (see [`read_h5_f64`]).
pub fn read_h5_dataset_f64(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f64>), IoError> {
    let f = open_h5(path)?;
    read_h5_f64(path, &f, name)
}

fn open_h5(path: &Path) -> Result<Hdf5File, IoError> {
    if !path.exists() {
        return Err(IoError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    Hdf5File::open(path).map_err(|e| h5err(path, "HDF5 superblock", e))
}

/// Options of [`read_dag2023`].
#[derive(Debug, Clone)]
pub struct Dag2023Options {
    /// Trace dataset (default `gcamp/trace_array`; also `gcamp/trace_array_original`,
    /// `gcamp/traces_array_F_F20`).
    pub trace: String,
    /// NeuroPAL label table: CSV with header `neuropal_roi,neuron` (1-based NeuroPAL ROI).
    pub neuropal_labels: Option<PathBuf>,
    pub unknown_names: UnknownNames,
}

impl Default for Dag2023Options {
    fn default() -> Self {
        Dag2023Options {
            trace: "gcamp/trace_array".into(),
            neuropal_labels: None,
            unknown_names: UnknownNames::Error,
        }
    }
}

/// What to do with a neuron name that is not one of the 302.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownNames {
    /// Fail, naming the file and the names.
    Error,
    /// Keep the channel unidentified and report it.
    Drop,
}

/// Behaviour series read by [`read_dag2023`] (dataset under `behavior/`, covariate name).
pub const DAG_BEHAVIOUR: &[(&str, &str)] = &[
    ("velocity", "velocity"),
    ("head_angle", "head_angle"),
    ("angular_velocity", "angular_velocity"),
    ("worm_curvature", "worm_curvature"),
    ("pumping", "pumping"),
    ("reversal_vec", "reversal"),
];

/// Reads a neuron-label table (`roi,neuron` CSV; header names are free, the first two columns
/// are used) into `roi (1-based) -> canonical name`.
fn read_label_table(
    path: &Path,
    unknown: UnknownNames,
    report: &mut Vec<String>,
) -> Result<BTreeMap<usize, &'static str>, IoError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::io(path, e))?;
    let mut out = BTreeMap::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split(',').map(|s| s.trim().trim_matches('"'));
        let (Some(roi), Some(name)) = (it.next(), it.next()) else {
            return Err(IoError::header(
                path,
                format!("line {}", i + 1),
                "needs two fields: roi,neuron",
            ));
        };
        let roi: usize = roi.parse().map_err(|_| {
            IoError::header(
                path,
                format!("line {}, roi", i + 1),
                format!("{roi:?} is not a 1-based ROI number"),
            )
        })?;
        match canonical_neuron(name) {
            Some(c) => {
                out.insert(roi, c);
            }
            None => bad.push(name.to_string()),
        }
    }
    if !bad.is_empty() {
        match unknown {
            UnknownNames::Error => {
                return Err(IoError::header(
                    path,
                    "neuron",
                    format!("not among the 302 canonical neurons: {}", bad.join(", ")),
                ))
            }
            UnknownNames::Drop => report.push(format!(
                "{}: {} unknown neuron names left unidentified: {}",
                path.display(),
                bad.len(),
                bad.join(", ")
            )),
        }
    }
    Ok(out)
}

/// Reads one Dag et al. (2023) HDF5 file.
pub fn read_dag2023(path: &Path, opts: &Dag2023Options) -> Result<CalciumRecording, IoError> {
    let f = open_h5(path)?;
    let mut report = Vec::new();
    let (shape, traces) = read_h5_f64(path, &f, &opts.trace)?;
    let [n_t, n_roi] = shape[..] else {
        return Err(IoError::header(
            path,
            &opts.trace,
            format!("shape {shape:?}: expected 2-D time x ROI"),
        ));
    };
    let (tshape, ts) = read_h5_f64(path, &f, "timing/timestamp_confocal")?;
    if tshape != [n_t] {
        return Err(IoError::header(
            path,
            "timing/timestamp_confocal",
            format!("shape {tshape:?} does not match {n_t} trace samples"),
        ));
    }
    let time_s = relative_times(path, "timing/timestamp_confocal", &ts)?;

    // NeuroPAL: GCaMP ROI (0-based) -> (NeuroPAL ROI 1-based, confidence)
    let mut np_of_roi: Vec<Option<(usize, f64)>> = vec![None; n_roi];
    let has_np = f.dataset("neuropal_registration/roi_match").is_ok();
    if has_np {
        let (_, m) = read_h5_f64(path, &f, "neuropal_registration/roi_match")?;
        let (_, c) = read_h5_f64(path, &f, "neuropal_registration/roi_match_confidence")?;
        if c.len() != m.len() {
            return Err(IoError::header(
                path,
                "neuropal_registration/roi_match_confidence",
                format!("{} values for {} matches", c.len(), m.len()),
            ));
        }
        for (np_i, (&g, &conf)) in m.iter().zip(&c).enumerate() {
            if g >= 1.0 && g.fract() == 0.0 && (g as usize) <= n_roi {
                let slot = &mut np_of_roi[g as usize - 1];
                if slot.is_none_or(|(_, c0)| conf > c0) {
                    *slot = Some((np_i + 1, conf));
                }
            } else if g != 0.0 {
                return Err(IoError::header(
                    path,
                    "neuropal_registration/roi_match",
                    format!(
                        "entry {} = {g} is not a ROI in 1..={n_roi} (or 0)",
                        np_i + 1
                    ),
                ));
            }
        }
    }
    let labels = match &opts.neuropal_labels {
        Some(p) => {
            if !has_np {
                return Err(IoError::header(
                    path,
                    "neuropal_registration",
                    format!(
                        "missing, so the labels in {} cannot be matched to ROIs",
                        p.display()
                    ),
                ));
            }
            read_label_table(p, opts.unknown_names, &mut report)?
        }
        None => BTreeMap::new(),
    };

    let mut channels = Vec::with_capacity(n_roi);
    let mut data = vec![0f32; n_roi * n_t];
    for r in 0..n_roi {
        let mut ch = ChannelInfo::new(
            format!("roi{:03}", r + 1),
            ChannelKind::Neuron,
            Unit::Arbitrary,
        );
        if let Some((np, _)) = np_of_roi[r] {
            ch.standard_name = labels.get(&np).map(|s| s.to_string());
        }
        channels.push(ch);
        for t in 0..n_t {
            data[r * n_t + t] = traces[t * n_roi + r] as f32;
        }
    }

    let mut cov_names = Vec::new();
    let mut covs = Vec::new();
    for (ds, name) in DAG_BEHAVIOUR {
        let full = format!("behavior/{ds}");
        if f.dataset(&full).is_err() {
            report.push(format!("behaviour `{full}` absent"));
            continue;
        }
        let (s, v) = read_h5_f64(path, &f, &full)?;
        if s != [n_t] {
            return Err(IoError::header(
                path,
                &full,
                format!("shape {s:?} does not match {n_t} trace samples"),
            ));
        }
        cov_names.push(name.to_string());
        covs.extend(v);
    }

    let sfreq = mean_rate(&time_s);
    let mut info = Info::new(Modality::Calcium, sfreq, channels);
    info.provenance.source_path = path.display().to_string();
    info.provenance.source_sha256 = crate::reader::sha256_file(path)?;
    info.provenance.reader = READER_NAME.into();
    info.provenance.reader_version = crate::READER_VERSION.into();
    info.metadata
        .insert("calcium.trace_dataset".into(), opts.trace.clone());
    info.metadata.insert(
        "calcium.sfreq".into(),
        "mean rate of timing/timestamp_confocal (sampling is not uniform; homogenize resamples on the timestamps)".into(),
    );
    info.metadata.insert(
        "calcium.neuropal".into(),
        if has_np {
            format!(
                "{} of {n_roi} ROIs matched to NeuroPAL; names {}",
                np_of_roi.iter().filter(|m| m.is_some()).count(),
                if opts.neuropal_labels.is_some() {
                    "from the label table"
                } else {
                    "not given (no label table): all ROIs unidentified"
                }
            )
        } else {
            "no NeuroPAL registration: all ROIs unidentified".into()
        },
    );
    if !report.is_empty() {
        info.metadata
            .insert("calcium.read_report".into(), report.join("; "));
    }
    let signal = Signal::channels(n_roi, n_t, data).map_err(|source| IoError::Core {
        path: path.into(),
        source,
    })?;
    let recording = Recording::new(info, signal, Vec::new()).map_err(|source| IoError::Core {
        path: path.into(),
        source,
    })?;
    Ok(CalciumRecording {
        recording,
        time_s,
        covariate_names: cov_names,
        covariates: covs,
        confidence: np_of_roi.iter().map(|m| m.map(|(_, c)| c)).collect(),
    })
}

fn relative_times(path: &Path, field: &str, ts: &[f64]) -> Result<Vec<f64>, IoError> {
    let Some(&t0) = ts.first() else {
        return Err(IoError::header(path, field, "no samples"));
    };
    for (i, w) in ts.windows(2).enumerate() {
        if w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater) {
            return Err(IoError::header(
                path,
                field,
                format!(
                    "not strictly increasing at sample {} ({} then {})",
                    i + 1,
                    w[0],
                    w[1]
                ),
            ));
        }
    }
    Ok(ts.iter().map(|t| t - t0).collect())
}

fn mean_rate(time_s: &[f64]) -> f64 {
    match (time_s.first(), time_s.last()) {
        (Some(a), Some(b)) if time_s.len() > 1 && b > a => (time_s.len() - 1) as f64 / (b - a),
        _ => 0.0,
    }
}

/// Where the time axis of a generic matrix comes from.
#[derive(Debug, Clone)]
pub enum TimeAxis {
    Rate(f64),
    /// Timestamps in seconds, one per time point.
    Timestamps(Vec<f64>),
}

/// Reads a time × neuron matrix from HDF5 (`dataset` required), CSV (header = names unless
/// `names` is given), NPY or MAT (`dataset` = variable name, optional when the file has one
/// 2-D numeric variable), by extension. `names` has one neuron label per column; labels
/// that are not neurons can be written as empty strings (unidentified).
pub fn read_neuron_matrix(
    path: &Path,
    dataset: Option<&str>,
    names: Option<Vec<String>>,
    time: TimeAxis,
    unknown: UnknownNames,
) -> Result<CalciumRecording, IoError> {
    read_neuron_matrix_layout(
        path,
        dataset,
        names,
        time,
        unknown,
        crate::csv_series::Layout::TimeByChannel,
    )
}

/// [`read_neuron_matrix`] for a matrix stored time × neuron ([`Layout::TimeByChannel`]) or
/// neuron × time ([`Layout::ChannelByTime`]; CSV headers then do not name neurons, so `names`
/// is required).
///
/// [`Layout::TimeByChannel`]: crate::csv_series::Layout::TimeByChannel
/// [`Layout::ChannelByTime`]: crate::csv_series::Layout::ChannelByTime
pub fn read_neuron_matrix_layout(
    path: &Path,
    dataset: Option<&str>,
    names: Option<Vec<String>>,
    time: TimeAxis,
    unknown: UnknownNames,
    layout: crate::csv_series::Layout,
) -> Result<CalciumRecording, IoError> {
    let Matrix {
        rows,
        cols,
        data,
        header,
    } = read_matrix_any(path, dataset)?;
    let (rows, cols, data, header) = match layout {
        crate::csv_series::Layout::TimeByChannel => (rows, cols, data, header),
        crate::csv_series::Layout::ChannelByTime => {
            let mut t = vec![0f64; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    t[c * rows + r] = data[r * cols + c];
                }
            }
            (cols, rows, t, None)
        }
    };
    neuron_matrix_to_recording(path, rows, cols, data, names.or(header), time, unknown)
}

/// A 2-D numeric matrix as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `[rows, cols]`, row-major.
    pub data: Vec<f64>,
    /// The CSV/TSV header (column names); `None` for other formats.
    pub header: Option<Vec<String>>,
}

/// A 2-D numeric matrix from HDF5 (`dataset` required), CSV/TSV (with its header), NPY or MAT
/// (`dataset` = variable, optional when there is one 2-D numeric variable), by extension.
pub fn read_matrix_any(path: &Path, dataset: Option<&str>) -> Result<Matrix, IoError> {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let (rows, cols, data, header): (usize, usize, Vec<f64>, Option<Vec<String>>) =
        if lower.ends_with(".h5") || lower.ends_with(".hdf5") {
            let ds = dataset.ok_or_else(|| {
                IoError::header(path, "dataset", "an HDF5 matrix needs a dataset path")
            })?;
            let f = open_h5(path)?;
            let (shape, v) = read_h5_f64(path, &f, ds)?;
            let [r, c] = shape[..] else {
                return Err(IoError::header(
                    path,
                    ds,
                    format!("shape {shape:?} is not 2-D"),
                ));
            };
            (r, c, v, None)
        } else if lower.ends_with(".csv") || lower.ends_with(".tsv") {
            let t = read_csv_table(path)?;
            (t.n_rows, t.columns.len(), t.data, Some(t.columns))
        } else if lower.ends_with(".npy") {
            let a = crate::npy::read_npy(path)?;
            let [r, c] = a.shape[..] else {
                return Err(IoError::header(
                    path,
                    "shape",
                    format!("{:?} is not 2-D", a.shape),
                ));
            };
            (r, c, a.data, None)
        } else if lower.ends_with(".mat") {
            let (r, c, v) = crate::csv_series::read_mat_matrix(path, dataset)?;
            (r, c, v, None)
        } else {
            return Err(IoError::Unsupported {
                path: path.into(),
                what: "matrix: extension must be .h5/.hdf5, .csv/.tsv, .npy or .mat".into(),
            });
        };
    if data.len() != rows * cols {
        return Err(IoError::header(
            path,
            dataset.unwrap_or("data"),
            format!("{} values for a {rows} x {cols} matrix", data.len()),
        ));
    }
    Ok(Matrix {
        rows,
        cols,
        data,
        header,
    })
}

fn neuron_matrix_to_recording(
    path: &Path,
    rows: usize,
    cols: usize,
    data: Vec<f64>,
    names: Option<Vec<String>>,
    time: TimeAxis,
    unknown: UnknownNames,
) -> Result<CalciumRecording, IoError> {
    let names = names
        .ok_or_else(|| IoError::header(path, "names", "a neuron name per column is required"))?;
    if names.len() != cols {
        return Err(IoError::header(
            path,
            "names",
            format!("{} names for {cols} columns", names.len()),
        ));
    }
    let time_s = match time {
        TimeAxis::Rate(r) if r.is_finite() && r > 0.0 => (0..rows).map(|i| i as f64 / r).collect(),
        TimeAxis::Rate(r) => {
            return Err(IoError::header(
                path,
                "sfreq_hz (parameter)",
                format!("is {r}; must be > 0"),
            ))
        }
        TimeAxis::Timestamps(ts) => {
            if ts.len() != rows {
                return Err(IoError::header(
                    path,
                    "timestamps (parameter)",
                    format!("{} timestamps for {rows} rows", ts.len()),
                ));
            }
            relative_times(path, "timestamps (parameter)", &ts)?
        }
    };
    let mut bad = Vec::new();
    let mut channels = Vec::with_capacity(cols);
    for n in &names {
        let mut ch = ChannelInfo::new(n.clone(), ChannelKind::Neuron, Unit::Arbitrary);
        if !n.trim().is_empty() {
            match canonical_neuron(n) {
                Some(c) => ch.standard_name = Some(c.to_string()),
                None => bad.push(n.clone()),
            }
        }
        channels.push(ch);
    }
    let mut info = Info::new(Modality::Calcium, mean_rate(&time_s), channels);
    if !bad.is_empty() {
        match unknown {
            UnknownNames::Error => {
                return Err(IoError::header(
                    path,
                    "names",
                    format!("not among the 302 canonical neurons: {}", bad.join(", ")),
                ))
            }
            UnknownNames::Drop => {
                info.metadata.insert(
                    "calcium.read_report".into(),
                    format!(
                        "{} unknown neuron names left unidentified: {}",
                        bad.len(),
                        bad.join(", ")
                    ),
                );
            }
        }
    }
    let mut out = vec![0f32; rows * cols];
    for c in 0..cols {
        for t in 0..rows {
            out[c * rows + t] = data[t * cols + c] as f32;
        }
    }
    info.provenance.source_path = path.display().to_string();
    info.provenance.source_sha256 = crate::reader::sha256_file(path)?;
    info.provenance.reader = "neuron-matrix".into();
    info.provenance.reader_version = crate::READER_VERSION.into();
    let signal = Signal::channels(cols, rows, out).map_err(|source| IoError::Core {
        path: path.into(),
        source,
    })?;
    let recording = Recording::new(info, signal, Vec::new()).map_err(|source| IoError::Core {
        path: path.into(),
        source,
    })?;
    Ok(CalciumRecording {
        recording,
        time_s,
        covariate_names: Vec::new(),
        covariates: Vec::new(),
        confidence: vec![None; cols],
    })
}

/// Options of [`homogenize`].
#[derive(Debug, Clone)]
pub struct HomogenizeOptions {
    /// Common time step in seconds.
    pub dt_s: f64,
    /// Centred moving-average width in samples (odd, >= 1); `None` = no smoothing.
    pub smooth_samples: Option<usize>,
    /// Per-neuron z-score after resampling and smoothing.
    pub zscore: bool,
}

/// A recording on the canonical 302 neurons.
#[derive(Debug, Clone, PartialEq)]
pub struct Homogenized {
    /// `[302, n_times]`, row `i` = `NEURONS_302[i]`; rows with `mask == 0` are 0
    /// ([`resample_rois`]: `[n_rois, n_times]` in file order).
    pub recording: Recording,
    /// One value per row: 1 = recorded (and, for [`homogenize`], identified), 0 = absent.
    pub mask: Vec<f32>,
    pub covariate_names: Vec<String>,
    /// `[n_covariates, n_times]`.
    pub covariates: Vec<f32>,
    /// Every decision taken (dropped covariates, filled NaNs, duplicates, constant traces).
    pub report: Vec<String>,
}

/// Fills NaN samples by linear interpolation between finite neighbours (edges: nearest).
/// Returns how many were filled, or `None` when no sample is finite.
pub fn fill_nan_linear(x: &mut [f64]) -> Option<usize> {
    let finite: Vec<usize> = (0..x.len()).filter(|&i| x[i].is_finite()).collect();
    let (&first, &last) = (finite.first()?, finite.last()?);
    let mut filled = 0;
    for i in 0..first {
        x[i] = x[first];
        filled += 1;
    }
    for i in last + 1..x.len() {
        x[i] = x[last];
        filled += 1;
    }
    for w in finite.windows(2) {
        let (a, b) = (w[0], w[1]);
        for i in a + 1..b {
            let f = (i - a) as f64 / (b - a) as f64;
            x[i] = x[a] + f * (x[b] - x[a]);
            filled += 1;
        }
    }
    Some(filled)
}

/// Linear interpolation of samples `x` at times `t` (increasing) onto `grid` (within range).
pub fn interp_linear(t: &[f64], x: &[f64], grid: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(grid.len());
    let mut j = 0;
    for &g in grid {
        while j + 2 < t.len() && t[j + 1] < g {
            j += 1;
        }
        if t.len() == 1 {
            out.push(x[0]);
            continue;
        }
        let (t0, t1) = (t[j], t[j + 1]);
        let f = ((g - t0) / (t1 - t0)).clamp(0.0, 1.0);
        out.push(x[j] + f * (x[j + 1] - x[j]));
    }
    out
}

/// Centred moving average with a window shrinking at the edges.
pub fn moving_average(x: &[f64], width: usize) -> Vec<f64> {
    let h = width / 2;
    let n = x.len();
    let mut pre = vec![0.0; n + 1];
    for i in 0..n {
        pre[i + 1] = pre[i] + x[i];
    }
    (0..n)
        .map(|i| {
            let a = i.saturating_sub(h);
            let b = (i + h + 1).min(n);
            (pre[b] - pre[a]) / (b - a) as f64
        })
        .collect()
}

/// Which rows a resampled calcium recording has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// The 302 canonical neurons in [`NEURONS_302`] order, with a mask ([`homogenize`]).
    Canonical,
    /// The recording's own ROIs in file order ([`resample_rois`]): for recordings whose ROIs
    /// carry no neuron names.
    Rois,
}

/// The time grid `0, dt, 2 dt, ...` up to the last timestamp, after checking the options.
fn check_and_grid(
    rec: &CalciumRecording,
    opts: &HomogenizeOptions,
) -> Result<(PathBuf, usize, usize, Vec<f64>), IoError> {
    let path = PathBuf::from(&rec.recording.info.provenance.source_path);
    if !(opts.dt_s.is_finite() && opts.dt_s > 0.0) {
        return Err(IoError::header(
            &path,
            "dt_s (parameter)",
            format!("is {}; must be > 0", opts.dt_s),
        ));
    }
    if let Some(w) = opts.smooth_samples {
        if w == 0 || w % 2 == 0 {
            return Err(IoError::header(
                &path,
                "smooth_samples (parameter)",
                format!("is {w}; must be odd and >= 1"),
            ));
        }
    }
    let Signal::Channels {
        n_channels,
        n_samples,
        ..
    } = &rec.recording.signal
    else {
        return Err(IoError::header(
            &path,
            "signal",
            "a calcium recording has channels",
        ));
    };
    let (n_ch, n_t) = (*n_channels, *n_samples);
    if rec.time_s.len() != n_t || n_t == 0 {
        return Err(IoError::header(
            &path,
            "time_s",
            format!("{} timestamps for {n_t} samples", rec.time_s.len()),
        ));
    }
    let t_end = rec.time_s[n_t - 1];
    let n_out = (t_end / opts.dt_s + 1e-9).floor() as usize + 1;
    let grid: Vec<f64> = (0..n_out).map(|k| k as f64 * opts.dt_s).collect();
    Ok((path, n_ch, n_t, grid))
}

/// NaN fill, resampling onto `grid`, optional smoothing. `None` when no sample is finite.
fn condition(
    rec: &CalciumRecording,
    grid: &[f64],
    opts: &HomogenizeOptions,
    mut x: Vec<f64>,
    what: &str,
    report: &mut Vec<String>,
) -> Option<Vec<f64>> {
    match fill_nan_linear(&mut x) {
        None => return None,
        Some(0) => {}
        Some(k) => report.push(format!("{what}: {k} NaN samples filled by interpolation")),
    }
    let mut y = interp_linear(&rec.time_s, &x, grid);
    if let Some(w) = opts.smooth_samples {
        if w > 1 {
            y = moving_average(&y, w);
        }
    }
    Some(y)
}

/// Per-series z-score (population std); a constant series becomes zeros and is reported.
fn zscore_series(y: &mut [f64], what: &str, report: &mut Vec<String>) {
    let m = y.iter().sum::<f64>() / y.len() as f64;
    let sd = (y.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / y.len() as f64).sqrt();
    if sd > 0.0 {
        y.iter_mut().for_each(|v| *v = (*v - m) / sd);
    } else {
        y.iter_mut().for_each(|v| *v = 0.0);
        report.push(format!("{what}: constant trace, z-scored to 0"));
    }
}

/// Resamples the covariates onto `grid`; all-NaN ones are dropped (reported).
fn resample_covariates(
    rec: &CalciumRecording,
    grid: &[f64],
    opts: &HomogenizeOptions,
    n_t: usize,
    report: &mut Vec<String>,
) -> (Vec<String>, Vec<f32>) {
    let mut cov_names = Vec::new();
    let mut covs = Vec::new();
    for (k, name) in rec.covariate_names.iter().enumerate() {
        let Some(x) = rec.covariates.get(k * n_t..(k + 1) * n_t) else {
            report.push(format!("covariate {name}: missing samples, dropped"));
            continue;
        };
        match condition(
            rec,
            grid,
            opts,
            x.to_vec(),
            &format!("covariate {name}"),
            report,
        ) {
            Some(y) => {
                cov_names.push(name.clone());
                covs.extend(y.iter().map(|&v| v as f32));
            }
            None => report.push(format!("covariate {name}: all NaN, dropped")),
        }
    }
    (cov_names, covs)
}

fn describe(opts: &HomogenizeOptions, rows: &str) -> String {
    format!(
        "dt {} s (linear interpolation), smoothing {}, z-score {}; {rows}",
        opts.dt_s,
        opts.smooth_samples
            .map(|w| format!("moving average {w} samples"))
            .unwrap_or_else(|| "none".into()),
        opts.zscore,
    )
}

/// Maps a calcium recording onto the 302 canonical neurons (see the module docs).
pub fn homogenize(
    rec: &CalciumRecording,
    opts: &HomogenizeOptions,
) -> Result<Homogenized, IoError> {
    let (path, n_ch, n_t, grid) = check_and_grid(rec, opts)?;
    let n_out = grid.len();
    let data = rec.recording.signal.data();
    let mut report = Vec::new();

    // choose one ROI per neuron
    let mut chosen: Vec<Option<usize>> = vec![None; 302];
    let mut unidentified = 0;
    for (c, ch) in rec.recording.info.channels.iter().enumerate().take(n_ch) {
        let Some(idx) = ch.standard_name.as_deref().and_then(neuron_index) else {
            unidentified += 1;
            continue;
        };
        match chosen[idx] {
            None => chosen[idx] = Some(c),
            Some(prev) => {
                let conf = |i: usize| rec.confidence.get(i).copied().flatten();
                let keep_new = matches!((conf(c), conf(prev)), (Some(a), Some(b)) if a > b);
                let kept = if keep_new { c } else { prev };
                chosen[idx] = Some(kept);
                report.push(format!(
                    "{}: ROIs {} and {} both identified; kept {}",
                    NEURONS_302[idx],
                    rec.recording.info.channels[prev].name,
                    ch.name,
                    rec.recording.info.channels[kept].name
                ));
            }
        }
    }
    if unidentified > 0 {
        report.push(format!(
            "{unidentified} of {n_ch} ROIs unidentified (no neuron name): not placed"
        ));
    }

    let mut out = vec![0f32; 302 * n_out];
    let mut mask = vec![0f32; 302];
    for (idx, c) in chosen.iter().enumerate() {
        let Some(c) = *c else { continue };
        let x: Vec<f64> = data[c * n_t..(c + 1) * n_t]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let Some(mut y) = condition(rec, &grid, opts, x, NEURONS_302[idx], &mut report) else {
            report.push(format!(
                "{}: trace all NaN, treated as not recorded",
                NEURONS_302[idx]
            ));
            continue;
        };
        if opts.zscore {
            zscore_series(&mut y, NEURONS_302[idx], &mut report);
        }
        for (o, v) in out[idx * n_out..(idx + 1) * n_out].iter_mut().zip(&y) {
            *o = *v as f32;
        }
        mask[idx] = 1.0;
    }

    let (cov_names, covs) = resample_covariates(rec, &grid, opts, n_t, &mut report);

    let channels = NEURONS_302
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut ch = ChannelInfo::new(*n, ChannelKind::Neuron, Unit::Arbitrary);
            ch.standard_name = Some(n.to_string());
            ch.bad = mask[i] == 0.0;
            ch
        })
        .collect();
    let mut info = rec.recording.info.clone();
    info.sfreq_hz = 1.0 / opts.dt_s;
    info.channels = channels;
    info.metadata.insert(
        "calcium.homogenized".into(),
        describe(
            opts,
            &format!(
                "{} of 302 neurons recorded (mask)",
                mask.iter().filter(|&&m| m > 0.0).count()
            ),
        ),
    );
    info.metadata
        .insert("calcium.covariates".into(), cov_names.join(","));
    if !report.is_empty() {
        info.metadata
            .insert("calcium.homogenize_report".into(), report.join("; "));
    }
    let signal = Signal::channels(302, n_out, out).map_err(|source| IoError::Core {
        path: path.clone(),
        source,
    })?;
    let recording = Recording::new(info, signal, Vec::new()).map_err(|source| IoError::Core {
        path: path.clone(),
        source,
    })?;
    Ok(Homogenized {
        recording,
        mask,
        covariate_names: cov_names,
        covariates: covs,
        report,
    })
}

/// Like [`homogenize`] (common time step, NaN fill, smoothing, z-score, covariates), but keeps
/// the recording's own ROIs as rows, in file order, with their names (`roiNNN`, 1-based, for an
/// unnamed column). For recordings whose ROIs
/// have no neuron names (the Dag et al. files without a NeuroPAL label table). The mask has one
/// value per ROI: 0 for an all-NaN ROI (stored as zeros, flagged bad), else 1.
pub fn resample_rois(
    rec: &CalciumRecording,
    opts: &HomogenizeOptions,
) -> Result<Homogenized, IoError> {
    let (path, n_ch, n_t, grid) = check_and_grid(rec, opts)?;
    let n_out = grid.len();
    let data = rec.recording.signal.data();
    let mut report = Vec::new();
    let mut out = vec![0f32; n_ch * n_out];
    let mut mask = vec![0f32; n_ch];
    let mut channels = rec.recording.info.channels.clone();
    for (c, ch) in channels.iter_mut().enumerate() {
        if ch.name.trim().is_empty() {
            // an unnamed matrix column
            ch.name = format!("roi{:03}", c + 1);
        }
        let x: Vec<f64> = data[c * n_t..(c + 1) * n_t]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let Some(mut y) = condition(rec, &grid, opts, x, &ch.name, &mut report) else {
            report.push(format!("{}: trace all NaN, stored as 0 (mask 0)", ch.name));
            ch.bad = true;
            continue;
        };
        if opts.zscore {
            zscore_series(&mut y, &ch.name, &mut report);
        }
        for (o, v) in out[c * n_out..(c + 1) * n_out].iter_mut().zip(&y) {
            *o = *v as f32;
        }
        mask[c] = 1.0;
    }
    let (cov_names, covs) = resample_covariates(rec, &grid, opts, n_t, &mut report);
    let mut info = rec.recording.info.clone();
    info.sfreq_hz = 1.0 / opts.dt_s;
    info.channels = channels;
    info.metadata.insert(
        "calcium.homogenized".into(),
        describe(
            opts,
            &format!(
                "{} ROIs in file order, not mapped to neurons; {} with data (mask)",
                n_ch,
                mask.iter().filter(|&&m| m > 0.0).count()
            ),
        ),
    );
    info.metadata
        .insert("calcium.covariates".into(), cov_names.join(","));
    if !report.is_empty() {
        info.metadata
            .insert("calcium.homogenize_report".into(), report.join("; "));
    }
    let signal = Signal::channels(n_ch, n_out, out).map_err(|source| IoError::Core {
        path: path.clone(),
        source,
    })?;
    let recording = Recording::new(info, signal, Vec::new()).map_err(|source| IoError::Core {
        path: path.clone(),
        source,
    })?;
    Ok(Homogenized {
        recording,
        mask,
        covariate_names: cov_names,
        covariates: covs,
        report,
    })
}

/// Whether `path` is an HDF5 file with the Dag et al. (2023) layout (`gcamp/trace_array` and
/// `timing/timestamp_confocal`). `false` for anything that is not a readable HDF5 file.
pub fn is_dag2023(path: &Path) -> bool {
    let Ok(f) = open_h5(path) else {
        return false;
    };
    f.dataset("gcamp/trace_array").is_ok() && f.dataset("timing/timestamp_confocal").is_ok()
}

/// Chemical and gap-junction weights on the canonical neurons.
#[derive(Debug, Clone, PartialEq)]
pub struct Connectome {
    /// `NEURONS_302`.
    pub nodes: Vec<String>,
    /// `[302, 302]`, `chemical[pre * 302 + post]`.
    pub chemical: Vec<f32>,
    /// `[302, 302]`, symmetric.
    pub gap: Vec<f32>,
    pub report: Vec<String>,
}

/// Reads `(pre, post, weight)` triples from an edge list or a square matrix CSV.
fn read_edges(path: &Path) -> Result<Vec<(String, String, f64)>, IoError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::io(path, e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, head) = lines
        .next()
        .ok_or_else(|| IoError::header(path, "header row", "the file is empty"))?;
    let split = |l: &str| -> Vec<String> {
        l.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .collect()
    };
    let head = split(head);
    let lower: Vec<String> = head.iter().map(|h| h.to_ascii_lowercase()).collect();
    let find = |names: &[&str]| lower.iter().position(|h| names.contains(&h.as_str()));
    let edge_cols = match (
        find(&["pre", "source", "origin", "from"]),
        find(&["post", "target", "to"]),
        find(&["weight", "w", "count", "number of connections", "synapses"]),
    ) {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        _ if head.len() == 3 && head.iter().all(|h| canonical_neuron(h).is_none()) => {
            Some((0, 1, 2))
        }
        _ => None,
    };
    let mut edges = Vec::new();
    match edge_cols {
        Some((a, b, c)) => {
            for (i, l) in lines {
                let f = split(l);
                let get = |k: usize| {
                    f.get(k).ok_or_else(|| {
                        IoError::header(
                            path,
                            format!("line {}", i + 1),
                            format!("has {} fields, needs column {}", f.len(), k + 1),
                        )
                    })
                };
                let w = get(c)?;
                let w: f64 = w.parse().map_err(|_| {
                    IoError::header(
                        path,
                        format!("line {}, weight", i + 1),
                        format!("{w:?} is not a number"),
                    )
                })?;
                edges.push((get(a)?.clone(), get(b)?.clone(), w));
            }
        }
        None => {
            // square matrix: header = ["", post...], rows = [pre, weights...]
            let posts = &head[1..];
            let mut n_rows = 0;
            for (i, l) in lines {
                let f = split(l);
                if f.len() != head.len() {
                    return Err(IoError::header(
                        path,
                        format!("line {}", i + 1),
                        format!("has {} fields, the header has {}", f.len(), head.len()),
                    ));
                }
                for (post, w) in posts.iter().zip(&f[1..]) {
                    let v: f64 = w.parse().map_err(|_| {
                        IoError::header(
                            path,
                            format!("line {}, column {post:?}", i + 1),
                            format!("{w:?} is not a number"),
                        )
                    })?;
                    if v != 0.0 {
                        edges.push((f[0].clone(), post.clone(), v));
                    }
                }
                n_rows += 1;
            }
            if n_rows != posts.len() {
                return Err(IoError::header(
                    path,
                    "matrix",
                    format!("{n_rows} rows for {} columns: not square", posts.len()),
                ));
            }
        }
    }
    Ok(edges)
}

/// Reads a chemical and a gap-junction connectome (either may be absent) onto the 302 neurons.
pub fn read_connectome(
    chemical: Option<&Path>,
    gap: Option<&Path>,
    unknown: UnknownNames,
) -> Result<Connectome, IoError> {
    let mut report = Vec::new();
    let mut load = |p: &Path, symmetric: bool| -> Result<Vec<f32>, IoError> {
        let mut m = vec![0f32; 302 * 302];
        let mut bad = BTreeMap::<String, usize>::new();
        let mut repeated = 0;
        let mut seen = std::collections::HashSet::new();
        for (a, b, w) in read_edges(p)? {
            if !w.is_finite() {
                return Err(IoError::header(
                    p,
                    "weight",
                    format!("{a}->{b}: {w} is not finite"),
                ));
            }
            let (Some(i), Some(j)) = (
                canonical_neuron(&a).and_then(neuron_index),
                canonical_neuron(&b).and_then(neuron_index),
            ) else {
                for n in [&a, &b] {
                    if canonical_neuron(n).is_none() {
                        *bad.entry(n.clone()).or_default() += 1;
                    }
                }
                continue;
            };
            if symmetric {
                let v = m[i * 302 + j].max(w as f32);
                m[i * 302 + j] = v;
                m[j * 302 + i] = v;
            } else {
                if !seen.insert((i, j)) {
                    repeated += 1;
                }
                m[i * 302 + j] += w as f32;
            }
        }
        if !bad.is_empty() {
            let names: Vec<String> = bad.keys().cloned().collect();
            match unknown {
                UnknownNames::Error => {
                    return Err(IoError::header(
                        p,
                        "neuron",
                        format!("not among the 302 canonical neurons: {}", names.join(", ")),
                    ))
                }
                UnknownNames::Drop => report.push(format!(
                    "{}: edges of {} unknown names dropped: {}",
                    p.display(),
                    names.len(),
                    names.join(", ")
                )),
            }
        }
        if repeated > 0 {
            report.push(format!("{}: {repeated} repeated edges summed", p.display()));
        }
        Ok(m)
    };
    let chem = match chemical {
        Some(p) => load(p, false)?,
        None => vec![0f32; 302 * 302],
    };
    let gapm = match gap {
        Some(p) => load(p, true)?,
        None => vec![0f32; 302 * 302],
    };
    Ok(Connectome {
        nodes: NEURONS_302.iter().map(|s| s.to_string()).collect(),
        chemical: chem,
        gap: gapm,
        report,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nan_fill_and_interp() {
        let mut x = vec![f64::NAN, 1.0, f64::NAN, 3.0, f64::NAN];
        assert_eq!(fill_nan_linear(&mut x), Some(3));
        assert_eq!(x, vec![1.0, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(fill_nan_linear(&mut [f64::NAN, f64::NAN]), None);
        let y = interp_linear(&[0.0, 1.0, 3.0], &[0.0, 10.0, 30.0], &[0.0, 0.5, 2.0, 3.0]);
        assert_eq!(y, vec![0.0, 5.0, 20.0, 30.0]);
        assert_eq!(
            moving_average(&[0.0, 3.0, 6.0, 9.0], 3),
            vec![1.5, 3.0, 6.0, 7.5]
        );
    }
}
