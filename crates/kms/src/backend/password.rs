//! Password hashing with bounded memory. A userpass hash is Argon2id with the argon2 crate's
//! defaults (19 MiB, 2 passes: OWASP's recommendation), and a login runs one even for an
//! unknown user, so the cost is the attacker's to choose: unbounded, 300 concurrent bogus
//! logins took the server from 39 MB to 5.7 GB. Here at most [`Gate::permits`] hashes run at
//! once: one per two cores, so that logins never take all the CPU from key operations, and
//! no more than [`HASH_MEMORY`] in all. Logins, which anyone can send, wait for a turn only
//! while few others do ([`WAITERS_PER_PERMIT`]) and for at most [`LOGIN_WAIT`]; beyond that
//! they are refused at once with 429 and the text OpenBao sends when a rate limit quota
//! sheds a request. Setting a password (an authenticated write) waits for its turn.

use crate::request::ApiError;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::{Condvar, Mutex};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Memory all concurrent hashes may take together.
pub const HASH_MEMORY: usize = 80 << 20;
/// Memory of one hash with the parameters we write (argon2's default `m_cost`, in KiB).
const HASH_COST: usize = (argon2::Params::DEFAULT_M_COST as usize) << 10;
/// Logins allowed to queue per running hash.
pub const WAITERS_PER_PERMIT: usize = 2;
/// The longest a login waits for a turn before it is refused.
pub const LOGIN_WAIT: Duration = Duration::from_secs(2);

/// A counting semaphore for blocking threads with a bounded queue.
pub struct Gate {
    permits: usize,
    max_waiting: usize,
    state: Mutex<(usize, usize)>, // (running, waiting)
    freed: Condvar,
}

/// A turn at hashing; the next waiter's turn when dropped.
pub struct Turn<'a>(&'a Gate);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.state.lock().0 -= 1;
        self.0.freed.notify_one();
    }
}

impl Gate {
    pub fn new(permits: usize, max_waiting: usize) -> Gate {
        Gate {
            permits: permits.max(1),
            max_waiting,
            state: Mutex::new((0, 0)),
            freed: Condvar::new(),
        }
    }

    pub fn permits(&self) -> usize {
        self.permits
    }

    /// A turn, waiting at most `wait` (`None`: as long as it takes) and only if fewer than
    /// the queue's bound are waiting already; `None` when refused.
    pub fn enter(&self, wait: Option<Duration>) -> Option<Turn<'_>> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut st = self.state.lock();
        if st.0 < self.permits {
            st.0 += 1;
            return Some(Turn(self));
        }
        if deadline.is_some() && st.1 >= self.max_waiting {
            return None;
        }
        st.1 += 1;
        while st.0 >= self.permits {
            match deadline {
                Some(d) if self.freed.wait_until(&mut st, d).timed_out() => break,
                Some(_) => {}
                None => self.freed.wait(&mut st),
            }
        }
        st.1 -= 1;
        if st.0 >= self.permits {
            return None;
        }
        st.0 += 1;
        Some(Turn(self))
    }
}

/// The process-wide gate: password hashing memory is the process's memory.
static GATE: LazyLock<Gate> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let permits = (cores / 2).clamp(1, HASH_MEMORY / HASH_COST);
    Gate::new(permits, permits * WAITERS_PER_PERMIT)
});

/// Argon2's working memory, returned to the OS when dropped. glibc serves allocations above
/// its mmap threshold with their own mapping, unmapped on free, but raises that threshold
/// (up to `DEFAULT_MMAP_THRESHOLD_MAX`, 32 MiB on 64-bit: mallopt(3)) to the size of freed
/// mappings, after which 19 MiB buffers come from per-thread arenas that keep them: hashes
/// on the blocking pool's threads then left hundreds of MiB resident after a login flood.
/// Reserving more than that maximum keeps every buffer a mapping of its own; only the pages
/// written (the blocks in use) become resident.
fn working_memory(blocks: usize) -> Vec<Block> {
    const ALWAYS_MAPPED: usize = (33 << 20) / Block::SIZE;
    let mut v = Vec::with_capacity(blocks.max(ALWAYS_MAPPED));
    v.resize(blocks, Block::default());
    v
}

/// Run Argon2 with `params` into `out`, within the memory bound.
fn run(
    argon: &Argon2<'_>,
    params: &Params,
    pw: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), ApiError> {
    if params.block_count() * Block::SIZE > HASH_COST {
        return Err(ApiError::internal(
            "stored password hash needs more memory than allowed",
        ));
    }
    argon
        .hash_password_into_with_memory(pw, salt, out, working_memory(params.block_count()))
        .map_err(|e| ApiError::internal(format!("hashing password: {e}")))
}

