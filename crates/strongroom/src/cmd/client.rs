//! Vault-compatible operator CLI (`operator init`, `status`, `kv put`, ...) — owned by the
//! client work (issue 2).

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Print the seal status of the server.
    Status,
}

pub fn run(cmd: ClientCommand) -> anyhow::Result<i32> {
    match cmd {
        ClientCommand::Status => anyhow::bail!("status: not built yet"),
    }
}
