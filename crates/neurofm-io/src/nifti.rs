//! NIfTI-1 and NIfTI-2 reader (`.nii`, `.nii.gz`).
//!
//! What it returns matches nibabel 5.x (`img.affine`, `img.get_fdata()`), stored as `f32`:
//!
//! * **Byte order**: detected from `sizeof_hdr` (348 / 540, either byte order); data use the
//!   header's byte order.
//! * **Data types**: uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64.
//!   Complex, RGB and float128 images are refused with [`IoError::Unsupported`].
//! * **Scaling**: `value = raw * scl_slope + scl_inter`, computed in `f64`; as in nibabel a slope
//!   of 0 or a non-finite slope means "no scaling" (slope 1, intercept 0); a finite slope with a
//!   non-finite intercept is an error.
//! * **Affine**: the sform when `sform_code != 0`, else the qform (quaternion, `qfac` from
//!   `pixdim[0]`, 0 read as 1) when `qform_code != 0`, else nibabel's base affine
//!   (`diag(-dx, dy, dz)` centred on the middle voxel).
//! * **TR**: `pixdim[4]` converted with the time bits of `xyzt_units` (s, ms, µs). When the units
//!   say seconds (or are unknown) but the value is above [`TR_MS_THRESHOLD_S`] — e.g. 2000, a
//!   known writer bug (nibabel's example4d.nii.gz) — it is read as milliseconds; the decision is
//!   recorded in `Info.metadata["nifti.tr_decision"]` and printed as a warning on stderr. Images
//!   without a TR (3D images, `pixdim[4] <= 0`) get `sfreq_hz = 0` and `nifti.tr_decision =
//!   "missing"`; give one with [`NiftiOptions::tr_s`].
//! * **Layout**: stored as `[time, x, y, z]` row-major (z fastest). The file is Fortran order
//!   (x fastest), so each volume is transposed on read. Dimensions 5-7 must be 1.
//! * **Segment reads**: for `.nii` the reader seeks to the first requested volume and reads only
//!   `[start, stop)`. For `.nii.gz` the stream is decompressed forward: a read at or after the
//!   current position decompresses (and discards) only the gap, a read before it restarts from
//!   the beginning of the file — so reading volumes in order costs one decompression of the file
//!   in total, reading them backwards costs one per read.
//! * **Bad input**: a header that disagrees with the file size, a truncated or corrupt gzip
//!   stream, an unknown datatype or a bitpix that does not match the datatype all give an error
//!   naming the file and the field. NaN voxels in float images are kept (as nibabel does).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use neurofm_core::{Annotation, Info, Modality};

use crate::error::IoError;
use crate::reader::{read_all_by_segments, LazyHash, RawReader};
use neurofm_core::{Recording, Signal};

/// A TR above this many "seconds" is taken to be milliseconds written with the wrong unit.
pub const TR_MS_THRESHOLD_S: f64 = 100.0;

/// Reader name recorded in provenance.
pub const READER_NAME: &str = "nifti";

/// On-disk element type (NIfTI `datatype` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DataType {
    fn from_code(code: i64) -> Result<Self, String> {
        Ok(match code {
            2 => DataType::U8,
            4 => DataType::I16,
            8 => DataType::I32,
            16 => DataType::F32,
            64 => DataType::F64,
            256 => DataType::I8,
            512 => DataType::U16,
            768 => DataType::U32,
            1024 => DataType::I64,
            1280 => DataType::U64,
            32 | 1792 | 2048 => return Err(format!("complex data (datatype {code})")),
            128 | 2304 => return Err(format!("RGB data (datatype {code})")),
            1536 => return Err("float128 data (datatype 1536)".into()),
            _ => return Err(format!("unknown datatype code {code}")),
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
        }
    }

    /// numpy-style name ("int16", "float32", ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::U16 => "uint16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
        }
    }
}

/// The header fields neurofm uses, from either NIfTI version, widened to 64 bits.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    /// 1 or 2.
    pub version: u8,
    pub big_endian: bool,
    /// `dim[0..8]`.
    pub dim: [i64; 8],
    pub datatype: DataType,
    pub bitpix: i64,
    pub pixdim: [f64; 8],
    /// Byte offset of the data as stored in the header.
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub xyzt_units: i64,
    pub cal_min: f64,
    pub cal_max: f64,
    pub slice_duration: f64,
    pub toffset: f64,
    pub descrip: String,
    pub qform_code: i64,
    pub sform_code: i64,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub magic: String,
}

fn sizes(version: u8) -> (usize, usize) {
    // (header size, minimum data offset of a single-file image)
    if version == 1 {
        (348, 352)
    } else {
        (540, 544)
    }
}

