//! AES-XTS sector encryption with two interchangeable backends, cross-checked in tests:
//! [`awslc`] (fast, FFI, 512-bit keys only) and [`rustcrypto`] (pure Rust, all key sizes).
//!
//! The IV of a data unit is the `plain64` IV: the little-endian 64-bit sector number, zero padded
//! to 16 bytes.

pub mod awslc;
pub mod rustcrypto;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// aws-lc for 512-bit keys, pure Rust otherwise.
    #[default]
    Auto,
    AwsLc,
    RustCrypto,
}

pub enum Xts {
    AwsLc(awslc::AwsLcXts),
    Rust(rustcrypto::RustXts),
}

pub fn plain64_iv(sector: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&sector.to_le_bytes());
    iv
}

impl Xts {
    pub fn new(key: &[u8], backend: Backend) -> Result<Xts> {
        let (a, b) = key.split_at(key.len() / 2);
        if a == b {
            return Err(Error::Crypto(
                "XTS key halves are equal; refusing such a key".into(),
            ));
        }
        match backend {
            Backend::AwsLc => Ok(Xts::AwsLc(awslc::AwsLcXts::new(key)?)),
            Backend::RustCrypto => Ok(Xts::Rust(rustcrypto::RustXts::new(key)?)),
            Backend::Auto if key.len() == 64 => Ok(Xts::AwsLc(awslc::AwsLcXts::new(key)?)),
            Backend::Auto => Ok(Xts::Rust(rustcrypto::RustXts::new(key)?)),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Xts::AwsLc(_) => Backend::AwsLc,
            Xts::Rust(_) => Backend::RustCrypto,
        }
    }

    /// Encrypt or decrypt consecutive sectors in place; sector `i` uses IV block `iv_of(i)`.
    pub fn sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        encrypt: bool,
        iv_of: impl Fn(usize) -> [u8; 16],
    ) -> Result<()> {
        if sector_size < 16
            || !sector_size.is_multiple_of(16)
            || !buf.len().is_multiple_of(sector_size)
        {
            return Err(Error::InvalidArgument(
                "buffer is not a whole number of sectors".into(),
            ));
        }
        match self {
            Xts::AwsLc(x) => x.sectors(buf, sector_size, encrypt, iv_of),
            Xts::Rust(x) => {
                for (i, s) in buf.chunks_mut(sector_size).enumerate() {
                    x.sector(s, &iv_of(i), encrypt);
                }
                Ok(())
            }
        }
    }
}
