//! NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0).
//!
//! Element types: `f4`, `f8`, `f2` is refused; integers `i1 i2 i4 i8 u1 u2 u4 u8`; bools `b1`;
//! little (`<`), big (`>`), native (`=`, read as little-endian) or not-applicable (`|`) byte
//! order; C or Fortran order. Values are returned as `f64` in C (row-major) order whatever the
//! file's order. Object arrays, structured dtypes and strings are refused with a clear error.

use std::path::Path;

use crate::error::IoError;

/// A dense array, C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    /// `descr` as written in the header (e.g. `"<f4"`).
    pub descr: String,
    pub fortran_order: bool,
    /// Values in C (row-major) order.
    pub data: Vec<f64>,
}

fn header_err(path: &Path, field: &str, reason: impl Into<String>) -> IoError {
    IoError::header(path, field, reason)
}

/// Extracts the value text of `'key':` in the header dict.
fn dict_value<'a>(path: &Path, dict: &'a str, key: &str) -> Result<&'a str, IoError> {
    let pat_sq = format!("'{key}'");
    let pat_dq = format!("\"{key}\"");
    let at = dict
        .find(&pat_sq)
        .map(|i| i + pat_sq.len())
        .or_else(|| dict.find(&pat_dq).map(|i| i + pat_dq.len()))
        .ok_or_else(|| header_err(path, key, "missing from the .npy header"))?;
    let rest = dict[at..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| header_err(path, key, "no ':' after the key"))?
        .trim_start();
    Ok(rest)
}

/// Parses an `.npy` file's bytes.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray, IoError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(header_err(
            path,
            "magic",
            "not an .npy file (no \\x93NUMPY magic)",
        ));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(IoError::Truncated {
                    path: path.into(),
                    what: ".npy header length".into(),
                    expected: 12,
                    got: bytes.len() as u64,
                });
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12usize,
            )
        }
        v => {
            return Err(header_err(
                path,
                "version",
                format!("{v}.x is not 1, 2 or 3"),
            ))
        }
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| IoError::Truncated {
            path: path.into(),
            what: ".npy header".into(),
            expected: (start + hlen) as u64,
            got: bytes.len() as u64,
        })?;
    let dict = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| header_err(path, "header", "not UTF-8 / latin-1 text"))?;

    let descr_v = dict_value(path, dict, "descr")?;
    let q = descr_v.chars().next().unwrap_or(' ');
    if q != '\'' && q != '"' {
        return Err(header_err(
            path,
            "descr",
            format!(
                "structured or unreadable dtype {:?}",
                descr_v.split(',').next().unwrap_or("")
            ),
        ));
    }
    let descr: String = descr_v[1..].chars().take_while(|&c| c != q).collect();
    let fo = dict_value(path, dict, "fortran_order")?;
    let fortran_order = if fo.starts_with("True") {
        true
    } else if fo.starts_with("False") {
        false
    } else {
        return Err(header_err(path, "fortran_order", "not True or False"));
    };
    let sh = dict_value(path, dict, "shape")?;
    let sh = sh
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| header_err(path, "shape", "not a tuple"))?;
    let mut shape = Vec::new();
    for part in sh.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = part.trim_end_matches('L');
        shape.push(
            p.parse::<usize>()
                .map_err(|_| header_err(path, "shape", format!("entry {part:?} is not a size")))?,
        );
    }

    let (order, code) = descr.split_at(descr.len().min(1));
    let big = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => {
            return Err(header_err(
                path,
                "descr",
                format!("{descr:?}: unknown byte order"),
            ))
        }
    };
    let n: usize = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| header_err(path, "shape", "size overflows"))?;
    let size = match code {
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "i2" | "u2" => 2,
        "i1" | "u1" | "b1" => 1,
        _ => {
            return Err(IoError::Unsupported {
                path: path.into(),
                what: format!(".npy dtype {descr:?}"),
            })
        }
    };
    let data_bytes = &bytes[end..];
    let need = n
        .checked_mul(size)
        .ok_or_else(|| header_err(path, "shape", "size overflows"))?;
    if data_bytes.len() < need {
        return Err(IoError::Truncated {
            path: path.into(),
            what: format!(".npy data ({descr} x {shape:?})"),
            expected: (end + need) as u64,
            got: bytes.len() as u64,
        });
    }
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            data_bytes[..need]
                .chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    (if big {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }) as f64
                })
                .collect::<Vec<f64>>()
        };
    }
    let flat: Vec<f64> = match code {
        "f4" => conv!(f32, 4),
        "f8" => conv!(f64, 8),
        "i1" => conv!(i8, 1),
        "i2" => conv!(i16, 2),
        "i4" => conv!(i32, 4),
        "i8" => conv!(i64, 8),
        "u1" | "b1" => conv!(u8, 1),
        "u2" => conv!(u16, 2),
        "u4" => conv!(u32, 4),
        _ => conv!(u64, 8),
    };
    let data = if fortran_order && shape.len() > 1 {
        fortran_to_c_nd(&flat, &shape)
    } else {
        flat
    };
    Ok(NpyArray {
        shape,
        descr,
        fortran_order,
        data,
    })
}

