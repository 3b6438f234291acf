//! EDF, EDF+, BDF and BDF+ readers (MNE 1.13's `read_raw_edf` / `read_raw_bdf` semantics).
//!
//! * Calibration `(digital * cal + offset) * gain` in float64, as MNE computes it (a physical
//!   maximum below the physical minimum gives a negative gain, kept as is).
//! * Physical dimension to SI: `uV`/`µV`/`μV` 1e-6, `mV` 1e-3, `nV` 1e-9, `V` 1; other dimensions
//!   are kept with scale 1 and their own unit (MNE scales only uV and mV).
//! * Channels with fewer samples per record are upsampled to the fastest one as MNE does
//!   (see [`engine`]); `sfreq` is the fastest non-stim rate.
//! * Channels named `Status` or `Trigger` (any case) are stimulus channels (MNE's
//!   `stim_channel="auto"`): unitless, lower 17 bits; in BDF their raw digital value is used.
//!   [`stim_events`] turns such a channel into events as `mne.find_events` does; annotations
//!   stay what MNE gives (the EDF+/BDF+ TALs only).
//! * EDF+ annotations from every `EDF Annotations` / `BDF Annotations` channel (UTF-8), onsets
//!   from the first sample (the first TAL's fraction of a second is added to the measurement
//!   date), cropped to the recording as MNE's `set_annotations`.
//! * EDF+D (discontinuous) files are read when their records are in fact contiguous and refused
//!   with [`IoError::Unsupported`] otherwise (MNE would silently concatenate the records, putting
//!   samples at the wrong times).
//! * The header's record count must agree with the file size (`-1`, "unknown", is inferred from
//!   it; a trailing partial record is ignored).

pub(crate) mod engine;
pub(crate) mod resample;
pub(crate) mod tal;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use neurofm_core::channels::{apply_contract, guess_kind};
use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};

use crate::error::IoError;
use crate::reader::{read_all_by_segments, LazyHash, RawReader};
use engine::{RecordEngine, SampleType, SignalLayout};

/// Which of the two on-disk sample sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// 16-bit samples.
    Edf,
    /// 24-bit samples (BioSemi).
    Bdf,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Edf => "edf",
            Flavor::Bdf => "bdf",
        }
    }
    fn sample_type(self) -> SampleType {
        match self {
            Flavor::Edf => SampleType::I16,
            Flavor::Bdf => SampleType::I24,
        }
    }
}

/// Latin-1 text of a header field, cut at the first NUL (MNE's `_edf_str`).
pub(crate) fn latin1(b: &[u8]) -> String {
    let cut = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    b[..cut].iter().map(|&c| c as char).collect()
}

pub(crate) fn parse_int(path: &Path, field: &str, b: &[u8]) -> Result<i64, IoError> {
    let s = latin1(b);
    s.trim().parse::<i64>().map_err(|_| {
        IoError::header(
            path,
            field,
            format!("expected an integer, found {:?}", s.trim()),
        )
    })
}

pub(crate) fn parse_float(path: &Path, field: &str, b: &[u8]) -> Result<f64, IoError> {
    let s = latin1(b).replace(',', ".");
    let v = s.trim().parse::<f64>().map_err(|_| {
        IoError::header(
            path,
            field,
            format!("expected a number, found {:?}", s.trim()),
        )
    })?;
    if !v.is_finite() {
        return Err(IoError::header(path, field, format!("not finite: {v}")));
    }
    Ok(v)
}

/// Scale to SI and unit of an EDF physical dimension.
pub(crate) fn dimension_to_si(dim: &str) -> (f64, Unit) {
    match dim {
        "uV" | "\u{b5}V" | "\u{3bc}V" | "\u{83}\u{ca}V" => (1e-6, Unit::Volt),
        "mV" => (1e-3, Unit::Volt),
        "nV" => (1e-9, Unit::Volt),
        "V" => (1.0, Unit::Volt),
        "" => (1.0, Unit::Arbitrary),
        other => (1.0, Unit::Other(other.to_string())),
    }
}

