//! ceph-csi's RBD StorageClass parameters and its cluster map.
//!
//! * [`ClusterMap`]: ceph-csi's `config.json` (`ceph-csi-config` ConfigMap), a list of
//!   `{"clusterID": ..., "monitors": [...], "rbd": {"radosNamespace": ...}}`; other keys of an
//!   entry (`cephFS`, `nfs`, `readAffinity`...) belong to other drivers and are ignored.
//! * [`RbdParams`]: `clusterID` (→ the monitors), `pool`, `dataPool`, `imageFeatures`,
//!   `radosNamespace` (may use `${pvc.namespace}`: one RADOS namespace per tenant),
//!   `mapOptions` (the kernel rbd driver's map options; only `krbd:ms_mode=...`). The Ceph
//!   user and key come with each request's secrets (`userID`/`userKey`), never from here.

use super::{get, invalid, Params, PvcMeta, Template};
use crate::errors::CsiError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use strongroom_volume::{ImageFeatures, ImageLayout, MsMode};

pub const CLUSTER_ID: &str = "clusterID";
pub const POOL: &str = "pool";
pub const DATA_POOL: &str = "dataPool";
pub const IMAGE_FEATURES: &str = "imageFeatures";
pub const RADOS_NAMESPACE: &str = "radosNamespace";
pub const MAP_OPTIONS: &str = "mapOptions";
pub const KEYS: &[&str] = &[
    CLUSTER_ID,
    POOL,
    DATA_POOL,
    IMAGE_FEATURES,
    RADOS_NAMESPACE,
    MAP_OPTIONS,
];
/// The map options understood in `mapOptions` (anything else could change how the kernel
/// maps the image, e.g. drop its exclusive access: refused).
const KNOWN_MAP_OPTIONS: &[&str] = &["ms_mode"];

/// One cluster of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CephCluster {
    /// `host:port,...` as librados' `mon_host` takes it.
    pub monitors: String,
    /// The cluster's default RADOS namespace for RBD images ("" = none).
    pub rados_namespace: String,
}

/// ceph-csi's `config.json`: clusterID → monitors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMap {
    clusters: BTreeMap<String, CephCluster>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(rename = "clusterID")]
    cluster_id: String,
    monitors: Vec<String>,
    #[serde(default)]
    rbd: Option<RbdEntry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RbdEntry {
    #[serde(default)]
    rados_namespace: String,
}

impl ClusterMap {
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let entries: Vec<Entry> =
            serde_json::from_slice(json).map_err(|e| format!("not a ceph-csi config.json: {e}"))?;
        let mut clusters = BTreeMap::new();
        for e in entries {
            let ok_addr = |m: &str| !m.is_empty() && m.chars().all(|c| c.is_ascii_graphic());
            if e.cluster_id.is_empty()
                || e.monitors.is_empty()
                || !e.monitors.iter().all(|m| ok_addr(m))
            {
                return Err(format!(
                    "cluster {:?}: a clusterID and at least one monitor address are required",
                    e.cluster_id
                ));
            }
            let c = CephCluster {
                monitors: e.monitors.join(","),
                rados_namespace: e.rbd.unwrap_or_default().rados_namespace,
            };
            if clusters.insert(e.cluster_id.clone(), c).is_some() {
                return Err(format!("clusterID {:?} appears twice", e.cluster_id));
            }
        }
        Ok(ClusterMap { clusters })
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let b = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        Self::parse(&b).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn get(&self, id: &str) -> Option<&CephCluster> {
        self.clusters.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }
}

/// Where and how an RBD-backed volume's image is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdParams {
    pub cluster_id: String,
    pub monitors: String,
    pub pool: String,
    pub namespace: String,
    pub layout: ImageLayout,
    /// `mapOptions`' `ms_mode` (`None`: chosen from the monitors' addresses).
    pub ms_mode: Option<MsMode>,
}

