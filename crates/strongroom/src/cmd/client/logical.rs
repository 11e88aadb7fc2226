//! `read`, `write`, `list`, `delete`: generic logical requests.

use clap::Args;
use serde_json::Value;

use super::ctx::{ctx, parse_kv_args, sanitize_path, CliError, CliResult, Common};
use super::output::{columns, go_value, print_json, print_secret, print_warnings, Format};

#[derive(Args)]
pub struct ReadArgs {
    /// Print only this field of the data, raw.
    #[arg(long)]
    pub field: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// API path, e.g. ocs/mykey or sys/mounts.
    pub path: String,
    /// Query parameters as k=v.
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct WriteArgs {
    /// Allow a write without data (sends `null`).
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub force: bool,
    /// Print only this field of the response data, raw.
    #[arg(long)]
    pub field: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// API path.
    pub path: String,
    /// Data as k=v, k=@file, k=- (stdin) or - (JSON object on stdin).
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct PathArgs {
    #[command(flatten)]
    pub common: Common,
    /// API path.
    pub path: String,
}

/// Prints a value as `-field` does: Go's `%v` (strings raw), with no trailing newline
/// unless stdout is a terminal (so `$(strongroom ... -field=x)` and pipes get exact bytes).
pub fn print_raw(v: &Value) {
    use std::io::{IsTerminal, Write};
    let mut out = std::io::stdout();
    let _ = write!(out, "{}", go_value(v));
    if out.is_terminal() {
        let _ = writeln!(out);
    }
    let _ = out.flush();
}

/// Prints a single field of the data like `-field` does.
pub fn print_field(data: Option<&serde_json::Map<String, Value>>, field: &str) -> CliResult {
    match data.and_then(|d| d.get(field)) {
        Some(v) => {
            print_raw(v);
            Ok(0)
        }
        None => Err(CliError::usage(format!(
            "Field \"{field}\" not present in secret"
        ))),
    }
}

pub fn read(a: ReadArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let path = sanitize_path(&a.path);
    let q = parse_kv_args(&a.args)?;
    let query: Vec<(String, String)> = q
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    let query_ref: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let s = c
        .read_with_query(&path, &query_ref)
        .map_err(ctx(format!("Error reading {path}")))?;
    let Some(s) = s else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    if let Some(f) = &a.field {
        return print_field(s.data.as_deref(), f);
    }
    if format == Format::Table && s.data.as_ref().is_none_or(|d| d.is_empty()) && s.auth.is_none() {
        print_warnings(s.warnings());
        return Ok(0);
    }
    print_secret(&s, format);
    Ok(0)
}

pub fn write(a: WriteArgs) -> CliResult {
    let format = a.common.format()?;
    let path = sanitize_path(&a.path);
    let data = parse_kv_args(&a.args)?;
    if data.is_empty() && !a.force {
        return Err(CliError::usage("Must supply data or use -force"));
    }
    let c = a.common.client()?;
    let body = (!data.is_empty()).then_some(Value::Object(data));
    let s = c
        .write(&path, body.as_ref())
        .map_err(ctx(format!("Error writing data to {path}")))?;
    match s {
        None => {
            if format == Format::Table {
                println!("Success! Data written to: {path}");
            }
        }
        Some(s) => {
            if let Some(f) = &a.field {
                return print_field(s.data.as_deref(), f);
            }
            if format == Format::Table
                && s.data.as_ref().is_none_or(|d| d.is_empty())
                && s.auth.is_none()
            {
                print_warnings(s.warnings());
                println!("Success! Data written to: {path}");
            } else {
                print_secret(&s, format);
            }
        }
    }
    Ok(0)
}

pub fn list(a: PathArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let path = sanitize_path(&a.path);
    let s = c
        .list(&path)
        .map_err(ctx(format!("Error listing {path}")))?;
    let keys = s.as_ref().map(|s| s.keys()).unwrap_or_default();
    if keys.is_empty() {
        eprintln!("No value found at {path}");
        return Ok(2);
    }
    print_keys(&keys, format);
    Ok(0)
}

pub fn print_keys(keys: &[String], format: Format) {
    if format == Format::Json {
        print_json(keys);
        return;
    }
    let mut rows = vec![vec!["Keys".to_owned()], vec!["----".to_owned()]];
    rows.extend(keys.iter().map(|k| vec![k.clone()]));
    print!("{}", columns(&rows));
}

pub fn delete(a: PathArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let path = sanitize_path(&a.path);
    let s = c
        .delete(&path)
        .map_err(ctx(format!("Error deleting {path}")))?;
    match s {
        Some(s) if s.data.as_ref().is_some_and(|d| !d.is_empty()) => print_secret(&s, format),
        _ => {
            if format == Format::Table {
                println!("Success! Data deleted (if it existed) at: {path}");
            }
        }
    }
    Ok(0)
}
