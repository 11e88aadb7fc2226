//! Strongroom's CSI driver (CSI spec v1.12): Identity, Controller and Node services over
//! gRPC on a unix socket.
//!
//! Layers: [`server`] (socket, shutdown) → [`identity`], [`controller`], [`node`] (request
//! validation, per-volume locking via [`locks`], parameters via [`params`], tenant tokens via
//! [`secrets`], capabilities via [`caps`]) → [`backend::VolumeBackend`] (the volume
//! manager's adapter). Errors are [`errors::CsiError`], mapped to gRPC codes in one place.
#![forbid(unsafe_code)]

/// Generated from `proto/csi.proto` (package `csi.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("csi.v1");
}

pub mod backend;
pub mod caps;
pub mod controller;
pub mod driver;
pub mod endpoint;
pub mod errors;
pub mod identity;
pub mod locks;
pub mod manager_backend;
pub mod mounts;
pub mod node;
pub mod params;
pub mod secrets;
pub mod server;
#[cfg(test)]
mod testing;

pub use backend::VolumeBackend;
pub use driver::{Driver, DriverConfig, Mode, DRIVER_NAME};
pub use errors::CsiError;
pub use manager_backend::{ManagerBackend, ManagerBackendConfig};
pub use server::serve;
