//! FIF raw files (Neuromag/Elekta/MEGIN, and CTF / KIT data saved by MNE): `.fif`, `_raw.fif`,
//! and gzip-compressed `.fif.gz`.
//!
//! A FIF file is a chain of tags (big-endian header: kind, type, size, next) nested into blocks
//! by `FIFF_BLOCK_START` / `FIFF_BLOCK_END`. This reader walks the chain (following `next`
//! pointers), builds the block tree, reads the measurement info (`FIFF_NCHAN`, `FIFF_SFREQ`,
//! `FIFF_CH_INFO`, `FIFF_MEAS_DATE`, bad channels) and indexes the raw data buffers of the first
//! raw block (`FIFFB_RAW_DATA`, `FIFFB_CONTINUOUS_DATA` or MaxShield `FIFFB_IAS_RAW_DATA`) as
//! MNE's `read_raw_fif` does: `FIFF_FIRST_SAMPLE`, an initial `FIFF_DATA_SKIP` (moves
//! `first_samp`), later skips (read as zeros), buffers of FIFFT_SHORT / DAU_PACK16 / INT / FLOAT
//! / DOUBLE. Samples are calibrated by `range × cal` per channel; CTF compensation is *not*
//! applied (the grade is recorded in `metadata["fif.ctf_comp_grade"]`), as MNE returns the data
//! as stored. Not read: split files (`FIFF_REF_FILE_NAME` continuation), annotations blocks,
//! complex-valued buffers.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Provenance, Unit};

use crate::brainvision::check_segment;
use crate::channel_names::standard_name;
use crate::error::IoError;
use crate::reader::{sha256_file, RawReader};

/// Reader name recorded in provenance.
pub const NAME: &str = "fif";

// Tag kinds.
pub const FIFF_FILE_ID: i32 = 100;
pub const FIFF_BLOCK_ID: i32 = 103;
pub const FIFF_BLOCK_START: i32 = 104;
pub const FIFF_BLOCK_END: i32 = 105;
pub const FIFF_PARENT_BLOCK_ID: i32 = 110;
pub const FIFF_NCHAN: i32 = 200;
pub const FIFF_SFREQ: i32 = 201;
pub const FIFF_CH_INFO: i32 = 203;
pub const FIFF_MEAS_DATE: i32 = 204;
pub const FIFF_FIRST_SAMPLE: i32 = 208;
pub const FIFF_DATA_BUFFER: i32 = 300;
pub const FIFF_DATA_SKIP: i32 = 301;
pub const FIFF_MNE_CH_NAME_LIST: i32 = 3507;
// Block kinds.
pub const FIFFB_MEAS: i32 = 100;
pub const FIFFB_MEAS_INFO: i32 = 101;
pub const FIFFB_RAW_DATA: i32 = 102;
pub const FIFFB_CONTINUOUS_DATA: i32 = 112;
pub const FIFFB_IAS_RAW_DATA: i32 = 119;
pub const FIFFB_MNE_BAD_CHANNELS: i32 = 359;
// Data types.
pub const FIFFT_SHORT: u32 = 2;
pub const FIFFT_INT: u32 = 3;
pub const FIFFT_FLOAT: u32 = 4;
pub const FIFFT_DOUBLE: u32 = 5;
pub const FIFFT_STRING: u32 = 10;
pub const FIFFT_DAU_PACK16: u32 = 16;
pub const FIFFT_CH_INFO_STRUCT: u32 = 30;

/// Nesting limit for blocks.
const MAX_DEPTH: usize = 64;

/// One tag's header and where its data starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagInfo {
    pub kind: i32,
    pub ty: u32,
    pub size: u32,
    /// File offset of the tag header (data starts 16 bytes later).
    pub pos: u64,
}

/// A block of the FIF tree: its kind, its own tags (no block start/end) and child blocks.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub block: i32,
    pub tags: Vec<TagInfo>,
    pub children: Vec<Node>,
}

impl Node {
    /// Every block of kind `block` in this subtree, depth first.
    pub fn find(&self, block: i32) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(n) = stack.pop() {
            if n.block == block {
                out.push(n);
            }
            for c in n.children.iter().rev() {
                stack.push(c);
            }
        }
        out
    }
}

