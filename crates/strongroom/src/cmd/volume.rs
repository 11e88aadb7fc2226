//! `strongroom volume ...` — encrypted volumes (issue 5): create, mount, unmount, resize,
//! rotate, shred, list, status, and the admin's `setup-tenant`.
//!
//! Tokens come only from files (`--token-file FILE`, `-` = stdin), never argv or env.
//! Exit codes: 0 ok; 1 error; 2 permission denied / authentication failed;
//! 75 key manager unavailable (retry later).
//!
//! A userspace mount must outlive this command: `mount` starts a volume holder (`volume
//! hold`, same binary, its own session, memory locked) that serves the FUSE file and exits
//! when `unmount` tears the mount down. The keyslot secret reaches it on a pipe.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use strongroom_vault_client::split_addresses;
use strongroom_volume::tenant::{self, TenantLayout};
use strongroom_volume::{
    new_image_name, CephRef, CreateRequest, Credential, Error as VolError, ErrorKind, FsType,
    HolderCommand, HolderRole, KmsConfig, Manager, ManagerConfig, MsMode, ProtectionMode,
    ProtectionRequest, RotateKind, SecretString, StoreSpec, VolumeInfo,
};

#[derive(Args, Clone)]
pub struct Global {
    /// Directory holding the volumes (metadata, sparse files, runtime records).
    #[arg(long, global = true, default_value = "/var/lib/strongroom/volumes")]
    root: PathBuf,
    /// Key manager address (default: VAULT_ADDR, then http://127.0.0.1:8200); several
    /// comma-separated addresses (the nodes of a cluster) are tried in turn.
    #[arg(long, global = true)]
    address: Option<String>,
    /// Cluster id bound into every wrapped secret's context.
    #[arg(long, global = true, default_value = "default")]
    cluster_id: String,
    /// Seconds unwrapped secrets stay cached in memory.
    #[arg(long, global = true, default_value_t = 300)]
    cache_ttl: u64,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
pub struct VolumeCommand {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Args, Clone)]
struct TokenArg {
    /// File with the tenant's KMS token (`-` = stdin).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// File with the platform admin token (shred without the tenant's token).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
}

/// Token options older scripts pass to `unmount`: accepted, never read (tearing down needs
/// no credential, so a revoked token or a deleted token file must not stop it).
#[derive(Args, Clone)]
struct IgnoredTokenArg {
    #[arg(long, value_name = "FILE", hide = true)]
    token_file: Option<PathBuf>,
    #[arg(long, value_name = "FILE", hide = true)]
    admin_token_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Kek,
    Slot,
}

#[derive(Args)]
struct CreateArgs {
    /// The new volume's id (letters, digits, `-`, `_`, `.`).
    id: String,
    /// The tenant the volume belongs to (its key and policy are the tenant's).
    #[arg(long)]
    tenant: String,
    /// Usable size: bytes or with K/M/G/T suffix (binary).
    #[arg(long)]
    size: String,
    /// `envelope` (wrapped by the tenant's transit key) or `kv`.
    #[arg(long, default_value = "envelope")]
    protection: ProtectionMode,
    /// Mount path of the transit engine holding the tenant's key (`--protection envelope`).
    #[arg(long, default_value = "transit")]
    transit_mount: String,
    /// Transit key (default `tenant-<tenant>`).
    #[arg(long)]
    transit_key: Option<String>,
    /// KV backend path for `--protection kv` (default `secret/strongroom/<tenant>`).
    #[arg(long)]
    kv_backend: Option<String>,
    /// `ext4` or `xfs`.
    #[arg(long, default_value = "ext4")]
    fs: FsType,
    /// Use this raw block device instead of a sparse file.
    #[arg(long, conflicts_with = "backend")]
    block_device: Option<PathBuf>,
    /// Where the ciphertext lives: `file` (a sparse file under --root) or `rbd` (a Ceph RBD
    /// image `csi-vol-<uuid>` in --pool).
    #[arg(long, value_enum, default_value = "file")]
    backend: Backend,
    #[command(flatten)]
    ceph: CephArgs,
    #[command(flatten)]
    token: TokenArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    File,
    Rbd,
}

