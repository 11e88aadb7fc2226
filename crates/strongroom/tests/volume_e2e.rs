//! Volume manager end to end through the library, against `strongroom server` and real
//! OpenBao, in every protection mode (envelope, KV v2, KV v1): create, write known markers,
//! rotate (keyslot secret and KEK), resize, other tenants refused, shred by the admin (no tenant
//! token) after which nothing opens the volume — and no marker ever reaches a backing file.
//! Also: the error classes (unreachable, expired/invalid token, other tenant).

mod common;
mod volume_common;

use common::ServerKind;
use strongroom_volume::tenant;
use strongroom_volume::{
    Credential, KmsConfig, Manager, ManagerConfig, RotateKind, SecretString, State,
};
use volume_common::*;

fn lifecycle(kind: ServerKind) {
    let e = env(kind, &["a", "b"]);
    let m = e.manager();
    let (a, b) = (e.tenant(0), e.tenant(1));
    let mut markers = Vec::new();
    for (mode, prot) in modes("a") {
        let id = format!("vol-{mode}");
        let info = m.create(&req(&id, "a", prot.clone()), &a).expect("create");
        assert_eq!(info.state, State::Formatted);
        // Idempotent re-run.
        m.create(&req(&id, "a", prot), &a).expect("create again");
        let mk = marker(&format!("{kind:?}-{mode}"));
        {
            let v = m.open(&id, &a).expect("open");
            v.write(4096 * 3 + 7, mk.as_bytes()).unwrap();
            v.write(v.size() - 4096, mk.as_bytes()).unwrap();
            v.flush().unwrap();
        }
        markers.push(mk.clone());
        let read = |m: &Manager| {
            let v = m.open(&id, &a).expect("open to read");
            let mut buf = vec![0u8; mk.len()];
            v.read(4096 * 3 + 7, &mut buf).unwrap();
            buf
        };
        // Another tenant: refused, and the refusal says so.
        let err = m.open(&id, &b).err().expect("tenant b must not open");
        assert_eq!(err.code(), "PERMISSION_DENIED", "{mode}: {err}");
        // Keyslot rotation; data intact; a single keyslot remains.
        m.rotate(&id, &a, RotateKind::Slot).expect("rotate slot");
        assert_eq!(read(&m), mk.as_bytes());
        let img = e.vol_root().join(&id).join("volume.img");
        let slots =
            strongroom_luks::Volume::open(strongroom_luks::FileDevice::open(&img, false).unwrap())
                .unwrap()
                .keyslots();
        assert_eq!(slots.len(), 1, "{mode}: old slot removed: {slots:?}");
        // A fresh manager (no cache) still opens: the promoted secret is the stored one.
        assert_eq!(read(&e.manager()), mk.as_bytes());
        if mode == "envelope" {
            tenant::rotate_tenant_key(&e.server.client(), &layout(), "a").unwrap();
            let i = m.rotate(&id, &a, RotateKind::Kek).expect("rotate kek");
            assert_eq!(i.kek_version, Some(2));
            assert_eq!(read(&e.manager()), mk.as_bytes());
        } else {
            let err = m.rotate(&id, &a, RotateKind::Kek).err().unwrap();
            assert_eq!(err.code(), "INVALID_ARGUMENT");
        }
        // Grow.
        let i = m.resize(&id, &a, 48 << 20).expect("resize");
        assert_eq!(i.size, 48 << 20);
        {
            let v = m.open(&id, &a).unwrap();
            assert_eq!(v.size(), 48 << 20);
            let mut buf = vec![0u8; mk.len()];
            v.read((32 << 20) - 4096, &mut buf).unwrap();
            assert_eq!(
                buf,
                mk.as_bytes(),
                "data at the old end survives the resize"
            );
            v.write((48 << 20) - 4096, mk.as_bytes()).unwrap();
        }
        assert!(m.resize(&id, &a, 16 << 20).is_err(), "no shrink");
        assert!(
            !file_contains_any(&img, &markers),
            "{mode}: marker in {}",
            img.display()
        );
        // Shred with the admin's deletion credential, no tenant token.
        let i = m.shred(&id, &e.admin()).expect("shred");
        assert_eq!(i.state, State::Shredded);
        m.shred(&id, &e.admin()).expect("shred is idempotent");
        for cred in [a.clone(), Credential::Tenant(e.root.clone())] {
            assert!(m.open(&id, &cred).is_err());
            assert!(e.manager().open(&id, &cred).is_err());
        }
        assert!(
            strongroom_luks::Volume::open(strongroom_luks::FileDevice::open(&img, false).unwrap())
                .is_err(),
            "{mode}: no LUKS2 header left"
        );
        // The KMS holds nothing for it either.
        if mode != "envelope" {
            let root_client = e.server.client();
            let backend = if mode == "kv2" { "secret" } else { "kv1" };
            let p = format!("{}/{id}", tenant::kv_backend(backend, "a"));
            assert!(
                root_client.kv_get(&p).unwrap().is_none(),
                "{mode}: KV entry destroyed"
            );
        }
    }
    let audit = std::fs::read_to_string(e.vol_root().join("audit.log")).unwrap();
    assert_eq!(audit.matches("\"op\":\"shred\"").count(), 3, "{audit}");
}

#[test]
fn lifecycle_all_modes_strongroom_server() {
    lifecycle(ServerKind::Strongroom);
}

#[test]
fn lifecycle_all_modes_openbao() {
    lifecycle(ServerKind::OpenBao);
}

#[test]
fn error_classes() {
    let e = env(ServerKind::Strongroom, &["a"]);
    let m = e.manager();
    let a = e.tenant(0);
    m.create(
        &req(
            "v",
            "a",
            strongroom_volume::ProtectionRequest::envelope_for("a"),
        ),
        &a,
    )
    .unwrap();
    // Unreachable KMS: UNAVAILABLE, retryable; nothing changes.
    let port = common::free_port();
    let down = Manager::new(ManagerConfig {
        root: e.vol_root(),
        cluster_id: "test-cluster".into(),
        kms: KmsConfig::new(format!("http://127.0.0.1:{port}")),
        cache_ttl: std::time::Duration::ZERO,
        datapath: None,
    });
    let err = down.open("v", &a).err().unwrap();
    assert_eq!(err.code(), "UNAVAILABLE", "{err}");
    assert!(err.is_retryable());
    let err = down
        .create(
            &req(
                "w",
                "a",
                strongroom_volume::ProtectionRequest::envelope_for("a"),
            ),
            &a,
        )
        .err()
        .unwrap();
    assert_eq!(err.code(), "UNAVAILABLE");
    // ... and the interrupted create finishes once the KMS is back.
    e.manager()
        .create(
            &req(
                "w",
                "a",
                strongroom_volume::ProtectionRequest::envelope_for("a"),
            ),
            &a,
        )
        .expect("create resumes");
    // Garbage token: UNAUTHENTICATED.
    let bad = Credential::Tenant(SecretString::new("s.not-a-real-token"));
    let err = e.manager().open("v", &bad).err().unwrap();
    assert_eq!(err.code(), "UNAUTHENTICATED", "{err}");
    // Expired token: UNAUTHENTICATED.
    let c = e.server.client();
    let short = tenant::create_token(&c, &[tenant::policy_name("a").as_str()], "1s").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let err = e
        .manager()
        .open("v", &Credential::Tenant(short))
        .err()
        .unwrap();
    assert_eq!(err.code(), "UNAUTHENTICATED", "{err}");
    // Error texts never carry a token.
    assert!(!err.to_string().contains("root"));
}
