//! Audit devices. Every request and response is written as one JSON line to every enabled
//! device, with every string value replaced by `hmac-sha256:<hex>` under the device's salt
//! (so the log proves what happened without holding secrets). `sys/audit-hash` computes the
//! same HMAC for a given input. If devices are enabled and none can write, the request fails
//! rather than going unaudited.

use crate::barrier::{BarrierError, View};
use crate::crypto;
use crate::request::{ApiError, Request, Response};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub options: Map<String, Value>,
    pub local: bool,
}

enum Sink {
    File(Mutex<std::fs::File>),
    Stdout,
    Discard,
}

pub struct Device {
    pub config: DeviceConfig,
    /// From the config file: not stored, not removable through the API.
    declared: bool,
    salt: Zeroizing<Vec<u8>>,
    sink: Sink,
    hmac_accessor: bool,
}

impl Device {
    pub fn hash(&self, s: &str) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(crypto::hmac_sha256(&self.salt, s.as_bytes()))
        )
    }

    fn hash_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.hash(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.hash_value(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), self.hash_value(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn write_line(&self, v: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
        line.push(b'\n');
        match &self.sink {
            Sink::File(f) => {
                let mut f = f.lock();
                f.write_all(&line)?;
                f.flush()
            }
            Sink::Stdout => std::io::stdout().lock().write_all(&line),
            Sink::Discard => Ok(()),
        }
    }

    fn open(config: DeviceConfig, salt: Zeroizing<Vec<u8>>) -> Result<Self, String> {
        if config.kind != "file" {
            return Err(format!("unknown backend type: {:?}", config.kind));
        }
        let path = config
            .options
            .get("file_path")
            .or_else(|| config.options.get("path"))
            .and_then(|v| v.as_str())
            .ok_or("file_path is required")?
            .to_string();
        let sink = match path.as_str() {
            "stdout" => Sink::Stdout,
            "discard" => Sink::Discard,
            p => Sink::File(Mutex::new(open_log(p, file_mode(&config.options)?)?)),
        };
        let hmac_accessor = config
            .options
            .get("hmac_accessor")
            .map(|v| v != "false" && v != &Value::Bool(false))
            .unwrap_or(true);
        Ok(Self {
            config,
            declared: false,
            salt,
            sink,
            hmac_accessor,
        })
    }
}

/// The `mode` option: octal file permissions, default 0600.
fn file_mode(options: &Map<String, Value>) -> Result<u32, String> {
    match options.get("mode").and_then(|v| v.as_str()) {
        None | Some("") => Ok(0o600),
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("invalid mode {m:?}")),
    }
}

/// Open an audit log for appending without ever following a symlink, and refuse to append
/// to a file that is not a regular file of ours with exactly the configured mode: an audit
/// device must not become a way to write into other files.
fn open_log(p: &str, mode: u32) -> Result<std::fs::File, String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let refuse = |why: String| format!("sanity check failed; refusing to append to \"{p}\": {why}");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(p)
        .map_err(|e| format!("sanity check failed; unable to open \"{p}\" for writing: {e}"))?;
    let meta = f.metadata().map_err(|e| refuse(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(refuse(format!("owned by uid {}, not {uid}", meta.uid())));
    }
    let have = meta.permissions().mode() & 0o777;
    if have != mode {
        return Err(refuse(format!("mode {have:04o}, want {mode:04o}")));
    }
    Ok(f)
}

pub struct AuditBroker {
    view: View,
    devices: RwLock<Vec<Arc<Device>>>,
    failures: Arc<std::sync::atomic::AtomicU64>,
}

