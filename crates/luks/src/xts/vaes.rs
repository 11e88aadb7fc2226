//! AES-XTS (AES-128-XTS and AES-256-XTS) with VAES + AVX-512: four AES blocks per 512-bit
//! register, four registers (16 blocks) in flight, tweaks computed in vector registers.
//!
//! Per group of up to four sectors, the four initial tweaks `T = AES(K2, IV)` are computed in one
//! register. Per sector, lane `j` of the first tweak register holds `T·α^j`, and each of the four
//! tweak registers advances by `α^16` (a two-byte shift of each lane, the two bytes shifted out
//! reduced by x^128 = x^7 + x^2 + x + 1 with shifts and XORs: a carry-less multiply would compete
//! with the AES instructions for the same execution units). The XOR of the tweak is folded
//! into the first round (three-way XOR) and into the last round key (`AESENCLAST(x, k ^ t)` is
//! `AESENCLAST(x, k) ^ t`).
//!
//! Invariants upheld here (each `unsafe` block relies only on these):
//! 1. A [`VaesXts`] exists only if [`available`] returned true when it was built (its fields are
//!    private and [`VaesXts::new`] checks), i.e. the CPU supports every feature that the
//!    `#[target_feature]` functions of this module enable (`aes`, `avx512f`, `avx512bw`, `vaes`).
//!    Those functions are called only through a `&VaesXts`.
//! 2. Unmasked 512-bit loads and stores touch bytes `64*i .. 64*i+64` of a chunk of exactly 256
//!    bytes with `i < 4`. Masked loads and stores touch only the 64-bit elements whose mask bit is
//!    set, and the mask covers `len / 8` elements of a chunk of `len <= 64` bytes (masked-off
//!    elements are neither read nor written and cannot fault). Prefetches name addresses of the
//!    next data unit of the same buffer only.
//! 3. Every buffer is borrowed for the call (`&mut [u8]` in place, or a `&[u8]` source and a
//!    `&mut [u8]` destination, disjoint by the borrow rules): no other aliasing, no lifetime
//!    beyond it. Data units are whole multiples of 16 bytes (checked before any SIMD code runs).
//!
//! Round keys are kept as plain integers and zeroized on drop. Like aws-lc's assembly, a call
//! leaves key and data material in SIMD registers and compiler spill slots on the stack.

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::Zeroize;

use crate::error::{Error, Result};

/// Does this CPU have everything this backend needs?
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("vaes")
}

/// Up to 15 round keys (AES-256 has 14 rounds).
type RoundKeys = [u128; 15];

/// AES-XTS with a 256-bit (AES-128) or 512-bit (AES-256) key.
pub struct VaesXts {
    /// 10 or 14.
    rounds: usize,
    /// Data key, encryption schedule.
    enc: RoundKeys,
    /// Data key, equivalent-inverse-cipher schedule (`dec[0]` = last encryption key).
    dec: RoundKeys,
    /// Tweak key, encryption schedule.
    tweak: RoundKeys,
}

impl Drop for VaesXts {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
        self.tweak.zeroize();
    }
}

impl VaesXts {
    /// `key` = data key ‖ tweak key, 32 or 64 bytes.
    pub fn new(key: &[u8]) -> Result<Self> {
        if !available() {
            return Err(Error::Unsupported(
                "VAES/AVX-512 XTS backend: this CPU lacks aes, avx512f, avx512bw or vaes".into(),
            ));
        }
        let half = match key.len() {
            32 => 16,
            64 => 32,
            n => {
                return Err(Error::Unsupported(format!(
                    "VAES XTS backend: {}-bit key (256 or 512 bits)",
                    n * 8
                )))
            }
        };
        let (k1, k2) = key.split_at(half);
        // SAFETY: invariant 1, the features were just checked.
        let (rounds, enc, dec, tweak) = unsafe {
            let (rounds, enc) = expand(k1);
            let (_, tweak) = expand(k2);
            (rounds, enc, inverse(&enc, rounds), tweak)
        };
        Ok(VaesXts {
            rounds,
            enc,
            dec,
            tweak,
        })
    }

    /// Process consecutive sectors of `sector_size` bytes in place; `iv_of(i)` gives sector i's
    /// IV block.
    pub fn sectors(
        &self,
        buf: &mut [u8],
        sector_size: usize,
        encrypt: bool,
        iv_of: impl Fn(usize) -> [u8; 16],
    ) -> Result<()> {
        super::check_units(buf.len(), sector_size)?;
        let p = buf.as_mut_ptr();
        // SAFETY: in place: `p` is valid for `buf.len()` bytes (the same range for both).
        unsafe { self.dispatch(p, p, buf.len(), sector_size, encrypt, iv_of) };
        Ok(())
    }

