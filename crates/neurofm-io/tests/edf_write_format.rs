//! The EDF+ writer's bytes, parsed back by a minimal independent EDF+ parser written here from
//! the specification (MNE reads the same files in `scripts/check/mne_reads_our_edf.py`).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};
use neurofm_io::edf_write::{write_edf_plus, write_edf_plus_with, EdfWriteOptions};
use neurofm_io::IoError;

struct Parsed {
    reserved: String,
    patient: String,
    recording: String,
    startdate: String,
    starttime: String,
    n_records: usize,
    record_s: f64,
    labels: Vec<String>,
    dims: Vec<String>,
    phys: Vec<(f64, f64)>,
    dig: Vec<(f64, f64)>,
    spr: Vec<usize>,
    /// physical values per ordinary signal
    data: Vec<Vec<f64>>,
    /// (onset, duration, text) of every annotation TAL, and the time-keeping onsets per record
    annotations: Vec<(f64, f64, String)>,
    timekeeping: Vec<f64>,
}

fn txt(b: &[u8]) -> String {
    String::from_utf8(b.to_vec())
        .unwrap()
        .trim_end()
        .to_string()
}

fn parse(path: &Path) -> Parsed {
    let b = std::fs::read(path).unwrap();
    let ns: usize = txt(&b[252..256]).parse().unwrap();
    assert_eq!(txt(&b[184..192]).parse::<usize>().unwrap(), 256 * (ns + 1));
    let mut off = 256;
    let mut take = |w: usize| -> Vec<String> {
        let v = (0..ns)
            .map(|i| txt(&b[off + i * w..off + (i + 1) * w]))
            .collect();
        off += ns * w;
        v
    };
    let labels = take(16);
    let _transducer = take(80);
    let dims = take(8);
    let pmin = take(8);
    let pmax = take(8);
    let dmin = take(8);
    let dmax = take(8);
    let _prefilter = take(80);
    let spr: Vec<usize> = take(8).iter().map(|s| s.parse().unwrap()).collect();
    let _res = take(32);
    let f = |v: &[String]| -> Vec<f64> { v.iter().map(|s| s.parse().unwrap()).collect() };
    let (pmin, pmax, dmin, dmax) = (f(&pmin), f(&pmax), f(&dmin), f(&dmax));
    let n_records: usize = txt(&b[236..244]).parse().unwrap();
    let record_s: f64 = txt(&b[244..252]).parse().unwrap();
    let annot = labels.iter().position(|l| l == "EDF Annotations").unwrap();
    let rec_bytes: usize = spr.iter().map(|s| 2 * s).sum();
    assert_eq!(b.len(), 256 * (ns + 1) + n_records * rec_bytes, "file size");
    let mut data = vec![Vec::new(); ns];
    let mut annotations = Vec::new();
    let mut timekeeping = Vec::new();
    for r in 0..n_records {
        let mut p = 256 * (ns + 1) + r * rec_bytes;
        for s in 0..ns {
            let chunk = &b[p..p + 2 * spr[s]];
            p += 2 * spr[s];
            if s == annot {
                let mut first = true;
                for tal in chunk.split(|&c| c == 0).filter(|t| !t.is_empty()) {
                    let parts: Vec<&[u8]> = tal.split(|&c| c == 0x14).collect();
                    let head = std::str::from_utf8(parts[0]).unwrap();
                    let (on, dur) = match head.split_once('\x15') {
                        Some((o, d)) => (o.parse::<f64>().unwrap(), d.parse::<f64>().unwrap()),
                        None => (head.parse::<f64>().unwrap(), 0.0),
                    };
                    if first {
                        assert_eq!(parts.len(), 3, "time-keeping TAL is +onset\\x14\\x14");
                        assert!(parts[1].is_empty());
                        timekeeping.push(on);
                        first = false;
                        continue;
                    }
                    for text in &parts[1..parts.len() - 1] {
                        annotations.push((on, dur, String::from_utf8(text.to_vec()).unwrap()));
                    }
                }
            } else {
                let gain = (pmax[s] - pmin[s]) / (dmax[s] - dmin[s]);
                for v in chunk.chunks_exact(2) {
                    let d = i16::from_le_bytes([v[0], v[1]]) as f64;
                    data[s].push((d - dmin[s]) * gain + pmin[s]);
                }
            }
        }
    }
    Parsed {
        reserved: txt(&b[192..236]),
        patient: txt(&b[8..88]),
        recording: txt(&b[88..168]),
        startdate: txt(&b[168..176]),
        starttime: txt(&b[176..184]),
        n_records,
        record_s,
        labels,
        dims,
        phys: pmin.into_iter().zip(pmax).collect(),
        dig: dmin.into_iter().zip(dmax).collect(),
        spr,
        data,
        annotations,
        timekeeping,
    }
}

