//! The interop vectors in ../shared/luks2-images/vectors: real cryptsetup ciphertext.

mod common;

use std::path::Path;
use strongroom_luks::xts::Backend;
use strongroom_luks::{Error, FileDevice, Volume};

struct Vector {
    file: String,
    vk: Option<Vec<u8>>,
}

fn manifest(dir: &Path) -> Vec<Vector> {
    let text = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let vk = hex::decode(cols.get(1)?).ok();
            Some(Vector {
                file: cols[0].to_string(),
                vk,
            })
        })
        .collect()
}

fn check_data(
    vol: &Volume<FileDevice>,
    data_dev: FileDevice,
    pass: &[u8],
    pattern: &[u8],
    vk: &[u8],
) {
    let u = vol.unlock(pass, None, false).expect("unlock");
    assert_eq!(&u.volume_key[..], vk, "volume key");
    for backend in [Backend::Auto, Backend::RustCrypto] {
        let cd = vol
            .crypt_device(&data_dev, &u, backend)
            .expect("crypt device");
        let mut buf = vec![0u8; pattern.len()];
        cd.read(0, &mut buf).unwrap();
        assert!(
            buf == pattern,
            "plaintext differs from pattern.bin ({backend:?})"
        );
        // An unaligned read in the middle.
        let mut small = vec![0u8; 1000];
        cd.read(5000, &mut small).unwrap();
        assert_eq!(&small[..], &pattern[5000..6000]);
    }
}

#[test]
fn vectors_unlock_and_decrypt() {
    let shared = need_shared!();
    let dir = shared.join("luks2-images/vectors");
    let tmp = tempfile::tempdir().unwrap();
    let pattern = std::fs::read(dir.join("pattern.bin")).unwrap();
    let pass = b"vector-pass";
    for v in manifest(&dir) {
        eprintln!("vector {}", v.file);
        if v.file.starts_with("v09") {
            let hdr = common::unxz(&dir.join("v09-header.img.xz"), tmp.path());
            let data = common::unxz(&dir.join("v09-data.img.xz"), tmp.path());
            let vol = Volume::open(FileDevice::open(&hdr, false).unwrap()).unwrap();
            assert_eq!(vol.data_segment().unwrap().offset, 0);
            check_data(
                &vol,
                FileDevice::open(&data, false).unwrap(),
                pass,
                &pattern,
                v.vk.as_ref().unwrap(),
            );
            continue;
        }
        let img = common::unxz(&dir.join(format!("{}.xz", v.file)), tmp.path());
        let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
        if v.file.starts_with("v12") {
            // Reencryption in progress: keyslot still opens, activation and writes refused.
            let u = vol.unlock(pass, None, false).expect("v12 unlock");
            assert!(vol
                .read_only_reason()
                .unwrap()
                .contains("online-reencrypt-v2"));
            assert!(matches!(vol.data_segment(), Err(Error::ReadOnly(_))));
            assert!(vol
                .crypt_device(FileDevice::open(&img, false).unwrap(), &u, Backend::Auto)
                .is_err());
            let mut vol = vol;
            assert!(matches!(vol.remove_keyslot(0), Err(Error::ReadOnly(_))));
            assert!(matches!(
                vol.add_keyslot(&u.volume_key, b"x", &Default::default()),
                Err(Error::ReadOnly(_))
            ));
            continue;
        }
        let data = FileDevice::open(&img, false).unwrap();
        check_data(&vol, data, pass, &pattern, v.vk.as_ref().unwrap());
        if v.file.starts_with("v08") {
            assert_eq!(vol.header().label, "vec-label");
            assert_eq!(vol.header().subsystem, "vec-subsys");
            let kf = std::fs::read(dir.join("v08-keyfile.bin")).unwrap();
            let u = vol.unlock(&kf, None, false).unwrap();
            assert_eq!(u.slot, 5);
            // slot 2 has priority "ignore": only when named.
            assert!(matches!(
                vol.unlock(b"other-pass", None, false),
                Err(Error::WrongKey)
            ));
            assert_eq!(vol.unlock(b"other-pass", Some(2), false).unwrap().slot, 2);
            assert_eq!(vol.token(3).unwrap()["type"], "systemd-recovery");
            assert!(matches!(
                vol.unlock(b"wrong", None, false),
                Err(Error::WrongKey)
            ));
        }
        if v.file.starts_with("v11") {
            let d = strongroom_luks::model::DigestInfo::all(&vol.header().meta).unwrap();
            assert_eq!(d[0].digest.len(), 20, "LUKS1-converted digest is 20 bytes");
        }
    }
}