struct Fields<'a> {
    b: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i64 {
        i16::from_le_bytes(self.arr(off)) as i64
    }
    fn i32(&self, off: usize) -> i64 {
        i32::from_le_bytes(self.arr(off)) as i64
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    fn f32(&self, off: usize) -> f64 {
        f32::from_le_bytes(self.arr(off)) as f64
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
    fn text(&self, off: usize, len: usize) -> String {
        let s = &self.b[off..off + len];
        let end = s.iter().position(|&c| c == 0).unwrap_or(len);
        String::from_utf8_lossy(&s[..end]).trim_end().to_string()
    }
}

impl NiftiHeader {
    /// Parses a header from the first bytes of a file (at least 540 bytes for NIfTI-2, 348 for
    /// NIfTI-1; `bytes` may be longer).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, IoError> {
        if bytes.len() < 4 {
            return Err(IoError::Truncated {
                path: path.into(),
                what: "NIfTI header".into(),
                expected: 348,
                got: bytes.len() as u64,
            });
        }
        let mut first = [0u8; 4];
        first.copy_from_slice(&bytes[..4]);
        let le = i32::from_le_bytes(first);
        let be = i32::from_be_bytes(first);
        let (version, big_endian) = match (le, be) {
            (348, _) => (1u8, false),
            (_, 348) => (1, true),
            (540, _) => (2, false),
            (_, 540) => (2, true),
            _ => {
                return Err(IoError::header(
                    path,
                    "sizeof_hdr",
                    format!("is {le} (byte-swapped {be}); a NIfTI file has 348 or 540"),
                ))
            }
        };
        let (hsize, _) = sizes(version);
        if bytes.len() < hsize {
            return Err(IoError::Truncated {
                path: path.into(),
                what: format!("NIfTI-{version} header"),
                expected: hsize as u64,
                got: bytes.len() as u64,
            });
        }
        let f = Fields {
            b: &bytes[..hsize],
            be: big_endian,
        };
        let mut dim = [0i64; 8];
        let mut pixdim = [0f64; 8];
        let mut srow = [[0f64; 4]; 3];
        let h = if version == 1 {
            let magic = f.text(344, 4);
            if magic != "n+1" && magic != "ni1" {
                return Err(IoError::header(
                    path,
                    "magic",
                    format!("is {magic:?}; NIfTI-1 needs \"n+1\" or \"ni1\""),
                ));
            }
            for (i, d) in dim.iter_mut().enumerate() {
                *d = f.i16(40 + 2 * i);
            }
            for (i, p) in pixdim.iter_mut().enumerate() {
                *p = f.f32(76 + 4 * i);
            }
            for (r, row) in srow.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = f.f32(280 + 16 * r + 4 * c);
                }
            }
            let code = f.i16(70);
            NiftiHeader {
                version,
                big_endian,
                dim,
                datatype: DataType::from_code(code)
                    .map_err(|r| IoError::header(path, "datatype", r))?,
                bitpix: f.i16(72),
                pixdim,
                vox_offset: f.f32(108),
                scl_slope: f.f32(112),
                scl_inter: f.f32(116),
                xyzt_units: bytes[123] as i64,
                cal_max: f.f32(124),
                cal_min: f.f32(128),
                slice_duration: f.f32(132),
                toffset: f.f32(136),
                descrip: f.text(148, 80),
                qform_code: f.i16(252),
                sform_code: f.i16(254),
                quatern: [f.f32(256), f.f32(260), f.f32(264)],
                qoffset: [f.f32(268), f.f32(272), f.f32(276)],
                srow,
                magic,
            }
        } else {
            let magic = f.text(4, 4);
            if magic != "n+2" && magic != "ni2" {
                return Err(IoError::header(
                    path,
                    "magic",
                    format!("is {magic:?}; NIfTI-2 needs \"n+2\" or \"ni2\""),
                ));
            }
            for (i, d) in dim.iter_mut().enumerate() {
                *d = f.i64(16 + 8 * i);
            }
            for (i, p) in pixdim.iter_mut().enumerate() {
                *p = f.f64(104 + 8 * i);
            }
            for (r, row) in srow.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = f.f64(400 + 32 * r + 8 * c);
                }
            }
            let code = f.i16(12);
            NiftiHeader {
                version,
                big_endian,
                dim,
                datatype: DataType::from_code(code)
                    .map_err(|r| IoError::header(path, "datatype", r))?,
                bitpix: f.i16(14),
                pixdim,
                vox_offset: f.i64(168) as f64,
                scl_slope: f.f64(176),
                scl_inter: f.f64(184),
                cal_max: f.f64(192),
                cal_min: f.f64(200),
                slice_duration: f.f64(208),
                toffset: f.f64(216),
                descrip: f.text(240, 80),
                qform_code: f.i32(344),
                sform_code: f.i32(348),
                quatern: [f.f64(352), f.f64(360), f.f64(368)],
                qoffset: [f.f64(376), f.f64(384), f.f64(392)],
                srow,
                xyzt_units: f.i32(500),
                magic,
            }
        };
        if h.bitpix != 8 * h.datatype.size() as i64 {
            return Err(IoError::header(
                path,
                "bitpix",
                format!(
                    "is {} but datatype {} has {} bits",
                    h.bitpix,
                    h.datatype.name(),
                    8 * h.datatype.size()
                ),
            ));
        }
        Ok(h)
    }

    /// Number of dimensions (`dim[0]`), checked to be 1..=7.
    fn ndim(&self, path: &Path) -> Result<usize, IoError> {
        let n = self.dim[0];
        if !(1..=7).contains(&n) {
            return Err(IoError::header(
                path,
                "dim[0]",
                format!("is {n}; must be 1..7"),
            ));
        }
        Ok(n as usize)
    }

    /// `(dims [nx, ny, nz], n_volumes)`: dimensions beyond `dim[0]` count as 1; dims 5-7 must be 1.
    pub fn shape(&self, path: &Path) -> Result<([usize; 3], usize), IoError> {
        let ndim = self.ndim(path)?;
        let mut d = [1usize; 7];
        for (i, slot) in d.iter_mut().enumerate().take(ndim) {
            let v = self.dim[i + 1];
            if v < 1 {
                return Err(IoError::header(
                    path,
                    format!("dim[{}]", i + 1),
                    format!("is {v}; must be >= 1"),
                ));
            }
            *slot = usize::try_from(v)
                .map_err(|_| IoError::header(path, format!("dim[{}]", i + 1), "too large"))?;
        }
        if let Some(i) = d[4..].iter().position(|&v| v != 1) {
            return Err(IoError::Unsupported {
                path: path.into(),
                what: format!(
                    "dim[{}] = {} (only 3D and 4D images are read)",
                    i + 5,
                    d[4 + i]
                ),
            });
        }
        Ok(([d[0], d[1], d[2]], d[3]))
    }

    /// `(slope, intercept)` as nibabel applies them (`(1, 0)` when the slope is 0 or not finite).
    pub fn scaling(&self, path: &Path) -> Result<(f64, f64), IoError> {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() {
            return Ok((1.0, 0.0));
        }
        if !self.scl_inter.is_finite() {
            return Err(IoError::header(
                path,
                "scl_inter",
                format!(
                    "is {} with a valid scl_slope {}",
                    self.scl_inter, self.scl_slope
                ),
            ));
        }
        Ok((self.scl_slope, self.scl_inter))
    }

    /// The sform as a 4 × 4 matrix.
    pub fn sform(&self) -> [[f64; 4]; 4] {
        let s = &self.srow;
        [s[0], s[1], s[2], [0.0, 0.0, 0.0, 1.0]]
    }

    /// The qform as nibabel's `get_qform()` computes it.
    pub fn qform(&self, path: &Path) -> Result<[[f64; 4]; 4], IoError> {
        let [b, c, d] = self.quatern;
        // nibabel fillpositive: |w^2| below 3 eps of the stored precision counts as 0.
        let eps = if self.version == 1 {
            f32::EPSILON as f64
        } else {
            f64::EPSILON
        };
        let w2 = 1.0 - (b * b + c * c + d * d);
        let a = if w2.abs() < 3.0 * eps {
            0.0
        } else if w2 < 0.0 {
            return Err(IoError::header(
                path,
                "quatern_b/c/d",
                format!("not a unit quaternion (1 - |bcd|^2 = {w2:e})"),
            ));
        } else {
            w2.sqrt()
        };
        // quat2mat (w, x, y, z) = (a, b, c, d)
        let nq = a * a + b * b + c * c + d * d;
        let r = if nq < f64::EPSILON {
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        } else {
            let s = 2.0 / nq;
            let (x, y, z, w) = (b, c, d, a);
            let (xs, ys, zs) = (x * s, y * s, z * s);
            let (wx, wy, wz) = (w * xs, w * ys, w * zs);
            let (xx, xy, xz) = (x * xs, x * ys, x * zs);
            let (yy, yz, zz) = (y * ys, y * zs, z * zs);
            [
                [1.0 - (yy + zz), xy - wz, xz + wy],
                [xy + wz, 1.0 - (xx + zz), yz - wx],
                [xz - wy, yz + wx, 1.0 - (xx + yy)],
            ]
        };
        let mut vox = [self.pixdim[1], self.pixdim[2], self.pixdim[3]];
        if vox.iter().any(|&v| v < 0.0) {
            return Err(IoError::header(
                path,
                "pixdim[1..4]",
                format!("negative voxel size {vox:?}"),
            ));
        }
        let qfac = if self.pixdim[0] == 0.0 {
            1.0
        } else {
            self.pixdim[0]
        };
        if qfac != 1.0 && qfac != -1.0 {
            return Err(IoError::header(
                path,
                "pixdim[0]",
                format!("qfac is {qfac}; must be 1 or -1"),
            ));
        }
        vox[2] *= qfac;
        let mut out = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                out[i][j] = r[i][j] * vox[j];
            }
            out[i][3] = self.qoffset[i];
        }
        out[3][3] = 1.0;
        Ok(out)
    }

    /// nibabel's base affine: voxel sizes on the diagonal, x flipped, origin at the centre.
    pub fn base_affine(&self, dims: [usize; 3]) -> [[f64; 4]; 4] {
        let ndim = self.dim[0].clamp(0, 3) as usize;
        let mut out = [[0.0; 4]; 4];
        for i in 0..3 {
            let zoom = if i < ndim { self.pixdim[i + 1] } else { 1.0 };
            let zoom = if i == 0 { -zoom } else { zoom };
            let origin = (dims[i] as f64 - 1.0) / 2.0;
            out[i][i] = zoom;
            out[i][3] = -origin * zoom;
        }
        out[3][3] = 1.0;
        out
    }

    /// `img.affine` as nibabel computes it, with the name of the source ("sform", "qform",
    /// "pixdim").
    pub fn affine(
        &self,
        path: &Path,
        dims: [usize; 3],
    ) -> Result<([[f64; 4]; 4], &'static str), IoError> {
        if self.sform_code != 0 {
            Ok((self.sform(), "sform"))
        } else if self.qform_code != 0 {
            Ok((self.qform(path)?, "qform"))
        } else {
            Ok((self.base_affine(dims), "pixdim"))
        }
    }

    /// `(tr_s, decision)`: the repetition time in seconds, if any, and how it was derived.
    pub fn tr(&self, n_volumes: usize) -> (Option<f64>, String) {
        let raw = self.pixdim[4];
        if n_volumes <= 1 && !(raw.is_finite() && raw > 0.0) {
            return (None, "missing (3D image)".into());
        }
        if !(raw.is_finite() && raw > 0.0) {
            return (None, format!("missing (pixdim[4] = {raw})"));
        }
        match self.xyzt_units & 0x38 {
            16 => (Some(raw / 1e3), format!("pixdim[4] = {raw} ms")),
            24 => (Some(raw / 1e6), format!("pixdim[4] = {raw} us")),
            t @ (0 | 8) => {
                let unit = if t == 8 { "s" } else { "unknown units" };
                if raw > TR_MS_THRESHOLD_S {
                    (
                        Some(raw / 1e3),
                        format!(
                            "pixdim[4] = {raw} with {unit} is implausible as seconds; \
                             read as milliseconds (TR = {} s)",
                            raw / 1e3
                        ),
                    )
                } else {
                    (Some(raw), format!("pixdim[4] = {raw} {unit}"))
                }
            }
            other => (
                None,
                format!("missing (time unit code {other} is not a time; pixdim[4] = {raw})"),
            ),
        }
    }
}

