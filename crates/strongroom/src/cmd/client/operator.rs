//! `operator init|unseal|seal` and `status`.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use strongroom_vault_client::{InitRequest, SealStatus, SecretString};

use super::ctx::{ctx, read_secret_line, CliError, CliResult, Common};
use super::output::{kv_table, print_json, Format};

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Initialize the server: create the unseal key shares and the initial root token.
    Init(InitArgs),
    /// Give one unseal key share (from the argument, or from stdin when absent).
    Unseal(UnsealArgs),
    /// Seal the server.
    Seal(SealArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Number of key shares to split the root key into.
    #[arg(long = "key-shares", default_value_t = 5)]
    pub key_shares: u32,
    /// Number of shares required to reconstruct the root key.
    #[arg(long = "key-threshold", default_value_t = 3)]
    pub key_threshold: u32,
    /// Only print whether the server is initialized (exit 0 yes, 2 no).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub status: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct UnsealArgs {
    /// Discard the shares given so far.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub reset: bool,
    #[command(flatten)]
    pub common: Common,
    /// The unseal key share (hex or base64). Prefer stdin: arguments are visible to others.
    pub key: Option<String>,
}

#[derive(Args)]
pub struct SealArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: OperatorCommand) -> CliResult {
    match cmd {
        OperatorCommand::Init(a) => init(a),
        OperatorCommand::Unseal(a) => unseal(a),
        OperatorCommand::Seal(a) => {
            let c = a.common.client()?;
            c.seal().map_err(ctx("Error sealing"))?;
            println!("Success! Vault is sealed.");
            Ok(0)
        }
    }
}

fn init(a: InitArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client_without_token()?;
    if a.status {
        let inited = c.init_status().map_err(ctx("Error checking init status"))?;
        if inited {
            println!("Vault is initialized");
            return Ok(0);
        }
        println!("Vault is not initialized");
        return Ok(2);
    }
    let r = c
        .init(&InitRequest::shamir(a.key_shares, a.key_threshold))
        .map_err(ctx("Error initializing"))?;
    let expose =
        |v: &[SecretString]| -> Vec<String> { v.iter().map(|k| k.expose().to_owned()).collect() };
    if format == Format::Json {
        let rec_b64 = expose(&r.recovery_keys_base64);
        let rec_hex = expose(&r.recovery_keys);
        let out = json!({
            "unseal_keys_b64": expose(&r.keys_base64),
            "unseal_keys_hex": expose(&r.keys),
            "unseal_shares": a.key_shares,
            "unseal_threshold": a.key_threshold,
            "recovery_keys_b64": if rec_b64.is_empty() { Value::Null } else { json!(rec_b64) },
            "recovery_keys_hex": if rec_hex.is_empty() { Value::Null } else { json!(rec_hex) },
            "recovery_keys_shares": 0,
            "recovery_keys_threshold": 0,
            "root_token": r.root_token.expose(),
        });
        print_json(&out);
        return Ok(0);
    }
    let keys = if r.keys_base64.is_empty() {
        &r.keys
    } else {
        &r.keys_base64
    };
    for (i, k) in keys.iter().enumerate() {
        println!("Unseal Key {}: {}", i + 1, k.expose());
    }
    println!();
    println!("Initial Root Token: {}", r.root_token.expose());
    let (n, t) = (a.key_shares, a.key_threshold);
    println!();
    println!(
        "Vault initialized with {n} key shares and a key threshold of {t}. Please securely\n\
         distribute the key shares printed above. When the Vault is re-sealed,\n\
         restarted, or stopped, you must supply at least {t} of these keys to unseal it\n\
         before it can start servicing requests.\n\n\
         Vault does not store the generated root key. Without at least {t} keys to\n\
         reconstruct the root key, Vault will remain permanently sealed!\n\n\
         It is possible to generate new unseal keys, provided you have a quorum\n\
         of existing unseal keys shares. See \"strongroom operator rotate-keys\" for more\n\
         information."
    );
    Ok(0)
}

