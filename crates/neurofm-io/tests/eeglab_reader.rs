#![allow(clippy::unwrap_used)]
//! EEGLAB reader: the MNE test files (MAT v5 + .fdt, MAT v7.3/HDF5 + .fdt) against MNE's golden
//! values, embedded data, and malformed input.

mod vendor_common;

use neurofm_io::eeglab::EeglabReader;
use neurofm_io::{open_raw, IoError};
use vendor_common::*;

#[test]
fn mat5_set_with_fdt_matches_mne_golden() {
    let rel = "formats/mne-testing-data/EEGLAB/test_raw.set";
    let mut r = open_raw(&shared_file(rel)).expect("open");
    assert_eq!(r.info().provenance.reader, "eeglab");
    let rec = check_reader(r.as_mut());
    compare_with_golden(&rec, &golden(rel));
}

#[test]
fn mat73_set_with_fdt_matches_mne_golden() {
    let rel = "formats/mne-testing-data/EEGLAB/test_raw_h5.set";
    let mut r = open_raw(&shared_file(rel)).expect("open");
    let rec = check_reader(r.as_mut());
    compare_with_golden(&rec, &golden(rel));
}

#[test]
fn missing_fdt_is_a_missing_companion() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("copy.set");
    std::fs::copy(
        shared_file("formats/mne-testing-data/EEGLAB/test_raw.set"),
        &set,
    )
    .unwrap();
    let err = EeglabReader::open(&set).err().unwrap();
    assert!(matches!(err, IoError::MissingCompanion { .. }), "{err}");
    assert!(
        err.to_string().contains("copy.set") && err.to_string().contains("test_raw.fdt"),
        "{err}"
    );
}

/// A tiny MAT v5 writer (little-endian, uncompressed) for synthetic EEGLAB files.
mod mat5 {
    pub fn tag(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }
    fn matrix(class: u8, dims: &[usize], name: &str, body: &[u8]) -> Vec<u8> {
        let mut m = tag(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let d: Vec<u8> = dims
            .iter()
            .flat_map(|&x| (x as i32).to_le_bytes())
            .collect();
        m.extend(tag(5, &d));
        m.extend(tag(1, name.as_bytes()));
        m.extend_from_slice(body);
        tag(14, &m)
    }
    pub fn double(name: &str, dims: &[usize], v: &[f64]) -> Vec<u8> {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        matrix(6, dims, name, &tag(9, &b))
    }
    pub fn single(name: &str, dims: &[usize], v: &[f32]) -> Vec<u8> {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        matrix(7, dims, name, &tag(7, &b))
    }
    pub fn uint8(name: &str, v: u8) -> Vec<u8> {
        matrix(9, &[1, 1], name, &tag(2, &[v]))
    }
    pub fn text(name: &str, s: &str) -> Vec<u8> {
        let b: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        matrix(4, &[1, s.len()], name, &tag(4, &b))
    }
    /// A struct array; `elements[i]` are the field values (already encoded, unnamed).
    pub fn structure(name: &str, fields: &[&str], elements: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut body = tag(5, &32i32.to_le_bytes());
        let mut names = vec![0u8; 32 * fields.len()];
        for (i, f) in fields.iter().enumerate() {
            names[i * 32..i * 32 + f.len()].copy_from_slice(f.as_bytes());
        }
        body.extend(tag(1, &names));
        for e in elements {
            for v in e {
                body.extend_from_slice(v);
            }
        }
        matrix(2, &[1, elements.len()], name, &body)
    }
    pub fn file(vars: &[Vec<u8>]) -> Vec<u8> {
        let mut h = vec![b' '; 128];
        h[..10].copy_from_slice(b"MATLAB 5.0");
        h[124] = 0;
        h[125] = 1;
        h[126] = b'I';
        h[127] = b'M';
        for v in vars {
            h.extend_from_slice(v);
        }
        h
    }
}

fn synthetic_set(srate: Vec<u8>, trials: u8, data: Vec<u8>) -> Vec<u8> {
    use mat5::*;
    let chanlocs = structure(
        "",
        &["labels", "type"],
        &[
            vec![text("", "Fz"), text("", "EEG")],
            vec![text("", "VEOG"), text("", "EOG")],
            vec![text("", "Trig"), text("", "weird")],
        ],
    );
    let events = structure(
        "",
        &["type", "latency", "duration"],
        &[
            vec![
                text("", "stim"),
                double("", &[1, 1], &[2.0]),
                double("", &[1, 1], &[2.0]),
            ],
            vec![
                double("", &[1, 1], &[7.0]),
                double("", &[1, 1], &[3.0]),
                double("", &[0, 0], &[]),
            ],
            vec![
                uint8("", 3),
                double("", &[0, 0], &[]),
                double("", &[1, 1], &[1.0]),
            ],
        ],
    );
    let eeg = structure(
        "EEG",
        &[
            "nbchan", "trials", "pnts", "srate", "data", "chanlocs", "event", "subject",
        ],
        &[vec![
            uint8("", 3),
            uint8("", trials),
            double("", &[1, 1], &[4.0]),
            srate,
            data,
            chanlocs,
            events,
            text("", "S01"),
        ]],
    );
    file(&[eeg])
}

#[test]
fn embedded_data_chanlocs_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("emb.set");
    // Column-major [3 channels, 4 samples]: value = 10*c + t µV.
    let mut v = Vec::new();
    for t in 0..4 {
        for c in 0..3 {
            v.push((10 * c + t) as f32);
        }
    }
    std::fs::write(
        &p,
        synthetic_set(
            mat5::double("", &[1, 1], &[250.0]),
            1,
            mat5::single("", &[3, 4], &v),
        ),
    )
    .unwrap();
    let mut r = EeglabReader::open(&p).unwrap();
    let rec = check_reader(&mut r);
    let names: Vec<&str> = rec.info.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Fz", "VEOG", "Trig"]);
    let kinds: Vec<&str> = rec.info.channels.iter().map(|c| mne_type(c.kind)).collect();
    assert_eq!(kinds, ["eeg", "eog", "eeg"]); // unknown types are EEG, as MNE
    assert_eq!(
        rec.signal.channel(2).unwrap(),
        &[20e-6f32, 21e-6, 22e-6, 23e-6]
    );
    assert_eq!(rec.info.sfreq_hz, 250.0);
    assert_eq!(rec.info.subject.as_deref(), Some("S01"));
    // Event 3 has no latency and is dropped; numeric double types print as "7.0".
    assert_eq!(rec.annotations.len(), 2);
    assert_eq!(rec.annotations[0].description, "stim");
    assert!((rec.annotations[0].onset_s - 1.0 / 250.0).abs() < 1e-12);
    assert!((rec.annotations[0].duration_s - 2.0 / 250.0).abs() < 1e-12);
    assert_eq!(rec.annotations[1].description, "7.0");
    assert_eq!(rec.annotations[1].duration_s, 0.0);
}

