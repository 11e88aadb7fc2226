//! `auth enable|list|disable`, `secrets enable|list|disable`, `policy write|read|list|delete`.

use std::io::Read;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use strongroom_vault_client::MountInput;

use super::ctx::{ctx, sanitize_path, CliError, CliResult, Common};
use super::logical::PathArgs;
use super::output::{columns, print_json, print_secret, Format};

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Enable an auth method (e.g. userpass).
    Enable(EnableArgs),
    /// List enabled auth methods.
    List(ListArgs),
    /// Disable an auth method.
    Disable(PathArgs),
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Enable a secrets engine (kv, kv-v2, transit).
    Enable(EnableArgs),
    /// List enabled secrets engines.
    List(ListArgs),
    /// Disable a secrets engine.
    Disable(PathArgs),
}

#[derive(Args)]
pub struct EnableArgs {
    /// Mount path (default: the type).
    #[arg(long)]
    pub path: Option<String>,
    /// Human-friendly description of the mount.
    #[arg(long, default_value = "")]
    pub description: String,
    /// KV version (1 or 2) for -version=2 kv.
    #[arg(long)]
    pub version: Option<u32>,
    #[command(flatten)]
    pub common: Common,
    /// Engine or method type.
    #[arg(value_name = "TYPE")]
    pub kind: String,
}

#[derive(Args)]
pub struct ListArgs {
    /// Accepted for compatibility; the table is the same.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub detailed: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Upload a policy from a file or stdin ("-").
    Write(PolicyWriteArgs),
    /// Print a policy.
    Read(PolicyNameArgs),
    /// List policies.
    List(ListArgs),
    /// Delete a policy.
    Delete(PolicyNameArgs),
}

#[derive(Args)]
pub struct PolicyWriteArgs {
    #[command(flatten)]
    pub common: Common,
    /// The policy's name.
    pub name: String,
    /// Policy file, or "-" for stdin.
    pub file: String,
}

#[derive(Args)]
pub struct PolicyNameArgs {
    #[command(flatten)]
    pub common: Common,
    /// The policy's name.
    pub name: String,
}

fn enable(a: EnableArgs, auth: bool) -> CliResult {
    let c = a.common.client()?;
    let path = sanitize_path(a.path.as_deref().unwrap_or(&a.kind));
    let mut input = MountInput::of_type(&a.kind);
    input.description = a.description.clone();
    if let Some(v) = a.version {
        let mut o = Map::new();
        o.insert("version".into(), json!(v.to_string()));
        input.options = Some(o);
    }
    if auth {
        c.auth_enable(&path, &input)
            .map_err(ctx("Error enabling"))?;
        println!("Success! Enabled {} auth method at: {path}/", a.kind);
    } else {
        c.mount_enable(&path, &input)
            .map_err(ctx("Error enabling"))?;
        println!("Success! Enabled the {} secrets engine at: {path}/", a.kind);
    }
    Ok(0)
}

fn text(v: &Value, k: &str) -> String {
    match v.get(k).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => "n/a".into(),
    }
}

fn list_mounts(a: ListArgs, auth: bool) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let mounts = if auth {
        c.auth_list()
            .map_err(ctx("Error listing enabled authentications"))?
    } else {
        c.mounts_list()
            .map_err(ctx("Error listing secrets engines"))?
    };
    if format == Format::Json {
        print_json(&mounts);
        return Ok(0);
    }
    let mut keys: Vec<&String> = mounts.keys().collect();
    keys.sort();
    let mut rows = if auth {
        vec![
            vec!["Path", "Type", "Accessor", "Description", "Version"],
            vec!["----", "----", "--------", "-----------", "-------"],
        ]
    } else {
        vec![
            vec!["Path", "Type", "Accessor", "Description"],
            vec!["----", "----", "--------", "-----------"],
        ]
    }
    .into_iter()
    .map(|r| r.into_iter().map(str::to_owned).collect::<Vec<_>>())
    .collect::<Vec<_>>();
    for k in keys {
        let m = &mounts[k];
        let mut row = vec![
            k.clone(),
            text(m, "type"),
            text(m, "accessor"),
            text(m, "description"),
        ];
        if auth {
            row.push(text(m, "plugin_version"));
        }
        rows.push(row);
    }
    print!("{}", columns(&rows));
    Ok(0)
}

fn disable(a: PathArgs, auth: bool) -> CliResult {
    let c = a.common.client()?;
    let path = sanitize_path(&a.path);
    if auth {
        c.auth_disable(&path)
            .map_err(ctx(format!("Error disabling auth method at {path}")))?;
        println!("Success! Disabled the auth method (if it existed) at: {path}/");
    } else {
        c.mount_disable(&path)
            .map_err(ctx(format!("Error disabling secrets engine at {path}")))?;
        println!("Success! Disabled the secrets engine (if it existed) at: {path}/");
    }
    Ok(0)
}

pub fn auth(cmd: AuthCommand) -> CliResult {
    match cmd {
        AuthCommand::Enable(a) => enable(a, true),
        AuthCommand::List(a) => list_mounts(a, true),
        AuthCommand::Disable(a) => disable(a, true),
    }
}

pub fn secrets(cmd: SecretsCommand) -> CliResult {
    match cmd {
        SecretsCommand::Enable(a) => enable(a, false),
        SecretsCommand::List(a) => list_mounts(a, false),
        SecretsCommand::Disable(a) => disable(a, false),
    }
}

pub fn policy(cmd: PolicyCommand) -> CliResult {
    match cmd {
        PolicyCommand::Write(a) => {
            let body = if a.file == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map_err(|e| {
                    CliError::usage(format!("Error reading policy from stdin: {e}"))
                })?;
                s
            } else {
                std::fs::read_to_string(&a.file)
                    .map_err(|e| CliError::usage(format!("Error opening policy file: {e}")))?
            };
            let c = a.common.client()?;
            c.policy_write(&a.name, &body)
                .map_err(ctx("Error uploading policy"))?;
            println!("Success! Uploaded policy: {}", a.name);
            Ok(0)
        }
        PolicyCommand::Read(a) => {
            let format = a.common.format()?;
            let c = a.common.client()?;
            if format == Format::Json {
                let s = c
                    .read(&format!("sys/policies/acl/{}", a.name))
                    .map_err(ctx(format!("Error reading policy named {}", a.name)))?;
                return match s {
                    Some(s) => {
                        print_secret(&s, format);
                        Ok(0)
                    }
                    None => Err(CliError {
                        message: format!("No policy named: {}", a.name),
                        code: 2,
                    }),
                };
            }
            match c
                .policy_read(&a.name)
                .map_err(ctx(format!("Error reading policy named {}", a.name)))?
            {
                Some(p) => {
                    println!("{}", p.trim());
                    Ok(0)
                }
                None => Err(CliError {
                    message: format!("No policy named: {}", a.name),
                    code: 2,
                }),
            }
        }
        PolicyCommand::List(a) => {
            let format = a.common.format()?;
            let c = a.common.client()?;
            let names = c.policy_list().map_err(ctx("Error listing policies"))?;
            if format == Format::Json {
                print_json(&names);
            } else {
                for n in names {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        PolicyCommand::Delete(a) => {
            let c = a.common.client()?;
            c.policy_delete(&a.name)
                .map_err(ctx(format!("Error deleting {}", a.name)))?;
            println!("Success! Deleted policy: {}", a.name);
            Ok(0)
        }
    }
}