    /// As [`sectors`](Self::sectors), reading `src` and writing the result to `dst` (same
    /// length): a decrypting (or encrypting) copy in one pass over the data.
    pub fn sectors_from(
        &self,
        src: &[u8],
        dst: &mut [u8],
        sector_size: usize,
        encrypt: bool,
        iv_of: impl Fn(usize) -> [u8; 16],
    ) -> Result<()> {
        super::check_pair(src.len(), dst.len(), sector_size)?;
        // SAFETY: `src` and `dst` are distinct borrows (a `&` and a `&mut`), so disjoint, each
        // valid for their common length.
        unsafe {
            self.dispatch(
                src.as_ptr(),
                dst.as_mut_ptr(),
                src.len(),
                sector_size,
                encrypt,
                iv_of,
            )
        };
        Ok(())
    }

    /// # Safety
    /// Invariant 3: `src`/`dst` valid for `len` bytes, the same or disjoint; `len` is a whole
    /// number of units of whole 16-byte blocks (checked by the callers).
    unsafe fn dispatch(
        &self,
        src: *const u8,
        dst: *mut u8,
        len: usize,
        sector_size: usize,
        encrypt: bool,
        iv_of: impl Fn(usize) -> [u8; 16],
    ) {
        let iv = |i: usize| u128::from_le_bytes(iv_of(i));
        let (ks, tk) = (&self.tweak, sector_size);
        // SAFETY: invariant 1 (`self` exists, so the features are present); invariant 3 by
        // this function's contract.
        unsafe {
            match (self.rounds, encrypt) {
                (10, true) => run::<10, true>(&self.enc, ks, src, dst, len, tk, iv),
                (10, false) => run::<10, false>(&self.dec, ks, src, dst, len, tk, iv),
                (_, true) => run::<14, true>(&self.enc, ks, src, dst, len, tk, iv),
                (_, false) => run::<14, false>(&self.dec, ks, src, dst, len, tk, iv),
            }
        }
    }
}

#[inline]
#[target_feature(enable = "sse2")]
fn to_xmm(v: u128) -> __m128i {
    _mm_set_epi64x((v >> 64) as u64 as i64, v as u64 as i64)
}

#[inline]
#[target_feature(enable = "sse2")]
fn from_xmm(x: __m128i) -> u128 {
    let lo = _mm_cvtsi128_si64(x) as u64 as u128;
    let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)) as u64 as u128;
    lo | hi << 64
}

/// `t ^= t << 32 ^ t << 64 ^ t << 96`, then `^ g`: one key-expansion step.
#[inline]
#[target_feature(enable = "sse2")]
fn mix(mut t: __m128i, g: __m128i) -> __m128i {
    t = _mm_xor_si128(t, _mm_slli_si128::<4>(t));
    t = _mm_xor_si128(t, _mm_slli_si128::<4>(t));
    t = _mm_xor_si128(t, _mm_slli_si128::<4>(t));
    _mm_xor_si128(t, g)
}

/// The encryption key schedule of a 16- or 32-byte AES key: (rounds, round keys).
#[target_feature(enable = "aes,sse2")]
fn expand(key: &[u8]) -> (usize, RoundKeys) {
    let word = |i: usize| {
        let mut b = [0u8; 16];
        if let Some(s) = key.get(16 * i..16 * i + 16) {
            b.copy_from_slice(s);
        }
        to_xmm(u128::from_le_bytes(b))
    };
    let mut k = [_mm_setzero_si128(); 15];
    if key.len() == 16 {
        k[0] = word(0);
        macro_rules! step {
            ($($i:literal $rcon:literal),*) => {$(
                k[$i] = mix(k[$i - 1], _mm_shuffle_epi32::<0xff>(
                    _mm_aeskeygenassist_si128::<$rcon>(k[$i - 1])));
            )*};
        }
        step!(1 0x01, 2 0x02, 3 0x04, 4 0x08, 5 0x10, 6 0x20, 7 0x40, 8 0x80, 9 0x1b, 10 0x36);
    } else {
        k[0] = word(0);
        k[1] = word(1);
        macro_rules! step {
            ($($i:literal $rcon:literal),*) => {$(
                k[$i] = mix(k[$i - 2], _mm_shuffle_epi32::<0xff>(
                    _mm_aeskeygenassist_si128::<$rcon>(k[$i - 1])));
                k[$i + 1] = mix(k[$i - 1], _mm_shuffle_epi32::<0xaa>(
                    _mm_aeskeygenassist_si128::<0>(k[$i])));
            )*};
        }
        step!(2 0x01, 4 0x02, 6 0x04, 8 0x08, 10 0x10, 12 0x20);
        k[14] = mix(
            k[12],
            _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<0x40>(k[13])),
        );
    }
    let rounds = if key.len() == 16 { 10 } else { 14 };
    let mut out = [0u128; 15];
    for (o, x) in out.iter_mut().zip(k.iter()).take(rounds + 1) {
        *o = from_xmm(*x);
    }
    (rounds, out)
}

