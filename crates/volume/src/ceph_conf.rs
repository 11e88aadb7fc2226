//! What the kernel RBD driver needs from a Ceph client configuration, read without librados:
//! the monitors' addresses from a `mon host` value (v1 or v2, see [`kernel_monitors`]), and a
//! user's cephx key from ceph.conf (`key`) or a keyring file. librados resolves these itself;
//! the kernel is handed them in its map request ([`crate::datapath::krbd`]).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use strongroom_vault_client::SecretString;

/// The v1 port a monitor listens on when its address names no port.
const V1_DEFAULT_PORT: &str = "6789";
/// The msgr2 default port: a bare `ip:3300` is a v2 address.
const V2_DEFAULT_PORT: &str = "3300";

/// The kernel client's wire protocol: libceph's `ms_mode` map option (Linux 5.11+).
/// `Legacy` is msgr1 (the monitors' v1 addresses); every other mode is msgr2 (their v2
/// addresses): `crc` integrity only, `secure` encrypted, `prefer-*` that one if the cluster
/// allows it, else the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MsMode {
    Legacy,
    Crc,
    Secure,
    PreferCrc,
    PreferSecure,
}

impl MsMode {
    const ALL: [MsMode; 5] = [
        MsMode::Legacy,
        MsMode::Crc,
        MsMode::Secure,
        MsMode::PreferCrc,
        MsMode::PreferSecure,
    ];

    /// One of the kernel's names (`legacy`, `crc`, `secure`, `prefer-crc`, `prefer-secure`);
    /// anything else is refused with the list.
    pub fn parse(s: &str) -> Result<MsMode> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.as_str()).collect();
                Error::InvalidArgument(format!("ms_mode {s:?} is not one of {}", names.join(", ")))
            })
    }

    /// The kernel's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            MsMode::Legacy => "legacy",
            MsMode::Crc => "crc",
            MsMode::Secure => "secure",
            MsMode::PreferCrc => "prefer-crc",
            MsMode::PreferSecure => "prefer-secure",
        }
    }

    /// Whether the mode speaks msgr2 (to the monitors' v2 addresses).
    pub fn is_msgr2(self) -> bool {
        self != MsMode::Legacy
    }
}

/// Where and how the kernel client reaches the monitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelMonitors {
    /// `ip:port` of each monitor, in the protocol `ms_mode` selects.
    pub addrs: Vec<String>,
    /// The `ms_mode` option to pass; `None`: none (msgr1, understood by every kernel).
    pub ms_mode: Option<MsMode>,
}

/// The monitors of a `mon host` value as the kernel client is to reach them. `mon host` holds
/// `[v2:a:3300,v1:a:6789]` address vectors, `v1:`/`v2:` prefixed or bare addresses, separated
/// by `,`, `;` or whitespace (`/nonce` suffixes are dropped). A bare address is a v2 one on
/// port 3300, a v1 one on any other port, and both (6789 and 3300) without a port, as Ceph
/// reads them.
///
/// `requested` `None`: the v1 addresses with no `ms_mode` when there are any (any kernel),
/// else the v2 addresses with `prefer-crc` (a cluster with `ms_bind_msgr1 = false`; Linux
/// 5.11+). An explicit mode gets the addresses of its protocol, or an error when the monitors
/// have none.
pub fn kernel_monitors(mon_host: &str, requested: Option<MsMode>) -> Result<KernelMonitors> {
    let (mut v1, mut v2) = (Vec::new(), Vec::new());
    for item in split_top(mon_host) {
        let item = item.trim();
        let addrs: Vec<&str> = match item.strip_prefix('[') {
            Some(inner) if inner.starts_with("v1:") || inner.starts_with("v2:") => {
                inner.trim_end_matches(']').split(',').collect()
            }
            _ => vec![item],
        };
        for a in addrs {
            let (a1, a2) = classify(a);
            v1.extend(a1);
            v2.extend(a2);
        }
    }
    let (addrs, ms_mode) = match requested {
        None if !v1.is_empty() => (v1, None),
        None => (v2, Some(MsMode::PreferCrc)),
        Some(m) if m.is_msgr2() => (v2, Some(m)),
        Some(m) => (v1, Some(m)),
    };
    if addrs.is_empty() {
        let which = match ms_mode {
            Some(m) if m.is_msgr2() && requested.is_some() => {
                format!("v2 (msgr2, needed by ms_mode={})", m.as_str())
            }
            Some(MsMode::Legacy) => "v1 (needed by ms_mode=legacy)".to_owned(),
            _ => "v1 or v2".to_owned(),
        };
        return Err(Error::InvalidArgument(format!(
            "no {which} monitor address in {mon_host:?}"
        )));
    }
    Ok(KernelMonitors { addrs, ms_mode })
}

