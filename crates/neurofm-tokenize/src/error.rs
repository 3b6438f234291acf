//! Errors of the tokenizer crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid tokenizer JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}`: {reason}")]
    Field {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error("tokenizer config: field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("tokenizer input: {0}")]
    Input(String),
    #[error("BPE: {0}")]
    Bpe(String),
}

pub(crate) fn check(
    cond: bool,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), TokenizeError> {
    if cond {
        Ok(())
    } else {
        Err(TokenizeError::Config {
            field,
            reason: reason(),
        })
    }
}
