//! What the EDF+ writer writes, the project's EDF reader reads back: channels, units, rate,
//! length, start, annotations, and data within half a quantization step.
#![allow(clippy::unwrap_used)]

use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};
use neurofm_io::check::check_reader;
use neurofm_io::edf_write::{write_edf_plus, write_edf_plus_with, EdfWriteOptions};
use neurofm_io::read_recording;

fn recording(n_samples: usize, sfreq: f64, annotations: Vec<Annotation>) -> Recording {
    let chans = vec![
        ChannelInfo::new("Fp1", ChannelKind::Eeg, Unit::Volt),
        ChannelInfo::new("C3", ChannelKind::Eeg, Unit::Volt),
        ChannelInfo::new("Misc 1", ChannelKind::Misc, Unit::Arbitrary),
    ];
    let nc = chans.len();
    let mut data = vec![0f32; nc * n_samples];
    for t in 0..n_samples {
        let x = t as f64 / sfreq;
        data[t] = (30e-6 * (2.0 * std::f64::consts::PI * 10.0 * x).sin()) as f32;
        data[n_samples + t] = (-5e-6 + 1e-6 * ((t * 7919) % 13) as f64) as f32;
        data[2 * n_samples + t] = (3.5 * (x * 0.7).cos()) as f32;
    }
    let mut info = Info::new(Modality::Eeg, sfreq, chans);
    info.subject = Some("07".into());
    info.meas_date = Some("2021-06-15T13:45:30Z".into());
    Recording::new(
        info,
        Signal::channels(nc, n_samples, data).unwrap(),
        annotations,
    )
    .unwrap()
}

/// Largest |read - written| of each channel, in units of the channel's quantization step
/// ((max - min) / 65535, the writer's range being the data's rounded outwards).
fn errors_in_steps(a: &Recording, b: &Recording) -> Vec<f64> {
    let n = a.signal.n_times();
    (0..a.info.n_channels())
        .map(|c| {
            let x = a.signal.channel(c).unwrap();
            let y = &b.signal.channel(c).unwrap()[..n];
            let (lo, hi) = x.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| {
                (l.min(v as f64), h.max(v as f64))
            });
            let step = (hi - lo).max(1e-12) / 65535.0;
            x.iter()
                .zip(y)
                .map(|(&u, &v)| (u as f64 - v as f64).abs() / step)
                .fold(0.0, f64::max)
        })
        .collect()
}

#[test]
fn our_reader_reads_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.edf");
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

    let rep = check_reader(&path).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);

    let back = read_recording(&path).unwrap();
    let names: Vec<&str> = back.info.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Fp1", "C3", "Misc 1"]);
    assert_eq!(back.info.channels[0].unit, Unit::Volt);
    assert_eq!(back.info.channels[1].unit, Unit::Volt);
    assert_eq!(back.info.sfreq_hz, 200.0);
    assert_eq!(back.signal.n_times(), 2000);
    assert_eq!(
        back.info.meas_date.as_deref().map(|d| &d[..19]),
        Some("2021-06-15T13:45:30")
    );
    assert_eq!(back.annotations.len(), 2);
    for (a, b) in ann.iter().zip(&back.annotations) {
        assert!((a.onset_s - b.onset_s).abs() < 1e-9);
        assert!((a.duration_s - b.duration_s).abs() < 1e-9);
        assert_eq!(a.description, b.description);
    }
    for (c, e) in errors_in_steps(&rec, &back).iter().enumerate() {
        assert!(*e <= 0.5 + 1e-3, "channel {c}: error {e} steps");
    }
}

#[test]
fn many_annotations_and_short_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.edf");
    let ann: Vec<Annotation> = (0..300)
        .map(|i| Annotation {
            onset_s: i as f64 * 0.031,
            duration_s: if i % 2 == 0 { 0.5 } else { 0.0 },
            description: format!("event {i}"),
        })
        .collect();
    let rec = recording(1000, 100.0, ann.clone());
    let opts = EdfWriteOptions {
        kind_prefix: true,
        record_duration_s: Some(0.5),
    };
    write_edf_plus_with(&path, &rec, &opts).unwrap();
    let rep = check_reader(&path).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    let back = read_recording(&path).unwrap();
    assert_eq!(back.info.channels[0].kind, ChannelKind::Eeg);
    assert_eq!(back.annotations.len(), 300);
    for (a, b) in ann.iter().zip(&back.annotations) {
        assert!((a.onset_s - b.onset_s).abs() < 1e-6, "{a:?} vs {b:?}");
        assert_eq!(a.description, b.description);
    }
    for (c, e) in errors_in_steps(&rec, &back).iter().enumerate() {
        assert!(*e <= 0.5 + 1e-3, "channel {c}: error {e} steps");
    }
}
