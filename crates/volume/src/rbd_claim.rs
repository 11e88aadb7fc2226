//! Which node has an RBD volume attached read-write: a RADOS object lock of Strongroom's own
//! (`strongroom.attach`, on the image's `rbd_id.<name>` object), taken by every read-write
//! attach on either data path and released at detach.
//!
//! Why not librbd's exclusive lock alone: a kernel mapping with `exclusive` holds that lock
//! for as long as it is mapped and hands it to nobody, so nothing else can change the image —
//! not even the controller growing it (librbd's resize needs the lock: CSI volume expansion
//! fails with FAILED_PRECONDITION). Mapped without `exclusive` (as ceph-csi maps), the kernel
//! takes the lock at its first write, hands it over when asked and takes it back at its next
//! write: a resize works, but the lock no longer says who is attached (an idle mapping holds
//! nothing; a librbd `lock_acquire` or a second map elsewhere just takes the lock over, and
//! the two nodes' filesystems would overwrite each other). So the attach itself is recorded
//! here, and librbd's lock is left to order the writes.
//!
//! A claim names what proves its attach alive, in its cookie `<token> kernel <address>` or
//! `<token> librbd`: a watch on the image's header by the kernel mapping's own client
//! (`noshare`: one client per mapping) or by the client that took the claim (the userspace
//! holder, which keeps the image open). A claim whose watcher is gone (a dead node: Ceph
//! drops its watch after `osd_client_watch_timeout`, 30 s) is broken by the next attach. A
//! dead kernel mapping's address is blocklisted first (fenced, should it come back: an idle
//! mapping holds no librbd lock, and a live one of another node would hand it over); a dead
//! userspace holder is fenced by librbd itself when the next attach takes its exclusive lock
//! (and its address may be a long-lived process's that serves other volumes). A claim
//! carrying the attach's own token (a restarted holder, a retried mount) is taken over.

use crate::error::{Error, Result};
use crate::store_rbd::{ceph_error, RbdStore};
use std::time::{Duration, Instant};
use strongroom_rbd::{ErrorKind, Image};

/// The lock's name (librbd's own is `rbd_lock`).
pub const CLAIM_LOCK: &str = "strongroom.attach";
/// How long a dead claimant's address stays blocklisted.
const FENCE_SECS: u32 = 3600;

/// What keeps a claim alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimant<'a> {
    /// A kernel mapping: its client's address (`/sys/bus/rbd/devices/N/client_addr`).
    Kernel(&'a str),
    /// This process's librados client (the locker itself).
    Librbd,
}

/// A new attach token (recorded in the volume's runtime record before the claim is taken).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

fn cookie(token: &str, who: Claimant) -> String {
    match who {
        Claimant::Kernel(addr) => format!("{token} kernel {addr}"),
        Claimant::Librbd => format!("{token} librbd"),
    }
}

/// A lock holder's token, and the address whose watch keeps its claim alive: a kernel
/// mapping's (`true`), else the locker's own.
fn parse_cookie<'a>(cookie: &'a str, locker_addr: &'a str) -> (&'a str, &'a str, bool) {
    let mut words = cookie.split(' ');
    let token = words.next().unwrap_or("");
    match (words.next(), words.next()) {
        (Some("kernel"), Some(addr)) => (token, addr, true),
        _ => (token, locker_addr, false),
    }
}

/// `ip:port/nonce` without the address type (`v1:`, `v2:`, `any:`), as watchers, lockers and
/// the kernel's sysfs print it in different ways.
fn bare(addr: &str) -> &str {
    ["v1:", "v2:", "any:"]
        .iter()
        .find_map(|p| addr.strip_prefix(p))
        .unwrap_or(addr)
}

fn oid(st: &RbdStore) -> String {
    format!("rbd_id.{}", st.image_name())
}

/// Claim the volume's image for this attach (`token`); FAILED_PRECONDITION while a live
/// claim of another attach holds it.
pub fn claim(st: &RbdStore, token: &str, who: Claimant) -> Result<()> {
    let io = st.ioctx()?;
    let (oid, mine) = (oid(st), cookie(token, who));
    for _ in 0..4 {
        match io.lock_exclusive(&oid, CLAIM_LOCK, &mine, "strongroom read-write attach") {
            Err(e) if e.kind() == ErrorKind::Busy => clear_the_way(st, &oid, token)?,
            Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                return Err(ceph_error("claim the RBD image", e))
            }
            _ => return refuse_unclaimed_writer(st, token, who), // taken, or ours already
        }
    }
    Err(Error::Unavailable(format!(
        "RBD image {}: its attach claim kept changing hands; retry",
        st.image_name()
    )))
}

/// How long a claim waits for a live client that holds librbd's exclusive lock without a
/// claim to let it go (the controller's resize holds it for a moment) before refusing.
const UNCLAIMED_WRITER_WAIT: Duration = Duration::from_secs(3);