/// Options for [`NiftiReader::open_with`].
#[derive(Debug, Clone, Default)]
pub struct NiftiOptions {
    /// Repetition time in seconds; overrides the header (recorded as the decision).
    pub tr_s: Option<f64>,
}

enum Source {
    Plain(File),
    Gz {
        dec: Box<MultiGzDecoder<BufReader<File>>>,
        /// Decompressed bytes consumed so far.
        pos: u64,
    },
}

/// An opened NIfTI image.
pub struct NiftiReader {
    path: PathBuf,
    header: NiftiHeader,
    /// Everything but the provenance hash, known at `open`.
    head_info: Info,
    /// `head_info` plus the hash, built on first use of [`RawReader::info`].
    info: std::sync::OnceLock<Info>,
    hash: LazyHash,
    dims: [usize; 3],
    n_volumes: usize,
    affine: [[f64; 4]; 4],
    slope: f64,
    inter: f64,
    data_offset: u64,
    source: Source,
    buf: Vec<u8>,
}

fn is_gz(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(".gz"))
        .unwrap_or(false)
}

fn open_gz(path: &Path) -> Result<MultiGzDecoder<BufReader<File>>, IoError> {
    let f = File::open(path).map_err(|e| IoError::io(path, e))?;
    Ok(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, f)))
}

