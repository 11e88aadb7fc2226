//! The Vault HTTP API surface: method and path mapping, body decoding, token extraction,
//! unauthenticated status endpoints, and the exact response envelopes and headers OpenBao
//! sends. Everything else is delegated to [`Core::handle`].

pub mod body;
pub mod budget;
pub mod conn;
mod envelope;

use crate::core::{Barred, Core, Incoming};
use crate::request::{ApiError, Operation, Response as LResponse, Shape};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The API; with `ui`, also the web UI at `/ui/` (and `/` redirecting to it).
pub fn router(core: Arc<Core>, ui: bool) -> axum::Router {
    let r = axum::Router::new();
    let r = if ui {
        r.route("/", axum::routing::any(ui_page))
            .route("/ui", axum::routing::any(ui_page))
            .route("/ui/", axum::routing::any(ui_page))
            .route("/ui/{*rest}", axum::routing::any(ui_page))
    } else {
        r
    };
    r.fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(core)
}

/// `/ui/...`: the embedded pages (GET/HEAD only); `/` and `/ui` redirect to `/ui/`.
async fn ui_page(method: Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if !matches!(method, Method::GET | Method::HEAD) {
        return crate::ui::method_not_allowed();
    }
    match path.strip_prefix("/ui/") {
        Some(rest) => crate::ui::serve(rest),
        None => crate::ui::redirect(),
    }
}

// Vault's request headers, named once (a `&str` key is parsed on every lookup).
static X_VAULT_TOKEN: HeaderName = HeaderName::from_static("x-vault-token");
static X_VAULT_WRAP_TTL: HeaderName = HeaderName::from_static("x-vault-wrap-ttl");
static X_VAULT_NAMESPACE: HeaderName = HeaderName::from_static("x-vault-namespace");

fn base_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
}

fn json_response(status: u16, body: Option<Vec<u8>>) -> Response {
    let mut r = Response::new(match body {
        Some(b) => Body::from(b),
        None => Body::empty(),
    });
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    base_headers(r.headers_mut());
    r
}

pub fn error_response(e: &ApiError) -> Response {
    json_response(
        e.status,
        Some(serde_json::to_vec(&json!({"errors": e.errors})).unwrap_or_default()),
    )
}

