//! The `strongroom` binary: one executable for the key manager (`server`), its operator CLI
//! (Vault-compatible `operator`, `kv`, `read`, `write`, ...), the LUKS2 tool (`luks`) and,
//! later, the volume manager and CSI driver.
//!
//! Only argument parsing and exit codes live here; every command delegates to a library crate.

mod args;
mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strongroom",
    version,
    about = "Encrypted per-tenant volumes and a Vault-compatible key manager"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the key manager (Vault/OpenBao HTTP API).
    Server(cmd::server::ServerArgs),
    /// LUKS2 volumes: format, dump, test and manage keyslots.
    #[command(subcommand)]
    Luks(cmd::luks::LuksCommand),
    /// Encrypted volumes: create, mount, unmount, resize, rotate, shred, list, status.
    Volume(cmd::volume::VolumeCommand),
    /// Show the whole system working on embedded defaults (two tenants, volumes, isolation,
    /// rotation, shred).
    Demo(cmd::demo::DemoArgs),
    /// Kubernetes CSI driver (Identity, Controller, Node) on a unix socket.
    Csi(cmd::csi::CsiArgs),
    #[command(flatten)]
    Client(cmd::client::ClientCommand),
}

fn main() {
    // Vault's CLI uses Go-style single-dash long flags (`-dev`, `-key-shares=5`); accept both.
    let argv = args::normalize(std::env::args_os());
    // Like the Vault CLI: usage errors exit 1 (clap's default would be 2, which the Vault
    // CLI reserves for errors reported by the server); --help and --version exit 0.
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        Command::Server(a) => cmd::server::run(a),
        Command::Luks(c) => cmd::luks::run(c),
        Command::Volume(c) => cmd::volume::run(c),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Csi(a) => cmd::csi::run(a),
        Command::Client(c) => cmd::client::run(c),
    };
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every command says what it is for in `--help` (positionals and
    /// options alike; clap's own --help/--version excepted).
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && !a.is_hide_set() && a.get_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "strongroom", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
