//! `login` and `token create|lookup|revoke|renew`.

use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use strongroom_vault_client::{Client, Secret, SecretAuth, SecretString, TokenCreateRequest};

use super::ctx::{
    ctx, parse_kv_args, read_secret_line, token_helper_store, CliError, CliResult, Common,
};
use super::logical::{print_field, print_raw};
use super::output::{auth_rows, kv_table, print_secret, print_warnings, Format};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token.
    Create(TokenCreateArgs),
    /// Show a token's properties (own token when none given).
    Lookup(TokenLookupArgs),
    /// Revoke a token (own token with -self).
    Revoke(TokenRevokeArgs),
    /// Renew a token's lease (own token when none given).
    Renew(TokenRenewArgs),
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// Policy to attach (repeatable, or comma-separated).
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    /// Initial TTL (e.g. 30m, 1h or seconds; default: the mount's default TTL).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Hard upper bound on the token's lifetime, renewals included.
    #[arg(long = "explicit-max-ttl")]
    pub explicit_max_ttl: Option<String>,
    /// Make a periodic token: every renewal resets its TTL to this period.
    #[arg(long)]
    pub period: Option<String>,
    /// Name shown in the token's metadata and audit log.
    #[arg(long = "display-name", default_value = "")]
    pub display_name: String,
    /// Number of uses before the token is revoked (0: unlimited).
    #[arg(long = "use-limit", default_value_t = 0)]
    pub use_limit: u64,
    /// Whether the token may be renewed.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    pub renewable: bool,
    /// Create the token without a parent (it outlives the creating token's revocation).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub orphan: bool,
    /// Leave the `default` policy off the token.
    #[arg(long = "no-default-policy", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub no_default_policy: bool,
    /// Metadata k=v (repeatable).
    #[arg(long = "metadata")]
    pub metadata: Vec<String>,
    /// Token type: service or batch.
    #[arg(long = "type", default_value = "service")]
    pub token_type: String,
    /// Custom token ID.
    #[arg(long)]
    pub id: Option<String>,
    /// Create against auth/token/create/<role>.
    #[arg(long)]
    pub role: Option<String>,
    /// Print only this field (e.g. token, token_accessor), raw.
    #[arg(long)]
    pub field: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct TokenLookupArgs {
    /// Treat the argument as an accessor.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub accessor: bool,
    /// Print only this field (e.g. token, token_accessor), raw.
    #[arg(long)]
    pub field: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// Token (or accessor with -accessor).
    pub token: Option<String>,
}

#[derive(Args)]
pub struct TokenRevokeArgs {
    /// Revoke the token in use.
    #[arg(long = "self", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub self_: bool,
    /// Treat the argument as an accessor.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub accessor: bool,
    /// "orphan" keeps the children.
    #[arg(long, default_value = "")]
    pub mode: String,
    #[command(flatten)]
    pub common: Common,
    /// Token (or accessor with -accessor; default: the token in use).
    pub token: Option<String>,
}

#[derive(Args)]
pub struct TokenRenewArgs {
    /// Requested extension (e.g. 30m, 1h or seconds).
    #[arg(long, default_value = "0")]
    pub increment: String,
    /// Treat the argument as an accessor.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub accessor: bool,
    /// Print only this field (e.g. token, token_accessor), raw.
    #[arg(long)]
    pub field: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// Token (or accessor with -accessor; default: the token in use).
    pub token: Option<String>,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Auth method: token (default) or userpass.
    #[arg(long, default_value = "token")]
    pub method: String,
    /// Mount path of the auth method (default: the method name).
    #[arg(long)]
    pub path: Option<String>,
    /// Do not store the token in the token helper (~/.vault-token).
    #[arg(long = "no-store", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub no_store: bool,
    /// Print only the token.
    #[arg(long = "token-only", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub token_only: bool,
    /// Print only this field (e.g. token, token_accessor), raw.
    #[arg(long)]
    pub field: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// A token (method token; "-" reads stdin) or k=v credentials (username=U password=P).
    pub args: Vec<String>,
}

/// Seconds from a Go-style duration (`30m`, `1h`, `90s`, `120`).
fn seconds(s: &str) -> CliResult<u64> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for ch in t.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| CliError::usage(format!("invalid duration {s:?}")))?;
        num.clear();
        total += n * match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(CliError::usage(format!("invalid duration {s:?}"))),
        };
    }
    if !num.is_empty() {
        return Err(CliError::usage(format!("invalid duration {s:?}")));
    }
    Ok(total)
}

