//! Single-key histories (KV v2 write, read, check-and-set) and a small Wing–Gong checker:
//! is there an order of the operations, consistent with real time, that a register explains?

use super::kv_map;
use std::time::{Duration, Instant};
use strongroom_vault_client::{Client, Error};

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// An unconditional write; `Some(v)`: acknowledged as version v.
    Write(String, Option<u64>),
    /// A read: the value and version seen (`None`: no value yet).
    Read(Option<(String, u64)>),
    /// Check-and-set at `expected`; `Some(Some(v))`: done as version v, `Some(None)`:
    /// refused (version mismatch), `None`: outcome unknown.
    Cas(u64, String, Option<Option<u64>>),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub start: Instant,
    /// `None`: no answer (the operation may or may not have happened).
    pub end: Option<Instant>,
    pub op: Op,
}

/// The register: (value, version); version 0 is "never written".
pub type State = (Option<String>, u64);

/// Apply `op` to `s` if the model allows what the client observed.
pub fn step(s: &State, op: &Op) -> Option<State> {
    match op {
        Op::Write(v, seen) => {
            let n = s.1 + 1;
            (seen.is_none() || *seen == Some(n)).then(|| (Some(v.clone()), n))
        }
        Op::Read(seen) => {
            let now = s.0.clone().map(|v| (v, s.1));
            (now == *seen).then(|| s.clone())
        }
        Op::Cas(expected, v, outcome) => {
            let matches = s.1 == *expected;
            match outcome {
                Some(None) => (!matches).then(|| s.clone()),
                Some(Some(n)) => (matches && *n == s.1 + 1).then(|| (Some(v.clone()), *n)),
                None => matches.then(|| (Some(v.clone()), s.1 + 1)),
            }
        }
    }
}

/// Wing–Gong search with memoization: is there an order of the events, consistent with
/// real time, in which every answered event happened and the register explains every
/// answer? Unanswered events may be left out.
pub fn linearizable(events: &[Event]) -> bool {
    use std::collections::HashSet;
    let n = events.len();
    let far = Instant::now() + Duration::from_secs(86400);
    let end = |e: &Event| e.end.unwrap_or(far);
    let mut seen: HashSet<(Vec<bool>, State)> = HashSet::new();
    let mut stack: Vec<(Vec<bool>, State)> = vec![(vec![false; n], (None, 0))];
    while let Some((done, s)) = stack.pop() {
        if (0..n).all(|i| done[i] || events[i].end.is_none()) {
            return true;
        }
        if !seen.insert((done.clone(), s.clone())) {
            continue;
        }
        // an event may go next if it started before every pending answered event ended
        let horizon = (0..n)
            .filter(|&i| !done[i])
            .map(|i| end(&events[i]))
            .min()
            .unwrap_or(far);
        for i in (0..n).filter(|&i| !done[i] && events[i].start <= horizon) {
            if let Some(next) = step(&s, &events[i].op) {
                let mut d = done.clone();
                d[i] = true;
                stack.push((d, next));
            }
        }
    }
    false
}

/// One random operation on `lin/key` through `c`; `None`: a read that failed (it says
/// nothing). A write without an answer is recorded with an unknown outcome.
pub fn kv2_op(c: &Client, w: usize, i: usize, rng: u64) -> Option<Op> {
    let val = format!("{w}-{i}");
    let op = match rng % 3 {
        0 => match c.kv2_write("lin", "key", &kv_map(&val), None) {
            Ok(m) => Op::Write(val, Some(m.version)),
            Err(_) => Op::Write(val, None),
        },
        1 => match c.kv2_read("lin", "key", None) {
            Ok(Some(s)) => Op::Read(Some((
                s.data.str("v").unwrap_or_default().to_string(),
                s.metadata.version,
            ))),
            Ok(None) => Op::Read(None),
            Err(_) => return None,
        },
        _ => {
            let expected = match c.kv2_read("lin", "key", None) {
                Ok(Some(s)) => s.metadata.version,
                Ok(None) | Err(_) => 0,
            };
            match c.kv2_write("lin", "key", &kv_map(&val), Some(expected)) {
                Ok(m) => Op::Cas(expected, val, Some(Some(m.version))),
                // 400: the version did not match (every other failure leaves it unknown)
                Err(Error::BadRequest(_)) => Op::Cas(expected, val, Some(None)),
                Err(_) => Op::Cas(expected, val, None),
            }
        }
    };
    Some(op)
}

