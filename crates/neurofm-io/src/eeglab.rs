//! EEGLAB datasets: a `.set` MAT-file (v5 parsed by [`crate::mat`], v7.3 through HDF5) holding
//! the `EEG` struct, with the samples either embedded in `EEG.data` or in a `.fdt` file
//! (float32, channels × samples, column-major as EEGLAB writes it: all channels of sample 0
//! first).
//!
//! Follows MNE's `read_raw_eeglab`: data are µV and scaled to V; channel names come from
//! `EEG.chanlocs(i).labels` (or `EEG 000`, `EEG 001`, ... when there are no chanlocs), types from
//! `chanlocs.type` when it names a known type (else EEG); events become annotations with onset
//! `(latency - 1) / srate` (latencies are 1-based samples) and `duration / srate`. Epoched
//! datasets (`trials > 1`) are refused.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Provenance, Unit};

use crate::brainvision::check_segment;
use crate::channel_names::standard_name;
use crate::error::IoError;
use crate::mat::{is_v73, parse_mat5, read_mat73_bytes, MatClass, MatValue};
use crate::reader::{sha256_file, RawReader};

/// Reader name recorded in provenance.
pub const NAME: &str = "eeglab";

/// EEGLAB stores microvolts.
const CAL: f64 = 1e-6;

enum Samples {
    /// `.fdt` file: float32, sample-major (all channels of one sample together).
    Fdt { path: PathBuf, file: File },
    /// Embedded in the `.set`: row-major `[channels, samples]`, already in volts.
    Memory(Vec<f32>),
}

/// An opened EEGLAB dataset.
pub struct EeglabReader {
    path: PathBuf,
    info: Info,
    annotations: Vec<Annotation>,
    n_times: usize,
    samples: Samples,
}

fn kind_from_type(t: &str) -> ChannelKind {
    match t.trim().to_ascii_lowercase().as_str() {
        "eog" => ChannelKind::Eog,
        "ecg" => ChannelKind::Ecg,
        "emg" => ChannelKind::Emg,
        "seeg" => ChannelKind::Seeg,
        "ecog" => ChannelKind::Ecog,
        "stim" => ChannelKind::Stim,
        "resp" => ChannelKind::Resp,
        "misc" => ChannelKind::Misc,
        _ => ChannelKind::Eeg,
    }
}

/// A numeric MATLAB scalar as MNE's `str()` prints it (integers classes without a point,
/// doubles with one: `1` vs `1.0`).
fn number_text(v: f64, class: MatClass) -> String {
    if class.is_integer() || class == MatClass::Logical {
        format!("{}", v as i64)
    } else if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn scalar_field(path: &Path, eeg: &MatValue, name: &str) -> Result<Option<f64>, IoError> {
    match eeg.field(name) {
        None => Ok(None),
        Some(v) => match v.as_scalar() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(IoError::header(
                path,
                format!("EEG.{name}"),
                "expected one finite number",
            )),
        },
    }
}

fn count_field(
    path: &Path,
    eeg: &MatValue,
    name: &str,
    default: Option<usize>,
) -> Result<usize, IoError> {
    match scalar_field(path, eeg, name)? {
        Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1e15 => Ok(x as usize),
        Some(x) => Err(IoError::header(
            path,
            format!("EEG.{name}"),
            format!("expected a non-negative integer, got {x}"),
        )),
        None => default.ok_or_else(|| IoError::header(path, format!("EEG.{name}"), "missing")),
    }
}

