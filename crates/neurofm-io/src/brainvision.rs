//! BrainVision Core Data Format: a text header (`.vhdr`, or `.ahdr`), a text marker file
//! (`.vmrk`) and a binary data file (`.eeg`).
//!
//! Follows MNE's `read_raw_brainvision`: per-channel `resolution × unit` calibration to SI units,
//! channels whose unit is not a voltage become `misc`, channels named `HEOGL`/`HEOGR`/`VEOGb`
//! become `eog`, markers become annotations described as `"<type>/<description>"` with the
//! 1-based marker position converted to a 0-based onset. Only binary data (INT_16, INT_32,
//! IEEE_FLOAT_32; multiplexed or vectorized) is read; ASCII data files are refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Provenance, Unit};

use crate::channel_names::standard_name;
use crate::error::IoError;
use crate::reader::{sha256_file, RawReader};

/// Reader name recorded in provenance.
pub const NAME: &str = "brainvision";

/// Channel names MNE types as EOG by default.
const EOG_NAMES: [&str; 3] = ["HEOGL", "HEOGR", "VEOGb"];

/// Binary sample encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    Int16,
    Int32,
    Float32,
}

impl SampleFormat {
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::Int16 => 2,
            SampleFormat::Int32 => 4,
            SampleFormat::Float32 => 4,
        }
    }

    fn decode(self, b: &[u8], big_endian: bool) -> f64 {
        match (self, big_endian) {
            (SampleFormat::Int16, false) => i16::from_le_bytes([b[0], b[1]]) as f64,
            (SampleFormat::Int16, true) => i16::from_be_bytes([b[0], b[1]]) as f64,
            (SampleFormat::Int32, false) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            (SampleFormat::Int32, true) => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
            (SampleFormat::Float32, false) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            (SampleFormat::Float32, true) => f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
        }
    }
}

/// Sample layout in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// All channels of sample 0, then all channels of sample 1, ...
    Multiplexed,
    /// All samples of channel 0, then all samples of channel 1, ...
    Vectorized,
}

/// A parsed INI-like BrainVision text file: section (lower-case) → key (lower-case) → value.
#[derive(Debug, Default)]
pub struct Ini {
    /// The first line (identification), BOM and whitespace stripped.
    pub first_line: String,
    pub sections: BTreeMap<String, Vec<(String, String)>>,
}

impl Ini {
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section).and_then(|kv| {
            kv.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        })
    }

    pub fn section(&self, section: &str) -> &[(String, String)] {
        self.sections.get(section).map_or(&[], |v| v.as_slice())
    }
}

/// Decodes a BrainVision text file: the `Codepage` entry picks UTF-8 (falling back to Latin-1
/// when the bytes are not valid UTF-8, as MNE does) or Latin-1 / ANSI.
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let ascii: String = bytes
        .iter()
        .map(|&b| if b.is_ascii() { b as char } else { '?' })
        .collect();
    let codepage = ascii
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("codepage")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_else(|| "utf-8".to_string());
    if codepage == "utf-8" || codepage == "utf8" {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return s.to_string();
        }
    }
    // Latin-1: every byte is the code point of the same value.
    bytes.iter().map(|&b| b as char).collect()
}

/// Parses the INI structure. Everything from a `[Comment]` section on is free text and ignored.
pub fn parse_ini(text: &str) -> Ini {
    let mut ini = Ini::default();
    let mut lines = text.lines();
    ini.first_line = lines
        .next()
        .unwrap_or("")
        .trim_start_matches('\u{feff}')
        .trim()
        .to_string();
    let mut current = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            current = line[1..line.len() - 1].trim().to_ascii_lowercase();
            if current == "comment" {
                break;
            }
            ini.sections.entry(current.clone()).or_default();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            ini.sections
                .entry(current.clone())
                .or_default()
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    ini
}