/// Where an RBD volume lives and how to reach its cluster (ceph.conf + keyring; the key is
/// never an argument).
#[derive(Args, Clone)]
struct CephArgs {
    /// RBD pool (needed with `--backend rbd`).
    #[arg(long)]
    pool: Option<String>,
    /// RADOS namespace inside the pool (created if missing).
    #[arg(long, default_value = "")]
    rados_namespace: String,
    /// Image name (default `csi-vol-<random uuid>`).
    #[arg(long)]
    image: Option<String>,
    /// ceph.conf naming the monitors and the keyring (default: $CEPH_CONF, then Ceph's own
    /// search path).
    #[arg(long)]
    ceph_conf: Option<PathBuf>,
    /// Ceph user id (`admin` = client.admin).
    #[arg(long, default_value = "admin")]
    ceph_user: String,
    /// The kernel rbd driver's wire protocol: legacy, crc, secure, prefer-crc or
    /// prefer-secure (Linux 5.11+ for all but legacy). Default: legacy when the monitors have
    /// v1 addresses, else prefer-crc over their v2 addresses. Recorded at create.
    #[arg(long, value_parser = parse_ms_mode)]
    krbd_ms_mode: Option<MsMode>,
}

fn parse_ms_mode(s: &str) -> Result<MsMode, String> {
    MsMode::parse(s).map_err(|e| e.to_string())
}

impl CephArgs {
    fn store(&self) -> anyhow::Result<StoreSpec> {
        let pool = self.pool.clone().context("an RBD volume needs --pool")?;
        // Record where the conf is, so that later commands (and the mount daemon) find the
        // same cluster whatever their environment.
        let conf = (self.ceph_conf.clone())
            .or_else(|| std::env::var_os("CEPH_CONF").map(PathBuf::from))
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .map(|p| p.to_string_lossy().into_owned());
        Ok(StoreSpec::Rbd {
            pool,
            namespace: self.rados_namespace.clone(),
            image: self.image.clone().unwrap_or_else(new_image_name),
            ceph: CephRef {
                conf,
                user: self.ceph_user.clone(),
                monitors: None,
                ms_mode: self.krbd_ms_mode,
            },
            layout: Default::default(),
        })
    }
}

#[derive(Args)]
struct SetupTenantArgs {
    /// The tenant to set up.
    tenant: String,
    /// Also create a token for the tenant and write it to this file (mode 0600).
    #[arg(long)]
    token_out: Option<PathBuf>,
    /// TTL of that token (e.g. `24h`; default: the key manager's default TTL).
    #[arg(long, default_value = "")]
    token_ttl: String,
    #[command(flatten)]
    token: TokenArg,
}

