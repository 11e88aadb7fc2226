//! `strongroom luks ...` — LUKS2 volumes on files and block devices (issue 4).
//!
//! Secrets only come from files (`--key-file FILE`, `-` = stdin; `--new-key-file` for the key
//! being added), never from argv or the environment, and are read into zeroizing memory that
//! is never reallocated behind our back (see [`read_secret`]). Keys given here are passphrases
//! a person chose: new keyslots use Argon2id with cryptsetup's default costs unless told
//! otherwise (the volume manager formats with its own fast parameters for random secrets).
//! Exit codes: 0 success, 1 error (including a header cryptsetup would reject), 2 wrong key /
//! no keyslot opened.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use strongroom_luks::error::Error as LuksError;
use strongroom_luks::format::{FormatParams, KdfParams, KeyslotParams};
use strongroom_luks::header::{CopyState, Header, LoadOptions, LoadReport};
use strongroom_luks::model::{DigestInfo, Kdf, Keyslot, Segment};
use strongroom_luks::{FileDevice, Volume};
use zeroize::Zeroizing;

#[derive(Subcommand)]
pub enum LuksCommand {
    /// Create a LUKS2 volume (default: aes-xts-plain64, 512-bit key, 4096-byte sectors,
    /// 16 MiB header, Argon2id with 1 GiB (at most half the RAM), 4 iterations, 4 lanes).
    Format(FormatArgs),
    /// Measure the engine's AES-XTS speed on 4 KiB sectors, one thread, per CPU-second
    /// (as `cryptsetup benchmark` does for the kernel's).
    Benchmark(super::luks_benchmark::BenchmarkArgs),
    /// Print the LUKS2 header; exits non-zero when no header copy is valid.
    Dump {
        /// Print the JSON metadata instead of the human-readable summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Exit 0 only when the key opens a keyslot.
    TestKey {
        #[command(flatten)]
        key: KeyArgs,
        /// Also try keys not bound to the data segment.
        #[arg(long)]
        unbound: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Add a keyslot for --new-key-file, unlocking with --key-file.
    AddKey {
        /// File holding an existing key (`-` = stdin).
        #[arg(long)]
        key_file: PathBuf,
        /// File holding the new key (`-` = stdin).
        #[arg(long)]
        new_key_file: PathBuf,
        /// Id of the new keyslot (default: the lowest free one).
        #[arg(long, short = 'S')]
        key_slot: Option<u32>,
        #[command(flatten)]
        kdf: KdfArgs,
        /// Keyslot priority: `prefer` (tried first), `normal`, or `ignore` (tried only when named).
        #[arg(long, value_enum)]
        priority: Option<Priority>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the keyslot --key-file opens, or the slot --key-slot names.
    RemoveKey {
        /// File holding the key of the slot to remove (`-` = stdin).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Id of the keyslot to remove (instead of --key-file).
        #[arg(long, short = 'S')]
        key_slot: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Replace the key of a keyslot (same slot id; crash-safe).
    ChangeKey {
        #[command(flatten)]
        key: KeyArgs,
        /// File holding the new key (`-` = stdin).
        #[arg(long)]
        new_key_file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Rewrite an invalid or stale header copy from the valid one.
    Repair {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub struct Target {
    /// Detached header file (the device then holds only data).
    #[arg(long)]
    header: Option<PathBuf>,
    /// Device or file.
    device: PathBuf,
}

#[derive(Args)]
pub struct KeyArgs {
    /// File holding the key (`-` = stdin).
    #[arg(long)]
    key_file: PathBuf,
    /// Only try this keyslot.
    #[arg(long, short = 'S')]
    key_slot: Option<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Pbkdf {
    Pbkdf2,
    Argon2i,
    Argon2id,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Priority {
    Ignore,
    Normal,
    Prefer,
}

impl Priority {
    fn value(self) -> u8 {
        match self {
            Priority::Ignore => 0,
            Priority::Normal => 1,
            Priority::Prefer => 2,
        }
    }
}

/// Argon2 memory cost by default: cryptsetup's (1 GiB), at most half the physical memory.
const ARGON2_DEFAULT_MEMORY_KIB: u32 = 1024 * 1024;
/// Argon2 time cost by default (cryptsetup's minimum for a benchmarked Argon2 keyslot).
const ARGON2_DEFAULT_TIME: u32 = 4;
/// Argon2 lanes by default: cryptsetup's 4, at most the number of CPUs.
const ARGON2_DEFAULT_LANES: u32 = 4;
/// PBKDF2 iterations when PBKDF2 is chosen without `--iterations` (a cost in the range
/// cryptsetup's 2-second benchmark reaches for PBKDF2-SHA256).
const PBKDF2_DEFAULT_ITERATIONS: u32 = 1_000_000;

/// Half the physical memory in KiB, if /proc/meminfo tells.
fn half_ram_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 2)
}

#[derive(Args)]
pub struct KdfArgs {
    /// Key derivation of the new keyslot (memory-hard Argon2id by default).
    #[arg(long, value_enum, default_value = "argon2id")]
    pbkdf: Pbkdf,
    /// PBKDF2 hash.
    #[arg(long, default_value = "sha256")]
    hash: String,
    /// PBKDF2 iterations (default 1000000) or Argon2 time cost (default 4).
    #[arg(long)]
    iterations: Option<u32>,
    /// Argon2 memory in KiB (default 1048576, at most half the RAM).
    #[arg(long)]
    pbkdf_memory: Option<u32>,
    /// Argon2 lanes (default 4, at most the number of CPUs).
    #[arg(long)]
    pbkdf_parallel: Option<u32>,
}

impl KdfArgs {
    fn argon2_costs(&self) -> (u32, u32, u32) {
        let memory = self.pbkdf_memory.unwrap_or_else(|| {
            let cap = half_ram_kib().unwrap_or(u64::MAX).max(32);
            ARGON2_DEFAULT_MEMORY_KIB.min(u32::try_from(cap).unwrap_or(u32::MAX))
        });
        let lanes = self.pbkdf_parallel.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            ARGON2_DEFAULT_LANES.min(u32::try_from(cpus).unwrap_or(1))
        });
        (
            self.iterations.unwrap_or(ARGON2_DEFAULT_TIME),
            memory,
            lanes,
        )
    }

    fn params(&self) -> KdfParams {
        let (time, memory_kib, cpus) = self.argon2_costs();
        match self.pbkdf {
            Pbkdf::Pbkdf2 => KdfParams::Pbkdf2 {
                hash: self.hash.clone(),
                iterations: self.iterations.unwrap_or(PBKDF2_DEFAULT_ITERATIONS),
            },
            Pbkdf::Argon2i => KdfParams::Argon2i {
                time,
                memory_kib,
                cpus,
            },
            Pbkdf::Argon2id => KdfParams::Argon2id {
                time,
                memory_kib,
                cpus,
            },
        }
    }
}

#[derive(Args)]
pub struct FormatArgs {
    /// File holding the passphrase of keyslot 0 (`-` = stdin).
    #[arg(long)]
    key_file: PathBuf,
    /// Data cipher in cryptsetup's form (aes-xts-plain64 is the one dm-crypt and librbd use).
    #[arg(long, default_value = "aes-xts-plain64")]
    cipher: String,
    /// Volume key size in bits (256 or 512 for XTS).
    #[arg(long, default_value_t = 512)]
    key_size: usize,
    /// Encryption sector size in bytes (512, 1024, 2048 or 4096).
    #[arg(long, default_value_t = 4096)]
    sector_size: u32,
    #[command(flatten)]
    kdf: KdfArgs,
    /// Hash of the volume key digest.
    #[arg(long, default_value = "sha256")]
    digest_hash: String,
    /// Header label (up to 47 bytes).
    #[arg(long)]
    label: Option<String>,
    /// Header subsystem name (up to 47 bytes).
    #[arg(long)]
    subsystem: Option<String>,
    /// Volume UUID (default: a random one).
    #[arg(long)]
    uuid: Option<String>,
    /// Size of each metadata copy in bytes (16384 .. 4194304).
    #[arg(long, default_value_t = 16384)]
    metadata_size: u64,
    /// Keyslots area size in bytes.
    #[arg(long)]
    keyslots_size: Option<u64>,
    /// Data offset in bytes.
    #[arg(long)]
    data_offset: Option<u64>,
    /// Use the volume key in this file instead of a random one.
    #[arg(long)]
    volume_key_file: Option<PathBuf>,
    /// Id of the first keyslot (default: 0).
    #[arg(long, short = 'S')]
    key_slot: Option<u32>,
    /// Keyslot priority: `prefer` (tried first), `normal`, or `ignore` (tried only when named).
    #[arg(long, value_enum)]
    priority: Option<Priority>,
    /// Detached header file (created if missing); DEVICE then holds only data.
    #[arg(long)]
    header: Option<PathBuf>,
    /// The file or block device to format.
    device: PathBuf,
}

/// Largest key file read (cryptsetup's default limit for key files).
const MAX_KEY_FILE: usize = 8 << 20;

/// Read all of `r` into zeroizing memory, leaving no copy of it anywhere else. The buffer is
/// allocated once for `size_hint` bytes (the file size when known) plus one, so that reading
/// to the end needs no more room. Should more come, a buffer twice as large is allocated, the
/// bytes copied over and the old buffer wiped: never a `Vec` growing by reallocation, which
/// frees the old block with the secret still in it.
fn read_secret_from(r: &mut impl Read, size_hint: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_KEY_FILE >> 20),
        )
    };
    let hint = usize::try_from(size_hint).map_err(|_| too_big())?;
    if hint > MAX_KEY_FILE {
        return Err(too_big());
    }
    let mut buf = Zeroizing::new(vec![0u8; hint.max(255) + 1]);
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len > MAX_KEY_FILE {
                return Err(too_big());
            }
            let mut bigger = Zeroizing::new(vec![0u8; (2 * len).min(MAX_KEY_FILE + 1)]);
            bigger[..len].copy_from_slice(&buf[..len]);
            buf = bigger;
        }
        match r.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Read a secret from a file or stdin (`-`), whole, into zeroizing memory. Stdin is read
/// through its own descriptor, not `io::stdin()`, whose buffer would keep a copy.
pub(crate) fn read_secret(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let (mut file, what) = if path == Path::new("-") {
        let fd = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stdin")?;
        (std::fs::File::from(fd), "the key from stdin".to_string())
    } else {
        let f = std::fs::File::open(path)
            .with_context(|| format!("opening key file {}", path.display()))?;
        (f, format!("key file {}", path.display()))
    };
    let meta = file.metadata().with_context(|| format!("reading {what}"))?;
    let hint = if meta.is_file() { meta.len() } else { 0 };
    read_secret_from(&mut file, hint).with_context(|| format!("reading {what}"))
}

fn header_path(t: &Target) -> &Path {
    t.header.as_deref().unwrap_or(&t.device)
}

fn open(t: &Target, writable: bool) -> anyhow::Result<Volume<FileDevice>> {
    let p = header_path(t);
    let dev = FileDevice::open(p, writable).with_context(|| format!("opening {}", p.display()))?;
    Ok(Volume::open(dev)?)
}

fn exit_for(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<LuksError>() {
        Some(LuksError::WrongKey) => 2,
        _ => 1,
    }
}

pub fn run(cmd: LuksCommand) -> anyhow::Result<i32> {
    match run_inner(cmd) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            Ok(exit_for(&e))
        }
    }
}