/// One marker from a `.vmrk` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub kind: String,
    pub description: String,
    /// 1-based sample position, as written.
    pub position: i64,
    /// Length in samples (0 when absent or not a number).
    pub points: u64,
    pub date: Option<String>,
}

/// Parses the `[Marker Infos]` section of a marker file.
pub fn parse_markers(path: &Path, bytes: &[u8]) -> Result<Vec<Marker>, IoError> {
    let ini = parse_ini(&decode_text(bytes));
    check_identification(path, &ini.first_line, "Marker")?;
    let mut out = Vec::new();
    for (key, value) in ini.section("marker infos") {
        let Some(num) = key
            .strip_prefix("Mk")
            .or_else(|| key.strip_prefix("mk"))
            .or_else(|| key.strip_prefix("MK"))
        else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let parts: Vec<&str> = value.split(',').collect();
        if parts.len() < 4 {
            return Err(IoError::header(
                path,
                format!("[Marker Infos] {key}"),
                format!(
                    "expected `type,description,position,points[,channel[,date]]`, got `{value}`"
                ),
            ));
        }
        let position: i64 = parts[2].trim().parse().map_err(|_| {
            IoError::header(
                path,
                format!("[Marker Infos] {key} position"),
                format!("not an integer: `{}`", parts[2]),
            )
        })?;
        let points = parts[3].trim().parse::<u64>().unwrap_or(0);
        out.push(Marker {
            kind: parts[0].replace("\\1", ","),
            description: parts[1].replace("\\1", ","),
            position,
            points,
            date: parts.get(5).map(|s| s.trim().to_string()),
        });
    }
    Ok(out)
}

fn check_identification(path: &Path, line: &str, kind: &str) -> Result<(), IoError> {
    // MNE: r"Brain ?Vision( Core| V-Amp)? Data( Exchange)? {kind} File,? Version [12]\.0"
    let norm = line.replace("Brain Vision", "BrainVision");
    let ok = norm.starts_with("BrainVision")
        && norm.contains(&format!("{kind} File"))
        && (norm.contains("Version 1.0") || norm.contains("Version 2.0"));
    if ok {
        Ok(())
    } else {
        Err(IoError::header(
            path,
            "identification line",
            format!(
                "expected `BrainVision Data Exchange {kind} File Version 1.0/2.0`, got `{line}`"
            ),
        ))
    }
}

/// `YYYYMMDDhhmmssffffff` → RFC 3339 (UTC), `None` for zeros or anything unparsable (as MNE).
fn marker_date_to_rfc3339(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() < 14 || !s.bytes().all(|b| b.is_ascii_digit()) || s.bytes().all(|b| b == b'0') {
        return None;
    }
    let n = |a: usize, b: usize| s[a..b].parse::<u32>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0, 4)?,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let frac = &s[14..];
    if frac.is_empty() {
        Some(format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}+00:00"
        ))
    } else {
        let mut f = frac.to_string();
        f.truncate(6);
        while f.len() < 6 {
            f.push('0');
        }
        Some(format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{f}+00:00"
        ))
    }
}

/// Scale from a BrainVision unit to SI and the kind MNE gives such a channel.
fn unit_scale(unit: &str) -> (f64, Unit, bool) {
    match unit {
        "V" => (1.0, Unit::Volt, true),
        "µV" | "μV" | "uV" => (1e-6, Unit::Volt, true),
        "mV" => (1e-3, Unit::Volt, true),
        "nV" => (1e-9, Unit::Volt, true),
        "µS" | "μS" | "uS" => (1e-6, Unit::Other("S".into()), false),
        "C" | "°C" => (1.0, Unit::Other("°C".into()), false),
        "S" => (1.0, Unit::Other("S".into()), false),
        "N" => (1.0, Unit::Other("N".into()), false),
        "" | "n/a" | "ARU" => (1.0, Unit::Arbitrary, false),
        other => (1.0, Unit::Other(other.to_string()), false),
    }
}

