//! End to end on synthetic windows: band-power + logistic regression under LOSO, with and
//! without EA, a deliberately useless "model" next to it, and the report files.

use neurofm_eval::bandpower::BandPower;
use neurofm_eval::probe::{evaluate_linear, LinearMethod, ProbeConfig};
use neurofm_eval::protocol::{Protocol, WindowMeta};
use neurofm_eval::report::{MethodKind, Report, REPORT_FORMAT_VERSION};
use neurofm_eval::source::{FeatureExtractor, MemorySource, SourceInfo};
use neurofm_eval::EvalError;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }
}

/// 4 subjects × 2 classes × 10 windows, 3 channels × 400 samples at 100 Hz. Class "alpha"
/// has a 10 Hz rhythm, class "theta" a 6 Hz rhythm; each subject has its own channel gains.
fn source() -> MemorySource {
    let (c, t, fs) = (3usize, 400usize, 100.0);
    let mut rng = Lcg(7);
    let mut data = Vec::new();
    let mut windows = Vec::new();
    for s in 0..4 {
        for w in 0..20 {
            let label = w % 2;
            let f = if label == 1 { 10.0 } else { 6.0 };
            let phase = rng.next() * 6.0;
            for ch in 0..c {
                let gain = 1e-6 * (1.0 + s as f64) * (1.0 + 0.3 * ch as f64);
                for k in 0..t {
                    let tt = k as f64 / fs;
                    let v = (2.0 * std::f64::consts::PI * f * tt + phase).sin() + 1.5 * rng.next();
                    data.push((gain * v) as f32);
                }
            }
            windows.push(WindowMeta {
                entry: s * 2 + label,
                start: (w / 2) * t,
                len: t,
                label: Some(label),
                subject: Some(format!("S{s:02}")),
            });
        }
    }
    MemorySource {
        info: SourceInfo {
            windows,
            classes: vec!["theta".into(), "alpha".into()],
            n_channels: c,
            window_len: t,
            sfreq_hz: fs,
            channel_names: vec!["C3".into(), "Cz".into(), "C4".into()],
        },
        data,
    }
}

/// Features that ignore the signal: what a broken encoder would give.
struct Noise(Lcg);
impl FeatureExtractor for Noise {
    fn name(&self) -> String {
        "noise".into()
    }
    fn dim(&self) -> usize {
        4
    }
    fn extract(&mut self, _x: &[f32], batch: usize) -> Result<Vec<f64>, EvalError> {
        Ok((0..batch * 4).map(|_| self.0.next()).collect())
    }
}

#[test]
fn bandpower_probe_beats_chance_and_report_flags_a_useless_model() {
    let src = source();
    let mut bp = BandPower::new(3, 400, 100.0, None).unwrap_or_else(|e| panic!("{e}"));
    let mut noise = Noise(Lcg(99));
    let mut methods = vec![
        LinearMethod {
            name: "noise+logreg".into(),
            kind: MethodKind::Model,
            description: "random features".into(),
            extractor: &mut noise,
        },
        LinearMethod {
            name: "bandpower+logreg".into(),
            kind: MethodKind::Baseline,
            description: "log band power".into(),
            extractor: &mut bp,
        },
    ];
    let results = evaluate_linear(
        &src,
        &Protocol::Loso,
        &[0, 1],
        &[false, true],
        &mut methods,
        &ProbeConfig::default(),
        &mut |_, _, _| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(results.len(), 4);
    for r in &results {
        assert_eq!(r.folds.len(), 8, "4 subjects x 2 seeds");
        for f in &r.folds {
            assert_eq!(f.n_test, 20);
            assert_eq!(f.n_train, 60);
            assert_eq!(f.per_subject.len(), 1);
            assert_eq!(f.per_subject[0].subject, f.test_subjects[0]);
        }
    }
    let bp_off = &results[1];
    assert_eq!(bp_off.name, "bandpower+logreg");
    let mean_bacc: f64 = bp_off
        .folds
        .iter()
        .map(|f| f.metrics.balanced_accuracy)
        .sum::<f64>()
        / bp_off.folds.len() as f64;
    assert!(
        mean_bacc > 0.9,
        "band power should separate 6 vs 10 Hz: {mean_bacc}"
    );

    let report = Report {
        format_version: REPORT_FORMAT_VERSION,
        task: "synthetic".into(),
        protocol: "loso".into(),
        classes: src.info.classes.clone(),
        n_windows: 80,
        n_channels: 3,
        window_len: 400,
        sfreq_hz: 100.0,
        subjects: vec!["S00".into(), "S01".into(), "S02".into(), "S03".into()],
        seeds: vec![0, 1],
        command: "test".into(),
        neurofm_version: "test".into(),
        methods: results,
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let files = report
        .write_all(dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    for name in [
        "report.json",
        "report.md",
        "per_subject.png",
        "confusion_bandpower-logreg-ea.png",
        "confusion_noise-logreg.png",
    ] {
        let p = dir.path().join(name);
        assert!(files.contains(&p), "{name} not reported as written");
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{name} is empty");
    }
    let png = std::fs::read(dir.path().join("per_subject.png")).unwrap_or_default();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap_or_default();
    assert!(md.contains("noise+logreg ("), "{md}");
    assert!(md.contains("**does NOT beat** bandpower+logreg"), "{md}");
    assert!(md.contains("| S03 |"));
    let back = Report::load(&dir.path().join("report.json")).unwrap_or_else(|e| panic!("{e}"));
    // Floats round-trip exactly (serde_json float_roundtrip); the re-rendered Markdown too.
    assert!(back == report, "report.json does not round-trip");
    assert!(
        back.markdown(&[]) == report.markdown(&[]),
        "re-rendered report differs"
    );
    if let Ok(keep) = std::env::var("NEUROFM_EVAL_KEEP_PLOTS") {
        for name in [
            "per_subject.png",
            "confusion_bandpower-logreg-ea.png",
            "report.md",
        ] {
            let _ = std::fs::copy(
                dir.path().join(name),
                std::path::Path::new(&keep).join(name),
            );
        }
    }
}

#[test]
fn a_corrupt_report_names_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("report.json");
    std::fs::write(&p, b"{\"format_version\": 1, \"task\": 3}").unwrap_or_else(|e| panic!("{e}"));
    let err = Report::load(&p)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("report.json"), "{err}");
}