trait Source: Read + Seek + Send {}
impl<T: Read + Seek + Send> Source for T {}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Walks the tag chain of a FIF stream of `len` bytes and returns every tag header in order.
pub fn scan_tags<R: Read + Seek>(
    path: &Path,
    r: &mut R,
    len: u64,
) -> Result<Vec<TagInfo>, IoError> {
    let mut tags = Vec::new();
    let mut pos: u64 = 0;
    let mut seen = HashSet::new();
    let mut hdr = [0u8; 16];
    loop {
        if pos + 16 > len {
            if pos == len && !tags.is_empty() {
                break;
            }
            return Err(IoError::Truncated {
                path: path.to_path_buf(),
                what: format!("FIF tag header at byte {pos}"),
                expected: pos + 16,
                got: len,
            });
        }
        if !seen.insert(pos) {
            return Err(IoError::header(
                path,
                format!("FIF tag at byte {pos}"),
                "tag chain loops back",
            ));
        }
        r.seek(SeekFrom::Start(pos))
            .map_err(|e| IoError::io(path, e))?;
        r.read_exact(&mut hdr).map_err(|e| IoError::io(path, e))?;
        let kind = be_i32(&hdr[0..4]);
        let ty = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let size = be_i32(&hdr[8..12]);
        let next = be_i32(&hdr[12..16]);
        if tags.is_empty() && kind != FIFF_FILE_ID {
            return Err(IoError::header(
                path,
                "FIF file id",
                format!("first tag has kind {kind}, expected FIFF_FILE_ID (100): not a FIF file"),
            ));
        }
        if size < 0 {
            return Err(IoError::header(
                path,
                format!("FIF tag {kind} at byte {pos}"),
                format!("negative size {size}"),
            ));
        }
        let end = pos + 16 + size as u64;
        if end > len {
            return Err(IoError::Truncated {
                path: path.to_path_buf(),
                what: format!("FIF tag {kind} at byte {pos} ({size} bytes of data)"),
                expected: end,
                got: len,
            });
        }
        tags.push(TagInfo {
            kind,
            ty,
            size: size as u32,
            pos,
        });
        pos = match next {
            0 => end,
            -1 => break,
            n if n > 0 => n as u64,
            n => {
                return Err(IoError::header(
                    path,
                    format!("FIF tag {kind} at byte {pos}"),
                    format!("bad next pointer {n}"),
                ))
            }
        };
        if pos == len {
            break;
        }
    }
    Ok(tags)
}

fn read_tag_data<R: Read + Seek>(path: &Path, r: &mut R, t: &TagInfo) -> Result<Vec<u8>, IoError> {
    r.seek(SeekFrom::Start(t.pos + 16))
        .map_err(|e| IoError::io(path, e))?;
    let mut buf = vec![0u8; t.size as usize];
    r.read_exact(&mut buf).map_err(|e| IoError::io(path, e))?;
    Ok(buf)
}

/// Builds the block tree from the tag list (block ids are read from the start tags' data).
pub fn build_tree<R: Read + Seek>(
    path: &Path,
    r: &mut R,
    tags: &[TagInfo],
) -> Result<Node, IoError> {
    let mut stack: Vec<Node> = vec![Node {
        block: 0,
        ..Default::default()
    }];
    for t in tags {
        match t.kind {
            FIFF_BLOCK_START | FIFF_BLOCK_END => {
                let d = read_tag_data(path, r, t)?;
                if d.len() < 4 {
                    return Err(IoError::header(
                        path,
                        format!("FIF block tag at byte {}", t.pos),
                        "no block kind",
                    ));
                }
                let block = be_i32(&d);
                if t.kind == FIFF_BLOCK_START {
                    if stack.len() > MAX_DEPTH {
                        return Err(IoError::header(
                            path,
                            format!("FIF block at byte {}", t.pos),
                            "blocks nested too deep",
                        ));
                    }
                    stack.push(Node {
                        block,
                        ..Default::default()
                    });
                } else {
                    if stack.len() < 2 {
                        return Err(IoError::header(
                            path,
                            format!("FIF block end at byte {}", t.pos),
                            "ends a block that was never started",
                        ));
                    }
                    let node = stack.pop().unwrap_or_default();
                    if node.block != block {
                        return Err(IoError::header(
                            path,
                            format!("FIF block end at byte {}", t.pos),
                            format!("ends block {block} but block {} is open", node.block),
                        ));
                    }
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(node);
                    }
                }
            }
            _ => {
                if let Some(n) = stack.last_mut() {
                    n.tags.push(*t);
                }
            }
        }
    }
    // Unclosed blocks (a file cut short after its data) are attached as they are.
    while stack.len() > 1 {
        let node = stack.pop().unwrap_or_default();
        if let Some(parent) = stack.last_mut() {
            parent.children.push(node);
        }
    }
    Ok(stack.pop().unwrap_or_default())
}

