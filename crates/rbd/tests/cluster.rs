//! strongroom-rbd against a real Ceph cluster (scripts/ceph/dev-cluster.sh; one per test
//! binary). Without Ceph the tests say so and pass, unless STRONGROOM_CEPH_REQUIRED=1
//! (scripts/test.sh), which makes them fail.

use strongroom_rbd::dev::DevCluster;
use strongroom_rbd::{Cluster, ErrorKind, Features, IoCtx};

const MIB: u64 = 1 << 20;

fn cluster() -> Option<(&'static DevCluster, Cluster)> {
    let dev = DevCluster::for_tests()?;
    let c = Cluster::from_conf(Some(&dev.conf()), "admin").expect("connect with ceph.conf");
    Some((dev, c))
}

fn pool(name: &str) -> Option<(&'static DevCluster, Cluster, IoCtx)> {
    let (dev, c) = cluster()?;
    let io = c.ioctx(dev.pool(), name, true).expect("ioctx");
    Some((dev, c, io))
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn connects_with_conf_or_with_key_in_memory_and_refuses_bad_keys() {
    let Some((dev, c)) = cluster() else { return };
    let mons = dev.monitors().unwrap();
    let key = dev.admin_key().unwrap();
    let by_key = Cluster::from_key(&mons, "admin", &key).expect("connect with key");
    let a = c.ioctx(dev.pool(), "", false).unwrap().list().unwrap();
    let b = by_key.ioctx(dev.pool(), "", false).unwrap().list().unwrap();
    assert_eq!(a.len(), b.len());

    let e = Cluster::from_key(&mons, "admin", "not base64!")
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(!e.to_string().contains("not base64!"), "{e}");
    // a well-formed key that is not the user's: cephx refuses it
    let out = std::process::Command::new("ceph-authtool")
        .arg("--gen-print-key")
        .output()
        .unwrap();
    let wrong = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let e = Cluster::from_key(&mons, "admin", &wrong).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(!e.to_string().contains(&wrong), "{e}");
    // a key that does not even decode as a cephx key
    let e = Cluster::from_key(&mons, "admin", "AAAA").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = Cluster::from_key(&mons, "no such/user", &key)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = c.ioctx("no-such-pool", "", false).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn image_lifecycle_and_typed_errors() {
    let Some((_, _, io)) = pool("") else { return };
    let name = "lifecycle";
    io.create(name, 8 * MIB, Features::default_for_volumes())
        .unwrap();
    let e = io
        .create(name, 8 * MIB, Features::default_for_volumes())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(io.list().unwrap().contains(&name.to_string()));
    {
        let img = io.open(name).unwrap();
        assert_eq!(img.size().unwrap(), 8 * MIB);
        let data = pattern(7, 64 << 10);
        img.write(3 * MIB + 512, &data).unwrap();
        let mut back = vec![0; data.len()];
        img.read(3 * MIB + 512, &mut back).unwrap();
        assert_eq!(back, data);
        img.resize(16 * MIB).unwrap();
        assert_eq!(img.size().unwrap(), 16 * MIB);
        let mut past = vec![0; 4096];
        assert!(img.read(16 * MIB - 1024, &mut past).is_err(), "short read");
        img.discard(3 * MIB, MIB).unwrap();
        img.read(3 * MIB + 512, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 0));
        // removing an image that is open (watched) is refused
        assert_eq!(io.remove(name).unwrap_err().kind(), ErrorKind::Busy);
    }
    io.remove(name).unwrap();
    assert_eq!(io.open(name).err().unwrap().kind(), ErrorKind::NotFound);
    assert_eq!(
        io.open("bad/name").err().unwrap().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        io.open("nul\0name").err().unwrap().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn aio_keeps_a_bounded_number_in_flight_and_returns_in_order() {
    let Some((_, _, io)) = pool("") else { return };
    io.create("aio", 32 * MIB, Features::default_for_volumes())
        .unwrap();
    let img = io.open("aio").unwrap();
    let chunk = 256 << 10;
    {
        let mut q = img.aio(8);
        for i in 0..64u64 {
            q.write(i * chunk as u64, pattern(i as u8, chunk)).unwrap();
            assert!(q.in_flight() <= 8);
        }
        while q.wait_oldest().unwrap().is_some() {}
    }
    let mut seen = Vec::new();
    let mut q = img.aio(8);
    for i in 0..64u64 {
        if let Some((ofs, buf)) = q.read(i * chunk as u64, vec![0; chunk]).unwrap() {
            seen.push((ofs, buf));
        }
    }
    while let Some(d) = q.wait_oldest().unwrap() {
        seen.push(d);
    }
    drop(q);
    assert_eq!(seen.len(), 64);
    for (i, (ofs, buf)) in seen.into_iter().enumerate() {
        assert_eq!(ofs, i as u64 * chunk as u64, "completion order");
        assert!(buf == pattern(i as u8, chunk), "chunk {i}");
    }
    // a request past the end fails as a request, not as a crash
    let mut q = img.aio(2);
    q.read(32 * MIB - 4096, vec![0; 8192]).unwrap();
    assert!(q.wait_oldest().is_err());
    drop(q);
    drop(img);
    io.remove("aio").unwrap();
}

#[test]
fn metadata_round_trips_and_lists() {
    let Some((_, _, io)) = pool("") else { return };
    io.create("meta", MIB * 4, Features::LAYERING).unwrap();
    let img = io.open("meta").unwrap();
    assert_eq!(img.metadata_get("strongroom.state").unwrap(), None);
    img.metadata_set("strongroom.state", "ready").unwrap();
    let long = "x".repeat(10_000);
    img.metadata_set("strongroom.long", &long).unwrap();
    assert_eq!(
        img.metadata_get("strongroom.state").unwrap().as_deref(),
        Some("ready")
    );
    assert_eq!(
        img.metadata_get("strongroom.long").unwrap(),
        Some(long.clone())
    );
    let all = img.metadata_list().unwrap();
    assert_eq!(
        all,
        vec![
            ("strongroom.long".to_string(), long),
            ("strongroom.state".to_string(), "ready".to_string())
        ]
    );
    img.metadata_remove("strongroom.state").unwrap();
    img.metadata_remove("strongroom.state").unwrap();
    assert_eq!(img.metadata_list().unwrap().len(), 1);
    drop(img);
    io.remove("meta").unwrap();
}

#[test]
fn snapshots_clones_flatten_and_trash() {
    let Some((_, _, io)) = pool("snaps") else {
        return;
    };
    let f = Features::default_for_volumes();
    io.create("parent", 8 * MIB, f).unwrap();
    let parent = io.open("parent").unwrap();
    parent.write(0, &pattern(1, 8192)).unwrap();
    parent.snap_create("s1").unwrap();
    assert_eq!(
        parent.snap_create("s1").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    parent.write(0, &pattern(2, 8192)).unwrap();
    let snaps = parent.snap_list().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!((snaps[0].name.as_str(), snaps[0].size), ("s1", 8 * MIB));
    parent.snap_protect("s1").unwrap();
    io.clone_image("parent", "s1", &io, "child", f).unwrap();
    let child = io.open("child").unwrap();
    let mut buf = vec![0; 8192];
    child.read(0, &mut buf).unwrap();
    assert!(
        buf == pattern(1, 8192),
        "the clone reads the snapshot's data"
    );
    let snap_view = io.open_read_only("parent", Some("s1")).unwrap();
    snap_view.read(0, &mut buf).unwrap();
    assert!(buf == pattern(1, 8192));
    assert!(snap_view.write(0, &buf).is_err(), "a snapshot is read-only");
    drop(snap_view);
    // Clone format 2 (set on every connection): a snapshot needs no protection, and one
    // removed while a clone needs it waits in the snapshot trash, the parent kept with it.
    parent.snap_unprotect("s1").unwrap();
    parent.snap_remove("s1").unwrap();
    assert!(!parent.snap_list().unwrap().iter().any(|s| s.name == "s1"));
    assert_eq!(
        io.remove("parent").unwrap_err().kind(),
        ErrorKind::Busy,
        "the clone still needs the parent"
    );
    // flattened, the clone no longer needs the snapshot: the parent can go entirely
    child.flatten().unwrap();
    drop(parent);
    io.remove("parent").unwrap();
    child.read(0, &mut buf).unwrap();
    assert!(
        buf == pattern(1, 8192),
        "the flattened clone keeps its data"
    );
    drop(child);

    // the trash: an image moved there is out of the listing until removed for good
    io.create("doomed", 4 * MIB, f).unwrap();
    io.trash_move("doomed").unwrap();
    assert!(!io.list().unwrap().contains(&"doomed".to_string()));
    let entry = io
        .trash_list()
        .unwrap()
        .into_iter()
        .find(|t| t.name == "doomed")
        .unwrap();
    io.trash_remove(&entry.id).unwrap();
    assert!(io.trash_list().unwrap().iter().all(|t| t.id != entry.id));
    io.remove("child").unwrap();
}

#[test]
fn exclusive_lock_refuses_a_second_client_and_can_be_broken() {
    let Some((dev, c1, io1)) = pool("") else {
        return;
    };
    io1.create("locked", 8 * MIB, Features::default_for_volumes())
        .unwrap();
    let a = io1.open("locked").unwrap();
    a.lock_acquire().unwrap();
    assert!(a.is_lock_owner().unwrap());
    let owners = a.lock_owners().unwrap();
    assert_eq!(owners.len(), 1);
    let me = a.watchers().unwrap();
    assert!(
        me.iter()
            .any(|w| w.address == owners[0] && w.id as u64 == c1.instance_id()),
        "the owner is our own client: {owners:?} {me:?}"
    );

    let c2 =
        Cluster::from_key(&dev.monitors().unwrap(), "admin", &dev.admin_key().unwrap()).unwrap();
    let io2 = c2.ioctx(dev.pool(), "", false).unwrap();
    let b = io2.open("locked").unwrap();
    let e = b.lock_acquire().unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::Busy),
        "a held lock is refused: {e}"
    );
    assert_eq!(b.watchers().unwrap().len(), 2);
    // the "dead node" case: break the owner's lock (librbd blocklists it)
    b.lock_break(&owners[0]).unwrap();
    b.lock_acquire().unwrap();
    assert!(b.is_lock_owner().unwrap());
    let w = a.write(0, &[1u8; 4096]);
    assert!(w.is_err(), "the fenced client can no longer write");
    b.write(0, &[2u8; 4096]).unwrap();
    b.lock_release().unwrap();
    drop((a, b));
    io2.remove("locked").unwrap();
}

#[test]
fn namespaces_separate_images_and_encryption_load_refuses_plain_images() {
    let Some((dev, c, io)) = pool("tenant-a") else {
        return;
    };
    let other = c.ioctx(dev.pool(), "tenant-b", true).unwrap();
    io.create("same-name", 8 * MIB, Features::LAYERING).unwrap();
    other
        .create("same-name", 4 * MIB, Features::LAYERING)
        .unwrap();
    assert_eq!(io.open("same-name").unwrap().size().unwrap(), 8 * MIB);
    assert_eq!(other.open("same-name").unwrap().size().unwrap(), 4 * MIB);
    assert_eq!(
        c.ioctx(dev.pool(), "tenant-c", false).err().unwrap().kind(),
        ErrorKind::NotFound
    );
    let img = io.open("same-name").unwrap();
    let e = img.encryption_load_luks2(b"whatever").unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Other, "{e}");
    drop(img);
    io.remove("same-name").unwrap();
    other.remove("same-name").unwrap();
}

#[test]
fn object_locks_are_exclusive_listed_with_their_holder_and_breakable_by_anyone() {
    let Some((dev, c1, io1)) = pool("objlock") else {
        return;
    };
    let oid = "objlock-probe";
    assert_eq!(io1.lockers(oid, "app").unwrap(), vec![]);
    io1.lock_exclusive(oid, "app", "cookie one", "held by one")
        .unwrap();
    let e = io1
        .lock_exclusive(oid, "app", "cookie one", "again")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // another name on the same object is another lock
    io1.lock_exclusive(oid, "other", "c", "d").unwrap();

    let c2 =
        Cluster::from_key(&dev.monitors().unwrap(), "admin", &dev.admin_key().unwrap()).unwrap();
    let io2 = c2.ioctx(dev.pool(), "objlock", false).unwrap();
    let e = io2
        .lock_exclusive(oid, "app", "cookie two", "")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    let l = io2.lockers(oid, "app").unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0].client, format!("client.{}", c1.instance_id()));
    assert_eq!(l[0].cookie, "cookie one");
    assert!(l[0].address.contains("/"), "{l:?}");
    // anyone may break it, naming client and cookie; then the lock is free
    io2.break_lock(oid, "app", &l[0].client, &l[0].cookie)
        .unwrap();
    let e = io2
        .break_lock(oid, "app", &l[0].client, &l[0].cookie)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    io2.lock_exclusive(oid, "app", "cookie two", "").unwrap();
    assert_eq!(io1.lockers(oid, "app").unwrap()[0].cookie, "cookie two");
    assert_eq!(io1.lockers(oid, "other").unwrap().len(), 1);
}
