//! Shamir's secret sharing over GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1 (0x11b),
//! the field and share layout Vault uses: each share is the polynomial's value for every
//! secret byte followed by one byte, its x coordinate. A 32-byte unseal key therefore
//! gives 33-byte shares, as `bao operator init` prints.
//!
//! Arithmetic is branch-free on secret data (no log tables) so timing does not leak.

use rand::seq::SliceRandom;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShamirError {
    #[error("parts must be between threshold and 255")]
    PartsOutOfRange,
    #[error("threshold must be between 2 and 255 (or 1 with a single part)")]
    ThresholdOutOfRange,
    #[error("cannot split an empty secret")]
    EmptySecret,
    #[error("fewer than two parts cannot be used to reconstruct the secret")]
    TooFewParts,
    #[error("all parts must be the same length and at least two bytes")]
    BadPartLength,
    #[error("duplicate part detected")]
    DuplicatePart,
}

fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    for _ in 0..8 {
        // p ^= a if the low bit of b is set, without branching
        p ^= a & (0u8.wrapping_sub(b & 1));
        let hi = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & hi);
        b >>= 1;
    }
    p
}

fn gf_inv(a: u8) -> u8 {
    // a^254 = a^-1 in GF(2^8); 0 maps to 0 (never used as a divisor here)
    let mut r = 1u8;
    let mut base = a;
    let mut e = 254u8;
    for _ in 0..8 {
        let m = 0u8.wrapping_sub(e & 1);
        r = (gf_mul(r, base) & m) | (r & !m);
        base = gf_mul(base, base);
        e >>= 1;
    }
    r
}

/// Split `secret` into `parts` shares, any `threshold` of which recover it.
pub fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    if parts < threshold || parts > 255 {
        return Err(ShamirError::PartsOutOfRange);
    }
    if threshold > 255 || threshold == 0 || (threshold < 2 && parts != 1) {
        return Err(ShamirError::ThresholdOutOfRange);
    }
    if secret.is_empty() {
        return Err(ShamirError::EmptySecret);
    }
    let mut rng = rand::rngs::OsRng;
    // Unique non-zero x coordinates in random order.
    let mut xs: Vec<u8> = (1..=255u8).collect();
    xs.shuffle(&mut rng);
    let xs = &xs[..parts];
    let mut out: Vec<Zeroizing<Vec<u8>>> = (0..parts)
        .map(|i| {
            let mut v = Zeroizing::new(vec![0u8; secret.len() + 1]);
            v[secret.len()] = xs[i];
            v
        })
        .collect();
    let mut coeffs = Zeroizing::new(vec![0u8; threshold]);
    for (idx, &byte) in secret.iter().enumerate() {
        coeffs[0] = byte;
        rng.fill_bytes(&mut coeffs[1..]);
        for (share, &x) in out.iter_mut().zip(xs) {
            // Horner evaluation
            let mut y = 0u8;
            for &c in coeffs.iter().rev() {
                y = gf_mul(y, x) ^ c;
            }
            share[idx] = y;
        }
    }
    coeffs.zeroize();
    Ok(out)
}

/// Recover the secret from shares produced by [`split`]. With too few or wrong shares the
/// result is simply a different byte string: the caller must authenticate it.
pub fn combine(parts: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    if parts.len() < 2 {
        return Err(ShamirError::TooFewParts);
    }
    let len = parts[0].len();
    if len < 2 || parts.iter().any(|p| p.len() != len) {
        return Err(ShamirError::BadPartLength);
    }
    let xs: Vec<u8> = parts.iter().map(|p| p[len - 1]).collect();
    for i in 0..xs.len() {
        if xs[i + 1..].contains(&xs[i]) {
            return Err(ShamirError::DuplicatePart);
        }
    }
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    // Lagrange basis at x = 0: l_i = prod_{j != i} x_j / (x_j - x_i); subtraction is xor.
    let basis: Vec<u8> = (0..xs.len())
        .map(|i| {
            let mut num = 1u8;
            let mut den = 1u8;
            for j in 0..xs.len() {
                if i != j {
                    num = gf_mul(num, xs[j]);
                    den = gf_mul(den, xs[j] ^ xs[i]);
                }
            }
            gf_mul(num, gf_inv(den))
        })
        .collect();
    for (idx, out) in secret.iter_mut().enumerate() {
        let mut acc = 0u8;
        for (p, &l) in parts.iter().zip(&basis) {
            acc ^= gf_mul(p[idx], l);
        }
        *out = acc;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_inverse_is_inverse() {
        for a in 1..=255u8 {
            assert_eq!(gf_mul(a, gf_inv(a)), 1, "a={a}");
        }
        // 0x53 * 0xca = 1 in the AES field (FIPS-197 example)
        assert_eq!(gf_mul(0x53, 0xca), 1);
        assert_eq!(gf_mul(0x57, 0x83), 0xc1);
    }

    #[test]
    fn any_threshold_subset_recovers() {
        let secret: Vec<u8> = (0..32).map(|i| i * 7 + 3).collect();
        let shares = split(&secret, 5, 3).unwrap();
        assert!(shares.iter().all(|s| s.len() == 33));
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let got = combine(&[&shares[a], &shares[b], &shares[c]]).unwrap();
                    assert_eq!(&got[..], &secret[..]);
                }
            }
        }
        let two = combine(&[&shares[0], &shares[1]]).unwrap();
        assert_ne!(&two[..], &secret[..]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(split(b"x", 2, 3).unwrap_err(), ShamirError::PartsOutOfRange);
        assert_eq!(
            split(b"x", 300, 3).unwrap_err(),
            ShamirError::PartsOutOfRange
        );
        assert_eq!(
            split(b"x", 3, 1).unwrap_err(),
            ShamirError::ThresholdOutOfRange
        );
        assert_eq!(split(b"", 3, 2).unwrap_err(), ShamirError::EmptySecret);
        let s = split(b"abc", 3, 2).unwrap();
        assert_eq!(combine(&[&s[0]]).unwrap_err(), ShamirError::TooFewParts);
        assert_eq!(
            combine(&[&s[0], &s[0]]).unwrap_err(),
            ShamirError::DuplicatePart
        );
        assert_eq!(
            combine(&[&s[0], &s[1][..2]]).unwrap_err(),
            ShamirError::BadPartLength
        );
    }
}
