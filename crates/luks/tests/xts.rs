//! Cross-check of the XTS backends: VAES/AVX-512 (where the CPU has it), aws-lc (FFI), our
//! pure-Rust XTS, and the independent `xts-mode` crate, on IEEE 1619 vectors and random keys
//! and data, with dm-crypt's plain64 IVs in 512-byte units.

use aes::cipher::KeyInit;
use rand::RngCore;
use strongroom_luks::cipher::SectorCipher;
use strongroom_luks::model::Segment;
use strongroom_luks::xts::awslc::AwsLcXts;
use strongroom_luks::xts::rustcrypto::RustXts;
use strongroom_luks::xts::{plain64_iv, vaes_available, Backend};
use strongroom_luks::{CryptDevice, MemDevice};

/// `xts-mode` over consecutive data units of `unit` bytes, unit i with tweak `tweak(i)`.
fn xts_mode_units(
    key: &[u8],
    data: &mut [u8],
    unit: usize,
    tweak: impl Fn(usize) -> u128,
    encrypt: bool,
) {
    let (a, b) = key.split_at(key.len() / 2);
    macro_rules! run {
        ($c:ty) => {{
            let x = xts_mode::Xts128::new(
                <$c>::new_from_slice(a).unwrap(),
                <$c>::new_from_slice(b).unwrap(),
            );
            for (i, s) in data.chunks_mut(unit).enumerate() {
                let t = xts_mode::get_tweak_default(tweak(i));
                if encrypt {
                    x.encrypt_sector(s, t)
                } else {
                    x.decrypt_sector(s, t)
                }
            }
        }};
    }
    if key.len() == 64 {
        run!(aes::Aes256)
    } else {
        run!(aes::Aes128)
    }
}

/// dm-crypt sectors: IVs in 512-byte units from `first_iv`.
fn reference(key: &[u8], data: &mut [u8], sector: usize, first_iv: u64, encrypt: bool) {
    let step = (sector / 512) as u128;
    xts_mode_units(
        key,
        data,
        sector,
        |i| first_iv as u128 + i as u128 * step,
        encrypt,
    );
}

#[test]
fn backends_agree_with_xts_mode() {
    let mut rng = rand::rngs::OsRng;
    for key_len in [32usize, 64] {
        for sector in [512usize, 4096] {
            for _ in 0..4 {
                let mut key = vec![0u8; key_len];
                rng.fill_bytes(&mut key);
                let mut plain = vec![0u8; sector * 9];
                rng.fill_bytes(&mut plain);
                let iv0 = (rng.next_u32() as u64) << 8;
                let mut want = plain.clone();
                reference(&key, &mut want, sector, iv0, true);
                let mut backends = vec![Backend::RustCrypto, Backend::Auto];
                if key_len == 64 {
                    backends.push(Backend::AwsLc);
                }
                if vaes_available() {
                    backends.push(Backend::Vaes);
                }
                for be in backends {
                    let c = SectorCipher::new("aes-xts-plain64", &key, be).unwrap();
                    let mut got = plain.clone();
                    c.process(&mut got, sector, iv0, true).unwrap();
                    assert!(
                        got == want,
                        "{be:?} key {key_len} sector {sector}: encryption differs"
                    );
                    c.process(&mut got, sector, iv0, false).unwrap();
                    assert!(got == plain, "{be:?}: decryption");
                }
            }
        }
    }
}

#[test]
fn aws_lc_refuses_equal_halves() {
    let key = [7u8; 64];
    assert!(SectorCipher::new("aes-xts-plain64", &key, Backend::AwsLc).is_err());
    assert!(SectorCipher::new("aes-xts-plain64", &key, Backend::RustCrypto).is_err());
}

#[test]
fn parallel_large_io_matches_sequential() {
    let mut key = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let seg = Segment {
        id: 0,
        kind: "crypt".into(),
        offset: 4096,
        size: None,
        iv_tweak: 8,
        encryption: "aes-xts-plain64".into(),
        sector_size: 4096,
        flags: vec![],
        integrity: false,
    };
    let mut data = vec![0u8; 4 << 20];
    rand::rngs::OsRng.fill_bytes(&mut data);
    let dev = MemDevice::zeroed(4096 + data.len());
    let cd = CryptDevice::new(&dev, &seg, &key, Backend::Auto).unwrap();
    cd.write(0, &data).unwrap();
    // Ciphertext equals the reference computed sector by sector.
    let mut want = data.clone();
    reference(&key, &mut want, 4096, 8, true);
    let raw = dev.snapshot();
    assert!(raw[4096..] == want[..]);
    let mut back = vec![0u8; data.len()];
    let rust = CryptDevice::new(&dev, &seg, &key, Backend::RustCrypto).unwrap();
    rust.read(0, &mut back).unwrap();
    assert!(back == data);
    // Unaligned write in the middle, read back through the other backend.
    cd.write(12345, b"hello, sectors").unwrap();
    let mut s = [0u8; 14];
    rust.read(12345, &mut s).unwrap();
    assert_eq!(&s, b"hello, sectors");
    assert!(
        cd.read(data.len() as u64 - 10, &mut [0u8; 11]).is_err(),
        "reads past the end fail"
    );
}

