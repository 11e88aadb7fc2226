//! Differential mutation fuzzer: the verdict (accept/reject) of our LUKS2 header reader, as
//! `strongroom luks dump` uses it, against `cryptsetup luksDump` on thousands of mutants of real
//! cryptsetup-made headers (see `luks_mutate`). Ours runs in-process; every
//! [`CLI_EVERY`]th mutant also goes through the real `strongroom luks dump` binary.
//!
//! - `LUKS_FUZZ_SEED=<n|0xhex>`: the seed (default [`DEFAULT_SEED`], printed).
//! - `LUKS_FUZZ_MUTANTS=<n>`: how many mutants (default [`DEFAULT_MUTANTS`]).
//! - A differing mutant is written to `$CARGO_TARGET_TMPDIR/luks-differential/` (image and
//!   description); `LUKS_FUZZ_REPLAY=<image>` compares the two verdicts on that file only.
//!
//! `cargo test -p strongroom --test luks_differential -- --nocapture`

mod luks_mutate;

use luks_mutate::{Base, Mutant};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;
use strongroom_luks::{FileDevice, Volume};

const DEFAULT_SEED: u64 = 0x15_2b5e_ed00;
const DEFAULT_MUTANTS: u64 = 4000;
const CLI_EVERY: u64 = 10;
const WORKERS: u64 = 2;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

fn require_cryptsetup() {
    let ok = Command::new("cryptsetup")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "cryptsetup is required (apt-get install cryptsetup-bin; scripts/test.sh installs it)"
    );
}

