//! Ceph RBD for Strongroom: a safe binding of the few librados/librbd calls a backing store
//! needs (Debian's Ceph 16.2 `librbd1`/`librados2`; no maintained crate covers that release
//! with encryption). The libraries are loaded at run time, on the first connection: a binary
//! built with this crate builds and runs without Ceph, and an RBD operation on a machine
//! without it fails with [`ErrorKind::LibraryMissing`], naming the packages to install.
//!
//! - [`Cluster`]: a connection, from a ceph.conf + keyring ([`Cluster::from_conf`], honouring
//!   `$CEPH_CONF`) or from monitors + user id + key held in memory ([`Cluster::from_key`]: the
//!   key never goes to argv, environment or a file).
//! - [`IoCtx`]: a pool and RADOS namespace: create, clone, list, remove and trash images;
//!   advisory object locks ([`Locker`]).
//! - [`Image`]: an open image: size, I/O (also asynchronous, bounded: [`AioQueue`]), metadata,
//!   snapshots, flatten, the exclusive lock, watchers, and librbd's own LUKS2 encryption.
//! - [`Error`] with an [`ErrorKind`] from the errno: callers branch on kinds, never on text.
//!
//! All `unsafe` code is in the `ffi` module, under the invariants written at its top.
#![deny(unsafe_code)]

mod cluster;
pub mod dev;
mod error;
mod ffi;
mod image;
mod objlock;

pub use cluster::{Cluster, Features, IoCtx, TrashEntry};
pub use error::{Error, ErrorKind, Result};
pub use image::{AioQueue, Image, Snapshot, Watcher};
pub use objlock::Locker;
