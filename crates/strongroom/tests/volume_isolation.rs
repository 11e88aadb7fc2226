//! Tenant isolation: 5 tenants, each with an envelope and a KV volume; every operation by every
//! tenant on every other tenant's volumes must fail (zero successes), with PERMISSION_DENIED,
//! and leave the volumes intact for their owners. Mount is included when root. (Unmount is
//! not a tenant operation: root on the node tears down without any credential.)

mod common;
mod volume_common;

use common::ServerKind;
use strongroom_volume::{Credential, ProtectionRequest, RotateKind, State};
use volume_common::*;

type Op<'a> = (
    &'a str,
    Box<dyn Fn() -> Result<(), strongroom_volume::Error> + 'a>,
);

#[test]
fn five_tenants_every_operation_on_every_other_tenants_volumes() {
    let names = ["t0", "t1", "t2", "t3", "t4"];
    let e = env(ServerKind::Strongroom, &names);
    let _cleanup = Cleanup(e.dir.path().to_path_buf());
    let m = e.manager();
    let mount = can_mount();
    let mut vols = Vec::new();
    for (i, t) in names.iter().enumerate() {
        for (mode, prot) in modes(t).into_iter().take(2) {
            let id = format!("{t}-{mode}");
            m.create(&req(&id, t, prot), &e.tenant(i)).unwrap();
            let v = m.open(&id, &e.tenant(i)).unwrap();
            v.write(8192, marker(&id).as_bytes()).unwrap();
            vols.push((i, id));
        }
    }
    let mut attempts = 0;
    let mut successes = Vec::new();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for (owner, id) in &vols {
        for j in 0..names.len() {
            if j == *owner {
                continue;
            }
            // A fresh manager per attacker: no cache shared with the owner's session.
            let m = e.manager();
            let cred = e.tenant(j);
            let target = e.dir.path().join("mnt").join(format!("{id}-by-{j}"));
            let victim = names[*owner];
            let ops: Vec<Op> = vec![
                ("open", Box::new(|| m.open(id, &cred).map(|_| ()))),
                (
                    "create-same-id",
                    Box::new(|| {
                        m.create(
                            &req(id, victim, ProtectionRequest::envelope_for(victim)),
                            &cred,
                        )
                        .map(|_| ())
                    }),
                ),
                (
                    "create-in-victims-name",
                    Box::new(|| {
                        m.create(
                            &req(
                                &format!("{id}-new-{j}"),
                                victim,
                                ProtectionRequest::envelope_for(victim),
                            ),
                            &cred,
                        )
                        .map(|_| ())
                    }),
                ),
                (
                    "resize",
                    Box::new(|| m.resize(id, &cred, 40 << 20).map(|_| ())),
                ),
                (
                    "rotate-kek",
                    Box::new(|| m.rotate(id, &cred, RotateKind::Kek).map(|_| ())),
                ),
                (
                    "rotate-slot",
                    Box::new(|| m.rotate(id, &cred, RotateKind::Slot).map(|_| ())),
                ),
                ("shred", Box::new(|| m.shred(id, &cred).map(|_| ()))),
                (
                    "shred-as-admin-with-tenant-token",
                    Box::new(|| {
                        m.shred(id, &Credential::Admin(e.tenants[j].1.clone()))
                            .map(|_| ())
                    }),
                ),
            ];
            let mut ops = ops;
            if mount {
                ops.push((
                    "mount",
                    Box::new(|| m.mount(id, &cred, &target).map(|_| ())),
                ));
            }
            for (op, f) in &ops {
                attempts += 1;
                match f() {
                    Ok(()) => successes.push(format!("{} did {op} on {id}", names[j])),
                    Err(err) => *codes.entry(format!("{op}:{}", err.code())).or_default() += 1,
                }
            }
        }
    }
    eprintln!("attempts: {attempts}, refusals by op and code: {codes:?}");
    assert!(
        successes.is_empty(),
        "cross-tenant successes: {successes:#?}"
    );
    assert!(attempts >= 10 * 4 * 8);
    // The KMS made every decision: PERMISSION_DENIED, except INVALID_ARGUMENT where the
    // request itself is wrong for the volume before any key is involved (a create naming an
    // existing KV volume as envelope; a KEK rotation of a KV volume, which has no KEK).
    for k in codes.keys() {
        assert!(
            k.ends_with("PERMISSION_DENIED")
                || k == "create-same-id:INVALID_ARGUMENT"
                || k == "rotate-kek:INVALID_ARGUMENT",
            "unexpected refusal class {k}"
        );
    }
    assert_eq!(codes.get("create-same-id:INVALID_ARGUMENT"), Some(&20));
    assert_eq!(codes.get("rotate-kek:INVALID_ARGUMENT"), Some(&20));
    // Owners still have their data; nothing was created or shredded by others.
    for (owner, id) in &vols {
        let v = e.manager().open(id, &e.tenant(*owner)).unwrap();
        let mk = marker(id);
        let mut b = vec![0u8; mk.len()];
        v.read(8192, &mut b).unwrap();
        assert_eq!(b, mk.as_bytes());
        assert_eq!(m.status(id).unwrap().state, State::Formatted);
        assert_eq!(m.status(id).unwrap().size, 32 << 20);
    }
    assert_eq!(
        m.list()
            .unwrap()
            .iter()
            .filter(|i| i.state == State::Formatted)
            .count(),
        vols.len()
    );
    assert!(
        leftovers(e.dir.path()).is_empty(),
        "{:?}",
        leftovers(e.dir.path())
    );
}