/// An opened BrainVision recording.
pub struct BrainVisionReader {
    data_path: PathBuf,
    file: File,
    info: Info,
    annotations: Vec<Annotation>,
    n_times: usize,
    format: SampleFormat,
    orientation: Orientation,
    big_endian: bool,
    /// Per channel: resolution × unit scale (raw value → SI).
    cal: Vec<f64>,
    /// Channels in the data file (one more than `info` for `.ahdr`).
    n_file_channels: usize,
}

fn parse_num<T: std::str::FromStr>(
    path: &Path,
    field: &str,
    v: Option<&str>,
) -> Result<T, IoError> {
    let v = v.ok_or_else(|| IoError::header(path, field, "missing"))?;
    v.trim()
        .parse::<T>()
        .map_err(|_| IoError::header(path, field, format!("not a number: `{v}`")))
}

fn read_file(path: &Path, owner: &Path) -> Result<Vec<u8>, IoError> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound && path != owner {
            IoError::MissingCompanion {
                path: owner.to_path_buf(),
                companion: path.to_path_buf(),
            }
        } else {
            IoError::io(path, e)
        }
    })
}

/// Everything the `.vhdr` header says (companion files are not touched).
#[derive(Debug, Clone)]
pub struct VhdrHeader {
    pub data_path: PathBuf,
    pub marker_path: Option<PathBuf>,
    pub ahdr: bool,
    pub n_channels: usize,
    pub sfreq_hz: f64,
    pub format: SampleFormat,
    pub orientation: Orientation,
    pub big_endian: bool,
    pub channels: Vec<ChannelInfo>,
    /// Per channel: resolution × unit scale (raw value → SI).
    pub cal: Vec<f64>,
    /// `DataPoints` when the header gives it.
    pub data_points: Option<u64>,
}

