#![allow(clippy::unwrap_used)]
//! BrainVision reader: the real MNE test file against MNE's golden values, synthetic files in
//! every binary format and orientation, and malformed input.

mod vendor_common;

use std::path::{Path, PathBuf};

use neurofm_core::{ChannelKind, Unit};
use neurofm_io::brainvision::BrainVisionReader;
use neurofm_io::{open_raw, IoError, RawReader};
use vendor_common::*;

#[test]
fn test_no_matches_mne_golden() {
    let rel = "formats/mne-testing-data/Brainvision/test_NO.vhdr";
    let mut r = open_raw(&shared_file(rel)).expect("open");
    assert_eq!(r.info().provenance.reader, "brainvision");
    let rec = check_reader(r.as_mut());
    compare_with_golden(&rec, &golden(rel));
    assert_eq!(rec.info.meas_date, None);
}

/// Writes a BrainVision triple. `values[c][t]` are raw (digital) values.
struct Bv<'a> {
    format: &'a str,
    orientation: &'a str,
    channels: Vec<(&'a str, &'a str, &'a str)>, // name, resolution, unit
    values: Vec<Vec<f64>>,
    markers: &'a str,
    big_endian: bool,
}

impl Bv<'_> {
    fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let nc = self.channels.len();
        let nt = self.values[0].len();
        let mut bytes = Vec::new();
        let mut push = |v: f64| match (self.format, self.big_endian) {
            ("INT_16", false) => bytes.extend_from_slice(&(v as i16).to_le_bytes()),
            ("INT_16", true) => bytes.extend_from_slice(&(v as i16).to_be_bytes()),
            ("INT_32", false) => bytes.extend_from_slice(&(v as i32).to_le_bytes()),
            ("IEEE_FLOAT_32", false) => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
            ("IEEE_FLOAT_32", true) => bytes.extend_from_slice(&(v as f32).to_be_bytes()),
            _ => bytes.extend_from_slice(&(v as i32).to_be_bytes()),
        };
        if self.orientation == "MULTIPLEXED" {
            for t in 0..nt {
                for c in 0..nc {
                    push(self.values[c][t]);
                }
            }
        } else {
            for c in 0..nc {
                for t in 0..nt {
                    push(self.values[c][t]);
                }
            }
        }
        std::fs::write(dir.join(format!("{stem}.eeg")), &bytes).unwrap();
        let mut h = String::from("Brain Vision Data Exchange Header File Version 1.0\n; test\n\n[Common Infos]\nCodepage=UTF-8\n");
        h += &format!(
            "DataFile={stem}.eeg\nMarkerFile={stem}.vmrk\nDataFormat=BINARY\nDataOrientation={}\n",
            self.orientation
        );
        h += &format!("NumberOfChannels={nc}\nSamplingInterval=2000\n");
        if self.orientation == "VECTORIZED" {
            h += &format!("DataPoints={nt}\n");
        }
        h += &format!("\n[Binary Infos]\nBinaryFormat={}\n", self.format);
        if self.big_endian {
            h += "UseBigEndianOrder=YES\n";
        }
        h += "\n[Channel Infos]\n; Ch<n>=name,ref,resolution,unit\n";
        for (i, (n, r, u)) in self.channels.iter().enumerate() {
            h += &format!("Ch{}={n},,{r},{u}\n", i + 1);
        }
        h += "\n[Comment]\nCh9999=ignored,,1,µV\n";
        let hp = dir.join(format!("{stem}.vhdr"));
        std::fs::write(&hp, h).unwrap();
        let m = format!("Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile={stem}.eeg\n\n[Marker Infos]\n{}", self.markers);
        std::fs::write(dir.join(format!("{stem}.vmrk")), m).unwrap();
        hp
    }
}

fn ramp(nc: usize, nt: usize) -> Vec<Vec<f64>> {
    (0..nc)
        .map(|c| {
            (0..nt)
                .map(|t| (t as f64 * 3.0 - 50.0) * (c as f64 + 1.0))
                .collect()
        })
        .collect()
}

const MARKERS: &str = "Mk1=New Segment,,1,1,0,20240131120000123456\nMk2=Stimulus,S  1,11,1,0\nMk3=Response,R\\1 2,21,5,0\nMk4=Comment,x,31,,0\n";