/// ceph-csi's `mapOptions`: `[krbd:]opt[,opt...]` sections separated by `;`, a section without
/// a mounter prefix being krbd's. Only `ms_mode=<mode>`, once, is accepted: another option,
/// another mounter (`nbd:`), a duplicate or an unknown mode is refused, never passed on.
fn parse_map_options(v: &str) -> Result<Option<MsMode>, CsiError> {
    let bad = |why: String| invalid(MAP_OPTIONS, why);
    let mut mode = None;
    for section in v.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let opts = match section.split_once(':') {
            Some(("krbd", rest)) => rest,
            Some((mounter, _)) if !mounter.contains(['=', ',']) => {
                return Err(bad(format!(
                    "{mounter:?} options: only the kernel driver (krbd) maps images here"
                )))
            }
            _ => section,
        };
        for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
            if !KNOWN_MAP_OPTIONS.contains(&key) {
                return Err(bad(format!(
                    "map option {key:?} is not accepted (known: {})",
                    KNOWN_MAP_OPTIONS.join(", ")
                )));
            }
            let m = MsMode::parse(value).map_err(|e| bad(e.to_string()))?;
            if mode.replace(m).is_some() {
                return Err(bad("ms_mode is given twice".into()));
            }
        }
    }
    Ok(mode)
}

/// A pool or RADOS namespace name (what `rbd` accepts, without '/' or '@').
fn check_name(key: &str, v: &str) -> Result<(), CsiError> {
    let ok = v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && !v.starts_with('.') {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{v:?} is not a pool or namespace name"),
        ))
    }
}

