//! Strongroom volume manager: per-volume LUKS2 encryption over a backing store, with the
//! keyslot secret protected by a Vault-compatible key manager and tenants isolated by their
//! own KMS tokens.
//!
//! Modules, one concept each: [`store`] (backing stores), [`meta`] (checksummed, atomically
//! written metadata), [`state`] (the persisted state machine), [`protect`] (envelope via
//! transit with context, or KV), [`kms`] (credentials and error classes), [`cache`] (TTL key
//! cache, zeroized), [`datapath`] (FUSE + loop, or dm-crypt), [`tenant`] (admin setup of a
//! tenant's key and policy) and [`manager`] (the API).
// `unsafe` only in `datapath::mapping` (mmap and its SIGBUS handler; invariants at its top).
#![deny(unsafe_code)]

pub mod cache;
pub mod datapath;
pub mod error;
pub mod kms;
pub mod manager;
pub mod meta;
pub mod protect;
pub mod state;
pub mod store;
pub mod tenant;

pub use error::{Error, Result};
pub use kms::{Credential, KmsConfig, Token};
pub use manager::{
    CreateRequest, Manager, ManagerConfig, OpenVolume, ProtectionRequest, RotateKind, VolumeInfo,
};