/// Decryption schedule for the equivalent inverse cipher (AESDEC/AESDECLAST).
#[target_feature(enable = "aes,sse2")]
fn inverse(enc: &RoundKeys, rounds: usize) -> RoundKeys {
    let mut dec = [0u128; 15];
    for (i, d) in dec.iter_mut().enumerate().take(rounds + 1) {
        let k = enc[rounds - i];
        *d = if i == 0 || i == rounds {
            k
        } else {
            from_xmm(_mm_aesimc_si128(to_xmm(k)))
        };
    }
    dec
}

/// `c ⊗ 0x87` (carry-less, `c` below 2^56 in each 64-bit element): the reduction of bits
/// shifted out of a GF(2^128) element by x^128 = x^7 + x^2 + x + 1. Shifts and XORs only: a
/// carry-less multiply would compete with the AES instructions for the same execution units.
#[inline]
#[target_feature(enable = "avx512f")]
fn times_poly(c: __m512i, acc: __m512i) -> __m512i {
    let r = _mm512_ternarylogic_epi32::<0x96>(acc, c, _mm512_slli_epi64::<1>(c));
    _mm512_ternarylogic_epi32::<0x96>(r, _mm512_slli_epi64::<2>(c), _mm512_slli_epi64::<7>(c))
}

/// Complete a shift of each 128-bit lane done as two 64-bit shifts: `shifted` is each 64-bit
/// element shifted left, `carry` the bits each one shifted out (at the bottom). The low
/// element's carry moves into the high one; the high element's carry is reduced into the low.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn carry_across(shifted: __m512i, carry: __m512i) -> __m512i {
    times_poly(
        _mm512_bsrli_epi128::<8>(carry),
        _mm512_xor_si512(shifted, _mm512_bslli_epi128::<8>(carry)),
    )
}

/// Each 128-bit lane (a little-endian GF(2^128) element, as XTS numbers them) times α^S.
/// `R` must be `64 - S`, and S at most 56.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn mul_alpha<const S: u32, const R: u32>(t: __m512i) -> __m512i {
    const { assert!(S + R == 64 && S <= 56) };
    carry_across(_mm512_slli_epi64::<S>(t), _mm512_srli_epi64::<R>(t))
}

/// Each 128-bit lane times α^(8·B) with whole-byte shifts (the main loop's step, 7 operations).
/// `RB` must be `16 - B`, and B at most 7.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn mul_alpha_bytes<const B: i32, const RB: i32>(t: __m512i) -> __m512i {
    const { assert!(B + RB == 16 && B <= 7) };
    times_poly(_mm512_bsrli_epi128::<RB>(t), _mm512_bslli_epi128::<B>(t))
}

/// From `T` in lane `j` of `t` (all lanes): `[T, T·α, T·α², T·α³]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn first_tweaks(t: __m512i, j: usize) -> __m512i {
    let lo = (2 * j) as i64;
    let t = _mm512_permutexvar_epi64(
        _mm512_set_epi64(lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo),
        t,
    );
    // Lane i shifted by i bits (a shift by 64 gives 0: lane 0 has no carry).
    let shifted = _mm512_sllv_epi64(t, _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0));
    let carry = _mm512_srlv_epi64(t, _mm512_set_epi64(61, 61, 62, 62, 63, 63, 64, 64));
    carry_across(shifted, carry)
}

/// The AES rounds over `N` registers: `x = AES(x ^ t) ^ t` with the schedule `rk`.
#[inline]
#[target_feature(enable = "avx512f,vaes")]
fn rounds<const NR: usize, const ENC: bool, const N: usize>(
    x: &mut [__m512i; N],
    rk: &[__m512i; 15],
    t: &[__m512i; N],
) {
    const { assert!(NR == 10 || NR == 14) };
    for (v, t) in x.iter_mut().zip(t) {
        *v = _mm512_ternarylogic_epi32::<0x96>(*v, *t, rk[0]);
    }
    for k in &rk[1..NR] {
        for v in x.iter_mut() {
            *v = if ENC {
                _mm512_aesenc_epi128(*v, *k)
            } else {
                _mm512_aesdec_epi128(*v, *k)
            };
        }
    }
    for (v, t) in x.iter_mut().zip(t) {
        let k = _mm512_xor_si512(rk[NR], *t);
        *v = if ENC {
            _mm512_aesenclast_epi128(*v, k)
        } else {
            _mm512_aesdeclast_epi128(*v, k)
        };
    }
}

