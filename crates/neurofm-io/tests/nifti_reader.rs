#![allow(clippy::unwrap_used)]

//! NIfTI reader tests on files generated here (NIfTI-1/2, both byte orders, gzip, scaling,
//! qform/sform/pixdim affines, TR units) and on broken files (bad gzip, short data, NaN volumes).

use std::io::Write;
use std::path::Path;

use neurofm_io::nifti::NiftiReader;
use neurofm_io::{open_raw, IoError, RawReader};

/// Parameters of a generated image.
struct Spec {
    version: u8,
    big: bool,
    dims: [usize; 4],
    datatype: i16,
    bitpix: i16,
    pixdim: [f64; 8],
    slope: f64,
    inter: f64,
    xyzt_units: u8,
    qform_code: i16,
    sform_code: i16,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            version: 1,
            big: false,
            dims: [3, 4, 2, 5],
            datatype: 4,
            bitpix: 16,
            pixdim: [1.0, 2.0, 3.0, 4.0, 1.5, 0.0, 0.0, 0.0],
            slope: 0.0,
            inter: 0.0,
            xyzt_units: 2 | 8,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
        }
    }
}

struct W {
    b: Vec<u8>,
    big: bool,
}
impl W {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        if self.big {
            v.reverse();
        }
        self.b[off..off + v.len()].copy_from_slice(&v);
    }
    fn i16(&mut self, off: usize, v: i16) {
        self.put(off, &v.to_le_bytes())
    }
    fn i32(&mut self, off: usize, v: i32) {
        self.put(off, &v.to_le_bytes())
    }
    fn i64(&mut self, off: usize, v: i64) {
        self.put(off, &v.to_le_bytes())
    }
    fn f32(&mut self, off: usize, v: f64) {
        self.put(off, &(v as f32).to_le_bytes())
    }
    fn f64(&mut self, off: usize, v: f64) {
        self.put(off, &v.to_le_bytes())
    }
}

/// Raw value of voxel (x, y, z, t) in generated images.
fn raw_value(x: usize, y: usize, z: usize, t: usize) -> i64 {
    (x as i64) * 1000 + (y as i64) * 100 + (z as i64) * 10 + t as i64 - 500
}

fn encode(spec: &Spec, v: i64) -> Vec<u8> {
    let le = match spec.datatype {
        2 => vec![(v.rem_euclid(256)) as u8],
        4 => (v as i16).to_le_bytes().to_vec(),
        8 => (v as i32).to_le_bytes().to_vec(),
        16 => (v as f32).to_le_bytes().to_vec(),
        64 => (v as f64).to_le_bytes().to_vec(),
        512 => (v.rem_euclid(65536) as u16).to_le_bytes().to_vec(),
        _ => panic!("test writer: datatype {}", spec.datatype),
    };
    let mut b = le;
    if spec.big {
        b.reverse();
    }
    b
}