#[derive(Subcommand)]
enum Sub {
    /// Create an encrypted volume (idempotent; re-run to finish an interrupted create).
    Create(CreateArgs),
    /// Mount the volume's filesystem (made on first mount) at TARGET.
    Mount {
        /// The volume's id.
        id: String,
        /// Directory to mount the filesystem on (created if missing).
        target: PathBuf,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Unmount and tear down loop device, FUSE mount / dm-crypt mapping and cached keys.
    /// Needs no token and no key manager (it works with the KMS down or the tenant gone).
    Unmount {
        /// The volume's id.
        id: String,
        #[command(flatten)]
        _ignored: IgnoredTokenArg,
    },
    /// Grow a volume (online when mounted).
    Resize {
        /// The volume's id.
        id: String,
        /// New usable size: bytes or with K/M/G/T suffix (binary); volumes only grow.
        #[arg(long)]
        size: String,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Rotate the KEK (rewrap, data untouched) or the keyslot secret.
    Rotate {
        /// The volume's id.
        id: String,
        /// `kek`: rotate the tenant's transit key and rewrap (data untouched); `slot`: a new
        /// keyslot secret (the old one stops opening the volume).
        #[arg(long, value_enum, default_value = "kek")]
        kind: Kind,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Crypto-shred: destroy the wrapped secret / KV entry and wipe every keyslot.
    Shred {
        /// The volume's id.
        id: String,
        #[command(flatten)]
        token: TokenArg,
    },
    /// List volumes.
    List,
    /// Show a volume's state, parameters and rotation ages.
    Status {
        /// The volume's id.
        id: String,
    },
    /// Take over on this node a volume whose metadata lives with its data (an RBD image made
    /// on another node): `--pool` and `--image` name it. Needs no token (opening it does).
    Import {
        /// The id the volume gets on this node.
        id: String,
        #[command(flatten)]
        ceph: CephArgs,
    },
    /// Admin: create a tenant's transit key and policy (and optionally a token for it).
    SetupTenant(SetupTenantArgs),
    /// (internal) A volume holder: serve a userspace mount; started by `mount` and the CSI
    /// node plugin, secret on stdin.
    #[command(hide = true)]
    Hold {
        /// The volume's id.
        id: String,
        /// Which half: `start` (the first server, started by a mount), or a successor
        /// (`server`, `keeper`) started by the other half with its link on stdin.
        #[arg(long, value_enum, default_value_t = HoldRole::Start)]
        role: HoldRole,
    },
    /// (node daemon) A holder host: start the volume holders of userspace mounts when the
    /// CSI node plugin asks on SOCKET, so that they survive a restart of its container.
    #[command(hide = true)]
    HolderHost {
        /// Unix socket the CSI node plugin asks on.
        #[arg(long)]
        socket: PathBuf,
    },
    /// Re-execute the volume holder of a userspace mount (its keeper, then its server) from
    /// the strongroom binary now installed at its path, without an I/O error on the mount.
    UpgradeHolder {
        /// The volume's id.
        id: String,
    },
    /// (benchmarks) Serve a plain file or RBD image through the same FUSE layer, without
    /// encryption, until unmounted with `fusermount3 -u DIR` (built with `--features bench`).
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    Passthrough(PassthroughArgs),
    /// (benchmarks) Library-level RBD throughput and provisioning (bench/rbd.sh).
    #[command(hide = true)]
    BenchRbd(super::rbd_bench::BenchRbdArgs),
    /// (benchmarks) Time provisioning (create + open, no mkfs) with its KMS round trips.
    #[command(hide = true)]
    BenchProvision {
        /// The tenant whose volumes are timed (set up with `setup-tenant`).
        #[arg(long)]
        tenant: String,
        /// How many volumes to create and open.
        #[arg(long, default_value_t = 50)]
        count: usize,
        #[command(flatten)]
        token: TokenArg,
    },
}

pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("invalid size {s:?}"))?;
    n.checked_mul(mul).context("size overflows")
}

/// A KMS token from a file or stdin (`-`), read into zeroizing memory with no reallocation
/// copies left behind (the same reader as the LUKS key files).
fn read_token(path: &Path) -> anyhow::Result<SecretString> {
    let bytes = super::luks::read_secret(path).context("reading the token")?;
    let text = std::str::from_utf8(&bytes).context("the token is not UTF-8")?;
    if text.trim().is_empty() {
        bail!("the token file is empty");
    }
    Ok(SecretString::new(text.trim()))
}

fn credential(t: &TokenArg) -> anyhow::Result<Credential> {
    match (&t.token_file, &t.admin_token_file) {
        (Some(p), None) => Ok(Credential::Tenant(read_token(p)?)),
        (None, Some(p)) => Ok(Credential::Admin(read_token(p)?)),
        (Some(_), Some(_)) => bail!("give either --token-file or --admin-token-file, not both"),
        (None, None) => bail!("a token is needed: --token-file FILE (or - for stdin)"),
    }
}

fn manager(g: &Global, progress: bool) -> Manager {
    let address = g
        .address
        .clone()
        .or_else(|| std::env::var("VAULT_ADDR").ok())
        .or_else(|| std::env::var("BAO_ADDR").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8200".into());
    let mut kms = KmsConfig::with_addresses(split_addresses(&address));
    kms.ca_cert = std::env::var_os("VAULT_CACERT").map(PathBuf::from);
    let m = Manager::new(ManagerConfig {
        root: g.root.clone(),
        cluster_id: g.cluster_id.clone(),
        kms,
        cache_ttl: Duration::from_secs(g.cache_ttl),
        datapath: None,
    });
    if progress && !g.json {
        m.with_progress(|s| eprintln!("... {s}"))
    } else {
        m
    }
}

fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::PermissionDenied | ErrorKind::Unauthenticated => 2,
        ErrorKind::Unavailable => 75,
        _ => 1,
    }
}

fn fail(g: &Global, e: VolError) -> anyhow::Result<i32> {
    if g.json {
        println!(
            "{}",
            json!({"error": {"code": e.kind(), "message": e.to_string(), "retryable": e.is_retryable()}})
        );
    } else {
        eprintln!("Error [{}]: {e}", e.kind());
    }
    Ok(exit_code(e.kind()))
}