fn run_inner(cmd: LuksCommand) -> anyhow::Result<i32> {
    match cmd {
        LuksCommand::Format(a) => format(a),
        LuksCommand::Benchmark(a) => super::luks_benchmark::run(a),
        LuksCommand::Dump { json, target } => dump(&target, json),
        LuksCommand::TestKey {
            key,
            unbound,
            target,
        } => {
            let secret = read_secret(&key.key_file)?;
            let vol = open(&target, false)?;
            let u = vol.unlock(&secret, key.key_slot, unbound)?;
            eprintln!(
                "Key opens keyslot {}{}.",
                u.slot,
                if u.bound { "" } else { " (unbound key)" }
            );
            Ok(0)
        }
        LuksCommand::AddKey {
            key_file,
            new_key_file,
            key_slot,
            kdf,
            priority,
            target,
        } => {
            if key_file == Path::new("-") && new_key_file == Path::new("-") {
                bail!("--key-file and --new-key-file cannot both be stdin");
            }
            let old = read_secret(&key_file)?;
            let new = read_secret(&new_key_file)?;
            let mut vol = open(&target, true)?;
            let u = vol.unlock(&old, None, true)?;
            let params = KeyslotParams {
                kdf: kdf.params(),
                slot: key_slot,
                priority: priority.map(Priority::value),
            };
            let slot = vol.add_keyslot(&u.volume_key, &new, &params)?;
            eprintln!("Added keyslot {slot}.");
            Ok(0)
        }
        LuksCommand::RemoveKey {
            key_file,
            key_slot,
            target,
        } => {
            let mut vol = open(&target, true)?;
            let slot = match (key_file, key_slot) {
                (Some(f), slot) => {
                    let secret = read_secret(&f)?;
                    vol.remove_key(&secret, slot)?
                }
                (None, Some(s)) => {
                    vol.remove_keyslot(s)?;
                    s
                }
                (None, None) => bail!("give --key-file or --key-slot"),
            };
            eprintln!("Removed keyslot {slot}.");
            Ok(0)
        }
        LuksCommand::ChangeKey {
            key,
            new_key_file,
            target,
        } => {
            if key.key_file == Path::new("-") && new_key_file == Path::new("-") {
                bail!("--key-file and --new-key-file cannot both be stdin");
            }
            let old = read_secret(&key.key_file)?;
            let new = read_secret(&new_key_file)?;
            let mut vol = open(&target, true)?;
            let slot = vol.change_key(&old, &new, key.key_slot, None)?;
            eprintln!("Changed the key of keyslot {slot}.");
            Ok(0)
        }
        LuksCommand::Repair { target } => {
            let p = header_path(&target);
            let dev =
                FileDevice::open(p, true).with_context(|| format!("opening {}", p.display()))?;
            let mut vol = Volume::open_with(
                dev,
                LoadOptions {
                    allow_foreign_signature: true,
                },
            )?;
            match vol.repair()? {
                Some((copy, why)) => eprintln!("Rewrote the {copy} ({why})."),
                None => eprintln!("Both header copies are valid; nothing to repair."),
            }
            Ok(0)
        }
    }
}

