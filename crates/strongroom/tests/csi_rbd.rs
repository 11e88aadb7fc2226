//! The CSI driver on Ceph RBD (issue 12), against a real Ceph cluster
//! (scripts/ceph/dev-cluster.sh), a real key manager and real mounts: one controller and two
//! node processes (`strongroom csi --mode node`, separate state directories) that share
//! nothing but Ceph and the KMS. Ceph credentials come with every request's secrets
//! (`userID`/`userKey`), monitors from a ceph-csi cluster map (`--ceph-cluster-map`).
//! Without Ceph: skips with a message, or fails when STRONGROOM_CEPH_REQUIRED=1.

mod common;
mod csi_common;
mod volume_common;

use csi_common::*;
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Child;
use strongroom_csi::pb::node_client::NodeClient;
use strongroom_csi::pb::*;
use strongroom_rbd::dev::DevCluster;
use tonic::transport::Channel;

const CLUSTER: &str = "test-ceph";

/// A node plugin process of its own (`--mode node`, own root, socket and log).
struct Node {
    child: Child,
    ch: Channel,
    root: PathBuf,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Rig {
    /// The nodes first: they are stopped before the controller's temp dir goes.
    a: Node,
    b: Node,
    c: Csi,
    ceph: &'static DevCluster,
    key: String,
}

fn rig() -> Option<Rig> {
    let ceph = DevCluster::for_tests()?;
    if !volume_common::can_mount() {
        return None;
    }
    let map = ceph.dir().join("csi-cluster-map.json");
    let mons = ceph.monitors().unwrap();
    let conf = serde_json::json!([{"clusterID": CLUSTER, "monitors": [mons]}]);
    std::fs::write(&map, conf.to_string()).unwrap();
    let map = map.to_string_lossy().into_owned();
    let c = Csi::start_as("controller", &["--ceph-cluster-map", &map], &[]);
    let node = |id: &str| {
        let dir = c.dir.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let (sock, root, log) = (dir.join("csi.sock"), dir.join("volumes"), dir.join("log"));
        let mut child = c.command(&sock, "node", id, &root, &log).spawn().unwrap();
        let ch = connect(&c.rt, &sock, &mut child, &log);
        Node {
            child,
            ch,
            root,
            log,
        }
    };
    let (a, b) = (node("node-a"), node("node-b"));
    let key = ceph.admin_key().unwrap();
    Some(Rig { a, b, c, ceph, key })
}

impl Rig {
    /// Tenant `i`'s KMS token and the Ceph user, as one Secret would hold them.
    fn secrets(&self, i: usize) -> HashMap<String, String> {
        let mut s = secrets(&self.c.token(i));
        s.insert("userID".into(), "admin".into());
        s.insert("userKey".into(), self.key.clone());
        s
    }

    fn params(&self, i: usize, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut p = vec![("clusterID", CLUSTER), ("pool", self.ceph.pool())];
        p.extend_from_slice(extra);
        sc_params(&self.c.env.tenants[i].0, &p)
    }

    fn create(
        &self,
        name: &str,
        i: usize,
        src: Option<VolumeContentSource>,
    ) -> Result<Volume, tonic::Status> {
        self.c.create(CreateVolumeRequest {
            name: name.into(),
            capacity_range: range(64 * MIB),
            volume_capabilities: vec![snw()],
            parameters: self.params(i, &[("protection", "kv")]),
            secrets: self.secrets(i),
            volume_content_source: src,
            ..Default::default()
        })
    }

