//! `strongroom luks ...` — LUKS2 volumes on files and block devices (issue 4).
//!
//! Secrets only come from files (`--key-file FILE`, `-` = stdin; `--new-key-file` for the key
//! being added), never from argv or the environment. Exit codes: 0 success, 1 error (including
//! a header cryptsetup would reject), 2 wrong key / no keyslot opened.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use strongroom_luks::error::Error as LuksError;
use strongroom_luks::format::{FormatParams, KdfParams, KeyslotParams};
use strongroom_luks::header::{CopyState, LoadOptions};
use strongroom_luks::model::{DigestInfo, Kdf, Keyslot, Segment};
use strongroom_luks::{FileDevice, Volume};
use zeroize::Zeroizing;

#[derive(Subcommand)]
pub enum LuksCommand {
    /// Create a LUKS2 volume (default: aes-xts-plain64, 512-bit key, 4096-byte sectors,
    /// 16 MiB header, PBKDF2-SHA256 with 1000 iterations).
    Format(FormatArgs),
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
        #[arg(long, short = 'S')]
        key_slot: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Replace the key of a keyslot (same slot id; crash-safe).
    ChangeKey {
        #[command(flatten)]
        key: KeyArgs,
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

#[derive(Args)]
pub struct KdfArgs {
    #[arg(long, value_enum, default_value = "pbkdf2")]
    pbkdf: Pbkdf,
    /// PBKDF2 hash.
    #[arg(long, default_value = "sha256")]
    hash: String,
    /// PBKDF2 iterations (default 1000) or Argon2 time cost (default 4).
    #[arg(long)]
    iterations: Option<u32>,
    /// Argon2 memory in KiB.
    #[arg(long, default_value_t = 32768)]
    pbkdf_memory: u32,
    /// Argon2 lanes.
    #[arg(long, default_value_t = 1)]
    pbkdf_parallel: u32,
}

impl KdfArgs {
    fn params(&self) -> KdfParams {
        match self.pbkdf {
            Pbkdf::Pbkdf2 => KdfParams::Pbkdf2 {
                hash: self.hash.clone(),
                iterations: self.iterations.unwrap_or(1000),
            },
            Pbkdf::Argon2i => KdfParams::Argon2i {
                time: self.iterations.unwrap_or(4),
                memory_kib: self.pbkdf_memory,
                cpus: self.pbkdf_parallel,
            },
            Pbkdf::Argon2id => KdfParams::Argon2id {
                time: self.iterations.unwrap_or(4),
                memory_kib: self.pbkdf_memory,
                cpus: self.pbkdf_parallel,
            },
        }
    }
}

#[derive(Args)]
pub struct FormatArgs {
    /// File holding the passphrase of keyslot 0 (`-` = stdin).
    #[arg(long)]
    key_file: PathBuf,
    #[arg(long, default_value = "aes-xts-plain64")]
    cipher: String,
    /// Volume key size in bits (256 or 512 for XTS).
    #[arg(long, default_value_t = 512)]
    key_size: usize,
    #[arg(long, default_value_t = 4096)]
    sector_size: u32,
    #[command(flatten)]
    kdf: KdfArgs,
    /// Hash of the volume key digest.
    #[arg(long, default_value = "sha256")]
    digest_hash: String,
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    subsystem: Option<String>,
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
    #[arg(long, short = 'S')]
    key_slot: Option<u32>,
    #[arg(long, value_enum)]
    priority: Option<Priority>,
    /// Detached header file (created if missing); DEVICE then holds only data.
    #[arg(long)]
    header: Option<PathBuf>,
    device: PathBuf,
}

/// Read a secret from a file or stdin (`-`), whole, into zeroizing memory.
fn read_secret(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading key from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("reading key file {}", path.display()))?;
    }
    Ok(buf)
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

fn dump(t: &Target, json: bool) -> anyhow::Result<i32> {
    use std::fmt::Write as _;
    let mut o = String::new();
    macro_rules! p {
        ($($a:tt)*) => {{
            let _ = writeln!(o, $($a)*);
        }};
    }
    let vol = open(t, false)?;
    let h = vol.header();
    let r = vol.report();
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
    if json {
        // The metadata as stored (compact, every unchanged number and string in its original
        // text, as `cryptsetup luksDump --dump-json-metadata` shows it): a float or a 100-bit
        // integer in a token is printed exactly, not re-rounded through a parsed value.
        let text = strongroom_luks::header::json::to_text(&h.meta, h.source.as_ref())
            .map_err(|e| anyhow::anyhow!("serialize the metadata: {e}"))?;
        p!("{}", String::from_utf8_lossy(&text));
        return emit(&o);
    }
    let cfg = h.meta.get("config");
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    p!("LUKS header information");
    p!("Version:       \t2");
    p!("Epoch:         \t{}", h.seqid);
    p!("Metadata area: \t{} [bytes]", h.hdr_size);
    p!(
        "Keyslots area: \t{} [bytes]",
        s(cfg.and_then(|c| c.get("keyslots_size")))
    );
    p!("UUID:          \t{}", h.uuid);
    p!(
        "Label:         \t{}",
        if h.label.is_empty() {
            "(no label)"
        } else {
            &h.label
        }
    );
    p!(
        "Subsystem:     \t{}",
        if h.subsystem.is_empty() {
            "(no subsystem)"
        } else {
            &h.subsystem
        }
    );
    let flags: Vec<String> = cfg
        .and_then(|c| c.get("flags"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    p!(
        "Flags:         \t{}",
        if flags.is_empty() {
            "(no flags)".into()
        } else {
            flags.join(" ")
        }
    );
    let req = vol.requirements();
    if !req.is_empty() {
        p!(
            "Requirements:  \t{} (read-only for strongroom)",
            req.join(" ")
        );
    }
    p!("\nData segments:");
    let mut seg_ids: Vec<u32> = h
        .meta
        .get("segments")
        .and_then(Value::as_object)
        .map(|o| o.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    seg_ids.sort();
    for id in seg_ids {
        if let Ok(seg) = Segment::from_meta(&h.meta, id) {
            p!("  {id}: {}", seg.kind);
            p!("\toffset: {} [bytes]", seg.offset);
            match seg.size {
                Some(sz) => p!("\tlength: {sz} [bytes]"),
                None => p!("\tlength: (whole device)"),
            }
            if seg.kind == "crypt" {
                p!("\tcipher: {}", seg.encryption);
                p!("\tsector: {} [bytes]", seg.sector_size);
            }
            if !seg.flags.is_empty() {
                p!("\tflags : {}", seg.flags.join(" "));
            }
        }
    }
    p!("\nKeyslots:");
    let digests = DigestInfo::all(&h.meta).unwrap_or_default();
    for (id, kind, prio) in vol.keyslots() {
        p!("  {id}: {kind}");
        let Ok(ks) = Keyslot::from_meta(&h.meta, id) else {
            continue;
        };
        p!("\tKey:        {} bits", ks.key_size * 8);
        p!(
            "\tPriority:   {}",
            ["ignore", "normal", "prefer"]
                .get(prio as usize)
                .unwrap_or(&"normal")
        );
        p!("\tCipher:     {}", ks.area.encryption);
        p!("\tCipher key: {} bits", ks.area.key_size * 8);
        match &ks.kdf {
            Kdf::Pbkdf2 {
                hash, iterations, ..
            } => {
                p!("\tPBKDF:      pbkdf2");
                p!("\tHash:       {hash}");
                p!("\tIterations: {iterations}");
            }
            Kdf::Argon2 {
                id,
                time,
                memory,
                cpus,
                ..
            } => {
                p!("\tPBKDF:      {}", if *id { "argon2id" } else { "argon2i" });
                p!("\tTime cost:  {time}");
                p!("\tMemory:     {memory}");
                p!("\tThreads:    {cpus}");
            }
        }
        p!("\tAF stripes: {}", ks.af_stripes);
        p!("\tAF hash:    {}", ks.af_hash);
        p!("\tArea offset:{} [bytes]", ks.area.offset);
        p!("\tArea length:{} [bytes]", ks.area.size);
        if let Some(d) = digests.iter().find(|d| d.keyslots.contains(&id)) {
            p!("\tDigest ID:  {}", d.id);
        }
    }
    p!("Tokens:");
    if let Some(tokens) = h.meta.get("tokens").and_then(Value::as_object) {
        for (id, t) in tokens {
            p!("  {id}: {}", s(t.get("type")));
            if let Some(ks) = t.get("keyslots").and_then(Value::as_array) {
                for k in ks {
                    p!("\tKeyslot:    {}", k.as_str().unwrap_or(""));
                }
            }
        }
    }
    p!("Digests:");
    for d in &digests {
        p!("  {}: pbkdf2", d.id);
        p!("\tHash:       {}", d.hash);
        p!("\tIterations: {}", d.iterations);
        p!("\tSalt:       {}", to_hex(&d.salt));
        p!("\tDigest:     {}", to_hex(&d.digest));
    }
    emit(&o)
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