fn recording(n_samples: usize, sfreq: f64, annotations: Vec<Annotation>) -> Recording {
    let mut chans = vec![
        ChannelInfo::new("Fp1", ChannelKind::Eeg, Unit::Volt),
        ChannelInfo::new("C3", ChannelKind::Eeg, Unit::Volt),
        ChannelInfo::new("EOG left", ChannelKind::Eog, Unit::Volt),
        ChannelInfo::new("Trigger", ChannelKind::Stim, Unit::Arbitrary),
    ];
    chans[1].bad = true;
    let nc = chans.len();
    let mut data = vec![0f32; nc * n_samples];
    for t in 0..n_samples {
        let x = t as f64 / sfreq;
        data[t] = (30e-6 * (2.0 * std::f64::consts::PI * 10.0 * x).sin()) as f32;
        data[n_samples + t] = (-5e-6 + 1e-6 * ((t * 7919) % 13) as f64) as f32;
        data[2 * n_samples + t] = (150e-6 * (x * 0.3).cos() - 20e-6) as f32;
        data[3 * n_samples + t] = ((t / 37) % 4) as f32;
    }
    let mut info = Info::new(Modality::Eeg, sfreq, chans);
    info.subject = Some("sub 07".into());
    info.meas_date = Some("2021-06-15T13:45:30Z".into());
    Recording::new(
        info,
        Signal::channels(nc, n_samples, data).unwrap(),
        annotations,
    )
    .unwrap()
}

fn check_data(rec: &Recording, p: &Parsed, scales: &[f64]) {
    let Signal::Channels {
        n_channels,
        n_samples,
        data,
    } = &rec.signal
    else {
        unreachable!()
    };
    for c in 0..*n_channels {
        let (lo, hi) = p.phys[c];
        let step = (hi - lo) / (p.dig[c].1 - p.dig[c].0);
        let row = &data[c * n_samples..(c + 1) * n_samples];
        let (dmin, dmax) = row.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| {
            (a.min(v as f64), b.max(v as f64))
        });
        // The range is the data's, rounded outwards only a little.
        assert!(lo <= dmin * scales[c] + 1e-9 && hi >= dmax * scales[c] - 1e-9);
        assert!(
            (hi - lo) <= (dmax - dmin) * scales[c] * 1.01 + 2.1,
            "channel {c} range [{lo}, {hi}], data [{dmin}, {dmax}]"
        );
        for (t, &v) in row.iter().enumerate() {
            let got = p.data[c][t];
            let want = v as f64 * scales[c];
            assert!(
                (got - want).abs() <= 0.5 * step * (1.0 + 1e-6) + 1e-9,
                "channel {c} sample {t}: {got} vs {want} (step {step})"
            );
        }
    }
}

#[test]
fn header_data_and_annotations_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.edf");
    let ann = vec![
        Annotation {
            onset_s: 0.5,
            duration_s: 4.0,
            description: "left".into(),
        },
        Annotation {
            onset_s: 7.125,
            duration_s: 0.0,
            description: "Ünïcödé marker".into(),
        },
    ];
    let rec = recording(2000, 200.0, ann.clone());
    write_edf_plus(&path, &rec).unwrap();
    let p = parse(&path);
    assert_eq!(p.reserved, "EDF+C");
    assert_eq!(p.patient, "sub_07 X X X");
    assert_eq!(p.recording, "Startdate 15-JUN-2021 X X neurofm");
    assert_eq!(
        (p.startdate.as_str(), p.starttime.as_str()),
        ("15.06.21", "13.45.30")
    );
    assert_eq!(p.record_s, 1.0);
    assert_eq!(p.n_records, 10);
    assert_eq!(
        p.labels,
        ["Fp1", "C3", "EOG left", "Trigger", "EDF Annotations"]
    );
    assert_eq!(p.dims[..4], ["uV", "uV", "uV", ""]);
    assert_eq!(p.spr[..4], [200, 200, 200, 200]);
    assert!(p.dig.iter().all(|&d| d == (-32768.0, 32767.0)));
    assert_eq!(p.timekeeping, (0..10).map(|r| r as f64).collect::<Vec<_>>());
    let got: Vec<(f64, f64, String)> = ann
        .iter()
        .map(|a| (a.onset_s, a.duration_s, a.description.clone()))
        .collect();
    assert_eq!(p.annotations, got);
    check_data(&rec, &p, &[1e6, 1e6, 1e6, 1.0]);
    // Atomic write: nothing but the target is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["a.edf"]);
}

