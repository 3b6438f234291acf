//! Compares neurofm-eval to scikit-learn / scipy / numpy on the fixed inputs and reference
//! values written by `scripts/reference/make_metrics_reference.py` into
//! `tests/fixtures/reference.json`.

use neurofm_eval::bandpower::Welch;
use neurofm_eval::ea::Alignment;
use neurofm_eval::logreg::{ClassWeight, LogReg, LogRegConfig};
use neurofm_eval::metrics::Metrics;
use neurofm_eval::protocol::WindowMeta;
use neurofm_eval::source::{MemorySource, SourceInfo, WindowSource};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn f64s(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("missing array {key}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn usizes(v: &Value, key: &str) -> Vec<usize> {
    f64s(v, key).into_iter().map(|x| x as usize).collect()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("missing number {key}"))
}

fn close(name: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{name}: got {got}, scikit-learn {want}"
    );
}

#[test]
fn metrics_match_scikit_learn() {
    let fx = fixture();
    let cases = fx["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("no metrics"));
    assert!(cases.len() >= 3);
    for c in cases {
        let name = c["name"].as_str().unwrap_or("?");
        let k = num(c, "n_classes") as usize;
        let yt = usizes(c, "y_true");
        let yp = usizes(c, "y_pred");
        let proba = f64s(c, "proba");
        let m = Metrics::compute(&yt, &yp, Some(&proba), k).unwrap_or_else(|e| panic!("{e}"));
        close(
            &format!("{name} accuracy"),
            m.accuracy,
            num(c, "accuracy"),
            1e-9,
        );
        close(
            &format!("{name} balanced_accuracy"),
            m.balanced_accuracy,
            num(c, "balanced_accuracy"),
            1e-9,
        );
        close(
            &format!("{name} kappa"),
            m.cohen_kappa,
            num(c, "cohen_kappa"),
            1e-9,
        );
        close(
            &format!("{name} f1"),
            m.f1_weighted,
            num(c, "f1_weighted"),
            1e-9,
        );
        close(
            &format!("{name} auroc"),
            m.auroc.unwrap_or(f64::NAN),
            num(c, "auroc"),
            1e-9,
        );
        close(
            &format!("{name} pr_auc"),
            m.pr_auc.unwrap_or(f64::NAN),
            num(c, "pr_auc"),
            1e-9,
        );
        let want: Vec<Vec<u64>> = c["confusion"]
            .as_array()
            .unwrap_or_else(|| panic!("confusion"))
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap_or_else(|| panic!("row"))
                    .iter()
                    .map(|v| v.as_u64().unwrap_or(u64::MAX))
                    .collect()
            })
            .collect();
        assert_eq!(m.confusion, want, "{name} confusion");
    }
}

