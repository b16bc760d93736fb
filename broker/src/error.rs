//! The broker's error: a stable code, an HTTP status, and a human message.
//!
//! The codes are the protocol's ([`ErrorCode`], defined in `bus-proto` and shared with the
//! client; see `proto-docs/http-api.md`); clients match on them. 4xx
//! messages say what is wrong with the request; 5xx messages are generic and the detail goes
//! to the log.

use crate::storage::StorageError;
use crate::subject::SubjectError;

pub use bus_proto::ErrorCode;

/// An error with its code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl Error {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// A subject error: wildcards and reserved namespaces get their own codes.
    pub fn subject(e: SubjectError) -> Self {
        let code = match e {
            SubjectError::WildcardNotAllowed { .. } | SubjectError::WildcardInsideToken { .. } => {
                ErrorCode::WildcardInSubject
            }
            SubjectError::Reserved { .. } => ErrorCode::ReservedNamespace,
            _ => ErrorCode::InvalidSubject,
        };
        Error::new(code, e.to_string())
    }

    /// A pattern error.
    pub fn pattern(e: SubjectError) -> Self {
        Error::new(ErrorCode::InvalidPattern, e.to_string())
    }

    /// An internal error: logged in full, answered with a generic message.
    pub fn internal(what: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "{what}");
        Error::new(
            ErrorCode::Internal,
            format!("internal error while {what}; see the broker log"),
        )
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::PayloadTooLarge { .. } => {
                Error::new(ErrorCode::PayloadTooLarge, e.to_string())
            }
            StorageError::InvalidEvent(_) => Error::new(ErrorCode::InvalidBatch, e.to_string()),
            StorageError::InvalidNamespace(_) => {
                Error::new(ErrorCode::InvalidSubject, e.to_string())
            }
            StorageError::UnknownEvent(_) => Error::new(ErrorCode::UnknownEvent, e.to_string()),
            StorageError::ReadOnly { .. } | StorageError::DiskFull { .. } => {
                tracing::error!(error = %e, "append refused");
                Error::new(
                    ErrorCode::ReadOnly,
                    "the namespace is read-only after a storage failure; see the broker log",
                )
            }
            StorageError::Damaged { .. } => Error::new(ErrorCode::NamespaceDamaged, e.to_string()),
            StorageError::Remote(_) => {
                tracing::error!(error = %e, "storage server failed");
                Error::new(
                    ErrorCode::StorageUnavailable,
                    "the storage server failed or is unreachable; see the broker log",
                )
            }
            StorageError::Closed => {
                Error::new(ErrorCode::ShuttingDown, "the broker is shutting down")
            }
            other => Error::internal("accessing storage", other),
        }
    }
}
