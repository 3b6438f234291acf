//! `prepare_store` carries extra tensors through recipes, and every step that cannot apply to a
//! recording fails before any work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use neurofm_core::{ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};
use neurofm_data::dsp::resample;
use neurofm_data::{prepare_store, DataError, ExtraTensor, NewEntry, Recipe, Store};

fn recording(names: &[&str], sfreq: f64, n: usize) -> Recording {
    let chans: Vec<ChannelInfo> = names
        .iter()
        .map(|s| ChannelInfo::new(*s, ChannelKind::Eeg, Unit::Volt))
        .collect();
    let mut info = Info::new(Modality::Eeg, sfreq, chans);
    info.subject = Some("00".into());
    info.run = Some("1".into());
    info.provenance.source_sha256 = format!("src-{}-{n}", names.len());
    let data = (0..names.len() * n)
        .map(|i| ((i * 7919) % 101) as f32 * 1e-6)
        .collect();
    Recording::new(
        info,
        Signal::channels(names.len(), n, data).unwrap(),
        vec![],
    )
    .unwrap()
}

fn extra(name: &str, shape: &[usize], f: impl Fn(usize) -> f32) -> ExtraTensor {
    let n: usize = shape.iter().product();
    ExtraTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data: (0..n).map(f).collect(),
    }
}

fn store_with(rec: &Recording, extras: Vec<ExtraTensor>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join("s")).unwrap();
    store
        .add(
            rec,
            NewEntry {
                extras,
                ..NewEntry::default()
            },
        )
        .unwrap();
    (dir, store)
}

fn output() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("o")).unwrap();
    (dir, store)
}

#[test]
fn extras_follow_channel_picks_and_resampling() {
    let names = ["A", "B", "C", "D"];
    let n = 1000;
    let covariates = extra("covariates", &[2, n], |i| {
        ((i % n) as f32 * 0.01).sin() + (i / n) as f32
    });
    let (_d, input) = store_with(
        &recording(&names, 100.0, n),
        vec![
            extra("mask", &[4], |i| i as f32 + 1.0),
            covariates.clone(),
            extra("graph", &[3, 3], |i| i as f32),
        ],
    );
    let recipe = Recipe::from_toml_str(
        "[[steps]]\ntype = \"pick\"\nchannels = [\"C\", \"A\"]\n\
         [[steps]]\ntype = \"filter\"\nh_freq = 20.0\n\
         [[steps]]\ntype = \"resample\"\nsfreq_hz = 40.0\n",
        "extras.toml",
    )
    .unwrap();
    let (_o, mut out) = output();
    prepare_store(&recipe, &input, &mut out, &|_, _| {}).unwrap();
    let e = &out.entries()[0];
    assert_eq!(e.shape, vec![2, 400]);
    assert_eq!(e.extras, vec!["mask", "covariates", "graph"]);
    let view = out.view(&e.id).unwrap();
    // per-channel: picked and reordered with the channels
    assert_eq!(view.extra("mask").unwrap(), (vec![2], vec![3.0, 1.0]));
    // time-aligned: each row resampled like the signal (scipy's resample_poly, 2/5)
    let (shape, data) = view.extra("covariates").unwrap();
    assert_eq!(shape, vec![2, 400]);
    let r = resample::PolyphaseResampler::new(2, 5).unwrap();
    for (row, got) in covariates.data.chunks(n).zip(data.chunks(400)) {
        let x: Vec<f64> = row.iter().map(|v| f64::from(*v)).collect();
        let want = r.apply(&x);
        for (g, w) in got.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
    // neither: copied
    assert_eq!(
        view.extra("graph").unwrap(),
        (vec![3, 3], (0..9).map(|i| i as f32).collect())
    );
}

#[test]
fn extras_that_cannot_follow_a_step_fail_before_any_work() {
    let (_d, input) = store_with(
        &recording(&["A", "B", "C"], 100.0, 500),
        vec![extra("mask", &[3], |_| 1.0)],
    );
    let recipe = Recipe::from_toml_str(
        "[[steps]]\ntype = \"zscore\"\n[[steps]]\ntype = \"bipolar\"\npairs = [[\"A\", \"B\"]]\n",
        "bipolar.toml",
    )
    .unwrap();
    let (_o, mut out) = output();
    let err = prepare_store(&recipe, &input, &mut out, &|_, _| {}).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Step { index: 1, .. }), "{msg}");
    assert!(msg.contains("`bipolar`") && msg.contains("`mask`"), "{msg}");
    assert!(out.entries().is_empty());

    // [4] beside a 4-channel, 4-sample recording: per channel or per sample?
    let (_d, input) = store_with(
        &recording(&["A", "B", "C", "D"], 100.0, 4),
        vec![extra("w", &[4], |_| 1.0)],
    );
    let recipe = Recipe::from_toml_str(
        "[[steps]]\ntype = \"resample\"\nsfreq_hz = 50.0\n",
        "r.toml",
    )
    .unwrap();
    let msg = prepare_store(&recipe, &input, &mut out, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`resample`") && msg.contains("`w`"), "{msg}");
    assert!(out.entries().is_empty());
    // a step that changes neither channels nor time carries it as is
    let recipe = Recipe::from_toml_str("[[steps]]\ntype = \"zscore\"\n", "z.toml").unwrap();
    prepare_store(&recipe, &input, &mut out, &|_, _| {}).unwrap();
    let e = &out.entries()[0];
    assert_eq!(out.view(&e.id).unwrap().extra("w").unwrap().0, vec![4]);
}

