//! `kv put|get|list|delete|patch|metadata get`, with KV v1/v2 detection through the
//! `sys/internal/ui/mounts/<path>` preflight, as the Vault CLI does.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use strongroom_vault_client::{Client, Error as ApiErr, Secret};

use super::ctx::{ctx, parse_kv_args, sanitize_path, CliError, CliResult, Common};
use super::logical::{print_field, print_keys};
use super::output::{
    data_rows, header_for_map, kv_table, pad_equal_signs, print_secret, print_warnings, Format,
};

#[derive(Subcommand)]
pub enum KvCommand {
    /// Write data (a new version on KV v2).
    Put(KvWriteArgs),
    /// Read data.
    Get(KvGetArgs),
    /// List keys under a path.
    List(KvPathArgs),
    /// Delete data (the latest version on KV v2).
    Delete(KvPathArgs),
    /// Merge data into the latest version (KV v2 only).
    Patch(KvWriteArgs),
    /// KV v2 metadata.
    #[command(subcommand)]
    Metadata(KvMetadataCommand),
}

#[derive(Subcommand)]
pub enum KvMetadataCommand {
    /// Read the metadata and versions of a KV v2 secret.
    Get(KvPathArgs),
}

#[derive(Args)]
pub struct KvWriteArgs {
    /// Check-and-set version (KV v2).
    #[arg(long)]
    pub cas: Option<i64>,
    /// Mount path (then the positional path is relative to it).
    #[arg(long)]
    pub mount: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// Secret path (with its mount in front, unless -mount names the mount).
    pub path: String,
    /// Data as k=v, k=@file, k=- or - (JSON object on stdin).
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct KvGetArgs {
    /// Version to read (KV v2).
    #[arg(long)]
    pub version: Option<u64>,
    /// Print only this field, raw.
    #[arg(long)]
    pub field: Option<String>,
    /// Mount path (then the positional path is relative to it).
    #[arg(long)]
    pub mount: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// Secret path (with its mount in front, unless -mount names the mount).
    pub path: String,
}

#[derive(Args)]
pub struct KvPathArgs {
    /// Mount path (then the positional path is relative to it).
    #[arg(long)]
    pub mount: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// Secret path (with its mount in front, unless -mount names the mount).
    pub path: String,
}

/// Where a `kv` path lives: its mount, the rest, and the engine version.
struct Target {
    mount: String,
    rest: String,
    v2: bool,
}

impl Target {
    /// `<mount>/<segment>/<rest>` on v2, `<mount>/<rest>` on v1.
    fn api(&self, segment: &str) -> String {
        let m = self.mount.trim_end_matches('/');
        match (self.v2, self.rest.is_empty()) {
            (true, true) => format!("{m}/{segment}"),
            (true, false) => format!("{m}/{segment}/{}", self.rest),
            (false, true) => m.to_owned(),
            (false, false) => format!("{m}/{}", self.rest),
        }
    }
}

fn resolve(c: &Client, mount_flag: Option<&str>, path: &str) -> CliResult<Target> {
    let full = match mount_flag {
        Some(m) => format!("{}/{}", sanitize_path(m), sanitize_path(path)),
        None => sanitize_path(path),
    };
    let info = c.mount_info(&full).map_err(|e| match e {
        ApiErr::PermissionDenied(_) => CliError {
            message: format!("Error making API request.\n\nCode: 403. preflight capability check returned 403, please ensure client's policies grant access to path \"{full}/\""),
            code: 2,
        },
        e => CliError::api(format!("Error determining the KV version of {full}"), e),
    })?;
    match info {
        Some(i) => {
            let mount = i.path.trim_end_matches('/').to_owned();
            let rest = full
                .strip_prefix(&mount)
                .unwrap_or(&full)
                .trim_matches('/')
                .to_owned();
            Ok(Target {
                v2: i.kv_version() == strongroom_vault_client::KvVersion::V2,
                mount,
                rest,
            })
        }
        // An old server without the preflight endpoint: KV v1 semantics on the full path.
        None => Ok(Target {
            mount: full,
            rest: String::new(),
            v2: false,
        }),
    }
}

fn print_path_header(path: &str, header: &str) {
    println!("{}", pad_equal_signs(header, path.len()));
    println!("{path}");
    println!();
}

fn print_metadata_section(meta: &Map<String, Value>) {
    println!("{}", header_for_map("Metadata", meta));
    print!("{}", kv_table(data_rows(meta)));
}

pub fn run(cmd: KvCommand) -> CliResult {
    match cmd {
        KvCommand::Put(a) => put(a, false),
        KvCommand::Patch(a) => put(a, true),
        KvCommand::Get(a) => get(a),
        KvCommand::List(a) => list(a),
        KvCommand::Delete(a) => delete(a),
        KvCommand::Metadata(KvMetadataCommand::Get(a)) => metadata_get(a),
    }
}

fn put(a: KvWriteArgs, patch: bool) -> CliResult {
    let format = a.common.format()?;
    let data = parse_kv_args(&a.args)?;
    if data.is_empty() {
        return Err(CliError::usage("Must supply data"));
    }
    let c = a.common.client()?;
    let t = resolve(&c, a.mount.as_deref(), &a.path)?;
    if !t.v2 {
        if patch {
            return Err(CliError::usage(
                "K/V engine mount must be version 2 for patch support",
            ));
        }
        let path = t.api("");
        c.write(&path, Some(&Value::Object(data)))
            .map_err(ctx(format!("Error writing data to {path}")))?;
        if format == Format::Table {
            println!("Success! Data written to: {path}");
        }
        return Ok(0);
    }
    let path = t.api("data");
    let mut options = Map::new();
    if let Some(cas) = a.cas {
        options.insert("cas".into(), json!(cas));
    }
    let body = json!({ "data": Value::Object(data), "options": Value::Object(options) });
    let r = if patch {
        c.patch(&path, &body)
    } else {
        c.write(&path, Some(&body))
    };
    let s = r.map_err(ctx(format!("Error writing data to {path}")))?;
    let Some(s) = s else {
        println!("Success! Data written to: {path}");
        return Ok(0);
    };
    if format == Format::Json {
        print_secret(&s, format);
        return Ok(0);
    }
    print_warnings(s.warnings());
    print_path_header(&path, "Secret Path");
    if let Some(d) = &s.data {
        print_metadata_section(d);
    }
    Ok(0)
}

fn get(a: KvGetArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let t = resolve(&c, a.mount.as_deref(), &a.path)?;
    let path = t.api("data");
    let version = a.version.map(|v| v.to_string());
    let query: Vec<(&str, &str)> = match (&version, t.v2) {
        (Some(v), true) => vec![("version", v.as_str())],
        _ => Vec::new(),
    };
    let s = c
        .read_with_query(&path, &query)
        .map_err(ctx(format!("Error reading {path}")))?;
    let Some(s) = s else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    if !t.v2 {
        if let Some(f) = &a.field {
            return print_field(s.data.as_deref(), f);
        }
        if format == Format::Json {
            print_secret(&s, format);
            return Ok(0);
        }
        print_warnings(s.warnings());
        if let Some(d) = &s.data {
            println!("{}", header_for_map("Data", d));
            print!("{}", kv_table(data_rows(d)));
        }
        return Ok(0);
    }
    let inner = s.data_get("data").and_then(Value::as_object);
    if let Some(f) = &a.field {
        return print_field(inner, f);
    }
    if format == Format::Json {
        print_secret(&s, format);
        return Ok(0);
    }
    print_warnings(s.warnings());
    print_path_header(&path, "Secret Path");
    if let Some(meta) = s.data_get("metadata").and_then(Value::as_object) {
        print_metadata_section(meta);
    }
    if let Some(d) = inner {
        println!();
        println!("{}", header_for_map("Data", d));
        print!("{}", kv_table(data_rows(d)));
    } else {
        println!();
    }
    Ok(0)
}

fn list(a: KvPathArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let t = resolve(&c, a.mount.as_deref(), &a.path)?;
    let path = t.api("metadata");
    let s = c
        .list(&path)
        .map_err(ctx(format!("Error listing {path}")))?;
    let keys = s.as_ref().map(Secret::keys).unwrap_or_default();
    if keys.is_empty() {
        eprintln!("No value found at {path}");
        return Ok(2);
    }
    print_keys(&keys, format);
    Ok(0)
}

fn delete(a: KvPathArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let t = resolve(&c, a.mount.as_deref(), &a.path)?;
    let path = t.api("data");
    c.delete(&path)
        .map_err(ctx(format!("Error deleting {path}")))?;
    if format == Format::Table {
        println!("Success! Data deleted (if it existed) at: {path}");
    }
    Ok(0)
}

fn metadata_get(a: KvPathArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let t = resolve(&c, a.mount.as_deref(), &a.path)?;
    if !t.v2 {
        return Err(CliError::usage("Metadata not supported on KV Version 1"));
    }
    let path = t.api("metadata");
    let s = c
        .read(&path)
        .map_err(ctx(format!("Error reading {path}")))?;
    let Some(s) = s else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    if format == Format::Json {
        print_secret(&s, format);
        return Ok(0);
    }
    print_warnings(s.warnings());
    print_path_header(&path, "Metadata Path");
    let mut meta = s.data.as_deref().cloned().unwrap_or_default();
    let versions = meta.remove("versions");
    println!("{}", header_for_map("Metadata", &meta));
    print!("{}", kv_table(data_rows(&meta)));
    if let Some(Value::Object(vs)) = versions {
        let mut keys: Vec<&String> = vs.keys().collect();
        keys.sort_by_key(|k| k.parse::<u64>().unwrap_or(u64::MAX));
        for k in keys {
            if let Some(v) = vs[k].as_object() {
                println!();
                println!("{}", header_for_map(&format!("Version {k}"), v));
                print!("{}", kv_table(data_rows(v)));
            }
        }
    }
    Ok(0)
}
