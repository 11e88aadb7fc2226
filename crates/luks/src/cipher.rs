//! dm-crypt cipher specifications (`aes-xts-plain64`, `aes-xts-plain`, `aes-cbc-essiv:sha256`,
//! `aes-cbc-plain64`, `aes-cbc-plain`) applied to runs of sectors.
//!
//! IVs count 512-byte units whatever the sector size (LUKS2 never sets `iv_large_sectors`):
//! sector `k` of a buffer starting at IV `first_iv` uses `first_iv + k * sector_size / 512`.

use crate::error::{Error, Result};
use crate::hash::HashAlg;
use crate::xts::rustcrypto::AesKey;
use crate::xts::{plain64_iv, Backend, Xts};

enum CbcIv {
    Plain64,
    Plain,
    Essiv(AesKey),
}

enum Kind {
    Xts { xts: Xts, iv32: bool },
    Cbc { aes: AesKey, iv: CbcIv },
}

pub struct SectorCipher {
    kind: Kind,
}

/// Is `spec` a cipher specification this engine can process?
pub fn supported(spec: &str) -> bool {
    matches!(
        spec,
        "aes-xts-plain64" | "aes-xts-plain" | "aes-cbc-plain64" | "aes-cbc-plain"
    ) || spec
        .strip_prefix("aes-cbc-essiv:")
        .is_some_and(|h| HashAlg::from_name(h).is_ok())
}

impl SectorCipher {
    pub fn new(spec: &str, key: &[u8], backend: Backend) -> Result<SectorCipher> {
        let kind = match spec {
            "aes-xts-plain64" | "aes-xts-plain" => {
                if key.len() != 32 && key.len() != 64 {
                    return Err(Error::Unsupported(format!(
                        "{spec} with a {}-bit key",
                        key.len() * 8
                    )));
                }
                Kind::Xts {
                    xts: Xts::new(key, backend)?,
                    iv32: spec.ends_with("plain"),
                }
            }
            "aes-cbc-plain64" => Kind::Cbc {
                aes: AesKey::new(key)?,
                iv: CbcIv::Plain64,
            },
            "aes-cbc-plain" => Kind::Cbc {
                aes: AesKey::new(key)?,
                iv: CbcIv::Plain,
            },
            _ => match spec.strip_prefix("aes-cbc-essiv:") {
                Some(h) => {
                    let hash = HashAlg::from_name(h)?;
                    let salt = zeroize::Zeroizing::new(hash.hash(&[key]));
                    Kind::Cbc {
                        aes: AesKey::new(key)?,
                        iv: CbcIv::Essiv(AesKey::new(&salt)?),
                    }
                }
                None => return Err(Error::Unsupported(format!("cipher specification {spec:?}"))),
            },
        };
        Ok(SectorCipher { kind })
    }

    pub fn is_xts(&self) -> bool {
        matches!(self.kind, Kind::Xts { .. })
    }

    pub fn xts_backend(&self) -> Option<Backend> {
        match &self.kind {
            Kind::Xts { xts, .. } => Some(xts.backend()),
            _ => None,
        }
    }

    /// As [`process`](Self::process), from `src` into `dst` (same length): a decrypting (or
    /// encrypting) copy, one pass over the data with the VAES backend.
    pub fn process_from(
        &self,
        src: &[u8],
        dst: &mut [u8],
        sector_size: usize,
        first_iv: u64,
        encrypt: bool,
    ) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::InvalidArgument(
                "source and destination lengths differ".into(),
            ));
        }
        match &self.kind {
            Kind::Xts { xts, iv32 }
                if sector_size >= 512
                    && sector_size.is_multiple_of(512)
                    && src.len().is_multiple_of(sector_size) =>
            {
                let step = (sector_size / 512) as u64;
                xts.sectors_from(src, dst, sector_size, encrypt, |i| {
                    let n = first_iv.wrapping_add(step.wrapping_mul(i as u64));
                    plain64_iv(if *iv32 { n & 0xffff_ffff } else { n })
                })
            }
            _ => {
                dst.copy_from_slice(src);
                self.process(dst, sector_size, first_iv, encrypt)
            }
        }
    }

    /// Process whole sectors in place.
    pub fn process(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        first_iv: u64,
        encrypt: bool,
    ) -> Result<()> {
        if sector_size < 512
            || !sector_size.is_multiple_of(512)
            || !buf.len().is_multiple_of(sector_size)
        {
            return Err(Error::InvalidArgument(
                "buffer is not a whole number of sectors".into(),
            ));
        }
        let step = (sector_size / 512) as u64;
        let iv_n = |i: usize| first_iv.wrapping_add(step.wrapping_mul(i as u64));
        match &self.kind {
            Kind::Xts { xts, iv32 } => xts.sectors(buf, sector_size, encrypt, |i| {
                let n = iv_n(i);
                plain64_iv(if *iv32 { n & 0xffff_ffff } else { n })
            }),
            Kind::Cbc { aes, iv } => {
                for (i, s) in buf.chunks_mut(sector_size).enumerate() {
                    let n = iv_n(i);
                    let mut ivb = plain64_iv(match iv {
                        CbcIv::Plain => n & 0xffff_ffff,
                        _ => n,
                    });
                    if let CbcIv::Essiv(e) = iv {
                        e.encrypt(&mut ivb);
                    }
                    cbc(aes, s, ivb, encrypt);
                }
                Ok(())
            }
        }
    }
}

fn cbc(aes: &AesKey, buf: &mut [u8], iv: [u8; 16], encrypt: bool) {
    let mut prev = iv;
    for blk in buf.chunks_exact_mut(16) {
        if encrypt {
            for (b, p) in blk.iter_mut().zip(prev.iter()) {
                *b ^= p;
            }
            aes.encrypt(blk);
            prev.copy_from_slice(blk);
        } else {
            let mut c = [0u8; 16];
            c.copy_from_slice(blk);
            aes.decrypt(blk);
            for (b, p) in blk.iter_mut().zip(prev.iter()) {
                *b ^= p;
            }
            prev = c;
        }
    }
}
