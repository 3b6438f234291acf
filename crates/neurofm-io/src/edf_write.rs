//! EDF+ writer (EDF+C: continuous, with an `EDF Annotations` signal).
//!
//! Format: <https://www.edfplus.info/specs/edfplus.html>. What we write:
//!
//! * a 256-byte header plus 256 bytes per signal, ASCII; patient and recording fields in EDF+
//!   form (`<subject> X X X`, `Startdate DD-MMM-YYYY X X neurofm`), start date/time from
//!   `meas_date` (the sub-second part is dropped; without a date: 01.01.85 00.00.00 and
//!   `Startdate X`);
//! * 16-bit samples over the full digital range −32768..32767, with each channel's physical
//!   minimum/maximum taken from its data (rounded outwards to what fits in 8 characters), in µV
//!   for volt channels (fT for tesla, fT/cm for tesla/metre);
//! * data records of 1 s when the sampling rate allows it (else 0.5, 2, 0.25, ... s), preferring a
//!   duration that divides the recording so no padding is needed; otherwise the last record is
//!   padded with zeros (as every EDF writer must);
//! * an annotation signal whose every record starts with its time-keeping TAL, followed by as
//!   many annotation TALs (UTF-8, `+onset\x15duration\x14text\x14\0`) as fit: long annotation
//!   lists are spread over the records in order.
//!
//! The file is written to a temporary name beside the target, fsynced, then renamed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use neurofm_core::{ChannelKind, Recording, Signal, Unit};

use crate::error::IoError;

