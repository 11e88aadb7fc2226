//! LUKS anti-forensic splitter (`af.type = "luks1"`): split a key into `stripes` stripes and merge
//! them back, with the hash-based diffusion function.

use crate::error::{Error, Result};
use crate::hash::HashAlg;
use rand::RngCore;
use zeroize::Zeroizing;

/// Size in bytes of the split material as stored: `ceil(key_size * stripes / 512) * 512`.
pub fn split_sectors_len(key_size: usize, stripes: u32) -> Option<usize> {
    let raw = key_size.checked_mul(stripes as usize)?;
    raw.checked_add(511).map(|r| r / 512 * 512)
}

fn diffuse(buf: &mut [u8], hash: HashAlg) {
    let ds = hash.output_len();
    for (i, chunk) in buf.chunks_mut(ds).enumerate() {
        let h = hash.hash(&[&(i as u32).to_be_bytes(), chunk]);
        let n = chunk.len();
        chunk.copy_from_slice(&h[..n]);
    }
}

fn xor_into(d: &mut [u8], s: &[u8]) {
    for (a, b) in d.iter_mut().zip(s) {
        *a ^= b;
    }
}

/// Merge `stripes` stripes of `key_size` bytes from `material` into the key.
pub fn merge(
    material: &[u8],
    key_size: usize,
    stripes: u32,
    hash: HashAlg,
) -> Result<Zeroizing<Vec<u8>>> {
    let need = key_size
        .checked_mul(stripes as usize)
        .ok_or_else(|| Error::Unsupported("af: key_size * stripes overflows".into()))?;
    if stripes == 0 || key_size == 0 || material.len() < need {
        return Err(Error::Unsupported(
            "af: material shorter than key_size * stripes".into(),
        ));
    }
    let mut d = Zeroizing::new(vec![0u8; key_size]);
    let mut stripes_it = material[..need].chunks_exact(key_size);
    for _ in 0..stripes - 1 {
        if let Some(s) = stripes_it.next() {
            xor_into(&mut d, s);
            diffuse(&mut d, hash);
        }
    }
    if let Some(last) = stripes_it.next() {
        xor_into(&mut d, last);
    }
    Ok(d)
}

/// Split `key` into `stripes` stripes (random, the last computed); output padded with zeros to
/// `split_sectors_len`.
pub fn split(key: &[u8], stripes: u32, hash: HashAlg) -> Result<Zeroizing<Vec<u8>>> {
    let ks = key.len();
    let len = split_sectors_len(ks, stripes)
        .ok_or_else(|| Error::InvalidArgument("af: too many stripes".into()))?;
    if stripes == 0 || ks == 0 {
        return Err(Error::InvalidArgument(
            "af: empty key or zero stripes".into(),
        ));
    }
    let mut out = Zeroizing::new(vec![0u8; len]);
    let body = ks * (stripes as usize - 1);
    rand::rngs::OsRng.fill_bytes(&mut out[..body]);
    let mut d = Zeroizing::new(vec![0u8; ks]);
    for s in out[..body].chunks_exact(ks) {
        xor_into(&mut d, s);
        diffuse(&mut d, hash);
    }
    let last = &mut out[body..body + ks];
    last.copy_from_slice(&d);
    xor_into(last, key);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_merge_roundtrip() {
        for (len, hash) in [
            (32, HashAlg::Sha256),
            (64, HashAlg::Sha512),
            (64, HashAlg::Sha1),
            (20, HashAlg::Sha256),
        ] {
            let key: Vec<u8> = (0..len as u8).collect();
            let m = split(&key, 4000, hash).unwrap();
            assert_eq!(m.len(), split_sectors_len(len, 4000).unwrap());
            assert_eq!(&merge(&m, len, 4000, hash).unwrap()[..], &key[..]);
        }
        assert!(merge(&[0u8; 10], 32, 4000, HashAlg::Sha256).is_err());
        assert!(merge(&[], 32, 0, HashAlg::Sha256).is_err());
    }
}
