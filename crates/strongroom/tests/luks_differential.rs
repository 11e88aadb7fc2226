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
