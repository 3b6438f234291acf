//! Windowing and `prepare_store` on small generated stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use neurofm_core::{Annotation, ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};
use neurofm_data::{
    prepare_store, DataError, LabelSource, NewEntry, Recipe, Store, WindowConfig, WindowIndex,
};

fn recording(subject: &str, run: &str, names: &[&str], sfreq: f64, n: usize) -> Recording {
    let chans: Vec<ChannelInfo> = names
        .iter()
        .map(|s| ChannelInfo::new(*s, ChannelKind::Eeg, Unit::Volt))
        .collect();
    let mut info = Info::new(Modality::Eeg, sfreq, chans);
    info.subject = Some(subject.into());
    info.run = Some(run.into());
    info.provenance.source_sha256 = format!("{subject}-{run}");
    let mut data = Vec::with_capacity(names.len() * n);
    for c in 0..names.len() {
        for t in 0..n {
            // distinct value per (channel, sample) so a wrong offset is caught
            data.push((c * 100_000 + t) as f32 * 1e-6);
        }
    }
    let annotations = vec![
        Annotation {
            onset_s: 1.0,
            duration_s: 0.0,
            description: "T1".into(),
        },
        Annotation {
            onset_s: 2.5,
            duration_s: 0.0,
            description: "T2".into(),
        },
        Annotation {
            onset_s: 3.0,
            duration_s: 0.0,
            description: "T0".into(),
        },
        Annotation {
            onset_s: 9.9,
            duration_s: 0.0,
            description: "T1".into(),
        },
    ];
    Recording::new(
        info,
        Signal::channels(names.len(), n, data).unwrap(),
        annotations,
    )
    .unwrap()
}

fn store_with(recs: &[Recording]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join("s")).unwrap();
    for r in recs {
        store.add(r, NewEntry::default()).unwrap();
    }
    (dir, store)
}