impl EeglabReader {
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let bytes = std::fs::read(path).map_err(|e| IoError::io(path, e))?;
        let mat = if is_v73(&bytes) {
            read_mat73_bytes(path, bytes)?
        } else {
            parse_mat5(path, &bytes)?
        };
        if mat.get("ALLEEG").is_some() {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                what: "an ALLEEG array (several datasets in one file)".into(),
            });
        }
        // Fields are either inside an `EEG` struct or saved as top-level variables.
        let top;
        let eeg = match mat.get("EEG") {
            Some(v @ MatValue::Struct { .. }) => v,
            _ => {
                top = MatValue::Struct {
                    dims: vec![1, 1],
                    fields: mat.variables.iter().map(|(n, _)| n.clone()).collect(),
                    elements: vec![mat.variables.iter().map(|(_, v)| v.clone()).collect()],
                };
                &top
            }
        };
        if eeg.field("srate").is_none() || eeg.field("data").is_none() {
            return Err(IoError::header(
                path,
                "EEG",
                "no EEG struct with `srate` and `data` (not an EEGLAB dataset)",
            ));
        }
        let trials = count_field(path, eeg, "trials", Some(1))?;
        if trials != 1 {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                what: format!(
                    "epoched EEGLAB data (EEG.trials = {trials}); only continuous data is read"
                ),
            });
        }
        let nbchan = count_field(path, eeg, "nbchan", Some(1))?;
        let pnts = count_field(path, eeg, "pnts", Some(1))?;
        if nbchan == 0 {
            return Err(IoError::header(path, "EEG.nbchan", "must be at least 1"));
        }
        let srate = scalar_field(path, eeg, "srate")?
            .ok_or_else(|| IoError::header(path, "EEG.srate", "missing"))?;
        if srate <= 0.0 {
            return Err(IoError::header(
                path,
                "EEG.srate",
                format!("must be positive, got {srate}"),
            ));
        }

        // Channels.
        let mut channels = Vec::with_capacity(nbchan);
        match eeg.field("chanlocs") {
            Some(cl @ MatValue::Struct { .. }) if !cl.is_empty() => {
                if cl.len() != nbchan {
                    return Err(IoError::header(
                        path,
                        "EEG.chanlocs",
                        format!("{} channel locations for EEG.nbchan = {nbchan}", cl.len()),
                    ));
                }
                for i in 0..nbchan {
                    let label = cl
                        .field_at(i, "labels")
                        .and_then(|v| {
                            v.as_string()
                                .or_else(|| v.as_scalar().map(|x| x.to_string()))
                        })
                        .ok_or_else(|| {
                            IoError::header(
                                path,
                                format!("EEG.chanlocs({}).labels", i + 1),
                                "missing or not text",
                            )
                        })?;
                    let kind = cl
                        .field_at(i, "type")
                        .and_then(|v| v.as_string())
                        .map_or(ChannelKind::Eeg, |t| kind_from_type(&t));
                    let mut ch = ChannelInfo::new(label, kind, Unit::Volt);
                    ch.standard_name = standard_name(&ch.name, kind);
                    channels.push(ch);
                }
            }
            _ => {
                for i in 0..nbchan {
                    let mut ch =
                        ChannelInfo::new(format!("EEG {i:03}"), ChannelKind::Eeg, Unit::Volt);
                    ch.standard_name = standard_name(&ch.name, ChannelKind::Eeg);
                    channels.push(ch);
                }
            }
        }

        // Samples.
        let data = eeg
            .field("data")
            .ok_or_else(|| IoError::header(path, "EEG.data", "missing"))?;
        let samples = match data {
            MatValue::Char { .. } => {
                let name = data.as_string().unwrap_or_default();
                let fdt = locate_fdt(path, name.trim())?;
                let file = File::open(&fdt).map_err(|e| IoError::io(&fdt, e))?;
                let size = file.metadata().map_err(|e| IoError::io(&fdt, e))?.len();
                let expected = (nbchan as u64) * (pnts as u64) * 4;
                if size != expected {
                    return Err(IoError::Truncated {
                        path: fdt.clone(),
                        what: format!(
                            "float32 data for EEG.nbchan = {nbchan} x EEG.pnts = {pnts} (from {})",
                            path.display()
                        ),
                        expected,
                        got: size,
                    });
                }
                Samples::Fdt { path: fdt, file }
            }
            MatValue::Numeric { real, dims, .. } => {
                let n = nbchan
                    .checked_mul(pnts)
                    .ok_or_else(|| IoError::header(path, "EEG.pnts", "too large"))?;
                if real.len() != n {
                    return Err(IoError::header(
                        path,
                        "EEG.data",
                        format!(
                            "{dims:?} array ({} values) for nbchan = {nbchan} x pnts = {pnts}",
                            real.len()
                        ),
                    ));
                }
                // Column-major [nbchan, pnts] → row-major, scaled to volts.
                let mut out = vec![0f32; n];
                for t in 0..pnts {
                    for c in 0..nbchan {
                        out[c * pnts + t] = (real[t * nbchan + c] * CAL) as f32;
                    }
                }
                Samples::Memory(out)
            }
            _ => {
                return Err(IoError::header(
                    path,
                    "EEG.data",
                    "neither a file name nor a numeric array",
                ))
            }
        };

        let annotations = read_events(path, eeg, srate)?;

        let mut info = Info::new(Modality::Eeg, srate, channels);
        if let Some(s) = eeg.field("subject").and_then(|v| v.as_string()) {
            if !s.trim().is_empty() {
                info.subject = Some(s.trim().to_string());
            }
        }
        info.provenance = Provenance {
            source_path: path.display().to_string(),
            source_sha256: sha256_file(path)?,
            reader: NAME.to_string(),
            reader_version: crate::READER_VERSION.to_string(),
        };
        Ok(EeglabReader {
            path: path.to_path_buf(),
            info,
            annotations,
            n_times: pnts,
            samples,
        })
    }
}

