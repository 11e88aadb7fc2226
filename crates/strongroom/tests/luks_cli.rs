//! `strongroom luks` for human passphrases: the default keyslot is Argon2id with cryptsetup's
//! default costs and cryptsetup opens it; `--pbkdf` and the cost flags choose PBKDF2 or
//! Argon2i; keys come from files or stdin, at most 8 MiB.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn strongroom(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .arg("luks")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strongroom");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        // The child may stop reading early (a key that is too large).
        let _ = input.write_all(data);
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn cryptsetup(args: &[&str]) -> Output {
    Command::new("cryptsetup")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cryptsetup is required (apt-get install cryptsetup-bin)")
}

fn image(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    p.to_str().unwrap().to_string()
}

fn keyslot(img: &str, slot: &str) -> serde_json::Value {
    let out = strongroom(&["dump", "--json", img], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["keyslots"][slot].clone()
}

fn half_ram_kib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = info.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 2
}

#[test]
fn default_format_is_argon2id_and_cryptsetup_opens_it() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "default.img");
    let key = tmp.path().join("key");
    std::fs::write(&key, b"correct horse battery staple").unwrap();
    let key = key.to_str().unwrap();
    let out = strongroom(
        &["format", "--key-file", "-", &img],
        Some(b"correct horse battery staple"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let kdf = keyslot(&img, "0")["kdf"].clone();
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(kdf["type"], "argon2id", "{kdf}");
    assert_eq!(kdf["time"], 4);
    assert_eq!(kdf["memory"], 1_048_576u64.min(half_ram_kib()));
    assert_eq!(kdf["cpus"], 4u64.min(cpus));

    let ok = cryptsetup(&["open", "--test-passphrase", "--key-file", key, &img]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let dump = String::from_utf8_lossy(&cryptsetup(&["luksDump", &img]).stdout).into_owned();
    assert!(dump.contains("PBKDF:      argon2id"), "{dump}");
    let wrong = strongroom(
        &["test-key", "--key-file", "-", &img],
        Some(b"Correct horse"),
    );
    assert_eq!(wrong.status.code(), Some(2));
}

#[test]
fn kdf_flags_choose_pbkdf2_and_argon2i() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "flags.img");
    let (k1, k2) = (tmp.path().join("k1"), tmp.path().join("k2"));
    std::fs::write(&k1, b"first").unwrap();
    std::fs::write(&k2, b"second").unwrap();
    let (k1, k2) = (k1.to_str().unwrap(), k2.to_str().unwrap());
    let fmt = [
        "format",
        "--key-file",
        k1,
        "--pbkdf",
        "pbkdf2",
        "--hash",
        "sha512",
        "--iterations",
        "2000",
        &img,
    ];
    let out = strongroom(&fmt, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kdf = keyslot(&img, "0")["kdf"].clone();
    assert_eq!(
        (
            kdf["type"].as_str(),
            kdf["hash"].as_str(),
            kdf["iterations"].as_u64()
        ),
        (Some("pbkdf2"), Some("sha512"), Some(2000))
    );
    let add = [
        "add-key",
        "--key-file",
        k1,
        "--new-key-file",
        k2,
        "--pbkdf",
        "argon2i",
        "--iterations",
        "3",
        "--pbkdf-memory",
        "65536",
        "--pbkdf-parallel",
        "1",
        &img,
    ];
    let out = strongroom(&add, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kdf = keyslot(&img, "1")["kdf"].clone();
    assert_eq!(kdf["type"], "argon2i");
    assert_eq!(
        (
            kdf["time"].as_u64(),
            kdf["memory"].as_u64(),
            kdf["cpus"].as_u64()
        ),
        (Some(3), Some(65536), Some(1))
    );
    for (key, slot) in [(k1, "0"), (k2, "1")] {
        let ok = cryptsetup(&[
            "open",
            "--test-passphrase",
            "--key-file",
            key,
            "--key-slot",
            slot,
            &img,
        ]);
        assert!(
            ok.status.success(),
            "slot {slot}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
    let bad = strongroom(
        &[
            "format",
            "--key-file",
            k1,
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "16",
            &img,
        ],
        None,
    );
    assert_eq!(
        bad.status.code(),
        Some(1),
        "argon2 memory below 32 KiB is refused"
    );
}

#[test]
fn keys_from_stdin_and_files_up_to_8_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "keys.img");
    let fast = ["--pbkdf", "pbkdf2", "--iterations", "1000"];
    let mut fmt = vec!["format", "--key-file", "-", &img];
    fmt.extend(fast);
    let key = b"line one\nline two\n\0binary\xff tail";
    let out = strongroom(&fmt, Some(key));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The whole stdin is the key, newlines and NULs included: the same bytes from a file open
    // it, and cryptsetup agrees.
    let kf = tmp.path().join("key");
    std::fs::write(&kf, key).unwrap();
    let kf = kf.to_str().unwrap();
    assert_eq!(
        strongroom(&["test-key", "--key-file", kf, &img], None)
            .status
            .code(),
        Some(0)
    );
    assert!(
        cryptsetup(&["open", "--test-passphrase", "--key-file", kf, &img])
            .status
            .success()
    );
    assert_eq!(
        strongroom(
            &["test-key", "--key-file", "-", &img],
            Some(&key[..key.len() - 1])
        )
        .status
        .code(),
        Some(2)
    );
    // Larger than 8 MiB: refused with a clear error, from a file and from stdin.
    let big = vec![b'k'; (8 << 20) + 1];
    let bf = tmp.path().join("big");
    std::fs::write(&bf, &big).unwrap();
    for (file, input) in [(bf.to_str().unwrap(), None), ("-", Some(&big[..]))] {
        let out = strongroom(&["test-key", "--key-file", file, &img], input);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("larger than 8 MiB"), "{file}: {err}");
    }
    // Exactly 8 MiB is fine (a wrong key here).
    let out = strongroom(&["test-key", "--key-file", "-", &img], Some(&big[1..]));
    assert_eq!(out.status.code(), Some(2));
}

/// `luks benchmark --json`: both directions measured per CPU-second, the cost per GB its
/// inverse; bad arguments are refused with a clear message.
#[test]
fn benchmark_reports_the_cipher_cost_per_gb() {
    let o = strongroom(&["benchmark", "--json", "--seconds", "0.2"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["cipher"], "aes-xts-plain64");
    assert_eq!(j["key_bits"], 512);
    assert_eq!(j["sector_size"], 4096);
    assert!(
        ["vaes", "awslc", "rustcrypto"].contains(&j["backend"].as_str().unwrap()),
        "{j}"
    );
    for dir in ["encrypt", "decrypt"] {
        let rate = j[format!("{dir}_gb_per_cpu_s")].as_f64().unwrap();
        let cost = j[format!("{dir}_cpu_s_per_gb")].as_f64().unwrap();
        // Any AES-XTS implementation does between 50 MB and 100 GB per CPU-second.
        assert!(rate > 0.05 && rate < 100.0, "{dir}: {rate} GB/CPU-s");
        assert!((rate * cost - 1.0).abs() < 0.05, "{dir}: {rate} x {cost}");
    }
    for bad in [["--key-size", "384"], ["--seconds", "0"]] {
        let o = strongroom(&["benchmark", bad[0], bad[1]], None);
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
}
