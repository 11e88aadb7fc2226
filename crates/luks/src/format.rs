//! Format parameters and the initial header layout.
//!
//! Default = the deterministic profile of the design brief: aes-xts-plain64, 512-bit key,
//! 4096-byte sectors, 16 KiB metadata copies, keyslots area up to a 16 MiB data offset,
//! PBKDF2-SHA256 with 1000 iterations for both keyslot and digest.

use crate::error::{Error, Result};
use crate::hash::HashAlg;
use crate::header::binary::HDR_SIZES;
use crate::keyslot;
use crate::model::{Area, Kdf, Keyslot};
use rand::RngCore;
use zeroize::Zeroizing;

pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 1000;
pub const DEFAULT_METADATA_SIZE: u64 = 16 * 1024;
pub const DEFAULT_DATA_OFFSET: u64 = 16 * 1024 * 1024;
pub const AF_STRIPES: u32 = 4000;

/// KDF of a new keyslot, with explicit parameters (no benchmarking: deterministic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KdfParams {
    Pbkdf2 {
        hash: String,
        iterations: u32,
    },
    Argon2i {
        time: u32,
        memory_kib: u32,
        cpus: u32,
    },
    Argon2id {
        time: u32,
        memory_kib: u32,
        cpus: u32,
    },
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::Pbkdf2 {
            hash: "sha256".into(),
            iterations: DEFAULT_PBKDF2_ITERATIONS,
        }
    }
}

impl KdfParams {
    /// Check against cryptsetup's limits and make a keyslot KDF with a fresh 32-byte salt.
    pub fn instantiate(&self) -> Result<Kdf> {
        let mut salt = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let argon = |id: bool, time: u32, memory: u32, cpus: u32| {
            if time < 1 || !(32..=4 * 1024 * 1024).contains(&memory) || !(1..=4).contains(&cpus) {
                return Err(Error::InvalidArgument(
                    "argon2: time >= 1, memory 32..4194304 KiB, cpus 1..4".into(),
                ));
            }
            Ok(Kdf::Argon2 {
                id,
                time,
                memory,
                cpus,
                salt: salt.clone(),
            })
        };
        match self {
            KdfParams::Pbkdf2 { hash, iterations } => {
                HashAlg::from_name(hash)?;
                if *iterations < 1000 {
                    return Err(Error::InvalidArgument(
                        "pbkdf2 needs at least 1000 iterations".into(),
                    ));
                }
                Ok(Kdf::Pbkdf2 {
                    hash: hash.clone(),
                    iterations: *iterations,
                    salt,
                })
            }
            KdfParams::Argon2i {
                time,
                memory_kib,
                cpus,
            } => argon(false, *time, *memory_kib, *cpus),
            KdfParams::Argon2id {
                time,
                memory_kib,
                cpus,
            } => argon(true, *time, *memory_kib, *cpus),
        }
    }
}

/// Parameters of a new keyslot.
#[derive(Debug, Clone, Default)]
pub struct KeyslotParams {
    pub kdf: KdfParams,
    /// Slot id; the lowest free one when `None`.
    pub slot: Option<u32>,
    /// 0 ignore, 1 normal (default), 2 prefer.
    pub priority: Option<u8>,
}

#[derive(Clone)]
pub struct FormatParams {
    pub cipher: String,
    pub key_size_bits: usize,
    pub sector_size: u32,
    pub keyslot: KeyslotParams,
    /// Hash and iterations of the volume key digest.
    pub digest_hash: String,
    pub digest_iterations: u32,
    /// hdr_size of each copy (one of the 9 allowed sizes).
    pub metadata_size: u64,
    /// Keyslots area size; default: everything between the metadata and the data offset (≤128 MiB).
    pub keyslots_size: Option<u64>,
    /// Data segment offset in bytes; default 16 MiB attached, 0 detached.
    pub data_offset: Option<u64>,
    /// The header lives on its own device; the data segment starts at `data_offset` (default 0)
    /// of the data device.
    pub detached: bool,
    pub label: String,
    pub subsystem: String,
    pub uuid: Option<String>,
    /// Use this volume key instead of a random one.
    pub volume_key: Option<Zeroizing<Vec<u8>>>,
}

impl Default for FormatParams {
    fn default() -> Self {
        FormatParams {
            cipher: "aes-xts-plain64".into(),
            key_size_bits: 512,
            sector_size: 4096,
            keyslot: KeyslotParams::default(),
            digest_hash: "sha256".into(),
            digest_iterations: DEFAULT_PBKDF2_ITERATIONS,
            metadata_size: DEFAULT_METADATA_SIZE,
            keyslots_size: None,
            data_offset: None,
            detached: false,
            label: String::new(),
            subsystem: String::new(),
            uuid: None,
            volume_key: None,
        }
    }
}

