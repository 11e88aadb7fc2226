//! The 85 validation images of ../shared/luks2-images/validation (cryptsetup's generators):
//! each must give cryptsetup's verdict (expect.tsv); repairable ones are repaired and then
//! accepted by cryptsetup; token removal must rewrite non-compact JSON cleanly.

mod common;

use strongroom_luks::header::CopyState;
use strongroom_luks::{Error, FileDevice, Volume};

#[test]
fn validation_images_match_cryptsetup_verdicts() {
    let shared = need_shared!();
    let dir = shared.join("luks2-images/validation");
    let expect = std::fs::read_to_string(dir.join("expect.tsv")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cs = common::have_cryptsetup();
    if !cs {
        eprintln!("note: cryptsetup absent, skipping the post-repair cryptsetup checks");
    }
    let mut n = 0;
    let mut failures = Vec::new();
    for line in expect.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, verdict) = (cols[0], cols[1]);
        let img = common::unxz(&dir.join(name), tmp.path());
        n += 1;
        let res = Volume::open(FileDevice::open(&img, true).unwrap());
        match (verdict, res) {
            ("REJECT", Ok(_)) => failures.push(format!("{name}: accepted, cryptsetup rejects")),
            ("REJECT", Err(e)) => {
                let msg = e.to_string();
                eprintln!("{name}: rejected: {msg}");
                if let Error::NoValidHeader { primary, .. } = &e {
                    let p = primary.to_string();
                    assert!(
                        p.contains("primary header"),
                        "{name}: error must name the copy: {p}"
                    );
                }
            }
            (_, Err(e)) => failures.push(format!("{name}: rejected ({e}), cryptsetup loads it")),
            ("LOAD", Ok(mut vol)) => {
                let r = vol.report();
                eprintln!(
                    "{name}: loaded from the {}; repair: {:?}; in-memory: {:?}",
                    r.used, r.needs_repair, r.repaired_in_memory
                );
                if vol.read_only_reason().is_none() && r.needs_repair.is_some() {
                    vol.repair().unwrap();
                    drop(vol);
                    let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
                    let r = vol.report();
                    assert!(
                        matches!(
                            (&r.primary, &r.secondary),
                            (CopyState::Valid { .. }, CopyState::Valid { .. })
                        ),
                        "{name}: both copies valid after repair"
                    );
                    assert!(r.needs_repair.is_none());
                    if cs {
                        common::cs_ok(&["luksDump", img.to_str().unwrap()], None);
                    }
                }
            }
            ("LOAD+TOKEN-REMOVE", Ok(mut vol)) => {
                vol.remove_token(0).unwrap();
                drop(vol);
                let vol = Volume::open(FileDevice::open(&img, false).unwrap()).unwrap();
                assert!(vol.token(0).is_none());
                assert!(vol.report().needs_repair.is_none());
                if cs {
                    let out = common::cs_ok(&["luksDump", img.to_str().unwrap()], None);
                    let tokens = out
                        .split("Tokens:")
                        .nth(1)
                        .and_then(|t| t.split("Digests:").next())
                        .unwrap_or("");
                    assert!(
                        !tokens.contains("  0: "),
                        "{name}: token 0 still listed by cryptsetup"
                    );
                }
            }
            (v, _) => panic!("unknown verdict {v}"),
        }
        std::fs::remove_file(&img).unwrap();
    }
    assert_eq!(n, 85, "expect.tsv lists 85 images");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Unknown segment types survive a header rewrite byte for byte (the whole JSON text does),
/// also with values plain serde_json would rewrite (floats, integers beyond 64 bits, `-0.0`,
/// `\u` escapes, nested objects) added to the unknown segment.
#[test]
fn unknown_segments_preserved_byte_for_byte() {
    let shared = need_shared!();
    let dir = shared.join("luks2-images/validation");
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "luks2-segment-unknown-type.img.xz",
        "luks2-segment-two.img.xz",
    ] {
        let img = common::unxz(&dir.join(name), tmp.path());
        if name.contains("unknown-type") {
            // The secondary copy is the one the image breaks; edit the primary only.
            common::edit_json_text(&img, 16384, &[0], |t| {
                let extra = r#""a_field":0,"f":1.5e300,"big":123456789012345678901234567890,"nz":-0.0,"s":"caf\u00e9","nested":{"a":[2.50,1E+2,{"b":[]}]}"#;
                assert!(t.contains(r#""a_field":0"#));
                t.replace(r#""a_field":0"#, extra)
            });
        }
        let before = common::json_text(&std::fs::read(&img).unwrap(), 0, 16384);
        let mut vol = Volume::open(FileDevice::open(&img, true).unwrap()).unwrap();
        assert!(
            vol.repair().unwrap().is_some(),
            "{name}: secondary was killed"
        );
        let raw = std::fs::read(&img).unwrap();
        assert_eq!(
            common::json_text(&raw, 0, 16384),
            before,
            "{name}: primary JSON text unchanged"
        );
        assert_eq!(
            common::json_text(&raw, 16384, 16384),
            before,
            "{name}: secondary JSON text = primary"
        );
        if common::have_cryptsetup() {
            common::cs_ok(&["luksDump", img.to_str().unwrap()], None);
        }
    }
}