const DIG_MIN: i32 = -32768;
const DIG_MAX: i32 = 32767;
const ANNOT_LABEL: &str = "EDF Annotations";
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Options of [`write_edf_plus_with`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdfWriteOptions {
    /// Prefix labels with the EDF+ signal type (`EEG Fp1`, `EOG ...`, `ECG ...`, `EMG ...`).
    pub kind_prefix: bool,
    /// Data-record duration in seconds; `None` picks one (see the module docs).
    pub record_duration_s: Option<f64>,
}

/// Writes `rec` as EDF+C with default options (plain labels, automatic record duration).
pub fn write_edf_plus(path: &Path, rec: &Recording) -> Result<(), IoError> {
    write_edf_plus_with(path, rec, &EdfWriteOptions::default())
}

/// Writes `rec` as EDF+C.
pub fn write_edf_plus_with(
    path: &Path,
    rec: &Recording,
    opts: &EdfWriteOptions,
) -> Result<(), IoError> {
    let plan = Plan::new(path, rec, opts)?;
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| IoError::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        plan.write(&mut w).map_err(|e| IoError::io(&tmp, e))?;
        let file = w
            .into_inner()
            .map_err(|e| IoError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| IoError::io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| IoError::io(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename durable; not every platform can open a directory, so best effort.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.edf".to_string());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// One ordinary signal, ready to write.
struct Chan {
    label: String,
    transducer: String,
    dim: String,
    phys_min: (String, f64),
    phys_max: (String, f64),
    /// physical value (in `dim`) = stored SI value × scale
    scale: f64,
}

/// Everything decided before the first byte is written.
struct Plan<'a> {
    data: &'a [f32],
    n_samples: usize,
    chans: Vec<Chan>,
    spr: usize,
    n_records: usize,
    record_s: f64,
    record_s_field: String,
    annot_bytes: usize,
    /// Annotation TALs of each record (without the time-keeping TAL).
    record_tals: Vec<Vec<u8>>,
    patient: String,
    recording: String,
    startdate: String,
    starttime: String,
}

impl<'a> Plan<'a> {
    fn new(path: &Path, rec: &'a Recording, opts: &EdfWriteOptions) -> Result<Self, IoError> {
        let (n_channels, n_samples, data) = match &rec.signal {
            Signal::Channels {
                n_channels,
                n_samples,
                data,
            } => (*n_channels, *n_samples, data.as_slice()),
            Signal::Volumes { .. } => {
                return Err(IoError::Unsupported {
                    path: path.into(),
                    what: "EDF holds channel signals, not volumes".into(),
                })
            }
        };
        if n_channels != rec.info.channels.len() || data.len() != n_channels * n_samples {
            return Err(IoError::header(
                path,
                "signal",
                format!(
                    "{} channels in info but signal is {n_channels} x {n_samples} with {} values",
                    rec.info.channels.len(),
                    data.len()
                ),
            ));
        }
        if n_channels + 1 > 9999 {
            return Err(IoError::header(
                path,
                "number of signals",
                format!("{} does not fit in 4 characters", n_channels + 1),
            ));
        }
        let sfreq = rec.info.sfreq_hz;
        if !(sfreq.is_finite() && sfreq > 0.0) {
            return Err(IoError::header(
                path,
                "sfreq_hz",
                format!("{sfreq} is not a positive sampling rate"),
            ));
        }
        let (record_s, spr) = record_duration(path, sfreq, n_samples, opts.record_duration_s)?;
        let record_s_field = fmt_fit(record_s, 8).ok_or_else(|| {
            IoError::header(
                path,
                "record duration",
                format!("{record_s} s does not fit in 8 characters"),
            )
        })?;
        let n_records = n_samples.div_ceil(spr).max(1);
        if n_records > 99_999_999 {
            return Err(IoError::header(
                path,
                "number of data records",
                format!("{n_records} does not fit in 8 characters"),
            ));
        }

        let mut chans = Vec::with_capacity(n_channels);
        for (i, ch) in rec.info.channels.iter().enumerate() {
            let label = if opts.kind_prefix {
                match kind_prefix(ch.kind) {
                    Some(p) => format!("{p} {}", ch.name),
                    None => ch.name.clone(),
                }
            } else {
                ch.name.clone()
            };
            if !is_header_ascii(&label) || label.len() > 16 || label == ANNOT_LABEL {
                return Err(IoError::header(
                    path,
                    format!("label of channel {i}"),
                    format!(
                        "`{label}` must be at most 16 printable ASCII characters and not `{ANNOT_LABEL}`"
                    ),
                ));
            }
            let (dim, scale) = match &ch.unit {
                Unit::Volt => ("uV".to_string(), 1e6),
                Unit::Tesla => ("fT".to_string(), 1e15),
                Unit::TeslaPerMeter => ("fT/cm".to_string(), 1e13),
                Unit::Arbitrary => (String::new(), 1.0),
                Unit::Other(s) => (sanitize_ascii(s), 1.0),
            };
            if dim.len() > 8 {
                return Err(IoError::header(
                    path,
                    format!("physical dimension of channel `{}`", ch.name),
                    format!("`{dim}` is longer than 8 characters"),
                ));
            }
            let row = &data[i * n_samples..(i + 1) * n_samples];
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &v in row {
                let v = v as f64 * scale;
                if !v.is_finite() {
                    return Err(IoError::header(
                        path,
                        format!("data of channel `{}`", ch.name),
                        "contains a non-finite value",
                    ));
                }
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if n_samples < n_records * spr {
                // padding samples are physical zero
                lo = lo.min(0.0);
                hi = hi.max(0.0);
            }
            if row.is_empty() {
                (lo, hi) = (-1.0, 1.0);
            }
            if hi - lo <= 1e-6 * hi.abs().max(lo.abs()) {
                // flat channel: any range that contains the value
                lo -= 1.0;
                hi += 1.0;
            }
            let phys_min = fmt_bound(lo, true).ok_or_else(|| {
                IoError::header(
                    path,
                    format!("physical minimum of channel `{}`", ch.name),
                    format!("{lo} {dim} does not fit in 8 characters"),
                )
            })?;
            let phys_max = fmt_bound(hi, false).ok_or_else(|| {
                IoError::header(
                    path,
                    format!("physical maximum of channel `{}`", ch.name),
                    format!("{hi} {dim} does not fit in 8 characters"),
                )
            })?;
            if phys_max.1 <= phys_min.1 {
                return Err(IoError::header(
                    path,
                    format!("physical range of channel `{}`", ch.name),
                    format!(
                        "[{lo}, {hi}] {dim} cannot be written with distinct 8-character bounds"
                    ),
                ));
            }
            let transducer = if ch.kind == ChannelKind::Eeg {
                "AgAgCl electrode".to_string()
            } else {
                String::new()
            };
            chans.push(Chan {
                label,
                transducer,
                dim,
                phys_min,
                phys_max,
                scale,
            });
        }

        // Annotations, spread over the records.
        let mut tals: Vec<Vec<u8>> = Vec::with_capacity(rec.annotations.len());
        for a in &rec.annotations {
            if !(a.onset_s.is_finite() && a.duration_s.is_finite() && a.duration_s >= 0.0) {
                return Err(IoError::header(
                    path,
                    "annotation",
                    format!(
                        "`{}` has onset {} s and duration {} s",
                        a.description, a.onset_s, a.duration_s
                    ),
                ));
            }
            let mut t = Vec::new();
            t.extend_from_slice(fmt_onset(a.onset_s).as_bytes());
            if a.duration_s > 0.0 {
                t.push(0x15);
                t.extend_from_slice(fmt_secs(a.duration_s).as_bytes());
            }
            t.push(0x14);
            t.extend(a.description.bytes().map(|b| match b {
                0x00 | 0x14 | 0x15 => b' ',
                b => b,
            }));
            t.extend_from_slice(&[0x14, 0x00]);
            tals.push(t);
        }
        let tk_max = timekeeping(record_s * (n_records - 1) as f64).len();
        let total: usize = tals.iter().map(Vec::len).sum();
        let longest = tals.iter().map(Vec::len).max().unwrap_or(0);
        let mut annot_bytes = tk_max + longest + total.div_ceil(n_records) + longest;
        annot_bytes += annot_bytes % 2;
        let mut record_tals: Vec<Vec<u8>> = vec![Vec::new(); n_records];
        let mut r = 0;
        for (k, t) in tals.into_iter().enumerate() {
            // Greedy in order; the capacity above guarantees the records suffice.
            while r < n_records && tk_max + record_tals[r].len() + t.len() > annot_bytes {
                r += 1;
            }
            let Some(slot) = record_tals.get_mut(r) else {
                return Err(IoError::header(
                    path,
                    "annotations",
                    format!("annotation {k} does not fit in the data records"),
                ));
            };
            slot.extend_from_slice(&t);
        }
        if annot_bytes / 2 > 99_999_999 || spr > 99_999_999 {
            return Err(IoError::header(
                path,
                "samples per record",
                "does not fit in 8 characters",
            ));
        }

        let (startdate, starttime, date_field) = start_fields(path, rec.info.meas_date.as_deref())?;
        let subject = rec
            .info
            .subject
            .as_deref()
            .map(subfield)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "X".to_string());
        let patient = format!("{subject} X X X");
        let recording = format!("Startdate {date_field} X X neurofm");

        Ok(Plan {
            data,
            n_samples,
            chans,
            spr,
            n_records,
            record_s,
            record_s_field,
            annot_bytes,
            record_tals,
            patient,
            recording,
            startdate,
            starttime,
        })
    }

    fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        let ns = self.chans.len() + 1;
        let mut h = String::with_capacity(256 * (ns + 1));
        field(&mut h, "0", 8);
        field(&mut h, &self.patient, 80);
        field(&mut h, &self.recording, 80);
        field(&mut h, &self.startdate, 8);
        field(&mut h, &self.starttime, 8);
        field(&mut h, &(256 * (ns + 1)).to_string(), 8);
        field(&mut h, "EDF+C", 44);
        field(&mut h, &self.n_records.to_string(), 8);
        field(&mut h, &self.record_s_field, 8);
        field(&mut h, &ns.to_string(), 4);
        for c in &self.chans {
            field(&mut h, &c.label, 16);
        }
        field(&mut h, ANNOT_LABEL, 16);
        for c in &self.chans {
            field(&mut h, &c.transducer, 80);
        }
        field(&mut h, "", 80);
        for c in &self.chans {
            field(&mut h, &c.dim, 8);
        }
        field(&mut h, "", 8);
        for c in &self.chans {
            field(&mut h, &c.phys_min.0, 8);
        }
        field(&mut h, "-1", 8);
        for c in &self.chans {
            field(&mut h, &c.phys_max.0, 8);
        }
        field(&mut h, "1", 8);
        for _ in 0..ns {
            field(&mut h, &DIG_MIN.to_string(), 8);
        }
        for _ in 0..ns {
            field(&mut h, &DIG_MAX.to_string(), 8);
        }
        for _ in 0..ns {
            field(&mut h, "", 80);
        }
        for _ in &self.chans {
            field(&mut h, &self.spr.to_string(), 8);
        }
        field(&mut h, &(self.annot_bytes / 2).to_string(), 8);
        for _ in 0..ns {
            field(&mut h, "", 32);
        }
        debug_assert_eq!(h.len(), 256 * (ns + 1));
        w.write_all(h.as_bytes())?;

        let n = self.n_samples;
        let rec_len = 2 * self.spr * self.chans.len() + self.annot_bytes;
        let mut buf = Vec::with_capacity(rec_len);
        for r in 0..self.n_records {
            buf.clear();
            let start = r * self.spr;
            for (ci, c) in self.chans.iter().enumerate() {
                let row = &self.data[ci * n..(ci + 1) * n];
                let (lo, hi) = (c.phys_min.1, c.phys_max.1);
                let gain = (DIG_MAX - DIG_MIN) as f64 / (hi - lo);
                for s in start..start + self.spr {
                    let phys = row.get(s).map_or(0.0, |&v| v as f64 * c.scale);
                    let d = ((phys - lo) * gain + DIG_MIN as f64).round();
                    let d = d.clamp(DIG_MIN as f64, DIG_MAX as f64) as i16;
                    buf.extend_from_slice(&d.to_le_bytes());
                }
            }
            let a0 = buf.len();
            buf.extend_from_slice(timekeeping(self.record_s * r as f64).as_bytes());
            if let Some(t) = self.record_tals.get(r) {
                buf.extend_from_slice(t);
            }
            buf.resize(a0 + self.annot_bytes, 0);
            w.write_all(&buf)?;
        }
        w.flush()
    }
}

fn field(h: &mut String, s: &str, width: usize) {
    // Callers guarantee ASCII of at most `width` bytes; truncate defensively all the same.
    let s: String = s.chars().take(width).collect();
    h.push_str(&s);
    for _ in s.len()..width {
        h.push(' ');
    }
}

fn kind_prefix(kind: ChannelKind) -> Option<&'static str> {
    match kind {
        ChannelKind::Eeg => Some("EEG"),
        ChannelKind::Eog => Some("EOG"),
        ChannelKind::Ecg => Some("ECG"),
        ChannelKind::Emg => Some("EMG"),
        _ => None,
    }
}

fn is_header_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7F).contains(&b))
}