/// Reads up to `buf.len()` bytes; returns how many (fewer only at end of stream).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads the header bytes into `head` (540 long): 348, and 192 more when `sizeof_hdr` says
/// NIfTI-2. Reading no further keeps a `.nii.gz` stream before the data (NIfTI-1 data start at
/// byte 352), so reading the data does not restart the decompression.
fn read_head(r: &mut impl Read, head: &mut [u8]) -> std::io::Result<usize> {
    let n = read_full(r, &mut head[..348])?;
    let first = [head[0], head[1], head[2], head[3]];
    if n == 348 && (i32::from_le_bytes(first) == 540 || i32::from_be_bytes(first) == 540) {
        return Ok(n + read_full(r, &mut head[348..540])?);
    }
    Ok(n)
}

fn gz_error(path: &Path, e: std::io::Error) -> IoError {
    IoError::io(
        path,
        std::io::Error::new(e.kind(), format!("gzip stream: {e}")),
    )
}

impl NiftiReader {
    /// Opens a `.nii` or `.nii.gz` file.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        Self::open_with(path, &NiftiOptions::default())
    }

    /// Opens with options.
    pub fn open_with(path: &Path, opts: &NiftiOptions) -> Result<Self, IoError> {
        let gz = is_gz(path);
        let mut head = vec![0u8; 540];
        let (n, mut source) = if gz {
            let mut dec = open_gz(path)?;
            let n = read_head(&mut dec, &mut head).map_err(|e| gz_error(path, e))?;
            (
                n,
                Source::Gz {
                    dec: Box::new(dec),
                    pos: n as u64,
                },
            )
        } else {
            let mut f = File::open(path).map_err(|e| IoError::io(path, e))?;
            let n = read_head(&mut f, &mut head).map_err(|e| IoError::io(path, e))?;
            (n, Source::Plain(f))
        };
        head.truncate(n);
        let header = NiftiHeader::parse(path, &head)?;
        if header.magic.starts_with("ni") {
            return Err(IoError::Unsupported {
                path: path.into(),
                what: format!(
                    "magic {:?}: a .hdr/.img pair; only single-file .nii images are read",
                    header.magic
                ),
            });
        }
        let (dims, n_volumes) = header.shape(path)?;
        let (slope, inter) = header.scaling(path)?;
        let (affine, affine_source) = header.affine(path, dims)?;

        let mut metadata = std::collections::BTreeMap::new();
        let (_, min_offset) = sizes(header.version);
        let vo = header.vox_offset;
        if !(vo.is_finite() && vo >= 0.0 && vo.fract() == 0.0) {
            return Err(IoError::header(
                path,
                "vox_offset",
                format!("is {vo}; must be a non-negative integer"),
            ));
        }
        let data_offset = if (vo as u64) < min_offset as u64 {
            metadata.insert(
                "nifti.vox_offset_decision".into(),
                format!("vox_offset {vo} is below {min_offset} for a single-file image; data read at {min_offset} (as nibabel does)"),
            );
            min_offset as u64
        } else {
            vo as u64
        };

        let vox_per_vol = dims[0]
            .checked_mul(dims[1])
            .and_then(|v| v.checked_mul(dims[2]))
            .ok_or_else(|| IoError::header(path, "dim", "volume size overflows"))?;
        let vol_bytes = vox_per_vol
            .checked_mul(header.datatype.size())
            .ok_or_else(|| IoError::header(path, "dim", "volume size overflows"))?;
        let total = (vol_bytes as u64)
            .checked_mul(n_volumes as u64)
            .and_then(|v| v.checked_add(data_offset))
            .ok_or_else(|| IoError::header(path, "dim", "image size overflows"))?;
        if let Source::Plain(f) = &source {
            let len = f.metadata().map_err(|e| IoError::io(path, e))?.len();
            if len < total {
                return Err(IoError::Truncated {
                    path: path.into(),
                    what: format!(
                        "image data (dim {:?} x {} = {} bytes from offset {data_offset})",
                        &header.dim[1..=header.dim[0].clamp(1, 7) as usize],
                        header.datatype.name(),
                        total - data_offset
                    ),
                    expected: total,
                    got: len,
                });
            }
        }

        let (tr_s, decision) = match opts.tr_s {
            Some(t) if t.is_finite() && t > 0.0 => {
                (Some(t), format!("given by the caller ({t} s)"))
            }
            Some(t) => {
                return Err(IoError::header(
                    path,
                    "tr_s (option)",
                    format!("is {t}; must be > 0"),
                ))
            }
            None => header.tr(n_volumes),
        };
        if decision.contains("implausible") {
            eprintln!("warning: {}: {decision}", path.display());
        }
        metadata.insert("nifti.tr_decision".into(), decision);
        metadata.insert("nifti.version".into(), header.version.to_string());
        metadata.insert(
            "nifti.byte_order".into(),
            if header.big_endian { "big" } else { "little" }.into(),
        );
        metadata.insert("nifti.datatype".into(), header.datatype.name().into());
        metadata.insert("nifti.scl_slope".into(), slope.to_string());
        metadata.insert("nifti.scl_inter".into(), inter.to_string());
        metadata.insert("nifti.affine_source".into(), affine_source.into());
        metadata.insert("nifti.qform_code".into(), header.qform_code.to_string());
        metadata.insert("nifti.sform_code".into(), header.sform_code.to_string());
        metadata.insert(
            "nifti.zooms".into(),
            format!(
                "[{}, {}, {}]",
                header.pixdim[1], header.pixdim[2], header.pixdim[3]
            ),
        );
        metadata.insert("nifti.xyzt_units".into(), header.xyzt_units.to_string());
        if !header.descrip.is_empty() {
            metadata.insert("nifti.descrip".into(), header.descrip.clone());
        }

        let mut info = Info::new(
            Modality::FmriVolume,
            tr_s.map(|t| 1.0 / t).unwrap_or(0.0),
            Vec::new(),
        );
        info.metadata = metadata;
        info.provenance.source_path = path.display().to_string();
        info.provenance.reader = READER_NAME.into();
        info.provenance.reader_version = crate::READER_VERSION.into();

        // Position a plain file at the data; the gz stream stays where it is.
        if let Source::Plain(f) = &mut source {
            f.seek(SeekFrom::Start(data_offset))
                .map_err(|e| IoError::io(path, e))?;
        }
        Ok(NiftiReader {
            path: path.into(),
            header,
            head_info: info,
            info: std::sync::OnceLock::new(),
            hash: LazyHash::new(path),
            dims,
            n_volumes,
            affine,
            slope,
            inter,
            data_offset,
            source,
            buf: Vec::new(),
        })
    }

    pub fn header(&self) -> &NiftiHeader {
        &self.header
    }

    /// `[nx, ny, nz]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    pub fn affine(&self) -> [[f64; 4]; 4] {
        self.affine
    }

    /// `(slope, intercept)` applied to the raw values.
    pub fn scaling(&self) -> (f64, f64) {
        (self.slope, self.inter)
    }

    fn decoding(&self) -> Decoding {
        Decoding {
            dt: self.header.datatype,
            be: self.header.big_endian,
            slope: self.slope,
            inter: self.inter,
        }
    }

    fn vol_bytes(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2] * self.header.datatype.size()
    }

    /// Positions the source at the first byte of volume `start`.
    fn seek_to(&mut self, start: usize) -> Result<(), IoError> {
        let target = self.data_offset + (start as u64) * self.vol_bytes() as u64;
        match &mut self.source {
            Source::Plain(f) => {
                f.seek(SeekFrom::Start(target))
                    .map_err(|e| IoError::io(&self.path, e))?;
            }
            Source::Gz { dec, pos } => {
                if *pos > target {
                    **dec = open_gz(&self.path)?;
                    *pos = 0;
                }
                let gap = target - *pos;
                let skipped = std::io::copy(&mut dec.by_ref().take(gap), &mut std::io::sink())
                    .map_err(|e| gz_error(&self.path, e))?;
                *pos += skipped;
                if skipped < gap {
                    return Err(IoError::Truncated {
                        path: self.path.clone(),
                        what: "decompressed image data".into(),
                        expected: target,
                        got: *pos,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads volumes `[start, stop)` as raw Fortran-order `f32` values, scaled, into `out`
    /// (`(stop - start) * nx * ny * nz` values, x fastest) — the layout nibabel's `get_fdata`
    /// has in memory, without the transpose.
    pub fn read_fortran(
        &mut self,
        start: usize,
        stop: usize,
        out: &mut [f32],
    ) -> Result<(), IoError> {
        self.check_segment(start, stop, out.len())?;
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.read_raw(start, stop, &mut buf);
        if r.is_ok() {
            decode(&buf, self.decoding(), out);
        }
        self.buf = buf;
        r
    }

    /// Reads the file bytes of volumes `[start, stop)` into `buf` (resized to fit).
    fn read_raw(&mut self, start: usize, stop: usize, buf: &mut Vec<u8>) -> Result<(), IoError> {
        buf.resize((stop - start) * self.vol_bytes(), 0);
        self.seek_to(start)?;
        self.fill(start, buf)
    }

    /// Fills `buf` with the next bytes of the image data, which start at volume `start`.
    fn fill(&mut self, start: usize, buf: &mut [u8]) -> Result<(), IoError> {
        let at = DataAt {
            path: &self.path,
            data_offset: self.data_offset,
            vol_bytes: self.vol_bytes(),
        };
        at.fill(&mut self.source, start, buf)
    }

    fn check_segment(&self, start: usize, stop: usize, out_len: usize) -> Result<(), IoError> {
        if start > stop || stop > self.n_volumes {
            return Err(IoError::Segment {
                path: self.path.clone(),
                start,
                stop,
                n_times: self.n_volumes,
            });
        }
        let need = (stop - start) * self.dims[0] * self.dims[1] * self.dims[2];
        if out_len != need {
            return Err(IoError::Segment {
                path: self.path.clone(),
                start,
                stop,
                n_times: self.n_volumes,
            });
        }
        Ok(())
    }
}

/// How the bytes of one volume become values: element type, byte order, scaling.
#[derive(Clone, Copy)]
struct Decoding {
    dt: DataType,
    be: bool,
    slope: f64,
    inter: f64,
}

/// Work done with the conversion of one element of `N` file bytes into its scaled value.
trait WithConv {
    fn run<const N: usize, F: Fn([u8; N]) -> f32>(self, conv: F);
}

/// Calls `k.run` with the conversion for `d`: one monomorphic closure per element type, byte
/// order and scaling, chosen once per call so that each loop is straight and vectorizable. The
/// arithmetic is `v as f32` without scaling and `(v as f64 * slope + inter) as f32` with it.
fn with_conv(d: Decoding, k: impl WithConv) {
    let identity = d.slope == 1.0 && d.inter == 0.0;
    let (slope, inter) = (d.slope, d.inter);
    macro_rules! go {
        ($t:ty, $n:expr) => {
            match (d.be, identity) {
                (false, true) => k.run::<$n, _>(|c| <$t>::from_le_bytes(c) as f32),
                (true, true) => k.run::<$n, _>(|c| <$t>::from_be_bytes(c) as f32),
                (false, false) => {
                    k.run::<$n, _>(|c| (<$t>::from_le_bytes(c) as f64 * slope + inter) as f32)
                }
                (true, false) => {
                    k.run::<$n, _>(|c| (<$t>::from_be_bytes(c) as f64 * slope + inter) as f32)
                }
            }
        };
    }
    match d.dt {
        DataType::U8 => go!(u8, 1),
        DataType::I8 => go!(i8, 1),
        DataType::I16 => go!(i16, 2),
        DataType::U16 => go!(u16, 2),
        DataType::I32 => go!(i32, 4),
        DataType::U32 => go!(u32, 4),
        DataType::I64 => go!(i64, 8),
        DataType::U64 => go!(u64, 8),
        DataType::F32 => go!(f32, 4),
        DataType::F64 => go!(f64, 8),
    }
}

/// Converts raw bytes to scaled `f32`, keeping the (Fortran) order.
fn decode(buf: &[u8], d: Decoding, out: &mut [f32]) {
    struct Plain<'a> {
        buf: &'a [u8],
        out: &'a mut [f32],
    }
    impl WithConv for Plain<'_> {
        fn run<const N: usize, F: Fn([u8; N]) -> f32>(self, conv: F) {
            for (o, c) in self.out.iter_mut().zip(self.buf.chunks_exact(N)) {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                *o = conv(a);
            }
        }
    }
    with_conv(d, Plain { buf, out });
}

/// Decodes one Fortran-order volume (x fastest) from its file bytes into row-major `[x, y, z]`
/// (z fastest), scaled: the same values as [`decode`] followed by a transpose. Only the
/// x-range `xs` is written: `dst` holds `dst[x - xs.start, y, z]` (`xs.len() * ny * nz` values).
///
/// For each `y` the `(z, x)` plane is decoded into `plane` (small enough to stay in the L1/L2
/// cache) and written out transposed as `(x, z)`: each output run of `nz` values is contiguous.
fn decode_transpose(
    src: &[u8],
    d: Decoding,
    dims: [usize; 3],
    xs: std::ops::Range<usize>,
    plane: &mut Vec<f32>,
    dst: &mut [f32],
) {
    struct Transpose<'a> {
        src: &'a [u8],
        dims: [usize; 3],
        xs: std::ops::Range<usize>,
        plane: &'a mut Vec<f32>,
        dst: &'a mut [f32],
    }
    impl WithConv for Transpose<'_> {
        fn run<const N: usize, F: Fn([u8; N]) -> f32>(self, conv: F) {
            let Transpose {
                src,
                dims: [nx, ny, nz],
                xs,
                plane,
                dst,
            } = self;
            let w = xs.len();
            plane.resize(w * nz, 0.0);
            for y in 0..ny {
                for (z, row) in plane.chunks_exact_mut(w).enumerate() {
                    let at = ((z * ny + y) * nx + xs.start) * N;
                    for (o, c) in row.iter_mut().zip(src[at..at + w * N].chunks_exact(N)) {
                        let mut a = [0u8; N];
                        a.copy_from_slice(c);
                        *o = conv(a);
                    }
                }
                for x in 0..w {
                    let out = &mut dst[(x * ny + y) * nz..(x * ny + y + 1) * nz];
                    for (o, &v) in out.iter_mut().zip(plane[x..].iter().step_by(w)) {
                        *o = v;
                    }
                }
            }
        }
    }
    with_conv(
        d,
        Transpose {
            src,
            dims,
            xs,
            plane,
            dst,
        },
    );
}

/// Where the image data are: for the errors of [`DataAt::fill`].
struct DataAt<'a> {
    path: &'a Path,
    data_offset: u64,
    vol_bytes: usize,
}

