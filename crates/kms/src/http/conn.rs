//! Connections under load: a cap on open connections below the process's descriptor limit,
//! Vault's listener timeouts ([`HttpTimeouts`]), and room for new clients when the cap is
//! reached. Slow or idle clients must not lock others out: at the cap, the connection that
//! has waited longest without a request being worked on — kept alive and idle, or with a
//! header or body still arriving — is closed to admit the new one. Only a connection whose
//! request has been read and is being handled is never closed here.
//!
//! Each accepted stream is wrapped ([`TrackedStream`]): a read marks a request's header as
//! begun, and once the connection is closed its reads and writes fail, which ends hyper's
//! connection task and frees the descriptor. The per-connection service is wrapped
//! ([`TrackedService`]): a request's start and answer move the connection between phases, and
//! the handler finds the connection's [`ConnHandle`] in the request's extensions to mark the
//! request as read ([`ConnHandle::working`]). A reaper task closes connections whose phase
//! outlived its timeout.

use crate::config::HttpTimeouts;
use axum::http::Request;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The most connections served at once, whatever the descriptor limit: each may hold a
/// header buffer of up to [`MAX_HEADER_BUFFER`] (and a TLS session's buffers).
pub const MAX_CONNECTIONS: usize = 1024;
/// hyper's read buffer limit, so the longest request header (hyper's default is ~400 KiB).
pub const MAX_HEADER_BUFFER: usize = 64 << 10;
/// How often timeouts are checked.
const REAP_EVERY: Duration = Duration::from_millis(250);

/// Descriptors left for everything but client connections (storage, logs, audit files,
/// the listeners) and for connections accepted before the cap closes another.
fn fd_reserve(nofile: usize) -> usize {
    (nofile / 4).min(64)
}

/// The soft RLIMIT_NOFILE, from `/proc/self/limits` (`None`: unknown or unlimited).
fn nofile_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The connection cap for this process: [`MAX_CONNECTIONS`], or fewer under a lower
/// descriptor limit, so that accepting never runs out of descriptors.
pub fn connection_cap() -> usize {
    match nofile_limit() {
        Some(n) => (n - fd_reserve(n)).clamp(1, MAX_CONNECTIONS),
        None => MAX_CONNECTIONS,
    }
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Accepted, nothing read yet: the first request's header timeout runs.
    Fresh = 0,
    /// Kept alive between requests.
    Idle = 1,
    /// A request's first bytes arrived; its header is not complete.
    Header = 2,
    /// The header is parsed; the body is being read.
    Body = 3,
    /// The request is read and being handled.
    Working = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Header,
            3 => Phase::Body,
            _ => Phase::Working,
        }
    }
}

struct Slot {
    id: u64,
    phase: AtomicU8,
    /// When the current phase began (ms since [`EPOCH`]).
    since: AtomicU64,
    closed: AtomicBool,
    /// The connection task, to wake when the connection is closed.
    waker: Mutex<Option<Waker>>,
    /// Handlers waiting on something else (memory for the body) than the stream.
    closing: tokio::sync::Notify,
    timeouts: HttpTimeouts,
}

impl Slot {
    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn enter(&self, p: Phase) {
        self.since.store(now_ms(), Ordering::Release);
        self.phase.store(p as u8, Ordering::Release);
    }

    /// Bytes arrived: a request header begins, unless one is already under way.
    fn bytes_arrived(&self) {
        let waiting = |p: u8| matches!(Phase::from_u8(p), Phase::Fresh | Phase::Idle);
        let cur = self.phase.load(Ordering::Acquire);
        if waiting(cur)
            && self
                .phase
                .compare_exchange(
                    cur,
                    Phase::Header as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.since.store(now_ms(), Ordering::Release);
        }
    }

    /// May be closed to make room: nothing is being worked on.
    fn evictable(&self) -> bool {
        self.phase() != Phase::Working
    }

    /// The time the current phase may last.
    fn limit(&self) -> Option<Duration> {
        match self.phase() {
            Phase::Fresh | Phase::Header => self.timeouts.header(),
            Phase::Idle => self.timeouts.idle(),
            Phase::Body => self.timeouts.body(),
            Phase::Working => None,
        }
    }

    fn expired(&self, now: u64) -> bool {
        let since = self.since.load(Ordering::Acquire);
        self.limit()
            .is_some_and(|l| now.saturating_sub(since) > l.as_millis() as u64)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn register(&self, w: &Waker) {
        let mut slot = self.waker.lock();
        if !slot.as_ref().is_some_and(|old| old.will_wake(w)) {
            *slot = Some(w.clone());
        }
    }
}

/// The open connections of all listeners, under one cap.
pub struct Tracker {
    cap: usize,
    conns: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
}

impl Tracker {
    /// A tracker for at most `cap` connections, with its reaper running on the current
    /// tokio runtime until the tracker is dropped.
    pub fn start(cap: usize) -> Arc<Tracker> {
        let t = Arc::new(Tracker {
            cap: cap.max(1),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&t);
        tokio::spawn(reap_until_dropped(weak));
        t
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn open(&self) -> usize {
        self.conns.lock().len()
    }

    /// Register a new connection; at the cap, first close the connection that has waited
    /// longest without work. `None` (refuse the newcomer) when every one is being worked on.
    fn admit(&self, timeouts: HttpTimeouts) -> Option<Arc<Slot>> {
        let mut conns = self.conns.lock();
        if conns.len() >= self.cap {
            let victim = conns
                .values()
                .filter(|s| s.evictable())
                .min_by_key(|s| s.since.load(Ordering::Acquire))
                .map(|s| s.id)?;
            if let Some(v) = conns.remove(&victim) {
                v.close();
            }
        }
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU8::new(Phase::Fresh as u8),
            since: AtomicU64::new(now_ms()),
            closed: AtomicBool::new(false),
            waker: Mutex::new(None),
            closing: tokio::sync::Notify::new(),
            timeouts,
        });
        conns.insert(slot.id, slot.clone());
        Some(slot)
    }