fn phc_error(e: argon2::password_hash::Error) -> ApiError {
    ApiError::internal(format!("hashing password: {e}"))
}

/// Argon2id PHC string of `pw` with a fresh salt (argon2's default parameters); waits for a
/// turn.
pub fn hash(pw: &str) -> Result<String, ApiError> {
    let _turn = GATE.enter(None);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(phc_error)?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    run(
        &Argon2::default(),
        &params,
        pw.as_bytes(),
        salt_bytes,
        &mut out,
    )?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(phc_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(phc_error)?),
    };
    Ok(phc.to_string())
}

/// The hasher and expected output a PHC string describes.
fn parse_phc<'a>(
    phc: &'a PasswordHash<'a>,
) -> Result<(Argon2<'static>, Params, Output), argon2::password_hash::Error> {
    use argon2::password_hash::Error;
    let algorithm = Algorithm::try_from(phc.algorithm)?;
    let version = match phc.version {
        Some(v) => Version::try_from(v).map_err(|_| Error::Version)?,
        None => Version::default(),
    };
    let params = Params::try_from(phc)?;
    let expected = phc.hash.ok_or(Error::PhcStringField)?;
    Ok((
        Argon2::new(algorithm, version, params.clone()),
        params,
        expected,
    ))
}

/// Whether `pw` matches the PHC string `phc` (false for a malformed one). A login to
/// `path` refused for lack of a turn gets 429.
pub fn verify(path: &str, phc: &str, pw: &[u8]) -> Result<bool, ApiError> {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Ok(false);
    };
    let Ok((argon, params, expected)) = parse_phc(&parsed) else {
        return Ok(false);
    };
    let mut salt_buf = [0u8; 64];
    let Some(salt) = parsed.salt.and_then(|s| s.decode_b64(&mut salt_buf).ok()) else {
        return Ok(false);
    };
    let _turn = GATE.enter(Some(LOGIN_WAIT)).ok_or_else(|| {
        ApiError::new(
            429,
            format!("request path {path:?}: rate limit quota exceeded"),
        )
    })?;
    let mut out = vec![0u8; expected.len()];
    run(&argon, &params, pw, salt, &mut out)?;
    // Output's equality is constant-time.
    Ok(Output::new(&out).is_ok_and(|o| o == expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn at_most_permits_run_and_the_queue_is_bounded() {
        let gate = Gate::new(2, 2);
        let (a, b) = (gate.enter(None).unwrap(), gate.enter(None).unwrap());
        let (ok, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| match gate.enter(Some(Duration::from_secs(30))) {
                    Some(_turn) => ok.fetch_add(1, Ordering::SeqCst),
                    None => refused.fetch_add(1, Ordering::SeqCst),
                });
            }
            // Two wait in the queue; the other two are refused without waiting.
            let t0 = Instant::now();
            while refused.load(Ordering::SeqCst) < 2 {
                assert!(t0.elapsed() < Duration::from_secs(20), "nobody was refused");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(ok.load(Ordering::SeqCst), 0, "a third hash ran");
            drop((a, b));
        });
        assert_eq!(ok.load(Ordering::SeqCst), 2);
        assert_eq!(refused.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline_and_unbounded_waits_get_through() {
        let gate = Gate::new(1, 4);
        let held = gate.enter(None).unwrap();
        let t0 = Instant::now();
        assert!(gate.enter(Some(Duration::from_millis(200))).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(200));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| gate.enter(None).is_some());
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            assert!(waiter.join().unwrap());
        });
    }

    #[test]
    fn hashes_are_argon2_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let p = "auth/userpass/login/a";
        let ours = hash("pw").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(verify(p, &ours, b"pw").unwrap());
        assert!(!verify(p, &ours, b"nope").unwrap());
        // The argon2 crate agrees, both ways (stored hashes were written by it).
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify(p, &theirs, b"pw").unwrap());
        assert!(!verify(p, &theirs, b"pW").unwrap());
        assert!(!verify(p, "not a phc", b"pw").unwrap());
        assert_eq!(HASH_COST, 19 << 20);
        // More memory than we ever write is refused rather than allocated.
        let huge = theirs.replace("m=19456", "m=4194304");
        assert_eq!(verify(p, &huge, b"pw").unwrap_err().status, 500);
    }
}
