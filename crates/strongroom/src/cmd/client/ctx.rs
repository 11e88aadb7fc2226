//! What every client command shares: global flags, the API client, the token helper,
//! `k=v` argument parsing, and errors with the Vault CLI's exit codes.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value};
use strongroom_vault_client::{
    split_addresses, Client, ClientConfig, Error as ApiErr, SecretString,
};

use super::output::Format;

/// A failed command: the message for stderr and the exit code (1 local/usage, 2 server).
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

pub type CliResult<T = i32> = Result<T, CliError>;

impl CliError {
    pub fn usage(msg: impl Into<String>) -> Self {
        CliError {
            message: msg.into(),
            code: 1,
        }
    }

    /// An error talking to the server, prefixed like `Error reading sys/auth: ...`.
    /// Configuration problems are local (exit 1); everything else exit 2.
    pub fn api(context: impl std::fmt::Display, e: ApiErr) -> Self {
        let code = if matches!(e, ApiErr::Config(_)) { 1 } else { 2 };
        CliError {
            message: format!("{context}: {e}"),
            code,
        }
    }
}

/// A closure-friendly `map_err` for API calls.
pub fn ctx(context: impl std::fmt::Display) -> impl FnOnce(ApiErr) -> CliError {
    move |e| CliError::api(context, e)
}

/// Flags every client command accepts (`-format`, `-address`, `-namespace`).
#[derive(Args, Clone)]
pub struct Common {
    /// Output format: "table" or "json" (VAULT_FORMAT).
    #[arg(long, env = "VAULT_FORMAT", default_value = "table")]
    pub format: String,
    /// Server address, overriding VAULT_ADDR. Several comma-separated addresses (the nodes
    /// of a cluster) are tried in turn when one is down, sealed or has no active node.
    #[arg(long)]
    pub address: Option<String>,
    /// Namespace (sent as X-Vault-Namespace), overriding VAULT_NAMESPACE.
    #[arg(long)]
    pub namespace: Option<String>,
}

impl Common {
    pub fn format(&self) -> CliResult<Format> {
        Format::parse(&self.format).map_err(CliError::usage)
    }

    /// The API client: environment + flags, token from VAULT_TOKEN or the token helper.
    pub fn client(&self) -> CliResult<Client> {
        self.client_with(true)
    }

    /// The API client without any token (login, unauthenticated sys calls).
    pub fn client_without_token(&self) -> CliResult<Client> {
        self.client_with(false)
    }

    fn client_with(&self, with_token: bool) -> CliResult<Client> {
        let mut cfg = ClientConfig::from_env()
            .map_err(|e| CliError::usage(format!("Error initializing client: {e}")))?;
        if let Some(a) = &self.address {
            cfg.addresses = split_addresses(a);
        }
        if let Some(ns) = &self.namespace {
            cfg.namespace = Some(ns.clone());
        }
        if let Some(ns) = cfg.namespace.as_mut() {
            if !ns.ends_with('/') {
                ns.push('/');
            }
        }
        if !with_token {
            cfg.token = None;
        } else if cfg.token.is_none() {
            cfg.token = token_helper_get();
        }
        Client::new(cfg).map_err(|e| CliError::usage(format!("Error initializing client: {e}")))
    }
}

/// `~/.vault-token`, where the Vault CLI's default token helper keeps the token.
pub fn token_helper_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".vault-token"))
}

pub fn token_helper_get() -> Option<SecretString> {
    let p = token_helper_path()?;
    let raw = zeroize::Zeroizing::new(std::fs::read_to_string(p).ok()?);
    let t = raw.trim();
    (!t.is_empty()).then(|| SecretString::new(t))
}

/// Stores the token with mode 0600, like the Vault token helper.
pub fn token_helper_store(token: &SecretString) -> CliResult<()> {
    let p = token_helper_path()
        .ok_or_else(|| CliError::usage("Error storing token: HOME is not set"))?;
    let tmp = p.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(token.expose().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)
    };
    write().map_err(|e| CliError::usage(format!("Error storing token: {e}")))
}

