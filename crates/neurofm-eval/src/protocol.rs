//! Evaluation protocols → folds (train / validation / test window indices).
//!
//! Every fold is checked by [`check_fold`] before it is used: for subject-wise protocols no
//! subject may be on both the training (train + validation) and the test side; for the
//! within-subject few-shot protocol no window may be on both sides and no training window may
//! overlap a test window in time. A violation is an [`EvalError::Leak`], never a debug assert.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// What the protocols need to know about one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowMeta {
    /// Index of the recording (store entry) the window comes from.
    pub entry: usize,
    /// First sample in that recording.
    pub start: usize,
    pub len: usize,
    pub label: Option<usize>,
    pub subject: Option<String>,
}

/// How subjects are split into folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Protocol {
    /// Leave one subject out: one fold per subject.
    Loso,
    /// One fold with fixed subject lists.
    Fixed {
        train: Vec<String>,
        #[serde(default)]
        validation: Vec<String>,
        test: Vec<String>,
    },
    /// Subjects shuffled (seeded) and cut into test groups of `n` subjects (the last group may be
    /// smaller); one fold per group.
    LeaveNOut { n: usize },
    /// Within-subject few-shot: for each subject, `k` labelled windows per class (seeded) are the
    /// training side, the subject's windows that do not overlap them in time are the test side.
    FewShot { k: usize },
}

impl Protocol {
    pub fn name(&self) -> String {
        match self {
            Protocol::Loso => "loso".into(),
            Protocol::Fixed { .. } => "fixed".into(),
            Protocol::LeaveNOut { n } => format!("leave-{n}-out"),
            Protocol::FewShot { k } => format!("few-shot-{k}"),
        }
    }

    /// Whether train and test subjects must be disjoint (all protocols but few-shot).
    pub fn subject_disjoint(&self) -> bool {
        !matches!(self, Protocol::FewShot { .. })
    }

    /// Parses a CLI name: `loso`, `leave-N-out`, `few-shot-K`.
    pub fn parse_cli(s: &str) -> Result<Protocol, EvalError> {
        if s == "loso" {
            return Ok(Protocol::Loso);
        }
        let num = |rest: &str| {
            rest.parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| EvalError::config("protocol", format!("bad number in {s:?}")))
        };
        if let Some(rest) = s
            .strip_prefix("leave-")
            .and_then(|r| r.strip_suffix("-out"))
        {
            return Ok(Protocol::LeaveNOut { n: num(rest)? });
        }
        if let Some(rest) = s.strip_prefix("few-shot-") {
            return Ok(Protocol::FewShot { k: num(rest)? });
        }
        Err(EvalError::config(
            "protocol",
            format!("{s:?}: expected loso, leave-N-out or few-shot-K (fixed splits come from the task file)"),
        ))
    }
}

/// One fold: indices into the window list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    pub name: String,
    pub seed: u64,
    pub train_subjects: Vec<String>,
    pub validation_subjects: Vec<String>,
    pub test_subjects: Vec<String>,
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

fn subject_of(w: &WindowMeta, i: usize) -> Result<&str, EvalError> {
    w.subject.as_deref().ok_or_else(|| {
        EvalError::config(
            "subject",
            format!("window {i} (entry {}) has no subject", w.entry),
        )
    })
}

/// Sorted distinct subjects of the labelled windows.
pub fn labelled_subjects(windows: &[WindowMeta]) -> Result<Vec<String>, EvalError> {
    let mut s = BTreeSet::new();
    for (i, w) in windows.iter().enumerate() {
        if w.label.is_some() {
            s.insert(subject_of(w, i)?.to_string());
        }
    }
    Ok(s.into_iter().collect())
}

fn indices_of(windows: &[WindowMeta], subjects: &BTreeSet<&str>) -> Vec<usize> {
    windows
        .iter()
        .enumerate()
        .filter(|(_, w)| {
            w.label.is_some() && w.subject.as_deref().is_some_and(|s| subjects.contains(s))
        })
        .map(|(i, _)| i)
        .collect()
}

