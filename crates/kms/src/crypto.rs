//! The few cryptographic primitives the key manager uses, in one place: AES-256-GCM (aws-lc),
//! random bytes, HMAC-SHA256 and constant-time comparison.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("cipher: message authentication failed")]
    Auth,
    #[error("invalid key length")]
    KeyLength,
    #[error("ciphertext too short")]
    Short,
}

pub fn random_bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    aws_lc_rs::rand::fill(&mut b[..]).expect("system RNG failed");
    b
}

pub fn random_vec(n: usize) -> Zeroizing<Vec<u8>> {
    let mut b = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut b[..]).expect("system RNG failed");
    b
}

/// An AES-256-GCM key. Output layout of [`Aead::seal`]: nonce (12) ‖ ciphertext ‖ tag (16).
pub struct Aead {
    key: LessSafeKey,
}

impl Aead {
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let k = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::KeyLength)?;
        Ok(Self {
            key: LessSafeKey::new(k),
        })
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce[..]);
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut body,
            )
            .expect("AES-GCM seal cannot fail for in-range lengths");
        out.extend_from_slice(&body);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Short);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[..NONCE_LEN]);
        let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
        let n = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf[..],
            )
            .map_err(|_| CryptoError::Auth)?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let k = random_bytes::<32>();
        let a = Aead::new(&k[..]).unwrap();
        let c = a.seal(b"hello", b"path/a");
        assert_eq!(&a.open(&c, b"path/a").unwrap()[..], b"hello");
        assert_eq!(a.open(&c, b"path/b").unwrap_err(), CryptoError::Auth);
        let mut t = c.clone();
        t[14] ^= 1;
        assert_eq!(a.open(&t, b"path/a").unwrap_err(), CryptoError::Auth);
        assert_eq!(a.open(&c[..10], b"path/a").unwrap_err(), CryptoError::Short);
        assert!(Aead::new(&[0u8; 5]).is_err());
    }
}