/// Every step, given parameters that cannot apply to a 2-channel 100 Hz recording, fails in
/// validation (before any recording is read), naming the step.
#[test]
fn every_step_that_cannot_apply_fails_before_any_work() {
    let (_d, input) = store_with(&recording(&["EEG Fp1", "EEG Cz"], 100.0, 1000), vec![]);
    let cases: &[(&str, &str, &str)] = &[
        ("type = \"pick\"\nchannels = [\"O1\"]", "pick", "O1"),
        ("type = \"pick_kinds\"\nkinds = [\"eog\"]", "pick_kinds", "kinds"),
        ("type = \"drop\"\nchannels = [\"O1\"]", "drop", "O1"),
        ("type = \"drop\"\nchannels = [\"Fp1\", \"Cz\"]", "drop", "no channel left"),
        ("type = \"resample\"\nsfreq_hz = 3.14159265", "resample", "millihertz"),
        ("type = \"resample\"\nsfreq_hz = -1.0", "resample", "positive"),
        ("type = \"filter\"\nh_freq = 50.0", "filter", "Nyquist"),
        ("type = \"filter\"\nl_freq = 0.0", "filter", "l_freq"),
        ("type = \"filter\"\nl_freq = 30.0\nh_freq = 10.0", "filter", "l_freq < h_freq"),
        ("type = \"filter\"", "filter", "l_freq"),
        ("type = \"notch\"\nfreqs = [60.0]", "notch", "Nyquist"),
        ("type = \"notch\"\nfreqs = []", "notch", "no frequencies"),
        ("type = \"butterworth\"\norder = 4\nh_freq = 50.0", "butterworth", "Nyquist"),
        ("type = \"butterworth\"\norder = 0\nh_freq = 20.0", "butterworth", "order"),
        ("type = \"butterworth\"\norder = 2\nl_freq = 1.0\nstop = true", "butterworth", "both"),
        ("type = \"average_reference\"\nkinds = [\"eog\"]", "average_reference", "no good channel"),
        ("type = \"reference\"\nchannel = \"O1\"", "reference", "O1"),
        ("type = \"bipolar\"\npairs = [[\"Fp1\", \"O1\"]]", "bipolar", "O1"),
        ("type = \"divide\"\nby = 0.0", "divide", "divide by 0"),
        ("type = \"clip\"\nmin = 1.0\nmax = -1.0", "clip", "min"),
        ("type = \"mark_bads\"\nvariance_z = 0.0", "mark_bads", "variance_z"),
        (
            "type = \"window\"\nlength_s = 20.0\nstride_s = 0.0",
            "window",
            "stride",
        ),
        (
            "type = \"window\"\nlength_s = 2.0\nstride_s = 2.0\nlabels = { from = \"recording\", key = \"task\", mapping = { \"1\" = \"a\" } }",
            "window",
            "no `task`",
        ),
        (
            "type = \"window\"\nlength_s = 2.0\nstride_s = 2.0\nlabels = { from = \"recording\", key = \"run\", mapping = { \"2\" = \"a\" } }",
            "window",
            "not in the label mapping",
        ),
    ];
    for (step, name, needle) in cases {
        let text = format!("[[steps]]\ntype = \"zscore\"\n[[steps]]\n{step}\n");
        let recipe = match Recipe::from_toml_str(&text, "case.toml") {
            Ok(r) => r,
            Err(e) => panic!("{step}: {e}"),
        };
        let (_o, mut out) = output();
        let err = match prepare_store(&recipe, &input, &mut out, &|_, _| {}) {
            Ok(_) => panic!("{step}: applied"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            matches!(err, DataError::Step { index: 1, .. }),
            "{step}: {msg}"
        );
        assert!(
            msg.contains(&format!("(`{name}`)")) && msg.contains(needle),
            "{step}: {msg}"
        );
        assert!(out.entries().is_empty(), "{step}");
        // the same message comes from validation alone, before any sample is read
        let v = recipe.validate_store(&input).unwrap_err().to_string();
        assert_eq!(v, msg);
    }
}