/// MNE's `_unique_channel_names`: duplicates get `-0`, `-1`, ... (or `-a`, `-b`, ...).
pub(crate) fn unique_names(names: &mut [String]) {
    let mut seen = std::collections::HashSet::new();
    let mut dups = Vec::new();
    for n in names.iter() {
        if !seen.insert(n.clone()) && !dups.contains(n) {
            dups.push(n.clone());
        }
    }
    for stem in dups {
        let idxs: Vec<usize> = (0..names.len()).filter(|&i| names[i] == stem).collect();
        for (k, &i) in idxs.iter().enumerate() {
            let mut cands = vec![format!("{stem}-{k}")];
            cands.extend(('a'..='z').map(|c| format!("{stem}-{c}")));
            let mut chosen = cands[cands.len() - 1].clone();
            for c in cands {
                if !names.contains(&c) {
                    chosen = c;
                    break;
                }
            }
            names[i] = chosen;
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn valid_date(y: i64, m: i64, d: i64) -> bool {
    (1..=9999).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// `dd-MMM-yyyy` (strptime `%d-%b-%Y`).
fn parse_edfplus_date(s: &str) -> Option<(i64, i64, i64)> {
    let mut it = s.split('-');
    let d: i64 = it.next()?.parse().ok()?;
    let mon = it.next()?.to_ascii_lowercase();
    let y: i64 = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    let m = MONTHS.iter().position(|x| *x == mon)? as i64 + 1;
    valid_date(y, m, d).then_some((y, m, d))
}

fn three_ints(s: &str) -> Option<(i64, i64, i64)> {
    let v: Vec<i64> = s
        .split('.')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<Vec<_>>>()?;
    match v.as_slice() {
        [a, b, c] => Some((*a, *b, *c)),
        _ => None,
    }
}

/// The measurement date as MNE computes it, as RFC 3339 UTC, plus `frac_s` seconds.
pub(crate) fn meas_date(recording: &str, date: &str, time: &str, frac_s: f64) -> Option<String> {
    let rec: Vec<&str> = recording.trim_end().split(' ').collect();
    let mut ymd = None;
    if rec.len() == 5 {
        ymd = parse_edfplus_date(rec[1]);
    }
    if ymd.is_none() {
        let (d, m, y) = three_ints(date)?;
        let y = if y < 85 { y + 2000 } else { y + 1900 };
        if !valid_date(y, m, d) {
            return None;
        }
        ymd = Some((y, m, d));
    }
    let (y, m, d) = ymd?;
    let (hh, mm, ss) = three_ints(time).unwrap_or((0, 0, 0));
    if !(0..24).contains(&hh) || !(0..60).contains(&mm) || !(0..60).contains(&ss) {
        return None;
    }
    let us = (frac_s * 1e6).round() as i64;
    if us > 0 && us < 1_000_000 {
        Some(format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{us:06}+00:00"
        ))
    } else {
        Some(format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+00:00"
        ))
    }
}

/// Events of a stimulus channel as `mne.find_events(raw, shortest_event=1)` finds them with its
/// other defaults (`consecutive="increasing"`, `output="onset"`, `min_duration=0`,
/// `initial_event=False`): `(sample, value before, value after)` for every step up to a larger
/// value, after MNE's removal of orphaned onsets and offsets. Values are truncated to integers
/// and made non-negative (absolute value) when any is negative, as MNE does.
pub fn stim_events(values: &[f32]) -> Vec<(usize, i64, i64)> {
    let mut data: Vec<i64> = values.iter().map(|&v| v as i64).collect();
    if data.iter().any(|&v| v < 0) {
        data.iter_mut().for_each(|v| *v = v.abs());
    }
    // steps (index, before, after), padded with a final step to 0
    let mut steps: Vec<(usize, i64, i64)> = data
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] != w[1])
        .map(|(i, w)| (i + 1, w[0], w[1]))
        .collect();
    let last = steps
        .last()
        .map(|s| s.2)
        .or_else(|| data.first().copied())
        .unwrap_or(0);
    if last != 0 {
        steps.push((data.len(), last, 0));
    }
    let onsets: Vec<usize> = (0..steps.len())
        .filter(|&i| steps[i].2 > steps[i].1)
        .collect();
    let mut offsets: Vec<usize> = (0..steps.len())
        .filter(|&i| (steps[i].2 > steps[i].1 || steps[i].2 == 0) && steps[i].1 > 0)
        .collect();
    let mut onsets = onsets;
    if onsets.is_empty() || offsets.is_empty() {
        return Vec::new();
    }
    if onsets[0] > offsets[0] {
        offsets.remove(0);
    }
    if let (Some(&on), Some(&off)) = (onsets.last(), offsets.last()) {
        if on > off {
            onsets.pop();
        }
    }
    onsets.into_iter().map(|i| steps[i]).collect()
}

