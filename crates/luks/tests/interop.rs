//! Interop with the real cryptsetup (Debian cryptsetup-bin 2.6) in both directions. Every case
//! skips with a message when cryptsetup is absent.

mod common;

use std::path::Path;
use strongroom_luks::format::{FormatParams, KdfParams, KeyslotParams};
use strongroom_luks::xts::Backend;
use strongroom_luks::{Error, FileDevice, Volume};
use zeroize::Zeroizing;

const MIB: u64 = 1024 * 1024;

fn pattern(len: usize) -> Vec<u8> {
    (0..len / 512)
        .flat_map(|i| {
            let mut s = format!("SEC{i:012}").into_bytes();
            s.resize(512, b'.');
            s
        })
        .collect()
}

fn kdf_variants() -> Vec<(&'static str, KdfParams, Vec<&'static str>)> {
    vec![
        (
            "pbkdf2-sha256",
            KdfParams::Pbkdf2 {
                hash: "sha256".into(),
                iterations: 1000,
            },
            vec!["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
        ),
        (
            "pbkdf2-sha512",
            KdfParams::Pbkdf2 {
                hash: "sha512".into(),
                iterations: 1000,
            },
            vec![
                "--pbkdf",
                "pbkdf2",
                "--hash",
                "sha512",
                "--pbkdf-force-iterations",
                "1000",
            ],
        ),
        (
            "argon2i",
            KdfParams::Argon2i {
                time: 4,
                memory_kib: 32768,
                cpus: 1,
            },
            vec![
                "--pbkdf",
                "argon2i",
                "--pbkdf-force-iterations",
                "4",
                "--pbkdf-memory",
                "32768",
                "--pbkdf-parallel",
                "1",
            ],
        ),
        (
            "argon2id",
            KdfParams::Argon2id {
                time: 4,
                memory_kib: 32768,
                cpus: 2,
            },
            vec![
                "--pbkdf",
                "argon2id",
                "--pbkdf-force-iterations",
                "4",
                "--pbkdf-memory",
                "32768",
                "--pbkdf-parallel",
                "2",
            ],
        ),
    ]
}

fn create_file(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

fn small_params(kdf: KdfParams, bits: usize, sector: u32) -> FormatParams {
    FormatParams {
        key_size_bits: bits,
        sector_size: sector,
        keyslot: KeyslotParams {
            kdf,
            ..Default::default()
        },
        data_offset: Some(2 * MIB),
        ..FormatParams::default()
    }
}

/// We format (all KDFs × 256/512-bit keys × 512/4096 sectors); cryptsetup dumps, tests the
/// passphrase and dumps our volume key.
#[test]
fn we_format_cryptsetup_opens() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let kf = tmp.path().join("key");
    common::write_file(&kf, b"interop passphrase");
    let mut cases = Vec::new();
    for (name, kdf, _) in kdf_variants() {
        for bits in [256, 512] {
            for sector in [512u32, 4096] {
                // Keep the run short: all sizes for pbkdf2, one each for the others.
                if !name.starts_with("pbkdf2-sha256")
                    && (bits, sector)
                        != (if name == "argon2i" {
                            (256, 512)
                        } else {
                            (512, 4096)
                        })
                {
                    continue;
                }
                cases.push((name, kdf.clone(), bits, sector));
            }
        }
    }
    cases.push(("default-profile", KdfParams::default(), 512, 4096));
    for (name, kdf, bits, sector) in cases {
        let img = tmp.path().join(format!("{name}-{bits}-{sector}.img"));
        let params = if name == "default-profile" {
            create_file(&img, 17 * MIB);
            FormatParams {
                label: "strongroom".into(),
                subsystem: "sub".into(),
                ..FormatParams::default()
            }
        } else {
            create_file(&img, 3 * MIB);
            small_params(kdf, bits, sector)
        };
        let (vol, vk) = Volume::format(
            FileDevice::open(&img, true).unwrap(),
            &params,
            b"interop passphrase",
        )
        .unwrap();
        drop(vol);
        let p = img.to_str().unwrap();
        let dump = common::cs_ok(&["luksDump", p], None);
        assert!(
            dump.contains(&format!("sector: {sector} [bytes]")),
            "{name}: {dump}"
        );
        common::cs_ok(
            &[
                "open",
                "--test-passphrase",
                "--key-file",
                kf.to_str().unwrap(),
                p,
            ],
            None,
        );
        assert_eq!(
            common::cs_volume_key(&img, &kf, None),
            &vk[..],
            "{name} {bits} {sector}: volume key"
        );
        let bad = common::cs(&["open", "--test-passphrase", p], Some(b"wrong"));
        assert!(!bad.status.success());
    }
}

/// Detached header formatted by us; cryptsetup opens it with --header.
#[test]
fn we_format_detached_header() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let kf = tmp.path().join("key");
    common::write_file(&kf, b"detached");
    let hdr = tmp.path().join("hdr.img");
    let data = tmp.path().join("data.img");
    create_file(&data, MIB);
    let params = FormatParams {
        detached: true,
        ..FormatParams::default()
    };
    let (vol, vk) = Volume::format(
        FileDevice::open(
            &{
                create_file(&hdr, 0);
                hdr.clone()
            },
            true,
        )
        .unwrap(),
        &params,
        b"detached",
    )
    .unwrap();
    assert_eq!(vol.data_segment().unwrap().offset, 0);
    let u = vol.unlock(b"detached", None, false).unwrap();
    let cd = vol
        .crypt_device(FileDevice::open(&data, true).unwrap(), &u, Backend::Auto)
        .unwrap();
    cd.write(0, &pattern(64 * 1024)).unwrap();
    drop(cd);
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "--header",
            hdr.to_str().unwrap(),
            "--key-file",
            kf.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(common::cs_volume_key(&data, &kf, Some(&hdr)), &vk[..]);
    // cryptsetup decrypts our data: offline decryption of a detached-header device.
    common::cs_ok(
        &[
            "reencrypt",
            "--decrypt",
            "--force-offline-reencrypt",
            "--header",
            hdr.to_str().unwrap(),
            "--key-file",
            kf.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
        None,
    );
    let plain = std::fs::read(&data).unwrap();
    assert!(
        plain[..64 * 1024] == pattern(64 * 1024)[..],
        "cryptsetup decrypted our ciphertext"
    );
}

/// Our ciphertext, re-keyed by cryptsetup's offline reencryption (it decrypts with our key and
/// encrypts with a new one), reads back as the original plaintext through our engine.
#[test]
fn cryptsetup_reencrypts_our_data() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let kf = tmp.path().join("key");
    common::write_file(&kf, b"reenc");
    let data = pattern(256 * 1024);
    for bits in [256, 512] {
        for sector in [512u32, 4096] {
            let img = tmp.path().join(format!("r-{bits}-{sector}.img"));
            create_file(&img, 2 * MIB + data.len() as u64);
            let params = small_params(KdfParams::default(), bits, sector);
            let (vol, vk) =
                Volume::format(FileDevice::open(&img, true).unwrap(), &params, b"reenc").unwrap();
            let u = vol.unlock(b"reenc", None, false).unwrap();
            vol.crypt_device(FileDevice::open(&img, true).unwrap(), &u, Backend::Auto)
                .unwrap()
                .write(0, &data)
                .unwrap();
            drop(vol);
            common::cs_ok(
                &[
                    "reencrypt",
                    "--force-offline-reencrypt",
                    "--pbkdf",
                    "pbkdf2",
                    "--pbkdf-force-iterations",
                    "1000",
                    "--key-file",
                    kf.to_str().unwrap(),
                    img.to_str().unwrap(),
                ],
                None,
            );
            let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
            let u = vol.unlock(b"reenc", None, false).unwrap();
            assert_ne!(
                &u.volume_key[..],
                &vk[..],
                "reencryption changed the volume key"
            );
            assert_eq!(common::cs_volume_key(&img, &kf, None), &u.volume_key[..]);
            let cd = vol
                .crypt_device(FileDevice::open(&img, false).unwrap(), &u, Backend::Auto)
                .unwrap();
            let mut back = vec![0u8; data.len()];
            cd.read(0, &mut back).unwrap();
            assert!(
                back == data,
                "{bits}/{sector}: plaintext after cryptsetup re-key"
            );
        }
    }
}