fn format(a: FormatArgs) -> anyhow::Result<i32> {
    let secret = read_secret(&a.key_file)?;
    let volume_key = match &a.volume_key_file {
        Some(p) => Some(read_secret(p)?),
        None => None,
    };
    let params = FormatParams {
        cipher: a.cipher.clone(),
        key_size_bits: a.key_size,
        sector_size: a.sector_size,
        keyslot: KeyslotParams {
            kdf: a.kdf.params(),
            slot: a.key_slot,
            priority: a.priority.map(Priority::value),
        },
        digest_hash: a.digest_hash.clone(),
        metadata_size: a.metadata_size,
        keyslots_size: a.keyslots_size,
        data_offset: a.data_offset,
        detached: a.header.is_some(),
        label: a.label.clone().unwrap_or_default(),
        subsystem: a.subsystem.clone().unwrap_or_default(),
        uuid: a.uuid.clone(),
        volume_key,
        ..FormatParams::default()
    };
    let hdr_path = a.header.as_deref().unwrap_or(&a.device);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(a.header.is_some())
        .truncate(false)
        .open(hdr_path)
        .with_context(|| format!("opening {}", hdr_path.display()))?;
    let (vol, _vk) = Volume::format(FileDevice::from_file(file, true), &params, &secret)?;
    eprintln!(
        "Formatted {} (UUID {}).",
        a.device.display(),
        vol.header().uuid
    );
    Ok(0)
}

