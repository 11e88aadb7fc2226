//! Hash algorithms by their cryptsetup names (`sha1`, `sha256`, `sha384`, `sha512`), and the
//! wider set of header checksum algorithms ([`ChecksumAlg`]).

use crate::error::{Error, Result};
use sha2::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "sha1" => Ok(HashAlg::Sha1),
            "sha256" => Ok(HashAlg::Sha256),
            "sha384" => Ok(HashAlg::Sha384),
            "sha512" => Ok(HashAlg::Sha512),
            other => Err(Error::Unsupported(format!("hash algorithm {other:?}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Hash of the concatenation of `parts`.
    pub fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            HashAlg::Sha1 => run::<sha1::Sha1>(parts),
            HashAlg::Sha256 => run::<sha2::Sha256>(parts),
            HashAlg::Sha384 => run::<sha2::Sha384>(parts),
            HashAlg::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    /// PBKDF2-HMAC with this hash.
    pub fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
        match self {
            HashAlg::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
            HashAlg::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
            HashAlg::Sha384 => pbkdf2::pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, out),
            HashAlg::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
        }
    }
}

/// A header checksum algorithm (`csum_alg`). cryptsetup hands the name to its crypto backend;
/// with OpenSSL 3 (Debian's build) every digest of the default provider is accepted, by any
/// of its names or its OID, in any letter case, plus cryptsetup's `blake2b-512`/`blake2s-256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha512_224,
    Sha512_256,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    /// XOF; OpenSSL's default output length (16 bytes).
    Shake128,
    /// XOF; OpenSSL's default output length (32 bytes).
    Shake256,
    Md5,
    /// MD5 ‖ SHA-1 (36 bytes).
    Md5Sha1,
    Ripemd160,
    Blake2b512,
    Blake2s256,
    Sm3,
}

/// Every name (lower case) under which OpenSSL's default provider fetches each algorithm.
const CHECKSUM_NAMES: &[(ChecksumAlg, &[&str])] = &[
    (
        ChecksumAlg::Sha1,
        &["sha1", "sha-1", "ssl3-sha1", "1.3.14.3.2.26"],
    ),
    (
        ChecksumAlg::Sha224,
        &["sha224", "sha-224", "sha2-224", "2.16.840.1.101.3.4.2.4"],
    ),
    (
        ChecksumAlg::Sha256,
        &["sha256", "sha-256", "sha2-256", "2.16.840.1.101.3.4.2.1"],
    ),
    (
        ChecksumAlg::Sha384,
        &["sha384", "sha-384", "sha2-384", "2.16.840.1.101.3.4.2.2"],
    ),
    (
        ChecksumAlg::Sha512,
        &["sha512", "sha-512", "sha2-512", "2.16.840.1.101.3.4.2.3"],
    ),
    (
        ChecksumAlg::Sha512_224,
        &[
            "sha512-224",
            "sha-512/224",
            "sha2-512/224",
            "2.16.840.1.101.3.4.2.5",
        ],
    ),
    (
        ChecksumAlg::Sha512_256,
        &[
            "sha512-256",
            "sha-512/256",
            "sha2-512/256",
            "2.16.840.1.101.3.4.2.6",
        ],
    ),
    (
        ChecksumAlg::Sha3_224,
        &["sha3-224", "2.16.840.1.101.3.4.2.7"],
    ),
    (
        ChecksumAlg::Sha3_256,
        &["sha3-256", "2.16.840.1.101.3.4.2.8"],
    ),
    (
        ChecksumAlg::Sha3_384,
        &["sha3-384", "2.16.840.1.101.3.4.2.9"],
    ),
    (
        ChecksumAlg::Sha3_512,
        &["sha3-512", "2.16.840.1.101.3.4.2.10"],
    ),
    (
        ChecksumAlg::Shake128,
        &["shake128", "shake-128", "2.16.840.1.101.3.4.2.11"],
    ),
    (
        ChecksumAlg::Shake256,
        &["shake256", "shake-256", "2.16.840.1.101.3.4.2.12"],
    ),
    (ChecksumAlg::Md5, &["md5", "ssl3-md5", "1.2.840.113549.2.5"]),
    (ChecksumAlg::Md5Sha1, &["md5-sha1"]),
    (
        ChecksumAlg::Ripemd160,
        &[
            "ripemd160",
            "ripemd-160",
            "ripemd",
            "rmd160",
            "1.3.36.3.2.1",
        ],
    ),
    (
        ChecksumAlg::Blake2b512,
        &["blake2b512", "blake2b-512", "1.3.6.1.4.1.1722.12.2.1.16"],
    ),
    (
        ChecksumAlg::Blake2s256,
        &["blake2s256", "blake2s-256", "1.3.6.1.4.1.1722.12.2.2.8"],
    ),
    (ChecksumAlg::Sm3, &["sm3", "1.2.156.10197.1.401"]),
];