/// The claim is taken; for a kernel mapping, also make sure that no live client holds
/// librbd's exclusive lock without a claim: a node of an older Strongroom, which mapped with
/// `exclusive` and claimed nothing (it holds the lock for as long as it is mapped and hands
/// it to nobody: the new mapping would attach, then fail every write), or another librbd
/// client writing the image. Refused (FAILED_PRECONDITION) with the claim released. (The
/// userspace path needs no such check: its `lock_acquire` is refused by that holder.)
fn refuse_unclaimed_writer(st: &RbdStore, token: &str, who: Claimant) -> Result<()> {
    let Claimant::Kernel(mapping) = who else {
        return Ok(());
    };
    let img = st.image()?;
    let t0 = Instant::now();
    let holder = loop {
        let holder = live_lock_owner(st, &img, mapping);
        match holder {
            Ok(Some(_)) if t0.elapsed() < UNCLAIMED_WRITER_WAIT => {
                std::thread::sleep(Duration::from_millis(250))
            }
            other => break other,
        }
    };
    let refusal = match holder {
        Ok(None) => return Ok(()),
        Ok(Some(owner)) => Error::FailedPrecondition(format!(
            "RBD image {} is attached read-write elsewhere: {owner} holds its exclusive lock \
             without an attach claim (a node running an older Strongroom, or another client)",
            st.image_name()
        )),
        Err(e) => e,
    };
    let _ = release(st, token);
    Err(refusal)
}

/// A holder of the image's exclusive lock that still watches the image (a dead one's lock is
/// broken by the next writer), by address; not this attach's own mapping (`mine`: the kernel
/// takes the lock as soon as it is free).
fn live_lock_owner(st: &RbdStore, img: &Image, mine: &str) -> Result<Option<String>> {
    let owners = (img.lock_owners()).map_err(|e| ceph_error("list the RBD lock's owners", e))?;
    let watchers = st.header_watchers(img)?;
    Ok(owners
        .into_iter()
        .filter(|o| bare(o) != bare(mine))
        .find(|o| watchers.iter().any(|w| bare(w) == bare(o))))
}