#[test]
fn all_formats_and_orientations() {
    let dir = tempfile::tempdir().unwrap();
    let chans = vec![
        ("Fp1", "0.1", "µV"),
        ("HEOGL", "2", "uV"),
        ("Temp", "1", "C"),
        ("X\\1Y", "0.5", "mV"),
        ("Gsr", "1", "weird"),
    ];
    let scale = [0.1e-6, 2e-6, 1.0, 0.5e-3, 1.0];
    let values = ramp(chans.len(), 40);
    let mut i = 0;
    for format in ["INT_16", "INT_32", "IEEE_FLOAT_32"] {
        for orientation in ["MULTIPLEXED", "VECTORIZED"] {
            for big_endian in [false, true] {
                if big_endian && format == "INT_32" {
                    continue;
                }
                let bv = Bv {
                    format,
                    orientation,
                    channels: chans.clone(),
                    values: values.clone(),
                    markers: MARKERS,
                    big_endian,
                };
                i += 1;
                let hp = bv.write(dir.path(), &format!("rec{i}"));
                let mut r = BrainVisionReader::open(&hp)
                    .unwrap_or_else(|e| panic!("{format} {orientation}: {e}"));
                let rec = check_reader(&mut r);
                assert_eq!(rec.info.sfreq_hz, 500.0);
                assert_eq!(rec.signal.n_times(), 40);
                let kinds: Vec<ChannelKind> = rec.info.channels.iter().map(|c| c.kind).collect();
                assert_eq!(
                    kinds,
                    [
                        ChannelKind::Eeg,
                        ChannelKind::Eog,
                        ChannelKind::Misc,
                        ChannelKind::Eeg,
                        ChannelKind::Misc
                    ]
                );
                assert_eq!(rec.info.channels[3].name, "X,Y");
                assert_eq!(rec.info.channels[0].unit, Unit::Volt);
                assert_eq!(rec.info.channels[4].unit, Unit::Other("weird".into()));
                for c in 0..chans.len() {
                    let row = rec.signal.channel(c).unwrap();
                    for t in 0..40 {
                        let want = (values[c][t] * scale[c]) as f32;
                        assert!(
                            (row[t] - want).abs() <= want.abs() * 1e-6,
                            "{format} {orientation} c{c} t{t}: {} vs {want}",
                            row[t]
                        );
                    }
                }
                // MNE: the leading New Segment gives the date and is not an annotation.
                assert_eq!(
                    rec.info.meas_date.as_deref(),
                    Some("2024-01-31T12:00:00.123456+00:00")
                );
                let a = &rec.annotations;
                assert_eq!(a.len(), 3);
                assert_eq!(a[0].description, "Stimulus/S  1");
                assert!((a[0].onset_s - 10.0 / 500.0).abs() < 1e-12);
                assert!((a[0].duration_s - 1.0 / 500.0).abs() < 1e-12);
                assert_eq!(a[1].description, "Response/R, 2");
                assert!((a[1].duration_s - 5.0 / 500.0).abs() < 1e-12);
                assert_eq!(a[2].duration_s, 0.0);
            }
        }
    }
}

#[test]
fn latin1_header_and_unitless_channels() {
    let dir = tempfile::tempdir().unwrap();
    let bv = Bv {
        format: "INT_16",
        orientation: "MULTIPLEXED",
        channels: vec![("Cz", "1", "µV")],
        values: ramp(1, 4),
        markers: "",
        big_endian: false,
    };
    let hp = bv.write(dir.path(), "lat");
    // Rewrite the header in Latin-1 with an old-style channel line without a unit (µV implied).
    let text = std::fs::read_to_string(&hp)
        .unwrap()
        .replace("Codepage=UTF-8", "Codepage=ANSI")
        .replace("Ch1=Cz,,1,µV", "Ch1=Cz\u{e9},,2");
    let bytes: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    std::fs::write(&hp, bytes).unwrap();
    let rec = BrainVisionReader::open(&hp).unwrap().read_all().unwrap();
    assert_eq!(rec.info.channels[0].name, "Cz\u{e9}");
    assert_eq!(rec.info.channels[0].unit, Unit::Volt);
    assert_eq!(rec.signal.channel(0).unwrap()[0], (-50.0 * 2e-6) as f32);
}

fn one_channel(dir: &Path) -> PathBuf {
    Bv {
        format: "INT_16",
        orientation: "MULTIPLEXED",
        channels: vec![("Cz", "1", "µV"), ("Pz", "1", "µV")],
        values: ramp(2, 10),
        markers: "Mk1=Stimulus,S 1,2,1,0\n",
        big_endian: false,
    }
    .write(dir, "x")
}

fn edit(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, s.replace(from, to)).unwrap();
}

