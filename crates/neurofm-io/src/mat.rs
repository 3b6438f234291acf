//! MATLAB MAT-files: level 5 (v5/v6/v7, including zlib-compressed `miCOMPRESSED` elements) parsed
//! here, and v7.3 (HDF5) read through the pure-Rust `hdf5-reader` crate, both into one value tree
//! ([`MatValue`]).
//!
//! Numeric arrays of every class are widened to `f64` (integers beyond 2^53 lose precision) and
//! kept in MATLAB's column-major order with their dimensions. Character arrays become `String`s
//! (one per row for 2-D char matrices), cell arrays and struct arrays keep their dimensions.
//! Sparse arrays are expanded to dense. Objects, function handles and other opaque values are
//! kept as [`MatValue::Opaque`] with their class name, so a file that contains them still opens.

use std::io::Read;
use std::path::Path;

use crate::error::IoError;

/// MATLAB array class, as stored in the array flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatClass {
    Double,
    Single,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Logical,
}

impl MatClass {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            6 => MatClass::Double,
            7 => MatClass::Single,
            8 => MatClass::Int8,
            9 => MatClass::Uint8,
            10 => MatClass::Int16,
            11 => MatClass::Uint16,
            12 => MatClass::Int32,
            13 => MatClass::Uint32,
            14 => MatClass::Int64,
            15 => MatClass::Uint64,
            _ => return None,
        })
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "double" => MatClass::Double,
            "single" => MatClass::Single,
            "int8" => MatClass::Int8,
            "uint8" => MatClass::Uint8,
            "int16" => MatClass::Int16,
            "uint16" => MatClass::Uint16,
            "int32" => MatClass::Int32,
            "uint32" => MatClass::Uint32,
            "int64" => MatClass::Int64,
            "uint64" => MatClass::Uint64,
            "logical" => MatClass::Logical,
            _ => return None,
        })
    }

    /// Whether values of this class are integers (MATLAB prints them without a decimal point).
    pub fn is_integer(self) -> bool {
        !matches!(self, MatClass::Double | MatClass::Single)
    }
}

/// One MATLAB value.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// A numeric or logical array, column-major.
    Numeric {
        class: MatClass,
        dims: Vec<usize>,
        real: Vec<f64>,
        imag: Option<Vec<f64>>,
    },
    /// A character array: `rows[i]` is row `i` (a 1×N char array has one row).
    Char { dims: Vec<usize>, rows: Vec<String> },
    /// A cell array, column-major.
    Cell {
        dims: Vec<usize>,
        items: Vec<MatValue>,
    },
    /// A struct array: `elements[i]` holds element `i`'s field values in `fields` order.
    Struct {
        dims: Vec<usize>,
        fields: Vec<String>,
        elements: Vec<Vec<MatValue>>,
    },
    /// Something this reader keeps but does not decode (objects, function handles, ...).
    Opaque { class: String },
}

fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl MatValue {
    pub fn dims(&self) -> &[usize] {
        match self {
            MatValue::Numeric { dims, .. }
            | MatValue::Char { dims, .. }
            | MatValue::Cell { dims, .. }
            | MatValue::Struct { dims, .. } => dims,
            MatValue::Opaque { .. } => &[],
        }
    }

    /// Number of elements (product of the dimensions).
    pub fn len(&self) -> usize {
        match self {
            MatValue::Numeric { real, .. } => real.len(),
            MatValue::Char { dims, .. } => numel(dims).unwrap_or(0),
            MatValue::Cell { items, .. } => items.len(),
            MatValue::Struct { elements, .. } => elements.len(),
            MatValue::Opaque { .. } => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Field `name` of a struct's first element (the common 1×1 struct case).
    pub fn field(&self, name: &str) -> Option<&MatValue> {
        self.field_at(0, name)
    }

    /// Field `name` of struct element `i`.
    pub fn field_at(&self, i: usize, name: &str) -> Option<&MatValue> {
        match self {
            MatValue::Struct {
                fields, elements, ..
            } => {
                let k = fields.iter().position(|f| f == name)?;
                elements.get(i)?.get(k)
            }
            _ => None,
        }
    }

    pub fn field_names(&self) -> &[String] {
        match self {
            MatValue::Struct { fields, .. } => fields,
            _ => &[],
        }
    }

    /// Real parts of a numeric array.
    pub fn as_f64_slice(&self) -> Option<&[f64]> {
        match self {
            MatValue::Numeric { real, .. } => Some(real),
            _ => None,
        }
    }

    /// The value of a numeric array with exactly one element.
    pub fn as_scalar(&self) -> Option<f64> {
        match self.as_f64_slice()? {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// The text of a char array (rows joined by newlines); `Some("")` for an empty numeric array
    /// (MATLAB's `[]`, which EEGLAB uses for unset strings).
    pub fn as_string(&self) -> Option<String> {
        match self {
            MatValue::Char { rows, .. } => Some(rows.join("\n")),
            MatValue::Numeric { real, .. } if real.is_empty() => Some(String::new()),
            _ => None,
        }
    }

    /// Items of a cell array.
    pub fn cell_items(&self) -> Option<&[MatValue]> {
        match self {
            MatValue::Cell { items, .. } => Some(items),
            _ => None,
        }
    }
}

/// The variables of a MAT-file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    /// The 116-byte descriptive text (v5) or the v7.3 header text.
    pub header_text: String,
    pub variables: Vec<(String, MatValue)>,
}

impl MatFile {
    pub fn get(&self, name: &str) -> Option<&MatValue> {
        self.variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// Whether a MAT-file header says v7.3 (HDF5).
pub fn is_v73(bytes: &[u8]) -> bool {
    bytes.len() >= 520
        && bytes.starts_with(b"MATLAB 7.3")
        && &bytes[512..520] == b"\x89HDF\r\n\x1a\n"
}

/// Reads a MAT-file of any supported version from disk.
pub fn read_mat(path: &Path) -> Result<MatFile, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, e))?;
    if is_v73(&bytes) {
        return read_mat73_bytes(path, bytes);
    }
    parse_mat5(path, &bytes)
}

// ---------------------------------------------------------------------------------------------
// Level 5
// ---------------------------------------------------------------------------------------------

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

/// Nesting limit for cells/structs (malformed files could otherwise recurse without end).
const MAX_DEPTH: usize = 64;
/// Largest decompressed `miCOMPRESSED` element accepted (guards against zlib bombs).
const MAX_DECOMPRESSED: u64 = 8 << 30;

struct Ctx<'a> {
    path: &'a Path,
    big_endian: bool,
}

impl Ctx<'_> {
    fn err(&self, at: usize, what: impl Into<String>) -> IoError {
        IoError::header(self.path, format!("MAT element at byte {at}"), what)
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

/// One data element: its type, its payload and where it started (for messages).
struct Element<'a> {
    ty: u32,
    data: &'a [u8],
}

/// Reads the element at `pos`; returns it and the position of the next element.
fn read_element<'a>(ctx: &Ctx, buf: &'a [u8], pos: usize) -> Result<(Element<'a>, usize), IoError> {
    let tag = buf
        .get(pos..pos + 8)
        .ok_or_else(|| ctx.err(pos, "truncated element tag"))?;
    let first = ctx.u32(&tag[0..4]);
    if first >> 16 != 0 {
        // Small data element: type and size share the first word, data in the second.
        let ty = first & 0xffff;
        let n = (first >> 16) as usize;
        if n > 4 {
            return Err(ctx.err(pos, format!("small element claims {n} bytes (at most 4)")));
        }
        return Ok((
            Element {
                ty,
                data: &tag[4..4 + n],
            },
            pos + 8,
        ));
    }
    let n = ctx.u32(&tag[4..8]) as usize;
    let start = pos + 8;
    let end = start
        .checked_add(n)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| {
            ctx.err(
                pos,
                format!(
                    "element of type {first} claims {n} bytes but only {} remain",
                    buf.len().saturating_sub(start)
                ),
            )
        })?;
    // Elements are padded to 8 bytes, except compressed ones.
    let next = if first == MI_COMPRESSED {
        end
    } else {
        end.checked_add(7).map_or(end, |e| e & !7).min(buf.len())
    };
    Ok((
        Element {
            ty: first,
            data: &buf[start..end],
        },
        next,
    ))
}

fn mi_size(ty: u32) -> Option<usize> {
    Some(match ty {
        MI_INT8 | MI_UINT8 | MI_UTF8 => 1,
        MI_INT16 | MI_UINT16 | MI_UTF16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE | MI_UTF32 => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        _ => return None,
    })
}

