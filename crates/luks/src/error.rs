//! Typed errors. Texts never contain secrets; header errors name the copy and the field.

use std::fmt;

/// Which of the two on-disk header copies an error or a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderCopy {
    Primary,
    Secondary,
}

impl HeaderCopy {
    pub fn other(self) -> Self {
        match self {
            HeaderCopy::Primary => HeaderCopy::Secondary,
            HeaderCopy::Secondary => HeaderCopy::Primary,
        }
    }
}

impl fmt::Display for HeaderCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderCopy::Primary => f.write_str("primary header"),
            HeaderCopy::Secondary => f.write_str("secondary header"),
        }
    }
}

/// A JSON/binary rule violation, before it is attributed to a header copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted path of the offending field, e.g. `segments.0.sector_size`.
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
    pub fn at(self, copy: HeaderCopy) -> Error {
        Error::Header {
            copy,
            field: self.field,
            reason: self.reason,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{copy}: field `{field}`: {reason}")]
    Header {
        copy: HeaderCopy,
        field: String,
        reason: String,
    },
    #[error("no valid LUKS2 header: primary: {primary}; secondary: {secondary}")]
    NoValidHeader {
        primary: Box<Error>,
        secondary: Box<Error>,
    },
    #[error("{0}")]
    NotLuks2(String),
    #[error("another signature was found on the device ({0}); refusing to use or repair the LUKS2 header automatically (run an explicit repair)")]
    ForeignSignature(String),
    #[error("device of {size} bytes is smaller than its LUKS2 metadata and keyslots area ({need} bytes)")]
    DeviceTooSmall { size: u64, need: u64 },
    #[error("device is read-only for this engine: {0}")]
    ReadOnly(String),
    #[error("no keyslot could be opened with this key")]
    WrongKey,
    #[error("keyslot {slot}: {reason}")]
    Keyslot { slot: u32, reason: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("no space: {0}")]
    NoSpace(String),
    #[error("crypto error: {0}")]
    Crypto(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    pub fn keyslot(slot: u32, reason: impl Into<String>) -> Self {
        Error::Keyslot {
            slot,
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