fn human_size(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < 4 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", U[i])
}

fn print_info(g: &Global, i: &VolumeInfo) {
    if g.json {
        println!("{}", serde_json::to_string(i).unwrap_or_default());
        return;
    }
    println!("id:             {}", i.id);
    println!("tenant:         {}", i.tenant);
    println!("state:          {}", i.state);
    println!("protection:     {}", i.protection);
    println!("size:           {} ({} bytes)", human_size(i.size), i.size);
    println!(
        "store:          {}",
        serde_json::to_string(&i.store).unwrap_or_default()
    );
    println!(
        "filesystem:     {} (created: {})",
        i.fs_type, i.filesystem_created
    );
    println!(
        "mounted:        {}{}",
        i.mounted,
        i.target
            .as_ref()
            .map(|t| format!(" at {}", t.display()))
            .unwrap_or_default()
    );
    if let Some(d) = i.datapath {
        println!("data path:      {}", d.describe());
    }
    if let Some(p) = &i.pending {
        println!(
            "pending:        {}",
            serde_json::to_string(p).unwrap_or_default()
        );
    }
    if let Some(v) = i.kek_version {
        println!("kek version:    {v}");
    }
    println!(
        "luks2:          {} {}-bit, {}-byte sectors, {} x{}, uuid {}",
        i.luks.cipher,
        i.luks.key_size_bits,
        i.luks.sector_size,
        i.luks.pbkdf,
        i.luks.pbkdf_iterations,
        i.luks.uuid.as_deref().unwrap_or("-")
    );
    let age = |t: Option<u64>| match t {
        Some(t) => format!("{}s ago", unix_now().saturating_sub(t)),
        None => "never".into(),
    };
    println!("keyslot rotated: {}", age(i.slot_rotated_at));
    println!("kek rotated:    {}", age(i.kek_rotated_at));
    if let Some(t) = i.shredded_at {
        println!("shredded at:    {t}");
    }
    println!("volume key:     {}", i.volume_key_rotation);
}

pub fn run(c: VolumeCommand) -> anyhow::Result<i32> {
    let g = c.global;
    let r = match c.cmd {
        Sub::Create(a) => {
            let cred = credential(&a.token)?;
            let req = a.request()?;
            manager(&g, true).create(&req, &cred)
        }
        Sub::Mount { id, target, token } => return mount(&g, &id, &target, &token),
        Sub::Hold { id, role } => return hold(&g, &id, role.into()),
        Sub::HolderHost { socket } => {
            let cmd = holder_command(&g.root)?;
            match manager(&g, false).host_holders(&socket, cmd) {
                Ok(()) => return Ok(0),
                Err(e) => return fail(&g, e),
            }
        }
        Sub::UpgradeHolder { id } => {
            let m = manager(&g, false);
            m.upgrade_holder(&id).and_then(|_| m.status(&id))
        }
        Sub::Unmount { id, .. } => {
            let m = manager(&g, true);
            m.unmount(&id).and_then(|_| m.status(&id))
        }
        Sub::Resize { id, size, token } => {
            let cred = credential(&token)?;
            manager(&g, true).resize(&id, &cred, parse_size(&size)?)
        }
        Sub::Rotate { id, kind, token } => {
            let cred = credential(&token)?;
            let k = match kind {
                Kind::Kek => RotateKind::Kek,
                Kind::Slot => RotateKind::Slot,
            };
            manager(&g, true).rotate(&id, &cred, k)
        }
        Sub::Shred { id, token } => {
            let cred = credential(&token)?;
            manager(&g, true).shred(&id, &cred)
        }
        Sub::Status { id } => manager(&g, false).status(&id),
        Sub::BenchRbd(a) => return super::rbd_bench::run(a),
        Sub::Import { id, ceph } => {
            if ceph.image.is_none() {
                bail!("import needs --image (the RBD image holding the volume)");
            }
            manager(&g, false).import(&id, &ceph.store()?)
        }
        Sub::List => return list(&g),
        Sub::SetupTenant(a) => return setup_tenant(&g, &a),
        #[cfg(feature = "bench")]
        Sub::Passthrough(a) => return passthrough(&a),
        Sub::BenchProvision {
            tenant,
            count,
            token,
        } => return bench_provision(&g, &tenant, count, &token),
    };
    match r {
        Ok(i) => {
            print_info(&g, &i);
            Ok(0)
        }
        Err(e) => fail(&g, e),
    }
}