fn sanitize_ascii(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect()
}

/// An EDF+ subfield: printable ASCII, spaces replaced by `_`.
fn subfield(s: &str) -> String {
    sanitize_ascii(s.trim()).replace(' ', "_")
}

/// Picks the record duration: the requested one, or the first candidate giving an integer number
/// of samples per record, preferring one that divides `n_samples`.
fn record_duration(
    path: &Path,
    sfreq: f64,
    n_samples: usize,
    requested: Option<f64>,
) -> Result<(f64, usize), IoError> {
    let spr_of = |d: f64| {
        let x = sfreq * d;
        let r = x.round();
        (r >= 1.0 && (x - r).abs() < 1e-6 * r.max(1.0)).then_some(r as usize)
    };
    if let Some(d) = requested {
        return match spr_of(d) {
            Some(spr) if d.is_finite() && d > 0.0 => Ok((d, spr)),
            _ => Err(IoError::header(
                path,
                "record duration",
                format!("{d} s x {sfreq} Hz is not a whole number of samples"),
            )),
        };
    }
    const CANDIDATES: [f64; 12] = [
        1.0, 0.5, 2.0, 0.25, 0.2, 4.0, 5.0, 0.1, 10.0, 0.05, 0.02, 0.01,
    ];
    let ok: Vec<(f64, usize)> = CANDIDATES
        .iter()
        .filter_map(|&d| spr_of(d).map(|s| (d, s)))
        .collect();
    ok.iter()
        .find(|(_, spr)| n_samples.is_multiple_of(*spr))
        .or_else(|| ok.first())
        .copied()
        .ok_or_else(|| IoError::Unsupported {
            path: path.into(),
            what: format!(
                "sampling rate {sfreq} Hz: no data-record duration holds a whole number of samples"
            ),
        })
}

