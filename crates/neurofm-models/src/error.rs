//! Errors of the models crate.

/// A model configuration or input that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration field has an unusable value.
    #[error("model config: field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// An unknown preset name.
    #[error("unknown {model} preset `{name}` (known: {known})")]
    UnknownPreset {
        model: &'static str,
        name: String,
        known: &'static str,
    },
}

impl From<ModelError> for candle_core::Error {
    fn from(e: ModelError) -> Self {
        candle_core::Error::Msg(e.to_string())
    }
}

pub(crate) fn check(
    cond: bool,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ModelError> {
    if cond {
        Ok(())
    } else {
        Err(ModelError::Config {
            field,
            reason: reason(),
        })
    }
}