/// Reorders an n-d Fortran-order buffer into C order.
fn fortran_to_c_nd(src: &[f64], shape: &[usize]) -> Vec<f64> {
    let nd = shape.len();
    // Fortran strides: first axis fastest.
    let mut fstride = vec![1usize; nd];
    for i in 1..nd {
        fstride[i] = fstride[i - 1] * shape[i - 1];
    }
    let mut out = Vec::with_capacity(src.len());
    let mut idx = vec![0usize; nd];
    for _ in 0..src.len() {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(src[off]);
        // increment C-order index (last axis fastest)
        for ax in (0..nd).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

/// Reads an `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, e))?;
    parse_npy(path, &bytes)
}

/// Writes a 2-D `f64` array as `.npy` v1.0 (little-endian, C order) — used by tests and tools.
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<(), IoError> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| IoError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| IoError::io(&tmp, e))?;
    f.sync_all().map_err(|e| IoError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| IoError::io(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, payload: &[u8], major: u8) -> Vec<u8> {
        let h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut b = b"\x93NUMPY".to_vec();
        b.push(major);
        b.push(0);
        if major == 1 {
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn fortran_big_endian_i2() {
        // 2 x 3 array [[1,2,3],[4,5,6]] in Fortran order: 1,4,2,5,3,6
        let mut payload = Vec::new();
        for v in [1i16, 4, 2, 5, 3, 6] {
            payload.extend_from_slice(&v.to_be_bytes());
        }
        let b = npy(">i2", true, "(2, 3)", &payload, 2);
        let a = parse_npy(Path::new("t.npy"), &b).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn c_order_f4_v3_and_truncation() {
        let mut payload = Vec::new();
        for v in [0.5f32, -1.0, 2.25, 8.0] {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        let b = npy("<f4", false, "(2, 2)", &payload, 3);
        let a = parse_npy(Path::new("t.npy"), &b).unwrap();
        assert_eq!(a.data, vec![0.5, -1.0, 2.25, 8.0]);
        let err = parse_npy(Path::new("t.npy"), &b[..b.len() - 3]).unwrap_err();
        assert!(matches!(err, IoError::Truncated { .. }), "{err}");
        let bad = npy("<c16", false, "(1,)", &[0u8; 16], 1);
        assert!(matches!(
            parse_npy(Path::new("t.npy"), &bad).unwrap_err(),
            IoError::Unsupported { .. }
        ));
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy_f64(&p, &[3, 2], &[1., 2., 3., 4., 5., 6.]).unwrap();
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape, vec![3, 2]);
        assert_eq!(a.data[5], 6.0);
    }
}