/// cryptsetup formats and encrypts (offline `reencrypt --encrypt`) across pbkdf2 / argon2i /
/// argon2id × 256/512-bit keys × 512/4096 sectors; we unlock, match the volume key and decrypt.
#[test]
fn cryptsetup_encrypts_we_decrypt() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let kf = tmp.path().join("key");
    common::write_file(&kf, b"cs-pass");
    let data = pattern(128 * 1024);
    for (name, _, cs_kdf) in kdf_variants() {
        if name == "pbkdf2-sha512" {
            continue;
        }
        for bits in ["256", "512"] {
            for sector in ["512", "4096"] {
                let img = tmp.path().join(format!("c-{name}-{bits}-{sector}.img"));
                let mut content = data.clone();
                content.resize(6 * MIB as usize, 0);
                std::fs::write(&img, &content).unwrap();
                let mut args = vec![
                    "reencrypt",
                    "--encrypt",
                    "--type",
                    "luks2",
                    "--reduce-device-size",
                    "4M",
                ];
                args.extend(cs_kdf.iter().copied());
                args.extend([
                    "--key-size",
                    bits,
                    "--sector-size",
                    sector,
                    "--key-file",
                    kf.to_str().unwrap(),
                    img.to_str().unwrap(),
                ]);
                common::cs_ok(&args, None);
                let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
                let u = vol.unlock(b"cs-pass", None, false).unwrap();
                assert_eq!(
                    common::cs_volume_key(&img, &kf, None),
                    &u.volume_key[..],
                    "{name}/{bits}/{sector}"
                );
                let seg = vol.data_segment().unwrap();
                assert_eq!(seg.sector_size.to_string(), sector);
                for backend in [Backend::Auto, Backend::RustCrypto] {
                    let cd = vol
                        .crypt_device(FileDevice::open(&img, false).unwrap(), &u, backend)
                        .unwrap();
                    let mut back = vec![0u8; data.len()];
                    cd.read(0, &mut back).unwrap();
                    assert!(
                        back == data,
                        "{name}/{bits}/{sector}: decrypting cryptsetup's ciphertext ({backend:?})"
                    );
                }
            }
        }
    }
}

