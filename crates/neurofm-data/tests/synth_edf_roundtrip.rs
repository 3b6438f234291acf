//! A synthetic recording survives EDF+ (our writer, our reader) and the store.
#![allow(clippy::unwrap_used)]

use neurofm_data::synth::{generate, SynthConfig};
use neurofm_data::{NewEntry, Store};
use neurofm_io::edf_write::write_edf_plus;
use neurofm_io::read_recording;

#[test]
fn synth_recording_round_trips_through_edf_and_the_store() {
    let cfg = SynthConfig {
        n_subjects: 1,
        trials_per_class: 3,
        ..SynthConfig::preset("tiny").unwrap()
    };
    let rec = generate(&cfg).unwrap().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub-01_task-synth_run-01.edf");
    write_edf_plus(&path, &rec).unwrap();
    let back = read_recording(&path).unwrap();

    assert_eq!(back.info.sfreq_hz, rec.info.sfreq_hz);
    assert_eq!(back.signal.n_times(), rec.signal.n_times());
    let names = |r: &neurofm_core::Recording| -> Vec<String> {
        r.info.channels.iter().map(|c| c.name.clone()).collect()
    };
    assert_eq!(names(&back), names(&rec));
    assert_eq!(back.annotations.len(), rec.annotations.len());
    for (a, b) in rec.annotations.iter().zip(&back.annotations) {
        assert!((a.onset_s - b.onset_s).abs() < 1e-6);
        assert!((a.duration_s - b.duration_s).abs() < 1e-6);
        assert_eq!(a.description, b.description);
    }
    for c in 0..rec.info.n_channels() {
        let x = rec.signal.channel(c).unwrap();
        let y = back.signal.channel(c).unwrap();
        let (lo, hi) = x.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| {
            (l.min(v as f64), h.max(v as f64))
        });
        // half a 16-bit step of the (outward-rounded) range, plus float32 rounding
        let tol = 0.5 * (hi - lo) / 65535.0 * 1.001 + 1e-12;
        let worst = x
            .iter()
            .zip(y)
            .map(|(&u, &v)| (u as f64 - v as f64).abs())
            .fold(0.0, f64::max);
        assert!(worst <= tol, "channel {c}: {worst} V > {tol} V");
    }

    // The store keeps the generator's float32 values bit for bit.
    let mut store = Store::create(&dir.path().join("store")).unwrap();
    let id = store.add(&rec, NewEntry::default()).unwrap();
    let stored = store.read_recording(&id).unwrap();
    assert_eq!(stored.signal, rec.signal);
    assert_eq!(stored.annotations, rec.annotations);
}
