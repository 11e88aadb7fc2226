//! Test-only support: an in-memory backend and the gRPC-over-socket tests.

mod grpc;
pub mod mem;