/// The RBD parameters, if the StorageClass names a `pool` (else the volume is a file on the
/// controller's node, and no RBD key may be set).
pub fn parse(
    params: &Params,
    clusters: &ClusterMap,
    pvc: &PvcMeta,
) -> Result<Option<RbdParams>, CsiError> {
    let Some(pool) = get(params, POOL) else {
        return match KEYS.iter().find(|k| params.contains_key(**k)) {
            Some(k) => Err(invalid(
                k,
                format!("only applies with {POOL:?} (an RBD volume)"),
            )),
            None => Ok(None),
        };
    };
    check_name(POOL, pool)?;
    let cluster_id =
        get(params, CLUSTER_ID).ok_or_else(|| invalid(CLUSTER_ID, "required with \"pool\""))?;
    let cluster = clusters.get(cluster_id).ok_or_else(|| {
        invalid(
            CLUSTER_ID,
            format!(
                "{cluster_id:?} is not in the Ceph cluster map (known: {})",
                clusters.ids().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let namespace = match get(params, RADOS_NAMESPACE) {
        Some(t) => Template::parse(RADOS_NAMESPACE, t)?.render(pvc)?,
        None => cluster.rados_namespace.clone(),
    };
    if !namespace.is_empty() {
        check_name(RADOS_NAMESPACE, &namespace)?;
    }
    let data_pool = get(params, DATA_POOL)
        .map(|p| check_name(DATA_POOL, p).map(|()| p.to_owned()))
        .transpose()?;
    let features = get(params, IMAGE_FEATURES)
        .map(|f| ImageFeatures::parse(f).map_err(|e| invalid(IMAGE_FEATURES, e)))
        .transpose()?;
    let ms_mode = get(params, MAP_OPTIONS)
        .map(parse_map_options)
        .transpose()?
        .flatten();
    if features.is_some_and(|f| !f.has_layering()) {
        return Err(invalid(
            IMAGE_FEATURES,
            "must include \"layering\" (snapshots and clones need it)",
        ));
    }
    Ok(Some(RbdParams {
        cluster_id: cluster_id.to_owned(),
        monitors: cluster.monitors.clone(),
        pool: pool.to_owned(),
        namespace,
        layout: ImageLayout {
            features,
            data_pool,
        },
        ms_mode,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ClusterMap {
        ClusterMap::parse(
            br#"[{"clusterID": "c1", "monitors": ["10.0.0.1:6789", "10.0.0.2:6789"],
                  "rbd": {"radosNamespace": "ns1"}, "cephFS": {"subvolumeGroup": "x"}}]"#,
        )
        .unwrap()
    }

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pvc() -> PvcMeta {
        PvcMeta {
            namespace: "tenant-a".into(),
            name: None,
            pv_name: None,
        }
    }

    #[test]
    fn cluster_maps_as_ceph_csi_writes_them() {
        let c = map().get("c1").cloned().unwrap();
        assert_eq!(c.monitors, "10.0.0.1:6789,10.0.0.2:6789");
        assert_eq!(c.rados_namespace, "ns1");
        for bad in [
            &br#"[{"clusterID": "c", "monitors": []}]"#[..],
            br#"[{"clusterID": "", "monitors": ["m:1"]}]"#,
            br#"[{"clusterID": "c", "monitors": ["m:1"]}, {"clusterID": "c", "monitors": ["m:2"]}]"#,
            br#"{"c": {}}"#,
        ] {
            assert!(ClusterMap::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn map_options_carry_only_a_known_ms_mode() {
        let (m, pvc) = (map(), pvc());
        let mode = |v: &str| {
            parse(
                &p(&[(POOL, "rbd"), (CLUSTER_ID, "c1"), (MAP_OPTIONS, v)]),
                &m,
                &pvc,
            )
            .map(|r| r.unwrap().ms_mode)
        };
        assert_eq!(mode("krbd:ms_mode=secure").unwrap(), Some(MsMode::Secure));
        assert_eq!(mode("ms_mode=prefer-crc").unwrap(), Some(MsMode::PreferCrc));
        assert_eq!(mode(" krbd:ms_mode=crc ; ").unwrap(), Some(MsMode::Crc));
        assert_eq!(mode("").unwrap(), None);
        for bad in [
            "krbd:ms_mode=secure,exclusive",
            "krbd:noshare",
            "lock_on_read",
            "krbd:ms_mode=fast",
            "krbd:ms_mode=secure;krbd:ms_mode=crc",
            "nbd:try-netlink",
            "krbd:ms_mode=secure,key=other",
            "krbd:ms_mode=secure name=admin",
        ] {
            let e = mode(bad).unwrap_err();
            assert!(
                matches!(&e, CsiError::Invalid(t) if t.contains(MAP_OPTIONS)),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn rbd_parameters_are_checked_and_rendered() {
        let (m, pvc) = (map(), pvc());
        assert_eq!(parse(&p(&[]), &m, &pvc).unwrap(), None);
        let r = parse(&p(&[(POOL, "rbd"), (CLUSTER_ID, "c1")]), &m, &pvc)
            .unwrap()
            .unwrap();
        assert_eq!((r.pool.as_str(), r.namespace.as_str()), ("rbd", "ns1"));
        assert_eq!(r.layout, ImageLayout::default());
        assert_eq!(r.ms_mode, None);
        let r = parse(
            &p(&[
                (POOL, "rbd"),
                (CLUSTER_ID, "c1"),
                (RADOS_NAMESPACE, "t-${pvc.namespace}"),
                (DATA_POOL, "ec-data"),
                (IMAGE_FEATURES, "layering,exclusive-lock"),
            ]),
            &m,
            &pvc,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.namespace, "t-tenant-a");
        assert_eq!(r.layout.data_pool.as_deref(), Some("ec-data"));
        assert!(r.layout.features.unwrap().has_layering());
        for (bad, key) in [
            (p(&[(CLUSTER_ID, "c1")]), CLUSTER_ID),
            (p(&[(POOL, "rbd")]), CLUSTER_ID),
            (p(&[(POOL, "rbd"), (CLUSTER_ID, "nope")]), CLUSTER_ID),
            (p(&[(POOL, "a/b"), (CLUSTER_ID, "c1")]), POOL),
            (
                p(&[
                    (POOL, "rbd"),
                    (CLUSTER_ID, "c1"),
                    (IMAGE_FEATURES, "exclusive-lock"),
                ]),
                IMAGE_FEATURES,
            ),
            (
                p(&[
                    (POOL, "rbd"),
                    (CLUSTER_ID, "c1"),
                    (IMAGE_FEATURES, "layering,journal"),
                ]),
                IMAGE_FEATURES,
            ),
        ] {
            let e = parse(&bad, &m, &pvc).unwrap_err();
            assert!(
                matches!(&e, CsiError::Invalid(t) if t.contains(key)),
                "{bad:?}: {e}"
            );
        }
    }
}