/// Whether the outcome of `op` is known (it has an end time in the history).
pub fn answered(op: &Op) -> bool {
    !matches!(op, Op::Write(_, None) | Op::Cas(_, _, None))
}

/// The checker's own test: known-good and known-bad histories.
pub fn check_the_checker() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let ev = |s, e, op| Event {
        start: at(s),
        end: Some(at(e)),
        op,
    };
    let ok = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        ev(5, 20, Op::Read(None)), // concurrent with the write: may precede it
        ev(30, 40, Op::Read(Some(("a".into(), 1)))),
        ev(35, 50, Op::Cas(1, "b".into(), Some(Some(2)))),
        ev(45, 60, Op::Cas(1, "c".into(), Some(None))),
    ];
    assert!(linearizable(&ok));
    // a read after an acknowledged write returning the older value
    let stale = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        ev(20, 30, Op::Write("b".into(), Some(2))),
        ev(40, 50, Op::Read(Some(("a".into(), 1)))),
    ];
    assert!(!linearizable(&stale));
    // an unanswered write may have happened, or not
    let unknown = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        Event {
            start: at(20),
            end: None,
            op: Op::Write("x".into(), None),
        },
        ev(40, 50, Op::Read(Some(("a".into(), 1)))),
        ev(60, 70, Op::Read(Some(("x".into(), 2)))),
    ];
    assert!(linearizable(&unknown));
    let lost = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        ev(20, 30, Op::Read(None)),
    ];
    assert!(!linearizable(&lost));
    // a check-and-set that succeeded twice at the same version
    let double = vec![
        ev(0, 10, Op::Write("a".into(), Some(1))),
        ev(20, 30, Op::Cas(1, "b".into(), Some(Some(2)))),
        ev(40, 50, Op::Cas(1, "c".into(), Some(Some(2)))),
    ];
    assert!(!linearizable(&double));
}

/// The fault one run injects while its clients work.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// kill -9 node `usize` (the leader's index when chosen), start and unseal it again.
    Kill(usize),
    /// Cut node `usize` off the others, then heal.
    Isolate(usize),
    /// Node `usize`'s cluster link carries packets one way only, until the other two have
    /// elected one of them and served a write; then heal.
    OneWay(usize, super::net::Way),
    /// Every cluster link loses [`LOSS_PCT`] % of its packets and is narrow (see
    /// [`super::net::Net::lossy`]), and node `isolate` is cut off too; the nodes that are
    /// not cut off must elect and serve a write; then heal.
    Lossy { isolate: Option<usize> },
}

