//! The words the volume manager shares with its callers (the CSI driver, the CLI), declared
//! once: the filesystem type, the protection mode and the protection a new volume asks for.
//! Each parses from its one spelling and refuses anything else with a clear error.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The filesystem made on a volume (once, at its first mount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub const ALL: [FsType; 2] = [FsType::Ext4, FsType::Xfs];

    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for FsType {
    type Err = Error;
    /// `ext4` or `xfs`; anything else is INVALID_ARGUMENT (never a silent ext4).
    fn from_str(s: &str) -> Result<Self, Error> {
        FsType::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("filesystem {s:?} is not supported (ext4 or xfs)"))
            })
    }
}

/// How a volume's keyslot secret is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtectionMode {
    /// Wrapped by the tenant's transit key, the blob kept in the volume metadata.
    Envelope,
    /// Stored in KV (ceph-csi's `vaulttokens` layout).
    Kv,
}

impl ProtectionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionMode::Envelope => "envelope",
            ProtectionMode::Kv => "kv",
        }
    }
}

impl fmt::Display for ProtectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ProtectionMode {
    type Err = Error;
    /// `envelope` or `kv`.
    fn from_str(s: &str) -> Result<Self, Error> {
        [ProtectionMode::Envelope, ProtectionMode::Kv]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("protection {s:?}: use \"envelope\" or \"kv\""))
            })
    }
}

/// How to protect a new volume's secret (the CSI driver's validated StorageClass choice and
/// the CLI's flags both end up as one of these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtectionRequest {
    /// Wrapped by transit key `key` on mount `mount`, with the volume bound in as context.
    Envelope { mount: String, key: String },
    /// Stored at `<backend>/<volume id>` in KV v1 or v2 (found with the mount preflight).
    Kv { backend: String },
}

impl ProtectionRequest {
    /// The default: the tenant's transit key `tenant-<tenant>` on `transit/`.
    pub fn envelope_for(tenant: &str) -> Self {
        ProtectionRequest::Envelope {
            mount: "transit".into(),
            key: crate::tenant::transit_key(tenant),
        }
    }

    pub fn mode(&self) -> ProtectionMode {
        match self {
            ProtectionRequest::Envelope { .. } => ProtectionMode::Envelope,
            ProtectionRequest::Kv { .. } => ProtectionMode::Kv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_each_and_no_fallback() {
        for f in FsType::ALL {
            assert_eq!(f.as_str().parse::<FsType>().unwrap(), f);
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{f}\""));
        }
        for bad in ["btrfs", "EXT4", "", "ext4 "] {
            let e = bad.parse::<FsType>().unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
        }
        for m in [ProtectionMode::Envelope, ProtectionMode::Kv] {
            assert_eq!(m.as_str().parse::<ProtectionMode>().unwrap(), m);
        }
        assert!("plain".parse::<ProtectionMode>().is_err());
        assert_eq!(
            ProtectionRequest::envelope_for("a"),
            ProtectionRequest::Envelope {
                mount: "transit".into(),
                key: "tenant-a".into()
            }
        );
    }
}
