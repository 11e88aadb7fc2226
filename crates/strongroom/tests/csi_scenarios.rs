//! The CSI driver in whole stories, over its socket, with real mounts:
//! * the article's scenario: one tenant, two PVCs (500Mi and a larger sparse one), a writer
//!   job creating 1 MiB files in a loop on both, unstage and restage keep the data, deletion
//!   shreds both;
//! * the driver killed in the middle of NodeStageVolume (at fault-injection points and at
//!   random moments): the retried call succeeds and nothing leaks.

mod common;
mod csi_common;
mod volume_common;

use csi_common::*;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::Code;

fn sha(b: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(b).to_vec()
}

/// The article's writer Job: 1 MiB files in a loop, each naming itself and carrying a marker
/// (to look for on the backing file), hashes returned for the later check.
fn writer(dir: &Path, pvc: &str, files: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    for i in 0..files {
        let head = format!("{}{pvc}-file-{i}\n", volume_common::marker(pvc));
        let mut data = head.into_bytes();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (i as u64) ^ (pvc.len() as u64) << 32;
        while data.len() < 1 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(1 << 20);
        let p = dir.join(format!("file-{i:04}.bin"));
        std::fs::write(&p, &data).unwrap();
        out.push((p, sha(&data)));
    }
    // The Job ends with a sync, as a container's exit does not flush the page cache.
    let f = std::fs::File::open(dir).unwrap();
    f.sync_all().unwrap();
    out
}

fn check(files: &[(PathBuf, Vec<u8>)]) {
    for (p, h) in files {
        let b = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        assert_eq!(&sha(&b), h, "{} changed", p.display());
    }
}

