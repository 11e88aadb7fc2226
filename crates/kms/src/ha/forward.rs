//! Standbys forward every request they do not answer themselves to the active node, over
//! the cluster transport (mutual TLS), so a client may talk to any node.

use crate::core::Core;
use crate::storage::raft::network::Forwarded;
use crate::storage::raft::RaftStorage;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Marks a request that came over the cluster transport: the node it reached never
/// forwards it again. A request extension, not a header, so no client can set it.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedMark;

/// On a forwarded request's answer: the receiving node was not the active node (its view
/// of the leader was ahead of the sender's, or behind); the request did not run there.
const NOT_ACTIVE_HEADER: &str = "x-strongroom-not-active";

/// Paths a node answers itself whatever its role (`sys/seal` on a standby seals that
/// standby, as OpenBao's: it is not forwarded to seal the active node).
pub(crate) fn local_path(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "sys/health"
            | "sys/seal"
            | "sys/seal-status"
            | "sys/init"
            | "sys/unseal"
            | "sys/leader"
            | "sys/storage/raft/join"
    )
}

/// Whether this request must go to the active node.
pub fn must_forward(core: &Core, path: &str, ext: &axum::http::Extensions) -> bool {
    let Some(r) = &core.options.raft else {
        return false;
    };
    !local_path(path)
        && ext.get::<ForwardedMark>().is_none()
        && !core.barrier.is_sealed()
        && !r.is_leader()
}

fn error(status: u16, msg: &str) -> Response<Body> {
    let body = serde_json::json!({ "errors": [msg] }).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// How long a request waits for an active node to be known (an election in progress)
/// before it is answered with OpenBao's 500.
const HOLD: Duration = Duration::from_secs(10);

/// Whether a failed forward may be sent again: the request cannot have reached the
/// active node (refused connection, no keyring), or it changes nothing.
fn may_resend(method: &str, e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | NotConnected)
        || matches!(method, "GET" | "HEAD" | "LIST")
}

/// Wait (until `deadline`) for a leader other than `not`, or for this node to lead;
/// `true`: one is known.
async fn await_leader(r: &RaftStorage, not: Option<u64>, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    r.raft()
        .wait(Some(left))
        .metrics(r.active_node_known(not), "an active node")
        .await
        .is_ok()
}

/// Send the request to the active node and relay its answer. While no active node is
/// known (an election), the request is held up to [`HOLD`]; `Err(body)`: this node became
/// the active node meanwhile and serves the request itself.
pub async fn forward(
    core: &Core,
    parts: &axum::http::request::Parts,
    body: Vec<u8>,
    remote: &str,
) -> Result<Response<Body>, Vec<u8>> {
    let Some(r) = &core.options.raft else {
        return Ok(error(500, "no raft storage"));
    };
    let req = Forwarded {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string()),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
        remote: remote.to_string(),
        status: 0,
    };
    let deadline = Instant::now() + HOLD;
    loop {
        if r.is_leader() {
            return Err(req.body);
        }
        let leader = r.leader().map(|(id, _)| id);
        let failed = match r.forward_to_leader(req.clone()).await {
            Some(Ok(resp)) if not_active(&resp) => {
                // it did not run there: ask again once the views settle
                tracing::debug!("the node taken for the active one is not: sending again");
                if Instant::now() >= deadline {
                    return Ok(error(500, NOT_ACTIVE));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                continue;
            }
            Some(Ok(resp)) => return Ok(to_response(resp)),
            Some(Err(e)) if may_resend(&req.method, &e) => {
                tracing::debug!("forwarding to the active node failed, waiting for another: {e}");
                leader
            }
            Some(Err(e)) => {
                tracing::warn!("forwarding to the active node failed: {e}");
                return Ok(error(500, NOT_ACTIVE));
            }
            // no leader known, or a stale vote naming this node (not leading)
            None => leader,
        };
        if !await_leader(r, failed, deadline).await {
            return Ok(error(500, NOT_ACTIVE));
        }
    }
}

/// A request this node took as the active node's, that found at its read barrier this node
/// no longer leads: it did not run. A client's request is sent on to the active node as a
/// standby's would be (answering it 500 would leave the client unable to tell it from a
/// failure after the change was made); one forwarded here is answered "not active", so that
/// its sender sends it again.
pub async fn elsewhere(
    core: &Core,
    parts: &axum::http::request::Parts,
    body: Vec<u8>,
    remote: &str,
) -> Response<Body> {
    if parts.extensions.get::<ForwardedMark>().is_some() {
        let mut r = error(500, NOT_ACTIVE);
        r.headers_mut()
            .insert(NOT_ACTIVE_HEADER, HeaderValue::from_static("1"));
        return r;
    }
    tracing::debug!("lost the lead before running a request: sending it to the active node");
    match forward(core, parts, body, remote).await {
        Ok(resp) => resp,
        // leading again already: the request was not run; the client's retry runs it
        Err(_) => error(500, NOT_ACTIVE),
    }
}

const NOT_ACTIVE: &str = "local node not active but active cluster node not found";

fn not_active(f: &Forwarded) -> bool {
    f.headers.iter().any(|(k, _)| k == NOT_ACTIVE_HEADER)
}

fn to_response(f: Forwarded) -> Response<Body> {
    let mut r = Response::new(Body::from(f.body));
    *r.status_mut() = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in f.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

/// The active node's side: run a forwarded request through the HTTP layer.
pub fn handler(core: Arc<Core>) -> crate::storage::raft::network::ForwardHandler {
    Arc::new(move |f: Forwarded| {
        let core = core.clone();
        Box::pin(async move { serve(core, f).await })
    })
}

async fn serve(core: Arc<Core>, f: Forwarded) -> Forwarded {
    use http_body_util::BodyExt;
    if let Err(refused) = can_serve(&core).await {
        return refused;
    }
    let mut b = Request::builder()
        .method(f.method.as_str())
        .uri(f.uri.as_str());
    for (k, v) in &f.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let Ok(mut req) = b.body(Body::from(f.body)) else {
        return Forwarded {
            status: 400,
            body: br#"{"errors":["malformed forwarded request"]}"#.to_vec(),
            ..Default::default()
        };
    };
    req.extensions_mut().insert(ForwardedMark);
    if let Ok(ip) = f.remote.parse::<std::net::IpAddr>() {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::new(ip, 0)));
    }
    let resp = crate::http::serve_one(core, req).await;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    Forwarded {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
        ..Default::default()
    }
}

/// A forwarded request runs only on the active node: one that reached a node that is not
/// (the sender's view of the leader is stale, or this node's own is not yet current) is
/// answered unrun, marked so that the sender sends it again. Served from this node's own
/// copy it could read a value older than an acknowledged change, or base a write on one.
async fn can_serve(core: &Core) -> Result<(), Forwarded> {
    if core.barrier.is_sealed() {
        return Ok(()); // answered "sealed" by the pipeline
    }
    let refused = |headers: Vec<(String, String)>| Forwarded {
        status: 500,
        headers,
        body: serde_json::json!({ "errors": [NOT_ACTIVE] })
            .to_string()
            .into_bytes(),
        ..Default::default()
    };
    match core.barrier.storage().read_barrier().await {
        Ok(()) => Ok(()),
        Err(crate::storage::StorageError::NotActive) => {
            Err(refused(vec![(NOT_ACTIVE_HEADER.into(), "1".into())]))
        }
        Err(e) => {
            tracing::warn!("forwarded request refused: {e}");
            Err(refused(Vec::new()))
        }
    }
}