fn locate_fdt(set: &Path, name: &str) -> Result<PathBuf, IoError> {
    let ext = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "dat" {
        return Err(IoError::Unsupported {
            path: set.to_path_buf(),
            what: format!("old EEGLAB .dat data file `{name}` (resave it as .fdt)"),
        });
    }
    let dir = set.parent().unwrap_or_else(|| Path::new("."));
    let base = Path::new(name)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let named = dir.join(&base);
    if !base.as_os_str().is_empty() && named.is_file() && named != set {
        return Ok(named);
    }
    let sibling = set.with_extension("fdt");
    if sibling.is_file() {
        return Ok(sibling);
    }
    Err(IoError::MissingCompanion {
        path: set.to_path_buf(),
        companion: if base.as_os_str().is_empty() {
            sibling
        } else {
            named
        },
    })
}

fn read_events(path: &Path, eeg: &MatValue, srate: f64) -> Result<Vec<Annotation>, IoError> {
    let Some(ev) = eeg.field("event") else {
        return Ok(vec![]);
    };
    if !matches!(ev, MatValue::Struct { .. }) || ev.is_empty() {
        return Ok(vec![]);
    }
    let has_duration = ev.field_names().iter().any(|f| f == "duration");
    let mut out = Vec::with_capacity(ev.len());
    for i in 0..ev.len() {
        let field = |f: &str| format!("EEG.event({}).{f}", i + 1);
        let description = match ev.field_at(i, "type") {
            Some(MatValue::Char { rows, .. }) => rows.join("\n"),
            Some(MatValue::Numeric { real, class, .. }) if real.len() == 1 => {
                number_text(real[0], *class)
            }
            Some(MatValue::Numeric { real, .. }) if real.is_empty() => "[]".to_string(),
            _ => {
                return Err(IoError::header(
                    path,
                    field("type"),
                    "missing or neither text nor a number",
                ))
            }
        };
        let latency = match ev.field_at(i, "latency") {
            Some(v) if v.is_empty() => continue, // unset latency: dropped (MNE drops NaN onsets)
            Some(v) => v
                .as_scalar()
                .ok_or_else(|| IoError::header(path, field("latency"), "not a number"))?,
            None => return Err(IoError::header(path, field("latency"), "missing")),
        };
        if latency.is_nan() {
            continue;
        }
        let duration = if has_duration {
            match ev.field_at(i, "duration") {
                Some(v) if v.is_empty() => 0.0,
                Some(v) => v
                    .as_scalar()
                    .ok_or_else(|| IoError::header(path, field("duration"), "not a number"))?,
                None => 0.0,
            }
        } else {
            0.0
        };
        out.push(Annotation {
            onset_s: (latency - 1.0) / srate,
            duration_s: if duration.is_finite() {
                duration / srate
            } else {
                0.0
            },
            description,
        });
    }
    Ok(out)
}

impl RawReader for EeglabReader {
    fn info(&self) -> &Info {
        &self.info
    }

    fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }

    fn n_times(&self) -> usize {
        self.n_times
    }

    fn read_segment(&mut self, start: usize, stop: usize, out: &mut [f32]) -> Result<(), IoError> {
        let nc = self.info.n_channels();
        let len = check_segment(&self.path, start, stop, self.n_times, nc, out.len())?;
        if len == 0 {
            return Ok(());
        }
        match &mut self.samples {
            Samples::Memory(data) => {
                for c in 0..nc {
                    let src = &data[c * self.n_times + start..c * self.n_times + stop];
                    out[c * len..(c + 1) * len].copy_from_slice(src);
                }
            }
            Samples::Fdt { path, file } => {
                let frame = nc * 4;
                let block = ((1 << 20) / frame).max(1);
                let mut buf = Vec::new();
                let mut t0 = 0;
                while t0 < len {
                    let n = block.min(len - t0);
                    buf.resize(n * frame, 0);
                    file.seek(SeekFrom::Start(((start + t0) * frame) as u64))
                        .map_err(|e| IoError::io(&*path, e))?;
                    file.read_exact(&mut buf)
                        .map_err(|e| IoError::io(&*path, e))?;
                    for t in 0..n {
                        for c in 0..nc {
                            let o = t * frame + c * 4;
                            let v =
                                f32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
                            out[c * len + t0 + t] = (v as f64 * CAL) as f32;
                        }
                    }
                    t0 += n;
                }
            }
        }
        Ok(())
    }
}

/// Entry point for the format table.
pub fn open(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    Ok(Box::new(EeglabReader::open(path)?))
}
