//! AES-256-XTS through aws-lc's `EVP_aes_256_xts` (VAES/AVX-512 code path, ~11 GB/s per core).
//! aws-lc-rs does not expose XTS in its safe API, so this is one of the crate's two `unsafe` modules
//! (the other is [`super::vaes`], which on CPUs with VAES/AVX-512 is preferred).
//!
//! Invariants upheld here (each `unsafe` block relies only on these):
//! 1. Every `Ctx` owns a non-null `EVP_CIPHER_CTX*` from `EVP_CIPHER_CTX_new`, initialised with
//!    `EVP_aes_256_xts` and a 64-byte key that outlives the init call (aws-lc copies the key
//!    schedule into the context). It is freed exactly once, in `Drop` (which also cleanses it).
//! 2. A `Ctx` is used by one thread at a time: contexts live in a `Mutex`-protected pool and are
//!    taken out for the duration of a call (hence `Send`, never `Sync`).
//! 3. `EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1)` reads exactly 16 bytes from `iv`
//!    (a `&[u8; 16]`); `EVP_CipherUpdate` is called with `in == out`, which aws-lc allows, on a
//!    buffer whose length is checked to be 16..=2^24 bytes and to fit in a C `int`.
//! 4. Every return code is checked; on failure the error queue is cleared and an error returned.

#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Mutex;

use aws_lc_sys as ffi;

use crate::error::{Error, Result};

struct Ctx(NonNull<ffi::EVP_CIPHER_CTX>);

// SAFETY: the context is plain heap memory owned by this value and used by one thread at a time
// (invariant 2); aws-lc contexts have no thread affinity.
unsafe impl Send for Ctx {}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: invariant 1, the pointer came from EVP_CIPHER_CTX_new and is freed once.
        unsafe { ffi::EVP_CIPHER_CTX_free(self.0.as_ptr()) }
    }
}

fn clear_errors() {
    // SAFETY: no arguments; clears this thread's error queue.
    unsafe { ffi::ERR_clear_error() }
}

impl Ctx {
    fn new(key: &[u8; 64], encrypt: bool) -> Result<Ctx> {
        // SAFETY: allocation only; null is checked.
        let raw = unsafe { ffi::EVP_CIPHER_CTX_new() };
        let ctx =
            Ctx(NonNull::new(raw)
                .ok_or_else(|| Error::Crypto("EVP_CIPHER_CTX_new failed".into()))?);
        // SAFETY: ctx is valid (invariant 1); the cipher is a static; key points to 64 bytes,
        // exactly EVP_CIPHER_key_length(EVP_aes_256_xts()).
        let ok = unsafe {
            ffi::EVP_CipherInit_ex(
                ctx.0.as_ptr(),
                ffi::EVP_aes_256_xts(),
                std::ptr::null_mut(),
                key.as_ptr(),
                std::ptr::null(),
                i32::from(encrypt),
            )
        };
        if ok != 1 {
            clear_errors();
            // Duplicated halves are rejected by aws-lc (as by OpenSSL 3).
            return Err(Error::Crypto(
                "aws-lc rejected the XTS key (are both halves equal?)".into(),
            ));
        }
        Ok(ctx)
    }

    fn sector(&mut self, buf: &mut [u8], iv: &[u8; 16]) -> Result<()> {
        if buf.len() < 16 || buf.len() > (1 << 24) {
            return Err(Error::Crypto(
                "XTS data unit must be 16 bytes to 16 MiB".into(),
            ));
        }
        let len = i32::try_from(buf.len())
            .map_err(|_| Error::Crypto("XTS data unit too large".into()))?;
        let mut out_len: i32 = 0;
        // SAFETY: invariant 3 — ctx valid and exclusively borrowed, iv is 16 bytes, buf is valid
        // for len bytes of reads and writes, in-place operation is supported.
        let ok = unsafe {
            ffi::EVP_CipherInit_ex(
                self.0.as_ptr(),
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null(),
                iv.as_ptr(),
                -1,
            ) == 1
                && ffi::EVP_CipherUpdate(
                    self.0.as_ptr(),
                    buf.as_mut_ptr(),
                    &mut out_len,
                    buf.as_ptr(),
                    len,
                ) == 1
        };
        if !ok || out_len != len {
            clear_errors();
            return Err(Error::Crypto("aws-lc XTS operation failed".into()));
        }
        Ok(())
    }
}

/// AES-256-XTS (64-byte key) with pools of encrypt/decrypt contexts.
pub struct AwsLcXts {
    key: zeroize::Zeroizing<[u8; 64]>,
    enc: Mutex<Vec<Ctx>>,
    dec: Mutex<Vec<Ctx>>,
}

impl AwsLcXts {
    pub fn new(key: &[u8]) -> Result<Self> {
        let mut k = zeroize::Zeroizing::new([0u8; 64]);
        if key.len() != 64 {
            return Err(Error::Unsupported(
                "aws-lc XTS backend needs a 512-bit key".into(),
            ));
        }
        k.copy_from_slice(key);
        // Create one context of each kind now, so key errors surface at construction.
        let e = Ctx::new(&k, true)?;
        let d = Ctx::new(&k, false)?;
        Ok(AwsLcXts {
            key: k,
            enc: Mutex::new(vec![e]),
            dec: Mutex::new(vec![d]),
        })
    }

    /// Process consecutive sectors of `sector_size` bytes; `iv_of(i)` gives sector i's IV block.
    pub fn sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        encrypt: bool,
        iv_of: impl Fn(usize) -> [u8; 16],
    ) -> Result<()> {
        let pool = if encrypt { &self.enc } else { &self.dec };
        let taken = pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        let mut ctx = match taken {
            Some(c) => c,
            None => Ctx::new(&self.key, encrypt)?,
        };
        let mut res = Ok(());
        for (i, s) in buf.chunks_mut(sector_size).enumerate() {
            if let Err(e) = ctx.sector(s, &iv_of(i)) {
                res = Err(e);
                break;
            }
        }
        if let Ok(mut p) = pool.lock() {
            p.push(ctx);
        }
        res
    }
}