/// A volume cryptsetup formats as LUKS1 and converts to LUKS2 (20-byte digest) unlocks.
#[test]
fn luks1_converted_unlocks() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let kf = tmp.path().join("key");
    common::write_file(&kf, b"luks1");
    let img = tmp.path().join("l1.img");
    create_file(&img, 4 * MIB);
    let p = img.to_str().unwrap();
    common::cs_ok(
        &[
            "luksFormat",
            "--type",
            "luks1",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            kf.to_str().unwrap(),
            p,
        ],
        None,
    );
    assert!(matches!(
        Volume::open(FileDevice::open(&img, false).unwrap()),
        Err(Error::NotLuks2(_))
    ));
    common::cs_ok(&["convert", "--type", "luks2", p], None);
    let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
    let u = vol.unlock(b"luks1", None, false).unwrap();
    assert_eq!(common::cs_volume_key(&img, &kf, None), &u.volume_key[..]);
    let d = strongroom_luks::model::DigestInfo::all(&vol.header().meta).unwrap();
    assert_eq!(d[0].digest.len(), 20);
}

/// Keyslot management in both directions, and tokens preserved byte for byte across our writes.
#[test]
fn keyslots_and_tokens_roundtrip() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let k = |n: &str, v: &[u8]| {
        let p = tmp.path().join(n);
        common::write_file(&p, v);
        p
    };
    let k0 = k("k0", b"zero");
    let k1 = k("k1", b"one");
    let k2 = k("k2", b"two");
    let k3 = k("k3", b"three");
    let img = tmp.path().join("ks.img");
    create_file(&img, 17 * MIB);
    let p = img.to_str().unwrap();
    let (vol, vk) = Volume::format(
        FileDevice::open(&img, true).unwrap(),
        &FormatParams::default(),
        b"zero",
    )
    .unwrap();
    drop(vol);
    let token = tmp.path().join("token.json");
    common::write_file(&token, br#"{"type":"strongroom-test","keyslots":["0"],"blob":"a/b+c==","n":7,"list":[1,{"x":null,"y":true}],"s":"caf\u00e9"}"#);
    common::cs_ok(
        &[
            "token",
            "import",
            "--token-id",
            "5",
            "--json-file",
            token.to_str().unwrap(),
            p,
        ],
        None,
    );
    let exported = common::cs_ok(&["token", "export", "--token-id", "5", p], None);
    // cryptsetup adds a key; we open it.
    common::cs_ok(
        &[
            "luksAddKey",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            k0.to_str().unwrap(),
            p,
            k1.to_str().unwrap(),
        ],
        None,
    );
    let mut vol = Volume::open(FileDevice::open(&img, true).unwrap()).unwrap();
    assert_eq!(
        &vol.unlock(b"one", None, false).unwrap().volume_key[..],
        &vk[..]
    );
    // We add a key (argon2id, prefer); cryptsetup opens it.
    let params = KeyslotParams {
        kdf: KdfParams::Argon2id {
            time: 4,
            memory_kib: 32768,
            cpus: 1,
        },
        slot: Some(7),
        priority: Some(2),
    };
    assert_eq!(vol.add_key(b"one", b"two", &params).unwrap(), 7);
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            k2.to_str().unwrap(),
            p,
        ],
        None,
    );
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "-S",
            "7",
            "--key-file",
            k2.to_str().unwrap(),
            p,
        ],
        None,
    );
    assert!(common::cs_ok(&["luksDump", p], None).contains("Priority:   prefer"));
    // We change key 1 -> three; cryptsetup opens with three, not with one.
    let mut vol = Volume::open(FileDevice::open(&img, true).unwrap()).unwrap();
    assert_eq!(vol.change_key(b"one", b"three", None, None).unwrap(), 1);
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "-S",
            "1",
            "--key-file",
            k3.to_str().unwrap(),
            p,
        ],
        None,
    );
    assert!(!common::cs(
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            k1.to_str().unwrap(),
            p
        ],
        None
    )
    .status
    .success());
    // We remove slot 0 (the token's keyslot); cryptsetup no longer opens with zero.
    assert_eq!(vol.remove_key(b"zero", None).unwrap(), 0);
    assert!(!common::cs(
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            k0.to_str().unwrap(),
            p
        ],
        None
    )
    .status
    .success());
    // The token survived our writes (only its keyslot reference is gone, as cryptsetup does).
    let after = common::cs_ok(&["token", "export", "--token-id", "5", p], None);
    assert_eq!(
        after.replace(r#""keyslots":[]"#, r#""keyslots":["0"]"#),
        exported,
        "token preserved"
    );
    // cryptsetup kills a slot we created; we no longer open with it.
    common::cs_ok(
        &["luksKillSlot", p, "7", "--key-file", k3.to_str().unwrap()],
        None,
    );
    let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
    assert!(matches!(
        vol.unlock(b"two", None, false),
        Err(Error::WrongKey)
    ));
    assert_eq!(vol.unlock(b"three", None, false).unwrap().slot, 1);
}