fn subject_fold(
    windows: &[WindowMeta],
    name: String,
    seed: u64,
    train: Vec<String>,
    validation: Vec<String>,
    test: Vec<String>,
) -> Fold {
    let tr: BTreeSet<&str> = train.iter().map(String::as_str).collect();
    let va: BTreeSet<&str> = validation.iter().map(String::as_str).collect();
    let te: BTreeSet<&str> = test.iter().map(String::as_str).collect();
    Fold {
        train: indices_of(windows, &tr),
        validation: indices_of(windows, &va),
        test: indices_of(windows, &te),
        name,
        seed,
        train_subjects: train,
        validation_subjects: validation,
        test_subjects: test,
    }
}

/// The folds of `protocol` for one `seed` (the seed matters for leave-N-out and few-shot).
/// Only labelled windows are placed in folds. Every fold is checked with [`check_fold`].
pub fn make_folds(
    protocol: &Protocol,
    windows: &[WindowMeta],
    n_classes: usize,
    seed: u64,
) -> Result<Vec<Fold>, EvalError> {
    let subjects = labelled_subjects(windows)?;
    let mut folds = Vec::new();
    match protocol {
        Protocol::Loso => {
            if subjects.len() < 2 {
                return Err(EvalError::NotEnoughData(format!(
                    "leave-one-subject-out needs 2 subjects, found {}",
                    subjects.len()
                )));
            }
            for s in &subjects {
                let train = subjects.iter().filter(|t| *t != s).cloned().collect();
                folds.push(subject_fold(
                    windows,
                    format!("test={s}"),
                    seed,
                    train,
                    vec![],
                    vec![s.clone()],
                ));
            }
        }
        Protocol::Fixed {
            train,
            validation,
            test,
        } => {
            let known: BTreeSet<&str> = subjects.iter().map(String::as_str).collect();
            for (field, list) in [("train", train), ("validation", validation), ("test", test)] {
                for s in list {
                    if !known.contains(s.as_str()) {
                        return Err(EvalError::config(
                            format!("protocol.{field}"),
                            format!("subject {s:?} has no labelled window"),
                        ));
                    }
                }
            }
            folds.push(subject_fold(
                windows,
                "fixed".into(),
                seed,
                train.clone(),
                validation.clone(),
                test.clone(),
            ));
        }
        Protocol::LeaveNOut { n } => {
            if *n == 0 || *n >= subjects.len() {
                return Err(EvalError::config(
                    "protocol.n",
                    format!(
                        "must be in 1..{} (number of subjects), got {n}",
                        subjects.len()
                    ),
                ));
            }
            let mut order = subjects.clone();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            for (g, group) in order.chunks(*n).enumerate() {
                let mut test: Vec<String> = group.to_vec();
                test.sort();
                let train = subjects
                    .iter()
                    .filter(|s| !test.contains(s))
                    .cloned()
                    .collect();
                folds.push(subject_fold(
                    windows,
                    format!("group{g}:{}", test.join("+")),
                    seed,
                    train,
                    vec![],
                    test,
                ));
            }
        }
        Protocol::FewShot { k } => {
            if *k == 0 {
                return Err(EvalError::config("protocol.k", "must be > 0"));
            }
            for s in &subjects {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(s.as_bytes()));
                let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                for (i, w) in windows.iter().enumerate() {
                    if let (Some(l), Some(ws)) = (w.label, w.subject.as_deref()) {
                        if ws == s {
                            by_class.entry(l).or_default().push(i);
                        }
                    }
                }
                if by_class.len() < n_classes {
                    return Err(EvalError::NotEnoughData(format!(
                        "few-shot: subject {s} has windows of {} of the {n_classes} classes",
                        by_class.len()
                    )));
                }
                let mut train = Vec::new();
                for (class, idx) in &mut by_class {
                    if idx.len() <= *k {
                        return Err(EvalError::NotEnoughData(format!(
                            "few-shot: subject {s} has {} windows of class {class}, need more than k={k}",
                            idx.len()
                        )));
                    }
                    idx.shuffle(&mut rng);
                    train.extend_from_slice(&idx[..*k]);
                }
                train.sort_unstable();
                let test: Vec<usize> = by_class
                    .values()
                    .flatten()
                    .copied()
                    .filter(|&i| {
                        !train.contains(&i)
                            && !train.iter().any(|&t| overlaps(&windows[t], &windows[i]))
                    })
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                folds.push(Fold {
                    name: format!("subject={s}"),
                    seed,
                    train_subjects: vec![s.clone()],
                    validation_subjects: vec![],
                    test_subjects: vec![s.clone()],
                    train,
                    validation: vec![],
                    test,
                });
            }
        }
    }
    for f in &folds {
        check_fold(protocol, f, windows)?;
        if f.train.is_empty() || f.test.is_empty() {
            return Err(EvalError::NotEnoughData(format!(
                "fold {}: {} training and {} test windows",
                f.name,
                f.train.len(),
                f.test.len()
            )));
        }
    }
    Ok(folds)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Whether two windows share samples of the same recording.
