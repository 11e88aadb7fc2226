//! `sys/storage/raft/autopilot/state` and `.../configuration`, in OpenBao's shapes (the
//! logic is [`crate::storage::raft::autopilot`]).

use crate::fields;
use crate::request::ApiError;
use crate::storage::raft::autopilot::{Config, ServerState};
use crate::storage::raft::RaftStorage;
use serde_json::{json, Map, Value};
use std::time::Duration;

fn st(e: crate::storage::StorageError) -> ApiError {
    ApiError::internal(e.to_string())
}

/// Go's `time.Duration.String()`: `0s`, `798.777636ms`, `4.809068663s`, `1m30s`.
pub fn go_duration(d: Duration) -> String {
    fn frac(whole: u128, rest: u128, digits: usize, unit: &str) -> String {
        let f = format!("{rest:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            format!("{whole}{unit}")
        } else {
            format!("{whole}.{f}{unit}")
        }
    }
    let ns = d.as_nanos();
    match ns {
        0 => "0s".into(),
        1..=999 => format!("{ns}ns"),
        1_000..=999_999 => frac(ns / 1_000, ns % 1_000, 3, "µs"),
        1_000_000..=999_999_999 => frac(ns / 1_000_000, ns % 1_000_000, 6, "ms"),
        _ => {
            let secs = d.as_secs();
            let (h, m) = (secs / 3600, (secs % 3600) / 60);
            let s = frac((secs % 60) as u128, d.subsec_nanos() as u128, 9, "s");
            match (h, m) {
                (0, 0) => s,
                (0, m) => format!("{m}m{s}"),
                (h, m) => format!("{h}h{m}m{s}"),
            }
        }
    }
}

fn server(s: &ServerState, dead_after: Duration) -> Value {
    let status = match (s.leader, s.voter) {
        (true, _) => "leader",
        (false, true) => "voter",
        (false, false) => "non-voter",
    };
    json!({
        "id": s.name,
        "name": s.name,
        "address": s.address,
        "node_status": if s.last_contact >= dead_after { "failed" } else { "alive" },
        "last_contact": go_duration(s.last_contact),
        "last_term": s.last_term,
        "last_index": s.last_index,
        "healthy": s.healthy,
        "stable_since": s.stable_since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "status": status,
        "version": crate::core::VERSION,
        "node_type": if s.non_voter { "non-voter" } else { "voter" },
    })
}

/// `GET sys/storage/raft/autopilot/state` (on the active node).
pub fn state(r: &RaftStorage) -> Result<Value, ApiError> {
    let cfg = r.autopilot_config().map_err(st)?;
    let mut s = r.autopilot_state().map_err(st)?;
    s.servers.sort_by(|a, b| a.name.cmp(&b.name));
    let dead_after = Duration::from_secs(cfg.last_contact_threshold);
    let servers: Map<String, Value> = s
        .servers
        .iter()
        .map(|x| (x.name.clone(), server(x, dead_after)))
        .collect();
    let voters: Vec<&str> = s
        .servers
        .iter()
        .filter(|x| x.voter)
        .map(|x| x.name.as_str())
        .collect();
    Ok(json!({
        "failure_tolerance": s.failure_tolerance,
        "healthy": s.healthy,
        "leader": s.leader,
        "servers": servers,
        "voters": voters,
    }))
}

/// `GET sys/storage/raft/autopilot/configuration`.
pub fn get_config(r: &RaftStorage) -> Result<Value, ApiError> {
    let c = r.autopilot_config().map_err(st)?;
    let d = crate::duration::format_go;
    Ok(json!({
        "cleanup_dead_servers": c.cleanup_dead_servers,
        "dead_server_last_contact_threshold": d(c.dead_server_last_contact_threshold),
        "last_contact_threshold": d(c.last_contact_threshold),
        "max_trailing_logs": c.max_trailing_logs,
        "min_quorum": c.min_quorum,
        "server_stabilization_time": d(c.server_stabilization_time),
    }))
}