/// Split at `,` `;` and whitespace outside brackets.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' | ';' | ' ' | '\t' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// One address of `mon host` as the kernel wants it (`ip:port`, `[ipv6]:port`): its v1 form,
/// its v2 form, or both (a bare address without a port).
fn classify(a: &str) -> (Option<String>, Option<String>) {
    let a = a.trim();
    let (proto, a) = match (a.strip_prefix("v1:"), a.strip_prefix("v2:")) {
        (Some(rest), _) => (Some(1), rest),
        (_, Some(rest)) => (Some(2), rest),
        _ => (None, a),
    };
    let a = a.split('/').next().unwrap_or(a);
    let port = match a.rsplit_once(':') {
        // `[::1]:6789`, `1.2.3.4:6789`, `host:6789`; a bare IPv6 `::1` has more colons
        Some((h, p))
            if p.chars().all(|c| c.is_ascii_digit()) && (h.ends_with(']') || !h.contains(':')) =>
        {
            Some(p)
        }
        _ => None,
    };
    let with_port = |p: &str| {
        if a.contains(':') && !a.starts_with('[') {
            format!("[{a}]:{p}")
        } else {
            format!("{a}:{p}")
        }
    };
    if a.is_empty() {
        return (None, None);
    }
    match (proto, port) {
        (Some(1), Some(_)) => (Some(a.to_owned()), None),
        (Some(1), None) => (Some(with_port(V1_DEFAULT_PORT)), None),
        (Some(_), Some(_)) => (None, Some(a.to_owned())),
        (Some(_), None) => (None, Some(with_port(V2_DEFAULT_PORT))),
        (None, Some(V2_DEFAULT_PORT)) => (None, Some(a.to_owned())),
        (None, Some(_)) => (Some(a.to_owned()), None),
        (None, None) => (
            Some(with_port(V1_DEFAULT_PORT)),
            Some(with_port(V2_DEFAULT_PORT)),
        ),
    }
}

/// A ceph.conf's values for client `user`: `[global]`, then `[client]`, then
/// `[client.<user>]` (a later section wins). Keys are normalised as Ceph does (`mon_host` and
/// `mon host` are one key).
pub struct ClientConf {
    values: Vec<(String, String)>,
}

impl ClientConf {
    /// Read `conf` (`None`: `$CEPH_CONF`, else `/etc/ceph/ceph.conf`).
    pub fn read(conf: Option<&Path>, user: &str) -> Result<ClientConf> {
        let path = conf
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CEPH_CONF").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/etc/ceph/ceph.conf"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        Ok(Self::parse(&text, user))
    }

    fn parse(text: &str, user: &str) -> ClientConf {
        let wanted = [
            "global".to_owned(),
            "client".into(),
            format!("client.{user}"),
        ];
        let mut by_rank: [Vec<(String, String)>; 3] = Default::default();
        let mut rank = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                rank = wanted.iter().position(|w| w == sec.trim());
                continue;
            }
            if let (Some(r), Some((k, v))) = (rank, line.split_once('=')) {
                let v = v.split(['#', ';']).next().unwrap_or("").trim();
                by_rank[r].push((normalise(k), v.to_owned()));
            }
        }
        ClientConf {
            values: by_rank.into_iter().flatten().collect(),
        }
    }

    /// The value of `key` (last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        let key = normalise(key);
        self.values
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `mon host` value.
    pub fn mon_host(&self) -> Result<&str> {
        self.get("mon host").ok_or_else(|| {
            Error::InvalidArgument("the Ceph configuration names no monitors (mon host)".into())
        })
    }

    /// The cephx key of `client.<user>`: a `key` value, else the first keyring file that has
    /// the user (Ceph's default keyring search when none is configured).
    pub fn key(&self, user: &str) -> Result<SecretString> {
        if let Some(k) = self.get("key") {
            return Ok(SecretString::new(k));
        }
        let entity = format!("client.{user}");
        let list = self.get("keyring").unwrap_or(
            "/etc/ceph/$cluster.$name.keyring,/etc/ceph/$cluster.keyring,/etc/ceph/keyring",
        );
        for path in split_top(list) {
            let path = path.replace("$cluster", "ceph").replace("$name", &entity);
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Some(k) = keyring_key(&text, &entity) {
                    return Ok(k);
                }
            }
        }
        Err(Error::Unauthenticated(format!(
            "no key for Ceph user {entity} in the configuration or its keyrings ({list})"
        )))
    }
}