/// Shortest decimal for `v` that fits in `width` characters and parses back exactly.
fn fmt_fit(v: f64, width: usize) -> Option<String> {
    let s = format!("{v}");
    (s.len() <= width && s.parse::<f64>().ok() == Some(v)).then_some(s)
}

/// `v` rounded outwards (down for a minimum, up for a maximum) to the most decimals that fit in
/// 8 characters; returns the text and its value.
fn fmt_bound(v: f64, down: bool) -> Option<(String, f64)> {
    for d in (0..=7).rev() {
        let scale = 10f64.powi(d);
        let q = if down {
            (v * scale).floor()
        } else {
            (v * scale).ceil()
        };
        let s = trim_decimal(format!("{:.*}", d as usize, q / scale));
        if s.len() <= 8 {
            let parsed: f64 = s.parse().ok()?;
            return Some((s, parsed));
        }
    }
    None
}

fn trim_decimal(s: String) -> String {
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// Seconds as EDF+ writes them: plain decimal, microsecond resolution, no exponent.
fn fmt_secs(v: f64) -> String {
    trim_decimal(format!("{:.6}", v))
}

fn fmt_onset(v: f64) -> String {
    let s = fmt_secs(v.abs());
    if v < 0.0 && s != "0" {
        format!("-{s}")
    } else {
        format!("+{s}")
    }
}

fn timekeeping(onset: f64) -> String {
    format!("{}\x14\x14\0", fmt_onset(onset))
}

/// (startdate "dd.mm.yy", starttime "hh.mm.ss", EDF+ recording-field date "DD-MMM-YYYY" or "X")
fn start_fields(path: &Path, meas_date: Option<&str>) -> Result<(String, String, String), IoError> {
    let Some(s) = meas_date else {
        return Ok(("01.01.85".into(), "00.00.00".into(), "X".into()));
    };
    let bad = |why: &str| IoError::header(path, "meas_date", format!("`{s}`: {why}"));
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<u32, IoError> {
        let t = s.get(r).ok_or_else(|| bad("too short"))?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
        }
        t.parse().map_err(|_| bad("expected YYYY-MM-DDTHH:MM:SS"))
    };
    let sep_ok = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !sep_ok {
        return Err(bad("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad("date or time out of range"));
    }
    let yy = if (1985..=2084).contains(&year) {
        format!("{:02}", year % 100)
    } else {
        // EDF+: years outside 1985-2084 are only in the recording field.
        "yy".to_string()
    };
    let month_name = MONTHS[(month - 1) as usize];
    Ok((
        format!("{day:02}.{month:02}.{yy}"),
        format!("{hh:02}.{mm:02}.{ss:02}"),
        format!("{day:02}-{month_name}-{year:04}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_round_outwards_and_fit() {
        let (s, v) = fmt_bound(-123.456_789_1, true).unwrap();
        assert_eq!(s, "-123.457");
        assert!(v <= -123.456_789_1);
        let (s, v) = fmt_bound(123.456_789_1, false).unwrap();
        assert_eq!(s, "123.4568");
        assert!(v >= 123.456_789_1);
        assert_eq!(fmt_bound(0.0, true).unwrap().0, "0");
        assert_eq!(fmt_bound(-1e-9, false).unwrap().0, "0");
        assert!(fmt_bound(1e12, false).is_none());
    }

    #[test]
    fn onsets_are_plain_decimals() {
        assert_eq!(fmt_onset(0.0), "+0");
        assert_eq!(fmt_onset(3.005), "+3.005");
        assert_eq!(fmt_onset(0.1 + 0.2), "+0.3");
        assert_eq!(fmt_onset(-0.5), "-0.5");
        assert_eq!(fmt_onset(1e-7), "+0");
        assert_eq!(fmt_secs(1234567.25), "1234567.25");
    }

    #[test]
    fn record_duration_prefers_divisors() {
        let p = Path::new("x.edf");
        assert_eq!(record_duration(p, 200.0, 2000, None).unwrap(), (1.0, 200));
        assert_eq!(record_duration(p, 200.0, 2100, None).unwrap(), (0.5, 100));
        assert_eq!(record_duration(p, 200.0, 2001, None).unwrap(), (1.0, 200));
        assert_eq!(record_duration(p, 250.5, 2004, None).unwrap(), (2.0, 501));
        assert!(record_duration(p, 1000.0 / 3.0, 100, None).is_err());
        assert!(record_duration(p, 200.0, 100, Some(0.003)).is_err());
    }

    #[test]
    fn start_fields_follow_edf_plus() {
        let p = Path::new("x.edf");
        let (d, t, f) = start_fields(p, Some("2020-01-05T09:07:03.25Z")).unwrap();
        assert_eq!(
            (d.as_str(), t.as_str(), f.as_str()),
            ("05.01.20", "09.07.03", "05-JAN-2020")
        );
        let (d, _, f) = start_fields(p, Some("2090-12-31 23:59:59")).unwrap();
        assert_eq!((d.as_str(), f.as_str()), ("31.12.yy", "31-DEC-2090"));
        let e = start_fields(p, Some("yesterday")).unwrap_err().to_string();
        assert!(e.contains("meas_date") && e.contains("x.edf"), "{e}");
        assert!(start_fields(p, Some("2020-13-01T00:00:00")).is_err());
    }
}