/// One data unit of `len` bytes (a multiple of 16) read at `src` and written at `dst` (the same
/// pointer for in place, else non-overlapping), `first` = `[T, T·α, T·α², T·α³]`. The main loop
/// keeps four registers (16 blocks) in flight; their tweaks advance by α^16 per iteration.
///
/// # Safety
/// Invariant 3: `src` is valid for reads and `dst` for writes of `len` bytes, and the two ranges
/// are either the same or disjoint.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,vaes")]
unsafe fn unit<const NR: usize, const ENC: bool>(
    rk: &[__m512i; 15],
    src: *const u8,
    dst: *mut u8,
    len: usize,
    first: __m512i,
    prefetch_next: bool,
) {
    let t1 = mul_alpha::<4, 60>(first);
    let mut t = [
        first,
        t1,
        mul_alpha_bytes::<1, 15>(first),
        mul_alpha_bytes::<1, 15>(t1),
    ];
    let whole = len / 256 * 256;
    let mut at = 0;
    while at < whole {
        // The next unit's matching 256 bytes, when there is a next unit in this call: units
        // are usually pages, and the hardware prefetchers stop at page boundaries, so a unit
        // read from the page cache (a mapping) would start with a train of misses.
        if prefetch_next {
            for l in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(len + at + 64 * l).cast());
            }
        }
        let mut x = [_mm512_setzero_si512(); 4];
        for (i, v) in x.iter_mut().enumerate() {
            // SAFETY: invariant 2, bytes at..at+256 are within the unit and i < 4.
            *v = unsafe { _mm512_loadu_si512(src.add(at + 64 * i).cast()) };
        }
        rounds::<NR, ENC, 4>(&mut x, rk, &t);
        for (i, v) in x.iter().enumerate() {
            // SAFETY: as above.
            unsafe { _mm512_storeu_si512(dst.add(at + 64 * i).cast(), *v) };
        }
        for v in t.iter_mut() {
            *v = mul_alpha_bytes::<2, 14>(*v);
        }
        at += 256;
    }
    // Under 16 blocks left: up to four registers, the last one partial.
    for t in t {
        if at >= len {
            break;
        }
        let n = (len - at).min(64);
        let mask = ((1u16 << (n / 8)) - 1) as __mmask8;
        // SAFETY: invariant 2, `mask` covers the n/8 whole 64-bit elements of bytes at..at+n.
        let mut x = [unsafe { _mm512_maskz_loadu_epi64(mask, src.add(at).cast()) }];
        rounds::<NR, ENC, 1>(&mut x, rk, &[t]);
        // SAFETY: as above.
        unsafe { _mm512_mask_storeu_epi64(dst.add(at).cast(), mask, x[0]) };
        at += n;
    }
}

/// Encrypt/decrypt `len` bytes of whole data units of `unit_len` bytes (a multiple of 16
/// dividing `len`) from `src` to `dst`; `iv(i)` is unit i's IV as a little-endian integer.
///
/// # Safety
/// As [`unit`]: `src`/`dst` valid for `len` bytes, the same or disjoint.
#[target_feature(enable = "avx512f,avx512bw,vaes")]
unsafe fn run<const NR: usize, const ENC: bool>(
    keys: &RoundKeys,
    tweak_keys: &RoundKeys,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    unit_len: usize,
    iv: impl Fn(usize) -> u128,
) {
    let bcast = |ks: &RoundKeys| {
        let mut out = [_mm512_setzero_si512(); 15];
        for (o, k) in out.iter_mut().zip(ks) {
            *o = _mm512_broadcast_i32x4(to_xmm(*k));
        }
        out
    };
    let rk = bcast(keys);
    let tk = bcast(tweak_keys);
    let zero = [_mm512_setzero_si512()];
    let units_total = len / unit_len;
    for g in 0..units_total.div_ceil(4) {
        // The initial tweaks of up to four units in one register (`iv` is asked only about
        // units that exist).
        let units = (units_total - 4 * g).min(4);
        let ivs: [u128; 4] = std::array::from_fn(|j| if j < units { iv(4 * g + j) } else { 0 });
        let half = |j: usize, hi: bool| (ivs[j] >> if hi { 64 } else { 0 }) as u64 as i64;
        let mut t = [_mm512_set_epi64(
            half(3, true),
            half(3, false),
            half(2, true),
            half(2, false),
            half(1, true),
            half(1, false),
            half(0, true),
            half(0, false),
        )];
        rounds::<NR, true, 1>(&mut t, &tk, &zero);
        for j in 0..units {
            let off = (4 * g + j) * unit_len;
            // SAFETY: unit `4g + j` lies within the `len` bytes (caller's contract).
            unsafe {
                unit::<NR, ENC>(
                    &rk,
                    src.add(off),
                    dst.add(off),
                    unit_len,
                    first_tweaks(t[0], j),
                    4 * g + j + 1 < units_total,
                )
            };
        }
    }
}