/// Another claim holds the lock: break it if it is this attach's own (earlier process) or
/// dead (fenced first); refuse while it is alive.
fn clear_the_way(st: &RbdStore, oid: &str, token: &str) -> Result<()> {
    let io = st.ioctx()?;
    let lockers = (io.lockers(oid, CLAIM_LOCK)).map_err(|e| ceph_error("list claims", e))?;
    let watchers = st.header_watchers(&st.image()?)?;
    for l in lockers {
        let (theirs, addr, kernel) = parse_cookie(&l.cookie, &l.address);
        if theirs != token {
            if watchers.iter().any(|w| bare(w) == bare(addr)) {
                return Err(Error::FailedPrecondition(format!(
                    "RBD image {} is attached read-write elsewhere (by {}, {})",
                    st.image_name(),
                    l.client,
                    bare(addr)
                )));
            }
            if kernel {
                st.fence(bare(addr), FENCE_SECS)?;
            }
        }
        match io.break_lock(oid, CLAIM_LOCK, &l.client, &l.cookie) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(ceph_error("break a dead attach claim", e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Release this attach's claim (`token`), whichever process took it; none is fine.
pub fn release(st: &RbdStore, token: &str) -> Result<()> {
    let io = st.ioctx()?;
    let oid = oid(st);
    let lockers = match io.lockers(&oid, CLAIM_LOCK) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        r => r.map_err(|e| ceph_error("list claims", e))?,
    };
    for l in lockers
        .iter()
        .filter(|l| parse_cookie(&l.cookie, "").0 == token)
    {
        match io.break_lock(&oid, CLAIM_LOCK, &l.client, &l.cookie) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(ceph_error("release the attach claim", e))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BackingStore;

    #[test]
    fn cookies_name_the_token_and_the_watch_that_proves_them() {
        let k = cookie("t1", Claimant::Kernel("127.0.0.1:0/42"));
        assert_eq!(k, "t1 kernel 127.0.0.1:0/42");
        assert_eq!(
            parse_cookie(&k, "10.0.0.9:0/7"),
            ("t1", "127.0.0.1:0/42", true)
        );
        let u = cookie("t2", Claimant::Librbd);
        assert_eq!(
            parse_cookie(&u, "10.0.0.9:0/7"),
            ("t2", "10.0.0.9:0/7", false)
        );
        // someone else's lock under our name: no token of ours, its locker's watch decides
        assert_eq!(parse_cookie("auto 123", "a:0/1"), ("auto", "a:0/1", false));
        for (a, b) in [
            ("v1:127.0.0.1:0/5", "127.0.0.1:0/5"),
            ("any:127.0.0.1:0/5", "127.0.0.1:0/5"),
            ("127.0.0.1:0/5", "127.0.0.1:0/5"),
        ] {
            assert_eq!(bare(a), b);
        }
        assert_ne!(new_token(), new_token());
    }

    /// A fresh 8 MiB image `name` in namespace `claims` of the dev cluster (None: no Ceph).
    fn dev_image(name: &str) -> Option<(&'static strongroom_rbd::dev::DevCluster, RbdStore)> {
        let dev = strongroom_rbd::dev::DevCluster::for_tests()?;
        let ceph = crate::meta::CephRef {
            conf: Some(dev.conf().to_string_lossy().into_owned()),
            user: "admin".into(),
            monitors: None,
            ms_mode: None,
        };
        let st = RbdStore::new(dev.pool(), "claims", name, &ceph);
        st.ensure(8 << 20).unwrap();
        Some((dev, st))
    }

    /// On a real cluster: a claim held for a live watcher refuses another attach; once that
    /// watch is gone the next attach fences (blocklists) its address and breaks it; a claim
    /// with this attach's own token is taken over; release leaves no lock.
    #[test]
    fn live_claims_refuse_dead_ones_are_fenced_and_broken() {
        let Some((dev, st)) = dev_image("csi-vol-claim") else {
            return;
        };
        // another node's client, watching the image (as a kernel mapping does)
        let mons = dev.monitors().unwrap();
        let other = strongroom_rbd::Cluster::from_key(&mons, "admin", &dev.admin_key().unwrap());
        let other = other.unwrap();
        let img = (other.ioctx(dev.pool(), "claims", false).unwrap())
            .open("csi-vol-claim")
            .unwrap();
        let w = img.watchers().unwrap();
        let addr = w
            .iter()
            .find(|w| w.id as u64 == other.instance_id())
            .map(|w| w.address.clone())
            .unwrap();
        claim(&st, "tok-a", Claimant::Kernel(&addr)).unwrap();
        claim(&st, "tok-a", Claimant::Kernel(&addr)).unwrap(); // held already: fine
        let e = claim(&st, "tok-b", Claimant::Librbd).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::FailedPrecondition, "{e}");
        assert!(e.to_string().contains(&addr), "{e}");

        drop(img); // that node's watch ends
        claim(&st, "tok-b", Claimant::Librbd).unwrap();
        let bl = dev.tool("ceph", &["osd", "blocklist", "ls"]).unwrap();
        assert!(String::from_utf8_lossy(&bl).contains(&addr), "not fenced");
        // a successor of attach b (another client or process) takes its own claim over
        claim(&st, "tok-b", Claimant::Kernel("127.0.0.1:0/1")).unwrap();
        let io = st.ioctx().unwrap();
        let l = io.lockers(&oid(&st), CLAIM_LOCK).unwrap();
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].cookie, "tok-b kernel 127.0.0.1:0/1");
        release(&st, "tok-a").unwrap(); // not ours to release: stays
        assert_eq!(io.lockers(&oid(&st), CLAIM_LOCK).unwrap().len(), 1);
        release(&st, "tok-b").unwrap();
        assert_eq!(io.lockers(&oid(&st), CLAIM_LOCK).unwrap(), vec![]);
        st.remove().unwrap();
    }

    /// On a real cluster: a live client holding librbd's exclusive lock without a claim (an
    /// older node's `exclusive` mapping) refuses a kernel attach's claim, which is released;
    /// a holder that lets go within the wait (a resize) does not.
    #[test]
    fn an_unclaimed_live_lock_holder_refuses_a_kernel_claim() {
        let Some((dev, st)) = dev_image("csi-vol-unclaimed") else {
            return;
        };
        let mons = dev.monitors().unwrap();
        let old_node = |key: &str| {
            let c = strongroom_rbd::Cluster::from_key(&mons, "admin", key).unwrap();
            let img = (c.ioctx(dev.pool(), "claims", false).unwrap())
                .open("csi-vol-unclaimed")
                .unwrap();
            img.lock_acquire().unwrap();
            (c, img)
        };
        let key = dev.admin_key().unwrap();
        let held = old_node(&key);
        let owner = held.1.lock_owners().unwrap().remove(0);
        let io = st.ioctx().unwrap();
        let t0 = Instant::now();
        let e = claim(&st, "tok-k", Claimant::Kernel("127.0.0.1:0/9")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::FailedPrecondition, "{e}");
        assert!(e.to_string().contains(bare(&owner)), "{e}");
        assert!(
            t0.elapsed() >= UNCLAIMED_WRITER_WAIT,
            "refused without waiting"
        );
        assert_eq!(io.lockers(&oid(&st), CLAIM_LOCK).unwrap(), vec![]);
        // the userspace path's claim is not refused here (its lock_acquire is)
        claim(&st, "tok-u", Claimant::Librbd).unwrap();
        release(&st, "tok-u").unwrap();

        // a holder that lets go within the wait
        let letgo = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            held.1.lock_release().unwrap();
            held
        });
        claim(&st, "tok-k", Claimant::Kernel("127.0.0.1:0/9")).unwrap();
        release(&st, "tok-k").unwrap();
        drop(letgo.join().unwrap());
        st.remove().unwrap();
    }
}