/// Encrypts (true) or decrypts consecutive data units: (buffer, unit length, encrypt, first IV).
type Runner = Box<dyn Fn(&mut [u8], usize, bool, u64)>;

/// The backends usable for `key` (aws-lc takes 512-bit keys with distinct halves only; the
/// VAES backend needs the CPU features).
fn backends_for(key: &[u8]) -> Vec<(&'static str, Runner)> {
    let mut v: Vec<(&'static str, Runner)> = Vec::new();
    let rust = RustXts::new(key).unwrap();
    v.push((
        "rustcrypto",
        Box::new(move |buf, unit, enc, iv0| {
            for (i, s) in buf.chunks_mut(unit).enumerate() {
                rust.sector(s, &plain64_iv(iv0.wrapping_add(i as u64)), enc);
            }
        }),
    ));
    if key.len() == 64 && key[..32] != key[32..] {
        let a = AwsLcXts::new(key).unwrap();
        v.push((
            "awslc",
            Box::new(move |buf, unit, enc, iv0| {
                a.sectors(buf, unit, enc, |i| plain64_iv(iv0.wrapping_add(i as u64)))
                    .unwrap()
            }),
        ));
    }
    #[cfg(target_arch = "x86_64")]
    if vaes_available() {
        let x = strongroom_luks::xts::vaes::VaesXts::new(key).unwrap();
        v.push((
            "vaes",
            Box::new(move |buf, unit, enc, iv0| {
                x.sectors(buf, unit, enc, |i| plain64_iv(iv0.wrapping_add(i as u64)))
                    .unwrap()
            }),
        ));
        // The out-of-place path (decrypting copy from a mapping), from a separate source.
        let x = strongroom_luks::xts::vaes::VaesXts::new(key).unwrap();
        v.push((
            "vaes-from",
            Box::new(move |buf, unit, enc, iv0| {
                let src = buf.to_vec();
                buf.fill(0xa5);
                x.sectors_from(&src, buf, unit, enc, |i| {
                    plain64_iv(iv0.wrapping_add(i as u64))
                })
                .unwrap()
            }),
        ));
    }
    v
}

/// `process_from` (a decrypting or encrypting copy) gives what `process` gives in place, for
/// every backend and both XTS key sizes, and for a CBC cipher (copy, then in place); lengths
/// that differ or are not whole sectors are refused.
#[test]
fn process_from_matches_in_place() {
    let mut rng = rand::rngs::OsRng;
    let mut cases: Vec<(&str, usize, Backend)> = vec![
        ("aes-xts-plain64", 64, Backend::RustCrypto),
        ("aes-xts-plain64", 32, Backend::RustCrypto),
        ("aes-xts-plain64", 64, Backend::AwsLc),
        ("aes-xts-plain64", 64, Backend::Auto),
        ("aes-xts-plain64", 32, Backend::Auto),
        ("aes-cbc-essiv:sha256", 32, Backend::Auto),
    ];
    if vaes_available() {
        cases.push(("aes-xts-plain64", 64, Backend::Vaes));
        cases.push(("aes-xts-plain64", 32, Backend::Vaes));
    }
    for (spec, key_len, be) in cases {
        let mut key = vec![0u8; key_len];
        rng.fill_bytes(&mut key);
        let c = SectorCipher::new(spec, &key, be).unwrap();
        for sector in [512usize, 4096] {
            for count in [1usize, 3, 4, 5, 9] {
                let mut plain = vec![0u8; sector * count];
                rng.fill_bytes(&mut plain);
                let iv0 = rng.next_u32() as u64;
                for encrypt in [true, false] {
                    let mut want = plain.clone();
                    c.process(&mut want, sector, iv0, encrypt).unwrap();
                    let mut got = vec![0x5au8; plain.len()];
                    c.process_from(&plain, &mut got, sector, iv0, encrypt)
                        .unwrap();
                    assert!(got == want, "{spec} {key_len} {be:?} {sector}x{count}");
                }
            }
        }
        let src = vec![0u8; 4096];
        let mut short = vec![0u8; 2048];
        assert!(c.process_from(&src, &mut short, 512, 0, false).is_err());
        let mut odd = vec![0u8; 700];
        assert!(c
            .process_from(&src[..700], &mut odd, 512, 0, false)
            .is_err());
    }
}

/// IEEE Std 1619-2007 Annex B vectors through every backend, both directions (IVs count data
/// units here, one unit per vector).
#[test]
fn ieee1619_vectors() {
    let text = include_str!("data/ieee1619-xts.txt");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let key = hex::decode(f[1]).unwrap();
        let seq = u64::from_str_radix(f[2], 16).unwrap();
        let pt = hex::decode(f[3]).unwrap();
        let ct = hex::decode(f[4]).unwrap();
        let backends = backends_for(&key);
        if !vaes_available() {
            eprintln!(
                "note: no VAES/AVX-512 on this CPU, vector {} skips that backend",
                f[0]
            );
        }
        for (name, run) in &backends {
            let mut buf = pt.clone();
            run(&mut buf, pt.len(), true, seq);
            assert!(buf == ct, "vector {} {name}: ciphertext", f[0]);
            run(&mut buf, pt.len(), false, seq);
            assert!(buf == pt, "vector {} {name}: plaintext", f[0]);
        }
        n += 1;
    }
    assert_eq!(n, 6);
}

