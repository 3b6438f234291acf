use thiserror::Error;

/// Errors raised when domain invariants are violated.
#[derive(Debug, Error)]
pub enum CoreError {
    #[error("signal shape mismatch: {what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: usize,
        got: usize,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
}