/// A count that must not be negative; 0 keeps the current value (as OpenBao's).
fn count(d: &Map<String, Value>, k: &str, cur: u64) -> Result<u64, ApiError> {
    match fields::opt_i64(d, k)? {
        None | Some(0) => Ok(cur),
        Some(n) => u64::try_from(n)
            .map_err(|_| ApiError::bad_request(format!("{k} must not be negative; received: {n}"))),
    }
}

/// The configuration `d` asks for, over the current one `c`.
pub fn merge(mut c: Config, d: &Map<String, Value>) -> Result<Config, ApiError> {
    if let Some(b) = fields::opt_bool(d, "cleanup_dead_servers")? {
        c.cleanup_dead_servers = b;
    }
    let dur = |k: &str, cur: u64| -> Result<u64, ApiError> {
        Ok(fields::opt_duration(d, k)?
            .filter(|s| *s > 0)
            .unwrap_or(cur))
    };
    c.dead_server_last_contact_threshold = dur(
        "dead_server_last_contact_threshold",
        c.dead_server_last_contact_threshold,
    )?;
    c.last_contact_threshold = dur("last_contact_threshold", c.last_contact_threshold)?;
    c.server_stabilization_time = dur("server_stabilization_time", c.server_stabilization_time)?;
    c.max_trailing_logs = count(d, "max_trailing_logs", c.max_trailing_logs)?;
    c.min_quorum = count(d, "min_quorum", c.min_quorum)?;
    if c.cleanup_dead_servers && c.min_quorum < 3 {
        return Err(ApiError::bad_request(format!(
            "min_quorum must be set when cleanup_dead_servers is set and it should at least be 3; cleanup_dead_servers: true, min_quorum: {:#x}",
            c.min_quorum
        )));
    }
    if c.cleanup_dead_servers && c.dead_server_last_contact_threshold < 60 {
        return Err(ApiError::bad_request(format!(
            "dead_server_last_contact_threshold should not be set to less than 1m; received: {}",
            c.dead_server_last_contact_threshold
        )));
    }
    Ok(c)
}

/// `POST sys/storage/raft/autopilot/configuration`.
pub fn set_config(r: &RaftStorage, d: &Map<String, Value>) -> Result<(), ApiError> {
    let c = merge(r.autopilot_config().map_err(st)?, d)?;
    r.set_autopilot_config(&c).map_err(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(798_777_636), "798.777636ms"),
            (Duration::from_nanos(4_809_068_663), "4.809068663s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(86400), "24h0m0s"),
            (Duration::from_millis(1), "1ms"),
            (Duration::from_micros(1500), "1.5ms"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn configuration_merges_and_validates_as_openbao() {
        let c = merge(
            Config::default(),
            &data(json!({"dead_server_last_contact_threshold": "90s", "last_contact_threshold": "0s", "max_trailing_logs": 50})),
        )
        .unwrap();
        assert_eq!(c.dead_server_last_contact_threshold, 90);
        assert_eq!(c.last_contact_threshold, 10, "zero keeps the value");
        assert_eq!(c.max_trailing_logs, 50);
        let e = merge(c.clone(), &data(json!({"cleanup_dead_servers": true}))).unwrap_err();
        assert!(e.errors[0].ends_with("min_quorum: 0x0"), "{:?}", e.errors);
        let c = merge(
            c,
            &data(json!({"cleanup_dead_servers": true, "min_quorum": 3})),
        )
        .unwrap();
        let e = merge(
            c.clone(),
            &data(json!({"dead_server_last_contact_threshold": "59s"})),
        )
        .unwrap_err();
        assert!(
            e.errors[0].ends_with("less than 1m; received: 59"),
            "{:?}",
            e.errors
        );
        assert!(merge(c.clone(), &data(json!({"max_trailing_logs": -1}))).is_err());
        assert!(merge(c, &data(json!({"min_quorum": "x"}))).is_err());
    }
}