#[test]
fn logistic_regression_matches_scikit_learn() {
    let fx = fixture();
    let cases = fx["logreg"]
        .as_array()
        .unwrap_or_else(|| panic!("no logreg"));
    assert_eq!(cases.len(), 2);
    for data in cases {
        let k = num(data, "n_classes") as usize;
        let d = num(data, "d") as usize;
        let x = f64s(data, "x");
        let y = usizes(data, "y");
        let fits = data["fits"].as_array().unwrap_or_else(|| panic!("no fits"));
        assert!(fits.len() >= 6);
        for c in fits {
            let name = format!(
                "{} C={} class_weight={}",
                data["name"].as_str().unwrap_or("?"),
                num(c, "c"),
                c["class_weight"].as_str().unwrap_or("?")
            );
            let cfg = LogRegConfig {
                c: num(c, "c"),
                class_weight: match c["class_weight"].as_str() {
                    Some("balanced") => ClassWeight::Balanced,
                    _ => ClassWeight::None,
                },
                max_iter: 10_000,
                gtol: 1e-11,
            };
            let m = LogReg::fit(&x, d, &y, k, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                m.converged,
                "{name}: not converged after {} iterations",
                m.n_iter
            );
            let proba = m.predict_proba(&x).unwrap_or_else(|e| panic!("{e}"));
            let want = f64s(c, "proba");
            assert_eq!(proba.len(), want.len());
            for (i, (g, w)) in proba.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-6,
                    "{name} proba[{i}]: got {g}, scikit-learn {w}"
                );
            }
            let coef = f64s(c, "coef");
            let intercept = f64s(c, "intercept");
            let rows = num(c, "coef_rows") as usize;
            let tol = |w: f64| 1e-5 * (1.0 + w.abs());
            if rows == k {
                for (j, (g, w)) in m.coef.iter().zip(&coef).enumerate() {
                    assert!((g - w).abs() < tol(*w), "{name} coef[{j}]: {g} vs {w}");
                }
                for (g, w) in m.intercept.iter().zip(&intercept) {
                    assert!((g - w).abs() < tol(*w), "{name} intercept: {g} vs {w}");
                }
            } else {
                // Binary: scikit-learn keeps only the row of class 1 (the multinomial solution
                // is symmetric, w0 = -w1, and its predict_proba is softmax([-z, z])).
                assert_eq!(rows, 1, "{name}");
                for (j, want) in coef.iter().enumerate().take(d) {
                    let (w0, w1) = (m.coef[j], m.coef[d + j]);
                    assert!((w0 + w1).abs() < 1e-6, "{name}: rows not symmetric");
                    assert!(
                        (w1 - want).abs() < tol(*want),
                        "{name} coef[{j}]: {w1} vs {want}"
                    );
                }
                assert!(
                    (m.intercept[1] - intercept[0]).abs() < tol(intercept[0]),
                    "{name} intercept"
                );
            }
        }
    }
}

#[test]
fn welch_matches_scipy() {
    let fx = fixture();
    for c in fx["welch"].as_array().unwrap_or_else(|| panic!("no welch")) {
        let w =
            Welch::new(num(c, "nperseg") as usize, num(c, "fs")).unwrap_or_else(|e| panic!("{e}"));
        let psd = w.psd(&f64s(c, "x")).unwrap_or_else(|e| panic!("{e}"));
        let want = f64s(c, "psd");
        assert_eq!(psd.len(), want.len());
        for (g, f) in w.freqs().iter().zip(f64s(c, "freqs")) {
            assert!((g - f).abs() < 1e-9);
        }
        let max = want.iter().copied().fold(0.0, f64::max);
        for (i, (g, r)) in psd.iter().zip(&want).enumerate() {
            assert!((g - r).abs() <= 1e-9 * max, "psd[{i}]: {g} vs scipy {r}");
        }
    }
}

#[test]
fn euclidean_alignment_matches_numpy() {
    let fx = fixture();
    let e = &fx["ea"];
    let (c, t) = (num(e, "n_channels") as usize, num(e, "window_len") as usize);
    let x: Vec<f32> = f64s(e, "x").iter().map(|&v| v as f32).collect();
    let want = f64s(e, "aligned");
    let n = x.len() / (c * t);
    let windows = (0..n)
        .map(|i| WindowMeta {
            entry: 0,
            start: i * t,
            len: t,
            label: None,
            subject: Some("S".into()),
        })
        .collect();
    let src = MemorySource {
        info: SourceInfo {
            windows,
            classes: vec![],
            n_channels: c,
            window_len: t,
            sfreq_hz: 100.0,
            channel_names: (0..c).map(|i| format!("c{i}")).collect(),
        },
        data: x,
    };
    let a = Alignment::fit(&src).unwrap_or_else(|e| panic!("{e}"));
    let mut buf = vec![0f32; c * t];
    for i in 0..n {
        src.read(i, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        a.apply("S", &mut buf, t).unwrap_or_else(|e| panic!("{e}"));
        for (j, (g, w)) in buf
            .iter()
            .zip(&want[i * c * t..(i + 1) * c * t])
            .enumerate()
        {
            assert!(
                (*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                "window {i} value {j}: {g} vs {w}"
            );
        }
    }
}