impl std::fmt::Debug for FormatParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormatParams")
            .field("cipher", &self.cipher)
            .field("key_size_bits", &self.key_size_bits)
            .field("sector_size", &self.sector_size)
            .field("keyslot", &self.keyslot)
            .field("metadata_size", &self.metadata_size)
            .field("keyslots_size", &self.keyslots_size)
            .field("data_offset", &self.data_offset)
            .field("detached", &self.detached)
            .field(
                "volume_key",
                &self.volume_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Resolved geometry of a new volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub hdr_size: u64,
    pub keyslots_size: u64,
    /// Data segment offset on the data device.
    pub data_offset: u64,
}

impl FormatParams {
    pub fn layout(&self) -> Result<Layout> {
        if !HDR_SIZES.contains(&self.metadata_size) {
            return Err(Error::InvalidArgument(format!(
                "metadata size {} is not an allowed size",
                self.metadata_size
            )));
        }
        if ![512, 1024, 2048, 4096].contains(&self.sector_size) {
            return Err(Error::InvalidArgument(
                "sector size must be 512, 1024, 2048 or 4096".into(),
            ));
        }
        if let Some(u) = &self.uuid {
            let ok = u.len() == 36
                && u.char_indices().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                });
            if !ok {
                return Err(Error::InvalidArgument(format!("{u:?} is not a UUID")));
            }
        }
        if self.label.len() > 47 || self.subsystem.len() > 47 {
            return Err(Error::InvalidArgument(
                "label and subsystem hold at most 47 bytes".into(),
            ));
        }
        let meta = 2 * self.metadata_size;
        let data_offset = self.data_offset.unwrap_or(if self.detached {
            0
        } else {
            DEFAULT_DATA_OFFSET
        });
        if !data_offset.is_multiple_of(self.sector_size as u64)
            || !data_offset.is_multiple_of(4096) && !self.detached
        {
            return Err(Error::InvalidArgument(
                "data offset must be aligned to 4096 and the sector size".into(),
            ));
        }
        let keyslots_size = match self.keyslots_size {
            Some(k) => k,
            None if self.detached => DEFAULT_DATA_OFFSET - meta,
            None => {
                data_offset
                    .saturating_sub(meta)
                    .min(crate::validate::MAX_KEYSLOTS_SIZE)
                    / 4096
                    * 4096
            }
        };
        if keyslots_size % 4096 != 0 || keyslots_size > crate::validate::MAX_KEYSLOTS_SIZE {
            return Err(Error::InvalidArgument(
                "keyslots size must be 4 KiB aligned and at most 128 MiB".into(),
            ));
        }
        if !self.detached && data_offset < meta + keyslots_size {
            return Err(Error::InvalidArgument(
                "data offset lies inside the header".into(),
            ));
        }
        let key_size = self.key_size_bits / 8;
        if keyslot::area_size(key_size, AF_STRIPES) > keyslots_size {
            return Err(Error::InvalidArgument(
                "keyslots area too small for one keyslot".into(),
            ));
        }
        Ok(Layout {
            hdr_size: self.metadata_size,
            keyslots_size,
            data_offset,
        })
    }
}

/// A random volume key of `len` bytes whose XTS halves differ.
pub fn random_volume_key(len: usize) -> Zeroizing<Vec<u8>> {
    let mut vk = Zeroizing::new(vec![0u8; len]);
    loop {
        rand::rngs::OsRng.fill_bytes(&mut vk);
        let (a, b) = vk.split_at(len / 2);
        if a != b {
            return vk;
        }
    }
}

/// Random RFC 4122 version 4 UUID text.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A keyslot description for `vk_len`-byte keys in the given area.
pub fn new_keyslot(
    id: u32,
    vk_len: usize,
    encryption: &str,
    offset: u64,
    kdf: Kdf,
    priority: u8,
) -> Keyslot {
    Keyslot {
        id,
        key_size: vk_len,
        priority,
        kdf,
        af_stripes: AF_STRIPES,
        af_hash: "sha256".into(),
        area: Area {
            offset,
            size: keyslot::area_size(vk_len, AF_STRIPES),
            encryption: encryption.into(),
            key_size: vk_len,
        },
    }
}