/// Parses a `.vhdr` / `.ahdr` header held in memory; `path` locates companions and names errors.
pub fn parse_vhdr(path: &Path, bytes: &[u8]) -> Result<VhdrHeader, IoError> {
    let ini = parse_ini(&decode_text(bytes));
    check_identification(path, &ini.first_line, "Header")?;
    let common = if ini.sections.contains_key("common infos") {
        "common infos"
    } else {
        return Err(IoError::header(path, "[Common Infos]", "section missing"));
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));

    let data_file = ini
        .get(common, "DataFile")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IoError::header(path, "DataFile", "missing"))?;
    let data_path = dir.join(data_file);
    // A stale MarkerFile= (common after BIDS renames) falls back to the sibling .vmrk, as
    // MNE does; when neither exists the marker file is a missing companion.
    let marker_path = match ini.get(common, "MarkerFile").filter(|s| !s.is_empty()) {
        Some(m) => {
            let named = dir.join(m);
            let sibling = path.with_extension("vmrk");
            if !named.is_file() && sibling.is_file() {
                Some(sibling)
            } else {
                Some(named)
            }
        }
        None => None,
    };
    // An .ahdr data file holds one extra trailing channel that MNE drops.
    let ahdr = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ahdr"));

    let data_format = ini.get(common, "DataFormat").unwrap_or("BINARY");
    if !data_format.eq_ignore_ascii_case("BINARY") {
        return Err(IoError::Unsupported {
            path: path.to_path_buf(),
            what: format!("DataFormat={data_format} (only BINARY data files are read)"),
        });
    }
    let orientation = match ini
        .get(common, "DataOrientation")
        .unwrap_or("MULTIPLEXED")
        .to_ascii_uppercase()
        .as_str()
    {
        "MULTIPLEXED" => Orientation::Multiplexed,
        "VECTORIZED" => Orientation::Vectorized,
        other => {
            return Err(IoError::header(
                path,
                "DataOrientation",
                format!("expected MULTIPLEXED or VECTORIZED, got `{other}`"),
            ))
        }
    };
    if let Some(dt) = ini.get(common, "DataType") {
        if !dt.eq_ignore_ascii_case("TIMEDOMAIN") {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                what: format!("DataType={dt} (only TIMEDOMAIN)"),
            });
        }
    }
    let n_channels: usize = parse_num(
        path,
        "NumberOfChannels",
        ini.get(common, "NumberOfChannels"),
    )?;
    if n_channels == 0 {
        return Err(IoError::header(
            path,
            "NumberOfChannels",
            "must be at least 1",
        ));
    }
    let interval_us: f64 = parse_num(
        path,
        "SamplingInterval",
        ini.get(common, "SamplingInterval"),
    )?;
    if !(interval_us.is_finite() && interval_us > 0.0) {
        return Err(IoError::header(
            path,
            "SamplingInterval",
            format!("must be a positive number of microseconds, got {interval_us}"),
        ));
    }
    let sfreq_hz = 1e6 / interval_us;

    let format = match ini.get("binary infos", "BinaryFormat") {
        Some(f) => match f.to_ascii_uppercase().as_str() {
            "INT_16" => SampleFormat::Int16,
            "INT_32" => SampleFormat::Int32,
            "IEEE_FLOAT_32" => SampleFormat::Float32,
            other => {
                return Err(IoError::Unsupported {
                    path: path.to_path_buf(),
                    what: format!(
                        "BinaryFormat={other} (INT_16, INT_32 and IEEE_FLOAT_32 are read)"
                    ),
                })
            }
        },
        None => return Err(IoError::header(path, "BinaryFormat", "missing")),
    };
    let big_endian = ini
        .get("binary infos", "UseBigEndianOrder")
        .is_some_and(|v| v.eq_ignore_ascii_case("YES"));

    // Channels: Ch<n>=<name>,<reference>,<resolution>,<unit>
    let listed = ini.section("channel infos").len();
    if n_channels > listed {
        return Err(IoError::header(
            path,
            format!("[Channel Infos] Ch{}", listed + 1),
            format!("missing (NumberOfChannels = {n_channels} but {listed} channels are listed)"),
        ));
    }
    let mut names: Vec<Option<(String, f64, String)>> = vec![None; n_channels];
    for (key, value) in ini.section("channel infos") {
        let Some(num) = key
            .get(..2)
            .filter(|p| p.eq_ignore_ascii_case("ch"))
            .and(key.get(2..))
        else {
            continue;
        };
        let idx: usize = num.parse().map_err(|_| {
            IoError::header(
                path,
                format!("[Channel Infos] {key}"),
                "not of the form Ch<n>",
            )
        })?;
        if idx == 0 || idx > n_channels {
            return Err(IoError::header(
                path,
                format!("[Channel Infos] {key}"),
                format!("channel number outside 1..={n_channels} (NumberOfChannels)"),
            ));
        }
        let mut parts: Vec<String> = value.split(',').map(|s| s.to_string()).collect();
        // Older files have no unit, PyCorder writes an empty one: both mean µV.
        let unit_given = parts.len() >= 4;
        if parts.len() < 4 {
            parts.resize(3, String::new());
            parts.push("µV".into());
        } else if parts[3].trim().is_empty() {
            parts[3] = "µV".into();
        }
        let name = parts[0].replace("\\1", ",");
        let unit = parts[3].replace('\u{c2}', "").trim().to_string();
        let resolution = if parts[2].trim().is_empty() {
            // EEGLAB's truncated headers give neither resolution nor unit.
            if unit_given {
                1.0
            } else {
                1e-6
            }
        } else {
            parts[2].trim().parse::<f64>().map_err(|_| {
                IoError::header(
                    path,
                    format!("[Channel Infos] {key} resolution"),
                    format!("not a number: `{}`", parts[2]),
                )
            })?
        };
        if !resolution.is_finite() {
            return Err(IoError::header(
                path,
                format!("[Channel Infos] {key} resolution"),
                "not finite",
            ));
        }
        names[idx - 1] = Some((name, resolution, unit));
    }
    let mut channels = Vec::with_capacity(n_channels);
    let mut cal = Vec::with_capacity(n_channels);
    for (i, c) in names.into_iter().enumerate() {
        let (name, resolution, unit) = c.ok_or_else(|| {
            IoError::header(
                path,
                format!("[Channel Infos] Ch{}", i + 1),
                "missing (NumberOfChannels says it exists)",
            )
        })?;
        let (scale, si_unit, is_voltage) = unit_scale(&unit);
        let kind = if EOG_NAMES.contains(&name.as_str()) {
            ChannelKind::Eog
        } else if is_voltage {
            ChannelKind::Eeg
        } else {
            ChannelKind::Misc
        };
        let mut ch = ChannelInfo::new(name, kind, si_unit);
        ch.standard_name = standard_name(&ch.name, kind);
        channels.push(ch);
        cal.push(resolution * scale);
    }

    let data_points = match ini.get(common, "DataPoints") {
        Some(dp) => Some(parse_num::<u64>(path, "DataPoints", Some(dp))?),
        None => None,
    };
    Ok(VhdrHeader {
        data_path,
        marker_path,
        ahdr,
        n_channels,
        sfreq_hz,
        format,
        orientation,
        big_endian,
        channels,
        cal,
        data_points,
    })
}

