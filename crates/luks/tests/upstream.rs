//! cryptsetup's own test images (../shared/luks2-images/upstream), each behaving as its README
//! says.

mod common;

use std::path::Path;
use strongroom_luks::format::KeyslotParams;
use strongroom_luks::header::LoadOptions;
use strongroom_luks::xts::Backend;
use strongroom_luks::{Error, FileDevice, Volume};

fn open_rw(p: &Path) -> Volume<FileDevice> {
    Volume::open(FileDevice::open(p, true).unwrap()).unwrap()
}

#[test]
fn valid_hdr_parses() {
    let shared = need_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let img = common::unxz(
        &shared.join("luks2-images/upstream/luks2_valid_hdr.img.xz"),
        tmp.path(),
    );
    let vol = open_rw(&img);
    assert_eq!(vol.keyslots().len(), 8);
    // kdf type "argon2" (pre-release name) is not usable: no key opens it, no panic.
    assert!(matches!(
        vol.unlock(b"compatkey", None, false),
        Err(Error::WrongKey)
    ));
}

#[test]
fn keyslot_unassigned() {
    let shared = need_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let img = common::unxz(
        &shared.join("luks2-images/upstream/luks2_keyslot_unassigned.img.xz"),
        tmp.path(),
    );
    let mut vol = open_rw(&img);
    let bound = vol.unlock(b"compatkey", None, false).unwrap();
    assert!(bound.bound);
    let u = vol.unlock(b"93R4P4pIqAH8", Some(1), false).unwrap();
    assert!(!u.bound);
    assert!(vol.unlock(b"93R4P4pIqAH8", None, true).is_ok(), "--unbound");
    assert!(matches!(
        vol.unlock(b"93R4P4pIqAH8", None, false),
        Err(Error::WrongKey)
    ));
    assert!(vol.unlock(b"compatkey", Some(1), false).is_err());
    // Activation with the unbound key must fail; with the bound one it works.
    assert!(vol
        .crypt_device(FileDevice::open(&img, false).unwrap(), &u, Backend::Auto)
        .is_err());
    assert!(vol
        .crypt_device(
            FileDevice::open(&img, false).unwrap(),
            &bound,
            Backend::Auto
        )
        .is_ok());
    vol.remove_keyslot(0).unwrap();
    let vol = open_rw(&img);
    assert_eq!(vol.unlock(b"93R4P4pIqAH8", None, true).unwrap().slot, 1);
    if common::have_cryptsetup() {
        common::cs_ok(
            &[
                "open",
                "--test-passphrase",
                "--unbound",
                img.to_str().unwrap(),
            ],
            Some(b"93R4P4pIqAH8"),
        );
    }
}

#[test]
fn invalid_cipher_unlocks_but_does_not_activate() {
    let shared = need_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let img = common::unxz(
        &shared.join("luks2-images/upstream/luks2_invalid_cipher.img.xz"),
        tmp.path(),
    );
    let vol = open_rw(&img);
    let u = vol.unlock(b"93R4P4pIqAH8", None, false).unwrap();
    assert!(matches!(vol.data_segment(), Err(Error::Unsupported(_))));
    assert!(vol
        .crypt_device(FileDevice::open(&img, false).unwrap(), &u, Backend::Auto)
        .is_err());
}

#[test]
fn header_requirements_read_only() {
    let shared = need_shared!();
    let tmp = tempfile::tempdir().unwrap();
    common::untar(
        &shared.join("luks2-images/upstream/luks2_header_requirements.tar.xz"),
        tmp.path(),
    );
    let req = tmp.path().join("luks2_header_requirements");
    let before = std::fs::read(&req).unwrap();
    let mut vol = open_rw(&req);
    assert_eq!(vol.requirements(), ["req0", "req1"]);
    let u = vol.unlock(b"blablabl", None, false).unwrap();
    assert!(matches!(vol.data_segment(), Err(Error::ReadOnly(_))));
    assert!(matches!(
        vol.add_keyslot(&u.volume_key, b"x", &KeyslotParams::default()),
        Err(Error::ReadOnly(_))
    ));
    assert!(matches!(vol.remove_keyslot(0), Err(Error::ReadOnly(_))));
    assert!(matches!(vol.remove_token(0), Err(Error::ReadOnly(_))));
    assert!(matches!(
        vol.change_key(b"blablabl", b"y", None, None),
        Err(Error::ReadOnly(_))
    ));
    assert!(std::fs::read(&req).unwrap() == before, "no byte written");

    let free = tmp.path().join("luks2_header_requirements_free");
    let mut vol = open_rw(&free);
    assert!(vol.requirements().is_empty());
    let tokens_before: Vec<_> = [0u32, 1, 6]
        .iter()
        .map(|t| vol.token(*t).cloned().unwrap())
        .collect();
    assert_eq!(
        tokens_before[1]["key_description"],
        "cs_token_test:test_key0"
    );
    let slot = vol
        .add_key(b"blablabl", b"new", &KeyslotParams::default())
        .unwrap();
    let vol = open_rw(&free);
    assert_eq!(vol.unlock(b"new", None, false).unwrap().slot, slot);
    let tokens_after: Vec<_> = [0u32, 1, 6]
        .iter()
        .map(|t| vol.token(*t).cloned().unwrap())
        .collect();
    assert_eq!(tokens_before, tokens_after, "tokens preserved");
    assert!(vol.data_segment().is_ok());
}

