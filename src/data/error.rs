//! Errors of the data pipeline. Each names the file (or folder) and the problem.

use std::path::{Path, PathBuf};

/// A data error: what went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but its content is not what it should be.
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    /// Inputs that are fine alone but do not fit together (paired volumes, options).
    #[error("{0}")]
    Mismatch(String),
}

pub type DataResult<T> = std::result::Result<T, DataError>;

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn invalid(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}