impl DataAt<'_> {
    /// Fills `buf` with the next bytes of `source`, which start at volume `start`.
    fn fill(&self, source: &mut Source, start: usize, buf: &mut [u8]) -> Result<(), IoError> {
        let got = match source {
            Source::Plain(f) => read_full(f, buf).map_err(|e| IoError::io(self.path, e))?,
            Source::Gz { dec, pos } => {
                let n = read_full(dec, buf).map_err(|e| gz_error(self.path, e))?;
                *pos += n as u64;
                n
            }
        };
        if got < buf.len() {
            let vb = self.vol_bytes.max(1);
            let stop = start + buf.len() / vb;
            return Err(IoError::Truncated {
                path: self.path.into(),
                what: format!("volumes [{start}, {stop})"),
                expected: self.data_offset + (stop * vb) as u64,
                got: self.data_offset + (start * vb + got) as u64,
            });
        }
        Ok(())
    }
}

/// Largest image (bytes of voxel data in the file) that [`RawReader::read_all`] decompresses
/// in one pass with the decode overlapped; bigger ones are read volume by volume.
const WHOLE_IMAGE_MAX: usize = 256 << 20;

/// Smallest image (bytes of voxel data) that [`RawReader::read_all`] reads with the pipeline:
/// below it, waking the pool's threads costs more than decoding and hashing on this one.
const PIPELINE_MIN: usize = 1 << 20;