    fn delete(&self, id: &str) {
        self.c
            .run(self.c.ctrl().delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                secrets: self.secrets(0),
            }))
            .unwrap_or_else(|e| panic!("delete {id}: {e:?}\n{}", self.c.tail()));
    }

    fn stage(&self, n: &Node, v: &Volume, staging: &Path) -> Result<(), tonic::Status> {
        let req = NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            publish_context: HashMap::new(),
            staging_target_path: staging.to_string_lossy().into_owned(),
            volume_capability: Some(snw()),
            secrets: self.secrets(0),
            volume_context: v.volume_context.clone(),
        };
        self.c
            .run(NodeClient::new(n.ch.clone()).node_stage_volume(req))
            .map(|_| ())
    }

    fn unstage(&self, n: &Node, id: &str, staging: &Path) {
        let req = NodeUnstageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.to_string_lossy().into_owned(),
        };
        self.c
            .run(NodeClient::new(n.ch.clone()).node_unstage_volume(req))
            .unwrap_or_else(|e| panic!("unstage {id}: {e:?}\n{}", log(n)));
    }

    fn rbd(&self, args: &[&str]) -> String {
        String::from_utf8(self.ceph.tool("rbd", args).unwrap()).unwrap()
    }

    /// Images and trash entries of the pool among `names`.
    fn left_in_ceph(&self, names: &[String]) -> Vec<String> {
        let ls = self.rbd(&["ls", self.ceph.pool()]);
        let trash = self.rbd(&["trash", "ls", self.ceph.pool()]);
        ls.lines()
            .chain(trash.lines())
            .filter(|l| names.iter().any(|n| l.contains(n.as_str())))
            .map(str::to_owned)
            .collect()
    }

    /// Whether the KMS still has the KV entry of volume `id` of tenant `i`.
    fn kv_entry_left(&self, i: usize, id: &str) -> bool {
        let path = format!("strongroom/{}/{id}", self.c.env.tenants[i].0);
        let r = self
            .c
            .env
            .server
            .client()
            .kv2_read_metadata("secret", &path);
        match r {
            Ok(m) => m.is_some(),
            Err(e) if e.is_not_found() => false,
            Err(e) => panic!("read KV metadata of {id}: {e:?}"),
        }
    }
}

fn log(n: &Node) -> String {
    std::fs::read_to_string(&n.log).unwrap_or_default()
}

fn staging(r: &Rig, tag: &str) -> PathBuf {
    r.c.paths(tag).0
}

fn image_of(v: &Volume) -> String {
    v.volume_context["imageName"].clone()
}

/// sha256 of every file under `dir` (relative name → hex).
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_file() {
            let h = sha2::Sha256::digest(std::fs::read(&p).unwrap());
            out.insert(e.file_name().to_string_lossy().into_owned(), hex(&h));
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_files(dir: &Path, tag: &str, n: usize) {
    for i in 0..n {
        let data: Vec<u8> = (0..(300_000 + i * 7919))
            .map(|k| (k * 31 + i * 7 + tag.len()) as u8)
            .collect();
        std::fs::write(dir.join(format!("{tag}-{i}.bin")), data).unwrap();
    }
    std::process::Command::new("sync").status().unwrap();
}

#[test]
fn an_rbd_volume_moves_between_nodes_and_a_second_writer_is_refused() {
    let Some(r) = rig() else { return };
    let v = r
        .create("pvc-rbd-move", 0, None)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", r.c.tail()));
    let image = image_of(&v);
    assert!(image.starts_with("csi-vol-"), "{:?}", v.volume_context);
    assert_eq!(v.volume_context["clusterID"], CLUSTER);
    let meta = r.rbd(&["image-meta", "list", &format!("{}/{image}", r.ceph.pool())]);
    assert!(meta.contains("strongroom.meta") && meta.contains("strongroom.csi"));
    assert!(
        !meta.contains(&r.key) && !meta.contains(&r.c.token(0)),
        "{meta}"
    );

    let (sa, sb) = (staging(&r, "a"), staging(&r, "b"));
    r.stage(&r.a, &v, &sa)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&r.a)));
    write_files(&sa, "a", 4);
    let written = hashes(&sa);
    // B cannot attach it read-write while A has it
    let busy = r.stage(&r.b, &v, &sb);
    assert_eq!(code(busy), tonic::Code::FailedPrecondition, "{}", log(&r.b));
    r.unstage(&r.a, &v.volume_id, &sa);
    assert!(
        !r.a.root.join(&v.volume_id).exists(),
        "node A keeps nothing of the volume once unstaged"
    );
    r.stage(&r.b, &v, &sb)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&r.b)));
    let read = hashes(&sb);
    assert_eq!(read.len(), 4);
    assert_eq!(read, written, "every file's hash is equal on node B");
    let busy = r.stage(&r.a, &v, &sa);
    assert_eq!(code(busy), tonic::Code::FailedPrecondition);
    r.unstage(&r.b, &v.volume_id, &sb);

    r.delete(&v.volume_id);
    assert_eq!(r.left_in_ceph(&[image]), Vec::<String>::new());
    assert!(!r.kv_entry_left(0, &v.volume_id), "the key is destroyed");
    assert!(leftovers(&r.a.root).is_empty() && leftovers(&r.b.root).is_empty());
}

impl Rig {
    fn snapshot(&self, name: &str, source: &str) -> Result<Snapshot, tonic::Status> {
        self.c
            .run(self.c.ctrl().create_snapshot(CreateSnapshotRequest {
                source_volume_id: source.into(),
                name: name.into(),
                secrets: self.secrets(0),
                parameters: HashMap::new(),
            }))
            .map(|r| r.into_inner().snapshot.unwrap())
    }

