//! Output like the Vault/OpenBao CLI: key/value tables, `-format=json`, Go-style values.

use serde::Serialize;
use serde_json::{Map, Value};
use strongroom_vault_client::{Secret, SecretAuth};

/// `-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            other => Err(format!("Invalid output format: {other}")),
        }
    }
}

/// Pretty JSON with two-space indentation, as the Go CLI prints it.
pub fn print_json<T: Serialize + ?Sized>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("Error formatting output: {e}"),
    }
}

/// Renders rows as columns separated by four spaces (Go's columnize), no trailing spaces.
pub fn columns(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncol];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count() + 4));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A `Key / Value` table with its header.
pub fn kv_table(rows: Vec<(String, String)>) -> String {
    let mut all = vec![
        vec!["Key".to_owned(), "Value".to_owned()],
        vec!["---".to_owned(), "-----".to_owned()],
    ];
    all.extend(rows.into_iter().map(|(k, v)| vec![k, v]));
    columns(&all)
}

/// Go's `time.Duration` string without zero units: 2764800 → `768h`, 90 → `1m30s`, 0 → `0s`.
pub fn duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let neg = secs < 0;
    let s = secs.unsigned_abs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// Go's `%v` of a decoded JSON value.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", go_value(&m[*k])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// Go's `%q` of a string list: `["a" "b"]`.
pub fn go_quoted_list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A table cell for `data[key]`: empty strings are `n/a`, numbers under TTL-like keys are
/// durations, everything else Go's `%v`.
pub fn cell(key: &str, v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "n/a".into(),
        Value::Number(n)
            if key.ends_with("ttl") || key.ends_with("period") || key.ends_with("_duration") =>
        {
            n.as_i64().map(duration).unwrap_or_else(|| n.to_string())
        }
        other => go_value(other),
    }
}

/// Rows for a JSON object, sorted by key.
pub fn data_rows(m: &Map<String, Value>) -> Vec<(String, String)> {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), cell(k, &m[k])))
        .collect()
}

/// `== Header ==` padded like the Go CLI's `padEqualSigns`.
pub fn pad_equal_signs(header: &str, total: usize) -> String {
    let mut eq = total as i64 - (header.len() as i64 + 2);
    if eq <= 0 {
        eq = 4;
    }
    if eq % 2 != 0 {
        eq += 1;
    }
    let side = "=".repeat((eq / 2) as usize);
    format!("{side} {header} {side}")
}

/// Header sized for a data table (longest key + 4 + len("Value")).
pub fn header_for_map(header: &str, m: &Map<String, Value>) -> String {
    let max = m.keys().map(String::len).max().unwrap_or(0);
    pad_equal_signs(header, max + 9)
}

/// Warnings go to stderr, as the CLI prints them.
pub fn print_warnings(w: &[String]) {
    if w.is_empty() {
        return;
    }
    eprintln!("WARNING! The following warnings were returned from Vault:\n");
    for x in w {
        eprintln!("{}\n", wrap(&format!("* {x}"), 78, "  "));
    }
}

/// Word-wraps `text` at `width` columns, every line prefixed by `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
        .iter()
        .map(|l| format!("{indent}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn list_of(v: &Option<Vec<String>>) -> Vec<String> {
    v.clone().unwrap_or_default()
}

/// Rows of an `auth` block (login, token create, renew).
pub fn auth_rows(a: &SecretAuth) -> Vec<(String, String)> {
    let mut rows = vec![
        ("token".to_owned(), a.client_token.expose().to_owned()),
        (
            "token_accessor".to_owned(),
            if a.accessor.is_empty() {
                "n/a".into()
            } else {
                a.accessor.clone()
            },
        ),
        (
            "token_duration".to_owned(),
            if a.lease_duration == 0 {
                "∞".into()
            } else {
                duration(a.lease_duration)
            },
        ),
        ("token_renewable".to_owned(), a.renewable.to_string()),
        (
            "token_policies".to_owned(),
            go_quoted_list(&list_of(&a.token_policies)),
        ),
        (
            "identity_policies".to_owned(),
            go_quoted_list(&list_of(&a.identity_policies)),
        ),
        ("policies".to_owned(), go_quoted_list(&list_of(&a.policies))),
    ];
    if let Some(meta) = &a.metadata {
        let mut keys: Vec<&String> = meta.keys().collect();
        keys.sort();
        for k in keys {
            rows.push((format!("token_meta_{k}"), go_value(&meta[k])));
        }
    }
    rows
}

/// Prints a response envelope as the Go CLI's `OutputSecret` does.
pub fn print_secret(s: &Secret, format: Format) {
    if format == Format::Json {
        print_json(s);
        return;
    }
    let mut rows = Vec::new();
    if s.lease_duration > 0 {
        if s.lease_id.is_empty() {
            rows.push(("refresh_interval".to_owned(), duration(s.lease_duration)));
        } else {
            rows.push(("lease_id".to_owned(), s.lease_id.clone()));
            rows.push(("lease_duration".to_owned(), duration(s.lease_duration)));
            rows.push(("lease_renewable".to_owned(), s.renewable.to_string()));
        }
    }
    if let Some(a) = &s.auth {
        rows.extend(auth_rows(a));
    }
    if let Some(d) = &s.data {
        rows.extend(data_rows(d));
    }
    print_warnings(s.warnings());
    if !rows.is_empty() {
        print!("{}", kv_table(rows));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(duration(2764800), "768h");
        assert_eq!(duration(90), "1m30s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(600), "10m");
    }

    #[test]
    fn tables_and_values() {
        let t = kv_table(vec![("value".into(), "secret1".into())]);
        assert_eq!(t, "Key      Value\n---      -----\nvalue    secret1\n");
        assert_eq!(go_value(&json!(["a", "b"])), "[a b]");
        assert_eq!(go_value(&json!({"2": 3, "1": 2})), "map[1:2 2:3]");
        assert_eq!(cell("ttl", &json!(0)), "0s");
        assert_eq!(cell("deletion_time", &json!("")), "n/a");
        assert_eq!(
            go_quoted_list(&["admins".into(), "default".into()]),
            r#"["admins" "default"]"#
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            pad_equal_signs("Secret Path", "kv2/data/app".len()),
            "== Secret Path =="
        );
        assert_eq!(
            pad_equal_signs("Metadata Path", "kv2/metadata/app".len()),
            "= Metadata Path ="
        );
        let m = json!({"value": 1}).as_object().unwrap().clone();
        assert_eq!(header_for_map("Data", &m), "==== Data ====");
    }
}
