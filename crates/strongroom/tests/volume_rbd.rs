//! RBD-backed volumes through the CLI, on a real Ceph cluster (scripts/ceph/dev-cluster.sh)
//! and `strongroom server`: `create --backend rbd` makes an image `csi-vol-<uuid>` and
//! `status --json` names it; files written through a mount (FUSE over librbd + loop + ext4)
//! leave no marker in any RADOS object; the metadata lives in the image, so a second node
//! (another --root) imports and mounts the volume and reads the same files; after a shred
//! the other node sees it shredded, and removing it deletes the image.
//! Without Ceph: skips with a message, or fails when STRONGROOM_CEPH_REQUIRED=1.

mod common;
mod volume_common;

use common::ServerKind;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use strongroom_rbd::dev::DevCluster;
use volume_common::*;

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON: {}", out_text(o)))
}

/// `strongroom volume` as another node: its own --root.
fn cli_at(e: &Env, root: &Path, args: &[&str]) -> Output {
    Command::new(common::strongroom_bin())
        .arg("volume")
        .arg("--root")
        .arg(root)
        .args(["--address", e.server.addr(), "--cluster-id", "test-cluster"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run strongroom volume")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", out_text(&o));
    o
}

#[test]
fn rbd_volume_mounts_on_two_nodes_and_keeps_only_ciphertext_in_rados() {
    let Some(ceph) = DevCluster::for_tests() else {
        return;
    };
    if !can_mount() {
        return;
    }
    let e = env(ServerKind::Strongroom, &[]);
    let _cleanup = Cleanup(e.dir.path().to_path_buf());
    let root_file = e.token_file("root", &e.root);
    let a_file = e.dir.path().join("a.token");
    let a = a_file.to_str().unwrap();
    ok(e.cli(
        &[
            "setup-tenant",
            "a",
            "--token-out",
            a,
            "--token-file",
            root_file.to_str().unwrap(),
        ],
        &[],
    ));
    let conf = ceph.conf();
    let conf = conf.to_str().unwrap();
    let o = ok(e.cli(
        &[
            "--json",
            "create",
            "v1",
            "--tenant",
            "a",
            "--size",
            "64M",
            "--backend",
            "rbd",
            "--pool",
            ceph.pool(),
            "--token-file",
            a,
        ],
        // CEPH_CONF is honoured (and recorded, so later commands need it no more)
        &[("CEPH_CONF", conf)],
    ));
    let info = json(&o);
    assert_eq!(info["store"]["kind"], "rbd", "{info}");
    let image = info["store"]["image"].as_str().unwrap().to_string();
    assert!(
        image.starts_with("csi-vol-") && image.len() == 44,
        "{image}"
    );
    let st = json(&ok(e.cli(&["--json", "status", "v1"], &[])));
    assert_eq!(st["store"]["image"], image.as_str());
    assert_eq!(st["state"], "formatted");
    let ls = ceph.tool("rbd", &["ls", ceph.pool()]).unwrap();
    assert!(String::from_utf8_lossy(&ls).lines().any(|l| l == image));
    // the metadata record is in the image, and holds no token
    let meta = ceph
        .tool(
            "rbd",
            &[
                "image-meta",
                "get",
                &format!("{}/{image}", ceph.pool()),
                "strongroom.meta",
            ],
        )
        .unwrap();
    let meta = String::from_utf8_lossy(&meta);
    assert!(meta.contains("\"state\":\"formatted\""), "{meta}");
    let token = std::fs::read_to_string(&a_file).unwrap();
    assert!(!meta.contains(token.trim()));

    // node A: mount, write markers, unmount
    let target = e.dir.path().join("mnt-a");
    ok(e.cli(
        &["mount", "v1", target.to_str().unwrap(), "--token-file", a],
        &[],
    ));
    let markers: Vec<String> = (0..4).map(|i| marker(&format!("rbd-{i}"))).collect();
    for (i, m) in markers.iter().enumerate() {
        std::fs::write(target.join(format!("f{i}.txt")), m.repeat(300)).unwrap();
    }
    let st = json(&ok(e.cli(&["--json", "status", "v1"], &[])));
    assert!(
        st["datapath"].as_str().unwrap().contains("userspace"),
        "{st}"
    );
    // node B: another state directory, the same image; refused while A has it attached
    let root_b = e.dir.path().join("node-b");
    let o = cli_at(&e, &root_b, &["--json", "status", "v1"]);
    assert!(
        !o.status.success(),
        "node B does not know v1 before importing it"
    );
    ok(cli_at(
        &e,
        &root_b,
        &[
            "import",
            "v1",
            "--pool",
            ceph.pool(),
            "--image",
            &image,
            "--ceph-conf",
            conf,
        ],
    ));
    let target_b = e.dir.path().join("mnt-b");
    let o = cli_at(
        &e,
        &root_b,
        &["mount", "v1", target_b.to_str().unwrap(), "--token-file", a],
    );
    assert!(
        !o.status.success(),
        "a second read-write attach must be refused"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("FAILED_PRECONDITION"),
        "{}",
        out_text(&o)
    );
    ok(e.cli(&["unmount", "v1"], &[]));
    let objects = ceph.object_data(&image).unwrap();
    assert!(objects.len() > 16 << 20, "the image holds header and data");
    for m in &markers {
        assert!(
            !objects.windows(m.len()).any(|w| w == m.as_bytes()),
            "plaintext marker in RADOS object data"
        );
    }

    // node B, now that A let go
    ok(cli_at(
        &e,
        &root_b,
        &["mount", "v1", target_b.to_str().unwrap(), "--token-file", a],
    ));
    for (i, m) in markers.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(target_b.join(format!("f{i}.txt"))).unwrap(),
            m.repeat(300),
            "node B reads node A's file {i}"
        );
    }
    ok(cli_at(&e, &root_b, &["unmount", "v1"]));

    // shred on A: B sees it (the image's record is the authority), and nobody opens it
    let admin_file = e.token_file("admin", &e.admin);
    ok(e.cli(
        &[
            "shred",
            "v1",
            "--admin-token-file",
            admin_file.to_str().unwrap(),
        ],
        &[],
    ));
    let st = json(&ok(cli_at(&e, &root_b, &["--json", "status", "v1"])));
    assert_eq!(st["state"], "shredded", "{st}");
    let o = cli_at(
        &e,
        &root_b,
        &["mount", "v1", target_b.to_str().unwrap(), "--token-file", a],
    );
    assert!(!o.status.success(), "a shredded volume does not mount");
    assert!(
        leftovers(e.dir.path()).is_empty(),
        "{:?}",
        leftovers(e.dir.path())
    );
}