impl BrainVisionReader {
    /// Opens a `.vhdr` (or `.ahdr`) header and its companions.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let bytes = read_file(path, path)?;
        let VhdrHeader {
            data_path,
            marker_path,
            ahdr,
            n_channels,
            sfreq_hz,
            format,
            orientation,
            big_endian,
            channels,
            cal,
            data_points,
        } = parse_vhdr(path, &bytes)?;
        // Data file and its size.
        let file = File::open(&data_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                IoError::MissingCompanion {
                    path: path.to_path_buf(),
                    companion: data_path.clone(),
                }
            } else {
                IoError::io(&data_path, e)
            }
        })?;
        let size = file
            .metadata()
            .map_err(|e| IoError::io(&data_path, e))?
            .len();
        let n_file_channels = n_channels + usize::from(ahdr);
        let frame = (n_file_channels * format.bytes()) as u64;
        if size % frame != 0 {
            return Err(IoError::Truncated {
                path: data_path.clone(),
                what: format!(
                    "data file is not a whole number of samples of {n_file_channels} channels x {} bytes",
                    format.bytes()
                ),
                expected: (size / frame + 1) * frame,
                got: size,
            });
        }
        let n_times = usize::try_from(size / frame).map_err(|_| {
            IoError::header(
                &data_path,
                "file size",
                "too many samples for this platform",
            )
        })?;
        if let Some(declared) = data_points {
            if declared != n_times as u64 {
                return Err(IoError::Truncated {
                    path: data_path.clone(),
                    what: format!("DataPoints={declared} in {}", path.display()),
                    expected: declared * frame,
                    got: size,
                });
            }
        }

        // Markers.
        let mut annotations = Vec::new();
        let mut meas_date = None;
        if let Some(mp) = &marker_path {
            let mbytes = read_file(mp, path)?;
            let markers = parse_markers(mp, &mbytes)?;
            // The leading "New Segment" marker only carries the recording time (MNE skips it).
            let skip = usize::from(markers.first().is_some_and(|m| m.kind == "New Segment"));
            for (i, m) in markers.iter().enumerate() {
                if m.kind == "New Segment" && meas_date.is_none() {
                    if let Some(d) = m.date.as_deref().filter(|d| d.len() == 20) {
                        meas_date = marker_date_to_rfc3339(d);
                    }
                }
                if i < skip {
                    continue;
                }
                annotations.push(Annotation {
                    onset_s: (m.position - 1) as f64 / sfreq_hz,
                    duration_s: m.points as f64 / sfreq_hz,
                    description: format!("{}/{}", m.kind, m.description),
                });
            }
        }

        let mut info = Info::new(Modality::Eeg, sfreq_hz, channels);
        info.meas_date = meas_date;
        info.provenance = Provenance {
            source_path: path.display().to_string(),
            source_sha256: sha256_file(path)?,
            reader: NAME.to_string(),
            reader_version: crate::READER_VERSION.to_string(),
        };
        info.metadata
            .insert("brainvision.binary_format".into(), format!("{format:?}"));
        Ok(BrainVisionReader {
            data_path,
            file,
            info,
            annotations,
            n_times,
            format,
            orientation,
            big_endian,
            cal,
            n_file_channels,
        })
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| IoError::io(&self.data_path, e))?;
        self.file.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                IoError::Truncated {
                    path: self.data_path.clone(),
                    what: "data file shrank while reading".into(),
                    expected: offset + buf.len() as u64,
                    got: offset,
                }
            } else {
                IoError::io(&self.data_path, e)
            }
        })
    }
}