/// Decodes a numeric element to f64 values.
fn numeric_values(ctx: &Ctx, el: &Element, at: usize) -> Result<Vec<f64>, IoError> {
    let size =
        mi_size(el.ty).ok_or_else(|| ctx.err(at, format!("type {} is not numeric", el.ty)))?;
    if !el.data.len().is_multiple_of(size) {
        return Err(ctx.err(
            at,
            format!(
                "{} bytes is not a whole number of {size}-byte values",
                el.data.len()
            ),
        ));
    }
    let be = ctx.big_endian;
    let out = el
        .data
        .chunks_exact(size)
        .map(|c| {
            macro_rules! get {
                ($t:ty, $n:literal) => {{
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    if be {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                }};
            }
            match el.ty {
                MI_INT8 => c[0] as i8 as f64,
                MI_UINT8 | MI_UTF8 => c[0] as f64,
                MI_INT16 => get!(i16, 2) as f64,
                MI_UINT16 | MI_UTF16 => get!(u16, 2) as f64,
                MI_INT32 => get!(i32, 4) as f64,
                MI_UINT32 | MI_UTF32 => get!(u32, 4) as f64,
                MI_SINGLE => get!(f32, 4) as f64,
                MI_DOUBLE => get!(f64, 8),
                MI_INT64 => get!(i64, 8) as f64,
                _ => get!(u64, 8) as f64,
            }
        })
        .collect();
    Ok(out)
}

fn int_values(ctx: &Ctx, el: &Element, at: usize, what: &str) -> Result<Vec<i64>, IoError> {
    let v = numeric_values(ctx, el, at)?;
    v.into_iter()
        .map(|x| {
            if x.fract() == 0.0 && x.abs() < 9e15 {
                Ok(x as i64)
            } else {
                Err(ctx.err(at, format!("{what}: {x} is not an integer")))
            }
        })
        .collect()
}

fn decompress(ctx: &Ctx, data: &[u8], at: usize) -> Result<Vec<u8>, IoError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| ctx.err(at, format!("bad zlib stream in miCOMPRESSED element: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(ctx.err(at, "compressed element expands beyond 8 GiB"));
    }
    Ok(out)
}

/// Parses a level-5 MAT-file held in memory.
pub fn parse_mat5(path: &Path, bytes: &[u8]) -> Result<MatFile, IoError> {
    if bytes.len() < 128 {
        return Err(IoError::Truncated {
            path: path.to_path_buf(),
            what: "MAT-file header".into(),
            expected: 128,
            got: bytes.len() as u64,
        });
    }
    let header_text = String::from_utf8_lossy(&bytes[..116])
        .trim_end()
        .to_string();
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(IoError::header(
                path,
                "MAT endian indicator",
                format!("expected `IM` or `MI` at byte 126, got {other:?} (not a MAT v5 file)"),
            ))
        }
    };
    if bytes.starts_with(b"MATLAB 7.3") {
        return Err(IoError::header(
            path,
            "MAT version",
            "header says v7.3 but the HDF5 signature is missing at byte 512",
        ));
    }
    let ctx = Ctx { path, big_endian };
    let mut variables = Vec::new();
    let mut pos = 128;
    while pos < bytes.len() {
        // Trailing padding shorter than a tag is tolerated.
        if bytes.len() - pos < 8 {
            break;
        }
        let at = pos;
        let (el, next) = read_element(&ctx, bytes, pos)?;
        pos = next;
        match el.ty {
            MI_MATRIX => {
                let (name, v) = parse_matrix(&ctx, el.data, at, 0)?;
                variables.push((name, v));
            }
            MI_COMPRESSED => {
                let inner = decompress(&ctx, el.data, at)?;
                let (iel, _) = read_element(&ctx, &inner, 0)
                    .map_err(|e| ctx.err(at, format!("inside compressed element: {e}")))?;
                if iel.ty != MI_MATRIX {
                    return Err(ctx.err(
                        at,
                        format!(
                            "compressed element holds type {}, expected miMATRIX",
                            iel.ty
                        ),
                    ));
                }
                let (name, v) = parse_matrix(&ctx, iel.data, at, 0)
                    .map_err(|e| ctx.err(at, format!("inside compressed element: {e}")))?;
                variables.push((name, v));
            }
            other => {
                return Err(ctx.err(
                    at,
                    format!("top-level element of type {other}, expected a matrix"),
                ))
            }
        }
    }
    Ok(MatFile {
        header_text,
        variables,
    })
}