fn overlaps(a: &WindowMeta, b: &WindowMeta) -> bool {
    a.entry == b.entry && a.start < b.start + b.len && b.start < a.start + a.len
}

/// Checks that nothing of the test side is on the training side (train or validation).
pub fn check_fold(
    protocol: &Protocol,
    fold: &Fold,
    windows: &[WindowMeta],
) -> Result<(), EvalError> {
    let get = |i: usize| {
        windows.get(i).ok_or_else(|| EvalError::Shape {
            what: format!("fold {}: window index", fold.name),
            expected: windows.len(),
            got: i,
        })
    };
    let train_side = fold.train.iter().chain(&fold.validation);
    if protocol.subject_disjoint() {
        let mut train_subjects = BTreeSet::new();
        for &i in train_side {
            train_subjects.insert(subject_of(get(i)?, i)?);
        }
        for s in fold.train_subjects.iter().chain(&fold.validation_subjects) {
            train_subjects.insert(s.as_str());
        }
        for &i in &fold.test {
            let s = subject_of(get(i)?, i)?;
            if train_subjects.contains(s) {
                return Err(EvalError::Leak {
                    fold: fold.name.clone(),
                    what: "subject",
                    item: s.to_string(),
                });
            }
        }
        for s in &fold.test_subjects {
            if train_subjects.contains(s.as_str()) {
                return Err(EvalError::Leak {
                    fold: fold.name.clone(),
                    what: "subject",
                    item: s.clone(),
                });
            }
        }
    } else {
        let train: Vec<usize> = train_side.copied().collect();
        for &i in &fold.test {
            let wi = get(i)?;
            for &t in &train {
                if t == i || overlaps(get(t)?, wi) {
                    return Err(EvalError::Leak {
                        fold: fold.name.clone(),
                        what: "window",
                        item: format!("test {i} / train {t}"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Moves whole training subjects to a validation side (for early stopping): `fraction` of the
/// training subjects (at least 1, at most all but 1), chosen with `seed`.
pub fn split_validation(
    fold: &Fold,
    windows: &[WindowMeta],
    fraction: f64,
    seed: u64,
) -> Result<Fold, EvalError> {
    if !fold.validation.is_empty() {
        return Ok(fold.clone());
    }
    let mut subjects = fold.train_subjects.clone();
    if subjects.len() < 2 {
        return Err(EvalError::NotEnoughData(format!(
            "fold {}: need 2 training subjects to hold one out for validation",
            fold.name
        )));
    }
    subjects.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_val = ((subjects.len() as f64 * fraction).round() as usize).clamp(1, subjects.len() - 1);
    let mut val: Vec<String> = subjects[..n_val].to_vec();
    let mut train: Vec<String> = subjects[n_val..].to_vec();
    val.sort();
    train.sort();
    let f = subject_fold(
        windows,
        fold.name.clone(),
        fold.seed,
        train,
        val,
        fold.test_subjects.clone(),
    );
    check_fold(&Protocol::Loso, &f, windows)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> Vec<WindowMeta> {
        let mut w = Vec::new();
        for s in 0..5 {
            for j in 0..8 {
                w.push(WindowMeta {
                    entry: s,
                    start: j * 100,
                    len: 200,
                    label: Some(j % 2),
                    subject: Some(format!("S{s}")),
                });
            }
        }
        w
    }

    #[test]
    fn loso_has_one_fold_per_subject_and_no_leak() {
        let w = windows();
        let folds = make_folds(&Protocol::Loso, &w, 2, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(folds.len(), 5);
        for f in &folds {
            assert_eq!(f.test.len(), 8);
            assert_eq!(f.train.len(), 32);
            for &i in &f.test {
                for &t in &f.train {
                    assert_ne!(w[i].subject, w[t].subject);
                }
            }
        }
    }

    #[test]
    fn a_leaking_fold_is_an_error() {
        let w = windows();
        let mut folds = make_folds(&Protocol::Loso, &w, 2, 0).unwrap_or_else(|e| panic!("{e}"));
        let f = &mut folds[0];
        let stolen = f.test[0];
        f.train.push(stolen);
        match check_fold(&Protocol::Loso, f, &w) {
            Err(EvalError::Leak { what, item, .. }) => {
                assert_eq!(what, "subject");
                assert_eq!(item, "S0");
            }
            other => panic!("expected a leak error, got {other:?}"),
        }
        let bad = Protocol::Fixed {
            train: vec!["S0".into(), "S1".into()],
            validation: vec![],
            test: vec!["S1".into()],
        };
        assert!(matches!(
            make_folds(&bad, &w, 2, 0),
            Err(EvalError::Leak { .. })
        ));
    }

    #[test]
    fn leave_n_out_covers_every_subject_once() {
        let w = windows();
        let folds =
            make_folds(&Protocol::LeaveNOut { n: 2 }, &w, 2, 7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(folds.len(), 3);
        let mut all: Vec<String> = folds.iter().flat_map(|f| f.test_subjects.clone()).collect();
        all.sort();
        assert_eq!(all, vec!["S0", "S1", "S2", "S3", "S4"]);
        let again =
            make_folds(&Protocol::LeaveNOut { n: 2 }, &w, 2, 7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(folds, again);
    }

    #[test]
    fn few_shot_takes_k_per_class_and_drops_overlapping_test_windows() {
        let w = windows();
        let folds =
            make_folds(&Protocol::FewShot { k: 1 }, &w, 2, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(folds.len(), 5);
        for f in &folds {
            assert_eq!(f.train.len(), 2);
            let labels: BTreeSet<_> = f.train.iter().map(|&i| w[i].label).collect();
            assert_eq!(labels.len(), 2);
            for &i in &f.test {
                for &t in &f.train {
                    assert!(!overlaps(&w[i], &w[t]));
                }
            }
            assert!(f.test.len() < 6);
        }
        let mut f = folds[0].clone();
        f.test.push(f.train[0]);
        assert!(matches!(
            check_fold(&Protocol::FewShot { k: 1 }, &f, &w),
            Err(EvalError::Leak { what: "window", .. })
        ));
    }

    #[test]
    fn validation_subjects_come_from_training_subjects() {
        let w = windows();
        let folds = make_folds(&Protocol::Loso, &w, 2, 0).unwrap_or_else(|e| panic!("{e}"));
        let f = split_validation(&folds[0], &w, 0.25, 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.validation_subjects.len(), 1);
        assert_eq!(f.train_subjects.len(), 3);
        assert!(!f.validation_subjects.contains(&"S0".to_string()));
    }

    #[test]
    fn cli_names_parse() {
        assert_eq!(Protocol::parse_cli("loso").ok(), Some(Protocol::Loso));
        assert_eq!(
            Protocol::parse_cli("leave-3-out").ok(),
            Some(Protocol::LeaveNOut { n: 3 })
        );
        assert_eq!(
            Protocol::parse_cli("few-shot-5").ok(),
            Some(Protocol::FewShot { k: 5 })
        );
        assert!(Protocol::parse_cli("kfold").is_err());
    }
}
