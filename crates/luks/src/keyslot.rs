//! Keyslot material: unlock (KDF → area decryption → AF merge; the caller checks the digest) and
//! creation (AF split → area encryption with 512-byte sectors, IV from 0 at the area start).

use crate::af;
use crate::cipher::SectorCipher;
use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::hash::HashAlg;
use crate::kdf;
use crate::model::Keyslot;
use crate::xts::Backend;
use zeroize::Zeroizing;

/// Bytes of AF material (512-byte multiple), checked to fit the area.
/// Largest key cryptsetup handles (bytes); bounds allocations driven by untrusted headers.
pub const MAX_KEY_SIZE: usize = 512;

pub fn material_len(ks: &Keyslot) -> Result<usize> {
    if ks.key_size > MAX_KEY_SIZE || ks.area.key_size > MAX_KEY_SIZE {
        return Err(Error::keyslot(ks.id, "key size above 512 bytes"));
    }
    let len = af::split_sectors_len(ks.key_size, ks.af_stripes)
        .ok_or_else(|| Error::keyslot(ks.id, "key_size * stripes overflows"))?;
    if ks.key_size == 0 || ks.af_stripes == 0 || len as u64 > ks.area.size {
        return Err(Error::keyslot(
            ks.id,
            "AF material does not fit in the keyslot area",
        ));
    }
    Ok(len)
}

/// Area size cryptsetup allocates: `round_up(key_size * stripes, 4096)`.
pub fn area_size(key_size: usize, stripes: u32) -> u64 {
    (key_size as u64 * stripes as u64).div_ceil(4096) * 4096
}

/// Derive, decrypt and merge: the candidate volume key of `ks`.
pub fn open(dev: &dyn BlockDevice, ks: &Keyslot, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let len = material_len(ks)?;
    let hash = HashAlg::from_name(&ks.af_hash).map_err(|e| Error::keyslot(ks.id, e.to_string()))?;
    let dk = kdf::derive(&ks.kdf, passphrase, ks.area.key_size)
        .map_err(|e| Error::keyslot(ks.id, e.to_string()))?;
    let mut material = Zeroizing::new(vec![0u8; len]);
    dev.read_at(&mut material, ks.area.offset)
        .map_err(|e| Error::io(format!("reading keyslot {} area", ks.id), e))?;
    let cipher = SectorCipher::new(&ks.area.encryption, &dk, Backend::Auto)
        .map_err(|e| Error::keyslot(ks.id, e.to_string()))?;
    cipher.process(&mut material, 512, 0, false)?;
    af::merge(&material, ks.key_size, ks.af_stripes, hash)
}

/// Write keyslot material for `vk` protected by `passphrase` into the keyslot's area (no flush:
/// the caller flushes before writing a header that references it).
pub fn create(dev: &dyn BlockDevice, ks: &Keyslot, passphrase: &[u8], vk: &[u8]) -> Result<()> {
    if vk.len() != ks.key_size {
        return Err(Error::keyslot(
            ks.id,
            "volume key length differs from key_size",
        ));
    }
    let len = material_len(ks)?;
    let hash = HashAlg::from_name(&ks.af_hash)?;
    let dk = kdf::derive(&ks.kdf, passphrase, ks.area.key_size)?;
    let mut material = af::split(vk, ks.af_stripes, hash)?;
    if material.len() != len {
        return Err(Error::keyslot(ks.id, "internal: AF length mismatch"));
    }
    let cipher = SectorCipher::new(&ks.area.encryption, &dk, Backend::Auto)?;
    cipher.process(&mut material, 512, 0, true)?;
    dev.write_at(&material, ks.area.offset)
        .map_err(|e| Error::io(format!("writing keyslot {} area", ks.id), e))
}

/// Overwrite `[offset, offset+size)` with random-looking data (AES-XTS of zeros under a random
/// throw-away key: fast, and indistinguishable from keyslot material).
pub fn wipe(dev: &dyn BlockDevice, offset: u64, size: u64) -> Result<()> {
    let mut key = Zeroizing::new([0u8; 64]);
    loop {
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key[..]);
        if key[..32] != key[32..] {
            break;
        }
    }
    let cipher = SectorCipher::new("aes-xts-plain64", &key[..], Backend::Auto)?;
    // 4096-byte units: the content is throw-away, only speed matters.
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(CHUNK) as usize;
        let whole = n / 4096 * 4096;
        let b = &mut buf[..n];
        b.fill(0);
        if whole > 0 {
            cipher.process(&mut b[..whole], 4096, pos / 512, true)?;
        }
        dev.write_at(b, offset + pos)
            .map_err(|e| Error::io("wiping keyslot area", e))?;
        pos += n as u64;
    }
    dev.flush().map_err(|e| Error::io("flush after wipe", e))
}