/// One entry of the raw data index.
#[derive(Debug, Clone, Copy)]
struct Buffer {
    /// First sample (relative to the first sample of the recording).
    first: usize,
    nsamp: usize,
    /// `None` for a skip (zeros).
    tag: Option<TagInfo>,
}

/// An opened FIF raw file.
pub struct FifReader {
    path: PathBuf,
    source: Box<dyn Source>,
    info: Info,
    annotations: Vec<Annotation>,
    n_times: usize,
    buffers: Vec<Buffer>,
    /// Per channel: range × cal.
    cal: Vec<f64>,
    /// MNE's `first_samp` (samples before this file's first sample since acquisition start).
    pub first_samp: i64,
}

fn bytes_per_sample(ty: u32) -> Option<usize> {
    match ty {
        FIFFT_SHORT | FIFFT_DAU_PACK16 => Some(2),
        FIFFT_INT | FIFFT_FLOAT => Some(4),
        FIFFT_DOUBLE => Some(8),
        _ => None,
    }
}

fn unit_of(code: i32) -> Unit {
    match code {
        107 => Unit::Volt,
        112 => Unit::Tesla,
        201 => Unit::TeslaPerMeter,
        -1 | 0 => Unit::Arbitrary,
        6 => Unit::Other("M".into()),
        110 => Unit::Other("S".into()),
        114 => Unit::Other("°C".into()),
        2 => Unit::Other("s".into()),
        210 => Unit::Other("px".into()),
        other => Unit::Other(format!("FIFF unit {other}")),
    }
}

fn kind_of(kind: i32, unit: i32) -> ChannelKind {
    match kind {
        1 => {
            if unit == 201 {
                ChannelKind::MegGrad
            } else {
                ChannelKind::MegMag
            }
        }
        301 => ChannelKind::MegRef,
        2 => ChannelKind::Eeg,
        3 => ChannelKind::Stim,
        202 => ChannelKind::Eog,
        302 => ChannelKind::Emg,
        402 => ChannelKind::Ecg,
        602 => ChannelKind::Resp,
        802 => ChannelKind::Seeg,
        902 => ChannelKind::Ecog,
        _ => ChannelKind::Misc,
    }
}

/// Days since 1970-01-01 → (year, month, day) (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix seconds + microseconds → RFC 3339 UTC, formatted as Python's `isoformat()`.
pub(crate) fn unix_to_rfc3339(secs: i64, usecs: i64) -> String {
    let total_us = secs as i128 * 1_000_000 + usecs as i128;
    let s = total_us.div_euclid(1_000_000) as i64;
    let us = total_us.rem_euclid(1_000_000) as i64;
    let (y, mo, d) = civil_from_days(s.div_euclid(86_400));
    let sod = s.rem_euclid(86_400);
    let (h, mi, se) = (sod / 3600, (sod / 60) % 60, sod % 60);
    if us == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}+00:00")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{us:06}+00:00")
    }
}