fn build(spec: &Spec) -> Vec<u8> {
    let (hsize, off) = if spec.version == 1 {
        (348, 352)
    } else {
        (540, 544)
    };
    let mut w = W {
        b: vec![0u8; off],
        big: spec.big,
    };
    let ndim = if spec.dims[3] > 1 { 4 } else { 3 };
    if spec.version == 1 {
        w.i32(0, hsize);
        w.i16(40, ndim);
        for i in 0..4 {
            w.i16(42 + 2 * i, spec.dims[i] as i16);
        }
        for i in 4..7 {
            w.i16(42 + 2 * i, 1);
        }
        w.i16(70, spec.datatype);
        w.i16(72, spec.bitpix);
        for i in 0..8 {
            w.f32(76 + 4 * i, spec.pixdim[i]);
        }
        w.f32(108, off as f64);
        w.f32(112, spec.slope);
        w.f32(116, spec.inter);
        w.b[123] = spec.xyzt_units;
        w.i16(252, spec.qform_code);
        w.i16(254, spec.sform_code);
        for i in 0..3 {
            w.f32(256 + 4 * i, spec.quatern[i]);
            w.f32(268 + 4 * i, spec.qoffset[i]);
        }
        for r in 0..3 {
            for c in 0..4 {
                w.f32(280 + 16 * r + 4 * c, spec.srow[r][c]);
            }
        }
        w.b[344..348].copy_from_slice(b"n+1\0");
    } else {
        w.i32(0, hsize);
        w.b[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        w.i16(12, spec.datatype);
        w.i16(14, spec.bitpix);
        w.i64(16, ndim as i64);
        for i in 0..4 {
            w.i64(24 + 8 * i, spec.dims[i] as i64);
        }
        for i in 4..7 {
            w.i64(24 + 8 * i, 1);
        }
        for i in 0..8 {
            w.f64(104 + 8 * i, spec.pixdim[i]);
        }
        w.i64(168, off as i64);
        w.f64(176, spec.slope);
        w.f64(184, spec.inter);
        w.i32(344, i32::from(spec.qform_code));
        w.i32(348, i32::from(spec.sform_code));
        for i in 0..3 {
            w.f64(352 + 8 * i, spec.quatern[i]);
            w.f64(376 + 8 * i, spec.qoffset[i]);
        }
        for r in 0..3 {
            for c in 0..4 {
                w.f64(400 + 32 * r + 8 * c, spec.srow[r][c]);
            }
        }
        w.i32(500, i32::from(spec.xyzt_units));
    }
    let [nx, ny, nz, nt] = spec.dims;
    let mut b = w.b;
    for t in 0..nt {
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    b.extend(encode(spec, raw_value(x, y, z, t)));
                }
            }
        }
    }
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Checks every voxel against the generator, a lazy segment read against the full read, and
/// that the reader is found through the dispatcher.
fn check_image(path: &Path, spec: &Spec) {
    let (slope, inter) = if spec.slope == 0.0 || !spec.slope.is_finite() {
        (1.0, 0.0)
    } else {
        (spec.slope, spec.inter)
    };
    let [nx, ny, nz, nt] = spec.dims;
    if nt > 1 {
        // the shared reader contract (provenance, rate, finite values, segment bounds)
        let rep = neurofm_io::check::check_reader(path).unwrap();
        assert!(rep.ok(), "{}: {:?}", path.display(), rep.problems);
    }
    let mut r = open_raw(path).unwrap();
    assert_eq!(r.n_times(), nt);
    let (dims, _) = r.volume_geometry().unwrap();
    assert_eq!(dims, [nx, ny, nz]);
    let rec = r.read_all().unwrap();
    assert_eq!(rec.signal.shape(), vec![nt, nx, ny, nz]);
    let data = rec.signal.data();
    for t in 0..nt {
        for x in 0..nx {
            for y in 0..ny {
                for z in 0..nz {
                    let mut raw = raw_value(x, y, z, t);
                    if spec.datatype == 2 {
                        raw = raw.rem_euclid(256);
                    }
                    if spec.datatype == 512 {
                        raw = raw.rem_euclid(65536);
                    }
                    let want = (raw as f64 * slope + inter) as f32;
                    let got = data[((t * nx + x) * ny + y) * nz + z];
                    assert_eq!(got, want, "voxel ({x},{y},{z},{t}) of {}", path.display());
                }
            }
        }
    }
    // lazy segment == slice of the full read (forward, then backward for gzip restarts)
    let nvox = nx * ny * nz;
    for (a, b) in [(1usize, nt), (0, 1), (nt - 1, nt), (0, nt)] {
        let mut seg = vec![0f32; (b - a) * nvox];
        r.read_segment(a, b, &mut seg).unwrap();
        assert_eq!(&seg[..], &data[a * nvox..b * nvox]);
    }
    let mut seg = vec![0f32; nvox];
    let e = r.read_segment(nt, nt + 1, &mut seg).unwrap_err();
    assert!(matches!(e, IoError::Segment { .. }));
}

#[test]
fn nifti1_le_be_gz_datatypes() {
    let dir = tempfile::tempdir().unwrap();
    for (dt, bp) in [
        (4i16, 16i16),
        (2, 8),
        (8, 32),
        (16, 32),
        (64, 64),
        (512, 16),
    ] {
        for big in [false, true] {
            let spec = Spec {
                datatype: dt,
                bitpix: bp,
                big,
                ..Spec::default()
            };
            let bytes = build(&spec);
            let p = write(dir.path(), &format!("img_{dt}_{big}.nii"), &bytes);
            check_image(&p, &spec);
            let p = write(dir.path(), &format!("img_{dt}_{big}.nii.gz"), &gzip(&bytes));
            check_image(&p, &spec);
        }
    }
}

#[test]
fn nifti2_and_scaling() {
    let dir = tempfile::tempdir().unwrap();
    for big in [false, true] {
        let spec = Spec {
            version: 2,
            big,
            slope: 0.25,
            inter: 10.0,
            ..Spec::default()
        };
        let p = write(
            dir.path(),
            &format!("n2_{big}.nii.gz"),
            &gzip(&build(&spec)),
        );
        check_image(&p, &spec);
        let r = NiftiReader::open(&p).unwrap();
        assert_eq!(r.header().version, 2);
        assert_eq!(r.scaling(), (0.25, 10.0));
    }
    // NaN slope => no scaling, like nibabel
    let spec = Spec {
        slope: f64::NAN,
        inter: 3.0,
        ..Spec::default()
    };
    let p = write(dir.path(), "nanslope.nii", &build(&spec));
    check_image(&p, &spec);
}