/// Tasks a single volume of `read_all` is split into (by x).
const X_SPLIT: usize = 4;

/// Volumes per decode task of `read_all`: about 64 KiB of file bytes.
fn volumes_per_task(vol_bytes: usize) -> usize {
    ((64 << 10) / vol_bytes.max(1)).max(1)
}

impl RawReader for NiftiReader {
    /// Hashes the file on first use (unless `read_all` already did). If hashing fails the
    /// sha256 is left empty and [`RawReader::finish`] (called by `read_all`) reports why.
    fn info(&self) -> &Info {
        self.info.get_or_init(|| {
            let mut info = self.head_info.clone();
            info.provenance.source_sha256 = self.hash.get().unwrap_or_default().to_string();
            info
        })
    }

    fn n_channels(&self) -> usize {
        self.head_info.n_channels()
    }

    fn finish(&mut self) -> Result<(), IoError> {
        self.hash.get().map(|_| ())
    }

    fn annotations(&self) -> &[Annotation] {
        &[]
    }

    fn n_times(&self) -> usize {
        self.n_volumes
    }

    fn volume_geometry(&self) -> Option<([usize; 3], [[f64; 4]; 4])> {
        Some((self.dims, self.affine))
    }

    fn read_segment(&mut self, start: usize, stop: usize, out: &mut [f32]) -> Result<(), IoError> {
        self.check_segment(start, stop, out.len())?;
        let nvox = self.dims[0] * self.dims[1] * self.dims[2];
        let vb = self.vol_bytes();
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.read_raw(start, stop, &mut buf);
        if r.is_ok() && nvox > 0 {
            let (d, dims) = (self.decoding(), self.dims);
            let mut plane = Vec::new();
            for (src, dst) in buf.chunks_exact(vb).zip(out.chunks_exact_mut(nvox)) {
                decode_transpose(src, d, dims, 0..dims[0], &mut plane, dst);
            }
        }
        self.buf = buf;
        r
    }