fn copy_state(s: &CopyState) -> String {
    match s {
        CopyState::Valid { seqid } => format!("valid (seqid {seqid})"),
        CopyState::Invalid(e) => format!("INVALID: {e}"),
    }
}

/// One line of `luks dump` output into a `String` (writing to a `String` cannot fail).
macro_rules! p {
    ($o:expr, $($a:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($a)*);
    }};
}

fn dump(t: &Target, json: bool) -> anyhow::Result<i32> {
    let vol = open(t, false)?;
    report_copies(vol.report());
    let h = vol.header();
    let mut o = String::new();
    if json {
        // The metadata as stored (compact, every unchanged number and string in its original
        // text, as `cryptsetup luksDump --dump-json-metadata` shows it): a float or a 100-bit
        // integer in a token is printed exactly, not re-rounded through a parsed value.
        let text = strongroom_luks::header::json::to_text(&h.meta, h.source.as_ref())
            .map_err(|e| anyhow::anyhow!("serialize the metadata: {e}"))?;
        p!(o, "{}", String::from_utf8_lossy(&text));
        return emit(&o);
    }
    dump_summary(&mut o, h, &vol.requirements());
    dump_segments(&mut o, &h.meta);
    let digests = DigestInfo::all(&h.meta).unwrap_or_default();
    p!(o, "\nKeyslots:");
    for (id, kind, prio) in vol.keyslots() {
        p!(o, "  {id}: {kind}");
        if let Ok(ks) = Keyslot::from_meta(&h.meta, id) {
            dump_keyslot(&mut o, &ks, prio);
            if let Some(d) = digests.iter().find(|d| d.keyslots.contains(&id)) {
                p!(o, "\tDigest ID:  {}", d.id);
            }
        }
    }
    dump_tokens(&mut o, &h.meta);
    dump_digests(&mut o, &digests);
    emit(&o)
}