#[test]
fn bad_sets_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.set");
    let data = || mat5::single("", &[3, 4], &[0.0; 12]);
    // Non-numeric srate.
    std::fs::write(&p, synthetic_set(mat5::text("", "fast"), 1, data())).unwrap();
    let e = EeglabReader::open(&p).err().unwrap();
    assert!(
        matches!(e, IoError::Header { ref field, .. } if field == "EEG.srate"),
        "{e}"
    );
    // Epoched.
    std::fs::write(
        &p,
        synthetic_set(mat5::double("", &[1, 1], &[250.0]), 2, data()),
    )
    .unwrap();
    assert!(matches!(
        EeglabReader::open(&p).err().unwrap(),
        IoError::Unsupported { .. }
    ));
    // Data disagree with nbchan x pnts.
    std::fs::write(
        &p,
        synthetic_set(
            mat5::double("", &[1, 1], &[250.0]),
            1,
            mat5::single("", &[3, 3], &[0.0; 9]),
        ),
    )
    .unwrap();
    let e = EeglabReader::open(&p).err().unwrap();
    assert!(
        matches!(e, IoError::Header { ref field, .. } if field == "EEG.data"),
        "{e}"
    );
    // .fdt shorter than nbchan x pnts x 4.
    std::fs::write(
        &p,
        synthetic_set(
            mat5::double("", &[1, 1], &[250.0]),
            1,
            mat5::text("", "bad.fdt"),
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.fdt"), [0u8; 40]).unwrap();
    let e = EeglabReader::open(&p).err().unwrap();
    assert!(
        matches!(
            e,
            IoError::Truncated {
                expected: 48,
                got: 40,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("bad.fdt"));
    // Not a MAT-file at all, and every truncation of a good one: errors, never panics.
    std::fs::write(&p, b"hello").unwrap();
    assert!(EeglabReader::open(&p).is_err());
    let good = synthetic_set(mat5::double("", &[1, 1], &[250.0]), 1, data());
    for n in (0..good.len()).step_by(13) {
        std::fs::write(&p, &good[..n]).unwrap();
        assert!(EeglabReader::open(&p).is_err());
    }
}