/// `mon_host`, `mon  host` and `Mon Host` are one key.
fn normalise(k: &str) -> String {
    k.trim()
        .to_ascii_lowercase()
        .replace('_', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `key` of `[entity]` in a keyring file's text.
fn keyring_key(text: &str, entity: &str) -> Option<SecretString> {
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = sec.trim() == entity;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                if normalise(k) == "key" {
                    return Some(SecretString::new(v.trim()));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(s: &str) -> Vec<String> {
        let k = kernel_monitors(s, None).unwrap();
        assert_eq!(k.ms_mode, None, "{s}");
        k.addrs
    }

    #[test]
    fn v1_addresses_from_every_mon_host_form() {
        assert_eq!(
            v1("[v2:127.0.0.1:3300,v1:127.0.0.1:6789]"),
            ["127.0.0.1:6789"]
        );
        assert_eq!(
            v1("[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0] [v2:10.0.0.2:3300,v1:10.0.0.2:6790]"),
            ["10.0.0.1:6789", "10.0.0.2:6790"]
        );
        assert_eq!(
            v1("10.0.0.1, 10.0.0.2:6800;mon3"),
            ["10.0.0.1:6789", "10.0.0.2:6800", "mon3:6789"]
        );
        assert_eq!(v1("v1:10.0.0.1:6789,10.0.0.2:3300"), ["10.0.0.1:6789"]);
        assert_eq!(v1("[::1]:6789"), ["[::1]:6789"]);
        assert_eq!(v1("::1"), ["[::1]:6789"]);
        assert_eq!(v1("[v2:[::1]:3300,v1:[::1]:6789]"), ["[::1]:6789"]);
    }

    #[test]
    fn v2_only_monitors_are_reached_over_msgr2() {
        for (mon_host, want) in [
            ("v2:10.0.0.1:3300", vec!["10.0.0.1:3300"]),
            (
                "[v2:10.0.0.1:3300/0] [v2:10.0.0.2:3301]",
                vec!["10.0.0.1:3300", "10.0.0.2:3301"],
            ),
            (
                "10.0.0.1:3300,v2:10.0.0.2",
                vec!["10.0.0.1:3300", "10.0.0.2:3300"],
            ),
            ("[v2:[::1]:3300]", vec!["[::1]:3300"]),
        ] {
            let k = kernel_monitors(mon_host, None).unwrap();
            assert_eq!(k.addrs, want, "{mon_host}");
            assert_eq!(k.ms_mode, Some(MsMode::PreferCrc), "{mon_host}");
        }
    }

    #[test]
    fn an_explicit_mode_takes_the_addresses_of_its_protocol() {
        let both = "[v2:10.0.0.1:3300,v1:10.0.0.1:6789] 10.0.0.2";
        let k = kernel_monitors(both, Some(MsMode::Secure)).unwrap();
        assert_eq!(k.addrs, ["10.0.0.1:3300", "10.0.0.2:3300"]);
        assert_eq!(k.ms_mode, Some(MsMode::Secure));
        let k = kernel_monitors(both, Some(MsMode::Legacy)).unwrap();
        assert_eq!(k.addrs, ["10.0.0.1:6789", "10.0.0.2:6789"]);
        assert_eq!(k.ms_mode, Some(MsMode::Legacy));
        let e = kernel_monitors("v2:10.0.0.1:3300", Some(MsMode::Legacy)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("ms_mode=legacy"), "{e}");
        let e = kernel_monitors("10.0.0.1:6789", Some(MsMode::Crc)).unwrap_err();
        assert!(e.to_string().contains("ms_mode=crc"), "{e}");
        for nothing in ["", " , ;", "[v2:]"] {
            let e = kernel_monitors(nothing, None).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{nothing:?}");
        }
    }

    #[test]
    fn modes_by_the_kernels_names_only() {
        for m in MsMode::ALL {
            assert_eq!(MsMode::parse(m.as_str()).unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        for bad in ["", "CRC", "crc,exclusive", "prefer_crc", "secure ", "msgr2"] {
            let e = MsMode::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn client_section_wins_and_keys_are_normalised() {
        let c = ClientConf::parse(
            "[global]\nmon_host = 1.1.1.1 # old\nkeyring = /k1\n[osd]\nkeyring = /osd\n\
             [client]\nmon host = 2.2.2.2\n[client.csi]\n  Key = AQBsecret==\n",
            "csi",
        );
        assert_eq!(c.mon_host().unwrap(), "2.2.2.2");
        assert_eq!(c.get("keyring"), Some("/k1"));
        assert_eq!(c.key("csi").unwrap().expose(), "AQBsecret==");
        let other = ClientConf::parse("[client.csi]\nkey = x\n", "admin");
        assert!(other.get("key").is_none());
        assert!(other.mon_host().is_err());
    }

    #[test]
    fn key_from_the_keyring_file_named_in_the_conf() {
        let d = tempfile::tempdir().unwrap();
        let kr = d.path().join("ceph.client.admin.keyring");
        std::fs::write(
            &kr,
            "[client.other]\n\tkey = AQBother==\n[client.admin]\n\tkey = AQBadmin==\n\tcaps mon = \"allow *\"\n",
        )
        .unwrap();
        let conf = format!(
            "[global]\nkeyring = {}/$cluster.$name.keyring\n",
            d.path().display()
        );
        let c = ClientConf::parse(&conf, "admin");
        assert_eq!(c.key("admin").unwrap().expose(), "AQBadmin==");
        let e = c.key("nobody").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unauthenticated);
        assert!(!e.to_string().contains("AQB"), "{e}");
    }
}