/// Checks a segment request against the recording and the output buffer.
pub(crate) fn check_segment(
    path: &Path,
    start: usize,
    stop: usize,
    n_times: usize,
    n_channels: usize,
    out_len: usize,
) -> Result<usize, IoError> {
    if start > stop || stop > n_times || n_channels.checked_mul(stop - start) != Some(out_len) {
        return Err(IoError::Segment {
            path: path.to_path_buf(),
            start,
            stop,
            n_times,
        });
    }
    Ok(stop - start)
}

impl RawReader for BrainVisionReader {
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
        let len = check_segment(&self.data_path, start, stop, self.n_times, nc, out.len())?;
        if len == 0 {
            return Ok(());
        }
        let bps = self.format.bytes();
        match self.orientation {
            Orientation::Multiplexed => {
                // Read in blocks of samples to bound memory.
                let frame = self.n_file_channels * bps;
                let block = (1 << 20) / frame.max(1) + 1;
                let mut buf = Vec::new();
                let mut t0 = 0;
                while t0 < len {
                    let n = block.min(len - t0);
                    buf.resize(n * frame, 0);
                    self.read_exact_at(((start + t0) * frame) as u64, &mut buf)?;
                    for t in 0..n {
                        for c in 0..nc {
                            let o = t * frame + c * bps;
                            let v = self.format.decode(&buf[o..o + bps], self.big_endian);
                            out[c * len + t0 + t] = (v * self.cal[c]) as f32;
                        }
                    }
                    t0 += n;
                }
            }
            Orientation::Vectorized => {
                let mut buf = vec![0u8; len * bps];
                for c in 0..nc {
                    let offset = ((c * self.n_times + start) * bps) as u64;
                    self.read_exact_at(offset, &mut buf)?;
                    for t in 0..len {
                        let v = self
                            .format
                            .decode(&buf[t * bps..(t + 1) * bps], self.big_endian);
                        out[c * len + t] = (v * self.cal[c]) as f32;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Entry point for the format table.
pub fn open(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    Ok(Box::new(BrainVisionReader::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_dates() {
        assert_eq!(marker_date_to_rfc3339("00000000000000000000"), None);
        assert_eq!(
            marker_date_to_rfc3339("20250802173116615995").as_deref(),
            Some("2025-08-02T17:31:16.615995+00:00")
        );
        assert_eq!(marker_date_to_rfc3339("garbage"), None);
    }

    #[test]
    fn latin1_fallback() {
        let s = decode_text(b"Codepage=UTF-8\nx=\xb5V\n");
        assert!(s.contains("µV"));
        let s = decode_text("Codepage=UTF-8\nx=µV\n".as_bytes());
        assert!(s.contains("µV"));
    }

    #[test]
    fn ini_stops_at_comment() {
        let ini = parse_ini("head\n[Common Infos]\nA=1\n; c\n[Comment]\nB=2\n");
        assert_eq!(ini.get("common infos", "a"), Some("1"));
        assert_eq!(ini.get("comment", "B"), None);
    }
}
