//! Passphrase → keyslot key: PBKDF2-HMAC or Argon2i/Argon2id (v0x13, no secret, no AD).

use crate::error::{Error, Result};
use crate::hash::HashAlg;
use crate::model::Kdf;
use zeroize::Zeroizing;

/// Upper bounds applied to untrusted headers (cryptsetup's own limits).
pub const ARGON2_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
pub const ARGON2_MAX_CPUS: u32 = 16;

pub fn derive(kdf: &Kdf, passphrase: &[u8], out_len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(vec![0u8; out_len]);
    match kdf {
        Kdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            if *iterations == 0 {
                return Err(Error::Unsupported("pbkdf2 with 0 iterations".into()));
            }
            HashAlg::from_name(hash)?.pbkdf2(passphrase, salt, *iterations, &mut out);
        }
        Kdf::Argon2 {
            id,
            time,
            memory,
            cpus,
            salt,
        } => {
            if *memory > ARGON2_MAX_MEMORY_KIB || *cpus == 0 || *cpus > ARGON2_MAX_CPUS {
                return Err(Error::Unsupported(format!(
                    "argon2 parameters out of range (memory {memory} KiB, cpus {cpus})"
                )));
            }
            let params = argon2::Params::new(*memory, *time, *cpus, Some(out_len))
                .map_err(|e| Error::Unsupported(format!("argon2 parameters: {e}")))?;
            let alg = if *id {
                argon2::Algorithm::Argon2id
            } else {
                argon2::Algorithm::Argon2i
            };
            argon2::Argon2::new(alg, argon2::Version::V0x13, params)
                .hash_password_into(passphrase, salt, &mut out)
                .map_err(|e| Error::Crypto(format!("argon2: {e}")))?;
        }
    }
    Ok(out)
}
