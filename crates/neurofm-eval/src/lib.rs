//! Evaluation of neurofm encoders and baselines.
//!
//! - [`protocol`]: leave-one-subject-out, fixed subject split, leave-N-subjects-out and
//!   within-subject few-shot folds, with a hard check that no subject (few-shot: no window)
//!   is on both the training and the test side.
//! - [`ea`]: Euclidean Alignment per subject.
//! - [`bandpower`]: log band-power features (Welch PSD).
//! - [`logreg`]: multinomial L2 logistic regression (L-BFGS, f64), standardization, grouped
//!   inner cross-validation for `C`.
//! - [`metrics`]: accuracy, balanced accuracy, Cohen's κ, weighted F1, AUROC, PR-AUC, chance.
//! - [`probe`]: features → folds → linear probe → per-fold / per-subject metrics.
//! - [`task`], [`store_source`]: task files and the store's windows.
//! - [`report`]: `report.json`, `report.md` and PNG plots.

pub mod bandpower;
pub mod ea;
pub mod error;
pub mod logreg;
pub mod metrics;
pub mod plot;
pub mod probe;
pub mod protocol;
pub mod report;
pub mod source;
pub mod store_source;
pub mod task;

pub use error::EvalError;
