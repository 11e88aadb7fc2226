//! Responses whose `data` the handler already rendered as JSON text
//! ([`Response::json`](crate::request::Response::json), the transit hot paths): the envelope is
//! written around it directly, byte for byte what serializing the envelope map in `render`
//! gives, without a `Value` tree in between.

use crate::request::{Response, Shape};

/// The body for a pre-rendered response, or `None` when `resp` has none (then `resp.data`
/// holds the value: for shapes other than the plain envelope, pre-rendered data is parsed
/// back into it here, so they render as before).
pub fn prerendered(resp: &mut Response, request_id: &str) -> Option<Vec<u8>> {
    let data = resp.data_json.take()?;
    if resp.shape != Shape::Envelope {
        resp.data = serde_json::from_str(&data).ok();
        return None;
    }
    Some(envelope(resp, request_id, &data).unwrap_or_default())
}

/// `{"request_id","lease_id","renewable","lease_duration","data","wrap_info","warnings","auth"}`
fn envelope(resp: &Response, request_id: &str, data: &str) -> serde_json::Result<Vec<u8>> {
    use std::io::Write;
    let mut out = Vec::with_capacity(data.len() + 192 + request_id.len());
    out.extend_from_slice(b"{\"request_id\":");
    serde_json::to_writer(&mut out, request_id)?;
    out.extend_from_slice(b",\"lease_id\":\"\",\"renewable\":");
    out.extend_from_slice(if resp.renewable { b"true" } else { b"false" });
    // writing to a Vec cannot fail
    let _ = write!(out, ",\"lease_duration\":{},\"data\":", resp.lease_duration);
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b",\"wrap_info\":null,\"warnings\":");
    if resp.warnings.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        serde_json::to_writer(&mut out, &resp.warnings)?;
    }
    out.extend_from_slice(b",\"auth\":");
    match &resp.auth {
        Some(a) => serde_json::to_writer(&mut out, a)?,
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What `render` writes for a value response (the envelope map, serialized).
    fn via_map(resp: &Response, request_id: &str) -> Vec<u8> {
        let mut m = serde_json::Map::new();
        m.insert("request_id".into(), json!(request_id));
        m.insert("lease_id".into(), json!(""));
        m.insert("renewable".into(), json!(resp.renewable));
        m.insert("lease_duration".into(), json!(resp.lease_duration));
        m.insert("data".into(), resp.data.clone().unwrap_or(Value::Null));
        m.insert("wrap_info".into(), Value::Null);
        m.insert(
            "warnings".into(),
            if resp.warnings.is_empty() {
                Value::Null
            } else {
                json!(resp.warnings)
            },
        );
        m.insert("auth".into(), resp.auth.clone().unwrap_or(Value::Null));
        serde_json::to_vec(&Value::Object(m)).unwrap()
    }

    #[test]
    fn same_bytes_as_the_envelope_map() {
        let data = json!({"batch_results": [{"ciphertext": "vault:v1:AAAA", "key_version": 1, "reference": "a\"b\n\u{1}é"}]});
        let text = serde_json::to_string(&data).unwrap();
        let mut variants = vec![Response::data(data.clone())];
        variants.push(Response::data(data.clone()).with_warning("w \"1\""));
        let mut r = Response::data(data.clone())
            .with_warning("a")
            .with_warning("b");
        r.renewable = true;
        r.lease_duration = 3600;
        r.auth = Some(json!({"client_token": "t", "policies": ["x"]}));
        variants.push(r);
        for v in variants {
            let mut raw = Response::json(text.clone());
            raw.warnings = v.warnings.clone();
            raw.renewable = v.renewable;
            raw.lease_duration = v.lease_duration;
            raw.auth = v.auth.clone();
            assert_eq!(raw.data_value().as_deref(), Some(&data));
            let id = "5f1c-\"id\"";
            let body = prerendered(&mut raw, id).unwrap();
            assert_eq!(
                String::from_utf8(body).unwrap(),
                String::from_utf8(via_map(&v, id)).unwrap()
            );
        }
    }

    #[test]
    fn other_shapes_get_the_value_back() {
        let mut r = Response::json(r#"{"a":1}"#.into());
        r.shape = Shape::Raw;
        assert!(prerendered(&mut r, "id").is_none());
        assert_eq!(r.data, Some(json!({"a": 1})));
        let mut plain = Response::data(json!({"a": 1}));
        assert!(prerendered(&mut plain, "id").is_none());
    }
}