/// Parses the payload of an miMATRIX element; returns (array name, value).
fn parse_matrix(
    ctx: &Ctx,
    buf: &[u8],
    at: usize,
    depth: usize,
) -> Result<(String, MatValue), IoError> {
    if depth > MAX_DEPTH {
        return Err(ctx.err(at, format!("nesting deeper than {MAX_DEPTH}")));
    }
    if buf.is_empty() {
        // An empty miMATRIX is an empty double array (e.g. unset struct fields).
        return Ok((
            String::new(),
            MatValue::Numeric {
                class: MatClass::Double,
                dims: vec![0, 0],
                real: vec![],
                imag: None,
            },
        ));
    }
    let (flags, p) = read_element(ctx, buf, 0)?;
    if flags.ty != MI_UINT32 || flags.data.len() < 8 {
        return Err(ctx.err(at, "array flags subelement missing"));
    }
    let f0 = ctx.u32(&flags.data[0..4]);
    let class_code = (f0 & 0xff) as u8;
    let complex = f0 & 0x0800 != 0;
    let logical = f0 & 0x0200 != 0;
    let (dims_el, p) = read_element(ctx, buf, p)?;
    let dims: Vec<usize> = int_values(ctx, &dims_el, at, "dimensions")?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| ctx.err(at, format!("negative dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let n = numel(&dims).ok_or_else(|| ctx.err(at, "dimensions overflow"))?;
    let (name_el, mut p) = read_element(ctx, buf, p)?;
    let name = String::from_utf8_lossy(name_el.data).to_string();

    let value = match class_code {
        1 => {
            // Cell: n miMATRIX elements.
            let mut items = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                let (el, next) = read_element(ctx, buf, p)?;
                if el.ty != MI_MATRIX {
                    return Err(ctx.err(at, format!("cell `{name}` item of type {}", el.ty)));
                }
                items.push(parse_matrix(ctx, el.data, at, depth + 1)?.1);
                p = next;
            }
            MatValue::Cell { dims, items }
        }
        2 | 3 => {
            let mut class_name = None;
            if class_code == 3 {
                let (cn, next) = read_element(ctx, buf, p)?;
                class_name = Some(String::from_utf8_lossy(cn.data).to_string());
                p = next;
            }
            let (len_el, next) = read_element(ctx, buf, p)?;
            let flen = *int_values(ctx, &len_el, at, "field name length")?
                .first()
                .ok_or_else(|| ctx.err(at, "field name length missing"))?;
            let flen = usize::try_from(flen)
                .ok()
                .filter(|&l| l > 0)
                .ok_or_else(|| ctx.err(at, format!("struct `{name}` field name length {flen}")))?;
            let (names_el, next) = read_element(ctx, buf, next)?;
            p = next;
            if names_el.data.len() % flen != 0 {
                return Err(ctx.err(
                    at,
                    format!("struct `{name}` field names do not fill {flen}-byte slots"),
                ));
            }
            let fields: Vec<String> = names_el
                .data
                .chunks_exact(flen)
                .map(|c| {
                    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                    String::from_utf8_lossy(&c[..end]).to_string()
                })
                .collect();
            if fields.is_empty() && n > (1 << 24) {
                return Err(ctx.err(
                    at,
                    format!("struct `{name}` without fields claims {n} elements"),
                ));
            }
            let mut elements = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                let mut vals = Vec::with_capacity(fields.len());
                for f in &fields {
                    let (el, next) = read_element(ctx, buf, p)?;
                    if el.ty != MI_MATRIX {
                        return Err(
                            ctx.err(at, format!("struct `{name}` field `{f}` of type {}", el.ty))
                        );
                    }
                    vals.push(parse_matrix(ctx, el.data, at, depth + 1)?.1);
                    p = next;
                }
                elements.push(vals);
            }
            if let Some(c) = class_name {
                let _ = elements;
                MatValue::Opaque { class: c }
            } else {
                MatValue::Struct {
                    dims,
                    fields,
                    elements,
                }
            }
        }
        4 => {
            let (el, _) = read_element(ctx, buf, p)?;
            let codes: Vec<u32> = match el.ty {
                MI_UTF8 => String::from_utf8_lossy(el.data)
                    .chars()
                    .map(|c| c as u32)
                    .collect(),
                _ => numeric_values(ctx, &el, at)?
                    .into_iter()
                    .map(|v| v as u32)
                    .collect(),
            };
            if codes.len() != n {
                return Err(ctx.err(
                    at,
                    format!(
                        "char array `{name}` has {} characters for dimensions {dims:?}",
                        codes.len()
                    ),
                ));
            }
            MatValue::Char {
                rows: char_rows(&dims, &codes),
                dims,
            }
        }
        5 => parse_sparse(ctx, buf, p, at, &name, dims, complex, logical)?,
        6..=15 => {
            let class = if logical {
                MatClass::Logical
            } else {
                MatClass::from_code(class_code).ok_or_else(|| ctx.err(at, "bad class"))?
            };
            let (re, p2) = read_element(ctx, buf, p)?;
            let real = numeric_values(ctx, &re, at)?;
            if real.len() != n {
                return Err(ctx.err(
                    at,
                    format!(
                        "array `{name}` has {} values for dimensions {dims:?}",
                        real.len()
                    ),
                ));
            }
            let imag = if complex {
                let (im, _) = read_element(ctx, buf, p2)?;
                let v = numeric_values(ctx, &im, at)?;
                if v.len() != n {
                    return Err(ctx.err(
                        at,
                        format!("array `{name}` imaginary part has {} values", v.len()),
                    ));
                }
                Some(v)
            } else {
                None
            };
            MatValue::Numeric {
                class,
                dims,
                real,
                imag,
            }
        }
        16 | 17 => MatValue::Opaque {
            class: if class_code == 16 {
                "function_handle".into()
            } else {
                "opaque".into()
            },
        },
        other => return Err(ctx.err(at, format!("array `{name}` has unknown class {other}"))),
    };
    Ok((name, value))
}

