//! GDF 1.x and 2.x reader (MNE 1.13's `read_raw_gdf` semantics) with the event table as
//! annotations.
//!
//! * Calibration, upsampling of slower channels and stimulus channels (`Status` / `Trigger`) as
//!   in the EDF reader (shared record engine).
//! * Units: GDF 1.x `uV...` dimension strings and `mV`/`nV`/`V`; GDF 2.x unit codes (volt family
//!   4256 with the decimal prefix in the low 5 bits: 4274 mV, 4275 µV, 4276 nV; 512 dimensionless).
//!   Every sample data type of the GDF spec up to float64 is read (1–8, 16, 17), mixed types
//!   included; others are refused naming the channel.
//! * Events: onset `(POS - 1) / sfreq` (positions are 1-based), duration `max(DUR, 1) / sfreq`
//!   (1 sample without a duration), description the event type code in decimal, then cropped to
//!   the recording as MNE's `set_annotations` does.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use neurofm_core::channels::{apply_contract, guess_kind};
use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Unit};

use crate::edf::engine::{RecordEngine, SampleType, SignalLayout};
use crate::edf::{dimension_to_si, latin1, tal::crop_like_mne, unique_names};
use crate::error::IoError;
use crate::reader::{sha256_file, RawReader};

/// An opened GDF file.
pub struct GdfReader {
    info: Info,
    annotations: Vec<Annotation>,
    engine: RecordEngine,
}

fn le_u16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le_i32(b: &[u8], o: usize) -> i32 {
    le_u32(b, o) as i32
}
fn le_u64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn le_i64(b: &[u8], o: usize) -> i64 {
    le_u64(b, o) as i64
}
fn le_f64(b: &[u8], o: usize) -> f64 {
    f64::from_bits(le_u64(b, o))
}

fn gdf_type(code: i32) -> Option<SampleType> {
    Some(match code {
        1 => SampleType::I8,
        2 => SampleType::U8,
        3 => SampleType::I16,
        4 => SampleType::U16,
        5 => SampleType::I32,
        6 => SampleType::U32,
        7 => SampleType::I64,
        8 => SampleType::U64,
        16 => SampleType::F32,
        17 => SampleType::F64,
        _ => return None,
    })
}

/// Scale and unit of a GDF 2.x physical dimension code.
fn unit_code_to_si(code: u16) -> (f64, Unit) {
    if code & 0xFFE0 == 4256 {
        let scale = match code & 0x1F {
            0 => 1.0,
            18 => 1e-3,
            19 => 1e-6,
            20 => 1e-9,
            21 => 1e-12,
            _ => return (1.0, Unit::Other(format!("GDF unit code {code}"))),
        };
        return (scale, Unit::Volt);
    }
    match code {
        0 | 512 => (1.0, Unit::Arbitrary),
        other => (1.0, Unit::Other(format!("GDF unit code {other}"))),
    }
}

struct Chan {
    label: String,
    scale: f64,
    unit: Unit,
    pmin: f64,
    pmax: f64,
    dmin: f64,
    dmax: f64,
    n_samps: usize,
    dtype: SampleType,
}

fn read_exact_at(
    path: &Path,
    f: &mut File,
    pos: u64,
    buf: &mut [u8],
    what: &str,
    file_len: u64,
) -> Result<(), IoError> {
    let short = || IoError::Truncated {
        path: path.to_path_buf(),
        what: what.to_string(),
        expected: pos + buf.len() as u64,
        got: file_len,
    };
    if pos + buf.len() as u64 > file_len {
        return Err(short());
    }
    f.seek(SeekFrom::Start(pos))
        .map_err(|e| IoError::io(path, e))?;
    f.read_exact(buf).map_err(|e| IoError::io(path, e))
}

/// Days since 0001-01-01 (proleptic Gregorian) to (y, m, d).
fn civil_from_days(days_since_0001: i64) -> (i64, i64, i64) {
    // shift to days since 1970-01-01: 0001-01-01 is day -719162
    let z = days_since_0001 - 719_162 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// GDF 2 time stamp (days since 0000-00-00 in 2^-32 units, MNE subtracts 367 days).
fn gdf2_date(raw: u64) -> Option<String> {
    if raw == 0 {
        return None;
    }
    let days = raw as f64 * 2f64.powi(-32) - 367.0;
    if !(0.0..3_652_059.0).contains(&days) {
        return None;
    }
    let whole = days.floor();
    let secs = ((days - whole) * 86_400.0).round() as i64;
    let (y, m, d) = civil_from_days(whole as i64 + secs / 86_400);
    let s = secs % 86_400;
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        s / 3600,
        (s / 60) % 60,
        s % 60
    ))
}

