//! Linear probe: features → standardization (training side only) → multinomial logistic
//! regression whose `C` is chosen by inner cross-validation grouped by training subject →
//! metrics on the test side, per fold and per test subject.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;

use crate::logreg::{argmax_rows, select_c, ClassWeight, LogReg, LogRegConfig, Standardizer};
use crate::metrics::Metrics;
use crate::protocol::{check_fold, Fold, Protocol, WindowMeta};

/// Settings of the linear probe (TOML `[probe]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Candidate values of `C` for the inner cross-validation.
    pub cs: Vec<f64>,
    /// Number of inner folds (grouped by subject; fewer when there are fewer subjects).
    pub inner_folds: usize,
    /// `C` used when no inner cross-validation is possible (one training subject, e.g.
    /// few-shot).
    pub default_c: f64,
    pub class_weight: ClassWeight,
    pub max_iter: usize,
    /// L-BFGS stops when the largest gradient component of the sample-weight-normalized
    /// objective is below this (scikit-learn's `tol`, whose default 1e-4 this follows; a
    /// tighter value makes high-dimensional features with a large C run to `max_iter`).
    pub tol: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            cs: vec![1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0],
            inner_folds: 5,
            default_c: 1.0,
            class_weight: ClassWeight::Balanced,
            max_iter: 1000,
            tol: 1e-4,
        }
    }
}

/// Metrics of one test subject within a fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectResult {
    pub subject: String,
    pub metrics: Metrics,
}

/// Result of one fold for one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    pub seed: u64,
    pub fold: String,
    pub test_subjects: Vec<String>,
    pub n_train: usize,
    pub n_test: usize,
    /// The `C` picked by the inner cross-validation (or the default); `None` for methods
    /// without a logistic regression (finetuned models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<f64>,
    pub metrics: Metrics,
    pub per_subject: Vec<SubjectResult>,
}

/// Runs the probe on every fold. `features` is `[rows, d]`; `row_of[i]` is the feature row of
/// window `i` (every window used by a fold must have one).
#[allow(clippy::too_many_arguments)]
pub fn probe_folds(
    features: &[f64],
    d: usize,
    row_of: &[Option<usize>],
    windows: &[WindowMeta],
    n_classes: usize,
    protocol: &Protocol,
    folds: &[Fold],
    cfg: &ProbeConfig,
) -> Result<Vec<FoldResult>, EvalError> {
    let gather = |idx: &[usize]| -> Result<(Vec<f64>, Vec<usize>), EvalError> {
        let mut x = Vec::with_capacity(idx.len() * d);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            let r = row_of
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| EvalError::Source {
                    index: i,
                    reason: "no features for this window".into(),
                })?;
            let row = features
                .get(r * d..(r + 1) * d)
                .ok_or_else(|| EvalError::Shape {
                    what: "feature rows".into(),
                    expected: (r + 1) * d,
                    got: features.len(),
                })?;
            x.extend_from_slice(row);
            let label = windows
                .get(i)
                .and_then(|w| w.label)
                .ok_or_else(|| EvalError::Source {
                    index: i,
                    reason: "window has no label".into(),
                })?;
            y.push(label);
        }
        Ok((x, y))
    };
    let base = LogRegConfig {
        c: cfg.default_c,
        class_weight: cfg.class_weight,
        max_iter: cfg.max_iter,
        gtol: cfg.tol,
    };
    // Folds are independent: fitted in parallel, reported in fold order.
    let one_fold = |fold: &Fold| -> Result<FoldResult, EvalError> {
        check_fold(protocol, fold, windows)?;
        let (xtr, ytr) = gather(&fold.train)?;
        let (xte, yte) = gather(&fold.test)?;
        // Inner CV groups: training subjects (windows, when there is a single subject).
        let mut group_ids: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in &fold.train {
            let s = windows[i].subject.as_deref().unwrap_or("");
            let next = group_ids.len();
            group_ids.entry(s).or_insert(next);
        }
        let groups: Vec<usize> = if group_ids.len() >= 2 {
            fold.train
                .iter()
                .map(|&i| group_ids[windows[i].subject.as_deref().unwrap_or("")])
                .collect()
        } else {
            (0..fold.train.len()).collect()
        };
        let sel = select_c(
            &xtr,
            d,
            &ytr,
            &groups,
            n_classes,
            &cfg.cs,
            cfg.inner_folds,
            &base,
        )?;
        let c = if sel.scores.is_empty() {
            cfg.default_c
        } else {
            sel.best_c
        };
        let st = Standardizer::fit(&xtr, d)?;
        let model = LogReg::fit(
            &st.transform(&xtr),
            d,
            &ytr,
            n_classes,
            &LogRegConfig { c, ..base.clone() },
        )?;
        let proba = model.predict_proba(&st.transform(&xte))?;
        let pred = argmax_rows(&proba, n_classes);
        let metrics = Metrics::compute(&yte, &pred, Some(&proba), n_classes)?;
        let mut per_subject = Vec::new();
        for s in &fold.test_subjects {
            let pos: Vec<usize> = fold
                .test
                .iter()
                .enumerate()
                .filter(|(_, &i)| windows[i].subject.as_deref() == Some(s.as_str()))
                .map(|(p, _)| p)
                .collect();
            if pos.is_empty() {
                continue;
            }
            let yt: Vec<usize> = pos.iter().map(|&p| yte[p]).collect();
            let yp: Vec<usize> = pos.iter().map(|&p| pred[p]).collect();
            let pr: Vec<f64> = pos
                .iter()
                .flat_map(|&p| proba[p * n_classes..(p + 1) * n_classes].iter().copied())
                .collect();
            per_subject.push(SubjectResult {
                subject: s.clone(),
                metrics: Metrics::compute(&yt, &yp, Some(&pr), n_classes)?,
            });
        }
        Ok(FoldResult {
            seed: fold.seed,
            fold: fold.name.clone(),
            test_subjects: fold.test_subjects.clone(),
            n_train: fold.train.len(),
            n_test: fold.test.len(),
            c: Some(c),
            metrics,
            per_subject,
        })
    };
    folds.par_iter().map(one_fold).collect()
}