#[test]
fn long_annotation_lists_are_spread_over_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.edf");
    let ann: Vec<Annotation> = (0..500)
        .map(|i| Annotation {
            onset_s: i as f64 * 0.017,
            duration_s: if i % 3 == 0 { 0.25 } else { 0.0 },
            description: format!("event number {i} with a fairly long description"),
        })
        .collect();
    let rec = recording(1000, 100.0, ann.clone());
    write_edf_plus(&path, &rec).unwrap();
    let p = parse(&path);
    assert_eq!(p.n_records, 10);
    assert_eq!(p.annotations.len(), 500);
    for (a, (on, dur, text)) in ann.iter().zip(&p.annotations) {
        assert!((a.onset_s - on).abs() < 1e-6, "{} vs {on}", a.onset_s);
        assert_eq!(a.duration_s, *dur);
        assert_eq!(&a.description, text);
    }
    // A record holds far fewer than 500 annotations: the list really is spread out.
    let annot_bytes = 2 * p.spr[4];
    assert!(
        annot_bytes * 4 < 500 * 40,
        "annotation signal {annot_bytes} bytes per record"
    );
}

#[test]
fn padding_prefix_and_record_duration_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.edf");
    // 1001 samples at 200 Hz: no candidate duration divides it, so the last record is padded.
    let rec = recording(1001, 200.0, vec![]);
    let opts = EdfWriteOptions {
        kind_prefix: true,
        record_duration_s: None,
    };
    write_edf_plus_with(&path, &rec, &opts).unwrap();
    let p = parse(&path);
    assert_eq!(
        p.labels[..4],
        ["EEG Fp1", "EEG C3", "EOG EOG left", "Trigger"]
    );
    assert_eq!(p.n_records, 6);
    assert_eq!(p.data[0].len(), 1200);
    assert!(
        p.data[0][1001..].iter().all(|v| v.abs() < 0.01),
        "padding is zero"
    );
    // An explicit duration.
    let opts = EdfWriteOptions {
        kind_prefix: false,
        record_duration_s: Some(0.25),
    };
    let rec = recording(1000, 200.0, vec![]);
    write_edf_plus_with(&path, &rec, &opts).unwrap();
    let p = parse(&path);
    assert_eq!((p.record_s, p.spr[0], p.n_records), (0.25, 50, 20));
    assert_eq!(p.timekeeping[3], 0.75);
    check_data(&rec, &p, &[1e6, 1e6, 1e6, 1.0]);
}

#[test]
fn unwritable_recordings_give_errors_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.edf");
    let mut rec = recording(200, 200.0, vec![]);
    rec.info.channels[0].name = "A very long channel name".into();
    let e = write_edf_plus(&path, &rec).unwrap_err();
    assert!(matches!(e, IoError::Header { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("bad.edf") && msg.contains("label of channel 0"),
        "{msg}"
    );

    let mut rec = recording(200, 200.0, vec![]);
    rec.signal.data_mut()[5] = f32::NAN;
    let msg = write_edf_plus(&path, &rec).unwrap_err().to_string();
    assert!(msg.contains("Fp1") && msg.contains("non-finite"), "{msg}");

    let mut rec = recording(200, 200.0, vec![]);
    rec.info.meas_date = Some("15/06/2021".into());
    let msg = write_edf_plus(&path, &rec).unwrap_err().to_string();
    assert!(msg.contains("meas_date"), "{msg}");

    let rec = Recording::new(
        Info::new(Modality::FmriVolume, 0.5, vec![]),
        Signal::Volumes {
            n_volumes: 1,
            dims: [1, 1, 1],
            affine: [[0.0; 4]; 4],
            data: vec![0.0],
        },
        vec![],
    )
    .unwrap();
    assert!(matches!(
        write_edf_plus(&path, &rec),
        Err(IoError::Unsupported { .. })
    ));
    assert!(!path.exists(), "no file is left behind by a failed write");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn flat_and_tiny_channels_get_a_valid_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.edf");
    let mut rec = recording(400, 200.0, vec![]);
    let n = 400;
    rec.signal.data_mut()[..n].fill(12e-6); // flat at 12 µV
    rec.signal.data_mut()[n..2 * n].fill(0.0); // flat at zero
    write_edf_plus(&path, &rec).unwrap();
    let p = parse(&path);
    assert!(p.phys[0].0 < 12.0 && p.phys[0].1 > 12.0);
    assert!(p.phys[1].0 < 0.0 && p.phys[1].1 > 0.0);
    check_data(&rec, &p, &[1e6, 1e6, 1e6, 1.0]);
}
