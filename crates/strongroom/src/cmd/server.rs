//! `strongroom server` — the key manager, configured like `bao server`.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use strongroom_kms::config::{ListenerConfig, ServerConfig, StorageConfig};
use strongroom_kms::server;

#[derive(Args)]
pub struct ServerArgs {
    /// Path to a Vault/OpenBao-style HCL configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Development mode: in memory, initialized, unsealed, root token printed, kv-v2 at secret/.
    #[arg(long)]
    pub dev: bool,
    /// Root token id in dev mode (default: random).
    #[arg(long, value_name = "ID")]
    pub dev_root_token_id: Option<String>,
    /// Listen address in dev mode.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8200")]
    pub dev_listen_address: String,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(a: ServerArgs) -> anyhow::Result<i32> {
    let mut cfg = match (&a.config, a.dev) {
        (Some(path), false) => ServerConfig::load(path)?,
        (None, true) | (Some(_), true) => {
            let mut c = match &a.config {
                Some(p) => ServerConfig::load(p)?,
                None => ServerConfig {
                    storage: StorageConfig::Inmem,
                    listeners: vec![],
                    api_addr: None,
                    cluster_addr: None,
                    ui: false,
                    disable_mlock: true,
                    log_level: None,
                    audit: vec![],
                    unsafe_allow_api_audit_creation: false,
                },
            };
            c.storage = StorageConfig::Inmem;
            c.listeners = vec![ListenerConfig {
                address: a.dev_listen_address.clone(),
                tls_disable: true,
                ..Default::default()
            }];
            c
        }
        (None, false) => anyhow::bail!("either -config FILE or -dev is required"),
    };
    cfg.apply_env(|k| std::env::var(k).ok());
    let level = a
        .log_level
        .clone()
        .or(cfg.log_level.clone())
        .unwrap_or_else(|| "info".into());
    init_logging(&level);
    // A few more workers than cores: a storage write briefly holds its worker while the
    // group commit it joined reaches the disk.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    // The blocking pool runs logins (password hashing, bounded separately) and sys/
    // administration: a flood of them must not start hundreds of threads (each a stack and,
    // with glibc, possibly an allocator arena).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(4))
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let core = server::build_core(&cfg, a.dev).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ui = cfg.ui || a.dev;
        let serve = tokio::spawn(server::serve_with_ui(
            core.clone(),
            cfg.listeners.clone(),
            ui,
            Some(tx),
        ));
        if let Ok(addrs) = rx.await {
            if a.dev {
                let (root, key) = tokio::task::spawn_blocking({
                    let core = core.clone();
                    let id = a.dev_root_token_id.clone();
                    move || core.init_dev(id.as_deref())
                })
                .await?
                .map_err(|e| anyhow::anyhow!("dev init: {}", e.errors.join("; ")))?;
                let addr = addrs.first().map(|a| a.to_string()).unwrap_or_default();
                println!("==> Strongroom server started in dev mode (in memory, unsealed).\n");
                println!("WARNING! dev mode is enabled! Data is kept in memory only and is lost on exit.");
                println!("\nYou may need to set the following environment variables:\n");
                println!("    $ export VAULT_ADDR='http://{addr}'\n");
                println!("The web UI is at http://{addr}/ui/\n");
                println!("The unseal key and root token are displayed below in case you want to");
                println!("seal/unseal the server or re-authenticate.\n");
                println!("Unseal Key: {key}");
                println!("Root Token: {root}\n");
                println!("Development mode should NOT be used in production installations!");
            } else {
                for addr in addrs {
                    println!("==> Strongroom server listening on {addr} (sealed until unsealed with `strongroom operator unseal`)");
                }
            }
        }
        serve.await??;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}
