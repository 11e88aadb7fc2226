//! `strongroom server` — the key manager.

use clap::Args;

#[derive(Args)]
pub struct ServerArgs {
    /// Path to a Vault/OpenBao-style HCL configuration file.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Development mode: in memory, initialized, unsealed, kv-v2 at secret/.
    #[arg(long)]
    pub dev: bool,
}

pub fn run(_a: ServerArgs) -> anyhow::Result<i32> {
    anyhow::bail!("server: not built yet")
}