fn render(mut resp: LResponse, request_id: &str) -> Response {
    if let Some(body) = envelope::prerendered(&mut resp, request_id) {
        return json_response(resp.status, Some(body));
    }
    match resp.shape {
        Shape::NoContent => json_response(204, None),
        Shape::Text => {
            let mut r = json_response(
                resp.status,
                resp.data
                    .as_ref()
                    .and_then(|d| d.as_str())
                    .map(|s| s.as_bytes().to_vec()),
            );
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        Shape::Raw => json_response(
            resp.status,
            Some(serde_json::to_vec(&resp.data.unwrap_or(Value::Null)).unwrap_or_default()),
        ),
        Shape::Envelope | Shape::EnvelopeLegacy => {
            let mut m = Map::new();
            if resp.shape == Shape::EnvelopeLegacy {
                if let Some(Value::Object(d)) = &resp.data {
                    for (k, v) in d {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            m.insert("request_id".into(), json!(request_id));
            m.insert("lease_id".into(), json!(""));
            m.insert("renewable".into(), json!(resp.renewable));
            m.insert("lease_duration".into(), json!(resp.lease_duration));
            m.insert("data".into(), resp.data.unwrap_or(Value::Null));
            m.insert("wrap_info".into(), resp.wrap_info.unwrap_or(Value::Null));
            m.insert(
                "warnings".into(),
                if resp.warnings.is_empty() {
                    Value::Null
                } else {
                    json!(resp.warnings)
                },
            );
            m.insert("auth".into(), resp.auth.unwrap_or(Value::Null));
            json_response(
                resp.status,
                Some(serde_json::to_vec(&Value::Object(m)).unwrap_or_default()),
            )
        }
    }
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(q) = q {
        for (k, v) in body::form_pairs(q) {
            m.insert(k, v);
        }
    }
    m
}

/// `X-Vault-Wrap-TTL`: a Go duration or a number of seconds.
fn wrap_ttl_of(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = h.get(&X_VAULT_WRAP_TTL) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("\u{fffd}");
    crate::duration::parse_secs(text)
        .map(|t| (t > 0).then_some(t))
        .map_err(|e| ApiError::bad_request(format!("error parsing X-Vault-Wrap-TTL header: {e}")))
}

fn token_of(h: &HeaderMap) -> Option<Zeroizing<String>> {
    if let Some(t) = h.get(&X_VAULT_TOKEN).and_then(|v| v.to_str().ok()) {
        return Some(Zeroizing::new(t.trim().to_string()));
    }
    let auth = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Zeroizing::new(rest.trim().to_string()))
}

fn too_large() -> ApiError {
    ApiError::new(413, "http: request body too large")
}

/// The body, at most `limit` bytes, with its memory (and what decoding it will take)
/// reserved in `mem` before it is allocated (a refusal names `path`).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    mem: &mut budget::Reservation<'_>,
    path: &str,
) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad_request("failed to read request body"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let need = buf.len() + data.len();
        if need > limit {
            return Err(too_large());
        }
        if need > buf.capacity() {
            // The exact size when declared, else doubling: reserved before allocated.
            let cap = declared
                .filter(|&n| n >= need)
                .unwrap_or(need.max(buf.capacity() * 2).min(limit));
            mem.body(cap, path).await?;
            buf.reserve_exact(cap - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = body::is_form(&buf, content_type);
    mem.decoding(buf.capacity() + budget::decode_cost(&buf, form), path)
        .await?;
    Ok(buf)
}

/// One request through the HTTP layer without a listener (a request a standby forwarded).
pub async fn serve_one(core: Arc<Core>, req: Request<Body>) -> Response {
    handle(State(core), req).await
}

async fn handle(State(core): State<Arc<Core>>, req: Request<Body>) -> Response {
    match serve(&core, req).await {
        Ok(r) => r,
        Err(r) => *r,
    }
}

/// An answer given before the request reaches the core (an error, a redirect, help).
type Early = Box<Response>;

fn early(e: &ApiError) -> Early {
    Box::new(error_response(e))
}

/// One API request, step by step; an early answer comes back as `Err`.
async fn serve(core: &Arc<Core>, req: Request<Body>) -> Result<Response, Early> {
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let path = api_path(parts.uri.path())?;
    if !crate::paths::clean_rel(&path) {
        if let Some(clean) = crate::paths::redirect_target(&format!("/v1/{path}")) {
            return Err(Box::new(redirect(&clean, parts.uri.query())));
        }
    }
    let query = query_map(parts.uri.query());
    refuse_namespace(&parts.headers)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string());
    // Held until the answer: the body, its decoded form and what the handler derives.
    let mut mem = budget::Reservation::new();
    let body = request_body(core, &parts, body, &mut mem, &path).await?;
    let body = if crate::ha::forward::must_forward(core, &path, &parts.extensions) {
        match Box::pin(crate::ha::forward::forward(core, &parts, body, &remote)).await {
            Ok(resp) => return Ok(resp),
            Err(body) => body,
        }
    } else {
        body
    };
    if query.contains_key("help") {
        return Err(Box::new(help(&path)));
    }
    // rare branches boxed: their state would enlarge every request's future
    if let Some(force) = snapshot_request(&path, &parts.method) {
        return Ok(Box::pin(snapshot(core, &parts, path, body, remote, force)).await);
    }
    // status endpoints: no token, answer while sealed, raw bodies
    let status_path = path.trim_end_matches('/');
    if matches!(
        status_path,
        "sys/health"
            | "sys/seal-status"
            | "sys/init"
            | "sys/unseal"
            | "sys/leader"
            | "sys/storage/raft/join"
    ) {
        if path.ends_with('/') && status_path == "sys/health" {
            return Err(early(&ApiError::permission_denied()));
        }
        let data = body::decode(&body, content_type.as_deref()).map_err(|e| early(&e))?;
        let status = status_endpoint(core, status_path, &parts.method, &query, data);
        return Ok(Box::pin(status).await);
    }
    let op = operation(&parts.method, &query).map_err(|e| early(&e))?;
    let inc = Incoming {
        wrap_ttl: wrap_ttl_of(&parts.headers).map_err(|e| early(&e))?,
        op,
        data: request_data(op, &body, content_type.as_deref(), &query).map_err(|e| early(&e))?,
        path,
        token: token_of(&parts.headers),
        content_type,
        remote_addr: remote,
    };
    match run(core, inc).await {
        Ran::Answered(result) => Ok(answer(result)),
        Ran::NotActive(inc) => {
            let elsewhere = crate::ha::forward::elsewhere(core, &parts, body, &inc.remote_addr);
            Ok(Box::pin(elsewhere).await)
        }
    }
}

/// `GET sys/storage/raft/snapshot` (`None` inside: save) or a restore (`Some(force)`).
fn snapshot_request(path: &str, method: &Method) -> Option<Option<bool>> {
    match (path, method.as_str()) {
        ("sys/storage/raft/snapshot", "GET") => Some(None),
        ("sys/storage/raft/snapshot", "PUT" | "POST") => Some(Some(false)),
        ("sys/storage/raft/snapshot-force", "PUT" | "POST") => Some(Some(true)),
        _ => None,
    }
}

/// A raft snapshot: authorized and audited through the pipeline (the sys route), the
/// binary file itself handled here.
async fn snapshot(
    core: &Arc<Core>,
    parts: &axum::http::request::Parts,
    path: String,
    body: Vec<u8>,
    remote: String,
    restore: Option<bool>,
) -> Response {
    let op = match restore {
        None => Operation::Read,
        Some(_) => Operation::Update,
    };
    let inc = Incoming {
        wrap_ttl: None,
        op,
        data: Map::new(),
        path,
        token: token_of(&parts.headers),
        content_type: None,
        remote_addr: remote,
    };
    match run(core, inc).await {
        Ran::Answered(Ok(_)) => {}
        Ran::Answered(Err(e)) => return error_response(&e),
        // the snapshot is of the active node's copy: the client asks again
        Ran::NotActive(_) => {
            return error_response(&ApiError::new(
                500,
                "local node not active but active cluster node not found",
            ))
        }
    }
    let Some(raft) = core.options.raft.clone() else {
        return error_response(&ApiError::bad_request("raft storage is not in use"));
    };
    let Some(force) = restore else {
        return match blocking(core, move |c| crate::ha::snapshot::save(&c.barrier, &raft)).await {
            Ok(file) => {
                let mut r = Response::new(Body::from(file));
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/gzip"),
                );
                h.insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(e) => error_response(&e),
        };
    };
    let done = blocking(core, move |c| {
        crate::ha::snapshot::restore(&c.barrier, &raft, &body, force)?;
        crate::ha::snapshot::reload(c);
        Ok(())
    });
    match done.await {
        Ok(()) => json_response(204, None),
        Err(e) => error_response(&e),
    }
}

/// The logical path of a `/v1/` URL (percent-decoded); other URLs get Go's 404 answers.
fn api_path(raw_path: &str) -> Result<String, Early> {
    if let Some(path) = raw_path.strip_prefix("/v1/") {
        return Ok(body::percent_decode(path));
    }
    if raw_path.starts_with("/v2/") || raw_path == "/v1" {
        return Err(Box::new(json_response(
            404,
            Some(br#"{"errors":[]}"#.to_vec()),
        )));
    }
    let mut r = Response::new(Body::from("404 page not found\n"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Err(Box::new(r))
}

/// Only the root namespace exists: any other `X-Vault-Namespace` is not found.
fn refuse_namespace(headers: &HeaderMap) -> Result<(), Early> {
    let Some(ns) = headers
        .get(&X_VAULT_NAMESPACE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let n = ns.trim_matches('/');
    if n.is_empty() || n == "root" {
        return Ok(());
    }
    let mut r = error_response(&ApiError::new(404, "namespace not found"));
    if let Ok(v) = HeaderValue::from_str(ns) {
        r.headers_mut().insert(X_VAULT_NAMESPACE.clone(), v);
    }
    Err(Box::new(r))
}

/// Reads the body within the size limit and the memory budget; a connection the server
/// closes meanwhile (eviction) ends the read.
async fn request_body(
    core: &Core,
    parts: &axum::http::request::Parts,
    body: Body,
    mem: &mut budget::Reservation<'_>,
    path: &str,
) -> Result<Vec<u8>, Early> {
    let limit = core.options.max_request_size.max(1024);
    let conn = parts.extensions.get::<conn::ConnHandle>();
    let read = read_body(&parts.headers, body, limit, mem, path);
    let body = match conn {
        // the read first: a body that has arrived needs no wait for the close set up
        Some(c) => tokio::select! {
            biased;
            r = read => r,
            () = c.closed() => Err(ApiError::bad_request("connection closed by the server")),
        },
        None => read.await,
    };
    let body = body.map_err(|e| early(&e))?;
    if let Some(c) = conn {
        c.working();
    }
    Ok(body)
}

fn help(path: &str) -> Response {
    let text = format!("## PATH\n\n{path}\n\nStrongroom serves this path with the Vault API.");
    let body = serde_json::to_vec(&json!({"help": text, "see_also": null})).unwrap_or_default();
    json_response(200, Some(body))
}

/// The operation a method (and `?list=true`) asks for.
fn operation(method: &Method, query: &HashMap<String, String>) -> Result<Operation, ApiError> {
    let listing = query.get("list").is_some_and(|v| v == "true" || v == "1");
    Ok(match method.as_str() {
        "GET" if listing => Operation::List,
        "GET" => Operation::Read,
        "LIST" => Operation::List,
        "PUT" | "POST" => Operation::Update,
        "DELETE" => Operation::Delete,
        "PATCH" => Operation::Patch,
        _ => return Err(ApiError::unsupported_operation()),
    })
}

/// The request's fields: the decoded body, plus the query's for reads, lists and deletes.
fn request_data(
    op: Operation,
    body: &[u8],
    content_type: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<crate::request::Data, ApiError> {
    let mut data = body::decode(body, content_type)?;
    if matches!(op, Operation::Read | Operation::List | Operation::Delete) {
        for (k, v) in query {
            if k != "list" {
                data.entry(k.clone()).or_insert_with(|| json!(v));
            }
        }
    }
    Ok(data)
}

/// Runs the request through the core. Most requests are a few microseconds of CPU: run
/// them right here, with deferred durability (their writes are awaited, not blocked on:
/// `Core::handle_durable`). Logins (a deliberately slow password KDF) and sys/
/// administration go to the blocking pool so they cannot stall other requests
/// (durability is awaited the same way).
///
/// The blocking-pool branch is boxed: its state would otherwise enlarge every request's
/// future (copied whole when the handler's future is boxed).
async fn run(core: &Arc<Core>, inc: Incoming) -> Ran {
    match core
        .read_barrier(crate::ha::forward::local_path(&inc.path))
        .await
    {
        Ok(()) => {}
        Err(Barred::NotActive) => return Ran::NotActive(Box::new(inc)),
        Err(Barred::Failed(e)) => return Ran::Answered(Err(e)),
    }
    let heavy = inc.path.contains("/login/") || inc.path.starts_with("sys/");
    Ran::Answered(if heavy {
        Box::pin(run_blocking(core, inc)).await
    } else {
        core.handle_durable(inc).await
    })
}

/// What running a request here came to. (The answer stays inline: it is what `run`
/// returned before, and boxing it would allocate once per request for a rare variant.)
#[allow(clippy::large_enum_variant)]
enum Ran {
    Answered(Result<LResponse, ApiError>),
    /// Not run: at its read barrier this node found it is not the active node (it lost the
    /// lead after the request was routed here). Carries the request back, to be sent on.
    NotActive(Box<Incoming>),
}

async fn run_blocking(core: &Arc<Core>, inc: Incoming) -> Result<LResponse, ApiError> {
    let c = core.clone();
    match tokio::task::spawn_blocking(move || crate::storage::durability::scope(|| c.handle(inc)))
        .await
    {
        Ok((r, ticket)) => core.answer_when_durable(r, ticket).await,
        Err(_) => Err(ApiError::internal("internal error")),
    }
}

/// The HTTP answer; a wrapped answer carries no request id (OpenBao sends "").
fn answer(result: Result<LResponse, ApiError>) -> Response {
    match result {
        Ok(resp) => {
            let id = if resp.wrap_info.is_some() {
                String::new()
            } else if resp.request_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                resp.request_id.clone()
            };
            render(resp, &id)
        }
        Err(e) => error_response(&e),
    }
}

/// 307 to the cleaned path (OpenBao's Go mux answers `//`, `.` and `..` this way).
fn redirect(clean: &str, query: Option<&str>) -> Response {
    let location = match query {
        Some(q) => format!("{clean}?{q}"),
        None => clean.to_string(),
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => error_response(&ApiError::bad_request("invalid request path")),
    }
}

async fn blocking<T: Send + 'static>(
    core: &Arc<Core>,
    f: impl FnOnce(&Core) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let c = core.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("internal error")))
}

async fn status_endpoint(
    core: &Arc<Core>,
    path: &str,
    method: &Method,
    query: &HashMap<String, String>,
    data: Map<String, Value>,
) -> Response {
    let m = method.as_str();
    let raw = |status: u16, v: Value| {
        json_response(status, Some(serde_json::to_vec(&v).unwrap_or_default()))
    };
    match (path, m) {
        ("sys/health", "GET") => {
            let (s, b) = core.health(query);
            raw(s, b)
        }
        ("sys/health", "HEAD") => json_response(core.health(query).0, None),
        ("sys/health", _) => json_response(405, Some(br#"{"errors":[]}"#.to_vec())),
        ("sys/seal-status", "GET") => match core.seal_status() {
            Ok(v) => raw(200, v),
            Err(e) => error_response(&e),
        },
        ("sys/init", "GET") => match core.seal_config() {
            Ok(c) => raw(200, json!({"initialized": c.is_some()})),
            Err(e) => error_response(&e),
        },
        // init and unseal write through storage (a raft node waits for its quorum): on
        // the blocking pool, off the async workers
        ("sys/init", "PUT" | "POST") => match blocking(core, move |c| c.init(&data)).await {
            Ok(v) => raw(200, v),
            Err(e) => error_response(&e),
        },
        ("sys/unseal", "PUT" | "POST") => match blocking(core, move |c| c.unseal(&data)).await {
            Ok(v) => raw(200, v),
            Err(e) => error_response(&e),
        },
        ("sys/storage/raft/join", "PUT" | "POST") => match core.raft_join(&data).await {
            Ok(v) => raw(200, v),
            Err(e) => error_response(&e),
        },
        ("sys/leader", "GET") => match core.leader() {
            Ok(v) => raw(200, v),
            Err(e) => error_response(&e),
        },
        _ => error_response(&ApiError::unsupported_operation()),
    }
}