/// A small xorshift generator: runs are randomized but reproducible from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One run: a fresh history of `lin/key`, three clients each sending up to 40 random
/// operations to random nodes, `fault` in the middle. Returns the history.
pub fn one_run(c: &mut super::Cluster, seed: u64, fault: Fault) -> Vec<Event> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let admin = c.admin();
    strongroom_vault_client::retry(20, Duration::from_millis(100), || {
        admin.delete("lin/metadata/key")
    })
    .unwrap();
    let (addrs, token) = (c.addrs(), c.token.clone());
    let events: Mutex<Vec<Event>> = Mutex::default();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in 0..3 {
            let (addrs, token, events, stop) = (&addrs, &token, &events, &stop);
            s.spawn(move || {
                // short timeouts: a node cut off by a partition does not answer at all
                let t = Duration::from_secs(2);
                let clients: Vec<Client> = addrs
                    .iter()
                    .map(|a| super::client_timeout(a, Some(token), t))
                    .collect();
                let mut rng = Rng((seed * 7919 + w as u64 * 104_729) | 1);
                for i in 0..40 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let r = rng.next();
                    let start = Instant::now();
                    let Some(op) = kv2_op(&clients[(r as usize >> 3) % 3], w, i, r) else {
                        continue; // a failed read says nothing
                    };
                    let end = answered(&op).then(Instant::now);
                    events.lock().unwrap().push(Event { start, end, op });
                }
            });
        }
        // stops the clients at the end, or when the fault panics
        let _stop = super::StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(300));
        inject(c, fault);
        std::thread::sleep(Duration::from_millis(300));
    });
    events.into_inner().unwrap()
}

fn inject(c: &mut super::Cluster, fault: Fault) {
    match fault {
        Fault::Kill(i) => {
            c.nodes[i].kill();
            std::thread::sleep(Duration::from_millis(700));
            c.nodes[i].start();
            c.unseal(i);
        }
        Fault::Isolate(i) => {
            let net = net_of(c);
            net.isolate(i);
            // long enough for the others to elect (election timeout 750–1500 ms) and serve
            std::thread::sleep(Duration::from_millis(2500));
            net.heal(i);
        }
        Fault::OneWay(i, way) => {
            net_of(c).one_way(i, way);
            let majority: Vec<usize> = (0..3).filter(|&m| m != i).collect();
            let served = majority_serves(c, &majority);
            net_of(c).clear_faults();
            served.unwrap_or_else(|e| panic!("the majority did not serve: {e}"));
        }
        Fault::Lossy { isolate } => {
            let loss = std::env::var("HA_LOSS_PCT")
                .ok()
                .and_then(|v| v.parse().ok());
            net_of(c).lossy(loss.unwrap_or(LOSS_PCT), 8_000);
            if let Some(i) = isolate {
                net_of(c).isolate(i);
            }
            let majority: Vec<usize> = (0..3).filter(|&m| Some(m) != isolate).collect();
            // the clients work on the lossy links a while
            std::thread::sleep(Duration::from_millis(1500));
            let served = majority_serves(c, &majority);
            if let Some(i) = isolate {
                net_of(c).heal(i);
            }
            net_of(c).clear_faults();
            served.unwrap_or_else(|e| panic!("the majority did not serve: {e}"));
        }
    }
}

/// The packet loss of [`Fault::Lossy`] (`HA_LOSS_PCT` overrides). At 20 % the cluster
/// can livelock: openraft's AppendEntries timeout is one heartbeat interval (150 ms), below
/// TCP's least retransmission timeout (200 ms), so a lagging follower's multi-segment batch
/// rarely arrives whole in time; it keeps campaigning (hundreds of terms) while the leader
/// keeps retrying. Left to the raft timing rework.
pub const LOSS_PCT: u8 = 10;

fn net_of(c: &super::Cluster) -> &super::net::Net {
    c.net
        .as_ref()
        .expect("partitions need the namespaced cluster")
}

/// The nodes of `majority` elect one of them, which acknowledges a write (of another key
/// than the history's) through each of them; `Err`: what failed.
fn majority_serves(c: &super::Cluster, majority: &[usize]) -> Result<(), String> {
    let leader = c.wait_leader_among(majority);
    for &m in majority {
        let cl = super::client_timeout(&c.nodes[m].addr(), Some(&c.token), Duration::from_secs(5));
        // patient: on lossy links elections may repeat before one leader holds
        let wrote = strongroom_vault_client::retry(40, Duration::from_millis(250), || {
            cl.kv2_write("lin", "progress", &kv_map(&format!("{m}")), None)
        });
        wrote.map_err(|e| format!("write through node {m} (leader {leader}): {e}"))?;
    }
    Ok(())
}
