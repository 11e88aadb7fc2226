//! The cluster transport: raft RPCs between members on `cluster_addr`, one length-prefixed
//! frame per request and per reply (append-entries, the hot path, in the binary encoding of
//! [`codec`]; the rest JSON), over mutual TLS when the cluster has its keyring
//! (plain TCP only in tests that say so).

use super::codec;
use super::tls::ClusterTls;
use super::types::{ClusterNode, NodeId, Raft, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Frames larger than this are refused (snapshots travel in chunks far below it).
const MAX_FRAME: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
pub enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client request a standby hands to the active node.
    Forward(Forwarded),
}

/// An HTTP exchange carried over the cluster transport (request or response).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Forwarded {
    /// Request: the method; response: empty.
    pub method: String,
    /// Request: path and query; response: empty.
    pub uri: String,
    /// Response: the status; request: 0.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "super::types::b64")]
    pub body: Vec<u8>,
    /// Request: the client's address (for audit and CIDR checks).
    pub remote: String,
}

/// What the active node does with a forwarded request.
pub type ForwardHandler = Arc<
    dyn Fn(Forwarded) -> std::pin::Pin<Box<dyn std::future::Future<Output = Forwarded> + Send>>
        + Send
        + Sync,
>;

#[derive(Serialize, Deserialize)]
pub enum Reply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(Forwarded),
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub(super) async fn write_frame<T: Serialize>(
    s: &mut (impl Stream + ?Sized),
    v: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    write_raw(s, body).await
}

/// One frame: its length, then `body`, in one write (one TLS record when it fits).
async fn write_raw(s: &mut (impl Stream + ?Sized), mut body: Vec<u8>) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    body.splice(0..0, len.to_be_bytes());
    s.write_all(&body).await?;
    s.flush().await
}

pub(super) async fn read_frame<T: for<'a> Deserialize<'a>>(
    s: &mut (impl Stream + ?Sized),
) -> std::io::Result<T> {
    let body = read_raw(s).await?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

async fn read_raw(s: &mut (impl Stream + ?Sized)) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes refused"
        )));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(body)
}

/// How members reach each other: mutual TLS once the node has the cluster's keyring (after
/// unseal, or from config); until then nothing is sent or served. Plain TCP only when
/// asked for explicitly (tests of the consensus layer).
pub struct Transport {
    tls: parking_lot::RwLock<Option<Arc<ClusterTls>>>,
    plain: bool,
    forward: parking_lot::RwLock<Option<ForwardHandler>>,
    /// Idle connections for forwarded requests, per address.
    pool: parking_lot::Mutex<std::collections::HashMap<String, Vec<Box<dyn Stream>>>>,
    /// When each member last answered a raft RPC (autopilot's last contact).
    contact: parking_lot::Mutex<std::collections::HashMap<NodeId, std::time::Instant>>,
}

impl Transport {
    pub fn new(tls: Option<Arc<ClusterTls>>, plain: bool) -> Self {
        Self {
            tls: parking_lot::RwLock::new(tls),
            plain,
            forward: parking_lot::RwLock::new(None),
            pool: Default::default(),
            contact: Default::default(),
        }
    }

    /// When member `id` last answered a raft RPC from this node.
    pub fn last_contact(&self, id: NodeId) -> Option<std::time::Instant> {
        self.contact.lock().get(&id).copied()
    }

    pub fn set_forward_handler(&self, h: ForwardHandler) {
        *self.forward.write() = Some(h);
    }