impl FifReader {
    /// Opens a `.fif` file, or a gzip-compressed `.fif.gz` (decompressed into memory).
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let gz = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(".gz"));
        let sha = sha256_file(path)?;
        let f = File::open(path).map_err(|e| IoError::io(path, e))?;
        if gz {
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(f)
                .read_to_end(&mut bytes)
                .map_err(|e| IoError::header(path, "gzip stream", e.to_string()))?;
            let len = bytes.len() as u64;
            Self::from_source(path, Box::new(Cursor::new(bytes)), len, sha)
        } else {
            let len = f.metadata().map_err(|e| IoError::io(path, e))?.len();
            Self::from_source(path, Box::new(std::io::BufReader::new(f)), len, sha)
        }
    }

    /// Reads an (uncompressed) FIF file held in memory; `path` only names it in errors and
    /// provenance.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, IoError> {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let len = bytes.len() as u64;
        Self::from_source(path, Box::new(Cursor::new(bytes)), len, sha)
    }

    fn from_source(
        path: &Path,
        mut source: Box<dyn Source>,
        len: u64,
        sha: String,
    ) -> Result<Self, IoError> {
        let tags = scan_tags(path, &mut source, len)?;
        let tree = build_tree(path, &mut source, &tags)?;

        let meas = tree
            .find(FIFFB_MEAS)
            .into_iter()
            .next()
            .ok_or_else(|| IoError::header(path, "FIFFB_MEAS", "no measurement block"))?;
        let meas_info = meas
            .find(FIFFB_MEAS_INFO)
            .into_iter()
            .next()
            .ok_or_else(|| IoError::header(path, "FIFFB_MEAS_INFO", "no measurement info block"))?;

        let mut nchan: Option<usize> = None;
        let mut sfreq: Option<f64> = None;
        let mut meas_date = None;
        let mut chs: Vec<(ChannelInfo, f64, i32, i32)> = Vec::new(); // info, cal, kind, coil
        for t in &meas_info.tags {
            match t.kind {
                FIFF_NCHAN => {
                    let d = read_tag_data(path, &mut source, t)?;
                    let n = d
                        .get(..4)
                        .map(be_i32)
                        .ok_or_else(|| IoError::header(path, "FIFF_NCHAN", "empty"))?;
                    nchan = Some(usize::try_from(n).map_err(|_| {
                        IoError::header(path, "FIFF_NCHAN", format!("negative: {n}"))
                    })?);
                }
                FIFF_SFREQ => {
                    let d = read_tag_data(path, &mut source, t)?;
                    let v = match (t.ty, d.len()) {
                        (FIFFT_DOUBLE, 8..) => {
                            f64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
                        }
                        (_, 4..) => f32::from_be_bytes([d[0], d[1], d[2], d[3]]) as f64,
                        _ => return Err(IoError::header(path, "FIFF_SFREQ", "empty")),
                    };
                    if !(v.is_finite() && v > 0.0) {
                        return Err(IoError::header(
                            path,
                            "FIFF_SFREQ",
                            format!("must be positive, got {v}"),
                        ));
                    }
                    sfreq = Some(v);
                }
                FIFF_MEAS_DATE => {
                    let d = read_tag_data(path, &mut source, t)?;
                    if d.len() >= 8 {
                        let (secs, usecs) = (be_i32(&d[0..4]), be_i32(&d[4..8]));
                        // (0, 2^31 - 1) is FIF's "no date".
                        if (secs, usecs) != (0, i32::MAX) {
                            meas_date = Some(unix_to_rfc3339(secs as i64, usecs as i64));
                        }
                    }
                }
                FIFF_CH_INFO => {
                    if t.ty != FIFFT_CH_INFO_STRUCT || t.size < 96 {
                        return Err(IoError::header(
                            path,
                            format!("FIFF_CH_INFO #{}", chs.len() + 1),
                            format!(
                                "type {} / {} bytes, expected a 96-byte channel info struct",
                                t.ty, t.size
                            ),
                        ));
                    }
                    let d = read_tag_data(path, &mut source, t)?;
                    let kind = be_i32(&d[8..12]);
                    let range = f32::from_be_bytes([d[12], d[13], d[14], d[15]]) as f64;
                    let cal = f32::from_be_bytes([d[16], d[17], d[18], d[19]]) as f64;
                    let coil = be_i32(&d[20..24]);
                    let loc: Vec<f64> = (0..3)
                        .map(|i| {
                            let o = 24 + 4 * i;
                            f32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]) as f64
                        })
                        .collect();
                    let unit = be_i32(&d[72..76]);
                    let raw_name = &d[80..96];
                    let end = raw_name.iter().position(|&b| b == 0).unwrap_or(16);
                    let name: String = raw_name[..end].iter().map(|&b| b as char).collect();
                    let ck = kind_of(kind, unit);
                    let mut ch = ChannelInfo::new(name, ck, unit_of(unit));
                    ch.standard_name = standard_name(&ch.name, ck);
                    if loc.iter().all(|v| v.is_finite()) && loc.iter().any(|&v| v != 0.0) {
                        ch.position = Some([loc[0], loc[1], loc[2]]);
                    }
                    chs.push((ch, range * cal, kind, coil));
                }
                _ => {}
            }
        }
        // Without FIFF_MEAS_DATE, MNE takes the date of the most specific id: the measurement
        // info's parent id, its id, the measurement block's id, its parent id, the file id.
        if meas_date.is_none() {
            let candidates = [
                (meas_info, FIFF_PARENT_BLOCK_ID),
                (meas_info, FIFF_BLOCK_ID),
                (meas, FIFF_BLOCK_ID),
                (meas, FIFF_PARENT_BLOCK_ID),
                (&tree, FIFF_FILE_ID),
            ];
            for (node, kind) in candidates {
                if let Some(t) = node.tags.iter().find(|t| t.kind == kind) {
                    let d = read_tag_data(path, &mut source, t)?;
                    if d.len() >= 20 {
                        let (secs, usecs) = (be_i32(&d[12..16]), be_i32(&d[16..20]));
                        if (secs, usecs) != (0, i32::MAX) {
                            meas_date = Some(unix_to_rfc3339(secs as i64, usecs as i64));
                        }
                    }
                    break;
                }
            }
        }
        let nchan = nchan.ok_or_else(|| IoError::header(path, "FIFF_NCHAN", "missing"))?;
        let sfreq = sfreq.ok_or_else(|| IoError::header(path, "FIFF_SFREQ", "missing"))?;
        if nchan == 0 || chs.len() != nchan {
            return Err(IoError::header(
                path,
                "FIFF_CH_INFO",
                format!("{} channel info tags for FIFF_NCHAN = {nchan}", chs.len()),
            ));
        }

        // Bad channels.
        let mut bads: Vec<String> = Vec::new();
        for b in meas.find(FIFFB_MNE_BAD_CHANNELS) {
            for t in b
                .tags
                .iter()
                .filter(|t| t.kind == FIFF_MNE_CH_NAME_LIST && t.ty == FIFFT_STRING)
            {
                let d = read_tag_data(path, &mut source, t)?;
                bads.extend(
                    String::from_utf8_lossy(&d)
                        .split(':')
                        .map(|s| s.trim_end_matches('\0').to_string())
                        .filter(|s| !s.is_empty()),
                );
            }
        }

        // Raw data index.
        let raw = [FIFFB_RAW_DATA, FIFFB_CONTINUOUS_DATA, FIFFB_IAS_RAW_DATA]
            .iter()
            .find_map(|&b| meas.find(b).into_iter().next())
            .ok_or_else(|| {
                IoError::header(
                    path,
                    "FIFFB_RAW_DATA",
                    "no raw data block (not a raw file?)",
                )
            })?;
        let dir = &raw.tags;
        let mut k = 0;
        let mut first_samp: i64 = 0;
        let mut first_skip: i64 = 0;
        let read_int =
            |src: &mut Box<dyn Source>, t: &TagInfo, what: &str| -> Result<i64, IoError> {
                let d = read_tag_data(path, src, t)?;
                d.get(..4)
                    .map(|b| be_i32(b) as i64)
                    .ok_or_else(|| IoError::header(path, what, "empty"))
            };
        if dir.get(k).is_some_and(|t| t.kind == FIFF_FIRST_SAMPLE) {
            first_samp = read_int(&mut source, &dir[k], "FIFF_FIRST_SAMPLE")?;
            k += 1;
        }
        if dir.get(k).is_some_and(|t| t.kind == FIFF_DATA_SKIP) {
            first_skip = read_int(&mut source, &dir[k], "FIFF_DATA_SKIP")?;
            k += 1;
        }
        let mut buffers = Vec::new();
        let mut nskip: i64 = 0;
        let mut next: usize = 0;
        for t in &dir[k.min(dir.len())..] {
            match t.kind {
                FIFF_DATA_BUFFER => {
                    let bps = bytes_per_sample(t.ty).ok_or_else(|| IoError::Unsupported {
                        path: path.to_path_buf(),
                        what: format!("FIF data buffer of type {} at byte {}", t.ty, t.pos),
                    })?;
                    let frame = bps * nchan;
                    if !(t.size as usize).is_multiple_of(frame) {
                        return Err(IoError::header(
                            path,
                            format!("FIFF_DATA_BUFFER at byte {}", t.pos),
                            format!("{} bytes is not a whole number of samples of {nchan} channels x {bps} bytes", t.size),
                        ));
                    }
                    let nsamp = t.size as usize / frame;
                    if first_skip > 0 {
                        first_samp += nsamp as i64 * first_skip;
                        first_skip = 0;
                    }
                    if nskip > 0 {
                        let n = usize::try_from(nskip)
                            .ok()
                            .and_then(|s| s.checked_mul(nsamp))
                            .filter(|&n| n < (1 << 40))
                            .ok_or_else(|| {
                                IoError::header(
                                    path,
                                    "FIFF_DATA_SKIP",
                                    format!("absurd skip {nskip}"),
                                )
                            })?;
                        buffers.push(Buffer {
                            first: next,
                            nsamp: n,
                            tag: None,
                        });
                        next += n;
                        nskip = 0;
                    }
                    buffers.push(Buffer {
                        first: next,
                        nsamp,
                        tag: Some(*t),
                    });
                    next += nsamp;
                }
                FIFF_DATA_SKIP => {
                    nskip = read_int(&mut source, t, "FIFF_DATA_SKIP")?;
                }
                _ => {}
            }
        }
        if buffers.is_empty() {
            return Err(IoError::header(
                path,
                "FIFF_DATA_BUFFER",
                "the raw data block holds no data buffers",
            ));
        }

        // CTF compensation grade (MNE: coil_type >> 16 of the MEG channels).
        let grades: HashSet<i32> = chs.iter().filter(|c| c.2 == 1).map(|c| c.3 >> 16).collect();

        let mut channels = Vec::with_capacity(nchan);
        let mut cal = Vec::with_capacity(nchan);
        for (mut ch, c, _, _) in chs {
            ch.bad = bads.contains(&ch.name);
            channels.push(ch);
            cal.push(c);
        }
        let modality = if channels
            .iter()
            .any(|c| matches!(c.kind, ChannelKind::MegMag | ChannelKind::MegGrad))
        {
            Modality::Meg
        } else if channels
            .iter()
            .any(|c| matches!(c.kind, ChannelKind::Seeg | ChannelKind::Ecog))
        {
            Modality::Ieeg
        } else {
            Modality::Eeg
        };
        let mut info = Info::new(modality, sfreq, channels);
        info.meas_date = meas_date;
        info.metadata
            .insert("fif.first_samp".into(), first_samp.to_string());
        if grades.len() == 1 {
            if let Some(g) = grades.iter().next() {
                info.metadata
                    .insert("fif.ctf_comp_grade".into(), g.to_string());
            }
        }
        info.provenance = Provenance {
            source_path: path.display().to_string(),
            source_sha256: sha,
            reader: NAME.to_string(),
            reader_version: crate::READER_VERSION.to_string(),
        };
        Ok(FifReader {
            path: path.to_path_buf(),
            source,
            info,
            annotations: Vec::new(),
            n_times: next,
            buffers,
            cal,
            first_samp,
        })
    }
}