/// Size in bytes of the fixed header and of one signal's header.
const FIXED: usize = 256;

struct SignalHeader {
    label: String,
    dimension: String,
    pmin: f64,
    pmax: f64,
    dmin: f64,
    dmax: f64,
    n_samps: usize,
}

/// An opened EDF/EDF+/BDF/BDF+ file.
pub struct EdfReader {
    /// The header without the provenance sha256 (`hash`, computed on first use).
    header: Info,
    /// `header` with the sha256, once known (see [`RawReader::info`]).
    info: OnceLock<Info>,
    hash: LazyHash,
    annotations: Vec<Annotation>,
    engine: RecordEngine,
}

fn read_exact_or_truncated(
    path: &Path,
    f: &mut File,
    buf: &mut [u8],
    what: &str,
    offset: u64,
    file_len: u64,
) -> Result<(), IoError> {
    f.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            IoError::Truncated {
                path: path.to_path_buf(),
                what: what.to_string(),
                expected: offset + buf.len() as u64,
                got: file_len,
            }
        } else {
            IoError::io(path, e)
        }
    })
}

impl EdfReader {
    /// Opens an EDF(+) or BDF(+) file; `flavor` fixes the sample size.
    pub fn open(path: &Path, flavor: Flavor) -> Result<Self, IoError> {
        let mut f = File::open(path).map_err(|e| IoError::io(path, e))?;
        let file_len = f.metadata().map_err(|e| IoError::io(path, e))?.len();
        let mut fixed = [0u8; FIXED];
        read_exact_or_truncated(path, &mut f, &mut fixed, "fixed header", 0, file_len)?;
        let patient = latin1(&fixed[8..88]);
        let recording = latin1(&fixed[88..168]);
        let start_date = latin1(&fixed[168..176]);
        let start_time = latin1(&fixed[176..184]);
        let header_bytes = parse_int(path, "number of bytes in header record", &fixed[184..192])?;
        let reserved = latin1(&fixed[192..236]);
        let n_records_hdr = parse_int(path, "number of data records", &fixed[236..244])?;
        let mut record_s = parse_float(path, "duration of a data record", &fixed[244..252])?;
        let ns = parse_int(path, "number of signals", &fixed[252..256])?;
        if !(0..=100_000).contains(&ns) {
            return Err(IoError::header(
                path,
                "number of signals",
                format!("{ns} is out of range"),
            ));
        }
        let ns = ns as usize;
        let expected_hdr = FIXED * (ns + 1);
        if header_bytes != expected_hdr as i64 {
            return Err(IoError::header(
                path,
                "number of bytes in header record",
                format!("{header_bytes}, but {ns} signals need {expected_hdr}"),
            ));
        }
        if record_s < 0.0 {
            return Err(IoError::header(
                path,
                "duration of a data record",
                format!("negative: {record_s}"),
            ));
        }
        if record_s == 0.0 {
            // MNE: annotation-only files may say 0; use 1 s.
            record_s = 1.0;
        }
        let mut sh = vec![0u8; FIXED * ns];
        read_exact_or_truncated(
            path,
            &mut f,
            &mut sh,
            "signal headers",
            FIXED as u64,
            file_len,
        )?;
        let field = |start: usize, width: usize, i: usize| -> &[u8] {
            let a = start * ns + i * width;
            &sh[a..a + width]
        };
        // offsets (in units of ns) of each field block
        let (o_label, o_trans, o_dim, o_pmin, o_pmax, o_dmin, o_dmax, o_pre, o_ns) =
            (0, 16, 96, 104, 112, 120, 128, 136, 216);
        let mut sigs = Vec::with_capacity(ns);
        for i in 0..ns {
            let label = latin1(field(o_label, 16, i)).trim().to_string();
            let _ = field(o_trans, 80, i);
            let _ = field(o_pre, 80, i);
            let raw_dim = field(o_dim, 8, i);
            let mut dimension = latin1(raw_dim).trim().to_string();
            if let Ok(u) = std::str::from_utf8(raw_dim) {
                if u.trim() == "\u{3bc}V" || u.trim() == "\u{b5}V" {
                    dimension = u.trim().to_string();
                }
            }
            let name = |what: &str| format!("{what} (signal {}, `{label}`)", i + 1);
            let pmin = parse_float(path, &name("physical minimum"), field(o_pmin, 8, i))?;
            let pmax = parse_float(path, &name("physical maximum"), field(o_pmax, 8, i))?;
            let dmin = parse_float(path, &name("digital minimum"), field(o_dmin, 8, i))?;
            let dmax = parse_float(path, &name("digital maximum"), field(o_dmax, 8, i))?;
            let n = parse_int(
                path,
                &name("number of samples in each data record"),
                field(o_ns, 8, i),
            )?;
            if !(1..=100_000_000).contains(&n) {
                return Err(IoError::header(
                    path,
                    name("number of samples in each data record"),
                    format!("{n} is out of range"),
                ));
            }
            sigs.push(SignalHeader {
                label,
                dimension,
                pmin,
                pmax,
                dmin,
                dmax,
                n_samps: n as usize,
            });
        }

        // Record layout.
        let size = flavor.sample_type().size();
        let mut offsets = Vec::with_capacity(ns);
        let mut record_bytes: usize = 0;
        for s in &sigs {
            offsets.push(record_bytes);
            record_bytes = s
                .n_samps
                .checked_mul(size)
                .and_then(|b| record_bytes.checked_add(b))
                .ok_or_else(|| {
                    IoError::header(path, "number of samples in each data record", "too large")
                })?;
        }
        let data_bytes = file_len.saturating_sub(header_bytes as u64);
        let n_records: usize = if record_bytes == 0 {
            n_records_hdr.max(0) as usize
        } else {
            let in_file = data_bytes / record_bytes as u64;
            if n_records_hdr == -1 {
                in_file as usize
            } else if n_records_hdr < 0 {
                return Err(IoError::header(
                    path,
                    "number of data records",
                    format!("{n_records_hdr} (only -1, unknown, may be negative)"),
                ));
            } else if (n_records_hdr as u64) > in_file {
                return Err(IoError::Truncated {
                    path: path.to_path_buf(),
                    what: format!(
                        "data records (header field `number of data records` says {n_records_hdr} of {record_bytes} bytes)"
                    ),
                    expected: header_bytes as u64 + n_records_hdr as u64 * record_bytes as u64,
                    got: file_len,
                });
            } else if (n_records_hdr as u64) < in_file {
                return Err(IoError::header(
                    path,
                    "number of data records",
                    format!(
                        "header says {n_records_hdr} records of {record_bytes} bytes but the file holds {in_file}"
                    ),
                ));
            } else {
                n_records_hdr as usize
            }
        };

        // Split annotation channels from signals.
        let is_tal = |l: &str| l == "EDF Annotations" || l == "BDF Annotations";
        let tal_idx: Vec<usize> = (0..ns).filter(|&i| is_tal(&sigs[i].label)).collect();
        let sel: Vec<usize> = (0..ns).filter(|&i| !is_tal(&sigs[i].label)).collect();
        let mut names: Vec<String> = sel.iter().map(|&i| sigs[i].label.clone()).collect();
        unique_names(&mut names);

        let stim: Vec<bool> = names
            .iter()
            .map(|n| {
                let l = n.to_lowercase();
                l == "status" || l == "trigger"
            })
            .collect();
        let non_stim_max = sel
            .iter()
            .zip(&stim)
            .filter(|(_, s)| !**s)
            .map(|(&i, _)| sigs[i].n_samps)
            .max();
        let buf_len = non_stim_max
            .or_else(|| sel.iter().map(|&i| sigs[i].n_samps).max())
            .unwrap_or(0);

        let mut channels = Vec::with_capacity(sel.len());
        let mut layouts = Vec::with_capacity(sel.len());
        for (k, &i) in sel.iter().enumerate() {
            let s = &sigs[i];
            let (mut gain, unit) = dimension_to_si(&s.dimension);
            let mut dr = s.dmax - s.dmin;
            if dr == 0.0 {
                dr = 1.0;
            }
            let mut pr = s.pmax - s.pmin;
            if pr == 0.0 {
                pr = 1.0;
            }
            let mut cal = pr / dr;
            let mut offset = s.pmin - s.dmin * cal;
            let (kind, unit) = if stim[k] {
                gain = 1.0;
                if flavor == Flavor::Bdf {
                    cal = 1.0;
                    offset = 0.0;
                }
                (ChannelKind::Stim, Unit::Arbitrary)
            } else {
                (guess_kind(&names[k]).unwrap_or(ChannelKind::Eeg), unit)
            };
            channels.push(ChannelInfo::new(names[k].clone(), kind, unit));
            layouts.push(SignalLayout {
                n_per_record: s.n_samps,
                byte_offset: offsets[i],
                dtype: flavor.sample_type(),
                cal,
                offset,
                gain,
                stim: stim[k],
            });
        }
        let nonstandard = apply_contract(&mut channels);

        let mut engine = RecordEngine::new(
            path,
            f,
            header_bytes as u64,
            record_bytes,
            n_records,
            buf_len,
            layouts,
        );

        // Annotations.
        let mut tal_bytes = Vec::new();
        let discontinuous = reserved.starts_with("EDF+D") || reserved.starts_with("BDF+D");
        let mut record_onsets = Vec::new();
        if !tal_idx.is_empty() {
            for r in 0..engine.n_records() {
                for (j, &t) in tal_idx.iter().enumerate() {
                    let before = tal_bytes.len();
                    engine.record_bytes_at(
                        r,
                        offsets[t],
                        sigs[t].n_samps * size,
                        &mut tal_bytes,
                    )?;
                    if j == 0 && discontinuous {
                        record_onsets.push(tal::record_onset(&tal_bytes[before..]));
                    }
                }
            }
        }
        let sig_names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
        let parsed = tal::parse_tals(&tal_bytes, &sig_names);
        let sfreq = buf_len as f64 / record_s;
        if discontinuous {
            check_contiguous(path, &record_onsets, record_s, sfreq)?;
        }
        let n_times = engine.n_times();
        let annotations = if sel.is_empty() {
            // annotation-only file (e.g. a hypnogram): nothing to crop against
            let mut a = parsed.annotations;
            a.sort_by(|x, y| x.onset_s.total_cmp(&y.onset_s));
            a
        } else {
            let end = if n_times == 0 {
                0.0
            } else {
                (n_times - 1) as f64 / sfreq + 1.0 / sfreq
            };
            tal::crop_like_mne(parsed.annotations, end)
        };

        let mut info = Info::new(
            Modality::Eeg,
            if sfreq > 0.0 { sfreq } else { 1.0 / record_s },
            channels,
        );
        info.meas_date = meas_date(&recording, &start_date, &start_time, parsed.first_onset);
        info.provenance.source_path = path.display().to_string();
        info.provenance.reader = flavor.name().to_string();
        info.provenance.reader_version = crate::READER_VERSION.to_string();
        let md = &mut info.metadata;
        md.insert("edf.patient".into(), patient.trim_end().to_string());
        md.insert("edf.recording".into(), recording.trim_end().to_string());
        md.insert("edf.reserved".into(), reserved.trim_end().to_string());
        if !nonstandard.is_empty() {
            md.insert("channels.nonstandard".into(), nonstandard.join("; "));
        }
        Ok(EdfReader {
            header: info,
            info: OnceLock::new(),
            hash: LazyHash::new(path),
            annotations,
            engine,
        })
    }
}