/// Turns terminal echo off (or back on) with `stty`, so typed secrets do not show.
fn set_echo(on: bool) {
    if let Ok(tty) = std::fs::File::open("/dev/tty") {
        let _ = std::process::Command::new("stty")
            .arg(if on { "echo" } else { "-echo" })
            .stdin(tty)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Reads one secret line: from the terminal with a prompt and echo off, or from piped stdin.
pub fn read_secret_line(prompt: &str) -> CliResult<SecretString> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("{prompt}");
        set_echo(false);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    let r = stdin.lock().read_line(&mut line);
    if tty {
        set_echo(true);
        eprintln!();
    }
    r.map_err(|e| CliError::usage(format!("Error reading input: {e}")))?;
    let t = line.trim();
    if t.is_empty() {
        return Err(CliError::usage("Error: no value given on standard input"));
    }
    Ok(SecretString::new(t))
}

fn read_stdin_all() -> CliResult<zeroize::Zeroizing<String>> {
    let mut s = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::usage(format!("Failed to read stdin: {e}")))?;
    Ok(s)
}

fn insert(m: &mut Map<String, Value>, k: String, v: Value) {
    // A repeated key becomes a list, as the Go CLI's kv builder does.
    match m.remove(&k) {
        None => {
            m.insert(k, v);
        }
        Some(Value::Array(mut a)) => {
            a.push(v);
            m.insert(k, Value::Array(a));
        }
        Some(prev) => {
            m.insert(k, Value::Array(vec![prev, v]));
        }
    }
}

/// Parses `k=v` arguments like the Vault CLI: `k=@file` reads a file, `k=-` reads stdin,
/// a lone `-` reads a JSON object from stdin, `@file.json` reads a JSON object from a file.
/// Values are strings (the server coerces them).
pub fn parse_kv_args(args: &[String]) -> CliResult<Map<String, Value>> {
    let mut m = Map::new();
    let mut stdin_used = false;
    for a in args {
        if a == "-" || a.starts_with('@') {
            let text =
                if a == "-" {
                    if stdin_used {
                        return Err(CliError::usage(
                            "Failed to parse K=V data: stdin can only be read once",
                        ));
                    }
                    stdin_used = true;
                    read_stdin_all()?
                } else {
                    let p = &a[1..];
                    zeroize::Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
                        CliError::usage(format!("Failed to parse K=V data: {p}: {e}"))
                    })?)
                };
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                CliError::usage(format!("Failed to parse K=V data: invalid JSON: {e}"))
            })?;
            let Value::Object(obj) = v else {
                return Err(CliError::usage(
                    "Failed to parse K=V data: JSON input must be an object",
                ));
            };
            for (k, v) in obj {
                insert(&mut m, k, v);
            }
            continue;
        }
        let Some((k, v)) = a.split_once('=') else {
            return Err(CliError::usage(format!(
                "Failed to parse K=V data: invalid key/value pair {a:?}: format must be key=value"
            )));
        };
        if k.is_empty() {
            return Err(CliError::usage(format!(
                "Failed to parse K=V data: invalid key/value pair {a:?}: empty key"
            )));
        }
        let value = if v == "-" {
            if stdin_used {
                return Err(CliError::usage(
                    "Failed to parse K=V data: stdin can only be read once",
                ));
            }
            stdin_used = true;
            let s = read_stdin_all()?;
            s.strip_suffix('\n').unwrap_or(&s).to_owned()
        } else if let Some(p) = v.strip_prefix('@') {
            std::fs::read_to_string(p)
                .map_err(|e| CliError::usage(format!("Failed to parse K=V data: {p}: {e}")))?
        } else {
            v.to_owned()
        };
        insert(&mut m, k.to_owned(), Value::String(value));
    }
    Ok(m)
}

/// A mount or API path without leading/trailing slashes.
pub fn sanitize_path(p: &str) -> String {
    p.trim_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_args() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.txt");
        std::fs::write(&f, "from-file").unwrap();
        let m = parse_kv_args(&[
            "a=1".into(),
            "b=x=y".into(),
            format!("c=@{}", f.display()),
            "a=2".into(),
        ])
        .unwrap();
        assert_eq!(m["a"], serde_json::json!(["1", "2"]));
        assert_eq!(m["b"], "x=y");
        assert_eq!(m["c"], "from-file");
        assert!(parse_kv_args(&["novalue".into()]).is_err());
    }
}
