//! The driver's error classes and their gRPC status codes (one pure function, [`code`]).
//!
//! The first five classes mirror the volume manager's (`strongroom_volume::Error`):
//! KMS unreachable → UNAVAILABLE, missing/expired token → UNAUTHENTICATED, another tenant's
//! volume → PERMISSION_DENIED, NOT_FOUND, bad parameters → INVALID_ARGUMENT. The rest are the
//! CSI-specific outcomes the spec's error tables name. No variant ever carries a secret: the
//! messages are built by this crate from field names and ids, never from secret values.

use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsiError {
    /// The key manager cannot be reached or is sealed (retryable).
    #[error("key manager unavailable: {0}")]
    Unavailable(String),
    /// The tenant token is missing, malformed, expired or revoked.
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// A valid token without access to this volume (another tenant's).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A missing or bad request field or parameter.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A volume of that name exists with incompatible properties, or a path is already
    /// used with another capability.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The volume's state forbids the call (shredded, published elsewhere, ...).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// Another operation on the same volume is in progress, or a list token is stale.
    #[error("aborted: {0}")]
    Aborted(String),
    /// A size outside what the driver supports.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// No room left for the volume.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The driver does not implement this call (the CO must not retry).
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = CsiError> = std::result::Result<T, E>;

/// The gRPC status code of an error class.
pub fn code(e: &CsiError) -> Code {
    match e {
        CsiError::Unavailable(_) => Code::Unavailable,
        CsiError::Unauthenticated(_) => Code::Unauthenticated,
        CsiError::PermissionDenied(_) => Code::PermissionDenied,
        CsiError::NotFound(_) => Code::NotFound,
        CsiError::Invalid(_) => Code::InvalidArgument,
        CsiError::AlreadyExists(_) => Code::AlreadyExists,
        CsiError::FailedPrecondition(_) => Code::FailedPrecondition,
        CsiError::Aborted(_) => Code::Aborted,
        CsiError::OutOfRange(_) => Code::OutOfRange,
        CsiError::ResourceExhausted(_) => Code::ResourceExhausted,
        CsiError::Unimplemented(_) => Code::Unimplemented,
        CsiError::Internal(_) => Code::Internal,
    }
}

impl CsiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CsiError::Invalid(msg.into())
    }

    /// A required request field that is empty or absent.
    pub fn missing(field: &str) -> Self {
        CsiError::Invalid(format!("{field} is required"))
    }

    /// Retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CsiError::Unavailable(_) | CsiError::Aborted(_))
    }
}

/// The status sent to the CO: the mapped code and a human-readable message; `details` stay
/// empty, as the spec requires.
impl From<CsiError> for Status {
    fn from(e: CsiError) -> Self {
        Status::new(code(&e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_maps_to_its_grpc_code() {
        let cases = [
            (CsiError::Unavailable("kms".into()), Code::Unavailable),
            (CsiError::Unauthenticated("t".into()), Code::Unauthenticated),
            (
                CsiError::PermissionDenied("p".into()),
                Code::PermissionDenied,
            ),
            (CsiError::NotFound("v".into()), Code::NotFound),
            (CsiError::Invalid("x".into()), Code::InvalidArgument),
            (CsiError::AlreadyExists("v".into()), Code::AlreadyExists),
            (
                CsiError::FailedPrecondition("s".into()),
                Code::FailedPrecondition,
            ),
            (CsiError::Aborted("busy".into()), Code::Aborted),
            (CsiError::OutOfRange("big".into()), Code::OutOfRange),
            (
                CsiError::ResourceExhausted("full".into()),
                Code::ResourceExhausted,
            ),
            (CsiError::Unimplemented("snap".into()), Code::Unimplemented),
            (CsiError::Internal("bug".into()), Code::Internal),
        ];
        for (e, c) in cases {
            assert_eq!(code(&e), c, "{e}");
            let s: Status = e.clone().into();
            assert_eq!(s.code(), c);
            assert_eq!(s.message(), e.to_string());
            assert!(s.details().is_empty(), "status.details must be empty");
        }
    }

    #[test]
    fn missing_names_the_field() {
        let s: Status = CsiError::missing("volume_id").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("volume_id"));
    }

    #[test]
    fn only_unavailable_and_aborted_are_retryable() {
        assert!(CsiError::Unavailable(String::new()).is_retryable());
        assert!(CsiError::Aborted(String::new()).is_retryable());
        assert!(!CsiError::Unauthenticated(String::new()).is_retryable());
        assert!(!CsiError::Invalid(String::new()).is_retryable());
    }
}
