//! Telemetry for `sys/metrics`: request counts and latency histograms by mount type and
//! operation, seal state, token count, transit operations by key, audit failures. Rendered
//! as Prometheus text (`?format=prometheus`) or Vault's JSON shape.

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Per (mount type, operation): counts by status class, and the latency histogram.
type RequestStats = (BTreeMap<String, u64>, Histogram);

#[derive(Default)]
pub struct Metrics {
    /// (mount type, operation) → (status class → count, latency)
    requests: Mutex<BTreeMap<(String, String), RequestStats>>,
    /// (key, operation) → count
    transit: Mutex<BTreeMap<(String, String), u64>>,
    /// Shared with the audit broker, which outlives no seal but this counter must.
    pub audit_failures: std::sync::Arc<AtomicU64>,
}

/// Point-in-time values the core supplies when rendering.
pub struct Gauges {
    pub sealed: bool,
    pub tokens: Option<u64>,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn record(&self, mount_type: &str, op: &str, status: u16, took: Duration) {
        let class = format!("{}xx", status / 100);
        let mut m = self.requests.lock();
        let e = m
            .entry((mount_type.to_string(), op.to_string()))
            .or_default();
        *e.0.entry(class).or_default() += 1;
        e.1.observe(took.as_secs_f64());
    }

    pub fn transit_op(&self, key: &str, op: &str) {
        *self
            .transit
            .lock()
            .entry((key.to_string(), op.to_string()))
            .or_default() += 1;
    }

    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn prometheus(&self, g: &Gauges) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# HELP strongroom_requests_total API requests by mount type, operation and status class.");
        let _ = writeln!(o, "# TYPE strongroom_requests_total counter");
        let reqs = self.requests.lock().clone();
        for ((mt, op), (classes, _)) in &reqs {
            for (class, n) in classes {
                let _ = writeln!(
                    o,
                    "strongroom_requests_total{{mount_type=\"{}\",operation=\"{}\",status=\"{}\"}} {n}",
                    esc(mt),
                    esc(op),
                    class
                );
            }
        }
        let _ = writeln!(
            o,
            "# HELP strongroom_request_duration_seconds API request latency."
        );
        let _ = writeln!(o, "# TYPE strongroom_request_duration_seconds histogram");
        for ((mt, op), (_, h)) in &reqs {
            let labels = format!("mount_type=\"{}\",operation=\"{}\"", esc(mt), esc(op));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "strongroom_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "strongroom_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "strongroom_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "strongroom_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let _ = writeln!(
            o,
            "# HELP strongroom_transit_operations_total Transit operations by key."
        );
        let _ = writeln!(o, "# TYPE strongroom_transit_operations_total counter");
        for ((k, op), n) in self.transit.lock().iter() {
            let _ = writeln!(
                o,
                "strongroom_transit_operations_total{{key=\"{}\",operation=\"{}\"}} {n}",
                esc(k),
                esc(op)
            );
        }
        let _ = writeln!(
            o,
            "# HELP strongroom_audit_failures_total Audit log writes that failed."
        );
        let _ = writeln!(o, "# TYPE strongroom_audit_failures_total counter");
        let _ = writeln!(
            o,
            "strongroom_audit_failures_total {}",
            self.audit_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(o, "# HELP strongroom_sealed 1 while the barrier is sealed.");
        let _ = writeln!(o, "# TYPE strongroom_sealed gauge");
        let _ = writeln!(o, "strongroom_sealed {}", u8::from(g.sealed));
        if let Some(t) = g.tokens {
            let _ = writeln!(o, "# HELP strongroom_tokens Live service tokens.");
            let _ = writeln!(o, "# TYPE strongroom_tokens gauge");
            let _ = writeln!(o, "strongroom_tokens {t}");
        }
        o
    }

    /// Vault's JSON telemetry shape: Gauges, Counters and Samples.
    pub fn json(&self, g: &Gauges) -> Value {
        let reqs = self.requests.lock().clone();
        let mut counters = vec![];
        let mut samples = vec![];
        for ((mt, op), (classes, h)) in &reqs {
            for (class, n) in classes {
                counters.push(json!({"Name": "strongroom.requests", "Count": n, "Sum": n,
                    "Labels": {"mount_type": mt, "operation": op, "status": class}}));
            }
            samples.push(json!({"Name": "strongroom.request.duration", "Count": h.count, "Sum": h.sum * 1000.0,
                "Mean": if h.count > 0 { h.sum * 1000.0 / h.count as f64 } else { 0.0 },
                "Labels": {"mount_type": mt, "operation": op}}));
        }
        for ((k, op), n) in self.transit.lock().iter() {
            counters.push(json!({"Name": "strongroom.transit.operations", "Count": n, "Sum": n, "Labels": {"key": k, "operation": op}}));
        }
        let af = self.audit_failures.load(Ordering::Relaxed);
        counters.push(
            json!({"Name": "strongroom.audit.failures", "Count": af, "Sum": af, "Labels": {}}),
        );
        let mut gauges =
            vec![json!({"Name": "strongroom.sealed", "Value": u8::from(g.sealed), "Labels": {}})];
        if let Some(t) = g.tokens {
            gauges.push(json!({"Name": "strongroom.tokens", "Value": t, "Labels": {}}));
        }
        json!({
            "Timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S %z").to_string(),
            "Gauges": gauges,
            "Counters": counters,
            "Points": [],
            "Samples": samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_histograms_and_gauges() {
        let m = Metrics::default();
        m.record("kv", "read", 200, Duration::from_micros(300));
        m.record("kv", "read", 404, Duration::from_millis(3));
        m.transit_op("k\"1", "encrypt");
        m.audit_failure();
        let p = m.prometheus(&Gauges {
            sealed: false,
            tokens: Some(3),
        });
        assert!(p.contains(
            "strongroom_requests_total{mount_type=\"kv\",operation=\"read\",status=\"2xx\"} 1"
        ));
        assert!(p.contains(
            "strongroom_requests_total{mount_type=\"kv\",operation=\"read\",status=\"4xx\"} 1"
        ));
        assert!(p.contains("strongroom_request_duration_seconds_bucket{mount_type=\"kv\",operation=\"read\",le=\"0.0005\"} 1"));
        assert!(p.contains(
            "strongroom_request_duration_seconds_count{mount_type=\"kv\",operation=\"read\"} 2"
        ));
        assert!(p.contains(
            "strongroom_transit_operations_total{key=\"k\\\"1\",operation=\"encrypt\"} 1"
        ));
        assert!(p.contains("strongroom_audit_failures_total 1"));
        assert!(p.contains("strongroom_sealed 0"));
        assert!(p.contains("strongroom_tokens 3"));
        let j = m.json(&Gauges {
            sealed: true,
            tokens: None,
        });
        assert_eq!(j["Gauges"][0]["Value"], 1);
        assert!(j["Counters"].as_array().unwrap().len() >= 4);
    }
}
