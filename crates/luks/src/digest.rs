//! Volume key digest (`digests.*`, type pbkdf2): `PBKDF2-HMAC-hash(vk, salt, iterations, len)`.
//! The length is the stored digest's (32/64, or 20 on headers converted from LUKS1).

use crate::error::Result;
use crate::hash::HashAlg;
use crate::model::DigestInfo;
use subtle::ConstantTimeEq;

pub fn compute(hash: HashAlg, vk: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    hash.pbkdf2(vk, salt, iterations, &mut out);
    out
}

/// Constant-time check of a candidate volume key against a digest.
pub fn verify(d: &DigestInfo, vk: &[u8]) -> Result<bool> {
    let hash = HashAlg::from_name(&d.hash)?;
    if d.digest.is_empty() || d.iterations == 0 {
        return Ok(false);
    }
    let got = compute(hash, vk, &d.salt, d.iterations, d.digest.len());
    Ok(bool::from(got.ct_eq(&d.digest)))
}
