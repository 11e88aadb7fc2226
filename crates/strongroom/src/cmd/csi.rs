//! `strongroom csi --endpoint unix:///csi/csi.sock --node-id N --mode controller|node|all` —
//! the Kubernetes CSI driver (issue 6).
//!
//! The configuration (endpoint, KMS connection catalog, node identity, admin token) is
//! parsed and validated here; the services live in `strongroom-csi`, the volumes in
//! `strongroom-volume` (through `strongroom_csi::ManagerBackend`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use strongroom_csi::{
    ClusterMap, DriverConfig, KmsCatalog, ManagerBackend, ManagerBackendConfig, Mode, SecretFiles,
    VolumeBackend,
};
use strongroom_volume::{HolderLauncher, SecretString};

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Controller,
    Node,
    All,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Controller => Mode::Controller,
            ModeArg::Node => Mode::Node,
            ModeArg::All => Mode::All,
        }
    }
}

#[derive(Args)]
pub struct CsiArgs {
    /// CSI endpoint: unix:///path (also unix:/path or /path).
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    endpoint: String,
    /// This node's id (NodeGetInfo); in Kubernetes, the node name (spec.nodeName).
    #[arg(long, env = "NODE_ID")]
    node_id: Option<String>,
    /// Which services to serve.
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    /// Socket permissions (octal): 0600, or 0660 when sidecars run under a shared group.
    #[arg(long, default_value = "0660", value_parser = parse_mode)]
    socket_mode: u32,
    /// Directory of the mounted KMS connection ConfigMap: `config.json` ({kmsID: {...}}) or
    /// one file per kmsID (ceph-csi's csi-kms-connection-details). Its VAULT_ADDR (and a
    /// StorageClass's kmsAddress) may list the nodes of a key-manager cluster,
    /// comma-separated: the driver moves to the next one when a node fails.
    #[arg(long, value_name = "DIR")]
    kms_config_dir: Option<PathBuf>,
    /// Where Secrets named by the KMS config (VAULT_CACERT, VAULT_CLIENT_CERT/KEY) are
    /// mounted, as DIR/<secret>/cert and DIR/<secret>/key.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/strongroom/kms-secrets"
    )]
    kms_secrets_dir: PathBuf,
    /// kmsID used by StorageClasses that name no KMS connection.
    #[arg(long)]
    default_kms_id: Option<String>,
    /// NodeGetInfo max_volumes_per_node (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_volumes_per_node: i64,
    /// Milliseconds a call waits for another operation on the same volume before ABORTED.
    #[arg(long, default_value_t = 2000)]
    lock_patience_ms: u64,
    /// Directory holding the volumes (volume manager root).
    #[arg(long, default_value = "/var/lib/strongroom/volumes")]
    root: PathBuf,
    /// File with the driver's own KMS token, used to crypto-shred volumes when DeleteVolume
    /// arrives without the tenant's secret.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Cluster id bound into every wrapped volume secret (must stay the same for the
    /// cluster's lifetime: volumes do not open under another one).
    #[arg(long, default_value = "kubernetes")]
    cluster_id: String,
    /// Seconds an unwrapped volume key stays cached in memory (zeroized on eviction).
    #[arg(long, default_value_t = 300)]
    key_cache_ttl_secs: u64,
    /// The socket of a holder host (`strongroom volume holder-host`) that starts the volume
    /// holders of userspace mounts, so that they survive a restart of this container.
    /// Without it the holders are this process's children.
    #[arg(long, env = "STRONGROOM_HOLDER_HOST")]
    holder_host: Option<PathBuf>,
    /// Largest volume CreateVolume accepts, in bytes (0: no limit but free space).
    #[arg(long, default_value_t = 0)]
    max_volume_bytes: u64,
    /// ceph-csi's cluster map (`config.json` of the ceph-csi-config ConfigMap: clusterID →
    /// monitors) for RBD-backed volumes; Ceph keys come with each request's secrets.
    #[arg(long, value_name = "FILE")]
    ceph_cluster_map: Option<PathBuf>,
    /// Log filter (RUST_LOG overrides).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode"))?;
    if m & !0o777 != 0 || m & 0o007 != 0 {
        return Err(format!("{s:?}: use 0600 or 0660 (no access for others)"));
    }
    Ok(m)
}

/// The validated driver configuration.
fn config(a: &CsiArgs) -> anyhow::Result<DriverConfig> {
    strongroom_csi::parse_endpoint(&a.endpoint)?;
    let mode: Mode = a.mode.into();
    let node_id = match (&a.node_id, mode.node()) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, true) => bail!("--node-id (or NODE_ID) is required for --mode node|all"),
        (_, false) => String::new(),
    };
    let files = SecretFiles {
        dir: a.kms_secrets_dir.clone(),
    };
    let catalog = match &a.kms_config_dir {
        Some(d) => KmsCatalog::load_dir(d, &files)
            .with_context(|| format!("KMS connection config in {}", d.display()))?,
        None => KmsCatalog::default(),
    }
    .with_default(a.default_kms_id.clone())?;
    let mut cfg = DriverConfig::new(node_id, mode);
    cfg.catalog = catalog;
    cfg.secret_files = files;
    cfg.max_volumes_per_node = a.max_volumes_per_node;
    cfg.lock_patience = Duration::from_millis(a.lock_patience_ms);
    if let Some(p) = &a.ceph_cluster_map {
        cfg.ceph_clusters = ClusterMap::load(p).map_err(anyhow::Error::msg)?;
    }
    Ok(cfg)
}

/// The volume manager behind the CSI services.
fn backend(a: &CsiArgs, cfg: &DriverConfig) -> anyhow::Result<Arc<dyn VolumeBackend>> {
    let admin_token = match &a.admin_token_file {
        Some(p) => {
            let t = zeroize::Zeroizing::new(
                std::fs::read_to_string(p)
                    .with_context(|| format!("read the admin token file {}", p.display()))?,
            );
            let t = t.trim();
            if t.is_empty() {
                bail!("the admin token file {} is empty", p.display());
            }
            Some(SecretString::new(t))
        }
        None => {
            tracing::warn!(
                "no --admin-token-file: DeleteVolume without the tenant's secret will fail"
            );
            None
        }
    };
    let probe_kms = cfg.catalog.default_connection().cloned();
    let b = ManagerBackend::new(ManagerBackendConfig {
        root: a.root.clone(),
        cluster_id: a.cluster_id.clone(),
        node_id: cfg.node_id.clone(),
        admin_token,
        probe_kms,
        cache_ttl: Duration::from_secs(a.key_cache_ttl_secs),
        kms_timeout: Duration::from_secs(10),
        max_volume_size: (a.max_volume_bytes > 0).then_some(a.max_volume_bytes),
        holder: Some(match &a.holder_host {
            Some(socket) => HolderLauncher::Host(socket.clone()),
            None => HolderLauncher::Spawn(super::volume::holder_command(&a.root)?),
        }),
        ceph_clusters: cfg.ceph_clusters.clone(),
    })?;
    Ok(Arc::new(b))
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(a: CsiArgs) -> anyhow::Result<i32> {
    init_logging(&a.log_level);
    let cfg = config(&a)?;
    let backend = backend(&a, &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(strongroom_csi::serve(
        &a.endpoint,
        a.socket_mode,
        cfg,
        backend,
        strongroom_csi::signal(),
    ))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_modes() {
        assert_eq!(parse_mode("0600").unwrap(), 0o600);
        assert_eq!(parse_mode("660").unwrap(), 0o660);
        assert!(parse_mode("0666").is_err());
        assert!(parse_mode("rw").is_err());
    }
}
