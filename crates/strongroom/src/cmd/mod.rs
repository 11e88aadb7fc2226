//! One module per command family; each exposes its clap arguments and a `run` returning the
//! process exit code.

pub mod client;
pub mod csi;
pub mod demo;
pub mod luks;
mod luks_benchmark;
pub mod rbd_bench;
pub mod server;
pub mod volume;