#[test]
fn affine_sform_qform_pixdim() {
    let dir = tempfile::tempdir().unwrap();
    // no codes: base affine diag(-dx, dy, dz), centred on the middle voxel
    let spec = Spec::default();
    let p = write(dir.path(), "base.nii", &build(&spec));
    let r = NiftiReader::open(&p).unwrap();
    let a = r.affine();
    assert_eq!(a[0], [-2.0, 0.0, 0.0, 2.0]); // -(3-1)/2 * -2
    assert_eq!(a[1], [0.0, 3.0, 0.0, -4.5]);
    assert_eq!(a[2], [0.0, 0.0, 4.0, -2.0]);
    // qform: 180 degrees about z (b=c=0, d=1 => a=0), qfac -1
    let spec = Spec {
        qform_code: 1,
        quatern: [0.0, 0.0, 1.0],
        qoffset: [10.0, 20.0, 30.0],
        pixdim: [-1.0, 2.0, 3.0, 4.0, 1.5, 0.0, 0.0, 0.0],
        ..Spec::default()
    };
    let p = write(dir.path(), "q.nii", &build(&spec));
    let a = NiftiReader::open(&p).unwrap().affine();
    let want = [
        [-2.0, 0.0, 0.0, 10.0],
        [0.0, -3.0, 0.0, 20.0],
        [0.0, 0.0, -4.0, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    for i in 0..4 {
        for j in 0..4 {
            assert!((a[i][j] - want[i][j]).abs() < 1e-12, "{a:?}");
        }
    }
    // sform wins over qform
    let srow = [
        [1.5, 0.1, 0.0, -5.0],
        [0.0, 2.5, 0.0, 6.0],
        [0.0, 0.0, 3.5, 7.0],
    ];
    let spec = Spec {
        sform_code: 2,
        qform_code: 1,
        quatern: [0.0, 0.0, 1.0],
        srow,
        ..Spec::default()
    };
    let p = write(dir.path(), "s.nii", &build(&spec));
    let a = NiftiReader::open(&p).unwrap().affine();
    for r in 0..3 {
        for c in 0..4 {
            assert_eq!(a[r][c], srow[r][c] as f32 as f64);
        }
    }
}

#[test]
fn tr_units_and_ms_quirk() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        pixdim: [1.0, 2.0, 2.0, 2.0, 2000.0, 0.0, 0.0, 0.0],
        ..Spec::default()
    };
    let p = write(dir.path(), "ms.nii", &build(&spec));
    let r = NiftiReader::open(&p).unwrap();
    assert!((r.info().sfreq_hz - 0.5).abs() < 1e-12);
    assert!(r.info().metadata["nifti.tr_decision"].contains("milliseconds"));
    let spec = Spec {
        pixdim: [1.0, 2.0, 2.0, 2.0, 720.0, 0.0, 0.0, 0.0],
        xyzt_units: 2 | 16,
        ..Spec::default()
    };
    let p = write(dir.path(), "ms2.nii", &build(&spec));
    let r = NiftiReader::open(&p).unwrap();
    assert!((1.0 / r.info().sfreq_hz - 0.72).abs() < 1e-6);
    // 3D image: no TR
    let spec = Spec {
        dims: [3, 4, 2, 1],
        pixdim: [1.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0],
        ..Spec::default()
    };
    let p = write(dir.path(), "anat.nii", &build(&spec));
    let mut r = NiftiReader::open(&p).unwrap();
    assert_eq!(r.info().sfreq_hz, 0.0);
    assert!(r.info().metadata["nifti.tr_decision"].starts_with("missing"));
    check_image(&p, &spec);
    assert_eq!(r.read_all().unwrap().signal.shape(), vec![1, 3, 4, 2]);
}

#[test]
fn short_file_is_truncated_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = build(&Spec::default());
    let p = write(dir.path(), "short.nii", &bytes[..bytes.len() - 7]);
    let e = NiftiReader::open(&p).err().unwrap();
    assert!(matches!(e, IoError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("short.nii"));
    // gzip of a short image: detected when the missing volume is read
    let p = write(dir.path(), "short.nii.gz", &gzip(&bytes[..bytes.len() - 7]));
    let mut r = NiftiReader::open(&p).unwrap();
    let e = r.read_all().err().unwrap();
    assert!(matches!(e, IoError::Truncated { .. }), "{e}");
    // dims that claim more volumes than stored
    let mut spec = Spec::default();
    let bytes = build(&spec);
    spec.dims[3] = 50;
    let mut lying = build(&spec);
    lying.truncate(bytes.len());
    let p = write(dir.path(), "lying.nii", &lying);
    assert!(matches!(
        NiftiReader::open(&p).err().unwrap(),
        IoError::Truncated { .. }
    ));
    // header itself short
    let p = write(dir.path(), "tiny.nii", &bytes[..100]);
    assert!(NiftiReader::open(&p).is_err());
}