fn expect_header_err(hp: &Path, field: &str) {
    match BrainVisionReader::open(hp) {
        Err(IoError::Header { field: f, path, .. }) => {
            assert!(f.contains(field), "field {f} does not name {field}");
            assert!(path.ends_with(hp.file_name().unwrap()) || path.extension().is_some());
        }
        Err(e) => panic!("expected a header error naming {field}, got {e}"),
        Ok(_) => panic!("expected a header error naming {field}, got Ok"),
    }
}

#[test]
fn missing_companions() {
    let dir = tempfile::tempdir().unwrap();
    let hp = one_channel(dir.path());
    std::fs::remove_file(dir.path().join("x.vmrk")).unwrap();
    let err = BrainVisionReader::open(&hp).err().unwrap();
    assert!(
        matches!(err, IoError::MissingCompanion { ref companion, .. } if companion.ends_with("x.vmrk")),
        "{err}"
    );
    let hp = one_channel(dir.path());
    std::fs::remove_file(dir.path().join("x.eeg")).unwrap();
    let err = BrainVisionReader::open(&hp).err().unwrap();
    assert!(
        matches!(err, IoError::MissingCompanion { ref companion, .. } if companion.ends_with("x.eeg")),
        "{err}"
    );
    assert!(err.to_string().contains("x.vhdr"));
}

#[test]
fn stale_marker_file_name_uses_sibling() {
    let dir = tempfile::tempdir().unwrap();
    let hp = one_channel(dir.path());
    edit(&hp, "MarkerFile=x.vmrk", "MarkerFile=renamed.vmrk");
    let r = BrainVisionReader::open(&hp).unwrap();
    assert_eq!(r.annotations().len(), 1);
}

#[test]
fn bad_headers_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "NumberOfChannels=2",
            "NumberOfChannels=two",
            "NumberOfChannels",
        ),
        (
            "NumberOfChannels=2",
            "NumberOfChannels=0",
            "NumberOfChannels",
        ),
        ("NumberOfChannels=2", "NumberOfChannels=3", "Ch3"),
        (
            "SamplingInterval=2000",
            "SamplingInterval=abc",
            "SamplingInterval",
        ),
        (
            "SamplingInterval=2000",
            "SamplingInterval=-1",
            "SamplingInterval",
        ),
        ("SamplingInterval=2000\n", "", "SamplingInterval"),
        (
            "DataOrientation=MULTIPLEXED",
            "DataOrientation=DIAGONAL",
            "DataOrientation",
        ),
        ("Ch1=Cz,,1,µV", "Ch1=Cz,,one,µV", "resolution"),
        ("Ch2=Pz", "Ch7=Pz", "Ch7"),
        (
            "Brain Vision Data Exchange Header File Version 1.0",
            "Some Other Format",
            "identification",
        ),
        ("DataFile=x.eeg\n", "", "DataFile"),
    ];
    for (from, to, field) in cases {
        let hp = one_channel(dir.path());
        edit(&hp, from, to);
        expect_header_err(&hp, field);
    }
    let hp = one_channel(dir.path());
    edit(
        &dir.path().join("x.vmrk"),
        "Mk1=Stimulus,S 1,2,1,0",
        "Mk1=Stimulus,S 1,two,1,0",
    );
    expect_header_err(&hp, "position");
}

#[test]
fn unsupported_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("BinaryFormat=INT_16", "BinaryFormat=UINT_8"),
        ("DataFormat=BINARY", "DataFormat=ASCII"),
    ] {
        let hp = one_channel(dir.path());
        edit(&hp, from, to);
        let err = BrainVisionReader::open(&hp).err().unwrap();
        assert!(matches!(err, IoError::Unsupported { .. }), "{err}");
    }
}

#[test]
fn truncated_and_disagreeing_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let hp = one_channel(dir.path());
    let eeg = dir.path().join("x.eeg");
    let mut b = std::fs::read(&eeg).unwrap();
    b.pop();
    std::fs::write(&eeg, &b).unwrap();
    let err = BrainVisionReader::open(&hp).err().unwrap();
    assert!(matches!(err, IoError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("x.eeg"));

    let hp = one_channel(dir.path());
    edit(
        &hp,
        "SamplingInterval=2000",
        "SamplingInterval=2000\nDataPoints=11",
    );
    let err = BrainVisionReader::open(&hp).err().unwrap();
    assert!(matches!(err, IoError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("DataPoints"));
}

#[test]
fn garbage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let hp = one_channel(dir.path());
    let orig = std::fs::read(&hp).unwrap();
    // Every prefix of the header: an error or a reader, never a panic.
    for n in (0..orig.len()).step_by(7) {
        std::fs::write(&hp, &orig[..n]).unwrap();
        let _ = BrainVisionReader::open(&hp);
    }
}
