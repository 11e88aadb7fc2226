//! Pure-Rust AES-XTS over RustCrypto `aes` (runtime AES-NI/VAES): per sector, the tweaks of a
//! 4 KiB chunk are computed first, then XORed around one batched `encrypt_blocks` call.

use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};

use crate::error::{Error, Result};

/// AES with any of the three key sizes.
pub(crate) enum AesKey {
    A128(Box<Aes128>),
    A192(Box<Aes192>),
    A256(Box<Aes256>),
}

impl AesKey {
    pub(crate) fn new(key: &[u8]) -> Result<Self> {
        let bad = |_| Error::Crypto("bad AES key length".into());
        Ok(match key.len() {
            16 => AesKey::A128(Box::new(Aes128::new_from_slice(key).map_err(bad)?)),
            24 => AesKey::A192(Box::new(Aes192::new_from_slice(key).map_err(bad)?)),
            32 => AesKey::A256(Box::new(Aes256::new_from_slice(key).map_err(bad)?)),
            n => return Err(Error::Unsupported(format!("AES key of {n} bytes"))),
        })
    }

    /// Encrypt whole 16-byte blocks in place (`buf.len()` must be a multiple of 16).
    pub(crate) fn encrypt(&self, buf: &mut [u8]) {
        let (blocks, _) = Array::slice_as_chunks_mut(buf);
        match self {
            AesKey::A128(c) => c.encrypt_blocks(blocks),
            AesKey::A192(c) => c.encrypt_blocks(blocks),
            AesKey::A256(c) => c.encrypt_blocks(blocks),
        }
    }

    pub(crate) fn decrypt(&self, buf: &mut [u8]) {
        let (blocks, _) = Array::slice_as_chunks_mut(buf);
        match self {
            AesKey::A128(c) => c.decrypt_blocks(blocks),
            AesKey::A192(c) => c.decrypt_blocks(blocks),
            AesKey::A256(c) => c.decrypt_blocks(blocks),
        }
    }
}

/// XTS with two AES keys (data key, tweak key).
pub struct RustXts {
    k1: AesKey,
    k2: AesKey,
}

const CHUNK_BLOCKS: usize = 256;

#[inline]
fn mul_alpha(t: u128) -> u128 {
    (t << 1) ^ if t >> 127 == 1 { 0x87 } else { 0 }
}

#[inline]
fn xor_tweaks(buf: &mut [u8], tweaks: &[u128]) {
    for (blk, t) in buf.chunks_exact_mut(16).zip(tweaks) {
        let mut b = [0u8; 16];
        b.copy_from_slice(blk);
        let v = u128::from_le_bytes(b) ^ t;
        blk.copy_from_slice(&v.to_le_bytes());
    }
}

impl RustXts {
    /// `key` = data key ‖ tweak key (32 or 64 bytes in LUKS; 48 also accepted).
    pub fn new(key: &[u8]) -> Result<Self> {
        if !key.len().is_multiple_of(2) {
            return Err(Error::Unsupported("odd XTS key length".into()));
        }
        let (a, b) = key.split_at(key.len() / 2);
        Ok(RustXts {
            k1: AesKey::new(a)?,
            k2: AesKey::new(b)?,
        })
    }

    /// One data unit (sector) in place; `buf.len()` is a multiple of 16.
    pub fn sector(&self, buf: &mut [u8], iv: &[u8; 16], encrypt: bool) {
        let mut t = *iv;
        self.k2.encrypt(&mut t);
        let mut tw = u128::from_le_bytes(t);
        let mut tweaks = [0u128; CHUNK_BLOCKS];
        for chunk in buf.chunks_mut(CHUNK_BLOCKS * 16) {
            let n = chunk.len() / 16;
            for slot in tweaks.iter_mut().take(n) {
                *slot = tw;
                tw = mul_alpha(tw);
            }
            xor_tweaks(chunk, &tweaks[..n]);
            if encrypt {
                self.k1.encrypt(chunk);
            } else {
                self.k1.decrypt(chunk);
            }
            xor_tweaks(chunk, &tweaks[..n]);
        }
    }
}