/// Token JSON that plain serde_json would rewrite (floats such as `1.5e300`, `2.50`, `1E+2`,
/// `-0.0`, `1e400`; integers beyond 64 bits; `\u` escapes; nested objects) stays byte for byte
/// in a cryptsetup-made header across our add-key + remove-key: in the raw JSON area and as
/// `cryptsetup token export` prints it. Removing the token's keyslot changes only its
/// `keyslots` array, as cryptsetup's own luksKillSlot does.
#[test]
fn token_json_preserved_exactly() {
    need_cryptsetup!();
    const HDR: usize = 16384;
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("tok.img");
    create_file(&img, 20 * MIB);
    let p = img.to_str().unwrap();
    let k0 = tmp.path().join("k0");
    common::write_file(&k0, b"zero");
    let k1 = tmp.path().join("k1");
    common::write_file(&k1, b"one");
    let fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    let mut args = vec!["luksFormat", "--type", "luks2", "--key-file"];
    args.extend([k0.to_str().unwrap(), p]);
    args.extend(fast);
    common::cs_ok(&args, None);
    let tokens = [
        (
            "3",
            r#"{"type":"x-test","keyslots":["0"],"f":1.5e300,"big":123456789012345678901234567890,"nz":-0.0,"u":"caf\u00e9 \u2603 \ud83d\ude00 \u0001 \/ tab\t","nested":{"a":[1,2.50,{"b":1E+2,"c":[[],{}]}],"d":{"e":{"f":-1.25e-7}}},"huge":1e400,"small":5e-324,"neg":-123456789012345678901234567890}"#,
        ),
        (
            "4",
            r#"{"type":"x-other","keyslots":[],"tpm2-pcrs":[7,11],"tpm2-pin":false,"x":0.10}"#,
        ),
    ];
    for (id, json) in tokens {
        let f = tmp.path().join(format!("token{id}.json"));
        common::write_file(&f, json.as_bytes());
        let fp = f.to_str().unwrap();
        common::cs_ok(
            &["token", "import", "--token-id", id, "--json-file", fp, p],
            None,
        );
    }
    // json-c clamps integers beyond 64 bits and stores strings decoded; put the literal text
    // back into the area, as another writer could have (cryptsetup accepts it).
    let unclamped = |t: &str| {
        t.replace(
            r#""big":18446744073709551615"#,
            r#""big":123456789012345678901234567890"#,
        )
        .replace(
            r#""neg":-9223372036854775808"#,
            r#""neg":-123456789012345678901234567890"#,
        )
        .replace(r#""u":"café"#, r#""u":"caf\u00e9"#)
    };
    common::edit_json_text(&img, HDR, &[0, HDR], unclamped);
    common::cs_ok(&["luksDump", p], None);
    let export = |id: &str| common::cs_ok(&["token", "export", "--token-id", id, p], None);
    let before = [export("3"), export("4")];
    let tok3 = unclamped(&before[0]);
    assert_ne!(tok3, before[0], "the clamped values were replaced");
    assert!(tok3.contains("1.5e300") && tok3.contains("2.50") && tok3.contains(r"\u00e9"));
    let raw_text = || {
        let raw = std::fs::read(&img).unwrap();
        let primary = common::json_text(&raw, 0, HDR);
        assert_eq!(primary, common::json_text(&raw, HDR, HDR), "copies agree");
        String::from_utf8(primary).unwrap()
    };
    let area_before = raw_text();
    assert!(area_before.contains(&format!(r#""3":{tok3}"#)));
    assert!(area_before.contains(&format!(r#""4":{}"#, before[1])));

    // We add a key, cryptsetup opens with it; we remove it again.
    let mut vol = Volume::open(FileDevice::open(&img, true).unwrap()).unwrap();
    assert_eq!(vol.token_text(3).as_deref(), Some(tok3.as_str()));
    assert_eq!(vol.token_text(4).as_deref(), Some(before[1].as_str()));
    let params = KeyslotParams {
        kdf: KdfParams::Pbkdf2 {
            hash: "sha256".into(),
            iterations: 1000,
        },
        ..Default::default()
    };
    assert_eq!(vol.add_key(b"zero", b"one", &params).unwrap(), 1);
    let mut args = vec!["open", "--test-passphrase", "--key-file"];
    args.extend([k1.to_str().unwrap(), p]);
    common::cs_ok(&args, None);
    assert_eq!(vol.remove_key(b"one", None).unwrap(), 1);
    assert_eq!(
        raw_text(),
        area_before,
        "the whole JSON text is back as it was"
    );
    common::cs_ok(&["luksDump", p], None);
    assert_eq!(
        [export("3"), export("4")],
        before,
        "tokens as cryptsetup exports them"
    );

    // Removing the token's keyslot edits only its keyslots array.
    assert_eq!(vol.add_key(b"zero", b"one", &params).unwrap(), 1);
    assert_eq!(vol.remove_key(b"zero", None).unwrap(), 0);
    drop(vol);
    common::cs_ok(&["luksDump", p], None);
    common::cs_ok(&args, None);
    let unassigned = |t: &str| t.replacen(r#""keyslots":["0"]"#, r#""keyslots":[]"#, 1);
    assert_eq!(export("3"), unassigned(&before[0]));
    assert_eq!(export("4"), before[1]);
    let area = raw_text();
    assert!(area.contains(&format!(r#""3":{}"#, unassigned(&tok3))));
    assert!(area.contains(&format!(r#""4":{}"#, before[1])));
    let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
    assert_eq!(vol.token_text(3), Some(unassigned(&tok3)));

    // `strongroom luks dump --json` prints the metadata as stored, tokens exactly.
    let bin = env!("CARGO_MANIFEST_DIR").to_string() + "/../../target/debug/strongroom";
    if Path::new(&bin).exists() {
        let out = std::process::Command::new(&bin)
            .args(["luks", "dump", "--json", p])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!(r#""3":{}"#, unassigned(&tok3))),
            "dump --json rewrote the token: {text}"
        );
        assert_eq!(text.trim_end(), area.trim_end_matches('\0'));
    } else {
        eprintln!("SKIP (CLI part): {bin} not built (cargo build -p strongroom)");
    }
}

/// The CLI: format, dump, test-key, add-key, remove-key against cryptsetup.
#[test]
fn cli_end_to_end() {
    need_cryptsetup!();
    let bin = env!("CARGO_MANIFEST_DIR").to_string() + "/../../target/debug/strongroom";
    if !Path::new(&bin).exists() {
        eprintln!("SKIP: {bin} not built (cargo build -p strongroom)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kf = tmp.path().join("k");
    let nf = tmp.path().join("n");
    common::write_file(&kf, b"cli-key");
    common::write_file(&nf, b"cli-new");
    let img = tmp.path().join("cli.img");
    create_file(&img, 17 * MIB);
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .arg("luks")
            .args(args)
            .output()
            .unwrap()
    };
    let p = img.to_str().unwrap();
    // Fast PBKDF2 here: this test is about the commands (the memory-hard default is tested in
    // crates/strongroom/tests/luks_cli.rs).
    let fast = ["--pbkdf", "pbkdf2", "--iterations", "1000"];
    let mut fmt = vec!["format", "--key-file", kf.to_str().unwrap(), p];
    fmt.extend(fast);
    assert!(run(&fmt).status.success());
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            kf.to_str().unwrap(),
            p,
        ],
        None,
    );
    let d = run(&["dump", "--json", p]);
    assert!(d.status.success());
    let j: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    assert_eq!(j["segments"]["0"]["sector_size"], 4096);
    assert_eq!(
        run(&["test-key", "--key-file", kf.to_str().unwrap(), p])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&["test-key", "--key-file", nf.to_str().unwrap(), p])
            .status
            .code(),
        Some(2)
    );
    assert!(run(&[
        "add-key",
        "--key-file",
        kf.to_str().unwrap(),
        "--new-key-file",
        nf.to_str().unwrap(),
        fast[0],
        fast[1],
        fast[2],
        fast[3],
        p
    ])
    .status
    .success());
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            nf.to_str().unwrap(),
            p,
        ],
        None,
    );
    assert!(run(&["remove-key", "--key-file", kf.to_str().unwrap(), p])
        .status
        .success());
    assert_eq!(
        run(&["test-key", "--key-file", kf.to_str().unwrap(), p])
            .status
            .code(),
        Some(2)
    );
    // change-key keeps the slot and swaps the key.
    let cf = tmp.path().join("c");
    common::write_file(&cf, b"cli-changed");
    assert!(run(&[
        "change-key",
        "--key-file",
        nf.to_str().unwrap(),
        "--new-key-file",
        cf.to_str().unwrap(),
        p
    ])
    .status
    .success());
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            cf.to_str().unwrap(),
            p,
        ],
        None,
    );
    assert_eq!(
        run(&["test-key", "--key-file", nf.to_str().unwrap(), p])
            .status
            .code(),
        Some(2)
    );
    // One broken copy: dump still works and says so; repair fixes it.
    let mut raw = std::fs::read(&img).unwrap();
    raw[0x4000 + 0x1c0] ^= 1;
    std::fs::write(&img, &raw).unwrap();
    let d = run(&["dump", p]);
    assert!(d.status.success());
    let err = String::from_utf8_lossy(&d.stderr);
    assert!(
        err.contains("secondary header needs repair") && err.contains("csum"),
        "{err}"
    );
    assert!(run(&["repair", p]).status.success());
    let err = String::from_utf8_lossy(&run(&["dump", p]).stderr).into_owned();
    assert!(!err.contains("needs repair"), "{err}");
    common::cs_ok(&["luksDump", p], None);
    // A header cryptsetup rejects: both copies' checksums broken.
    let mut raw = std::fs::read(&img).unwrap();
    raw[0x1c0] ^= 1;
    raw[0x4000 + 0x1c0] ^= 1;
    std::fs::write(&img, &raw).unwrap();
    assert!(!common::cs(&["luksDump", p], None).status.success());
    assert_ne!(run(&["dump", p]).status.code(), Some(0));
}

#[test]
fn secrets_not_in_debug() {
    let p = FormatParams {
        volume_key: Some(Zeroizing::new(vec![0xAB; 64])),
        ..FormatParams::default()
    };
    assert!(!format!("{p:?}").contains("171"));
    assert!(!format!("{p:?}").to_lowercase().contains("abab"));
}

/// A raw block device (loop device over a file): format, encrypt, cryptsetup opens it.
#[test]
fn raw_block_device_via_loop() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let backing = tmp.path().join("loop.img");
    create_file(&backing, 18 * MIB);
    let out = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output();
    let loopdev = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            eprintln!("SKIP: cannot set up a loop device (needs root and loop support)");
            return;
        }
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &self.0])
                .status();
        }
    }
    let _guard = Detach(loopdev.clone());
    let dev = FileDevice::open(Path::new(&loopdev), true).unwrap();
    use strongroom_luks::BlockDevice;
    assert_eq!(dev.size().unwrap(), 18 * MIB);
    let (vol, vk) = Volume::format(dev, &FormatParams::default(), b"loop").unwrap();
    let u = vol.unlock(b"loop", None, false).unwrap();
    let data = pattern(1 << 20);
    let cd = vol
        .crypt_device(
            FileDevice::open(Path::new(&loopdev), true).unwrap(),
            &u,
            Backend::Auto,
        )
        .unwrap();
    assert_eq!(cd.size(), 2 * MIB);
    cd.write(4096, &data).unwrap();
    cd.flush().unwrap();
    let kf = tmp.path().join("k");
    common::write_file(&kf, b"loop");
    common::cs_ok(
        &[
            "open",
            "--test-passphrase",
            "--key-file",
            kf.to_str().unwrap(),
            &loopdev,
        ],
        None,
    );
    assert_eq!(
        common::cs_volume_key(Path::new(&loopdev), &kf, None),
        &vk[..]
    );
    // Read back through the backing file with the pure-Rust backend.
    let vol2 = Volume::open(FileDevice::open(&backing, false).unwrap()).unwrap();
    let cd2 = vol2
        .crypt_device(
            FileDevice::open(&backing, false).unwrap(),
            &u,
            Backend::RustCrypto,
        )
        .unwrap();
    let mut back = vec![0u8; data.len()];
    cd2.read(4096, &mut back).unwrap();
    assert!(back == data);
}

/// cryptsetup encrypts a plain data file with a detached header (offline `reencrypt --encrypt
/// --header`); we unlock the header file and decrypt the data file.
#[test]
fn cryptsetup_detached_header_we_decrypt() {
    need_cryptsetup!();
    let tmp = tempfile::tempdir().unwrap();
    let kf = tmp.path().join("key");
    common::write_file(&kf, b"det-pass");
    let data = pattern(256 * 1024);
    for sector in ["512", "4096"] {
        let d = tmp.path().join(format!("d{sector}.img"));
        let h = tmp.path().join(format!("h{sector}.img"));
        std::fs::write(&d, &data).unwrap();
        common::cs_ok(
            &[
                "reencrypt",
                "--encrypt",
                "--type",
                "luks2",
                "--header",
                h.to_str().unwrap(),
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--sector-size",
                sector,
                "--key-file",
                kf.to_str().unwrap(),
                d.to_str().unwrap(),
            ],
            None,
        );
        assert!(
            std::fs::read(&d).unwrap() != data,
            "data was encrypted in place"
        );
        let vol = Volume::open(FileDevice::open(&h, false).unwrap()).unwrap();
        let u = vol.unlock(b"det-pass", None, false).unwrap();
        assert_eq!(common::cs_volume_key(&d, &kf, Some(&h)), &u.volume_key[..]);
        assert_eq!(vol.data_segment().unwrap().offset, 0);
        let cd = vol
            .crypt_device(FileDevice::open(&d, false).unwrap(), &u, Backend::Auto)
            .unwrap();
        let mut back = vec![0u8; data.len()];
        cd.read(0, &mut back).unwrap();
        assert!(
            back == data,
            "sector {sector}: decrypting cryptsetup's detached-header data"
        );
    }
}