impl RawReader for FifReader {
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
        let mut buf = Vec::new();
        for b in &self.buffers {
            let (b0, b1) = (b.first, b.first + b.nsamp);
            if b1 <= start || b0 >= stop {
                continue;
            }
            let s0 = start.max(b0);
            let s1 = stop.min(b1);
            let Some(tag) = b.tag else {
                for c in 0..nc {
                    out[c * len + (s0 - start)..c * len + (s1 - start)].fill(0.0);
                }
                continue;
            };
            let bps = bytes_per_sample(tag.ty).unwrap_or(4);
            let frame = bps * nc;
            buf.resize((s1 - s0) * frame, 0);
            let offset = tag.pos + 16 + ((s0 - b0) * frame) as u64;
            self.source
                .seek(SeekFrom::Start(offset))
                .map_err(|e| IoError::io(&self.path, e))?;
            self.source
                .read_exact(&mut buf)
                .map_err(|e| IoError::io(&self.path, e))?;
            for t in 0..s1 - s0 {
                for c in 0..nc {
                    let o = t * frame + c * bps;
                    let x = &buf[o..o + bps];
                    let v = match tag.ty {
                        FIFFT_SHORT | FIFFT_DAU_PACK16 => i16::from_be_bytes([x[0], x[1]]) as f64,
                        FIFFT_INT => i32::from_be_bytes([x[0], x[1], x[2], x[3]]) as f64,
                        FIFFT_FLOAT => f32::from_be_bytes([x[0], x[1], x[2], x[3]]) as f64,
                        _ => f64::from_be_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]),
                    };
                    out[c * len + (s0 - start) + t] = (v * self.cal[c]) as f32;
                }
            }
        }
        Ok(())
    }
}

/// Entry point for the format table.
pub fn open(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    Ok(Box::new(FifReader::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_like_python_isoformat() {
        assert_eq!(unix_to_rfc3339(0, 104), "1970-01-01T00:00:00.000104+00:00");
        assert_eq!(
            unix_to_rfc3339(1_367_242_560, 0),
            "2013-04-29T13:36:00+00:00"
        );
        assert_eq!(unix_to_rfc3339(951_782_400, 0), "2000-02-29T00:00:00+00:00");
        assert_eq!(unix_to_rfc3339(-1, 0), "1969-12-31T23:59:59+00:00");
    }
}