impl From<HashAlg> for ChecksumAlg {
    fn from(h: HashAlg) -> Self {
        match h {
            HashAlg::Sha1 => ChecksumAlg::Sha1,
            HashAlg::Sha256 => ChecksumAlg::Sha256,
            HashAlg::Sha384 => ChecksumAlg::Sha384,
            HashAlg::Sha512 => ChecksumAlg::Sha512,
        }
    }
}

impl ChecksumAlg {
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        CHECKSUM_NAMES
            .iter()
            .find(|(_, names)| names.contains(&lower.as_str()))
            .map(|(alg, _)| *alg)
    }

    pub fn output_len(self) -> usize {
        match self {
            ChecksumAlg::Md5 | ChecksumAlg::Shake128 => 16,
            ChecksumAlg::Sha1 | ChecksumAlg::Ripemd160 => 20,
            ChecksumAlg::Sha224 | ChecksumAlg::Sha512_224 | ChecksumAlg::Sha3_224 => 28,
            ChecksumAlg::Md5Sha1 => 36,
            ChecksumAlg::Sha384 | ChecksumAlg::Sha3_384 => 48,
            ChecksumAlg::Sha512 | ChecksumAlg::Sha3_512 | ChecksumAlg::Blake2b512 => 64,
            _ => 32,
        }
    }

    /// Digest of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        fn xof<D: Default + sha3::digest::Update + sha3::digest::ExtendableOutput>(
            parts: &[&[u8]],
            len: usize,
        ) -> Vec<u8> {
            let mut d = D::default();
            for p in parts {
                d.update(p);
            }
            let mut out = vec![0u8; len];
            d.finalize_xof_into(&mut out);
            out
        }
        match self {
            ChecksumAlg::Sha1 => run::<sha1::Sha1>(parts),
            ChecksumAlg::Sha224 => run::<sha2::Sha224>(parts),
            ChecksumAlg::Sha256 => run::<sha2::Sha256>(parts),
            ChecksumAlg::Sha384 => run::<sha2::Sha384>(parts),
            ChecksumAlg::Sha512 => run::<sha2::Sha512>(parts),
            ChecksumAlg::Sha512_224 => run::<sha2::Sha512_224>(parts),
            ChecksumAlg::Sha512_256 => run::<sha2::Sha512_256>(parts),
            ChecksumAlg::Sha3_224 => run::<sha3::Sha3_224>(parts),
            ChecksumAlg::Sha3_256 => run::<sha3::Sha3_256>(parts),
            ChecksumAlg::Sha3_384 => run::<sha3::Sha3_384>(parts),
            ChecksumAlg::Sha3_512 => run::<sha3::Sha3_512>(parts),
            ChecksumAlg::Shake128 => xof::<sha3::Shake128>(parts, 16),
            ChecksumAlg::Shake256 => xof::<sha3::Shake256>(parts, 32),
            ChecksumAlg::Md5 => run::<md5::Md5>(parts),
            ChecksumAlg::Md5Sha1 => {
                let mut out = run::<md5::Md5>(parts);
                out.extend(run::<sha1::Sha1>(parts));
                out
            }
            ChecksumAlg::Ripemd160 => run::<ripemd::Ripemd160>(parts),
            ChecksumAlg::Blake2b512 => run::<blake2::Blake2b512>(parts),
            ChecksumAlg::Blake2s256 => run::<blake2::Blake2s256>(parts),
            ChecksumAlg::Sm3 => run::<sm3::Sm3>(parts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_names_and_lengths() {
        for (alg, names) in CHECKSUM_NAMES {
            for n in *names {
                assert_eq!(ChecksumAlg::from_name(n), Some(*alg), "{n}");
                assert_eq!(ChecksumAlg::from_name(&n.to_uppercase()), Some(*alg), "{n}");
            }
            assert_eq!(
                alg.digest(&[b"a", b"bc"]).len(),
                alg.output_len(),
                "{alg:?}"
            );
        }
        for bad in ["", "sha256 ", "whirlpool", "rsa-sha256", "null", "crc32"] {
            assert_eq!(ChecksumAlg::from_name(bad), None, "{bad:?}");
        }
        // sha256("abc") split across parts.
        assert_eq!(
            hex::encode(ChecksumAlg::Sha256.digest(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