impl CreateArgs {
    fn request(&self) -> anyhow::Result<CreateRequest> {
        let protection = match self.protection {
            ProtectionMode::Envelope => ProtectionRequest::Envelope {
                mount: self.transit_mount.clone(),
                key: (self.transit_key.clone())
                    .unwrap_or_else(|| tenant::transit_key(&self.tenant)),
            },
            ProtectionMode::Kv => ProtectionRequest::Kv {
                backend: (self.kv_backend.clone())
                    .unwrap_or_else(|| tenant::kv_backend("secret", &self.tenant)),
            },
        };
        Ok(CreateRequest {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            size: parse_size(&self.size)?,
            protection,
            store: match (self.backend, &self.block_device) {
                (Backend::Rbd, _) => Some(self.ceph.store()?),
                (Backend::File, Some(p)) => Some(StoreSpec::Block {
                    path: p.to_string_lossy().into_owned(),
                }),
                (Backend::File, None) => None,
            },
            fs_type: self.fs,
        })
    }
}

fn list(g: &Global) -> anyhow::Result<i32> {
    let v = match manager(g, false).list() {
        Ok(v) => v,
        Err(e) => return fail(g, e),
    };
    if g.json {
        println!("{}", serde_json::to_string(&v)?);
        return Ok(0);
    }
    println!(
        "{:<24} {:<14} {:<12} {:<9} {:>12} MOUNTED",
        "ID", "TENANT", "STATE", "MODE", "SIZE"
    );
    for i in v {
        let mounted = i.target.filter(|_| i.mounted);
        println!(
            "{:<24} {:<14} {:<12} {:<9} {:>12} {}",
            i.id,
            i.tenant,
            i.state,
            i.protection,
            human_size(i.size),
            mounted.map_or_else(|| "-".into(), |t| t.display().to_string())
        );
    }
    Ok(0)
}

fn setup_tenant(g: &Global, a: &SetupTenantArgs) -> anyhow::Result<i32> {
    let admin = credential(&a.token)?;
    let m = manager(g, false);
    let c = m.config().kms.client(admin.token())?;
    let r = tenant::setup_tenant(&c, &a.tenant, &TenantLayout::default()).and_then(|p| {
        if let Some(out) = &a.token_out {
            let t = tenant::create_token(&c, &[p.as_str()], &a.token_ttl)?;
            write_secret_file(out, t.expose())
                .map_err(|e| VolError::io(format!("write {}", out.display()), e))?;
        }
        Ok(p)
    });
    let p = match r {
        Ok(p) => p,
        Err(e) => return fail(g, e),
    };
    let key = tenant::transit_key(&a.tenant);
    if g.json {
        println!(
            "{}",
            json!({"tenant": a.tenant, "policy": p, "transit_key": key})
        );
    } else {
        println!("tenant {}: transit key {key}, policy {p}", a.tenant);
    }
    Ok(0)
}

/// Seconds since the Unix epoch (for the ages of the `*_at` fields).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn write_secret_file(path: &Path, s: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(s.as_bytes())
}

/// The half of a volume holder a `hold` process is.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HoldRole {
    Start,
    Server,
    Keeper,
}

impl From<HoldRole> for HolderRole {
    fn from(r: HoldRole) -> Self {
        match r {
            HoldRole::Start => HolderRole::Start,
            HoldRole::Server => HolderRole::Server,
            HoldRole::Keeper => HolderRole::Keeper,
        }
    }
}

/// How this binary starts a volume holder: `strongroom volume --root ROOT hold ID`. The
/// program is this binary's path, also once it was replaced by a new one (an upgrade): the
/// holder's successors then run the new one.
pub fn holder_command(root: &Path) -> anyhow::Result<HolderCommand> {
    let exe = std::env::current_exe().context("own executable")?;
    let exe = match exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(p) => PathBuf::from(p),
        None => exe,
    };
    Ok(HolderCommand {
        program: exe,
        args: vec![
            "volume".into(),
            "--root".into(),
            root.as_os_str().to_owned(),
            "hold".into(),
        ],
    })
}