impl AuditBroker {
    /// The devices enabled through the API (stored) and those the config file declares;
    /// a declared device keeps its salt across restarts.
    pub fn load(
        view: View,
        declared: &[DeviceConfig],
        failures: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Self, BarrierError> {
        let stored: Vec<DeviceConfig> = view.get_json("devices")?.unwrap_or_default();
        let all = stored.into_iter().map(|c| (c, false));
        let mut devices = Vec::new();
        for (c, is_declared) in all.chain(declared.iter().map(|c| (c.clone(), true))) {
            let key = format!("salt/{}", c.path);
            let salt = match view.get(&key)? {
                Some(s) => s,
                None => {
                    let s = crypto::random_vec(32);
                    view.put(&key, &s)?;
                    s
                }
            };
            match Device::open(c.clone(), salt) {
                Ok(d) => devices.push(Arc::new(Device {
                    declared: is_declared,
                    ..d
                })),
                // keep the device configured; requests will fail until it can write again
                Err(e) => {
                    tracing::error!(path = %c.path, error = %e, "audit device failed to open")
                }
            }
        }
        Ok(Self {
            view,
            devices: RwLock::new(devices),
            failures,
        })
    }

    pub fn list(&self) -> Vec<DeviceConfig> {
        self.devices
            .read()
            .iter()
            .map(|d| d.config.clone())
            .collect()
    }

    pub fn get(&self, path: &str) -> Option<Arc<Device>> {
        self.devices
            .read()
            .iter()
            .find(|d| d.config.path == path)
            .cloned()
    }

    pub fn enable(&self, config: DeviceConfig) -> Result<(), ApiError> {
        if self.get(&config.path).is_some() {
            return Err(ApiError::bad_request(format!(
                "path already in use: {}",
                config.path
            )));
        }
        let salt = crypto::random_vec(32);
        let dev = Device::open(config.clone(), salt.clone()).map_err(ApiError::bad_request)?;
        dev.write_line(&json!({"time": now(), "type": "audit-enabled", "path": config.path}))
            .map_err(|e| ApiError::bad_request(format!("sanity check failed: {e}")))?;
        let mut configs = self.stored();
        configs.push(config.clone());
        self.view.put(&format!("salt/{}", config.path), &salt)?;
        self.view.put_json("devices", &configs)?;
        self.devices.write().push(Arc::new(dev));
        Ok(())
    }

    /// The devices enabled through the API (what `devices` in storage holds).
    fn stored(&self) -> Vec<DeviceConfig> {
        let devices = self.devices.read();
        let api = devices.iter().filter(|d| !d.declared);
        api.map(|d| d.config.clone()).collect()
    }

    pub fn disable(&self, path: &str) -> Result<(), ApiError> {
        if self.get(path).is_some_and(|d| d.declared) {
            return Err(ApiError::bad_request(format!(
                "audit device {path:?} is declared in the server configuration; remove it there"
            )));
        }
        let configs: Vec<DeviceConfig> = self
            .stored()
            .into_iter()
            .filter(|c| c.path != path)
            .collect();
        self.view.put_json("devices", &configs)?;
        self.view.delete(&format!("salt/{path}"))?;
        self.devices.write().retain(|d| d.config.path != path);
        Ok(())
    }

    fn broadcast(&self, build: impl Fn(&Device) -> Value) -> Result<(), ApiError> {
        let devices = self.devices.read().clone();
        if devices.is_empty() {
            return Ok(());
        }
        let mut ok = 0;
        for d in &devices {
            match d.write_line(&build(d)) {
                Ok(()) => ok += 1,
                Err(e) => {
                    self.failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(path = %d.config.path, error = %e, "audit write failed")
                }
            }
        }
        if ok == 0 {
            return Err(ApiError::internal("internal error"));
        }
        Ok(())
    }

    fn auth_block(d: &Device, req: &Request) -> Value {
        match &req.token {
            None => json!({}),
            Some(t) => json!({
                "client_token": req.client_token.as_ref().map(|c| d.hash(c)),
                "accessor": if d.hmac_accessor { d.hash(&t.accessor) } else { t.accessor.clone() },
                "display_name": t.display_name,
                "policies": t.policies,
                "token_policies": t.policies,
                "metadata": d.hash_value(&Value::Object(t.meta.clone())),
                "entity_id": t.entity_id,
                "token_type": "service",
            }),
        }
    }

    fn request_block(d: &Device, req: &Request, mount_type: &str, remote: &str) -> Value {
        json!({
            "id": req.id,
            "operation": req.op.as_str(),
            "mount_type": mount_type,
            "mount_point": req.mount,
            "client_token": req.client_token.as_ref().map(|c| d.hash(c)),
            "client_token_accessor": req.token.as_ref().map(|t| if d.hmac_accessor { d.hash(&t.accessor) } else { t.accessor.clone() }),
            "path": req.path,
            "data": if req.data.is_empty() { Value::Null } else { d.hash_value(&Value::Object(req.data.clone())) },
            "remote_address": remote,
        })
    }

    pub fn log_request(
        &self,
        req: &Request,
        mount_type: &str,
        remote: &str,
    ) -> Result<(), ApiError> {
        self.broadcast(|d| {
            json!({
                "time": now(),
                "type": "request",
                "auth": Self::auth_block(d, req),
                "request": Self::request_block(d, req, mount_type, remote),
            })
        })
    }

    pub fn log_denied(&self, req: &Request, remote: &str) {
        let _ = self.broadcast(|d| {
            json!({
                "time": now(),
                "type": "request",
                "auth": Self::auth_block(d, req),
                "request": Self::request_block(d, req, "", remote),
                "error": "permission denied",
            })
        });
    }

    pub fn log_response(
        &self,
        req: &Request,
        mount_type: &str,
        remote: &str,
        result: &Result<Response, ApiError>,
    ) -> Result<(), ApiError> {
        self.broadcast(|d| {
            let mut v = json!({
                "time": now(),
                "type": "response",
                "auth": Self::auth_block(d, req),
                "request": Self::request_block(d, req, mount_type, remote),
            });
            match result {
                Ok(r) => {
                    v["response"] = json!({
                        "data": r.data_value().map(|x| d.hash_value(&x)),
                        "auth": r.auth.as_ref().map(|x| d.hash_value(x)),
                    });
                }
                Err(e) => v["error"] = json!(e.errors.join("; ")),
            }
            v
        })
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
