//! Classification metrics, computed as scikit-learn computes them (checked against scikit-learn
//! on fixed vectors by `tests/metrics_reference.rs`; reference values from
//! `scripts/reference/make_metrics_reference.py`).
//!
//! Labels are class indices `0..n_classes`; probabilities are row-major `[n, n_classes]`.

use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// Every metric of one evaluation (a fold, a subject, or a pooled set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub cohen_kappa: f64,
    pub f1_weighted: f64,
    /// Binary: ROC AUC of class 1's probability; multiclass: macro one-vs-rest. `None` when a
    /// class is missing from `y_true` (undefined, scikit-learn raises).
    pub auroc: Option<f64>,
    /// Average precision (scikit-learn's `average_precision_score`); binary: class 1, multiclass:
    /// macro over classes. `None` when a class is missing from `y_true`.
    pub pr_auc: Option<f64>,
    /// Rate of the most frequent class of `y_true` (what always predicting it scores).
    pub chance_majority: f64,
    /// `1 / n_classes`.
    pub chance_uniform: f64,
    /// `confusion[t][p]`: windows of true class `t` predicted as `p`.
    pub confusion: Vec<Vec<u64>>,
}

fn check_labels(y: &[usize], n_classes: usize, what: &str) -> Result<(), EvalError> {
    if let Some(&bad) = y.iter().find(|&&v| v >= n_classes) {
        return Err(EvalError::config(
            what,
            format!("label {bad} is out of range for {n_classes} classes"),
        ));
    }
    Ok(())
}

/// Confusion matrix `[n_classes][n_classes]`, rows = true class, columns = predicted class.
pub fn confusion_matrix(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Result<Vec<Vec<u64>>, EvalError> {
    if y_true.len() != y_pred.len() {
        return Err(EvalError::Shape {
            what: "y_pred".into(),
            expected: y_true.len(),
            got: y_pred.len(),
        });
    }
    check_labels(y_true, n_classes, "y_true")?;
    check_labels(y_pred, n_classes, "y_pred")?;
    let mut c = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        c[t][p] += 1;
    }
    Ok(c)
}

pub fn accuracy(c: &[Vec<u64>]) -> f64 {
    let total: u64 = c.iter().flatten().sum();
    let diag: u64 = (0..c.len()).map(|i| c[i][i]).sum();
    if total == 0 {
        return f64::NAN;
    }
    diag as f64 / total as f64
}

/// Mean recall over the classes present in `y_true` (scikit-learn, `adjusted=False`).
pub fn balanced_accuracy(c: &[Vec<u64>]) -> f64 {
    let mut sum = 0.0;
    let mut k = 0usize;
    for (i, row) in c.iter().enumerate() {
        let support: u64 = row.iter().sum();
        if support > 0 {
            sum += row[i] as f64 / support as f64;
            k += 1;
        }
    }
    if k == 0 {
        return f64::NAN;
    }
    sum / k as f64
}

/// Cohen's kappa (unweighted), as `sklearn.metrics.cohen_kappa_score`.
pub fn cohen_kappa(c: &[Vec<u64>]) -> f64 {
    let k = c.len();
    let total: f64 = c.iter().flatten().map(|&v| v as f64).sum();
    let col: Vec<f64> = (0..k)
        .map(|j| c.iter().map(|r| r[j] as f64).sum())
        .collect();
    let row: Vec<f64> = c
        .iter()
        .map(|r| r.iter().map(|&v| v as f64).sum())
        .collect();
    let mut num = 0.0;
    let mut den = 0.0;
    for i in 0..k {
        for j in 0..k {
            if i != j {
                num += c[i][j] as f64;
                den += row[i] * col[j] / total;
            }
        }
    }
    1.0 - num / den
}

/// Support-weighted F1 (scikit-learn `f1_score(average="weighted")`, `zero_division=0`).
pub fn f1_weighted(c: &[Vec<u64>]) -> f64 {
    let k = c.len();
    let mut num = 0.0;
    let mut wsum = 0.0;
    for i in 0..k {
        let tp = c[i][i] as f64;
        let support: f64 = c[i].iter().map(|&v| v as f64).sum();
        let predicted: f64 = c.iter().map(|r| r[i] as f64).sum();
        let fp = predicted - tp;
        let fn_ = support - tp;
        let denom = 2.0 * tp + fp + fn_;
        let f1 = if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
        num += f1 * support;
        wsum += support;
    }
    if wsum == 0.0 {
        return 0.0;
    }
    num / wsum
}

/// scikit-learn's `_binary_clf_curve`: cumulative (false positives, true positives) at each
/// distinct score, scores taken in decreasing order.
fn binary_clf_curve(positive: &[bool], score: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let mut fps = Vec::new();
    let mut tps = Vec::new();
    let mut tp = 0.0;
    let mut fp = 0.0;
    for (pos, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last = pos + 1 == order.len();
        if last || score[order[pos + 1]] != score[i] {
            fps.push(fp);
            tps.push(tp);
        }
    }
    (fps, tps)
}