    /// Images of [`PIPELINE_MIN`] to [`WHOLE_IMAGE_MAX`] bytes: the data are decompressed (or
    /// read) in one pass on this thread while the volumes already read are decoded and
    /// transposed on the rayon pool, where the provenance sha256 (unless already known) is
    /// computed too. Smaller images go through `read_segment` on this thread; bigger ones too,
    /// in bounded memory.
    fn read_all(&mut self) -> Result<Recording, IoError> {
        let nvox = self.dims[0] * self.dims[1] * self.dims[2];
        let vb = self.vol_bytes();
        let n = self.n_volumes;
        let nbytes = vb.saturating_mul(n);
        if !(PIPELINE_MIN..=WHOLE_IMAGE_MAX).contains(&nbytes) || nvox == 0 {
            return read_all_by_segments(self);
        }
        self.seek_to(0)?;
        let mut raw = vec![0u8; nbytes];
        let mut data = vec![0f32; nvox * n];
        let per_task = volumes_per_task(vb);
        let (d, dims) = (self.decoding(), self.dims);
        let at = DataAt {
            path: &self.path,
            data_offset: self.data_offset,
            vol_bytes: vb,
        };
        let (hash, source) = (&self.hash, &mut self.source);
        let filled: Result<(), IoError> = rayon::scope(|rs| {
            if !hash.is_known() {
                rs.spawn(move |_| {
                    let _ = hash.get();
                });
            }
            let (mut raw_rest, mut out_rest) = (&mut raw[..], &mut data[..]);
            let mut v = 0;
            while v < n {
                let k = per_task.min(n - v);
                let (raw_k, raw_tail) = std::mem::take(&mut raw_rest).split_at_mut(k * vb);
                let (out_k, out_tail) = std::mem::take(&mut out_rest).split_at_mut(k * nvox);
                (raw_rest, out_rest) = (raw_tail, out_tail);
                at.fill(source, v, raw_k)?;
                let raw_k: &[u8] = raw_k;
                if k > 1 {
                    rs.spawn(move |_| {
                        let mut plane = Vec::new();
                        let pairs = raw_k.chunks_exact(vb).zip(out_k.chunks_exact_mut(nvox));
                        for (src, dst) in pairs {
                            decode_transpose(src, d, dims, 0..dims[0], &mut plane, dst);
                        }
                    });
                } else {
                    // one big volume: split by x so that the last volume, which nothing
                    // else overlaps, is shared by the pool's threads
                    let yz = dims[1] * dims[2];
                    let xb = dims[0].div_ceil(X_SPLIT);
                    for (i, dst) in out_k.chunks_mut(xb * yz).enumerate() {
                        let xs = i * xb..i * xb + dst.len() / yz;
                        rs.spawn(move |_| {
                            decode_transpose(raw_k, d, dims, xs, &mut Vec::new(), dst);
                        });
                    }
                }
                v += k;
            }
            Ok(())
        });
        filled?;
        self.finish()?;
        let path = self.path.clone();
        let signal = Signal::Volumes {
            n_volumes: n,
            dims,
            affine: self.affine,
            data,
        };
        Recording::new(self.info().clone(), signal, Vec::new())
            .map_err(|source| IoError::Core { path, source })
    }
}

/// Opens a NIfTI file as a boxed [`RawReader`] (the `FORMATS` entry).
pub fn open_boxed(path: &Path) -> Result<Box<dyn RawReader>, IoError> {
    Ok(Box::new(NiftiReader::open(path)?))
}