/// The VAES backend against the pure-Rust one, aws-lc and `xts-mode` on random keys (both key
/// sizes), sector sizes 512 and 4096 plus odd data-unit lengths (every tail of the 16-block
/// loop), 1 to 9 units (every tail of the 4-unit tweak batch) and IVs near the u64 wrap.
#[test]
fn vaes_matches_other_backends_on_random_input() {
    if !vaes_available() {
        eprintln!("SKIP: this CPU lacks VAES/AVX-512 (aes, avx512f, avx512bw, vaes, vpclmulqdq)");
        return;
    }
    let mut rng = rand::rngs::OsRng;
    let units = [
        512usize,
        4096,
        16,
        32,
        48,
        64,
        80,
        240,
        256,
        272,
        496,
        1024 + 48,
    ];
    for round in 0..240 {
        let key_len = if round % 2 == 0 { 64 } else { 32 };
        let mut key = vec![0u8; key_len];
        rng.fill_bytes(&mut key);
        let unit = units[round % units.len()];
        let count = 1 + (rng.next_u32() as usize % 9);
        let mut plain = vec![0u8; unit * count];
        rng.fill_bytes(&mut plain);
        let iv0 = match round % 3 {
            0 => rng.next_u64(),
            1 => u64::MAX - (rng.next_u32() % 8) as u64,
            _ => rng.next_u32() as u64,
        };
        let mut want = plain.clone();
        // Unit i has plain64 IV iv0 + i, wrapping at 2^64 as plain64 does.
        xts_mode_units(
            &key,
            &mut want,
            unit,
            |i| iv0.wrapping_add(i as u64).into(),
            true,
        );
        let mut results = Vec::new();
        for (name, run) in backends_for(&key) {
            let mut got = plain.clone();
            run(&mut got, unit, true, iv0);
            let mut back = got.clone();
            run(&mut back, unit, false, iv0);
            assert!(
                back == plain,
                "{name} round {round}: decrypt(encrypt(x)) == x"
            );
            results.push((name, got));
        }
        let (_, first) = &results[0];
        for (name, got) in &results {
            assert!(
                got == first,
                "{name} differs, round {round}, unit {unit}, key {key_len}"
            );
        }
        assert!(*first == want, "xts-mode differs, round {round}");
    }
}

/// The IV callback is asked only about sectors that exist (callers may index a slice with it).
#[cfg(target_arch = "x86_64")]
#[test]
fn vaes_asks_only_for_existing_ivs() {
    if !vaes_available() {
        eprintln!("SKIP: this CPU lacks VAES/AVX-512");
        return;
    }
    let mut key = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let x = strongroom_luks::xts::vaes::VaesXts::new(&key).unwrap();
    for n in 1..=9 {
        let ivs: Vec<[u8; 16]> = (0..n as u64).map(|i| plain64_iv(i * 8)).collect();
        let mut buf = vec![0u8; 4096 * n];
        x.sectors(&mut buf, 4096, true, |i| ivs[i]).unwrap();
    }
    let mut odd = vec![0u8; 4096 + 16];
    assert!(x.sectors(&mut odd, 4096, true, plain64_iv_of).is_err());
    assert!(x.sectors(&mut odd[..24], 24, true, plain64_iv_of).is_err());
}

fn plain64_iv_of(i: usize) -> [u8; 16] {
    plain64_iv(i as u64)
}

#[test]
fn auto_prefers_vaes_when_present() {
    let mut key = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut key);
    for len in [32, 64] {
        let c = SectorCipher::new("aes-xts-plain64", &key[..len], Backend::Auto).unwrap();
        let want = if vaes_available() {
            Backend::Vaes
        } else if len == 64 {
            Backend::AwsLc
        } else {
            Backend::RustCrypto
        };
        assert_eq!(c.xts_backend(), Some(want));
    }
    let explicit = SectorCipher::new("aes-xts-plain64", &key, Backend::Vaes);
    assert_eq!(explicit.is_ok(), vaes_available());
    assert!(SectorCipher::new("aes-xts-plain64", &[7u8; 64], Backend::Vaes).is_err());
}
