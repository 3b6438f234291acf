#![allow(clippy::unwrap_used)]
//! FIF raw reader: the KIT, CTF (with compensation) and discontinuous CTF files against MNE's
//! golden values, gzip, data skips, and malformed input.

mod vendor_common;

use neurofm_io::fif::FifReader;
use neurofm_io::{open_raw, IoError, RawReader};
use vendor_common::*;

fn golden_case(rel: &str) -> neurofm_core::Recording {
    let mut r = open_raw(&shared_file(rel)).expect("open");
    assert_eq!(r.info().provenance.reader, "fif");
    let rec = check_reader(r.as_mut());
    let g = golden(rel);
    compare_with_golden(&rec, &g);
    assert_eq!(
        rec.info.meas_date.as_deref(),
        g["meas_date"].as_str(),
        "meas_date of {rel}"
    );
    rec
}

#[test]
fn kit_matches_mne_golden() {
    let rec = golden_case("formats/mne-python/kit_test_bin_raw.fif");
    assert_eq!(rec.info.modality, neurofm_core::Modality::Meg);
}

#[test]
fn ctf_comp_matches_mne_golden() {
    let rec = golden_case("formats/mne-python/test_ctf_comp_raw.fif");
    assert!(
        rec.info.metadata.contains_key("fif.ctf_comp_grade"),
        "{:?}",
        rec.info.metadata
    );
}

#[test]
fn ctf_discontinuous_matches_mne_golden() {
    golden_case("formats/mne-testing-data/CTF/testdata_ctf_short_discontinuous.ds_raw.fif");
}

/// A tiny FIF writer for synthetic files (sequential tags, `next` = 0).
struct Fif(Vec<u8>);

impl Fif {
    fn tag(&mut self, kind: i32, ty: u32, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&kind.to_be_bytes());
        self.0.extend_from_slice(&ty.to_be_bytes());
        self.0.extend_from_slice(&(data.len() as i32).to_be_bytes());
        self.0.extend_from_slice(&0i32.to_be_bytes());
        self.0.extend_from_slice(data);
        self
    }
    fn int(&mut self, kind: i32, v: &[i32]) -> &mut Self {
        let d: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
        self.tag(kind, 3, &d)
    }
    fn start(&mut self, block: i32) -> &mut Self {
        self.int(104, &[block])
    }
    fn end(&mut self, block: i32) -> &mut Self {
        self.int(105, &[block])
    }
    fn ch(&mut self, name: &str, kind: i32, range: f32, cal: f32, unit: i32) -> &mut Self {
        let mut d = Vec::new();
        for v in [1i32, 1, kind] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(&range.to_be_bytes());
        d.extend_from_slice(&cal.to_be_bytes());
        d.extend_from_slice(&0i32.to_be_bytes());
        d.extend_from_slice(&[0u8; 48]);
        d.extend_from_slice(&unit.to_be_bytes());
        d.extend_from_slice(&0i32.to_be_bytes());
        let mut n = [0u8; 16];
        n[..name.len()].copy_from_slice(name.as_bytes());
        d.extend_from_slice(&n);
        self.tag(203, 30, &d)
    }
}