/// `-field`: one value of the auth block (as the Go CLI picks it) or of the data, raw.
fn print_auth_field(s: &Secret, field: &str) -> CliResult {
    let raw = s.auth.as_ref().and_then(|a| match field {
        "token" => Some(Value::String(a.client_token.expose().to_owned())),
        "token_accessor" => Some(Value::String(a.accessor.clone())),
        "token_duration" => Some(Value::from(a.lease_duration)),
        "token_renewable" => Some(Value::Bool(a.renewable)),
        "token_policies" => Some(serde_json::json!(a
            .token_policies
            .clone()
            .unwrap_or_default())),
        "identity_policies" => Some(serde_json::json!(a
            .identity_policies
            .clone()
            .unwrap_or_default())),
        "policies" => Some(serde_json::json!(a.policies.clone().unwrap_or_default())),
        _ => None,
    });
    match raw {
        Some(v) => {
            print_raw(&v);
            Ok(0)
        }
        None => print_field(s.data.as_deref(), field),
    }
}

fn print_auth(s: &Secret, format: Format, field: Option<&str>) -> CliResult {
    if let Some(f) = field {
        return print_auth_field(s, f);
    }
    if format == Format::Json {
        print_secret(s, format);
    } else if let Some(a) = &s.auth {
        print_warnings(s.warnings());
        print!("{}", kv_table(auth_rows(a)));
    }
    Ok(0)
}

pub fn run(cmd: TokenCommand) -> CliResult {
    match cmd {
        TokenCommand::Create(a) => create(a),
        TokenCommand::Lookup(a) => lookup(a),
        TokenCommand::Revoke(a) => revoke(a),
        TokenCommand::Renew(a) => renew(a),
    }
}

fn create(a: TokenCreateArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let mut req = TokenCreateRequest {
        policies: a
            .policies
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        display_name: a.display_name.clone(),
        num_uses: a.use_limit,
        renewable: a.renewable,
        token_type: a.token_type.clone(),
        no_parent: a.orphan,
        no_default_policy: a.no_default_policy,
        id: a.id.as_deref().map(SecretString::new),
        ..Default::default()
    };
    for (field, v) in [
        (&mut req.ttl, &a.ttl),
        (&mut req.explicit_max_ttl, &a.explicit_max_ttl),
        (&mut req.period, &a.period),
    ] {
        if let Some(v) = v {
            *field = v.clone();
        }
    }
    if !a.metadata.is_empty() {
        req.meta = Some(parse_kv_args(&a.metadata)?);
    }
    let s = c
        .token_create(&req, a.role.as_deref())
        .map_err(ctx("Error creating token"))?;
    print_auth(&s, format, a.field.as_deref())
}

fn lookup(a: TokenLookupArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let s = match (&a.token, a.accessor) {
        (None, false) => c.token_lookup_self(),
        (Some(t), false) => c.token_lookup(&SecretString::new(t.as_str())),
        (Some(acc), true) => c.token_lookup_accessor(acc),
        (None, true) => {
            return Err(CliError::usage(
                "Not enough arguments with -accessor (expected 1, got 0)",
            ))
        }
    }
    .map_err(ctx("Error looking up token"))?;
    if let Some(f) = &a.field {
        return print_field(s.data.as_deref(), f);
    }
    print_secret(&s, format);
    Ok(0)
}

fn revoke(a: TokenRevokeArgs) -> CliResult {
    let c = a.common.client()?;
    match (&a.token, a.self_, a.accessor) {
        (None, true, _) => c.token_revoke_self(),
        (Some(acc), false, true) => c.token_revoke_accessor(acc),
        (Some(t), false, false) => {
            c.token_revoke(&SecretString::new(t.as_str()), a.mode == "orphan")
        }
        (Some(_), true, _) => return Err(CliError::usage("Cannot specify both -self and a token")),
        (None, false, _) => {
            return Err(CliError::usage("Not enough arguments (expected 1, got 0)"))
        }
    }
    .map_err(ctx("Error revoking token"))?;
    println!("Success! Revoked token (if it existed)");
    Ok(0)
}