#[test]
fn fixed_windows_with_recording_labels_read_the_right_samples() {
    let names = ["EEG Fp1", "EEG T3", "EEG Cz"];
    let (_d, store) = store_with(&[
        recording("00", "1", &names, 100.0, 1000),
        recording("01", "2", &names, 100.0, 730),
    ]);
    let mapping: BTreeMap<String, String> = [("1", "rest"), ("2", "arithmetic")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let cfg = WindowConfig {
        length_s: 2.0,
        stride_s: 1.5,
        labels: LabelSource::Recording {
            key: "run".into(),
            mapping,
        },
    };
    let idx = WindowIndex::build(&store, &cfg).unwrap();
    assert_eq!(idx.window_len, 200);
    assert_eq!(idx.n_channels, 3);
    assert_eq!(idx.channel_names, vec!["Fp1", "T7", "Cz"]);
    assert_eq!(idx.classes, vec!["arithmetic", "rest"]);
    // 1000 samples: starts 0,150,...,750 (6); 730 samples: 0..=450 (4)
    assert_eq!(idx.windows.len(), 6 + 4);
    assert_eq!(idx.subjects(), vec!["00", "01"]);
    let w = &idx.windows[7];
    assert_eq!((w.entry, w.start, w.label), (1, 150, Some(0)));
    let mut out = vec![0f32; 3 * 200];
    idx.read(&store, 7, &mut out).unwrap();
    assert_eq!(out[0], 150.0 * 1e-6);
    assert_eq!(out[200 + 5], (100_000 + 155) as f32 * 1e-6);
    assert!(idx.read(&store, 10, &mut out).is_err());
}

#[test]
fn event_locked_epochs_drop_those_outside() {
    let names = ["Fp1", "Cz"];
    let (_d, store) = store_with(&[recording("00", "1", &names, 100.0, 1000)]);
    let mapping: BTreeMap<String, String> = [("T1", "left"), ("T2", "right")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let cfg = WindowConfig {
        length_s: 0.0,
        stride_s: 0.0,
        labels: LabelSource::Annotations {
            mapping,
            tmin_s: -0.5,
            tmax_s: 1.5,
        },
    };
    let idx = WindowIndex::build(&store, &cfg).unwrap();
    assert_eq!(idx.window_len, 200);
    // T1 at 1.0 s, T2 at 2.5 s; T0 unmapped; T1 at 9.9 s runs past the end
    let got: Vec<(usize, Option<usize>)> = idx.windows.iter().map(|w| (w.start, w.label)).collect();
    assert_eq!(got, vec![(50, Some(0)), (200, Some(1))]);
}

#[test]
fn mixed_rates_or_montages_are_refused() {
    let (_d, store) = store_with(&[
        recording("00", "1", &["Fp1", "Cz"], 100.0, 500),
        recording("01", "1", &["Fp1", "Cz"], 200.0, 500),
    ]);
    let cfg = WindowConfig {
        length_s: 1.0,
        stride_s: 1.0,
        labels: LabelSource::None,
    };
    let err = WindowIndex::build(&store, &cfg).unwrap_err().to_string();
    assert!(err.contains("200 Hz"), "{err}");
    let (_d2, store2) = store_with(&[
        recording("00", "1", &["Fp1", "Cz"], 100.0, 500),
        recording("01", "1", &["Cz", "Fp1"], 100.0, 500),
    ]);
    let err = WindowIndex::build(&store2, &cfg).unwrap_err().to_string();
    assert!(err.contains("montage"), "{err}");
}

#[test]
fn amplitude_rejection_counts_windows() {
    let (_d, store) = store_with(&[recording("00", "1", &["Fp1", "Cz"], 100.0, 1000)]);
    let cfg = WindowConfig {
        length_s: 1.0,
        stride_s: 1.0,
        labels: LabelSource::None,
    };
    let mut idx = WindowIndex::build(&store, &cfg).unwrap();
    assert_eq!(idx.windows.len(), 10);
    // channel 1 holds 0.1 + t·1e-6: every window exceeds 0.05; nothing exceeds 1.0
    let r = idx.reject_amplitude(&store, 1.0).unwrap();
    assert_eq!((r.kept, r.rejected), (10, 0));
    let r = idx.reject_amplitude(&store, 0.05).unwrap();
    assert_eq!((r.kept, r.rejected), (0, 10));
    assert_eq!(r.per_entry.values().sum::<usize>(), 10);
}

#[test]
fn prepare_validates_every_recording_before_any_work() {
    let (_d, input) = store_with(&[
        recording("00", "1", &["EEG Fp1", "EEG T3"], 500.0, 5000),
        recording("01", "1", &["EEG Fp1"], 500.0, 5000),
    ]);
    let recipe = Recipe::from_toml_str(
        "[[steps]]\ntype = \"pick\"\nchannels = [\"T7\", \"Fp1\"]\n",
        "pick.toml",
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut output = Store::create(&out_dir.path().join("o")).unwrap();
    let err = prepare_store(&recipe, &input, &mut output, &|_, _| {}).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Step { index: 0, .. }), "{msg}");
    assert!(
        msg.contains("step 0 (`pick`)") && msg.contains("T7"),
        "{msg}"
    );
    assert!(output.entries().is_empty());

    let nyq = Recipe::from_toml_str(
        "[[steps]]\ntype = \"resample\"\nsfreq_hz = 100.0\n[[steps]]\ntype = \"filter\"\nh_freq = 60.0\n",
        "nyq.toml",
    )
    .unwrap();
    let msg = prepare_store(&nyq, &input, &mut output, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("step 1 (`filter`)") && msg.contains("Nyquist"),
        "{msg}"
    );
    assert!(output.entries().is_empty());
}

#[test]
fn prepare_records_recipe_and_windows_come_back() {
    let names = ["EEG Fp1", "EEG T3", "ECG"];
    let (_d, input) = store_with(&[
        recording("00", "1", &names, 500.0, 5000),
        recording("00", "2", &names, 500.0, 3000),
    ]);
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs/recipes/eegmat-200hz.toml"),
    )
    .unwrap();
    // the EEGMAT recipe on a 2-channel montage
    let text = text.replace(
        "channels = [\"Fp1\", \"Fp2\", \"F7\", \"F3\", \"Fz\", \"F4\", \"F8\", \"T7\", \"C3\", \"Cz\", \"C4\", \"T8\",\n            \"P7\", \"P3\", \"Pz\", \"P4\", \"P8\", \"O1\", \"O2\"]",
        "channels = [\"T7\", \"Fp1\"]",
    );
    let recipe = Recipe::from_toml_str(&text, "eegmat-2ch").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut output = Store::create(&out_dir.path().join("o")).unwrap();
    let report = prepare_store(&recipe, &input, &mut output, &|_, _| {}).unwrap();
    assert_eq!(report.prepared.len(), 2);
    let e = &output.entries()[0];
    assert_eq!(e.sfreq_hz, 200.0);
    assert_eq!(e.shape, vec![2, 2000]);
    assert_eq!(e.recipe_hash.as_deref(), Some(recipe.hash().as_str()));
    // re-running skips what is there
    let again = prepare_store(&recipe, &input, &mut output, &|_, _| {}).unwrap();
    assert_eq!((again.prepared.len(), again.skipped.len()), (0, 2));
    let reopened = Store::open(&out_dir.path().join("o")).unwrap();
    let cfg = WindowConfig::from_store(&reopened)
        .unwrap()
        .expect("window step recorded");
    let idx = WindowIndex::build(&reopened, &cfg).unwrap();
    assert_eq!(idx.window_len, 1000);
    assert_eq!(idx.channel_names, vec!["T7", "Fp1"]);
    assert_eq!(idx.classes, vec!["arithmetic", "rest"]);
    // 2000 samples → 2 windows (rest), 1200 samples → 1 window (arithmetic)
    let labels: Vec<Option<usize>> = idx.windows.iter().map(|w| w.label).collect();
    assert_eq!(labels, vec![Some(1), Some(1), Some(0)]);
}

