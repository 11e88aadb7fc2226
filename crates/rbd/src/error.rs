//! Typed errors: librados/librbd return `-errno`; callers branch on [`ErrorKind`], never on text.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// ENOENT: no such pool, namespace, image, snapshot, metadata key or lock owner.
    NotFound,
    /// EEXIST: an image or snapshot of that name exists already.
    AlreadyExists,
    /// EBUSY / ENOTEMPTY: the image has watchers, snapshots or children; a lock is held.
    Busy,
    /// EPERM / EACCES: cephx refused, or an encryption passphrase did not open the header.
    PermissionDenied,
    /// EINVAL / EDOM / ERANGE / ENAMETOOLONG: a bad argument.
    InvalidArgument,
    /// EROFS: a write to a read-only image or snapshot, or the exclusive lock is another's.
    ReadOnly,
    /// ENOSPC / EDQUOT.
    NoSpace,
    /// ETIMEDOUT: the cluster did not answer in time.
    TimedOut,
    /// EBLOCKLISTED (108, ESHUTDOWN): this client was blocklisted (its lock was broken).
    Blocklisted,
    /// ENOSYS / EOPNOTSUPP: the feature is not enabled on this image or cluster.
    Unsupported,
    /// Ceph's client libraries (`librados.so.2`, `librbd.so.1`) could not be loaded.
    LibraryMissing,
    /// Anything else (EIO, ...).
    Other,
}

impl ErrorKind {
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::ENOENT => ErrorKind::NotFound,
            libc::EEXIST => ErrorKind::AlreadyExists,
            libc::EBUSY | libc::ENOTEMPTY => ErrorKind::Busy,
            libc::EPERM | libc::EACCES => ErrorKind::PermissionDenied,
            libc::EINVAL | libc::EDOM | libc::ERANGE | libc::ENAMETOOLONG => {
                ErrorKind::InvalidArgument
            }
            libc::EROFS => ErrorKind::ReadOnly,
            libc::ENOSPC | libc::EDQUOT => ErrorKind::NoSpace,
            libc::ETIMEDOUT => ErrorKind::TimedOut,
            libc::ESHUTDOWN => ErrorKind::Blocklisted,
            libc::ENOSYS | libc::EOPNOTSUPP => ErrorKind::Unsupported,
            _ => ErrorKind::Other,
        }
    }
}

/// A failed call: what was being done (`op`, e.g. "rbd_open"), on what (`what`: pool, image or
/// snapshot names — never a key or passphrase) and the errno it returned (0 when the error
/// is ours, not the library's).
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub op: &'static str,
    pub what: String,
    pub errno: i32,
}

impl Error {
    pub(crate) fn errno(op: &'static str, what: impl Into<String>, errno: i32) -> Self {
        Error {
            kind: ErrorKind::from_errno(errno),
            op,
            what: what.into(),
            errno,
        }
    }
    /// Ceph's client libraries could not be loaded (`reason` is the loader's message).
    pub(crate) fn library_missing(reason: &str) -> Self {
        Error {
            kind: ErrorKind::LibraryMissing,
            op: "loading librbd",
            what: format!(
                "{reason} (install Ceph's client libraries: apt-get install librbd1 librados2)"
            ),
            errno: 0,
        }
    }
    /// An argument refused before it reached the library.
    pub(crate) fn invalid(op: &'static str, what: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::InvalidArgument,
            op,
            what: what.into(),
            errno: 0,
        }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.op, self.what)?;
        if self.kind == ErrorKind::LibraryMissing {
            return write!(f, "not available");
        }
        if self.errno == 0 {
            return write!(f, "invalid argument");
        }
        write!(f, "{}", std::io::Error::from_raw_os_error(self.errno))
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        if e.errno > 0 {
            let os = std::io::Error::from_raw_os_error(e.errno);
            std::io::Error::new(os.kind(), e.to_string())
        } else {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
