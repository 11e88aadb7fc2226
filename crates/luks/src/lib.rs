//! Pure-Rust LUKS2 engine, byte-compatible with cryptsetup (2.6+) in both directions.
//!
//! Layers, bottom up:
//! - [`device`]: the [`BlockDevice`] trait (files, raw block devices; Ceph RBD later).
//! - [`header`]: binary header + JSON area of both copies, checksums, copy selection and repair
//!   ([`header::binary`], [`header::json`]; the JSON dialect json-c reads), and [`validate`]:
//!   every JSON rule cryptsetup enforces, with its C semantics. Whether a header opens is
//!   cryptsetup's verdict (`crates/strongroom/tests/luks_differential.rs` compares the two on
//!   thousands of mutants of real headers).
//! - [`kdf`], [`af`], [`digest`], [`cipher`] / [`xts`]: the crypto pieces of a keyslot.
//! - [`keyslot`]: unlock / create keyslot material; [`update`]: crash-safe header writes.
//! - [`volume`]: the high-level API (format, unlock, add/remove/change keys);
//!   [`crypt`]: an encrypted block device reading and writing plaintext at byte offsets.
//!
//! `unsafe` is denied everywhere except two modules of [`xts`]: the FFI module [`xts::awslc`]
//! and the SIMD module `xts::vaes` (x86-64 only), whose invariants are written at their tops.
#![deny(unsafe_code)]

pub mod af;
pub mod cipher;
pub mod crypt;
pub mod device;
pub mod digest;
pub mod error;
pub mod format;
pub mod hash;
pub mod header;
pub mod kdf;
pub mod keyslot;
pub mod model;
pub mod update;
pub mod validate;
pub mod volume;
pub mod xts;

pub use crypt::CryptDevice;
pub use device::{BlockDevice, FileDevice, MemDevice};
pub use error::{Error, HeaderCopy, Result};
pub use format::{FormatParams, KdfParams};
pub use volume::Volume;
