//! Ids of RBD-backed volumes and snapshots that say where their image is, so that a
//! controller holding no state of its own (a new pod, a lost `--root`) finds any volume from
//! its id and the request's Ceph user alone, as ceph-csi's composite volume ids do.
//!
//! `sr1-<kind>-<len>-<clusterID>-<len>-<pool>-<len>-<namespace>-<uuid>`: `kind` is `v` for
//! a volume and `s` for a snapshot, each `<len>` is the next field's length in bytes as four
//! hex digits, `<uuid>` is 32 hex digits. The image is `csi-vol-<uuid>` (`csi-snap-<uuid>`
//! for a snapshot) in that pool and namespace. The uuid is derived from the CO's name and the
//! location, so a retried CreateVolume names the same image.

use crate::backend::RbdLocation;
use sha2::{Digest, Sha256};

const VERSION: &str = "sr1";

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbdKind {
    Volume,
    Snapshot,
}

impl RbdKind {
    fn tag(self) -> &'static str {
        match self {
            RbdKind::Volume => "v",
            RbdKind::Snapshot => "s",
        }
    }
    fn image_prefix(self) -> &'static str {
        match self {
            RbdKind::Volume => "csi-vol-",
            RbdKind::Snapshot => "csi-snap-",
        }
    }
}

/// A parsed RBD id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdId {
    pub kind: RbdKind,
    pub cluster_id: String,
    pub pool: String,
    pub namespace: String,
    /// 32 lowercase hex digits.
    uuid: String,
}