#[allow(clippy::too_many_arguments)]
fn parse_sparse(
    ctx: &Ctx,
    buf: &[u8],
    p: usize,
    at: usize,
    name: &str,
    dims: Vec<usize>,
    complex: bool,
    logical: bool,
) -> Result<MatValue, IoError> {
    if dims.len() != 2 {
        return Err(ctx.err(at, format!("sparse `{name}` is not 2-D")));
    }
    let (m, ncol) = (dims[0], dims[1]);
    let n = numel(&dims).ok_or_else(|| ctx.err(at, "dimensions overflow"))?;
    if n > (1 << 27) {
        return Err(ctx.err(
            at,
            format!("sparse `{name}` too large to expand ({n} elements)"),
        ));
    }
    let (ir_el, p) = read_element(ctx, buf, p)?;
    let (jc_el, p) = read_element(ctx, buf, p)?;
    let (pr_el, p) = read_element(ctx, buf, p)?;
    let ir = int_values(ctx, &ir_el, at, "sparse row indices")?;
    let jc = int_values(ctx, &jc_el, at, "sparse column starts")?;
    let pr = numeric_values(ctx, &pr_el, at)?;
    let pi = if complex {
        Some(numeric_values(ctx, &read_element(ctx, buf, p)?.0, at)?)
    } else {
        None
    };
    if jc.len() != ncol + 1 {
        return Err(ctx.err(
            at,
            format!(
                "sparse `{name}` has {} column starts for {ncol} columns",
                jc.len()
            ),
        ));
    }
    let mut real = vec![0.0; n];
    let mut imag = pi.as_ref().map(|_| vec![0.0; n]);
    for c in 0..ncol {
        let (a, b) = (jc[c], jc[c + 1]);
        if a < 0 || b < a {
            return Err(ctx.err(at, format!("sparse `{name}` column starts decrease")));
        }
        for k in a as usize..b as usize {
            let r = *ir
                .get(k)
                .ok_or_else(|| ctx.err(at, "sparse row index missing"))?;
            let r = usize::try_from(r).ok().filter(|&r| r < m).ok_or_else(|| {
                ctx.err(
                    at,
                    format!("sparse `{name}` row index {r} outside {m} rows"),
                )
            })?;
            let v = *pr
                .get(k)
                .ok_or_else(|| ctx.err(at, "sparse value missing"))?;
            real[c * m + r] = v;
            if let (Some(im), Some(pi)) = (imag.as_mut(), pi.as_ref()) {
                im[c * m + r] = *pi
                    .get(k)
                    .ok_or_else(|| ctx.err(at, "sparse imaginary value missing"))?;
            }
        }
    }
    Ok(MatValue::Numeric {
        class: if logical {
            MatClass::Logical
        } else {
            MatClass::Double
        },
        dims,
        real,
        imag,
    })
}

