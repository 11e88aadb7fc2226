//! Vault-compatible operator CLI: `operator init|unseal|seal`, `status`, `login`, `auth`,
//! `secrets`, `policy`, `read|write|list|delete`, `kv`, `token`. Works against
//! `strongroom server`, OpenBao and Vault. Output and exit codes follow the Vault CLI:
//! 0 success, 1 local/usage error, 2 error answered by the server (and `status`: 2 = sealed).
//!
//! Environment: `VAULT_ADDR` (default `https://127.0.0.1:8200`), `VAULT_TOKEN` (else the
//! token stored by `login` in `~/.vault-token`), `VAULT_CACERT`, `VAULT_CLIENT_CERT`/`KEY`,
//! `VAULT_SKIP_VERIFY`, `VAULT_FORMAT`, each with a `BAO_*` fallback.

mod ctx;
mod kv;
mod logical;
mod operator;
mod output;
mod sys;
mod token;

use clap::Subcommand;

// No `Debug` on the argument types: they carry unseal keys, tokens and passwords.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Operator commands: init, unseal, seal.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Print the seal status (exit 0 unsealed, 2 sealed, 1 error).
    Status(operator::StatusArgs),
    /// Authenticate with a token or userpass and store the token in ~/.vault-token.
    Login(token::LoginArgs),
    /// Manage auth methods.
    #[command(subcommand)]
    Auth(sys::AuthCommand),
    /// Manage secrets engines.
    #[command(subcommand)]
    Secrets(sys::SecretsCommand),
    /// Manage ACL policies.
    #[command(subcommand)]
    Policy(sys::PolicyCommand),
    /// Read data at a path.
    Read(logical::ReadArgs),
    /// Write data to a path (k=v arguments).
    Write(logical::WriteArgs),
    /// List keys under a path.
    List(logical::PathArgs),
    /// Delete data at a path.
    Delete(logical::PathArgs),
    /// Key/value secrets (KV v1 and v2).
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Token operations.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Print the version.
    Version,
}

/// Runs a client command and returns the process exit code. Errors are printed to stderr
/// here; the returned `Err` is reserved for failures outside the command itself.
pub fn run(cmd: ClientCommand) -> anyhow::Result<i32> {
    let r = match cmd {
        ClientCommand::Operator(c) => operator::run(c),
        ClientCommand::Status(a) => operator::status(a),
        ClientCommand::Login(a) => token::login(a),
        ClientCommand::Auth(c) => sys::auth(c),
        ClientCommand::Secrets(c) => sys::secrets(c),
        ClientCommand::Policy(c) => sys::policy(c),
        ClientCommand::Read(a) => logical::read(a),
        ClientCommand::Write(a) => logical::write(a),
        ClientCommand::List(a) => logical::list(a),
        ClientCommand::Delete(a) => logical::delete(a),
        ClientCommand::Kv(c) => kv::run(c),
        ClientCommand::Token(c) => token::run(c),
        ClientCommand::Version => {
            println!("Strongroom v{}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
    };
    Ok(match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", e.message);
            e.code
        }
    })
}
