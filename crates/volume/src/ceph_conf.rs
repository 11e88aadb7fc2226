//! What the kernel RBD driver needs from a Ceph client configuration, read without librados:
//! the monitors' v1 (legacy msgr) addresses from a `mon host` value, and a user's cephx key
//! from ceph.conf (`key`) or a keyring file. librados resolves these itself; the kernel is
//! handed them in its map request ([`crate::datapath::krbd`]).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use strongroom_vault_client::SecretString;

/// The v1 port a monitor listens on when its address names no port.
const V1_DEFAULT_PORT: &str = "6789";
/// The msgr2 default port: a bare `ip:3300` is a v2 address.
const V2_DEFAULT_PORT: &str = "3300";

/// The v1 `ip:port` of every monitor in a `mon host` value: `[v2:a:3300,v1:a:6789]` address
/// vectors, `v1:`/`v2:` prefixed or bare addresses (a bare one without a port is on 6789),
/// separated by `,`, `;` or whitespace; `/nonce` suffixes are dropped. A monitor with only a
/// v2 address is left out; none at all is an error (the kernel driver connects on v1).
pub fn v1_monitors(mon_host: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in split_top(mon_host) {
        let item = item.trim();
        let addrs: Vec<&str> = match item.strip_prefix('[') {
            Some(inner) if inner.starts_with("v1:") || inner.starts_with("v2:") => {
                inner.trim_end_matches(']').split(',').collect()
            }
            _ => vec![item],
        };
        out.extend(addrs.into_iter().filter_map(v1_addr));
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no v1 monitor address in {mon_host:?}: the kernel rbd driver connects to monitors \
             on their v1 (legacy) port, 6789 by default"
        )));
    }
    Ok(out)
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

/// One address as the kernel wants it (`ip:port`, `[ipv6]:port`), if it is a v1 address.
fn v1_addr(a: &str) -> Option<String> {
    let a = a.trim();
    if a.starts_with("v2:") {
        return None;
    }
    let a = a.strip_prefix("v1:").unwrap_or(a);
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
    match port {
        Some(V2_DEFAULT_PORT) => None,
        Some(_) => Some(a.to_owned()),
        None if a.contains(':') && !a.starts_with('[') => Some(format!("[{a}]:{V1_DEFAULT_PORT}")),
        None => Some(format!("{a}:{V1_DEFAULT_PORT}")),
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

    #[test]
    fn v1_addresses_from_every_mon_host_form() {
        let m = |s: &str| v1_monitors(s).unwrap();
        assert_eq!(
            m("[v2:127.0.0.1:3300,v1:127.0.0.1:6789]"),
            ["127.0.0.1:6789"]
        );
        assert_eq!(
            m("[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0] [v2:10.0.0.2:3300,v1:10.0.0.2:6790]"),
            ["10.0.0.1:6789", "10.0.0.2:6790"]
        );
        assert_eq!(
            m("10.0.0.1, 10.0.0.2:6800;mon3"),
            ["10.0.0.1:6789", "10.0.0.2:6800", "mon3:6789"]
        );
        assert_eq!(m("v1:10.0.0.1:6789,10.0.0.2:3300"), ["10.0.0.1:6789"]);
        assert_eq!(m("[::1]:6789"), ["[::1]:6789"]);
        assert_eq!(m("[v2:[::1]:3300,v1:[::1]:6789]"), ["[::1]:6789"]);
        for only_v2 in [
            "v2:10.0.0.1:3300",
            "[v2:10.0.0.1:3300]",
            "10.0.0.1:3300",
            "",
        ] {
            let e = v1_monitors(only_v2).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{only_v2}");
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
