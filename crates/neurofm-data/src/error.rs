//! Errors of the preprocessing and windowing code.

use thiserror::Error;

use crate::dsp::DspError;
use crate::store::StoreError;

/// What can go wrong while preparing or windowing recordings. Variants name the recording, the
/// step or the field involved.
#[derive(Debug, Error)]
pub enum DataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A recipe file that cannot be read or parsed.
    #[error("{path}: {reason}")]
    RecipeFile { path: String, reason: String },
    /// A recipe step that cannot apply to a recording.
    #[error("recording `{recording}`: step {index} (`{step}`): {reason}")]
    Step {
        recording: String,
        index: usize,
        step: String,
        reason: String,
    },
    /// A file a recipe step reads (mask, atlas, labels) that is missing or unusable.
    #[error("step {index} (`{step}`): {key} {path}: {reason}")]
    StepFile {
        index: usize,
        step: String,
        key: String,
        path: String,
        reason: String,
    },
    /// A recipe that is invalid whatever the recording (bad order, bad parameter).
    #[error("recipe: {0}")]
    Recipe(String),
    /// A window configuration that does not fit the store.
    #[error("windows: {0}")]
    Window(String),
    #[error(transparent)]
    Dsp(#[from] DspError),
    #[error("{0}")]
    Core(#[from] neurofm_core::CoreError),
}
