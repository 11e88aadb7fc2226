//! Error classes that mean something to a caller (and map 1:1 onto CSI/gRPC codes):
//! KMS unreachable → [`Error::Unavailable`] (retry later), bad or expired token →
//! [`Error::Unauthenticated`], another tenant's key → [`Error::PermissionDenied`],
//! bad parameters → [`Error::InvalidArgument`]. No variant ever carries a secret.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key manager cannot be reached or is sealed: retryable.
    #[error("key manager unavailable (retryable): {0}")]
    Unavailable(String),
    /// The token is missing, malformed, expired or revoked.
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// A valid token without access to this volume's key (e.g. another tenant's token).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The volume's state forbids the operation (e.g. shredded, mounted).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// Metadata failed its checksum or could not be parsed.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("I/O error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("LUKS2: {0}")]
    Luks(#[from] strongroom_luks::Error),
    /// An external command (losetup, mkfs, mount) failed.
    #[error("{0}")]
    Command(String),
    /// Fault injection (`STRONGROOM_FAULT`): the process stops here in tests.
    #[error("internal: {0}")]
    Internal(String),
}

/// The class of an [`Error`], for callers that decide by it (exit codes, gRPC codes, retries).
/// Serialized as its CSI/gRPC code name (`PERMISSION_DENIED`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    Unavailable,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    InvalidArgument,
    FailedPrecondition,
    Internal,
}

impl ErrorKind {
    /// The CSI/gRPC code name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Unauthenticated => "UNAUTHENTICATED",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Error {
    /// An error of class `kind` with `message` (an answer that crossed a process boundary).
    pub fn from_kind(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::Unavailable => Error::Unavailable(message),
            ErrorKind::Unauthenticated => Error::Unauthenticated(message),
            ErrorKind::PermissionDenied => Error::PermissionDenied(message),
            ErrorKind::NotFound => Error::NotFound(message),
            ErrorKind::InvalidArgument => Error::InvalidArgument(message),
            ErrorKind::FailedPrecondition => Error::FailedPrecondition(message),
            ErrorKind::Internal => Error::Internal(message),
        }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The class of this error (an I/O error is classed by its `io::ErrorKind`: a store that
    /// refuses writes because another client holds its lock — RBD's exclusive lock answers
    /// EROFS or EBUSY — is a failed precondition, not an internal error).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::Io { source, .. } => io_kind(source),
            Error::Luks(strongroom_luks::Error::Io { source, .. }) => io_kind(source),
            Error::Corrupt(_) | Error::Luks(_) => ErrorKind::Internal,
            Error::Command(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The CSI/gRPC-style class name (for messages and JSON; decide by [`Self::kind`]).
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }
}

/// How an I/O error from a store classes.
fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ReadOnlyFilesystem | K::ResourceBusy => ErrorKind::FailedPrecondition,
        K::TimedOut => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod io_kind_tests {
    use super::*;

    #[test]
    fn a_store_refusing_writes_for_another_clients_lock_is_a_failed_precondition() {
        // librbd answers EROFS (lock lost) or EBUSY (lock held elsewhere)
        for errno in [30, 16] {
            let io = || std::io::Error::from_raw_os_error(errno);
            assert_eq!(
                Error::io("write", io()).kind(),
                ErrorKind::FailedPrecondition
            );
            let luks = strongroom_luks::Error::Io {
                context: "write sectors".into(),
                source: io(),
            };
            assert_eq!(Error::Luks(luks).kind(), ErrorKind::FailedPrecondition);
        }
        let other = Error::io("read", std::io::Error::from_raw_os_error(5));
        assert_eq!(other.kind(), ErrorKind::Internal);
        let slow = Error::io("read", std::io::ErrorKind::TimedOut.into());
        assert_eq!(slow.kind(), ErrorKind::Unavailable);
    }
}
