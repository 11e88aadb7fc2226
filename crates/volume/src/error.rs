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

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The CSI/gRPC-style class name.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::PermissionDenied(_) => "PERMISSION_DENIED",
            Error::NotFound(_) => "NOT_FOUND",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Error::Corrupt(_) | Error::Io { .. } | Error::Luks(_) => "INTERNAL",
            Error::Command(_) | Error::Internal(_) => "INTERNAL",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}
