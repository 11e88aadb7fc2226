//! Request-field coercion with OpenBao's exact error texts for the transit paths.
//!
//! The generic helpers in `crate::fields` accept the same inputs, but transit clients (and the
//! compatibility tests) see OpenBao's framework/mapstructure messages, e.g.
//! `Field validation failed: error converting input for field "bits": '' cannot parse value as
//! 'int': strconv.ParseInt: invalid syntax`, so these are reproduced here.

use crate::duration;
use crate::fields::Data;
use crate::request::ApiError;
use serde_json::Value;

/// Go's `%T` of a decoded JSON value, as mapstructure prints it.
pub fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "json.Number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Field access for one request. `prefix` is `"Field validation failed: "` on paths where
/// OpenBao validates up front, `""` where the handler converts lazily (encrypt).
pub struct Params<'a> {
    pub d: &'a Data,
    prefix: &'static str,
}

impl<'a> Params<'a> {
    pub fn validated(d: &'a Data) -> Self {
        Self {
            d,
            prefix: "Field validation failed: ",
        }
    }
    pub fn lazy(d: &'a Data) -> Self {
        Self { d, prefix: "" }
    }

    fn err(&self, field: &str, detail: String) -> ApiError {
        ApiError::bad_request(format!(
            "{}error converting input for field \"{field}\": {detail}",
            self.prefix
        ))
    }

    /// Present and not JSON null.
    pub fn has(&self, k: &str) -> bool {
        !matches!(self.d.get(k), None | Some(Value::Null))
    }

    pub fn str(&self, k: &str) -> Result<Option<String>, ApiError> {
        match self.d.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(if *b { "1" } else { "0" }.to_string())),
            Some(v) => Err(self.err(
                k,
                format!(
                    "'' expected type 'string', got unconvertible type '{}'",
                    go_type(v)
                ),
            )),
        }
    }

    /// Present-but-null is the zero value, not the default (the framework decodes a nil raw
    /// value to the type's zero value).
    fn null(&self, k: &str) -> bool {
        matches!(self.d.get(k), Some(Value::Null))
    }

    pub fn str_or(&self, k: &str, default: &str) -> Result<String, ApiError> {
        if self.null(k) {
            return Ok(String::new());
        }
        Ok(self.str(k)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        let bad = || {
            self.err(
                k,
                "'' cannot parse value as 'int': strconv.ParseInt: invalid syntax".into(),
            )
        };
        match self.d.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(i64::from(*b))),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
            // weakly typed decoding: "" is 0
            Some(Value::String(s)) if s.is_empty() => Ok(Some(0)),
            Some(Value::String(s)) => s.parse::<i64>().map(Some).map_err(|_| bad()),
            Some(v) => Err(self.err(
                k,
                format!(
                    "'' expected type 'int', got unconvertible type '{}'",
                    go_type(v)
                ),
            )),
        }
    }

    pub fn int_or(&self, k: &str, default: i64) -> Result<i64, ApiError> {
        if self.null(k) {
            return Ok(0);
        }
        Ok(self.int(k)?.unwrap_or(default))
    }

    pub fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        let parse = |s: &str| match s {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
            // weakly typed decoding: "" is false
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        };
        let bad = || {
            self.err(
                k,
                "'' cannot parse value as 'bool': strconv.ParseBool: invalid syntax".into(),
            )
        };
        match self.d.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse(s).map(Some).ok_or_else(bad),
            Some(Value::Number(n)) => parse(&n.to_string()).map(Some).ok_or_else(bad),
            Some(v) => Err(self.err(
                k,
                format!(
                    "'' expected type 'bool', got unconvertible type '{}'",
                    go_type(v)
                ),
            )),
        }
    }

    pub fn bool_or(&self, k: &str, default: bool) -> Result<bool, ApiError> {
        if self.null(k) {
            return Ok(false);
        }
        Ok(self.bool(k)?.unwrap_or(default))
    }

    /// `TypeDurationSecond` (OpenBao's `parseutil.ParseDurationSecond`): an integer number
    /// of seconds (JSON number or string), or a Go duration string; negative values are
    /// refused with the value in seconds, as OpenBao does.
    pub fn duration(&self, k: &str) -> Result<Option<u64>, ApiError> {
        let neg = |secs: i64| self.err(k, format!("cannot provide negative value '{secs}'"));
        let text = match self.d.get(k) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(self.err(
                    k,
                    format!(
                        "'' expected type 'int64', got unconvertible type '{}'",
                        go_type(v)
                    ),
                ))
            }
        };
        let t = text.trim();
        if let Ok(i) = t.parse::<i64>() {
            return if i < 0 {
                Err(neg(i))
            } else {
                Ok(Some(i as u64))
            };
        }
        if t.parse::<f64>().is_ok() {
            return Err(self.err(k, format!("time: missing unit in duration \"{text}\"")));
        }
        if let Some(rest) = t.strip_prefix('-') {
            if let Ok(secs) = duration::parse_secs(rest) {
                return Err(neg(-(secs as i64)));
            }
        }
        duration::parse_secs(&text)
            .map(Some)
            .map_err(|e| self.err(k, e.to_string()))
    }
}

