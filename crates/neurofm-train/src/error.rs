//! Errors of the training engine.

use std::path::PathBuf;

/// Everything that can go wrong while training, checkpointing or exporting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed or misses a field.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file is malformed, or a tensor in it has an unexpected dtype or shape.
    #[error("{path}: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// A checkpoint directory is incomplete or inconsistent.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// Strict loading found tensors that do not match the model.
    #[error("{path}: checkpoint does not match the model: {report}")]
    Mismatch {
        path: PathBuf,
        report: Box<crate::checkpoint::LoadReport>,
    },
    /// A configuration value is invalid; `field` names the key.
    #[error("invalid setting `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// A batch, the loss or the gradients became NaN or infinite.
    #[error("non-finite {what} at step {step} (recordings in the batch: {})", recordings.join(", "))]
    NonFinite {
        step: u64,
        what: String,
        recordings: Vec<String>,
    },
    /// The data source failed to deliver a window.
    #[error("data: {0}")]
    Data(String),
    /// Drawing the loss curve failed.
    #[error("plot {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