/// Column-major character codes → one string per row.
fn char_rows(dims: &[usize], codes: &[u32]) -> Vec<String> {
    let rows = dims.first().copied().unwrap_or(0);
    if rows == 0 || codes.is_empty() {
        return if dims.iter().all(|&d| d > 0) && rows > 0 {
            vec![String::new(); rows]
        } else {
            vec![]
        };
    }
    let cols = codes.len() / rows;
    (0..rows)
        .map(|r| {
            (0..cols)
                .filter_map(|c| codes.get(c * rows + r))
                .map(|&u| char::from_u32(u).unwrap_or('\u{fffd}'))
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// v7.3 (HDF5)
// ---------------------------------------------------------------------------------------------

use hdf5_reader::group::Group;
use hdf5_reader::{Dataset, Datatype, Hdf5File};

fn h5err(path: &Path, field: &str, e: impl std::fmt::Display) -> IoError {
    IoError::header(path, field.to_string(), format!("HDF5: {e}"))
}

struct H5Ctx<'a> {
    path: &'a Path,
    file: Hdf5File,
    refs: Option<Group>,
}

/// Reads a v7.3 MAT-file (HDF5) held in memory.
pub fn read_mat73_bytes(path: &Path, bytes: Vec<u8>) -> Result<MatFile, IoError> {
    let header_text = String::from_utf8_lossy(&bytes[..116.min(bytes.len())])
        .trim_end()
        .to_string();
    let file = Hdf5File::from_vec(bytes).map_err(|e| h5err(path, "HDF5 superblock", e))?;
    let root = file.root_group().map_err(|e| h5err(path, "/", e))?;
    let refs = root.group("#refs#").ok();
    let ctx = H5Ctx { path, file, refs };
    let (groups, datasets) = root.members().map_err(|e| h5err(path, "/", e))?;
    let mut variables = Vec::new();
    for g in groups {
        let name = leaf(g.name());
        if name.starts_with('#') {
            continue;
        }
        variables.push((name.clone(), h5_group_value(&ctx, &g, &name, 0)?));
    }
    for d in datasets {
        let name = leaf(d.name());
        if name.starts_with('#') {
            continue;
        }
        variables.push((name.clone(), h5_dataset_value(&ctx, &d, &name, 0)?));
    }
    let _ = &ctx.file;
    Ok(MatFile {
        header_text,
        variables,
    })
}

fn leaf(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

fn matlab_class_of(attrs: Vec<hdf5_reader::Attribute>) -> (Option<String>, bool) {
    let mut class = None;
    let mut empty = false;
    for a in attrs {
        match a.name.as_str() {
            "MATLAB_class" => class = a.read_string().ok(),
            "MATLAB_empty" => empty = a.read_as_f64().map(|v| v != 0.0).unwrap_or(false),
            _ => {}
        }
    }
    (class, empty)
}

fn h5_group_value(ctx: &H5Ctx, g: &Group, var: &str, depth: usize) -> Result<MatValue, IoError> {
    if depth > MAX_DEPTH {
        return Err(IoError::header(
            ctx.path,
            var,
            format!("nesting deeper than {MAX_DEPTH}"),
        ));
    }
    let (class, _) = matlab_class_of(g.attributes().map_err(|e| h5err(ctx.path, var, e))?);
    if class.as_deref().is_some_and(|c| c != "struct") {
        return Ok(MatValue::Opaque {
            class: class.unwrap_or_default(),
        });
    }
    let (groups, datasets) = g.members().map_err(|e| h5err(ctx.path, var, e))?;
    // A struct array stores each field as an array of object references without MATLAB_class.
    let mut array_dims: Option<Vec<usize>> = None;
    for d in &datasets {
        let is_ref = matches!(d.dtype(), Datatype::Reference { .. });
        let (c, _) = matlab_class_of(d.attributes());
        if is_ref && c.is_none() {
            let dims: Vec<usize> = d.shape().iter().rev().map(|&x| x as usize).collect();
            array_dims = Some(dims);
            break;
        }
    }
    if let Some(dims) = array_dims {
        let n =
            numel(&dims).ok_or_else(|| IoError::header(ctx.path, var, "dimensions overflow"))?;
        let mut fields = Vec::new();
        let mut columns: Vec<Vec<MatValue>> = Vec::new();
        for d in &datasets {
            let fname = leaf(d.name());
            let fvar = format!("{var}.{fname}");
            let items = h5_deref_all(ctx, d, &fvar, depth)?;
            if items.len() != n {
                return Err(IoError::header(
                    ctx.path,
                    fvar,
                    format!("{} references for a struct array of {n}", items.len()),
                ));
            }
            fields.push(fname);
            columns.push(items);
        }
        let mut elements: Vec<Vec<MatValue>> =
            (0..n).map(|_| Vec::with_capacity(fields.len())).collect();
        for col in columns {
            for (i, v) in col.into_iter().enumerate() {
                elements[i].push(v);
            }
        }
        return Ok(MatValue::Struct {
            dims,
            fields,
            elements,
        });
    }
    let mut fields = Vec::new();
    let mut vals = Vec::new();
    for sub in &groups {
        let fname = leaf(sub.name());
        vals.push(h5_group_value(
            ctx,
            sub,
            &format!("{var}.{fname}"),
            depth + 1,
        )?);
        fields.push(fname);
    }
    for d in &datasets {
        let fname = leaf(d.name());
        vals.push(h5_dataset_value(
            ctx,
            d,
            &format!("{var}.{fname}"),
            depth + 1,
        )?);
        fields.push(fname);
    }
    Ok(MatValue::Struct {
        dims: vec![1, 1],
        fields,
        elements: vec![vals],
    })
}

/// Dereferences every object reference in `d` (column-major order).
fn h5_deref_all(
    ctx: &H5Ctx,
    d: &Dataset,
    var: &str,
    depth: usize,
) -> Result<Vec<MatValue>, IoError> {
    let raw = d.read_raw_bytes().map_err(|e| h5err(ctx.path, var, e))?;
    let refs_group = ctx
        .refs
        .as_ref()
        .ok_or_else(|| IoError::header(ctx.path, var, "references but no /#refs# group"))?;
    let addrs = hdf5_reader::reference::read_object_references(&raw, refs_group.offset_size())
        .map_err(|e| h5err(ctx.path, var, e))?;
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        let name = refs_group
            .child_name_by_address(a)
            .map_err(|e| h5err(ctx.path, var, e))?
            .ok_or_else(|| {
                IoError::header(ctx.path, var, format!("reference to unknown object at {a}"))
            })?;
        if let Ok(ds) = refs_group.dataset(&name) {
            out.push(h5_dataset_value(ctx, &ds, var, depth + 1)?);
        } else {
            let g = refs_group
                .group(&name)
                .map_err(|e| h5err(ctx.path, var, e))?;
            out.push(h5_group_value(ctx, &g, var, depth + 1)?);
        }
    }
    // HDF5 shape is MATLAB's reversed: row-major over reversed dims == column-major.
    Ok(out)
}

fn decode_h5_numeric(
    path: &Path,
    var: &str,
    raw: &[u8],
    dt: &Datatype,
) -> Result<Vec<f64>, IoError> {
    use hdf5_reader::ByteOrder;
    let (size, kind, be) = match dt {
        Datatype::FixedPoint {
            size,
            signed,
            byte_order,
        } => (
            *size as usize,
            if *signed { 'i' } else { 'u' },
            *byte_order == ByteOrder::BigEndian,
        ),
        Datatype::FloatingPoint { size, byte_order } => {
            (*size as usize, 'f', *byte_order == ByteOrder::BigEndian)
        }
        other => {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                what: format!("{var}: HDF5 datatype {other:?}"),
            })
        }
    };
    if size == 0 || !raw.len().is_multiple_of(size) {
        return Err(IoError::header(
            path,
            var,
            "data size is not a multiple of the element size",
        ));
    }
    raw.chunks_exact(size)
        .map(|c| {
            let mut b = [0u8; 8];
            if be {
                for (i, x) in c.iter().rev().enumerate() {
                    b[i] = *x;
                }
            } else {
                b[..size].copy_from_slice(c);
            }
            Ok(match (kind, size) {
                ('f', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                ('f', 8) => f64::from_le_bytes(b),
                ('i', 1) => b[0] as i8 as f64,
                ('i', 2) => i16::from_le_bytes([b[0], b[1]]) as f64,
                ('i', 4) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                ('i', 8) => i64::from_le_bytes(b) as f64,
                ('u', 1) => b[0] as f64,
                ('u', 2) => u16::from_le_bytes([b[0], b[1]]) as f64,
                ('u', 4) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                ('u', 8) => u64::from_le_bytes(b) as f64,
                _ => {
                    return Err(IoError::Unsupported {
                        path: path.to_path_buf(),
                        what: format!("{var}: {size}-byte numbers"),
                    })
                }
            })
        })
        .collect()
}

fn h5_dataset_value(
    ctx: &H5Ctx,
    d: &Dataset,
    var: &str,
    depth: usize,
) -> Result<MatValue, IoError> {
    if depth > MAX_DEPTH {
        return Err(IoError::header(
            ctx.path,
            var,
            format!("nesting deeper than {MAX_DEPTH}"),
        ));
    }
    let (class, empty) = matlab_class_of(d.attributes());
    let class = class.unwrap_or_else(|| "double".into());
    let h5shape: Vec<usize> = d.shape().iter().map(|&x| x as usize).collect();
    if empty {
        // The dataset holds the (MATLAB-order) dimensions of the empty array.
        let raw = d.read_raw_bytes().map_err(|e| h5err(ctx.path, var, e))?;
        let dims: Vec<usize> = decode_h5_numeric(ctx.path, var, &raw, d.dtype())?
            .into_iter()
            .map(|x| x as usize)
            .collect();
        return Ok(match class.as_str() {
            "char" => MatValue::Char { dims, rows: vec![] },
            "cell" => MatValue::Cell {
                dims,
                items: vec![],
            },
            "struct" => MatValue::Struct {
                dims,
                fields: vec![],
                elements: vec![],
            },
            c => MatValue::Numeric {
                class: MatClass::from_name(c).unwrap_or(MatClass::Double),
                dims,
                real: vec![],
                imag: None,
            },
        });
    }
    let dims: Vec<usize> = h5shape.iter().rev().copied().collect();
    match class.as_str() {
        "cell" => Ok(MatValue::Cell {
            items: h5_deref_all(ctx, d, var, depth)?,
            dims,
        }),
        "char" => {
            let raw = d.read_raw_bytes().map_err(|e| h5err(ctx.path, var, e))?;
            let codes: Vec<u32> = decode_h5_numeric(ctx.path, var, &raw, d.dtype())?
                .into_iter()
                .map(|v| v as u32)
                .collect();
            // UTF-16 code units: decode surrogate pairs row by row.
            let rows = char_rows(&dims, &codes)
                .into_iter()
                .map(|r| {
                    let units: Vec<u16> = r.chars().map(|c| c as u32 as u16).collect();
                    String::from_utf16_lossy(&units)
                })
                .collect();
            Ok(MatValue::Char { dims, rows })
        }
        c => {
            let Some(mclass) = MatClass::from_name(c) else {
                return Ok(MatValue::Opaque {
                    class: c.to_string(),
                });
            };
            if matches!(d.dtype(), Datatype::Compound { .. }) {
                return Err(IoError::Unsupported {
                    path: ctx.path.to_path_buf(),
                    what: format!("{var}: complex arrays in MAT v7.3"),
                });
            }
            let raw = d.read_raw_bytes().map_err(|e| h5err(ctx.path, var, e))?;
            let real = decode_h5_numeric(ctx.path, var, &raw, d.dtype())?;
            Ok(MatValue::Numeric {
                class: mclass,
                dims,
                real,
                imag: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal little-endian MAT v5 writer for tests.
    pub(crate) fn tag(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    fn matrix(class: u8, dims: &[i32], name: &str, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        let mut flags = [0u8; 8];
        flags[0] = class;
        m.extend(tag(MI_UINT32, &flags));
        let d: Vec<u8> = dims.iter().flat_map(|x| x.to_le_bytes()).collect();
        m.extend(tag(MI_INT32, &d));
        m.extend(tag(MI_INT8, name.as_bytes()));
        m.extend_from_slice(body);
        tag(MI_MATRIX, &m)
    }

    fn file(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut h = vec![b' '; 128];
        h[..10].copy_from_slice(b"MATLAB 5.0");
        h[124] = 0;
        h[125] = 1;
        h[126] = b'I';
        h[127] = b'M';
        for e in elements {
            h.extend_from_slice(e);
        }
        h
    }

    #[test]
    fn numeric_char_cell_struct_and_compressed() {
        let dbl: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let a = matrix(6, &[2, 3], "a", &tag(MI_DOUBLE, &dbl));
        let i16s: Vec<u8> = [-1i16, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = matrix(10, &[1, 2], "b", &tag(MI_INT16, &i16s));
        // 2x2 char matrix ["ab"; "cd"] stored column-major: a c b d
        let chars: Vec<u8> = "acbd"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let c = matrix(4, &[2, 2], "c", &tag(MI_UINT16, &chars));
        // cell {int8 5}
        let inner = matrix(8, &[1, 1], "", &tag(MI_INT8, &[5]));
        let cell = matrix(1, &[1, 1], "k", &inner);
        // struct s.x = 'hi'
        let hi: Vec<u8> = "hi".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let fx = matrix(4, &[1, 2], "", &tag(MI_UINT16, &hi));
        let mut sbody = tag(MI_INT32, &32i32.to_le_bytes());
        let mut names = vec![0u8; 32];
        names[0] = b'x';
        sbody.extend(tag(MI_INT8, &names));
        sbody.extend(fx);
        let s = matrix(2, &[1, 1], "s", &sbody);
        // compressed copy of `a` named z
        let z = matrix(6, &[2, 3], "z", &tag(MI_DOUBLE, &dbl));
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &z).unwrap();
        let zc = enc.finish().unwrap();
        let mut comp = Vec::new();
        comp.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
        comp.extend_from_slice(&(zc.len() as u32).to_le_bytes());
        comp.extend_from_slice(&zc);
        let bytes = file(&[a, b, c, cell, s, comp]);
        let m = parse_mat5(Path::new("t.mat"), &bytes).unwrap();
        let a = m.get("a").unwrap();
        assert_eq!(a.dims(), &[2, 3]);
        assert_eq!(a.as_f64_slice().unwrap(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.get("b").unwrap().as_f64_slice().unwrap(), &[-1.0, 7.0]);
        assert!(matches!(
            m.get("b").unwrap(),
            MatValue::Numeric {
                class: MatClass::Int16,
                ..
            }
        ));
        assert_eq!(m.get("c").unwrap().as_string().unwrap(), "ab\ncd");
        assert_eq!(
            m.get("k").unwrap().cell_items().unwrap()[0].as_scalar(),
            Some(5.0)
        );
        assert_eq!(
            m.get("s").unwrap().field("x").unwrap().as_string().unwrap(),
            "hi"
        );
        assert_eq!(m.get("z").unwrap(), m.get("a").unwrap());
    }

    #[test]
    fn sparse_expands_to_dense() {
        // 2x2 sparse with (1,0)=3 and (0,1)=4
        let mut body = Vec::new();
        body.extend(tag(
            MI_INT32,
            &[1i32, 0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>(),
        ));
        body.extend(tag(
            MI_INT32,
            &[0i32, 1, 2]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>(),
        ));
        body.extend(tag(
            MI_DOUBLE,
            &[3f64, 4.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>(),
        ));
        let sp = matrix(5, &[2, 2], "sp", &body);
        let m = parse_mat5(Path::new("t.mat"), &file(&[sp])).unwrap();
        assert_eq!(
            m.get("sp").unwrap().as_f64_slice().unwrap(),
            &[0.0, 3.0, 4.0, 0.0]
        );
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let dbl: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let good = file(&[matrix(6, &[1, 2], "a", &tag(MI_DOUBLE, &dbl))]);
        for n in 0..good.len() {
            let _ = parse_mat5(Path::new("t.mat"), &good[..n]);
        }
        // dims disagree with data
        let bad = file(&[matrix(6, &[1, 3], "a", &tag(MI_DOUBLE, &dbl))]);
        let e = parse_mat5(Path::new("t.mat"), &bad).unwrap_err();
        assert!(
            e.to_string().contains("t.mat") && e.to_string().contains("3 values")
                || e.to_string().contains("2 values"),
            "{e}"
        );
        // not a MAT file
        let e = parse_mat5(Path::new("t.mat"), &[0u8; 200]).unwrap_err();
        assert!(e.to_string().contains("endian"), "{e}");
    }
}
