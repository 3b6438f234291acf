use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while reading a recording. Every variant names the file.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A header field is missing, non-numeric, or out of range.
    #[error("{}: header field `{field}`: {reason}", path.display())]
    Header {
        path: PathBuf,
        field: String,
        reason: String,
    },
    /// The file is shorter than its header says.
    #[error("{}: truncated: {what}: expected {expected} bytes, found {got}", path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        expected: u64,
        got: u64,
    },
    /// A companion file (.vmrk, .fdt, .eeg, ...) is missing.
    #[error("{}: companion file {} is missing", path.display(), companion.display())]
    MissingCompanion { path: PathBuf, companion: PathBuf },
    /// Hashing the file (provenance sha256, on a background thread) failed.
    #[error("{}: computing the provenance sha256 failed: {reason}", path.display())]
    Hash { path: PathBuf, reason: String },
    /// A valid file using a feature this reader does not support.
    #[error("{}: unsupported: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    /// No reader accepted the file.
    #[error("{}: no reader could open it ({})", path.display(), describe_tried(tried))]
    NoReader {
        path: PathBuf,
        /// (reader name, why it refused)
        tried: Vec<(String, String)>,
    },
    /// A segment request outside the recording.
    #[error("{}: segment [{start}, {stop}) is outside the recording (n_times = {n_times})", path.display())]
    Segment {
        path: PathBuf,
        start: usize,
        stop: usize,
        n_times: usize,
    },
    #[error("{}: {source}", path.display())]
    Core {
        path: PathBuf,
        #[source]
        source: neurofm_core::CoreError,
    },
}

fn describe_tried(tried: &[(String, String)]) -> String {
    if tried.is_empty() {
        return "no reader handles this extension".to_string();
    }
    tried
        .iter()
        .map(|(r, why)| format!("{r}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl IoError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn header(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        IoError::Header {
            path: path.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