/// One features → logistic-regression method to evaluate.
pub struct LinearMethod<'a> {
    pub name: String,
    pub kind: crate::report::MethodKind,
    pub description: String,
    pub extractor: &'a mut dyn crate::source::FeatureExtractor,
}

/// Runs every method with and/or without Euclidean alignment (`ea_modes`) on the folds of
/// `protocol` for every seed. Features are computed once per (method, EA mode) over the
/// labelled windows and reused by every fold and seed. `progress(stage, done, total)`.
pub fn evaluate_linear(
    source: &dyn crate::source::WindowSource,
    protocol: &Protocol,
    seeds: &[u64],
    ea_modes: &[bool],
    methods: &mut [LinearMethod<'_>],
    cfg: &ProbeConfig,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Vec<crate::report::MethodResult>, EvalError> {
    let info = source.info();
    let n_classes = info.classes.len();
    if n_classes < 2 {
        return Err(EvalError::config(
            "classes",
            format!("need at least 2 classes, the task has {n_classes}"),
        ));
    }
    if seeds.is_empty() {
        return Err(EvalError::config("seeds", "no seed given"));
    }
    let labelled: Vec<usize> = (0..info.windows.len())
        .filter(|&i| info.windows[i].label.is_some())
        .collect();
    let mut row_of = vec![None; info.windows.len()];
    for (r, &i) in labelled.iter().enumerate() {
        row_of[i] = Some(r);
    }
    let mut folds = Vec::new();
    for &seed in seeds {
        folds.extend(crate::protocol::make_folds(
            protocol,
            &info.windows,
            n_classes,
            seed,
        )?);
    }
    let mut out = Vec::new();
    for &ea in ea_modes {
        let alignment = if ea {
            Some(crate::ea::Alignment::fit(source)?)
        } else {
            None
        };
        for m in methods.iter_mut() {
            let stage = format!("{}{}", m.name, if ea { " +EA" } else { "" });
            let d = m.extractor.dim();
            let features = crate::source::compute_features(
                source,
                m.extractor,
                alignment.as_ref(),
                &labelled,
                &mut |a, b| progress(&stage, a, b),
            )?;
            let results = probe_folds(
                &features,
                d,
                &row_of,
                &info.windows,
                n_classes,
                protocol,
                &folds,
                cfg,
            )?;
            out.push(crate::report::MethodResult {
                name: m.name.clone(),
                kind: m.kind,
                ea,
                description: m.description.clone(),
                folds: results,
            });
        }
    }
    Ok(out)
}
