//! Cross-check of the XTS backends: aws-lc (FFI), our pure-Rust XTS, and the independent
//! `xts-mode` crate, on random keys and data, with dm-crypt's plain64 IVs in 512-byte units.

use aes::cipher::KeyInit;
use rand::RngCore;
use strongroom_luks::cipher::SectorCipher;
use strongroom_luks::model::Segment;
use strongroom_luks::xts::Backend;
use strongroom_luks::{CryptDevice, MemDevice};

fn reference(key: &[u8], data: &mut [u8], sector: usize, first_iv: u64, encrypt: bool) {
    let step = (sector / 512) as u128;
    let (a, b) = key.split_at(key.len() / 2);
    macro_rules! run {
        ($c:ty) => {{
            let x = xts_mode::Xts128::new(
                <$c>::new_from_slice(a).unwrap(),
                <$c>::new_from_slice(b).unwrap(),
            );
            for (i, s) in data.chunks_mut(sector).enumerate() {
                let t = xts_mode::get_tweak_default(first_iv as u128 + i as u128 * step);
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