/// kill -9 (fault injection: the process aborts) at every step of an RBD create: re-running
/// the same create finishes it on the same image, and only that one image exists (in a
/// RADOS namespace of its own, which the create makes).
#[test]
fn rbd_create_resumes_after_abort_at_every_step_on_one_image() {
    let Some(ceph) = DevCluster::for_tests() else {
        return;
    };
    let e = env(ServerKind::Strongroom, &[]);
    let root_file = e.token_file("root", &e.root);
    let a_file = e.dir.path().join("a.token");
    let a = a_file.to_str().unwrap();
    ok(e.cli(
        &[
            "setup-tenant",
            "a",
            "--token-out",
            a,
            "--token-file",
            root_file.to_str().unwrap(),
        ],
        &[],
    ));
    let conf = ceph.conf();
    let images = || -> Vec<String> {
        let ls = ceph
            .tool(
                "rbd",
                &["ls", "--pool", ceph.pool(), "--namespace", "faults"],
            )
            .unwrap();
        String::from_utf8_lossy(&ls)
            .lines()
            .map(String::from)
            .collect()
    };
    let steps = [
        "create:provisioned",
        "create:store-ready",
        "create:protected-unrecorded",
        "create:key-protected",
        "create:formatted",
    ];
    for (i, step) in steps.iter().enumerate() {
        let id = format!("f{i}");
        // the namespace does not exist before the first create makes it
        let before = if i == 0 { Vec::new() } else { images() };
        let args = [
            "--json",
            "create",
            &id,
            "--tenant",
            "a",
            "--size",
            "32M",
            "--backend",
            "rbd",
            "--pool",
            ceph.pool(),
            "--rados-namespace",
            "faults",
            "--ceph-conf",
            conf.to_str().unwrap(),
            "--token-file",
            a,
        ];
        let o = e.cli(&args, &[("STRONGROOM_FAULT", step)]);
        assert!(
            !o.status.success(),
            "{step}: the fault must stop the create"
        );
        let o = ok(e.cli(&args, &[]));
        let info = json(&o);
        assert_eq!(info["state"], "formatted", "{step}: {info}");
        let image = info["store"]["image"].as_str().unwrap().to_string();
        let added: Vec<String> = images()
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        assert_eq!(
            added,
            vec![image.clone()],
            "{step}: exactly the volume's image"
        );
        let meta = ceph
            .tool(
                "rbd",
                &[
                    "image-meta",
                    "get",
                    &format!("{}/faults/{image}", ceph.pool()),
                    "strongroom.meta",
                ],
            )
            .unwrap();
        assert!(
            String::from_utf8_lossy(&meta).contains("\"state\":\"formatted\""),
            "{step}"
        );
    }
}
