//! Strongroom volume manager: per-volume LUKS2 encryption over a backing store, with the
//! keyslot secret protected by a Vault-compatible key manager and tenants isolated by their
//! own KMS tokens.
//!
//! The face is this file's `pub use` list: the [`Manager`] and its requests and reports, the
//! shared vocabulary ([`State`], [`FsType`], [`ProtectionMode`], [`ProtectionRequest`],
//! [`KvVersion`], [`SecretString`] for every token) and the typed [`Error`]/[`ErrorKind`];
//! [`tenant`] is the admin's tenant setup. Inside, one concept per module: `store` (backing
//! stores), `meta` (checksummed, atomically written metadata), `state` (the persisted state
//! machine), `protect` (envelope via transit with context, or KV), `kms` (credentials and
//! error classes), `cache` (TTL key cache, zeroized), `datapath` (FUSE + loop, or dm-crypt)
//! and `manager` (the operations).
// `unsafe` only in `datapath::mapping` (mmap and its SIGBUS handler) and `datapath::krbd`
// (the kernel keyring's add_key/keyctl); invariants at their tops.
#![deny(unsafe_code)]

#[cfg(feature = "bench")]
pub mod bench;
mod cache;
mod ceph_conf;
mod datapath;
mod error;
mod kms;
mod manager;
mod meta;
mod protect;
mod rbd_claim;

mod state;
mod store;
mod store_rbd;
pub mod tenant;
mod vocab;

pub use ceph_conf::MsMode;
pub use datapath::holder::{HolderCommand, HolderLauncher};
pub use datapath::keeper::Role as HolderRole;
pub use datapath::{is_mounted, mount_points, DataPathKind};
pub use error::{Error, ErrorKind, Result};
pub use kms::{Credential, KmsConfig};
pub use manager::{
    is_volume_dir, CreateRequest, Manager, ManagerConfig, OpenVolume, RotateKind, VolumeInfo,
};
pub use meta::{CephRef, ImageFeatures, ImageLayout, LuksParams, StoreSpec};
pub use state::{Pending, State};
pub use store_rbd::{new_image_name, provide_ceph_key, RbdDevice, RbdStore, RBD_META_KEY};
pub use strongroom_vault_client::{KvVersion, SecretString};
pub use vocab::{FsType, ProtectionMode, ProtectionRequest};