/// GDF 1 time stamp `YYYYMMDDhhmmsscc`.
fn gdf1_date(tm: &str) -> Option<String> {
    let tm = tm.trim();
    let num = |a: usize, b: usize| -> Option<i64> { tm.get(a..b)?.trim().parse().ok() };
    let (y, mo, d, h, mi, s) = (
        num(0, 4)?,
        num(4, 6)?,
        num(6, 8)?,
        num(8, 10)?,
        num(10, 12)?,
        num(12, 14)?,
    );
    let cs = num(14, 16).unwrap_or(0);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    if cs > 0 {
        Some(format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}+00:00",
            cs * 10_000
        ))
    } else {
        Some(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00"))
    }
}

impl GdfReader {
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let mut f = File::open(path).map_err(|e| IoError::io(path, e))?;
        let file_len = f.metadata().map_err(|e| IoError::io(path, e))?.len();
        let mut fixed = [0u8; 256];
        read_exact_at(path, &mut f, 0, &mut fixed, "fixed header", file_len)?;
        let version_s = latin1(&fixed[0..8]);
        if !version_s.starts_with("GDF") {
            return Err(IoError::header(
                path,
                "version",
                format!("expected `GDF x.yy`, found {version_s:?}"),
            ));
        }
        let version: f64 = version_s
            .get(4..)
            .and_then(|v| v.trim().parse().ok())
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                IoError::header(
                    path,
                    "version",
                    format!("bad version number in {version_s:?}"),
                )
            })?;
        let v2 = version >= 1.9;
        let (header_bytes, ns) = if v2 {
            (
                le_u16(&fixed, 184) as u64 * 256,
                le_u16(&fixed, 252) as usize,
            )
        } else {
            let hb = le_i64(&fixed, 184);
            if hb < 0 {
                return Err(IoError::header(
                    path,
                    "header length",
                    format!("negative: {hb}"),
                ));
            }
            let n = le_u32(&fixed, 252);
            if n > 100_000 {
                return Err(IoError::header(
                    path,
                    "number of signals",
                    format!("{n} is out of range"),
                ));
            }
            (hb as u64, n as usize)
        };
        let n_records_hdr = le_i64(&fixed, 236);
        let mut rl0 = le_u32(&fixed, 244) as f64;
        let rl1 = le_u32(&fixed, 248) as f64;
        if rl0 == 0.0 {
            rl0 = 1.0; // MNE
        }
        if rl1 == 0.0 {
            return Err(IoError::header(
                path,
                "duration of a data record",
                "denominator is 0",
            ));
        }
        let record_s = rl0 / rl1;
        let need = 256 * (ns as u64 + 1);
        if header_bytes < need {
            return Err(IoError::header(
                path,
                "header length",
                format!("{header_bytes} bytes, but {ns} signals need {need}"),
            ));
        }
        let mut sh = vec![0u8; 256 * ns];
        read_exact_at(path, &mut f, 256, &mut sh, "signal headers", file_len)?;
        let blk = |start: usize, width: usize, i: usize| start * ns + i * width;
        let mut chans = Vec::with_capacity(ns);
        for i in 0..ns {
            let label = latin1(&sh[blk(0, 16, i)..blk(0, 16, i) + 16])
                .trim()
                .to_string();
            let what = |w: &str| format!("{w} (channel {}, `{label}`)", i + 1);
            let (scale, unit, pmin, pmax, dmin, dmax, n, t) = if v2 {
                let code = le_u16(&sh, blk(102, 2, i));
                let (scale, unit) = unit_code_to_si(code);
                (
                    scale,
                    unit,
                    le_f64(&sh, blk(104, 8, i)),
                    le_f64(&sh, blk(112, 8, i)),
                    le_f64(&sh, blk(120, 8, i)),
                    le_f64(&sh, blk(128, 8, i)),
                    le_i32(&sh, blk(216, 4, i)),
                    le_i32(&sh, blk(220, 4, i)),
                )
            } else {
                let dim = latin1(&sh[blk(96, 8, i)..blk(96, 8, i) + 8])
                    .trim()
                    .to_string();
                let (scale, unit) = if dim.starts_with("uV") {
                    (1e-6, Unit::Volt)
                } else {
                    dimension_to_si(&dim)
                };
                (
                    scale,
                    unit,
                    le_f64(&sh, blk(104, 8, i)),
                    le_f64(&sh, blk(112, 8, i)),
                    le_i64(&sh, blk(120, 8, i)) as f64,
                    le_i64(&sh, blk(128, 8, i)) as f64,
                    le_i32(&sh, blk(216, 4, i)),
                    le_i32(&sh, blk(220, 4, i)),
                )
            };
            for (v, name) in [
                (pmin, "physical minimum"),
                (pmax, "physical maximum"),
                (dmin, "digital minimum"),
                (dmax, "digital maximum"),
            ] {
                if !v.is_finite() {
                    return Err(IoError::header(
                        path,
                        what(name),
                        format!("not finite: {v}"),
                    ));
                }
            }
            if !(1..=100_000_000).contains(&n) {
                return Err(IoError::header(
                    path,
                    what("number of samples per record"),
                    format!("{n} is out of range"),
                ));
            }
            let dtype = gdf_type(t).ok_or_else(|| IoError::Unsupported {
                path: path.to_path_buf(),
                what: format!("header field `{}`: GDF data type {t}", what("data type")),
            })?;
            chans.push(Chan {
                label,
                scale,
                unit,
                pmin,
                pmax,
                dmin,
                dmax,
                n_samps: n as usize,
                dtype,
            });
        }

        let mut offsets = Vec::with_capacity(ns);
        let mut record_bytes = 0usize;
        for c in &chans {
            offsets.push(record_bytes);
            record_bytes = c
                .n_samps
                .checked_mul(c.dtype.size())
                .and_then(|b| record_bytes.checked_add(b))
                .ok_or_else(|| {
                    IoError::header(path, "number of samples per record", "too large")
                })?;
        }
        let data_avail = file_len.saturating_sub(header_bytes);
        let n_records = if n_records_hdr == -1 {
            if record_bytes == 0 {
                0
            } else {
                (data_avail / record_bytes as u64) as usize
            }
        } else if n_records_hdr < 0 {
            return Err(IoError::header(
                path,
                "number of data records",
                format!("{n_records_hdr}"),
            ));
        } else {
            let need = (n_records_hdr as u64)
                .checked_mul(record_bytes as u64)
                .ok_or_else(|| IoError::header(path, "number of data records", "too large"))?;
            if need > data_avail {
                return Err(IoError::Truncated {
                    path: path.to_path_buf(),
                    what: format!(
                        "data records (header field `number of data records` says {n_records_hdr} of {record_bytes} bytes)"
                    ),
                    expected: header_bytes + need,
                    got: file_len,
                });
            }
            n_records_hdr as usize
        };

        let mut names: Vec<String> = chans.iter().map(|c| c.label.clone()).collect();
        unique_names(&mut names);
        let stim: Vec<bool> = names
            .iter()
            .map(|n| matches!(n.to_lowercase().as_str(), "status" | "trigger"))
            .collect();
        let buf_len = chans
            .iter()
            .zip(&stim)
            .filter(|(_, s)| !**s)
            .map(|(c, _)| c.n_samps)
            .max()
            .or_else(|| chans.iter().map(|c| c.n_samps).max())
            .unwrap_or(0);
        let sfreq = buf_len as f64 / record_s;

        let mut channels = Vec::with_capacity(ns);
        let mut layouts = Vec::with_capacity(ns);
        for (i, c) in chans.iter().enumerate() {
            let mut dr = c.dmax - c.dmin;
            if dr == 0.0 {
                dr = 1.0;
            }
            let mut pr = c.pmax - c.pmin;
            if pr == 0.0 {
                pr = 1.0;
            }
            let cal = pr / dr;
            let offset = c.pmin - c.dmin * cal;
            let (kind, unit, gain) = if stim[i] {
                (ChannelKind::Stim, Unit::Arbitrary, 1.0)
            } else {
                (
                    guess_kind(&names[i]).unwrap_or(ChannelKind::Eeg),
                    c.unit.clone(),
                    c.scale,
                )
            };
            channels.push(ChannelInfo::new(names[i].clone(), kind, unit));
            layouts.push(SignalLayout {
                n_per_record: c.n_samps,
                byte_offset: offsets[i],
                dtype: c.dtype,
                cal,
                offset,
                gain,
                stim: stim[i],
            });
        }
        let nonstandard = apply_contract(&mut channels);

        // Event table.
        let etp = header_bytes + n_records as u64 * record_bytes as u64;
        let mut raw_events: Vec<(u32, u16, u32)> = Vec::new();
        if etp < file_len {
            let mut head = [0u8; 8];
            read_exact_at(path, &mut f, etp, &mut head, "event table header", file_len)?;
            let mode = head[0];
            let n_ev = if v2 && version >= 1.94 {
                u32::from_le_bytes([head[1], head[2], head[3], 0])
            } else {
                le_u32(&head, 4)
            };
            let read_events = if v2 { true } else { mode == 1 || mode == 3 };
            if read_events && n_ev > 0 {
                let n = n_ev as usize;
                let per = if mode == 3 { 12 } else { 6 };
                let mut tab = vec![
                    0u8;
                    n.checked_mul(per).ok_or_else(|| {
                        IoError::header(path, "number of events", "too large")
                    })?
                ];
                read_exact_at(
                    path,
                    &mut f,
                    etp + 8,
                    &mut tab,
                    &format!("event table ({n} events)"),
                    file_len,
                )?;
                for k in 0..n {
                    let pos = le_u32(&tab, 4 * k);
                    let typ = le_u16(&tab, 4 * n + 2 * k);
                    let dur = if mode == 3 {
                        le_u32(&tab, 8 * n + 4 * k)
                    } else {
                        1
                    };
                    raw_events.push((pos, typ, dur.max(1)));
                }
            }
        }
        let anns: Vec<Annotation> = raw_events
            .into_iter()
            .map(|(pos, typ, dur)| Annotation {
                // MNE subtracts 1 in uint32 (a 0 wraps around and is cropped away below)
                onset_s: pos.wrapping_sub(1) as f64 / sfreq,
                duration_s: dur as f64 / sfreq,
                description: typ.to_string(),
            })
            .collect();
        let engine = RecordEngine::new(
            path,
            f,
            header_bytes,
            record_bytes,
            n_records,
            buf_len,
            layouts,
        );
        let n_times = engine.n_times();
        let end = if n_times == 0 {
            0.0
        } else {
            (n_times - 1) as f64 / sfreq + 1.0 / sfreq
        };
        let annotations = crop_like_mne(anns, end);

        let mut info = Info::new(
            Modality::Eeg,
            if sfreq > 0.0 { sfreq } else { 1.0 },
            channels,
        );
        info.meas_date = if v2 {
            gdf2_date(le_u64(&fixed, 168))
        } else {
            gdf1_date(&latin1(&fixed[168..184]))
        };
        info.provenance.source_path = path.display().to_string();
        info.provenance.source_sha256 = sha256_file(path)?;
        info.provenance.reader = "gdf".into();
        info.provenance.reader_version = crate::READER_VERSION.to_string();
        info.metadata
            .insert("gdf.version".into(), version_s.trim().to_string());
        if !nonstandard.is_empty() {
            info.metadata
                .insert("channels.nonstandard".into(), nonstandard.join("; "));
        }
        Ok(GdfReader {
            info,
            annotations,
            engine,
        })
    }
}

impl RawReader for GdfReader {
    fn info(&self) -> &Info {
        &self.info
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

/// Opens a GDF 1.x / 2.x file.
pub fn open_gdf(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    Ok(Box::new(GdfReader::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1, 1, 1));
        assert_eq!(civil_from_days(719_162), (1970, 1, 1));
        assert_eq!(civil_from_days(719_162 + 59), (1970, 3, 1));
    }

    #[test]
    fn unit_codes() {
        assert_eq!(unit_code_to_si(4275), (1e-6, Unit::Volt));
        assert_eq!(unit_code_to_si(4274), (1e-3, Unit::Volt));
        assert_eq!(unit_code_to_si(4256), (1.0, Unit::Volt));
        assert_eq!(unit_code_to_si(512), (1.0, Unit::Arbitrary));
    }
}
