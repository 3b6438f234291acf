use std::path::PathBuf;

use thiserror::Error;

/// Errors raised by the evaluation crate.
#[derive(Debug, Error)]
pub enum EvalError {
    /// A subject (or, for within-subject protocols, a window) is on both the training and the
    /// test side of a fold. This is a bug in a protocol or a bad split file, never acceptable.
    #[error("fold {fold}: {what} {item:?} is on both the training and the test side")]
    Leak {
        fold: String,
        what: &'static str,
        item: String,
    },
    /// A configuration value (task file, protocol, CLI option) is unusable.
    #[error("invalid {field}: {reason}")]
    Config { field: String, reason: String },
    /// Array shapes or lengths that should agree do not.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: usize,
        got: usize,
    },
    /// Not enough data to do what was asked (e.g. one class in the training side).
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// A numerical routine failed (non-finite values, no convergence).
    #[error("numerical failure in {what}: {reason}")]
    Numerical { what: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    Toml { path: PathBuf, reason: String },
    #[error("{path}: cannot draw plot: {reason}")]
    Plot { path: PathBuf, reason: String },
    /// Reading a window from the data source failed.
    #[error("reading window {index}: {reason}")]
    Source { index: usize, reason: String },
}

impl EvalError {
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EvalError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