#[test]
fn article_scenario_two_pvcs_writer_restage_shred() {
    if !volume_common::can_mount() {
        return;
    }
    let c = Csi::start();
    let tok = c.token(0);
    // PVC 1: 500Mi. PVC 2: 20Gi, sparse (only what is written takes space).
    let pvcs = [("pvc-small", 500 * MIB), ("pvc-large", 20 << 30)];
    let mut vols = vec![];
    for (name, size) in pvcs {
        let mut r = c.create_req(name, "tenant-a", Some(&tok), size);
        r.parameters
            .insert("csi.storage.k8s.io/pvc/name".into(), name.into());
        let v = c
            .create(r)
            .unwrap_or_else(|e| panic!("{name}: {e:?}\n{}", c.tail()));
        assert_eq!(v.capacity_bytes, size, "reported capacity is the request");
        let img = c.root().join(&v.volume_id).join("volume.img");
        let m = std::fs::metadata(&img).unwrap();
        assert_eq!(m.len(), size as u64 + (16 << 20), "LUKS2 header on top");
        use std::os::unix::fs::MetadataExt;
        assert!(
            m.blocks() * 512 < 64 << 20,
            "{name}: the backing file is sparse ({} bytes allocated)",
            m.blocks() * 512
        );
        vols.push(v);
    }
    let paths: Vec<(PathBuf, PathBuf)> = vols
        .iter()
        .map(|v| {
            let (s, m) = c.paths(&v.volume_id);
            (s, m.join("pod-writer"))
        })
        .collect();
    for (v, (staging, target)) in vols.iter().zip(&paths) {
        c.stage(v, staging, snw(), Some(&tok))
            .unwrap_or_else(|e| panic!("stage: {e:?}\n{}", c.tail()));
        c.publish(v, staging, target, snw(), false).unwrap();
    }
    // The writer Job on both PVCs at once.
    let written: Vec<Vec<(PathBuf, Vec<u8>)>> = std::thread::scope(|s| {
        let hs: Vec<_> = vols
            .iter()
            .zip(&paths)
            .map(|(v, (_, target))| s.spawn(move || writer(target, &v.volume_id, 24)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for w in &written {
        check(w);
    }
    let stats = c.stats(&vols[0].volume_id, &paths[0].1).unwrap();
    let used = stats.usage[0].used;
    assert!(used >= 24 << 20, "stats see the written data: {used}");

    // Unstage (the pod moves away) and restage: the data is there.
    for (v, (staging, target)) in vols.iter().zip(&paths) {
        c.unpublish(&v.volume_id, target).unwrap();
        c.unstage(&v.volume_id, staging).unwrap();
    }
    assert!(
        leftovers(&c.root()).is_empty(),
        "{:?}",
        leftovers(&c.root())
    );
    for (v, (_, target)) in vols.iter().zip(&paths) {
        let img = c.root().join(&v.volume_id).join("volume.img");
        assert!(
            !volume_common::file_contains_any(&img, &[volume_common::marker(&v.volume_id)]),
            "plaintext of {} on its backing file",
            v.volume_id
        );
        assert!(!target.exists(), "target removed by NodeUnpublish");
    }
    for (v, (staging, target)) in vols.iter().zip(&paths) {
        c.stage(v, staging, snw(), Some(&tok)).unwrap();
        c.publish(v, staging, target, snw(), false).unwrap();
    }
    for w in &written {
        check(w);
    }
    for (v, (staging, target)) in vols.iter().zip(&paths) {
        c.unpublish(&v.volume_id, target).unwrap();
        c.unstage(&v.volume_id, staging).unwrap();
    }

    // Deleting the PVCs shreds both volumes.
    for v in &vols {
        c.delete(&v.volume_id, Some(&tok)).unwrap();
        assert!(!c.root().join(&v.volume_id).exists());
        assert_eq!(
            code(c.stage(v, &paths[0].0, snw(), Some(&tok))),
            Code::NotFound,
            "a deleted volume cannot be staged"
        );
    }
    let audit = std::fs::read_to_string(c.root().join("audit.log")).unwrap();
    for v in &vols {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&format!("\"volume\":\"{}\"", v.volume_id))
                    && l.contains("\"op\":\"shred\"")),
            "shred of {} audited",
            v.volume_id
        );
    }
    assert!(leftovers(&c.root()).is_empty());
}

/// NodeStage in a driver that aborts at `step`; the restarted driver's retried NodeStage
/// succeeds, the volume works, and after NodeUnstage nothing is left.
fn kill_at_step(step: &str) {
    let mut c = Csi::start_with(&[("STRONGROOM_FAULT", step)]);
    let tok = c.token(0);
    let v = c.create_for(&format!("kill-{}", step.replace(':', "-")), 0, SIZE);
    let (staging, mount) = c.paths("kill");
    let target = mount.join("target");
    let r = c.stage(&v, &staging, snw(), Some(&tok));
    assert!(r.is_err(), "the driver should have died at {step}");
    let st = c.wait_exit(Duration::from_secs(10));
    assert!(st.is_some(), "the driver did not die at {step}");
    assert!(
        c.logs()
            .contains(&format!("fault injection: aborting at {step}")),
        "{}",
        c.tail()
    );
    c.spawn(&[]);
    c.stage(&v, &staging, snw(), Some(&tok))
        .unwrap_or_else(|e| panic!("retried NodeStage after {step}: {e:?}\n{}", c.tail()));
    c.publish(&v, &staging, &target, snw(), false).unwrap();
    std::fs::write(target.join("after-crash"), b"ok").unwrap();
    c.unpublish(&v.volume_id, &target).unwrap();
    c.unstage(&v.volume_id, &staging).unwrap();
    let left = leftovers(&c.root());
    assert!(left.is_empty(), "after {step}: left {left:?}");
    assert!(!volume_common::leftovers(&staging).iter().any(|_| true));
    // And once more, to be sure the volume is clean and its filesystem intact.
    c.stage(&v, &staging, snw(), Some(&tok)).unwrap();
    c.publish(&v, &staging, &target, snw(), false).unwrap();
    assert_eq!(std::fs::read(target.join("after-crash")).unwrap(), b"ok");
    c.unpublish(&v.volume_id, &target).unwrap();
    c.unstage(&v.volume_id, &staging).unwrap();
    c.delete(&v.volume_id, None).unwrap();
    assert!(leftovers(&c.root()).is_empty());
}

#[test]
fn driver_killed_in_node_stage_at_fuse_and_loop_steps() {
    if !volume_common::can_mount() {
        return;
    }
    kill_at_step("mount:fuse");
    kill_at_step("mount:loop");
    // right after the filesystem is mounted on the loop device: teardown must unmount it,
    // or the loop device keeps the FUSE file (and its holder) busy
    kill_at_step("mount:mounted");
}

/// SIGKILL at moments spread over NodeStage (unlock, FUSE, loop, mkfs, mount).
#[test]
fn driver_sigkilled_at_random_moments_of_node_stage() {
    if !volume_common::can_mount() {
        return;
    }
    let mut c = Csi::start();
    let tok = c.token(0);
    for (round, delay_ms) in [5u64, 40, 90, 160, 300].into_iter().enumerate() {
        let v = c.create_for(&format!("sigkill-{round}"), 0, SIZE);
        let (staging, mount) = c.paths(&format!("sigkill-{round}"));
        let target = mount.join("target");
        let mut node = c.node();
        let req = strongroom_csi::pb::NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into_owned(),
            volume_capability: Some(snw()),
            secrets: secrets(&tok),
            volume_context: v.volume_context.clone(),
            ..Default::default()
        };
        let call = c.rt.spawn(async move { node.node_stage_volume(req).await });
        std::thread::sleep(Duration::from_millis(delay_ms));
        c.kill();
        let _ = c.run(call);
        c.spawn(&[]);
        c.stage(&v, &staging, snw(), Some(&tok))
            .unwrap_or_else(|e| {
                panic!("retry after SIGKILL at {delay_ms} ms: {e:?}\n{}", c.tail())
            });
        c.publish(&v, &staging, &target, snw(), false).unwrap();
        std::fs::write(target.join("f"), b"alive").unwrap();
        c.unpublish(&v.volume_id, &target).unwrap();
        c.unstage(&v.volume_id, &staging).unwrap();
        let left = leftovers(&c.root());
        assert!(left.is_empty(), "SIGKILL at {delay_ms} ms left {left:?}");
        c.delete(&v.volume_id, None).unwrap();
    }
}