/// Which header copy is in use and the state of both, on stderr (stdout is the dump).
fn report_copies(r: &LoadReport) {
    eprintln!(
        "Using the {}; primary: {}; secondary: {}.",
        r.used,
        copy_state(&r.primary),
        copy_state(&r.secondary)
    );
    if let Some((copy, why)) = &r.needs_repair {
        eprintln!("The {copy} needs repair ({why}); run `strongroom luks repair`.");
    }
    for f in &r.repaired_in_memory {
        eprintln!("Repaired in memory: {f}.");
    }
}

fn or_none<'a>(s: &'a str, none: &'a str) -> &'a str {
    if s.is_empty() {
        none
    } else {
        s
    }
}

fn dump_summary(o: &mut String, h: &Header, req: &[String]) {
    let cfg = h.meta.get("config");
    let keyslots_size = cfg
        .and_then(|c| c.get("keyslots_size"))
        .and_then(Value::as_str)
        .unwrap_or("");
    p!(o, "LUKS header information");
    p!(o, "Version:       \t2");
    p!(o, "Epoch:         \t{}", h.seqid);
    p!(o, "Metadata area: \t{} [bytes]", h.hdr_size);
    p!(o, "Keyslots area: \t{keyslots_size} [bytes]");
    p!(o, "UUID:          \t{}", h.uuid);
    p!(o, "Label:         \t{}", or_none(&h.label, "(no label)"));
    p!(
        o,
        "Subsystem:     \t{}",
        or_none(&h.subsystem, "(no subsystem)")
    );
    let flags: Vec<&str> = cfg
        .and_then(|c| c.get("flags"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    p!(
        o,
        "Flags:         \t{}",
        or_none(&flags.join(" "), "(no flags)")
    );
    if !req.is_empty() {
        p!(
            o,
            "Requirements:  \t{} (read-only for strongroom)",
            req.join(" ")
        );
    }
}

fn dump_segments(o: &mut String, meta: &serde_json::Map<String, Value>) {
    p!(o, "\nData segments:");
    let mut seg_ids: Vec<u32> = meta
        .get("segments")
        .and_then(Value::as_object)
        .map(|o| o.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    seg_ids.sort();
    for seg in seg_ids
        .into_iter()
        .filter_map(|id| Some((id, Segment::from_meta(meta, id).ok()?)))
    {
        let (id, seg) = seg;
        p!(o, "  {id}: {}", seg.kind);
        p!(o, "\toffset: {} [bytes]", seg.offset);
        match seg.size {
            Some(sz) => p!(o, "\tlength: {sz} [bytes]"),
            None => p!(o, "\tlength: (whole device)"),
        }
        if seg.kind == "crypt" {
            p!(o, "\tcipher: {}", seg.encryption);
            p!(o, "\tsector: {} [bytes]", seg.sector_size);
        }
        if !seg.flags.is_empty() {
            p!(o, "\tflags : {}", seg.flags.join(" "));
        }
    }
}

fn dump_keyslot(o: &mut String, ks: &Keyslot, prio: u8) {
    let priority = ["ignore", "normal", "prefer"]
        .get(prio as usize)
        .unwrap_or(&"normal");
    p!(o, "\tKey:        {} bits", ks.key_size * 8);
    p!(o, "\tPriority:   {priority}");
    p!(o, "\tCipher:     {}", ks.area.encryption);
    p!(o, "\tCipher key: {} bits", ks.area.key_size * 8);
    match &ks.kdf {
        Kdf::Pbkdf2 {
            hash, iterations, ..
        } => {
            p!(o, "\tPBKDF:      pbkdf2");
            p!(o, "\tHash:       {hash}");
            p!(o, "\tIterations: {iterations}");
        }
        Kdf::Argon2 {
            id,
            time,
            memory,
            cpus,
            ..
        } => {
            p!(
                o,
                "\tPBKDF:      {}",
                if *id { "argon2id" } else { "argon2i" }
            );
            p!(o, "\tTime cost:  {time}");
            p!(o, "\tMemory:     {memory}");
            p!(o, "\tThreads:    {cpus}");
        }
    }
    p!(o, "\tAF stripes: {}", ks.af_stripes);
    p!(o, "\tAF hash:    {}", ks.af_hash);
    p!(o, "\tArea offset:{} [bytes]", ks.area.offset);
    p!(o, "\tArea length:{} [bytes]", ks.area.size);
}

fn dump_tokens(o: &mut String, meta: &serde_json::Map<String, Value>) {
    p!(o, "Tokens:");
    let Some(tokens) = meta.get("tokens").and_then(Value::as_object) else {
        return;
    };
    for (id, t) in tokens {
        p!(
            o,
            "  {id}: {}",
            t.get("type").and_then(Value::as_str).unwrap_or("")
        );
        for k in t
            .get("keyslots")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            p!(o, "\tKeyslot:    {}", k.as_str().unwrap_or(""));
        }
    }
}

fn dump_digests(o: &mut String, digests: &[DigestInfo]) {
    p!(o, "Digests:");
    for d in digests {
        p!(o, "  {}: pbkdf2", d.id);
        p!(o, "\tHash:       {}", d.hash);
        p!(o, "\tIterations: {}", d.iterations);
        p!(o, "\tSalt:       {}", to_hex(&d.salt));
        p!(o, "\tDigest:     {}", to_hex(&d.digest));
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Print to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<i32> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// The system allocator, plus: while `WATCH` is set on a thread, every allocation that
    /// thread makes is counted, and every block it frees or hands to `realloc` with a non-zero
    /// byte in it is counted as a leaked copy.
    struct WipeCheck;

    thread_local! {
        static WATCH: Cell<bool> = const { Cell::new(false) };
        static ALLOCS: Cell<usize> = const { Cell::new(0) };
        static DIRTY: Cell<usize> = const { Cell::new(0) };
    }

    fn watching() -> bool {
        WATCH.try_with(Cell::get).unwrap_or(false)
    }

    fn bump(c: &'static std::thread::LocalKey<Cell<usize>>) {
        let _ = c.try_with(|c| c.set(c.get() + 1));
    }

    /// # Safety
    /// `ptr` is a live block of `size` bytes.
    unsafe fn check_wiped(ptr: *mut u8, size: usize) {
        if watching() {
            // SAFETY: the caller passes a live allocation of `size` bytes.
            let block = unsafe { std::slice::from_raw_parts(ptr, size) };
            if block.iter().any(|&b| b != 0) {
                bump(&DIRTY);
            }
        }
    }

    // SAFETY: every call is passed on to `System` unchanged; the checks only read the block
    // being freed before it is freed.
    unsafe impl GlobalAlloc for WipeCheck {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if watching() {
                bump(&ALLOCS);
            }
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if watching() {
                bump(&ALLOCS);
            }
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe {
                check_wiped(ptr, layout.size());
                System.dealloc(ptr, layout)
            }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if watching() {
                bump(&ALLOCS);
            }
            unsafe {
                check_wiped(ptr, layout.size());
                System.realloc(ptr, layout, new_size)
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: WipeCheck = WipeCheck;

    /// A reader handing out `data` a few bytes at a time (as a pipe does).
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Run `f` with the checks on: (allocations made, blocks freed unwiped).
    fn watched<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
        ALLOCS.with(|c| c.set(0));
        DIRTY.with(|c| c.set(0));
        WATCH.with(|w| w.set(true));
        let out = f();
        WATCH.with(|w| w.set(false));
        (out, ALLOCS.with(Cell::get), DIRTY.with(Cell::get))
    }

    fn secret(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 + 1).collect()
    }

    #[test]
    fn growing_vec_leaves_copies_the_check_sees_them() {
        let data = secret(100_000);
        let ((), _, dirty) = watched(|| {
            let mut buf = Zeroizing::new(Vec::new());
            Trickle(&data).read_to_end(&mut buf).unwrap();
        });
        assert!(
            dirty > 0,
            "read_to_end reallocates and frees unwiped blocks"
        );
    }

    #[test]
    fn key_of_known_size_is_read_into_one_buffer() {
        for len in [0, 1, 32, 4096, 100_000] {
            let data = secret(len);
            let (ok, allocs, dirty) = watched(|| {
                let got = read_secret_from(&mut Trickle(&data), len as u64).unwrap();
                let ok = *got == data;
                drop(got);
                ok
            });
            assert!(ok, "{len} bytes read back");
            assert_eq!(allocs, 1, "{len} bytes: one allocation");
            assert_eq!(dirty, 0, "{len} bytes: nothing freed unwiped");
        }
    }

    #[test]
    fn key_of_unknown_size_grows_by_wiped_copies() {
        let data = secret(300_000);
        let (ok, allocs, dirty) = watched(|| {
            let got = read_secret_from(&mut Trickle(&data), 0).unwrap();
            let ok = *got == data;
            drop(got);
            ok
        });
        assert!(ok);
        assert!(allocs > 1, "grew");
        assert_eq!(
            dirty, 0,
            "every outgrown buffer was wiped before it was freed"
        );
    }

    #[test]
    fn key_file_size_is_limited() {
        let data = vec![7u8; MAX_KEY_FILE + 1];
        let (res, _, dirty) = watched(|| read_secret_from(&mut Trickle(&data), 0).map(|_| ()));
        assert!(res.is_err(), "more than 8 MiB");
        assert_eq!(dirty, 0);
        assert!(read_secret_from(&mut io::empty(), MAX_KEY_FILE as u64 + 1).is_err());
        let exact = vec![1u8; MAX_KEY_FILE];
        let got = read_secret_from(&mut Trickle(&exact), 0).unwrap();
        assert_eq!(got.len(), MAX_KEY_FILE);
    }
}