    fn remove(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    /// Close every connection whose phase outlived its timeout.
    fn reap(&self) {
        let now = now_ms();
        self.conns.lock().retain(|_, s| {
            if s.expired(now) {
                s.close();
            }
            !s.is_closed()
        });
    }
}

async fn reap_until_dropped(t: Weak<Tracker>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        match t.upgrade() {
            Some(t) => t.reap(),
            None => return,
        }
    }
}

/// The connection a request came on (in the request's extensions).
#[derive(Clone)]
pub struct ConnHandle(Arc<Slot>);

impl ConnHandle {
    /// The request is read: from now on it is being worked on and the connection is
    /// neither timed out nor closed to make room, until the answer.
    pub fn working(&self) {
        self.0.enter(Phase::Working);
    }

    /// Resolves once the connection is closed (timed out, or closed to make room): a
    /// handler still reading the request stops waiting then, which frees the descriptor.
    pub async fn closed(&self) {
        loop {
            let notified = self.0.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.0.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the server",
    )
}

/// A client connection's stream, tracked.
pub struct TrackedStream<S> {
    inner: S,
    slot: Arc<Slot>,
    tracker: Arc<Tracker>,
}

impl<S> Drop for TrackedStream<S> {
    fn drop(&mut self) {
        self.tracker.remove(self.slot.id);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.slot.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        this.slot.register(cx.waker());
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.slot.bytes_arrived();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.slot.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection's service: moves the connection through its phases and hands the handler
/// its [`ConnHandle`].
#[derive(Clone)]
pub struct TrackedService<S> {
    inner: S,
    conn: ConnHandle,
}

impl<S, B> tower_service::Service<Request<B>> for TrackedService<S>
where
    S: tower_service::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.conn.0.enter(Phase::Body);
        req.extensions_mut().insert(self.conn.clone());
        let answer = self.inner.call(req);
        let slot = self.conn.0.clone();
        Box::pin(async move {
            let r = answer.await;
            slot.enter(Phase::Idle);
            r
        })
    }
}

/// axum-server acceptor: admits a connection under the cap (or refuses it) and wraps its
/// stream and service. TLS, when configured, runs on top of the tracked stream.
#[derive(Clone)]
pub struct TrackingAcceptor {
    tracker: Arc<Tracker>,
    timeouts: HttpTimeouts,
}

impl TrackingAcceptor {
    pub fn new(tracker: Arc<Tracker>, timeouts: HttpTimeouts) -> Self {
        Self { tracker, timeouts }
    }
}

impl<S> axum_server::accept::Accept<TcpStream, S> for TrackingAcceptor {
    type Stream = TrackedStream<TcpStream>;
    type Service = TrackedService<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Some(slot) = self.tracker.admit(self.timeouts) else {
            tracing::debug!(
                cap = self.tracker.cap,
                "connection refused: every connection is busy with a request"
            );
            return std::future::ready(Err(closed_error()));
        };
        let conn = ConnHandle(slot.clone());
        std::future::ready(Ok((
            TrackedStream {
                inner: stream,
                slot,
                tracker: self.tracker.clone(),
            },
            TrackedService {
                inner: service,
                conn,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(ms: u64) -> HttpTimeouts {
        let d = Duration::from_millis(ms);
        HttpTimeouts {
            read_header: d,
            read: d,
            idle: d,
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_waiting_idle_connection_makes_room() {
        let t = Tracker::start(3);
        let a = t.admit(HttpTimeouts::default()).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = t.admit(HttpTimeouts::default()).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = t.admit(HttpTimeouts::default()).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        // a is the oldest but busy; b's header began before c's did: b goes.
        a.enter(Phase::Working);
        c.bytes_arrived();
        let d = t.admit(HttpTimeouts::default()).unwrap();
        assert!(b.is_closed() && !a.is_closed() && !c.is_closed() && !d.is_closed());
        assert_eq!(t.open(), 3);
        // A handler waiting for memory hears of the close.
        let handle = ConnHandle(b.clone());
        tokio::time::timeout(Duration::from_secs(5), handle.closed())
            .await
            .unwrap();
        // Everyone busy: the newcomer is refused.
        for s in [&c, &d] {
            s.enter(Phase::Working);
        }
        assert!(t.admit(HttpTimeouts::default()).is_none());
        assert_eq!(t.open(), 3);
    }

    #[tokio::test]
    async fn phases_time_out_and_working_never_does() {
        let t = Tracker::start(10);
        let fresh = t.admit(timeouts(100)).unwrap();
        let busy = t.admit(timeouts(100)).unwrap();
        busy.enter(Phase::Working);
        let off = t.admit(timeouts(0)).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(fresh.is_closed());
        assert!(!busy.is_closed() && !off.is_closed());
        assert_eq!(t.open(), 2);
    }

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(256 - fd_reserve(256), 192);
        assert_eq!(20000 - fd_reserve(20000), 19936);
        let cap = connection_cap();
        assert!((1..=MAX_CONNECTIONS).contains(&cap));
        assert!(
            nofile_limit().is_some(),
            "/proc/self/limits is readable on Linux"
        );
    }
}