/// Writes volumes as a little-endian float32 NIfTI-1 file (`.nii`, or gzip when the name ends
/// in `.gz`), atomically. The affine goes to the sform (code 2, "aligned") with qform code 0;
/// pixdim holds the column norms of the affine and the TR (`1 / sfreq_hz`, 0 when unknown) in
/// seconds. Reading it back gives the same data and affine (as `f32`).
pub fn write_nifti1(path: &Path, rec: &neurofm_core::Recording) -> Result<(), IoError> {
    let neurofm_core::Signal::Volumes {
        n_volumes,
        dims,
        affine,
        data,
    } = &rec.signal
    else {
        return Err(IoError::Unsupported {
            path: path.into(),
            what: "writing a channel signal as NIfTI".into(),
        });
    };
    for (i, &d) in dims.iter().chain(std::iter::once(n_volumes)).enumerate() {
        if d == 0 || d > i16::MAX as usize {
            return Err(IoError::header(
                path,
                format!("dim[{}]", i + 1),
                format!("{d} does not fit NIfTI-1 (1..32767)"),
            ));
        }
    }
    let mut h = vec![0u8; 352];
    let put = |h: &mut Vec<u8>, off: usize, b: &[u8]| h[off..off + b.len()].copy_from_slice(b);
    put(&mut h, 0, &348i32.to_le_bytes());
    let ndim: i16 = if *n_volumes > 1 { 4 } else { 3 };
    let dim = [
        ndim,
        dims[0] as i16,
        dims[1] as i16,
        dims[2] as i16,
        *n_volumes as i16,
        1,
        1,
        1,
    ];
    for (i, d) in dim.iter().enumerate() {
        put(&mut h, 40 + 2 * i, &d.to_le_bytes());
    }
    put(&mut h, 70, &16i16.to_le_bytes());
    put(&mut h, 72, &32i16.to_le_bytes());
    let sf = rec.info.sfreq_hz;
    let tr = if sf.is_finite() && sf > 0.0 {
        1.0 / sf
    } else {
        0.0
    };
    let mut pixdim = [1.0f32, 0.0, 0.0, 0.0, tr as f32, 0.0, 0.0, 0.0];
    for c in 0..3 {
        pixdim[c + 1] = (0..3)
            .map(|r| affine[r][c] * affine[r][c])
            .sum::<f64>()
            .sqrt() as f32;
    }
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut h, 76 + 4 * i, &p.to_le_bytes());
    }
    put(&mut h, 108, &352f32.to_le_bytes());
    put(&mut h, 112, &1f32.to_le_bytes());
    h[123] = 2 | 8; // mm, s
    put(&mut h, 254, &2i16.to_le_bytes());
    for (r, row) in affine.iter().take(3).enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(&mut h, 280 + 16 * r + 4 * c, &(*v as f32).to_le_bytes());
        }
    }
    put(&mut h, 344, b"n+1\0");
    let [nx, ny, nz] = *dims;
    let nv = nx * ny * nz;
    let mut bytes = h;
    bytes.reserve(nv * n_volumes * 4);
    for t in 0..*n_volumes {
        let vol = &data[t * nv..(t + 1) * nv];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    bytes.extend_from_slice(&vol[(x * ny + y) * nz + z].to_le_bytes());
                }
            }
        }
    }
    let out = if is_gz(path) {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&bytes).map_err(|e| IoError::io(path, e))?;
        e.finish().map_err(|e| IoError::io(path, e))?
    } else {
        bytes
    };
    crate::npy::write_atomic(path, &out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decode_transpose_is_fortran_to_c() {
        // dims 2 x 3 x 2 of big-endian int16, scaled; Fortran index = x + 2*y + 6*z
        let src: Vec<u8> = (0..12i16).flat_map(|v| v.to_be_bytes()).collect();
        let d = Decoding {
            dt: DataType::I16,
            be: true,
            slope: 2.0,
            inter: 1.0,
        };
        let mut dst = vec![0.0; 12];
        decode_transpose(&src, d, [2, 3, 2], 0..2, &mut Vec::new(), &mut dst);
        for x in 0..2 {
            for y in 0..3 {
                for z in 0..2 {
                    let f = (x + 2 * y + 6 * z) as f32;
                    assert_eq!(dst[x * 6 + y * 2 + z], 2.0 * f + 1.0);
                }
            }
        }
        // the x-range x = 1 only
        let mut part = vec![0.0; 6];
        decode_transpose(&src, d, [2, 3, 2], 1..2, &mut Vec::new(), &mut part);
        assert_eq!(part, dst[6..]);
    }

    #[test]
    fn tr_in_ms_with_seconds_units_is_converted() {
        let mut h = NiftiHeader {
            version: 1,
            big_endian: false,
            dim: [4, 2, 2, 2, 3, 1, 1, 1],
            datatype: DataType::I16,
            bitpix: 16,
            pixdim: [1.0, 2.0, 2.0, 2.0, 2000.0, 0.0, 0.0, 0.0],
            vox_offset: 352.0,
            scl_slope: 0.0,
            scl_inter: 0.0,
            xyzt_units: 10,
            cal_min: 0.0,
            cal_max: 0.0,
            slice_duration: 0.0,
            toffset: 0.0,
            descrip: String::new(),
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
            magic: "n+1".into(),
        };
        let (tr, why) = h.tr(3);
        assert_eq!(tr, Some(2.0));
        assert!(why.contains("milliseconds"), "{why}");
        h.pixdim[4] = 1.5;
        assert_eq!(h.tr(3).0, Some(1.5));
        h.xyzt_units = 2 | 16; // mm + ms
        h.pixdim[4] = 720.0;
        assert_eq!(h.tr(3).0, Some(0.72));
        h.pixdim[4] = 0.0;
        assert_eq!(h.tr(1).0, None);
        // base affine: x flipped, centred
        let a = h.base_affine([2, 2, 2]);
        assert_eq!(a[0][0], -2.0);
        assert_eq!(a[0][3], 1.0);
        assert_eq!(a[1][3], -1.0);
        // slope 0 => no scaling; NaN slope => no scaling
        assert_eq!(h.scaling(Path::new("x")).unwrap(), (1.0, 0.0));
        h.scl_slope = f64::NAN;
        assert_eq!(h.scaling(Path::new("x")).unwrap(), (1.0, 0.0));
        h.scl_slope = 2.0;
        h.scl_inter = f64::NAN;
        assert!(h.scaling(Path::new("x")).is_err());
    }
}