fn renew(a: TokenRenewArgs) -> CliResult {
    let format = a.common.format()?;
    let c = a.common.client()?;
    let inc = seconds(&a.increment)?;
    let s = match (&a.token, a.accessor) {
        (None, _) => c.token_renew_self(inc),
        (Some(acc), true) => c.token_renew_accessor(acc, inc),
        (Some(t), false) => c.token_renew(&SecretString::new(t.as_str()), inc),
    }
    .map_err(ctx("Error renewing token"))?;
    print_auth(&s, format, a.field.as_deref())
}

/// Builds the `auth` block the CLI shows for `login <token>` from a lookup-self answer.
fn auth_from_lookup(token: &SecretString, s: &Secret) -> SecretAuth {
    let strs = |k: &str| -> Option<Vec<String>> {
        s.data_get(k).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
    };
    SecretAuth {
        client_token: token.clone(),
        accessor: s.data_str("accessor").unwrap_or_default().to_owned(),
        policies: strs("policies"),
        token_policies: strs("policies"),
        identity_policies: strs("identity_policies"),
        metadata: s.data_get("meta").and_then(Value::as_object).cloned(),
        // The Go CLI leaves `orphan` unset when it builds this block from a lookup.
        orphan: false,
        entity_id: s.data_str("entity_id").unwrap_or_default().to_owned(),
        lease_duration: s.data_get("ttl").and_then(Value::as_i64).unwrap_or(0),
        renewable: s
            .data_get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        mfa_requirement: None,
    }
}

pub fn login(a: LoginArgs) -> CliResult {
    let format = a.common.format()?;
    let c: Client = a.common.client_without_token()?;
    let secret = match a.method.as_str() {
        "token" => {
            let token = match a.args.as_slice() {
                [] => read_secret_line("Token (will be hidden): ")?,
                [t] if t == "-" => read_secret_line("")?,
                [t] => SecretString::new(t.as_str()),
                _ => return Err(CliError::usage("Too many arguments (expected 0 or 1)")),
            };
            let tc = c.with_token(token.clone());
            let looked = tc
                .token_lookup_self()
                .map_err(ctx("Error authenticating"))?;
            Secret {
                auth: Some(auth_from_lookup(&token, &looked)),
                ..Default::default()
            }
        }
        "userpass" => {
            let creds: Map<String, Value> = parse_kv_args(&a.args)?;
            let username = creds
                .get("username")
                .and_then(Value::as_str)
                .ok_or_else(|| CliError::usage("Error authenticating: username=... is required"))?;
            let password = match creds.get("password").and_then(Value::as_str) {
                Some(p) => SecretString::new(p),
                None => read_secret_line("Password (will be hidden): ")?,
            };
            let mount = a.path.clone().unwrap_or_else(|| "userpass".into());
            c.userpass_login(&mount, username, &password)
                .map_err(ctx("Error authenticating"))?
        }
        other => {
            return Err(CliError::usage(format!(
                "Unknown auth method: {other}. Use \"token\" or \"userpass\"."
            )))
        }
    };
    let Some(auth) = &secret.auth else {
        return Err(CliError {
            message: "Error authenticating: no auth information returned".into(),
            code: 2,
        });
    };
    if !a.no_store {
        token_helper_store(&auth.client_token)?;
        if let Some(var) = ["VAULT_TOKEN", "BAO_TOKEN"]
            .into_iter()
            .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        {
            eprintln!(
                "WARNING! The {var} environment variable is set! The value of this variable\n\
                 will take precedence; if this is unwanted please unset {var} or update its\n\
                 value accordingly.\n"
            );
        }
    }
    if a.no_store {
        eprintln!("The token was not stored in token helper. Set the VAULT_TOKEN environment\nvariable or pass the token below with each request to Vault.\n");
    }
    if a.token_only {
        println!("{}", auth.client_token.expose());
        return Ok(0);
    }
    if let Some(f) = &a.field {
        return print_auth_field(&secret, f);
    }
    if format == Format::Json {
        print_secret(&secret, format);
        return Ok(0);
    }
    println!(
        "Success! You are now authenticated. The token information displayed below is\n\
         already stored in the token helper. You do NOT need to run \"strongroom login\" again.\n\
         Future Vault requests will automatically use this token.\n"
    );
    print!("{}", kv_table(auth_rows(auth)));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn durations() {
        assert_eq!(seconds("30m").unwrap(), 1800);
        assert_eq!(seconds("1h30m").unwrap(), 5400);
        assert_eq!(seconds("45").unwrap(), 45);
        assert!(seconds("5x").is_err());
    }
}
