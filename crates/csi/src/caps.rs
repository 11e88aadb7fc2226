//! Volume capabilities: the CSI message, validated into what this driver supports.
//!
//! A LUKS2 volume is opened on one node at a time, so only single-node access modes are
//! supported; block and mount access types both are.

use crate::errors::CsiError;
use crate::pb::volume_capability::{access_mode::Mode, AccessType};
use crate::pb::VolumeCapability;
use strongroom_volume::FsType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Block,
    /// `fs_type` `None`: the volume's own (from the StorageClass, default ext4).
    Mount {
        fs_type: Option<FsType>,
        mount_flags: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    SingleNodeWriter,
    SingleNodeReaderOnly,
    SingleNodeSingleWriter,
    SingleNodeMultiWriter,
}

impl AccessMode {
    /// At most one publish target at a time.
    pub fn single_target(self) -> bool {
        matches!(self, AccessMode::SingleNodeSingleWriter)
    }
    pub fn read_only(self) -> bool {
        matches!(self, AccessMode::SingleNodeReaderOnly)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCap {
    pub access: Access,
    pub mode: AccessMode,
}

/// Why a capability cannot be used: malformed (INVALID_ARGUMENT) or valid but not
/// supported by this driver (the caller picks the code the spec wants for its RPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapError {
    Malformed(String),
    Unsupported(String),
}

impl CapError {
    pub fn into_csi(self, unsupported_as_precondition: bool) -> CsiError {
        match self {
            CapError::Malformed(m) => CsiError::Invalid(m),
            CapError::Unsupported(m) if unsupported_as_precondition => {
                CsiError::FailedPrecondition(m)
            }
            CapError::Unsupported(m) => CsiError::Invalid(m),
        }
    }
    pub fn message(&self) -> &str {
        match self {
            CapError::Malformed(m) | CapError::Unsupported(m) => m,
        }
    }
}

pub fn parse(c: &VolumeCapability) -> Result<VolumeCap, CapError> {
    let access = match &c.access_type {
        None => {
            return Err(CapError::Malformed(
                "volume capability: access_type (block or mount) is required".into(),
            ))
        }
        Some(AccessType::Block(_)) => Access::Block,
        Some(AccessType::Mount(m)) => {
            let fs_type = if m.fs_type.is_empty() {
                None
            } else {
                Some(
                    crate::params::fs_type("fs_type", &m.fs_type)
                        .map_err(|e| CapError::Unsupported(e.to_string()))?,
                )
            };
            if !m.volume_mount_group.is_empty() {
                return Err(CapError::Unsupported(
                    "volume_mount_group is not supported (no VOLUME_MOUNT_GROUP capability)".into(),
                ));
            }
            Access::Mount {
                fs_type,
                mount_flags: m.mount_flags.clone(),
            }
        }
    };
    let mode = match c.access_mode.as_ref().map(|m| m.mode()) {
        None | Some(Mode::Unknown) => {
            return Err(CapError::Malformed(
                "volume capability: access_mode is required".into(),
            ))
        }
        Some(Mode::SingleNodeWriter) => AccessMode::SingleNodeWriter,
        Some(Mode::SingleNodeReaderOnly) => AccessMode::SingleNodeReaderOnly,
        Some(Mode::SingleNodeSingleWriter) => AccessMode::SingleNodeSingleWriter,
        Some(Mode::SingleNodeMultiWriter) => AccessMode::SingleNodeMultiWriter,
        Some(m) => {
            return Err(CapError::Unsupported(format!(
            "access mode {} is not supported: an encrypted volume is opened on one node at a time",
            m.as_str_name()
        )))
        }
    };
    Ok(VolumeCap { access, mode })
}

/// Parse a non-empty list (CreateVolume, ValidateVolumeCapabilities).
pub fn parse_all(caps: &[VolumeCapability]) -> Result<Vec<VolumeCap>, CapError> {
    if caps.is_empty() {
        return Err(CapError::Malformed(
            "volume_capabilities is required".into(),
        ));
    }
    caps.iter().map(parse).collect()
}

/// The one filesystem type the mount capabilities agree on, if any names one.
pub fn requested_fs_type(caps: &[VolumeCap]) -> Result<Option<FsType>, CsiError> {
    let mut found: Option<FsType> = None;
    for c in caps {
        if let Access::Mount {
            fs_type: Some(t), ..
        } = c.access
        {
            match found {
                Some(f) if f != t => {
                    return Err(CsiError::Invalid(format!(
                        "volume capabilities ask for two filesystems ({} and {})",
                        f.as_str(),
                        t.as_str()
                    )))
                }
                _ => found = Some(t),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::volume_capability::{AccessMode as PbMode, BlockVolume, MountVolume};

    fn cap(access: Option<AccessType>, mode: Option<Mode>) -> VolumeCapability {
        VolumeCapability {
            access_type: access,
            access_mode: mode.map(|m| PbMode { mode: m as i32 }),
        }
    }
    fn mount(fs: &str) -> Option<AccessType> {
        Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        }))
    }

    #[test]
    fn supported_capabilities() {
        let c = parse(&cap(mount("xfs"), Some(Mode::SingleNodeWriter))).unwrap();
        assert_eq!(
            c.access,
            Access::Mount {
                fs_type: Some(FsType::Xfs),
                mount_flags: vec![]
            }
        );
        let c = parse(&cap(
            Some(AccessType::Block(BlockVolume {})),
            Some(Mode::SingleNodeSingleWriter),
        ))
        .unwrap();
        assert_eq!(c.access, Access::Block);
        assert!(c.mode.single_target());
        assert!(parse(&cap(mount(""), Some(Mode::SingleNodeReaderOnly)))
            .unwrap()
            .mode
            .read_only());
    }

    #[test]
    fn malformed_and_unsupported() {
        assert!(matches!(
            parse(&cap(None, Some(Mode::SingleNodeWriter))),
            Err(CapError::Malformed(_))
        ));
        assert!(matches!(
            parse(&cap(mount(""), None)),
            Err(CapError::Malformed(_))
        ));
        assert!(matches!(
            parse(&cap(mount(""), Some(Mode::Unknown))),
            Err(CapError::Malformed(_))
        ));
        assert!(matches!(
            parse(&cap(mount(""), Some(Mode::MultiNodeMultiWriter))),
            Err(CapError::Unsupported(_))
        ));
        assert!(matches!(
            parse(&cap(mount("btrfs"), Some(Mode::SingleNodeWriter))),
            Err(CapError::Unsupported(_))
        ));
        assert!(matches!(parse_all(&[]), Err(CapError::Malformed(_))));
    }

    #[test]
    fn filesystem_agreement() {
        let a = parse(&cap(mount("ext4"), Some(Mode::SingleNodeWriter))).unwrap();
        let b = parse(&cap(mount("xfs"), Some(Mode::SingleNodeWriter))).unwrap();
        let n = parse(&cap(mount(""), Some(Mode::SingleNodeWriter))).unwrap();
        assert_eq!(
            requested_fs_type(&[a.clone(), n.clone()]).unwrap(),
            Some(FsType::Ext4)
        );
        assert_eq!(requested_fs_type(&[n]).unwrap(), None);
        assert!(requested_fs_type(&[a, b]).is_err());
    }
}
