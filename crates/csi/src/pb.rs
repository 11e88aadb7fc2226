//! The CSI protocol types and gRPC services, generated at build time from `proto/csi.proto`
//! (CSI spec v1.12, package `csi.v1`) by `build.rs`.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("csi.v1");