/// The framework's warning for body fields a path does not declare.
pub fn ignored_warning(d: &Data, known: &[&str]) -> Option<String> {
    let mut ignored: Vec<&str> = d
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if ignored.is_empty() {
        return None;
    }
    ignored.sort_unstable();
    Some(format!(
        "Endpoint ignored these unrecognized parameters: [{}]",
        ignored.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(v: Value) -> Data {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn openbao_texts() {
        let m = d(
            json!({"i":"abc","f":1.5,"a":[1],"b":"maybe","n":2,"t":true,"p":-5,"s":"bogus","o":{"x":1}}),
        );
        let p = Params::validated(&m);
        assert_eq!(
            p.int("i").unwrap_err().errors[0],
            "Field validation failed: error converting input for field \"i\": '' cannot parse value as 'int': strconv.ParseInt: invalid syntax"
        );
        assert!(p.int("f").is_err());
        assert_eq!(
            p.int("a").unwrap_err().errors[0],
            "Field validation failed: error converting input for field \"a\": '' expected type 'int', got unconvertible type '[]interface {}'"
        );
        assert_eq!(p.int("t").unwrap(), Some(1));
        assert!(p.bool("b").is_err());
        assert!(p.bool("n").is_err());
        assert_eq!(
            p.duration("p").unwrap_err().errors[0],
            "Field validation failed: error converting input for field \"p\": cannot provide negative value '-5'"
        );
        let m2 = d(json!({"neg": "-1h", "frac": 3600.5, "ok": "1h30m", "n": 7200}));
        let p2 = Params::validated(&m2);
        assert!(p2.duration("neg").unwrap_err().errors[0]
            .ends_with("cannot provide negative value '-3600'"));
        assert!(p2.duration("frac").unwrap_err().errors[0]
            .ends_with("time: missing unit in duration \"3600.5\""));
        assert_eq!(p2.duration("ok").unwrap(), Some(5400));
        assert_eq!(p2.duration("n").unwrap(), Some(7200));
        assert_eq!(
            p.duration("s").unwrap_err().errors[0],
            "Field validation failed: error converting input for field \"s\": time: invalid duration \"bogus\""
        );
        let l = Params::lazy(&m);
        assert_eq!(
            l.str("o").unwrap_err().errors[0],
            "error converting input for field \"o\": '' expected type 'string', got unconvertible type 'map[string]interface {}'"
        );
        assert_eq!(l.str("t").unwrap().unwrap(), "1");
        assert_eq!(
            ignored_warning(&m, &["i", "f", "a", "b", "n", "t", "p"]).unwrap(),
            "Endpoint ignored these unrecognized parameters: [o s]"
        );
    }
}