    /// Send a client request to the member at `addr` and return its response.
    pub async fn forward(&self, addr: &str, req: Forwarded) -> std::io::Result<Forwarded> {
        let pooled = self.idle_conn(addr);
        let mut conn = match pooled {
            Some(c) => c,
            None => self.dial(addr).await?,
        };
        let rpc = Rpc::Forward(req);
        let fut = async {
            write_frame(&mut conn, &rpc).await?;
            read_frame::<Reply>(&mut conn).await
        };
        let reply = tokio::time::timeout(std::time::Duration::from_secs(90), fut)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "forwarding timed out")
            })??;
        let Reply::Forward(resp) = reply else {
            return Err(std::io::Error::other(
                "cluster peer answered a different RPC",
            ));
        };
        let mut pool = self.pool.lock();
        let idle = pool.entry(addr.to_string()).or_default();
        if idle.len() < 16 {
            idle.push(conn);
        }
        Ok(resp)
    }

    /// An idle pooled connection to `addr` that is still open. A connection whose peer
    /// closed it (the active node died or restarted) is dropped here, before a request is
    /// sent on it: a write sent on it would fail with an unknown outcome, and the request
    /// would be answered with an error instead of waiting for the next active node.
    fn idle_conn(&self, addr: &str) -> Option<Box<dyn Stream>> {
        let mut pool = self.pool.lock();
        let idle = pool.get_mut(addr)?;
        while let Some(mut c) = idle.pop() {
            if still_open(&mut c) {
                return Some(c);
            }
        }
        None
    }

    pub fn set_tls(&self, tls: Arc<ClusterTls>) {
        *self.tls.write() = Some(tls);
    }

    pub fn has_tls(&self) -> bool {
        self.tls.read().is_some()
    }

    /// The TLS to use now; `None`: plain TCP.
    fn current(&self) -> std::io::Result<Option<Arc<ClusterTls>>> {
        match (&*self.tls.read(), self.plain) {
            (Some(t), _) => Ok(Some(t.clone())),
            (None, true) => Ok(None),
            (None, false) => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "no cluster TLS keyring yet (the node is sealed)",
            )),
        }
    }

    /// Dial `addr` (`host:port`).
    pub async fn dial(&self, addr: &str) -> std::io::Result<Box<dyn Stream>> {
        let tls = self.current()?;
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match tls {
            Some(t) => Ok(Box::new(t.connect(tcp).await?)),
            None => Ok(Box::new(tcp)),
        }
    }

    /// Accept an incoming connection (refused without a keyring, unless plain).
    async fn accept(&self, tcp: TcpStream) -> std::io::Result<Box<dyn Stream>> {
        match self.current()? {
            Some(t) => Ok(Box::new(t.accept(tcp).await?)),
            None => Ok(Box::new(tcp)),
        }
    }
}

/// Whether an idle connection is still open: nothing is ready to read on it (a closed one
/// reads end-of-file or an error; an idle one has nothing, as its peer only answers).
fn still_open(c: &mut Box<dyn Stream>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    std::pin::Pin::new(&mut **c)
        .poll_read(&mut cx, &mut buf)
        .is_pending()
}

/// Makes one [`Peer`] per target; openraft keeps it for the replication stream.
pub struct Network {
    pub transport: Arc<Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> Peer {
        Peer {
            target,
            addr: node.cluster_addr.clone(),
            transport: self.transport.clone(),
            conn: None,
            dialing: None,
        }
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    transport: Arc<Transport>,
    conn: Option<Box<dyn Stream>>,
    /// A dial in progress: it outlives the RPC that started it (see [`Peer::connection`]).
    dialing: Option<tokio::task::JoinHandle<std::io::Result<Box<dyn Stream>>>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(d) = &self.dialing {
            d.abort();
        }
    }
}

/// How long a background dial (TCP and TLS handshakes) may take: a lost SYN is resent
/// after 1 s; a dial into a partition must end so that a new one starts once it heals.
const DIAL_LIMIT: std::time::Duration = std::time::Duration::from_millis(2500);

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, ClusterNode, RaftError<NodeId, E>>;

impl Peer {
    /// One request/reply on the kept connection (dialled when missing). The connection is
    /// taken out for the exchange and kept only after a whole reply: an error, the timeout,
    /// or openraft dropping this future (its own timeout) closes it, so a late reply can
    /// never be read as the answer to a later request.
    async fn call(&mut self, rpc: &Rpc, ttl: std::time::Duration) -> Result<Reply, std::io::Error> {
        let body = serde_json::to_vec(rpc).map_err(std::io::Error::other)?;
        let reply = self.call_raw(body, ttl).await?;
        serde_json::from_slice(&reply).map_err(std::io::Error::other)
    }