#[test]
fn mda_images_all_sizes() {
    let shared = need_shared!();
    let tmp = tempfile::tempdir().unwrap();
    common::untar(
        &shared.join("luks2-images/upstream/luks2_mda_images.tar.xz"),
        tmp.path(),
    );
    for kib in [16u64, 32, 64, 128, 256, 512, 1024, 2048, 4096] {
        let img = tmp.path().join(format!("test_image_{kib}"));
        let mut vol = open_rw(&img);
        assert_eq!(vol.header().hdr_size, kib * 1024);
        vol.add_key(
            b"Qx3qn46vq0v",
            b"slot9",
            &KeyslotParams {
                slot: Some(9),
                ..Default::default()
            },
        )
        .unwrap();
        let vol = open_rw(&img);
        assert_eq!(vol.unlock(b"slot9", Some(9), false).unwrap().slot, 9);
        assert!(vol.report().needs_repair.is_none());
        if common::have_cryptsetup() {
            common::cs_ok(
                &[
                    "open",
                    "--test-passphrase",
                    "-S",
                    "9",
                    img.to_str().unwrap(),
                ],
                Some(b"slot9"),
            );
        }
    }
}

#[test]
fn blkid_pv_needs_explicit_repair() {
    let shared = need_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let img = common::unxz(
        &shared.join("luks2-images/upstream/blkid-luks2-pv.img.xz"),
        tmp.path(),
    );
    match Volume::open(FileDevice::open(&img, true).unwrap()) {
        Err(Error::ForeignSignature(s)) => assert!(s.contains("LVM2")),
        other => panic!(
            "expected a foreign-signature refusal, got {:?}",
            other.map(|_| ())
        ),
    }
    let mut vol = Volume::open_with(
        FileDevice::open(&img, true).unwrap(),
        LoadOptions {
            allow_foreign_signature: true,
        },
    )
    .unwrap();
    assert_eq!(vol.report().used, strongroom_luks::HeaderCopy::Secondary);
    assert!(vol.repair().unwrap().is_some());
    let vol = open_rw(&img);
    assert!(vol.report().needs_repair.is_none());
    if common::have_cryptsetup() {
        common::cs_ok(&["isLuks", "--type", "luks2", img.to_str().unwrap()], None);
    }
}

#[test]
fn compatimage2_cbc_essiv_and_argon2id() {
    let shared = need_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let img = common::unxz(
        &shared.join("luks2-images/upstream/compatimage2.img.xz"),
        tmp.path(),
    );
    let vol = open_rw(&img);
    let a = vol.unlock(b"compatkey", None, false).unwrap();
    let b = vol.unlock(b"0123456789abcdef", None, false).unwrap();
    assert_eq!((a.slot, b.slot), (0, 1));
    assert_eq!(a.volume_key, b.volume_key);
    assert_eq!(a.volume_key.len(), 16);
    assert_eq!(
        vol.data_segment().unwrap().encryption,
        "aes-cbc-essiv:sha256"
    );
    if common::have_cryptsetup() {
        let kf = tmp.path().join("kf");
        common::write_file(&kf, b"compatkey");
        assert_eq!(common::cs_volume_key(&img, &kf, None), &a.volume_key[..]);
    }
    // A new keyslot for a 128-bit CBC key uses the aes-xts-plain64 512-bit fallback, as
    // cryptsetup does; cryptsetup opens it.
    let mut vol = vol;
    let slot = vol
        .add_key(b"compatkey", b"added", &KeyslotParams::default())
        .unwrap();
    let ks = vol.keyslot(slot).unwrap();
    assert_eq!(
        (ks.area.encryption.as_str(), ks.area.key_size),
        ("aes-xts-plain64", 64)
    );
    if common::have_cryptsetup() {
        common::cs_ok(
            &["open", "--test-passphrase", img.to_str().unwrap()],
            Some(b"added"),
        );
    }
}

#[test]
fn luks1_images_are_refused_cleanly() {
    let shared = need_shared!();
    let up = shared.join("luks2-images/upstream");
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = [
        "compatimage.img.xz",
        "compatv10image.img.xz",
        "valid_header_file.xz",
    ]
    .iter()
    .map(|f| common::unxz(&up.join(f), tmp.path()))
    .collect();
    for f in std::fs::read_dir(&up).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("evil_hdr-")
        {
            files.push(common::unxz(&p, tmp.path()));
        }
    }
    common::untar(&up.join("luks1-images.tar.xz"), tmp.path());
    for f in std::fs::read_dir(tmp.path().join("luks1-images")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "img") {
            files.push(p);
        }
    }
    assert!(files.len() >= 20);
    for f in files {
        match Volume::open(FileDevice::open(&f, false).unwrap()) {
            Err(Error::NotLuks2(m)) => assert!(
                m.contains("LUKS1") || m.contains("no LUKS2"),
                "{}: {m}",
                f.display()
            ),
            Err(e) => panic!("{}: unexpected error {e}", f.display()),
            Ok(_) => panic!("{}: a LUKS1 header must not load as LUKS2", f.display()),
        }
    }
}