/// `mount`: the volume's filesystem at TARGET. On the userspace path its FUSE file is served
/// by a volume holder (its own process and session), the one process this command leaves.
fn mount(g: &Global, id: &str, target: &Path, t: &TokenArg) -> anyhow::Result<i32> {
    let cred @ Credential::Tenant(_) = credential(t)? else {
        bail!("mount needs the tenant's --token-file");
    };
    let target = std::path::absolute(target).context("target path")?;
    let m = manager(g, false).with_holder(holder_command(&g.root)?);
    match m.mount(id, &cred, &target) {
        Ok(i) => print_info(g, &i),
        Err(e) => return fail(g, e),
    }
    Ok(0)
}

/// `volume hold ID` (started by a mount or by the holder's other half, never by hand): for
/// the first server the nonce and the keyslot secret on stdin (read through its own
/// descriptor, no buffered copy) and one answer line on stdout; for a successor its link on
/// stdin.
fn hold(g: &Global, id: &str, role: HolderRole) -> anyhow::Result<i32> {
    use std::os::fd::AsFd;
    let input = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdin")?;
    let mut out = std::io::stdout();
    let cmd = holder_command(&g.root)?;
    match manager(g, false).hold(id, role, cmd, input, &mut out) {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("Error [{}]: {e}", e.kind());
            Ok(1)
        }
    }
}

/// What `volume passthrough` serves: a file, or an RBD image.
#[cfg(feature = "bench")]
#[derive(Args)]
pub struct PassthroughArgs {
    /// The plain file to serve.
    #[arg(
        long,
        required_unless_present = "rbd_image",
        conflicts_with = "rbd_image"
    )]
    file: Option<PathBuf>,
    /// The RBD image to serve instead of a file.
    #[arg(long)]
    rbd_image: Option<String>,
    /// The image's pool.
    #[arg(long, default_value = "rbd")]
    pool: String,
    /// ceph.conf naming the monitors and keyring (default: Ceph's own search, CEPH_CONF).
    #[arg(long)]
    ceph_conf: Option<PathBuf>,
    /// Ceph user (client.<user>).
    #[arg(long, default_value = "admin")]
    ceph_user: String,
    /// Directory to mount the FUSE file on (`<dir>/volume`).
    #[arg(long)]
    dir: PathBuf,
}

#[cfg(feature = "bench")]
fn passthrough(a: &PassthroughArgs) -> anyhow::Result<i32> {
    let dev: Box<dyn strongroom_luks::BlockDevice> = match (&a.file, &a.rbd_image) {
        (Some(file), _) => Box::new(strongroom_luks::FileDevice::open(file, true)?),
        (None, Some(image)) => {
            let c = strongroom_rbd::Cluster::from_conf(a.ceph_conf.as_deref(), &a.ceph_user)?;
            let img = c.ioctx(&a.pool, "", false)?.open(image)?;
            Box::new(strongroom_volume::RbdDevice::new(img))
        }
        (None, None) => anyhow::bail!("--file or --rbd-image is required"),
    };
    // Data at the same offset as an encrypted volume's (after its 16 MiB LUKS2 header).
    strongroom_volume::bench::serve_plain_device(dev, 16 << 20, &a.dir, || {
        println!("ready");
        let _ = std::io::stdout().flush();
    })?;
    Ok(0)
}

fn bench_provision(g: &Global, tenant: &str, count: usize, t: &TokenArg) -> anyhow::Result<i32> {
    let cred = credential(t)?;
    let mut g2 = g.clone();
    g2.cache_ttl = 0; // every open unwraps through the KMS
    let m = manager(&g2, false);
    let mut times = Vec::with_capacity(count);
    let run_id = std::process::id();
    for i in 0..count {
        let req = CreateRequest {
            id: format!("bench-{run_id}-{i}"),
            tenant: tenant.into(),
            size: 64 << 20,
            protection: ProtectionRequest::envelope_for(tenant),
            store: None,
            fs_type: FsType::Ext4,
        };
        let t0 = Instant::now();
        m.create(&req, &cred)?;
        let v = m.open(&req.id, &cred)?;
        let mut b = [0u8; 4096];
        v.read(0, &mut b)?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "volume provision p50_ms={:.2} p99_ms={:.2} count={count} kms_round_trips_per_volume=2",
        pct(0.5),
        pct(0.99)
    );
    Ok(0)
}