/// Area under the ROC curve of a binary problem (trapezoid rule over the ROC points, as
/// scikit-learn). `None` when one class is absent.
pub fn roc_auc_binary(positive: &[bool], score: &[f64]) -> Option<f64> {
    let (fps, tps) = binary_clf_curve(positive, score);
    let (&fp_total, &tp_total) = (fps.last()?, tps.last()?);
    if fp_total == 0.0 || tp_total == 0.0 {
        return None;
    }
    let mut area = 0.0;
    let (mut x0, mut y0) = (0.0, 0.0);
    for (&fp, &tp) in fps.iter().zip(&tps) {
        let (x1, y1) = (fp / fp_total, tp / tp_total);
        area += (x1 - x0) * (y0 + y1) / 2.0;
        (x0, y0) = (x1, y1);
    }
    Some(area)
}

/// Average precision of a binary problem, as `sklearn.metrics.average_precision_score`:
/// `sum_n (R_n - R_{n-1}) P_n`. `None` when there is no positive.
pub fn average_precision_binary(positive: &[bool], score: &[f64]) -> Option<f64> {
    let (fps, tps) = binary_clf_curve(positive, score);
    let &tp_total = tps.last()?;
    if tp_total == 0.0 {
        return None;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (&fp, &tp) in fps.iter().zip(&tps) {
        let precision = tp / (tp + fp);
        let recall = tp / tp_total;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Probability-based metrics: (AUROC, average precision). Binary: class 1's column;
/// multiclass: macro one-vs-rest. `None` when a class is absent from `y_true`.
pub fn ranking_metrics(
    y_true: &[usize],
    proba: &[f64],
    n_classes: usize,
) -> Result<(Option<f64>, Option<f64>), EvalError> {
    let n = y_true.len();
    if proba.len() != n * n_classes {
        return Err(EvalError::Shape {
            what: "probabilities [n, n_classes]".into(),
            expected: n * n_classes,
            got: proba.len(),
        });
    }
    check_labels(y_true, n_classes, "y_true")?;
    if n_classes < 2 {
        return Ok((None, None));
    }
    let column = |k: usize| -> Vec<f64> { (0..n).map(|i| proba[i * n_classes + k]).collect() };
    if n_classes == 2 {
        let pos: Vec<bool> = y_true.iter().map(|&y| y == 1).collect();
        let s = column(1);
        return Ok((roc_auc_binary(&pos, &s), average_precision_binary(&pos, &s)));
    }
    let mut auc_sum = 0.0;
    let mut ap_sum = 0.0;
    for k in 0..n_classes {
        let pos: Vec<bool> = y_true.iter().map(|&y| y == k).collect();
        let s = column(k);
        match (roc_auc_binary(&pos, &s), average_precision_binary(&pos, &s)) {
            (Some(a), Some(p)) => {
                auc_sum += a;
                ap_sum += p;
            }
            _ => return Ok((None, None)),
        }
    }
    Ok((
        Some(auc_sum / n_classes as f64),
        Some(ap_sum / n_classes as f64),
    ))
}

impl Metrics {
    /// All metrics from true labels, predicted labels and (optionally) class probabilities.
    pub fn compute(
        y_true: &[usize],
        y_pred: &[usize],
        proba: Option<&[f64]>,
        n_classes: usize,
    ) -> Result<Metrics, EvalError> {
        if y_true.is_empty() {
            return Err(EvalError::NotEnoughData(
                "no test windows to compute metrics on".into(),
            ));
        }
        let c = confusion_matrix(y_true, y_pred, n_classes)?;
        let (auroc, pr_auc) = match proba {
            Some(p) => ranking_metrics(y_true, p, n_classes)?,
            None => (None, None),
        };
        let max_support = c.iter().map(|r| r.iter().sum::<u64>()).max().unwrap_or(0);
        Ok(Metrics {
            n: y_true.len(),
            accuracy: accuracy(&c),
            balanced_accuracy: balanced_accuracy(&c),
            cohen_kappa: cohen_kappa(&c),
            f1_weighted: f1_weighted(&c),
            auroc,
            pr_auc,
            chance_majority: max_support as f64 / y_true.len() as f64,
            chance_uniform: 1.0 / n_classes as f64,
            confusion: c,
        })
    }
}

/// Mean and sample standard deviation (ddof = 1; 0 for a single value) of the finite values.
pub fn mean_std(values: &[f64]) -> (f64, f64, usize) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0, 1);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_predictions() {
        let y = [0, 0, 1, 1, 1];
        let m = Metrics::compute(&y, &y, None, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.cohen_kappa, 1.0);
        assert!((m.chance_majority - 0.6).abs() < 1e-12);
        let inv: Vec<usize> = y.iter().map(|v| 1 - v).collect();
        let m = Metrics::compute(&y, &inv, None, 2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.accuracy, 0.0);
        assert_eq!(m.balanced_accuracy, 0.0);
        assert!(m.cohen_kappa < 0.0);
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // One positive and one negative with the same score: AUC 0.5.
        let auc = roc_auc_binary(&[true, false], &[0.3, 0.3]);
        assert_eq!(auc, Some(0.5));
        assert_eq!(roc_auc_binary(&[true, true], &[0.3, 0.1]), None);
    }

    #[test]
    fn out_of_range_label_is_an_error() {
        assert!(Metrics::compute(&[0, 2], &[0, 1], None, 2).is_err());
    }
}