#[test]
fn corrupt_gzip_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = gzip(&build(&Spec::default()));
    let n = gz.len();
    for b in &mut gz[20..n - 8] {
        *b ^= 0x5a;
    }
    let p = write(dir.path(), "bad.nii.gz", &gz);
    let e = match NiftiReader::open(&p) {
        Err(e) => e,
        Ok(mut r) => r.read_all().err().unwrap(),
    };
    assert!(e.to_string().contains("bad.nii.gz"), "{e}");
    // not gzip at all
    let p = write(dir.path(), "plain.nii.gz", &build(&Spec::default()));
    assert!(NiftiReader::open(&p).is_err());
}

#[test]
fn bad_header_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        bitpix: 8,
        ..Spec::default()
    };
    let p = write(dir.path(), "bitpix.nii", &build(&spec));
    let e = NiftiReader::open(&p).err().unwrap();
    assert!(e.to_string().contains("bitpix"), "{e}");
    let mut bytes = build(&Spec::default());
    bytes[70..72].copy_from_slice(&32i16.to_le_bytes()); // complex64
    bytes[72..74].copy_from_slice(&64i16.to_le_bytes());
    let p = write(dir.path(), "complex.nii", &bytes);
    let e = NiftiReader::open(&p).err().unwrap();
    assert!(e.to_string().contains("complex"), "{e}");
    let p = write(dir.path(), "garbage.nii", &[7u8; 600]);
    let e = NiftiReader::open(&p).err().unwrap();
    assert!(e.to_string().contains("sizeof_hdr"), "{e}");
}

#[test]
fn nan_volume_is_kept_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        datatype: 16,
        bitpix: 32,
        ..Spec::default()
    };
    let mut bytes = build(&spec);
    let nvox = 3 * 4 * 2;
    let start = 352 + 2 * nvox * 4; // volume 2
    for k in 0..nvox {
        bytes[start + 4 * k..start + 4 * k + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let p = write(dir.path(), "nan.nii", &bytes);
    let rec = neurofm_io::read_recording(&p).unwrap();
    let d = rec.signal.data();
    assert!(d[2 * nvox..3 * nvox].iter().all(|v| v.is_nan()));
    assert!(d[..2 * nvox].iter().all(|v| v.is_finite()));
    assert!(d[3 * nvox..].iter().all(|v| v.is_finite()));
}

/// Images of 1 MiB and more are read by `read_all`'s pipeline (decompression on one thread,
/// decode and transpose of the volumes read so far on the pool, the hash beside them): the
/// values, the segment reads and the provenance sha256 must be those of the plain path.
#[test]
fn big_images_read_through_the_pipeline() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let specs = [
        // 218 KB volumes: one task per volume, split by x
        Spec {
            dims: [70, 60, 13, 5],
            datatype: 16,
            bitpix: 32,
            slope: 0.5,
            inter: -3.0,
            ..Spec::default()
        },
        // 16 KB volumes: several volumes per task, the last task shorter
        Spec {
            dims: [20, 20, 10, 70],
            datatype: 8,
            bitpix: 32,
            big: true,
            ..Spec::default()
        },
        // one 2 MB volume
        Spec {
            dims: [100, 90, 60, 1],
            datatype: 16,
            bitpix: 32,
            version: 2,
            ..Spec::default()
        },
    ];
    for (i, spec) in specs.iter().enumerate() {
        let bytes = build(spec);
        assert!(bytes.len() > 1 << 20);
        for (name, file) in [
            (format!("big{i}.nii"), bytes.clone()),
            (format!("big{i}.nii.gz"), gzip(&bytes)),
        ] {
            let p = write(dir.path(), &name, &file);
            check_image(&p, spec);
            let rec = open_raw(&p).unwrap().read_all().unwrap();
            assert_eq!(
                rec.info.provenance.source_sha256,
                hex::encode(sha2::Sha256::digest(&file)),
                "{name}"
            );
        }
        // a gzip stream that ends 7 bytes early: an error naming the file, no panic
        let p = write(
            dir.path(),
            &format!("big{i}_short.nii.gz"),
            &gzip(&bytes[..bytes.len() - 7]),
        );
        let e = open_raw(&p).unwrap().read_all().err().unwrap();
        assert!(matches!(e, IoError::Truncated { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!("big{i}_short.nii.gz")),
            "{e}"
        );
    }
}
