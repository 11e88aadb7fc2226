//! Typed access to request data. The Vault CLI sends every `k=v` argument as a string
//! (`"bits":"512"`, `"exportable":"true"`, `"policies":"a,b"`), other clients send proper
//! JSON types; both must be accepted, and a value that cannot be coerced is a 400.

use crate::duration;
use crate::request::ApiError;
use serde_json::{Map, Value};

pub use crate::request::Data;

fn bad(field: &str, want: &str) -> ApiError {
    ApiError::bad_request(format!(
        "1 error occurred:\n\t* error converting input for field \"{field}\": cannot parse as {want}\n\n"
    ))
}

pub fn opt_str(d: &Data, k: &str) -> Result<Option<String>, ApiError> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(bad(k, "string")),
    }
}

pub fn str_or(d: &Data, k: &str, default: &str) -> Result<String, ApiError> {
    Ok(opt_str(d, k)?.unwrap_or_else(|| default.to_string()))
}

pub fn opt_bool(d: &Data, k: &str) -> Result<Option<bool>, ApiError> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => Ok(Some(true)),
            "false" | "0" | "f" | "" => Ok(Some(false)),
            _ => Err(bad(k, "bool")),
        },
        Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
        Some(_) => Err(bad(k, "bool")),
    }
}

pub fn bool_or(d: &Data, k: &str, default: bool) -> Result<bool, ApiError> {
    Ok(opt_bool(d, k)?.unwrap_or(default))
}

pub fn opt_i64(d: &Data, k: &str) -> Result<Option<i64>, ApiError> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| bad(k, "int")),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(k, "int")),
        Some(_) => Err(bad(k, "int")),
    }
}

pub fn i64_or(d: &Data, k: &str, default: i64) -> Result<i64, ApiError> {
    Ok(opt_i64(d, k)?.unwrap_or(default))
}

/// A TTL in seconds: JSON number, numeric string or Go duration string.
pub fn opt_duration(d: &Data, k: &str) -> Result<Option<u64>, ApiError> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| bad(k, "duration")),
        Some(Value::String(s)) => duration::parse_secs(s).map(Some).map_err(|e| {
            ApiError::bad_request(format!(
                "1 error occurred:\n\t* error converting input for field \"{k}\": {e}\n\n"
            ))
        }),
        Some(_) => Err(bad(k, "duration")),
    }
}

pub fn duration_or(d: &Data, k: &str, default: u64) -> Result<u64, ApiError> {
    Ok(opt_duration(d, k)?.unwrap_or(default))
}

/// A list of strings: JSON array or comma-separated string; blanks trimmed away.
pub fn opt_str_list(d: &Data, k: &str) -> Result<Option<Vec<String>>, ApiError> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        )),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(bad(k, "slice")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Some(v.into_iter().filter(|s| !s.is_empty()).collect())),
        Some(_) => Err(bad(k, "slice")),
    }
}

/// A string→string map: JSON object or `k1=v1,k2=v2`.
pub fn opt_str_map(d: &Data, k: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let mut out = Map::new();
            for (mk, mv) in m {
                let s = match mv {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.insert(mk.clone(), Value::String(s));
            }
            Ok(Some(out))
        }
        Some(Value::String(s)) => {
            let mut out = Map::new();
            for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
                let (a, b) = pair.split_once('=').ok_or_else(|| bad(k, "map"))?;
                out.insert(a.trim().to_string(), Value::String(b.trim().to_string()));
            }
            Ok(Some(out))
        }
        Some(_) => Err(bad(k, "map")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(v: Value) -> Data {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn coerces_cli_strings() {
        let m = d(json!({"b":"true","i":"512","t":"1h","l":"a, b,,c","n":7,"m":"x=1,y=2"}));
        assert_eq!(opt_bool(&m, "b").unwrap(), Some(true));
        assert_eq!(opt_i64(&m, "i").unwrap(), Some(512));
        assert_eq!(opt_duration(&m, "t").unwrap(), Some(3600));
        assert_eq!(opt_duration(&m, "n").unwrap(), Some(7));
        assert_eq!(opt_str_list(&m, "l").unwrap().unwrap(), vec!["a", "b", "c"]);
        assert_eq!(opt_str_map(&m, "m").unwrap().unwrap()["y"], json!("2"));
        assert_eq!(opt_str(&m, "missing").unwrap(), None);
    }

    #[test]
    fn rejects_garbage_with_400() {
        let m = d(json!({"b":"maybe","i":"x","t":"forever","l":{"a":1}}));
        assert_eq!(opt_bool(&m, "b").unwrap_err().status, 400);
        assert_eq!(opt_i64(&m, "i").unwrap_err().status, 400);
        assert_eq!(opt_duration(&m, "t").unwrap_err().status, 400);
        assert_eq!(opt_str_list(&m, "l").unwrap_err().status, 400);
    }
}