#[test]
fn covariate_labels_bin_the_window_mean_of_a_time_aligned_extra() {
    let names = ["Cz", "Pz"];
    let rec = recording("00", "1", &names, 10.0, 100);
    // Row 1 ("velocity"): -1 for the first 40 samples, +1 after, NaN in samples 80..90.
    let mut cov = vec![0f32; 2 * 100];
    for t in 0..100 {
        cov[100 + t] = if t < 40 { -1.0 } else { 1.0 };
    }
    for v in &mut cov[180..190] {
        *v = f32::NAN;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join("s")).unwrap();
    store
        .add(
            &rec,
            NewEntry {
                extras: vec![neurofm_data::ExtraTensor {
                    name: "covariates".into(),
                    shape: vec![2, 100],
                    data: cov,
                }],
                ..NewEntry::default()
            },
        )
        .unwrap();
    let cfg = |row: usize, thresholds: Vec<f64>, classes: &[&str]| WindowConfig {
        length_s: 2.0,
        stride_s: 2.0,
        labels: LabelSource::Covariate {
            extra: "covariates".into(),
            row,
            thresholds,
            classes: classes.iter().map(|s| s.to_string()).collect(),
        },
    };
    let idx = WindowIndex::build(&store, &cfg(1, vec![0.0], &["reverse", "forward"])).unwrap();
    assert_eq!(idx.classes, vec!["reverse", "forward"]);
    let labels: Vec<Option<usize>> = idx.windows.iter().map(|w| w.label).collect();
    // Windows of 20 samples: 0-19, 20-39 reverse; 40.. forward; 80-99 holds NaN: unlabelled.
    assert_eq!(labels, vec![Some(0), Some(0), Some(1), Some(1), None]);
    // Row out of range, wrong class count, unknown extra: clear errors.
    let err = WindowIndex::build(&store, &cfg(2, vec![0.0], &["a", "b"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("covariates") && err.contains("[2, 100]"),
        "{err}"
    );
    let err = WindowIndex::build(&store, &cfg(1, vec![0.0], &["a"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("labels.classes"), "{err}");
    let mut bad = cfg(1, vec![0.0], &["a", "b"]);
    if let LabelSource::Covariate { extra, .. } = &mut bad.labels {
        *extra = "behaviour".into();
    }
    let err = WindowIndex::build(&store, &bad).unwrap_err().to_string();
    assert!(err.contains("behaviour"), "{err}");
}
