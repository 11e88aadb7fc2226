//! Strongroom's CSI driver (CSI spec v1.12): Identity, Controller and Node services over
//! gRPC on a unix socket.
//!
//! Layers: `server` (socket, shutdown) → `identity`, `controller`, `node` (request
//! validation, per-volume locking via `locks`, StorageClass parameters via `params`, tenant
//! tokens via `secrets`, capabilities via `caps`) → [`VolumeBackend`] ([`ManagerBackend`], the
//! volume manager's adapter). Errors are [`CsiError`], mapped to gRPC codes in one place.
//! The volume vocabulary (filesystem type, protection, KV version, the token type) is the
//! volume manager's, used unchanged. The face is this file's `pub use` list and [`pb`], the
//! generated protocol module.
#![forbid(unsafe_code)]

mod backend;
mod caps;
mod controller;
mod driver;
mod endpoint;
mod errors;
mod identity;
mod locks;
mod manager_backend;
mod mounts;
mod node;
mod params;
pub mod pb;
mod rbd_id;
mod secrets;
mod server;
mod snapshots;
#[cfg(test)]
mod testing;

pub use backend::{
    Capacity, ContentSource, CreateSpec, ExpandResult, PublishSpec, RbdLocation, SnapshotRecord,
    SnapshotSpec, StageSpec, Usage, VolumeBackend, VolumeRecord, VolumeStats,
};
pub use caps::{Access, AccessMode, VolumeCap};
pub use driver::{Driver, DriverConfig, Mode, CSI_SPEC_VERSION, DRIVER_NAME};
pub use endpoint::parse as parse_endpoint;
pub use errors::CsiError;
pub use manager_backend::{ManagerBackend, ManagerBackendConfig};
pub use params::{
    ClusterMap, KmsCatalog, KmsConnection, PvcMeta, RbdParams, SecretFiles, VolumeParams, PVC_NAME,
    PVC_NAMESPACE, PV_NAME,
};
pub use server::{serve, signal, ServeError};