    fn delete_snapshot(&self, id: &str) {
        self.c
            .run(self.c.ctrl().delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: id.into(),
                secrets: self.secrets(0),
            }))
            .unwrap_or_else(|e| panic!("delete snapshot {id}: {e:?}\n{}", self.c.tail()));
    }

    /// The image names of every volume or snapshot id given (from the controller's records).
    fn images(&self, ids: &[&str]) -> Vec<String> {
        ids.iter()
            .filter_map(|id| {
                let rec = std::fs::read(self.c.root().join(id).join("csi.json")).ok()?;
                let v: serde_json::Value = serde_json::from_slice(&rec).ok()?;
                v["rbd"]["store"]["image"].as_str().map(str::to_owned)
            })
            .collect()
    }

    /// Stage on node `n`, read the files, unstage.
    fn read_on(&self, n: &Node, v: &Volume, tag: &str) -> BTreeMap<String, String> {
        let s = staging(self, tag);
        self.stage(n, v, &s)
            .unwrap_or_else(|e| panic!("stage {}: {e:?}\n{}", v.volume_id, log(n)));
        let h = hashes(&s);
        self.unstage(n, &v.volume_id, &s);
        h
    }
}

fn from_snapshot(id: &str) -> Option<VolumeContentSource> {
    Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: id.into(),
            },
        )),
    })
}

fn from_volume(id: &str) -> Option<VolumeContentSource> {
    Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: id.into(),
            },
        )),
    })
}

