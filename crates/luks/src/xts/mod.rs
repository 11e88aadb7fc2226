//! AES-XTS sector encryption with interchangeable backends, cross-checked in tests:
//! [`vaes`] (VAES + AVX-512 intrinsics, 256- and 512-bit keys, x86-64 CPUs that have them),
//! [`awslc`] (FFI, 512-bit keys only) and [`rustcrypto`] (pure Rust, all key sizes).
//! `vaes` and `awslc` are the crate's only `unsafe` code; their invariants are at their tops.
//!
//! The IV of a data unit is the `plain64` IV: the little-endian 64-bit sector number, zero padded
//! to 16 bytes.

pub mod awslc;
pub mod rustcrypto;
#[cfg(target_arch = "x86_64")]
pub mod vaes;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// VAES/AVX-512 where the CPU has it (checked at run time), else aws-lc for 512-bit keys,
    /// else pure Rust.
    #[default]
    Auto,
    /// VAES/AVX-512 only (an error on CPUs without it).
    Vaes,
    AwsLc,
    RustCrypto,
}

/// Can the VAES/AVX-512 backend run on this CPU?
pub fn vaes_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return vaes::available();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

pub enum Xts {
    #[cfg(target_arch = "x86_64")]
    Vaes(Box<vaes::VaesXts>),
    AwsLc(awslc::AwsLcXts),
    Rust(rustcrypto::RustXts),
}

/// A buffer of `len` bytes must hold whole data units of a whole number of 16-byte blocks.
pub(crate) fn check_units(len: usize, unit: usize) -> Result<()> {
    if unit < 16 || !unit.is_multiple_of(16) || !len.is_multiple_of(unit) {
        return Err(Error::InvalidArgument(
            "buffer is not a whole number of sectors of whole 16-byte blocks".into(),
        ));
    }
    Ok(())
}

/// A source and a destination of `src_len` and `dst_len` bytes for an out-of-place pass: the
/// same length, whole data units.
pub(crate) fn check_pair(src_len: usize, dst_len: usize, unit: usize) -> Result<()> {
    check_units(src_len, unit)?;
    if src_len != dst_len {
        return Err(Error::InvalidArgument(
            "source and destination lengths differ".into(),
        ));
    }
    Ok(())
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
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes => Ok(Xts::Vaes(Box::new(vaes::VaesXts::new(key)?))),
            #[cfg(target_arch = "x86_64")]
            Backend::Auto if (key.len() == 32 || key.len() == 64) && vaes::available() => {
                Ok(Xts::Vaes(Box::new(vaes::VaesXts::new(key)?)))
            }
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Vaes => Err(Error::Unsupported(
                "VAES XTS backend: not an x86-64 CPU".into(),
            )),
            Backend::AwsLc => Ok(Xts::AwsLc(awslc::AwsLcXts::new(key)?)),
            Backend::RustCrypto => Ok(Xts::Rust(rustcrypto::RustXts::new(key)?)),
            Backend::Auto if key.len() == 64 => Ok(Xts::AwsLc(awslc::AwsLcXts::new(key)?)),
            Backend::Auto => Ok(Xts::Rust(rustcrypto::RustXts::new(key)?)),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(target_arch = "x86_64")]
            Xts::Vaes(_) => Backend::Vaes,
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
        check_units(buf.len(), sector_size)?;
        match self {
            #[cfg(target_arch = "x86_64")]
            Xts::Vaes(x) => x.sectors(buf, sector_size, encrypt, iv_of),
            Xts::AwsLc(x) => x.sectors(buf, sector_size, encrypt, iv_of),
            Xts::Rust(x) => {
                for (i, s) in buf.chunks_mut(sector_size).enumerate() {
                    x.sector(s, &iv_of(i), encrypt);
                }
                Ok(())
            }
        }
    }

    /// As [`sectors`](Self::sectors), from `src` into `dst` (same length): one pass over the
    /// data where the backend can (VAES), else a copy and then the in-place pass.
    pub fn sectors_from(
        &self,
        src: &[u8],
        dst: &mut [u8],
        sector_size: usize,
        encrypt: bool,
        iv_of: impl Fn(usize) -> [u8; 16],
    ) -> Result<()> {
        check_pair(src.len(), dst.len(), sector_size)?;
        match self {
            #[cfg(target_arch = "x86_64")]
            Xts::Vaes(x) => x.sectors_from(src, dst, sector_size, encrypt, iv_of),
            _ => {
                dst.copy_from_slice(src);
                self.sectors(dst, sector_size, encrypt, iv_of)
            }
        }
    }
}