/// Characters an id field may hold (those of a volume id, minus nothing: the lengths make
/// `-` inside a field unambiguous).
fn field_ok(s: &str) -> bool {
    s.len() <= 0xffff
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

impl RbdId {
    /// The id of the volume or snapshot the CO calls `name`, at this location.
    /// `None` when a location field holds a character an id cannot carry.
    pub fn for_name(
        kind: RbdKind,
        cluster_id: &str,
        pool: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Self> {
        if !(field_ok(cluster_id) && field_ok(pool) && field_ok(namespace)) {
            return None;
        }
        let mut h = Sha256::new();
        for part in [VERSION, kind.tag(), cluster_id, pool, namespace, name] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let mut b: [u8; 16] = h.finalize()[..16].try_into().ok()?;
        b[6] = (b[6] & 0x0f) | 0x80; // RFC 9562 version 8 (custom), variant 10
        b[8] = (b[8] & 0x3f) | 0x80;
        Some(RbdId {
            kind,
            cluster_id: cluster_id.to_owned(),
            pool: pool.to_owned(),
            namespace: namespace.to_owned(),
            uuid: hex::encode(b),
        })
    }

    /// A snapshot of the volume `self` names, in the same pool and namespace.
    pub fn snapshot_named(&self, name: &str) -> Option<Self> {
        Self::for_name(
            RbdKind::Snapshot,
            &self.cluster_id,
            &self.pool,
            &self.namespace,
            name,
        )
    }

    pub fn encode(&self) -> String {
        let f = |s: &str| format!("{:04x}-{s}", s.len());
        format!(
            "{VERSION}-{}-{}-{}-{}-{}",
            self.kind.tag(),
            f(&self.cluster_id),
            f(&self.pool),
            f(&self.namespace),
            self.uuid
        )
    }

    /// The id's fields, or `None` for anything that is not exactly an encoded id.
    pub fn parse(id: &str) -> Option<Self> {
        if !id.is_ascii() {
            return None;
        }
        let rest = id.strip_prefix(VERSION)?.strip_prefix('-')?;
        let (tag, mut rest) = rest.split_once('-')?;
        let kind = match tag {
            "v" => RbdKind::Volume,
            "s" => RbdKind::Snapshot,
            _ => return None,
        };
        let mut fields = Vec::with_capacity(3);
        for _ in 0..3 {
            let (len, tail) = rest.split_once('-')?;
            if len.len() != 4 || !len.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let n = usize::from_str_radix(len, 16).ok()?;
            let field = tail.get(..n)?;
            rest = tail.get(n..)?.strip_prefix('-')?;
            if !field_ok(field) {
                return None;
            }
            fields.push(field.to_owned());
        }
        let uuid_ok = rest.len() == 32
            && rest
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if !uuid_ok {
            return None;
        }
        let namespace = fields.pop()?;
        let pool = fields.pop()?;
        let cluster_id = fields.pop()?;
        Some(RbdId {
            kind,
            cluster_id,
            pool,
            namespace,
            uuid: rest.to_owned(),
        })
    }

    /// `csi-vol-<uuid>` or `csi-snap-<uuid>`, the uuid in its dashed form.
    pub fn image_name(&self) -> String {
        let u = &self.uuid;
        format!(
            "{}{}-{}-{}-{}-{}",
            self.kind.image_prefix(),
            &u[..8],
            &u[8..12],
            &u[12..16],
            &u[16..20],
            &u[20..]
        )
    }

    pub fn location(&self) -> RbdLocation {
        RbdLocation {
            cluster_id: self.cluster_id.clone(),
            pool: self.pool.clone(),
            namespace: self.namespace.clone(),
            image: self.image_name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_name_their_image() {
        for ns in ["", "tenant-a"] {
            let id = RbdId::for_name(RbdKind::Volume, "ceph-1", "rbd.pool", ns, "pvc-1").unwrap();
            let text = id.encode();
            assert!(text.len() <= 128, "{text}");
            assert!(crate::manager_backend::valid_id(&text), "{text}");
            assert_eq!(RbdId::parse(&text), Some(id.clone()));
            let img = id.image_name();
            assert!(img.starts_with("csi-vol-") && img.len() == "csi-vol-".len() + 36);
            let loc = id.location();
            assert_eq!(
                (loc.pool.as_str(), loc.namespace.as_str()),
                ("rbd.pool", ns)
            );
            let snap = id.snapshot_named("snap-1").unwrap();
            assert_eq!(snap.kind, RbdKind::Snapshot);
            assert!(snap.image_name().starts_with("csi-snap-"));
            assert_eq!(RbdId::parse(&snap.encode()), Some(snap));
        }
    }

    #[test]
    fn the_same_name_gives_the_same_id_and_another_name_or_place_another() {
        let a = |c: &str, p: &str, n: &str| {
            RbdId::for_name(RbdKind::Volume, c, p, "", n)
                .unwrap()
                .encode()
        };
        assert_eq!(a("c", "p", "x"), a("c", "p", "x"));
        assert_ne!(a("c", "p", "x"), a("c", "p", "y"));
        assert_ne!(a("c", "p", "x"), a("c", "q", "x"));
        assert_ne!(a("c", "p", "x"), a("d", "p", "x"));
        // field boundaries are not ambiguous
        assert_ne!(a("c-p", "x", "n"), a("c", "p-x", "n"));
    }

    #[test]
    fn location_fields_an_id_cannot_carry_are_refused() {
        assert!(RbdId::for_name(RbdKind::Volume, "c/1", "p", "", "n").is_none());
        assert!(RbdId::for_name(RbdKind::Volume, "c", "p p", "", "n").is_none());
        assert!(RbdId::for_name(RbdKind::Volume, "c", "p", "ns\u{e9}", "n").is_none());
    }

    #[test]
    fn anything_else_is_not_an_rbd_id_and_never_panics() {
        let good = RbdId::for_name(RbdKind::Volume, "c", "p", "n", "x")
            .unwrap()
            .encode();
        for bad in [
            "",
            "pvc-1234",
            "sr1",
            "sr1-",
            "sr1-x-0001-c-0001-p-0001-n-0123456789abcdef0123456789abcdef",
            "sr1-v-0002-c-0001-p-0001-n-0123456789abcdef0123456789abcdef",
            "sr1-v-000g-c-0001-p-0001-n-0123456789abcdef0123456789abcdef",
            "sr1-v-0001-c-0001-p-0001-n-0123456789ABCDEF0123456789abcdef",
            "sr1-v-0001-c-0001-p-0001-n-0123456789abcdef",
            "sr1-v-ffff-c",
            "sr1-v-0001-\u{e9}-0001-p-0001-n-0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(RbdId::parse(bad), None, "{bad:?}");
        }
        // every prefix and every one-byte change of a good id: no panic
        for i in 0..good.len() {
            let _ = RbdId::parse(&good[..i]);
            for c in [b'-', b'0', b'f', b'z', 0xc3] {
                let mut b = good.clone().into_bytes();
                b[i] = c;
                if let Ok(s) = String::from_utf8(b) {
                    let _ = RbdId::parse(&s);
                }
            }
        }
    }
}