/// 2 channels (EEG in V with cal 2, stim), first_samp 100, buffers: short(3 samples),
/// skip of 1 buffer, float(3), int(3), double(3), dau_pack16(3).
fn synthetic() -> Vec<u8> {
    let mut f = Fif(Vec::new());
    f.tag(100, 31, &[0u8; 20])
        .start(100)
        .start(101)
        .int(200, &[2]);
    f.tag(201, 4, &250f32.to_be_bytes());
    f.int(204, &[1_000_000_000, 5]);
    f.ch("EEG 001", 2, 1.0, 2.0, 107)
        .ch("STI 014", 3, 1.0, 1.0, -1);
    f.start(359).tag(3507, 10, b"STI 014").end(359);
    f.end(101).start(102).int(208, &[100]);
    let frame = |v: [f64; 2], ty: u32| -> Vec<u8> {
        match ty {
            2 | 16 => v.iter().flat_map(|&x| (x as i16).to_be_bytes()).collect(),
            3 => v.iter().flat_map(|&x| (x as i32).to_be_bytes()).collect(),
            4 => v.iter().flat_map(|&x| (x as f32).to_be_bytes()).collect(),
            _ => v.iter().flat_map(|&x| x.to_be_bytes()).collect(),
        }
    };
    let mut t = 0;
    for (i, ty) in [2u32, 4, 3, 5, 16].into_iter().enumerate() {
        if i == 1 {
            f.int(301, &[1]);
            t += 3;
        }
        let mut d = Vec::new();
        for _ in 0..3 {
            d.extend(frame([t as f64, -(t as f64)], ty));
            t += 1;
        }
        f.tag(300, ty, &d);
    }
    f.end(102).end(100);
    f.0
}

#[test]
fn synthetic_buffers_skips_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("syn_raw.fif");
    std::fs::write(&p, synthetic()).unwrap();
    let mut r = FifReader::open(&p).unwrap();
    assert_eq!(r.first_samp, 100);
    let rec = check_reader(&mut r);
    assert_eq!(rec.signal.n_times(), 18);
    let eeg = rec.signal.channel(0).unwrap();
    let want: Vec<f32> = (0..18)
        .map(|t| {
            if (3..6).contains(&t) {
                0.0
            } else {
                2.0 * t as f32
            }
        })
        .collect();
    assert_eq!(eeg, &want[..]);
    let stim = rec.signal.channel(1).unwrap();
    assert_eq!(stim[17], -17.0);
    assert_eq!(mne_type(rec.info.channels[1].kind), "stim");
    assert!(rec.info.channels[1].bad && !rec.info.channels[0].bad);
    assert_eq!(
        rec.info.meas_date.as_deref(),
        Some("2001-09-09T01:46:40.000005+00:00")
    );

    // The same file gzip-compressed reads the same.
    let gz = dir.path().join("syn_raw.fif.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &synthetic()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let rec2 = open_raw(&gz).unwrap().read_all().unwrap();
    assert_eq!(rec2.signal, rec.signal);
}

#[test]
fn malformed_fif_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad_raw.fif");
    let good = synthetic();
    // Every truncation: an error (or, at a block boundary, a shorter reader), never a panic.
    for n in 0..good.len() {
        std::fs::write(&p, &good[..n]).unwrap();
        if let Ok(mut r) = FifReader::open(&p) {
            let _ = r.read_all();
        }
    }
    std::fs::write(&p, &good[..good.len() - 30]).unwrap();
    let e = FifReader::open(&p).err().unwrap();
    assert!(matches!(e, IoError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("bad_raw.fif"));
    // Not a FIF file.
    std::fs::write(&p, [7u8; 64]).unwrap();
    let e = FifReader::open(&p).err().unwrap();
    assert!(
        e.to_string().contains("FIFF_FILE_ID") || e.to_string().contains("file id"),
        "{e}"
    );
    // NCHAN disagrees with the channel infos.
    let mut b = good.clone();
    let at = b
        .windows(8)
        .position(|w| w == [0, 0, 0, 200, 0, 0, 0, 3])
        .unwrap();
    b[at + 16..at + 20].copy_from_slice(&3i32.to_be_bytes());
    std::fs::write(&p, &b).unwrap();
    let e = FifReader::open(&p).err().unwrap();
    assert!(
        matches!(e, IoError::Header { ref field, .. } if field == "FIFF_CH_INFO"),
        "{e}"
    );
    // Unknown buffer type.
    let mut b = good.clone();
    let at = b
        .windows(8)
        .position(|w| w == [0, 0, 1, 44, 0, 0, 0, 2])
        .unwrap();
    b[at + 4..at + 8].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(
        FifReader::open(&p).err().unwrap(),
        IoError::Unsupported { .. }
    ));
}