fn check_contiguous(
    path: &Path,
    onsets: &[Option<f64>],
    record_s: f64,
    sfreq: f64,
) -> Result<(), IoError> {
    let first = match onsets.first() {
        Some(Some(v)) => *v,
        Some(None) => {
            return Err(IoError::header(
                path,
                "EDF Annotations",
                "EDF+D record 1 has no time-keeping annotation",
            ))
        }
        None => return Ok(()),
    };
    let tol = if sfreq > 0.0 { 0.5 / sfreq } else { 1e-6 };
    for (r, on) in onsets.iter().enumerate() {
        let Some(on) = on else {
            return Err(IoError::header(
                path,
                "EDF Annotations",
                format!("EDF+D record {} has no time-keeping annotation", r + 1),
            ));
        };
        let expected = first + r as f64 * record_s;
        if (on - expected).abs() > tol {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                what: format!(
                    "discontinuous EDF+D: data record {} starts at {on} s, not at {expected} s (gaps between records are not supported)",
                    r + 1
                ),
            });
        }
    }
    Ok(())
}

/// Largest file `read_all` reads into memory in one piece (see [`EdfReader`]'s `read_all`).
const WHOLE_FILE_MAX: u64 = 256 << 20;

impl RawReader for EdfReader {
    /// Hashes the file on first use (unless `read_all` already did). If hashing fails the
    /// sha256 is left empty and [`RawReader::finish`] (called by `read_all`) reports why.
    fn info(&self) -> &Info {
        self.info.get_or_init(|| {
            let mut info = self.header.clone();
            info.provenance.source_sha256 = self.hash.get().unwrap_or_default().to_string();
            info
        })
    }
    fn n_channels(&self) -> usize {
        self.header.n_channels()
    }
    fn finish(&mut self) -> Result<(), IoError> {
        self.hash.get().map(|_| ())
    }
    /// Files up to [`WHOLE_FILE_MAX`] are read with one `read` into memory; the provenance
    /// sha256 (unless already known) is computed on one thread while the channels are decoded
    /// on the rayon pool, from the same bytes. Bigger files, and files with channels that need
    /// FFT upsampling, go through `read_segment` (bounded memory).
    fn read_all(&mut self) -> Result<Recording, IoError> {
        let path = std::path::PathBuf::from(&self.header.provenance.source_path);
        let len = std::fs::metadata(&path)
            .map_err(|e| IoError::io(&path, e))?
            .len();
        if len > WHOLE_FILE_MAX || self.engine.needs_upsampling() {
            return read_all_by_segments(self);
        }
        let bytes = std::fs::read(&path).map_err(|e| IoError::io(&path, e))?;
        let (nc, n) = (self.header.n_channels(), self.engine.n_times());
        let mut data = vec![0f32; nc * n];
        let hash = &self.hash;
        let engine = &self.engine;
        let decoded = std::thread::scope(|s| {
            if !hash.is_known() {
                s.spawn(|| hash.set_from_bytes(&bytes));
            }
            engine.decode_all_from(&bytes, &mut data)
        })?;
        if !decoded {
            return read_all_by_segments(self);
        }
        self.finish()?;
        let signal = Signal::channels(nc, n, data).map_err(|source| IoError::Core {
            path: path.clone(),
            source,
        })?;
        Recording::new(self.info().clone(), signal, self.annotations.clone())
            .map_err(|source| IoError::Core { path, source })
    }
    fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }
    fn n_times(&self) -> usize {
        self.engine.n_times()
    }
    fn read_segment(&mut self, start: usize, stop: usize, out: &mut [f32]) -> Result<(), IoError> {
        self.engine.read_segment(start, stop, out)
    }
}

/// Opens an EDF/EDF+ file.
pub fn open_edf(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    Ok(Box::new(EdfReader::open(path, Flavor::Edf)?))
}

/// Opens a BDF/BDF+ file.
pub fn open_bdf(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    Ok(Box::new(EdfReader::open(path, Flavor::Bdf)?))
}
