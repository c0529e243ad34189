//! The library's error type. Every op validates its operands up front and reports the op
//! name and the offending shapes, so a caller never meets a panic deep inside an index.

/// Errors raised by the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Operands whose shapes do not fit the op.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    /// Misuse of the tape (backward from a non-scalar, a foreign variable, ...).
    #[error("autograd: {0}")]
    Autograd(String),
    /// Misuse of a parameter arena or optimizer.
    #[error("parameters: {0}")]
    Params(String),
    /// A device that cannot be opened, or a failed device operation (launch, copy, memory).
    #[error("device: {0}")]
    Device(String),
    /// Files and data.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

/// Result with the engine's error.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a shape error of `op`.
pub fn shape_error(op: &'static str, msg: impl Into<String>) -> Error {
    Error::Shape {
        op,
        msg: msg.into(),
    }
}