/// Snapshot, write more, restore: the restore has the snapshot's data; a clone has the
/// volume's; each copy has its own keyslot secret (shred the parent, the copies still read;
/// shred a copy, the parent reads); copies into another tenant are refused; after every
/// delete nothing is left in Ceph or the KMS.
#[test]
fn snapshots_restores_and_clones_have_their_own_keys() {
    let Some(r) = rig() else { return };
    let ok =
        |x: Result<Volume, tonic::Status>| x.unwrap_or_else(|e| panic!("{e:?}\n{}", r.c.tail()));
    let v = ok(r.create("pvc-snap-parent", 0, None));
    let sa = staging(&r, "parent");
    r.stage(&r.a, &v, &sa)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&r.a)));
    write_files(&sa, "before", 2);
    let at_snapshot = hashes(&sa);
    // taken while node A has the volume attached (librbd asks the lock owner)
    let s = r
        .snapshot("snapshot-1", &v.volume_id)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", r.c.tail()));
    assert_eq!(s.source_volume_id, v.volume_id);
    assert!(s.ready_to_use && s.size_bytes >= 64 * MIB);
    let again = r.snapshot("snapshot-1", &v.volume_id).unwrap();
    assert_eq!(again.snapshot_id, s.snapshot_id, "idempotent");
    write_files(&sa, "after", 2);
    let at_clone = hashes(&sa);
    r.unstage(&r.a, &v.volume_id, &sa);

    let restored = ok(r.create("pvc-restored", 0, from_snapshot(&s.snapshot_id)));
    assert_eq!(restored.content_source, from_snapshot(&s.snapshot_id));
    let clone = ok(r.create("pvc-clone", 0, from_volume(&v.volume_id)));
    // another tenant's namespace: refused, and nothing made
    for (name, src) in [
        ("pvc-x-restore", from_snapshot(&s.snapshot_id)),
        ("pvc-x-clone", from_volume(&v.volume_id)),
    ] {
        let mut sec = r.secrets(1);
        sec.insert("userKey".into(), r.key.clone());
        let x = r.c.create(CreateVolumeRequest {
            name: name.into(),
            capacity_range: range(64 * MIB),
            volume_capabilities: vec![snw()],
            parameters: r.params(1, &[("protection", "kv")]),
            secrets: sec,
            volume_content_source: src,
            ..Default::default()
        });
        assert_eq!(code(x), tonic::Code::PermissionDenied, "{name}");
        assert!(!r.c.root().join(name).exists(), "{name} left a record");
    }
    let listed =
        r.c.run(r.c.ctrl().list_snapshots(ListSnapshotsRequest {
            source_volume_id: v.volume_id.clone(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);

    // shred the parent: both copies still read, on the other node
    let all = [
        v.volume_id.as_str(),
        s.snapshot_id.as_str(),
        restored.volume_id.as_str(),
        clone.volume_id.as_str(),
    ];
    let images = r.images(&all);
    assert_eq!(images.len(), 4, "{images:?}");
    r.delete(&v.volume_id);
    assert!(!r.kv_entry_left(0, &v.volume_id));
    assert_eq!(r.read_on(&r.b, &restored, "restored"), at_snapshot);
    assert_eq!(r.read_on(&r.b, &clone, "clone"), at_clone);
    // shred the snapshot: the restore still reads
    r.delete_snapshot(&s.snapshot_id);
    assert_eq!(r.read_on(&r.a, &restored, "restored-a"), at_snapshot);
    r.delete(&restored.volume_id);
    assert_eq!(r.read_on(&r.a, &clone, "clone-a"), at_clone);
    r.delete(&clone.volume_id);
    for id in all {
        assert!(!r.kv_entry_left(0, id), "KV entry of {id} left");
    }
    assert_eq!(r.left_in_ceph(&images), Vec::<String>::new());
}

/// The operations kill -9 is tried under.
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    Create(&'a str),
    Snapshot(&'a str),
    Clone(&'a str),
    Restore(&'a str),
    Delete(&'a str),
    DeleteSnapshot(&'a str),
}

impl Rig {
    fn run_op(&self, op: Op, base: &str, snap: &str) -> Result<String, tonic::Status> {
        match op {
            Op::Create(n) => self.create(n, 0, None).map(|v| v.volume_id),
            Op::Snapshot(n) => self.snapshot(n, base).map(|s| s.snapshot_id),
            Op::Clone(n) => self.create(n, 0, from_volume(base)).map(|v| v.volume_id),
            Op::Restore(n) => self.create(n, 0, from_snapshot(snap)).map(|v| v.volume_id),
            Op::Delete(id) => self
                .c
                .run(self.c.ctrl().delete_volume(DeleteVolumeRequest {
                    volume_id: id.into(),
                    secrets: self.secrets(0),
                }))
                .map(|_| id.to_owned()),
            Op::DeleteSnapshot(id) => self
                .c
                .run(self.c.ctrl().delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: id.into(),
                    secrets: self.secrets(0),
                }))
                .map(|_| id.to_owned()),
        }
    }
}

/// The controller aborts (as kill -9) at a fault point inside create, snapshot, clone,
/// restore and delete; the CO's retry against the restarted controller finishes the job,
/// the copies read what they should, and after the deletes nothing is left.
#[test]
fn kill_9_in_create_snapshot_clone_and_delete_leaves_everything_rerunnable() {
    let Some(mut r) = rig() else { return };
    let base = r.create("pvc-fault-base", 0, None).unwrap();
    let s = staging(&r, "fault-base");
    r.stage(&r.a, &base, &s).unwrap();
    write_files(&s, "base", 2);
    let want = hashes(&s);
    r.unstage(&r.a, &base.volume_id, &s);
    let snap = r.snapshot("snapshot-fault-0", &base.volume_id).unwrap();
    let (b, sn) = (base.volume_id.clone(), snap.snapshot_id.clone());
    let cases = [
        ("create:provisioned", Op::Create("pvc-fault-1")),
        ("create:store-ready", Op::Create("pvc-fault-2")),
        ("clone:snapped", Op::Snapshot("snapshot-fault-1")),
        ("clone:cloned", Op::Snapshot("snapshot-fault-2")),
        ("clone:slot-added", Op::Clone("pvc-fault-clone-1")),
        ("clone:key-protected", Op::Clone("pvc-fault-clone-2")),
        ("clone:rekeyed", Op::Restore("pvc-fault-restore-1")),
        ("shred:key-destroyed", Op::Delete("pvc-fault-1")),
        ("shred:wiped", Op::DeleteSnapshot("snapshot-fault-1")),
    ];
    let mut made = vec![b.clone(), sn.clone()];
    // CO names → ids (an RBD id is not its name: it says where the image is)
    let mut ids: HashMap<String, String> = HashMap::new();
    for (step, op) in cases {
        let target = match op {
            Op::Delete(n) | Op::DeleteSnapshot(n) => Some(ids[n].clone()),
            _ => None,
        };
        let op = match (op, target.as_deref()) {
            (Op::Delete(_), Some(t)) => Op::Delete(t),
            (Op::DeleteSnapshot(_), Some(t)) => Op::DeleteSnapshot(t),
            (other, _) => other,
        };
        r.c.kill();
        r.c.spawn(&[("STRONGROOM_FAULT", step)]);
        let first = r.run_op(op, &b, &sn);
        assert!(first.is_err(), "{step}: {op:?} finished despite the fault");
        assert!(
            r.c.wait_exit(std::time::Duration::from_secs(20)).is_some(),
            "{step}: the driver did not abort"
        );
        r.c.spawn(&[]);
        let id = r
            .run_op(op, &b, &sn)
            .unwrap_or_else(|e| panic!("{step}: re-run of {op:?}: {e:?}\n{}", r.c.tail()));
        if let Op::Create(n) | Op::Snapshot(n) | Op::Clone(n) | Op::Restore(n) = op {
            ids.insert(n.to_owned(), id.clone());
        }
        made.push(id);
    }
    let images = r.images(&made.iter().map(String::as_str).collect::<Vec<_>>());
    for name in [
        "pvc-fault-clone-1",
        "pvc-fault-clone-2",
        "pvc-fault-restore-1",
    ] {
        let id = ids[name].clone();
        let v = Volume {
            volume_context: HashMap::from([
                ("clusterID".to_owned(), CLUSTER.to_owned()),
                ("pool".to_owned(), r.ceph.pool().to_owned()),
                ("imageName".to_owned(), r.images(&[&id])[0].clone()),
            ]),
            volume_id: id,
            ..Default::default()
        };
        assert_eq!(r.read_on(&r.b, &v, name), want, "{name}");
    }
    for id in &made {
        r.delete(id);
        r.delete_snapshot(id);
    }
    for id in &made {
        assert!(!r.kv_entry_left(0, id), "KV entry of {id} left");
    }
    assert_eq!(r.left_in_ceph(&images), Vec::<String>::new());
    let rest: Vec<_> = std::fs::read_dir(r.c.root())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(rest.is_empty(), "controller records left: {rest:?}");
}

/// csi-sanity's snapshot and clone cases (kubernetes-csi/csi-test `pkg/sanity`
/// controller.go: CreateSnapshot, DeleteSnapshot, ListSnapshots, volumes from snapshots and
/// volumes) against the controller on RBD, which advertises the capabilities.
#[test]
fn csi_sanity_snapshot_and_clone_cases_on_rbd() {
    use controller_service_capability::rpc::Type as Cap;
    let Some(r) = rig() else { return };
    let caps =
        r.c.run(
            r.c.ctrl()
                .controller_get_capabilities(ControllerGetCapabilitiesRequest {}),
        )
        .unwrap()
        .into_inner()
        .capabilities;
    let has = |t: Cap| {
        caps.iter().any(|c| {
            matches!(&c.r#type, Some(controller_service_capability::Type::Rpc(x)) if x.r#type == t as i32)
        })
    };
    for t in [
        Cap::CreateDeleteSnapshot,
        Cap::ListSnapshots,
        Cap::CloneVolume,
    ] {
        assert!(has(t), "{t:?} advertised");
    }
    let v1 = r.create("pvc-sanity-1", 0, None).unwrap();
    let v2 = r.create("pvc-sanity-2", 0, None).unwrap();
    let snap = |name: &str, src: &str| code(r.snapshot(name, src));
    assert_eq!(snap("", &v1.volume_id), tonic::Code::InvalidArgument);
    assert_eq!(snap("snapshot-s1", ""), tonic::Code::InvalidArgument);
    assert_eq!(snap("snapshot-s1", "pvc-absent"), tonic::Code::NotFound);
    let s1 = r.snapshot("snapshot-s1", &v1.volume_id).unwrap();
    let s2 = r.snapshot("snapshot-s2", &v1.volume_id).unwrap();
    let s3 = r.snapshot("snapshot-s3", &v2.volume_id).unwrap();
    assert_eq!(
        snap("snapshot-s1", &v2.volume_id),
        tonic::Code::AlreadyExists
    );
    let list = |req: ListSnapshotsRequest| {
        r.c.run(r.c.ctrl().list_snapshots(req))
            .map(|x| x.into_inner())
    };
    let ids = |resp: &ListSnapshotsResponse| -> Vec<String> {
        let e = resp.entries.iter();
        e.map(|e| e.snapshot.as_ref().unwrap().snapshot_id.clone())
            .collect()
    };
    let all = list(ListSnapshotsRequest::default()).unwrap();
    for s in [&s1, &s2, &s3] {
        assert!(ids(&all).contains(&s.snapshot_id));
    }
    let of_v1 = list(ListSnapshotsRequest {
        source_volume_id: v1.volume_id.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        ids(&of_v1),
        vec![s1.snapshot_id.clone(), s2.snapshot_id.clone()]
    );
    let one = list(ListSnapshotsRequest {
        snapshot_id: s3.snapshot_id.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ids(&one), vec![s3.snapshot_id.clone()]);
    let none = list(ListSnapshotsRequest {
        snapshot_id: "snapshot-absent".into(),
        ..Default::default()
    })
    .unwrap();
    assert!(none.entries.is_empty());
    let page1 = list(ListSnapshotsRequest {
        max_entries: 1,
        source_volume_id: v1.volume_id.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(page1.entries.len(), 1);
    let page2 = list(ListSnapshotsRequest {
        max_entries: 1,
        source_volume_id: v1.volume_id.clone(),
        starting_token: page1.next_token.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ids(&page2), vec![s2.snapshot_id.clone()]);
    assert!(page2.next_token.is_empty());
    let bad = list(ListSnapshotsRequest {
        starting_token: "not-ours".into(),
        ..Default::default()
    });
    assert_eq!(code(bad), tonic::Code::Aborted);
    // volumes from absent sources; a copy smaller than its source
    assert_eq!(
        code(r.create("pvc-sanity-x", 0, from_snapshot("snapshot-absent"))),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(r.create("pvc-sanity-y", 0, from_volume("pvc-absent"))),
        tonic::Code::NotFound
    );
    let small = r.c.create(CreateVolumeRequest {
        name: "pvc-sanity-small".into(),
        capacity_range: Some(CapacityRange {
            required_bytes: MIB,
            limit_bytes: MIB,
        }),
        volume_capabilities: vec![snw()],
        parameters: r.params(0, &[("protection", "kv")]),
        secrets: r.secrets(0),
        volume_content_source: from_snapshot(&s1.snapshot_id),
        ..Default::default()
    });
    assert_eq!(code(small), tonic::Code::OutOfRange);
    // a bigger restore is grown; deleting snapshots: missing id, unknown id, then each
    let big = r.c.create(CreateVolumeRequest {
        name: "pvc-sanity-big".into(),
        capacity_range: range(96 * MIB),
        volume_capabilities: vec![snw()],
        parameters: r.params(0, &[("protection", "kv")]),
        secrets: r.secrets(0),
        volume_content_source: from_snapshot(&s1.snapshot_id),
        ..Default::default()
    });
    let big = big.unwrap_or_else(|e| panic!("{e:?}\n{}", r.c.tail()));
    assert_eq!(big.capacity_bytes, 96 * MIB);
    let del = |id: &str| {
        let req = DeleteSnapshotRequest {
            snapshot_id: id.into(),
            secrets: r.secrets(0),
        };
        code(r.c.run(r.c.ctrl().delete_snapshot(req)))
    };
    assert_eq!(del(""), tonic::Code::InvalidArgument);
    assert_eq!(del("snapshot-absent"), tonic::Code::Ok);
    let images = r.images(&[
        &v1.volume_id,
        &v2.volume_id,
        &s1.snapshot_id,
        &s2.snapshot_id,
        &s3.snapshot_id,
        &big.volume_id,
    ]);
    for s in [&s1, &s2, &s3] {
        assert_eq!(del(&s.snapshot_id), tonic::Code::Ok);
        assert_eq!(del(&s.snapshot_id), tonic::Code::Ok, "idempotent");
    }
    assert!(list(ListSnapshotsRequest::default())
        .unwrap()
        .entries
        .is_empty());
    for v in [&v1, &v2, &big] {
        r.delete(&v.volume_id);
    }
    assert_eq!(r.left_in_ceph(&images), Vec::<String>::new());
}

/// A node dies holding a volume (its plugin and the volume holder SIGKILLed, as a power
/// loss): once Ceph expires the dead client's watch, NodeStage on another node takes the
/// exclusive lock: librbd breaks the dead owner's lock and blocklists its address (fencing
/// it, should it come back), and the data written and synced on the dead node is there.
#[test]
fn a_dead_nodes_lock_is_broken_and_its_client_blocklisted() {
    let Some(mut r) = rig() else { return };
    // Dead clients' watches expire in 5 s instead of 30 (for new watches of this cluster).
    r.ceph
        .tool(
            "ceph",
            &["config", "set", "osd", "osd_client_watch_timeout", "5"],
        )
        .unwrap();
    let v = r.create("pvc-dead-node", 0, None).unwrap();
    let (sa, sb) = (staging(&r, "dead-a"), staging(&r, "dead-b"));
    r.stage(&r.a, &v, &sa).unwrap();
    write_files(&sa, "a", 2);
    let want = hashes(&sa);
    let rt: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.a.root.join(&v.volume_id).join("runtime.json")).unwrap(),
    )
    .unwrap();
    let holder = rt["pid"].as_u64().expect("a holder serves the volume") as i32;
    let blocklist = |r: &Rig| {
        String::from_utf8(r.ceph.tool("ceph", &["osd", "blocklist", "ls"]).unwrap()).unwrap()
    };
    let before = blocklist(&r).lines().count();
    // node A dies: its plugin and both processes of the volume's holder (server and keeper:
    // the keeper alone would start a new server, which takes the lock back)
    let (servers, keepers) = holder_pids(&v.volume_id);
    assert!(
        servers.contains(&(holder as u64)),
        "{holder} serves: {servers:?}"
    );
    let _ = r.a.child.kill();
    let _ = r.a.child.wait();
    // Each of the pair starts a successor for the other: stop them all, then kill them all,
    // until none is left (a successor started in between is caught by the next pass).
    let mut pids: Vec<u64> = keepers.into_iter().chain(servers).collect();
    for _ in 0..50 {
        if pids.is_empty() {
            break;
        }
        for sig in ["-STOP", "-KILL"] {
            for pid in &pids {
                let _ = std::process::Command::new("kill")
                    .args([sig, &pid.to_string()])
                    .status();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (s, k) = holder_pids(&v.volume_id);
        pids = s.into_iter().chain(k).collect();
    }
    assert!(pids.is_empty(), "node A's holder still runs: {pids:?}");
    let t0 = std::time::Instant::now();
    let staged = loop {
        match r.stage(&r.b, &v, &sb) {
            Ok(()) => break Ok(()),
            Err(e)
                if e.code() == tonic::Code::FailedPrecondition && t0.elapsed().as_secs() < 90 =>
            {
                std::thread::sleep(std::time::Duration::from_secs(2))
            }
            Err(e) => break Err(e),
        }
    };
    staged.unwrap_or_else(|e| panic!("{e:?}\n{}", log(&r.b)));
    eprintln!("node B took the lock {:?} after node A died", t0.elapsed());
    assert_eq!(hashes(&sb), want);
    assert!(
        blocklist(&r).lines().count() > before,
        "the dead owner was blocklisted: {}",
        blocklist(&r)
    );
    r.unstage(&r.b, &v.volume_id, &sb);
    r.delete(&v.volume_id);
    let _ = r
        .ceph
        .tool("ceph", &["config", "rm", "osd", "osd_client_watch_timeout"]);
}

/// Clones of clones: past ceph-csi's soft depth limit (4) the new image is flattened (no
/// parent), and it reads its data with every ancestor deleted.
#[test]
fn a_deep_clone_chain_is_flattened() {
    let Some(r) = rig() else { return };
    let base = r.create("pvc-chain-0", 0, None).unwrap();
    let s = staging(&r, "chain-0");
    r.stage(&r.a, &base, &s).unwrap();
    write_files(&s, "chain", 1);
    let want = hashes(&s);
    r.unstage(&r.a, &base.volume_id, &s);
    let mut chain = vec![base];
    for i in 1..=5 {
        let parent = chain.last().unwrap().volume_id.clone();
        let v = r
            .create(&format!("pvc-chain-{i}"), 0, from_volume(&parent))
            .unwrap_or_else(|e| panic!("clone {i}: {e:?}\n{}", r.c.tail()));
        chain.push(v);
    }
    let has_parent = |v: &Volume| {
        let spec = format!("{}/{}", r.ceph.pool(), image_of(v));
        r.rbd(&["info", &spec]).contains("parent:")
    };
    let parents: Vec<bool> = chain.iter().map(has_parent).collect();
    assert_eq!(
        parents,
        [false, true, true, true, true, false],
        "depth 5 is flattened"
    );
    let ids: Vec<&str> = chain.iter().map(|v| v.volume_id.as_str()).collect();
    let images = r.images(&ids);
    let last = chain.pop().unwrap();
    for v in &chain {
        r.delete(&v.volume_id);
    }
    assert_eq!(r.read_on(&r.b, &last, "chain-5"), want);
    r.delete(&last.volume_id);
    assert_eq!(r.left_in_ceph(&images), Vec::<String>::new());
}

impl Rig {
    /// A second controller process with a state directory of its own, empty: what a new
    /// controller pod has (the first one's node died, or its directory was lost).
    fn fresh_controller(&self) -> Node {
        self.fresh_controller_named("controller-2")
    }
    fn fresh_controller_named(&self, name: &str) -> Node {
        let dir = self.c.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (sock, root, log) = (dir.join("csi.sock"), dir.join("volumes"), dir.join("log"));
        let mut child = self
            .c
            .command(&sock, "controller", name, &root, &log)
            .spawn()
            .unwrap();
        let ch = connect(&self.c.rt, &sock, &mut child, &log);
        Node {
            child,
            ch,
            root,
            log,
        }
    }
}

/// The controller keeps no state Ceph does not have: a volume's and a snapshot's ids say
/// where their images are, so a second controller that never saw them (empty state
/// directory) answers a retried CreateVolume with the same volume, validates, expands,
/// restores from the snapshot, and deletes everything — and a delete it cannot do without
/// the Ceph user is refused rather than leaving the image behind unseen.
#[test]
fn a_controller_with_no_state_finds_volumes_and_snapshots_from_their_ids() {
    use strongroom_csi::pb::controller_client::ControllerClient;
    let Some(r) = rig() else { return };
    let v = r
        .create("pvc-stateless", 0, None)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", r.c.tail()));
    assert!(v.volume_id.starts_with("sr1-v-"), "{}", v.volume_id);
    assert!(v.volume_id.len() <= 128);
    let written = {
        let s = staging(&r, "stateless");
        r.stage(&r.a, &v, &s).unwrap();
        write_files(&s, "s", 3);
        let h = hashes(&s);
        r.unstage(&r.a, &v.volume_id, &s);
        h
    };
    let snap = r.snapshot("snap-stateless", &v.volume_id).unwrap();
    assert!(
        snap.snapshot_id.starts_with("sr1-s-"),
        "{}",
        snap.snapshot_id
    );
    let images = r.images(&[&v.volume_id, &snap.snapshot_id]);
    assert_eq!(images.len(), 2);

    let c2 = r.fresh_controller();
    let ctl = || ControllerClient::new(c2.ch.clone());
    let again =
        r.c.run(ctl().create_volume(CreateVolumeRequest {
            name: "pvc-stateless".into(),
            capacity_range: range(64 * MIB),
            volume_capabilities: vec![snw()],
            parameters: r.params(0, &[("protection", "kv")]),
            secrets: r.secrets(0),
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&c2)))
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        again.volume_id, v.volume_id,
        "a retried create names the same volume"
    );
    assert_eq!(image_of(&again), images[0], "and the same image");
    let valid =
        r.c.run(
            ctl().validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: v.volume_id.clone(),
                volume_capabilities: vec![snw()],
                secrets: r.secrets(0),
                ..Default::default()
            }),
        )
        .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&c2)));
    assert!(valid.into_inner().confirmed.is_some());
    let grown =
        r.c.run(
            ctl().controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: v.volume_id.clone(),
                capacity_range: range(96 * MIB),
                secrets: r.secrets(0),
                ..Default::default()
            }),
        )
        .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&c2)));
    assert!(grown.into_inner().capacity_bytes >= 96 * MIB);

    // restore from the snapshot through the new controller: the snapshot's data
    let restored =
        r.c.run(ctl().create_volume(CreateVolumeRequest {
            name: "pvc-stateless-restore".into(),
            capacity_range: range(64 * MIB),
            volume_capabilities: vec![snw()],
            parameters: r.params(0, &[("protection", "kv")]),
            secrets: r.secrets(0),
            volume_content_source: from_snapshot(&snap.snapshot_id),
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&c2)))
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(r.read_on(&r.b, &restored, "restored"), written);

    // without the Ceph user the new controller cannot find the volume: refused, not "done"
    let mut no_ceph = r.secrets(0);
    no_ceph.remove("userID");
    no_ceph.remove("userKey");
    let c3 = r.fresh_controller_named("controller-3");
    let refused = r.c.run(ControllerClient::new(c3.ch.clone()).delete_volume(
        DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            secrets: no_ceph,
        },
    ));
    assert_eq!(code(refused), tonic::Code::Unauthenticated, "{}", log(&c3));
    assert_eq!(
        r.left_in_ceph(&images[..1]).len(),
        1,
        "the image is still there"
    );

    let delete = |id: &str| {
        r.c.run(ctl().delete_volume(DeleteVolumeRequest {
            volume_id: id.into(),
            secrets: r.secrets(0),
        }))
        .unwrap_or_else(|e| panic!("delete {id}: {e:?}\n{}", log(&c2)));
    };
    delete(&restored.volume_id);
    r.c.run(ctl().delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id.clone(),
        secrets: r.secrets(0),
    }))
    .unwrap_or_else(|e| panic!("{e:?}\n{}", log(&c2)));
    delete(&v.volume_id);
    // deleting again is still fine (the image is gone: nothing to find)
    delete(&v.volume_id);
    let mut all = images.clone();
    all.push(image_of(&restored));
    assert_eq!(r.left_in_ceph(&all), Vec::<String>::new());
    for id in [&v.volume_id, &snap.snapshot_id, &restored.volume_id] {
        assert!(!r.kv_entry_left(0, id), "the key of {id} is destroyed");
    }
}
