//! Strongroom's CSI driver (CSI spec v1.12): Identity, Controller and Node services over
//! gRPC on a unix socket.
#![forbid(unsafe_code)]

/// Generated from `proto/csi.proto` (package `csi.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("csi.v1");
}

pub mod errors;
pub mod locks;
pub mod params;
pub mod secrets;