fn cs(args: &[&str], dir: &Path) {
    let o = Command::new("cryptsetup")
        .arg("-q")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run cryptsetup");
    assert!(
        o.status.success(),
        "cryptsetup {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn cs_stdin(args: &[&str], dir: &Path, input: &[u8]) {
    use std::io::Write;
    let mut child = Command::new("cryptsetup")
        .arg("-q")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cryptsetup");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "cryptsetup {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn sized_file(dir: &Path, name: &str, len: u64) -> String {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    f.set_len(len).unwrap();
    name.to_string()
}

const PBKDF2: &[&str] = &["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
const ARGON2ID: &[&str] = &[
    "--pbkdf",
    "argon2id",
    "--pbkdf-force-iterations",
    "4",
    "--pbkdf-memory",
    "32",
    "--pbkdf-parallel",
    "1",
];

fn format(dir: &Path, file: &str, kdf: &[&str], extra: &[&str]) {
    let mut a = vec!["luksFormat", "--type", "luks2", "--key-file", "k1"];
    a.extend_from_slice(kdf);
    a.extend_from_slice(extra);
    a.push(file);
    cs(&a, dir);
}

/// The headers mutants start from, made by cryptsetup in `dir`.
fn make_bases(dir: &Path) -> Vec<Base> {
    std::fs::write(dir.join("k1"), b"first passphrase").unwrap();
    std::fs::write(dir.join("k2"), b"second passphrase").unwrap();
    let mut out = Vec::new();
    let mut add = |name: &str, file: &str| {
        out.push(Base::new(name, std::fs::read(dir.join(file)).unwrap()));
    };

    let f = sized_file(dir, "pbkdf2.img", 4 << 20);
    format(
        dir,
        &f,
        PBKDF2,
        &["--sector-size", "512", "--offset", "4096"],
    );
    add("pbkdf2, 512-byte sectors", &f);

    let f = sized_file(dir, "multi.img", 6 << 20);
    format(dir, &f, ARGON2ID, &["--offset", "8192"]);
    let mut a = vec!["luksAddKey", "--key-file", "k1", "--key-slot", "1"];
    a.extend_from_slice(PBKDF2);
    a.extend_from_slice(&[&f, "k2"]);
    cs(&a, dir);
    cs(
        &[
            "luksAddKey",
            "--key-file",
            "k1",
            "--key-slot",
            "5",
            "--pbkdf",
            "argon2i",
            "--pbkdf-force-iterations",
            "4",
            "--pbkdf-memory",
            "64",
            "--pbkdf-parallel",
            "2",
            &f,
            "k2",
        ],
        dir,
    );
    cs_stdin(
        &["token", "import", "--token-id", "3", &f],
        dir,
        br#"{"type":"x-test","keyslots":["0"],"f":1.5,"nested":{"a":[1,{"b":null}]}}"#,
    );
    cs(
        &[
            "token",
            "add",
            "--key-description",
            "cs:test",
            "--key-slot",
            "1",
            &f,
        ],
        dir,
    );
    add("argon2id+pbkdf2+argon2i slots 0/1/5, tokens 0/3", &f);

    let f = sized_file(dir, "meta64k.img", 4 << 20);
    format(
        dir,
        &f,
        PBKDF2,
        &[
            "--hash",
            "sha512",
            "--sector-size",
            "4096",
            "--luks2-metadata-size",
            "64k",
            "--luks2-keyslots-size",
            "1m",
            "--offset",
            "4096",
            "--label",
            "lbl",
            "--subsystem",
            "sub",
        ],
    );
    add("64 KiB metadata, sha512, label", &f);

    sized_file(dir, "detached-data.img", 1 << 20);
    format(
        dir,
        "detached-data.img",
        PBKDF2,
        &[
            "--header",
            "detached-hdr.img",
            "--luks2-keyslots-size",
            "1m",
        ],
    );
    add("detached header (segment offset 0)", "detached-hdr.img");

    let f = sized_file(dir, "reenc.img", 4 << 20);
    format(dir, &f, PBKDF2, &["--offset", "4096"]);
    let mut a = vec!["reencrypt", "--init-only", "--key-file", "k1"];
    a.extend_from_slice(PBKDF2);
    a.push(&f);
    cs(&a, dir);
    add("reencryption initialised (online-reencrypt-v2)", &f);

    let f = sized_file(dir, "unbound.img", 4 << 20);
    format(
        dir,
        &f,
        PBKDF2,
        &["--luks2-metadata-size", "32k", "--offset", "4096"],
    );
    let mut a = vec![
        "luksAddKey",
        "--unbound",
        "--key-size",
        "256",
        "--key-slot",
        "7",
        "--key-file",
        "k1",
    ];
    a.extend_from_slice(PBKDF2);
    a.extend_from_slice(&[&f, "k2"]);
    cs(&a, dir);
    add("32 KiB metadata, unbound keyslot 7", &f);

    let f = sized_file(dir, "luks1.img", 4 << 20);
    cs(
        &[
            "luksFormat",
            "--type",
            "luks1",
            "--pbkdf-force-iterations",
            "1000",
            "--hash",
            "sha1",
            "--key-file",
            "k1",
            &f,
        ],
        dir,
    );
    cs(&["convert", "--type", "luks2", &f], dir);
    add("converted from LUKS1 (sha1)", &f);
    out
}

/// Our verdict, in-process, exactly as `strongroom luks dump` opens a header.
fn ours(path: &Path) -> Result<(), String> {
    let dev = FileDevice::open(path, false).map_err(|e| e.to_string())?;
    Volume::open(dev).map(|_| ()).map_err(|e| e.to_string())
}

fn cryptsetup(path: &Path) -> (bool, String) {
    let o = Command::new("cryptsetup")
        .args(["luksDump", "--disable-locks"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run cryptsetup");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

/// The real CLI: exit status 0 = accepted.
fn cli(path: &Path) -> bool {
    Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["luks", "dump"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run strongroom")
        .success()
}

#[derive(Default)]
struct Report {
    done: u64,
    cs_accepted: u64,
    ours_accepted: u64,
    cli_checked: u64,
    differences: Vec<String>,
}

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("luks-differential");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Write the mutant as a file of its own, for reproduction.
fn save(base: &Base, m: &Mutant, name: &str, text: &str) -> PathBuf {
    let dir = out_dir();
    let img = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&img).unwrap();
    f.write_all_at(&base.content, 0).unwrap();
    f.write_all_at(&m.image, 0).unwrap();
    f.set_len(m.file_len).unwrap();
    std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
    img
}

fn apply(f: &std::fs::File, base: &Base, m: &Mutant) {
    f.write_all_at(&m.image, 0).unwrap();
    if m.file_len != base.content.len() as u64 {
        f.set_len(m.file_len).unwrap();
    }
}

fn restore(f: &std::fs::File, base: &Base, m: &Mutant) {
    if m.file_len != base.content.len() as u64 {
        f.set_len(base.content.len() as u64).unwrap();
        f.write_all_at(&base.content, 0).unwrap();
    } else {
        f.write_all_at(&base.content[..m.image.len()], 0).unwrap();
    }
}

fn worker(w: u64, bases: &[Base], dir: &Path, seed: u64, count: u64, report: &Mutex<Report>) {
    let files: Vec<(PathBuf, std::fs::File)> = bases
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let p = dir.join(format!("work-{w}-{i}.img"));
            std::fs::write(&p, &b.content).unwrap();
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap();
            (p, f)
        })
        .collect();
    let mut idx = w;
    while idx < count {
        let bi = (idx as usize) % bases.len();
        let base = &bases[bi];
        let (path, file) = &files[bi];
        let m = luks_mutate::make(base, seed, idx);
        apply(file, base, &m);
        let mine = ours(path);
        let (theirs, cs_msg) = cryptsetup(path);
        let cli_verdict = idx.is_multiple_of(CLI_EVERY).then(|| cli(path));
        let mut diff = None;
        if mine.is_ok() != theirs || cli_verdict.is_some_and(|c| c != mine.is_ok()) {
            let text = format!(
                "seed {seed:#x} mutant {idx} of base {:?}\nmutations: {}\nours: {}\ncli: {}\ncryptsetup: {}\n",
                base.name,
                m.desc.join(" | "),
                match &mine {
                    Ok(()) => "accepted".to_string(),
                    Err(e) => format!("rejected: {e}"),
                },
                match cli_verdict {
                    None => "-",
                    Some(true) => "accepted",
                    Some(false) => "rejected",
                },
                if theirs { "accepted".to_string() } else { format!("rejected: {cs_msg}") },
            );
            let img = save(base, &m, &format!("seed-{seed:x}-{idx}"), &text);
            diff = Some(format!("{text}image: {}\n", img.display()));
        }
        restore(file, base, &m);
        let mut r = report.lock().unwrap();
        r.done += 1;
        r.cs_accepted += u64::from(theirs);
        r.ours_accepted += u64::from(mine.is_ok());
        r.cli_checked += u64::from(cli_verdict.is_some());
        r.differences.extend(diff);
        drop(r);
        idx += WORKERS;
    }
}

/// One base image (PBKDF2, 16 KiB metadata) in `dir`, and a work file holding it.
fn single_base(dir: &Path) -> (Base, PathBuf, std::fs::File) {
    std::fs::write(dir.join("k1"), b"first passphrase").unwrap();
    let f = sized_file(dir, "one.img", 4 << 20);
    format(dir, &f, PBKDF2, &["--offset", "4096"]);
    let base = Base::new("pbkdf2", std::fs::read(dir.join(&f)).unwrap());
    let path = dir.join("work.img");
    std::fs::write(&path, &base.content).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    (base, path, file)
}

/// cryptsetup's verdict on `m`, and a description if ours differs.
fn compare(base: &Base, path: &Path, file: &std::fs::File, m: &Mutant) -> (bool, Option<String>) {
    apply(file, base, m);
    let mine = ours(path);
    let (theirs, msg) = cryptsetup(path);
    restore(file, base, m);
    let diff = (mine.is_ok() != theirs).then(|| {
        format!(
            "{}: ours {:?}, cryptsetup accepted={theirs} {msg}",
            m.desc.join(" | "),
            mine.err()
        )
    });
    (theirs, diff)
}

/// Run the table: no differences, and both verdicts among cryptsetup's.
fn check_table(base: &Base, path: &Path, file: &std::fs::File, cases: &[Mutant]) {
    let results: Vec<(bool, Option<String>)> =
        cases.iter().map(|m| compare(base, path, file, m)).collect();
    let accepted = results.iter().filter(|r| r.0).count();
    let diffs: Vec<&String> = results.iter().filter_map(|r| r.1.as_ref()).collect();
    eprintln!("{} cases, cryptsetup accepted {accepted}", cases.len());
    assert!(diffs.is_empty(), "{} differences:\n{diffs:#?}", diffs.len());
    assert!(
        accepted > 0 && accepted < cases.len(),
        "a table of one verdict"
    );
}

/// JSON texts json-c reads in its own way, edited into a real header: same verdicts.
#[test]
fn json_c_dialect_matches_cryptsetup() {
    require_cryptsetup();
    let tmp = tempfile::tempdir().unwrap();
    let (base, path, file) = single_base(tmp.path());
    let t = String::from_utf8(base.text.clone()).unwrap();
    let close = t.len() - 1;
    let with = |extra: &str| format!("{},{extra}}}", &t[..close]);
    let deep = |n: usize, leaf: &str| format!("\"x\":{}{leaf}{}", "[".repeat(n), "]".repeat(n));
    let mut cases: Vec<Vec<u8>> = vec![t.clone().into_bytes()];
    for extra in [
        "\"x\":1e400",
        "\"x\":-iNfInItY",
        "\"x\":nan",
        "\"x\":NULL",
        "\"x\":tRUE",
        "\"x\":012",
        "\"x\":1.",
        "\"x\":1e",
        "\"x\":1e+",
        "\"x\":-",
        "\"x\":1.-5",
        "\"x\":+1",
        "\"x\":0x1",
        "\"x\":.5",
        "\"x\":-.5",
        "\"x\":1I",
        "'x':'y\"z'",
        "\"x\":'it\\'s'",
        "\"x\":\"\\ud800\\u0041\"",
        "\"x\":\"\\ud800\\n\"",
        "\"x\":\"\\ud800\"",
        "\"x\":\"\\udc00\"",
        "\"x\":\"\\u00e9\\/\"",
        "\"x\":\"\\x\"",
        "\"x\":[1,]",
        "\"x\":[,1]",
        "\"x\":{\"a\":1,}",
        "\"x\"/*c*/:/*c*/1/*c*/",
        "\"x\"://c\n1",
        "\"x\":1/* a **/",
        "\"x\":1/x",
        "\"x\":nullx",
        "\"tokens\":{\"0\":{\"type\":\"a\",\"keyslots\":[],\"type\":\"\"}}",
        "\"keyslots\\u0000junk\":{}",
        "\"\\u006beyslots\":{}",
    ] {
        cases.push(with(extra).into_bytes());
    }
    for (n, leaf) in [
        (27, "1"),
        (28, "1"),
        (29, "1"),
        (28, ""),
        (29, ""),
        (30, ""),
    ] {
        cases.push(with(&deep(n, leaf)).into_bytes());
    }
    for tail in ["//c", "/* c *", "/*", "/", " \n\t", "//c\n", "x"] {
        cases.push(format!("{t}{tail}").into_bytes());
    }
    // A comment that runs into the NUL right after an inner object: json-c returns that
    // object, which then has to pass as the whole metadata.
    cases.push(format!("{{\"x\":{t}/*").into_bytes());
    cases.push(format!("{{\"x\":{t}//").into_bytes());
    cases.push(format!("{{\"x\":{t} /*").into_bytes());
    cases.push(format!("{{\"x\":{t},\"y\":1}}").into_bytes());
    let mut raw = with("\"x\":\"a\u{1}\t\u{7f}b\"").into_bytes();
    cases.push(raw.clone());
    let at = raw.len() - 4;
    raw[at] = 0xff;
    cases.push(raw.clone());
    raw[at] = 0;
    cases.push(raw);
    let cases: Vec<Mutant> = cases
        .iter()
        .map(|c| luks_mutate::with_text(&base, c, None))
        .collect();
    check_table(&base, &path, &file, &cases);
}

/// The classes issue 15 names and those the fuzzer found, one case each, with cryptsetup's
/// verdict written down (so a change of the reference shows here first).
#[test]
fn known_classes_match_cryptsetup() {
    require_cryptsetup();
    let tmp = tempfile::tempdir().unwrap();
    let (base, path, file) = single_base(tmp.path());
    let t = String::from_utf8(base.text.clone()).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(t.contains(from), "{from}");
        t.replacen(from, to, 1)
    };
    let kdf = r#""kdf":{"type":"pbkdf2","hash":"sha256""#;
    let reenc_req =
        r#""keyslots_size":"2064384","requirements":{"mandatory":["online-reencrypt-v2"]}"#;
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "empty kdf hash",
            edit(kdf, r#""kdf":{"type":"pbkdf2","hash":"""#),
            false,
        ),
        (
            "online-reencrypt-v2 without its keyslot",
            edit(r#""keyslots_size":"2064384""#, reenc_req),
            false,
        ),
        (
            "token id 32",
            edit(
                r#""tokens":{}"#,
                r#""tokens":{"32":{"type":"x","keyslots":[]}}"#,
            ),
            true,
        ),
        (
            "token id 4294967296",
            edit(
                r#""tokens":{}"#,
                r#""tokens":{"4294967296":{"type":"x","keyslots":["0"]}}"#,
            ),
            true,
        ),
        (
            "extra kdf field",
            edit(kdf, &format!(r#"{kdf},"x-extra":[1]"#)),
            true,
        ),
        (
            "leftover argon2 field in pbkdf2",
            edit(kdf, &format!(r#"{kdf},"memory":1024"#)),
            true,
        ),
        (
            "unknown requirement",
            edit(
                r#""keyslots_size":"2064384""#,
                r#""keyslots_size":"2064384","requirements":{"mandatory":["x-new"]}"#,
            ),
            true,
        ),
        (
            "two reencrypt flags",
            edit(
                r#""keyslots_size":"2064384""#,
                r#""keyslots_size":"2064384","requirements":{"mandatory":["online-reencrypt-v2","online-reencrypt-v3"]}"#,
            ),
            false,
        ),
        (
            "empty token type",
            edit(
                r#""tokens":{}"#,
                r#""tokens":{"0":{"type":"","keyslots":[]}}"#,
            ),
            false,
        ),
        (
            "keyslot id 007",
            edit(r#""keyslots":{"0":"#, r#""keyslots":{"007":"#),
            false,
        ),
        (
            "empty segment id",
            edit(r#""segments":{"0":"#, r#""segments":{"":"#),
            false,
        ),
        (
            "json_size with a plus sign",
            edit(r#""json_size":"12288""#, r#""json_size":"+12288""#),
            true,
        ),
        (
            "iterations -1",
            edit(r#""iterations":1000,"salt""#, r#""iterations":-1,"salt""#),
            true,
        ),
        (
            "iterations 1.0",
            edit(r#""iterations":1000,"salt""#, r#""iterations":1.0,"salt""#),
            false,
        ),
    ];
    let mut mutants: Vec<Mutant> = Vec::new();
    for (name, text, expect) in &cases {
        let mut m = luks_mutate::with_text(&base, text.as_bytes(), None);
        m.desc = vec![name.to_string()];
        let (theirs, diff) = compare(&base, &path, &file, &m);
        assert_eq!(theirs, *expect, "{name}: cryptsetup's verdict changed");
        assert!(diff.is_none(), "{}", diff.unwrap_or_default());
        mutants.push(m);
    }
    // Binary-header and device classes; `need` is what the metadata says the device holds.
    let hs = base.hdr_size;
    let need = 2 * hs as u64 + base.geo.keyslots_size;
    type Edit = fn(&mut Mutant, usize, u64);
    let binary: [(&str, Edit, bool); 8] = [
        (
            "primary version 0 (secondary intact)",
            |m, _, _| m.image[7] = 0,
            true,
        ),
        (
            "primary version 3 (secondary intact)",
            |m, _, _| m.image[7] = 3,
            false,
        ),
        (
            "garbage after the digest in the csum field",
            |m, hs, _| m.image[hs + 448 + 40] = 1,
            true,
        ),
        (
            "device shorter than metadata + keyslots area",
            |m, _, need| m.file_len = need - 512,
            false,
        ),
        (
            "device exactly metadata + keyslots area",
            |m, _, need| m.file_len = need,
            true,
        ),
        // blkid's LVM2 label (right CRC, its own sector): looked for only when one copy would
        // be recovered from the other.
        (
            "LVM2 label, both copies with the same seqid (checksums valid)",
            |m, _, _| luks_mutate::lvm2_label(&mut m.image[512..1024], true),
            true,
        ),
        (
            "LVM2 label, the secondary stale (checksums valid)",
            |m, _, _| {
                luks_mutate::lvm2_label(&mut m.image[512..1024], true);
                m.image[23] += 1;
            },
            false,
        ),
        // The primary's checksum is recomputed below: its JSON area then runs into the
        // secondary, and the secondary is looked for at 0x5000 only.
        (
            "primary hdr_size 0x5000, its checksum valid",
            |m, _, _| m.image[14] = 0x50,
            false,
        ),
    ];
    for (name, f, expect) in binary {
        let mut m = luks_mutate::with_text(&base, &base.text, None);
        f(&mut m, hs, need);
        if name.contains("checksum valid") || name.contains("checksums valid") {
            luks_mutate::refresh_checksums(&base, &mut m);
        }
        m.desc = vec![name.to_string()];
        let (theirs, diff) = compare(&base, &path, &file, &m);
        assert_eq!(theirs, expect, "{name}: cryptsetup's verdict changed");
        assert!(diff.is_none(), "{}", diff.unwrap_or_default());
    }
}

/// Header checksum algorithms by every name the reference accepts (and some it does not).
#[test]
fn checksum_algorithms_match_cryptsetup() {
    require_cryptsetup();
    let tmp = tempfile::tempdir().unwrap();
    let (base, path, file) = single_base(tmp.path());
    let names = [
        "sha1",
        "SHA-1",
        "ssl3-sha1",
        "1.3.14.3.2.26",
        "sha224",
        "SHA2-224",
        "sha256",
        "Sha-256",
        "2.16.840.1.101.3.4.2.1",
        "sha384",
        "sha512",
        "SHA2-512/256",
        "sha512-224",
        "sha3-224",
        "sha3-256",
        "SHA3-384",
        "sha3-512",
        "shake128",
        "SHAKE-256",
        "md5",
        "SSL3-MD5",
        "md5-sha1",
        "ripemd160",
        "rmd160",
        "RIPEMD",
        "blake2b512",
        "blake2b-512",
        "BLAKE2s-256",
        "sm3",
        "whirlpool",
        "md4",
        "sha256 ",
        "",
        "null",
        "keccak-kmac-128",
        "rsa-sha256",
    ];
    let cases: Vec<Mutant> = names
        .iter()
        .map(|n| {
            let mut m = luks_mutate::with_text(&base, &base.text, Some(n));
            m.desc = vec![format!("csum_alg {n:?}")];
            m
        })
        .collect();
    check_table(&base, &path, &file, &cases);
}

fn replay(img: &Path) {
    let mine = ours(img);
    let (theirs, msg) = cryptsetup(img);
    let cli_ok = cli(img);
    eprintln!("ours: {mine:?}\ncli accepted: {cli_ok}\ncryptsetup accepted: {theirs} {msg}");
    assert_eq!(mine.is_ok(), theirs, "verdicts differ on {}", img.display());
    assert_eq!(cli_ok, theirs, "CLI verdict differs on {}", img.display());
}

#[test]
fn luks2_verdicts_match_cryptsetup_on_mutants() {
    require_cryptsetup();
    if let Ok(p) = std::env::var("LUKS_FUZZ_REPLAY") {
        replay(Path::new(&p));
        return;
    }
    let seed = env_u64("LUKS_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_u64("LUKS_FUZZ_MUTANTS").unwrap_or(DEFAULT_MUTANTS);
    eprintln!(
        "luks_differential: seed {seed:#x} (LUKS_FUZZ_SEED), {count} mutants (LUKS_FUZZ_MUTANTS)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let bases = make_bases(tmp.path());
    let made = t0.elapsed();
    let report = Mutex::new(Report::default());
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (bases, report, dir) = (&bases, &report, tmp.path());
            s.spawn(move || worker(w, bases, dir, seed, count, report));
        }
    });
    let r = report.into_inner().unwrap();
    eprintln!(
        "luks_differential: {} mutants of {} bases in {:.1?} (bases {:.1?}); cryptsetup accepted {}, \
         we accepted {}; {} also through the CLI; {} differences",
        r.done,
        bases.len(),
        t0.elapsed(),
        made,
        r.cs_accepted,
        r.ours_accepted,
        r.cli_checked,
        r.differences.len()
    );
    for d in r.differences.iter().take(60) {
        eprintln!("---\n{d}");
    }
    assert!(
        r.differences.is_empty(),
        "{} of {} mutants got a verdict other than cryptsetup's (seed {seed:#x}); \
         replay one with LUKS_FUZZ_REPLAY=<image>",
        r.differences.len(),
        r.done
    );
    // A fuzzer whose mutants are all accepted or all rejected tests little.
    let share = r.cs_accepted * 100 / r.done.max(1);
    assert!(
        (15..=85).contains(&share),
        "cryptsetup accepted {share}% of the mutants: the mutation mix is degenerate"
    );
}