fn unseal(a: UnsealArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client_without_token()?;
    let st = if a.reset {
        c.unseal_reset()
            .map_err(ctx("Error resetting unseal process"))?
    } else {
        let key = match a.key {
            Some(k) if k != "-" => SecretString::new(k),
            _ => read_secret_line("Unseal Key (will be hidden): ")?,
        };
        c.unseal(&key).map_err(ctx("Error unsealing"))?
    };
    if format == Format::Json {
        print_json(&st);
    } else {
        let leader = if st.sealed { None } else { c.leader().ok() };
        print!("{}", kv_table(status_rows(&st, leader.as_ref())));
    }
    Ok(0)
}

/// `status`: exit 0 unsealed, 2 sealed, 1 error.
pub fn status(a: StatusArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let st = c.seal_status().map_err(|e| CliError {
        message: format!("Error checking seal status: {e}"),
        code: 1,
    })?;
    let leader = if st.sealed { None } else { c.leader().ok() };
    if format == Format::Json {
        let mut out = match serde_json::to_value(&st) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let ha = leader
            .as_ref()
            .and_then(|l| l.get("ha_enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.insert("ha_enabled".into(), json!(ha));
        if let (true, Some(l)) = (ha, &leader) {
            for k in [
                "is_self",
                "active_time",
                "leader_address",
                "leader_cluster_address",
                "raft_committed_index",
                "raft_applied_index",
            ] {
                if let Some(v) = l.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
        }
        print_json(&out);
    } else {
        print!("{}", kv_table(status_rows(&st, leader.as_ref())));
    }
    Ok(if st.sealed { 2 } else { 0 })
}

fn status_rows(st: &SealStatus, leader: Option<&Map<String, Value>>) -> Vec<(String, String)> {
    let mut rows = vec![
        ("Seal Type".to_owned(), st.seal_type.clone()),
        ("Initialized".to_owned(), st.initialized.to_string()),
        ("Sealed".to_owned(), st.sealed.to_string()),
        ("Total Shares".to_owned(), st.n.to_string()),
        ("Threshold".to_owned(), st.t.to_string()),
    ];
    if st.sealed {
        rows.push((
            "Unseal Progress".into(),
            format!("{}/{}", st.progress, st.t),
        ));
        rows.push((
            "Unseal Nonce".into(),
            if st.nonce.is_empty() {
                "n/a".into()
            } else {
                st.nonce.clone()
            },
        ));
    }
    rows.push(("Version".into(), st.version.clone()));
    if !st.commit_date.is_empty() {
        rows.push(("Commit Date".into(), st.commit_date.clone()));
    }
    rows.push(("Storage Type".into(), st.storage_type.clone()));
    if let Some(n) = st.cluster_name.as_deref().filter(|s| !s.is_empty()) {
        rows.push(("Cluster Name".into(), n.to_owned()));
    }
    if let Some(id) = st.cluster_id.as_deref().filter(|s| !s.is_empty()) {
        rows.push(("Cluster ID".into(), id.to_owned()));
    }
    let s = |l: &Map<String, Value>, k: &str| {
        l.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let ha = leader
        .and_then(|l| l.get("ha_enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(st.storage_type == "raft");
    rows.push(("HA Enabled".into(), ha.to_string()));
    if let (true, Some(l)) = (ha, leader) {
        rows.push((
            "HA Cluster".into(),
            s(l, "leader_cluster_address").unwrap_or_else(|| "n/a".into()),
        ));
        let is_self = l.get("is_self").and_then(Value::as_bool).unwrap_or(false);
        let active = is_self && s(l, "active_time").is_some();
        rows.push((
            "HA Mode".into(),
            if active { "active" } else { "standby" }.into(),
        ));
        if active {
            rows.push((
                "Active Since".into(),
                s(l, "active_time").unwrap_or_default(),
            ));
        } else if let Some(addr) = s(l, "leader_address") {
            rows.push(("Active Node Address".into(), addr));
        }
        for (k, label) in [
            ("raft_committed_index", "Raft Committed Index"),
            ("raft_applied_index", "Raft Applied Index"),
        ] {
            if let Some(v) = l.get(k) {
                rows.push((label.into(), v.to_string()));
            }
        }
    }
    rows
}