    /// [`Self::call`] with an encoded request; the reply as it came.
    async fn call_raw(
        &mut self,
        body: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<Vec<u8>, std::io::Error> {
        let fut = async {
            let mut conn = self.connection().await?;
            write_raw(&mut conn, body).await?;
            let reply = read_raw(&mut conn).await?;
            Ok::<_, std::io::Error>((reply, conn))
        };
        let (reply, conn) = match tokio::time::timeout(ttl, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "cluster RPC timed out",
                ))
            }
        };
        self.conn = Some(conn);
        let now = std::time::Instant::now();
        self.transport.contact.lock().insert(self.target, now);
        Ok(reply)
    }

    /// The kept connection, or the result of a dial. The dial runs as its own task and
    /// survives the RPC's timeout (openraft's is one heartbeat interval, shorter than the
    /// handshakes on a lossy link): the next RPC waits for the same dial instead of
    /// starting over.
    async fn connection(&mut self) -> std::io::Result<Box<dyn Stream>> {
        if let Some(c) = self.conn.take() {
            return Ok(c);
        }
        let dial = self.dialing.get_or_insert_with(|| {
            let (t, addr) = (self.transport.clone(), self.addr.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(DIAL_LIMIT, t.dial(&addr)).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "cluster dial timed out",
                    )),
                }
            })
        });
        let r = dial.await;
        self.dialing = None;
        r.map_err(std::io::Error::other)?
    }

    fn unreachable<E: std::error::Error>(e: std::io::Error) -> RpcErr<E> {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused | ConnectionReset | NotConnected | TimedOut | UnexpectedEof => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn remote<T, E: std::error::Error>(
        &self,
        r: Result<T, RaftError<NodeId, E>>,
    ) -> Result<T, RpcErr<E>> {
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn mismatch<E: std::error::Error>() -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(
        "cluster peer answered a different RPC",
    )))
}

impl RaftNetwork<TypeConfig> for Peer {
    /// In the binary encoding ([`codec`]): a success comes back binary, an error as JSON.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let body =
            codec::encode_append(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = match self.call_raw(body, option.hard_ttl()).await {
            Ok(r) => r,
            Err(e) => return Err(Self::unreachable(e)),
        };
        if codec::is_binary(&reply) {
            return codec::decode_append_response(&reply)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)));
        }
        match serde_json::from_slice(&reply) {
            Ok(Reply::Append(r)) => self.remote(r),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.call(&Rpc::Snapshot(rpc), option.hard_ttl()).await {
            Ok(Reply::Snapshot(r)) => self.remote(r),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(Self::unreachable(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(&Rpc::Vote(rpc), option.hard_ttl()).await {
            Ok(Reply::Vote(r)) => self.remote(r),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(Self::unreachable(e)),
        }
    }
}

/// Accept cluster connections until the listener fails; each connection is served on its
/// own task. Over TLS, a peer without a certificate of the cluster is refused in the
/// handshake.
pub async fn serve(listener: TcpListener, raft: Raft, transport: Arc<Transport>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cluster listener: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let raft = raft.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            let stream = match transport.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, "cluster connection refused: {e}");
                    return;
                }
            };
            if let Err(e) = serve_conn(stream, raft, &transport).await {
                tracing::debug!(%peer, "cluster connection closed: {e}");
            }
        });
    }
}

async fn serve_conn(mut s: Box<dyn Stream>, raft: Raft, t: &Transport) -> std::io::Result<()> {
    loop {
        let body = match read_raw(&mut s).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if codec::is_binary(&body) {
            let req = codec::decode_append(&body).map_err(std::io::Error::other)?;
            let out = match raft.append_entries(req).await {
                Ok(resp) => codec::encode_append_response(&resp),
                Err(e) => {
                    serde_json::to_vec(&Reply::Append(Err(e))).map_err(std::io::Error::other)?
                }
            };
            write_raw(&mut s, out).await?;
            continue;
        }
        let rpc: Rpc = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
        let reply = match rpc {
            Rpc::Append(r) => Reply::Append(raft.append_entries(r).await),
            Rpc::Vote(r) => Reply::Vote(raft.vote(r).await),
            Rpc::Snapshot(r) => Reply::Snapshot(raft.install_snapshot(r).await),
            Rpc::Forward(f) => {
                let h = t.forward.read().clone();
                Reply::Forward(match h {
                    Some(h) => h(f).await,
                    None => Forwarded {
                        status: 503,
                        body: br#"{"errors":["this node does not serve forwarded requests"]}"#
                            .to_vec(),
                        ..Default::default()
                    },
                })
            }
        };
        write_frame(&mut s, &reply).await?;
    }
}
