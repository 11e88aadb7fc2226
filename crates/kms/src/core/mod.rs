//! The core: owns the barrier, the seal state and, while unsealed, the router, token store,
//! policy store and audit broker. Every API request goes through [`Core::handle`]:
//!
//!   sealed? → canonical path → route → authenticate token (spend a use) → create/update by
//!   existence → ACL (with what the mount's backend declares: sudo, unauthenticated and
//!   case-folded paths) → audit request → backend → mint login token → wrap → audit response
//!
//! The core names no backend in this pipeline: `sys/` and `auth/token/` are ordinary
//! backends ([`SystemBackend`], [`TokenBackend`]) built here at unseal with a weak reference
//! to the [`Unsealed`] state and a [`System`] handle instead of the core. Status endpoints
//! that must answer while sealed (health, seal-status, init, unseal) live in `seal.rs`.

use crate::audit::AuditBroker;
use crate::backend::identity::Identity;
use crate::backend::Backend;
use crate::barrier::{Barrier, View};
use crate::mounts::{self, Mount, MountEntry, Router};
use crate::policy::Caps;
use crate::policy_store::PolicyStore;
use crate::request::{ApiError, AuthSpec, Operation, Request, Response};
mod seal;

use crate::storage::Storage;
use crate::sys::SystemBackend;
use crate::system::System;
use crate::token::{NewToken, TokenEntry, TokenStore};
use crate::token_api::TokenBackend;
pub use crate::unsealed::{ClusterInfo, Unsealed};
use parking_lot::{Mutex, RwLock};
pub use seal::SealConfig;
use seal::SealState;
pub use seal::VERSION;
use serde_json::{json, Value};
use std::sync::{Arc, Weak};

#[derive(Clone, Debug, Default)]
pub struct CoreOptions {
    pub api_addr: Option<String>,
    pub cluster_addr: Option<String>,
    /// `-dev`: `sys/leader` reports `ha_enabled:false`.
    pub dev: bool,
    /// Maximum request body in bytes (413 beyond).
    pub max_request_size: usize,
    /// Audit devices from the config file, enabled at every unseal.
    pub audit_devices: Vec<crate::audit::DeviceConfig>,
    /// Whether `sys/audit/<path>` may create devices (OpenBao's
    /// `unsafe_allow_api_audit_creation`; off by default).
    pub allow_api_audit_creation: bool,
    /// The raft node behind `storage "raft"` (HA endpoints, standby behaviour).
    pub raft: Option<Arc<crate::storage::raft::RaftStorage>>,
}

pub struct Core {
    /// Itself, for the sealer handed to `sys/seal`.
    me: Weak<Core>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub barrier: Arc<Barrier>,
    pub seal: Mutex<SealState>,
    pub state: RwLock<Option<Arc<Unsealed>>>,
    pub options: CoreOptions,
    /// Raft join/challenge state (outlives seal and unseal).
    pub ha: Arc<crate::ha::join::HaState>,
    /// The raft term the unsealed state was last built in as the active node.
    active_term: std::sync::atomic::AtomicU64,
    refresh: Mutex<()>,
}

/// The HTTP layer's view of a request before routing.
pub struct Incoming {
    pub op: Operation,
    pub path: String,
    pub data: serde_json::Map<String, Value>,
    pub token: Option<zeroize::Zeroizing<String>>,
    pub content_type: Option<String>,
    pub remote_addr: String,
    /// `X-Vault-Wrap-TTL` in seconds (`None` or 0: not wrapped).
    pub wrap_ttl: Option<u64>,
}

/// What the router decided, for metrics (no copies of the request's strings: a transit key
/// is copied only for a key operation).
#[derive(Default)]
struct Routed {
    mount: Option<Arc<Mount>>,
    /// No mount serves the path.
    unrouted: bool,
    /// The key and operation the request names (see [`Backend::key_operation`]).
    key_op: Option<(String, &'static str)>,
}

impl Routed {
    /// The metrics label: the mount's type, "unrouted", or "" (refused before routing).
    fn mount_type(&self) -> &str {
        match (&self.mount, self.unrouted) {
            (Some(m), _) => &m.entry.kind,
            (None, true) => "unrouted",
            (None, false) => "",
        }
    }
}

fn op_caps(op: Operation) -> Caps {
    match op {
        Operation::Read => Caps::READ,
        Operation::Create => Caps::CREATE,
        Operation::Update => Caps::UPDATE,
        Operation::Delete => Caps::DELETE,
        Operation::List => Caps::LIST,
        Operation::Patch => Caps::PATCH,
    }
}

/// Why [`Core::read_barrier`] let a request not run.
#[derive(Debug)]
pub enum Barred {
    /// This node is not the active node: the request goes there, unrun.
    NotActive,
    /// The answer to give (e.g. no quorum to confirm the leadership with).
    Failed(ApiError),
}

impl Core {
    pub fn new(storage: Arc<dyn Storage>, options: CoreOptions) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            metrics: Arc::default(),
            barrier: Arc::new(Barrier::new(storage)),
            seal: Mutex::new(SealState::default()),
            state: RwLock::new(None),
            options,
            ha: Arc::default(),
            active_term: Default::default(),
            refresh: Mutex::new(()),
        })
    }

    pub fn unsealed(&self) -> Result<Arc<Unsealed>, ApiError> {
        self.state.read().clone().ok_or_else(ApiError::sealed)
    }

    pub fn storage_kind(&self) -> &'static str {
        self.barrier.storage().kind()
    }

    /// Run the request pipeline with deferred durability (see
    /// [`crate::storage::durability`]) and answer once everything it may depend on is on
    /// disk: its own writes, pending values it read, and — because caches can expose a
    /// change without a storage read — every commit accepted before it finished. The
    /// async worker is never parked on the disk; one fsync serves many requests.
    ///
    /// The caller has passed [`Self::read_barrier`].
    pub async fn handle_durable(&self, inc: Incoming) -> Result<Response, ApiError> {
        let (result, ticket) = crate::storage::durability::scope(|| self.handle(inc));
        // the wait holds no copy of the result (a smaller future per request)
        self.durable(ticket).await?;
        result
    }

    /// Before a request: make this node's reads linearizable (on a raft active node, confirm
    /// the leadership with a quorum; see [`crate::storage::Storage::read_barrier`]). Not on a
    /// sealed node: it serves no data, and its confirmations would renew the followers'
    /// leader lease, keeping a sealed leader in place (see [`crate::ha::endpoints::sealed`]).
    ///
    /// `node_local`: a request every node answers for itself (`sys/seal` on a standby seals
    /// that standby): a standby runs it on its own copy.
    ///
    /// [`Barred::NotActive`]: this node does not lead (it lost the lead since the request
    /// was routed here): the request did not run, and goes to the active node.
    pub async fn read_barrier(&self, node_local: bool) -> Result<(), Barred> {
        if self.barrier.is_sealed() {
            return Ok(());
        }
        match self.barrier.storage().read_barrier().await {
            Ok(()) => self.refresh_if_newly_active().await.map_err(Barred::Failed),
            Err(crate::storage::StorageError::NotActive) if node_local => Ok(()),
            Err(crate::storage::StorageError::NotActive) => Err(Barred::NotActive),
            Err(e) => {
                tracing::warn!("request refused: {e}");
                Err(Barred::Failed(ApiError::new(
                    500,
                    "local node not active but active cluster node not found",
                )))
            }
        }
    }

    /// A raft node that became the active node (a new term) rebuilds its unsealed state from
    /// storage before serving: what it loaded as a standby may be stale.
    async fn refresh_if_newly_active(&self) -> Result<(), ApiError> {
        let Some(r) = &self.options.raft else {
            return Ok(());
        };
        let term = r.raft().metrics().borrow().current_term;
        let loaded = self.active_term.load(std::sync::atomic::Ordering::SeqCst);
        if !r.is_leader() || term == loaded || self.barrier.is_sealed() {
            return Ok(());
        }
        let Some(me) = self.me.upgrade() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            let _one = me.refresh.lock();
            if me.active_term.load(std::sync::atomic::Ordering::SeqCst) == term {
                return Ok(());
            }
            tracing::info!(term, "active node: reloading state from storage");
            me.post_unseal()?;
            me.active_term
                .store(term, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("internal error")))
    }

    /// The second half of [`Self::handle_durable`], for a pipeline run in a durability
    /// scope elsewhere (the blocking pool).
    pub async fn answer_when_durable(
        &self,
        result: Result<Response, ApiError>,
        ticket: u64,
    ) -> Result<Response, ApiError> {
        self.durable(ticket).await?;
        result
    }

    /// Resolves once `ticket` and every commit accepted so far are durable.
    async fn durable(&self, ticket: u64) -> Result<(), ApiError> {
        let storage = self.barrier.storage();
        let ticket = ticket.max(storage.watermark());
        if let Err(e) = storage.wait_durable(ticket).await {
            tracing::error!("request not answered: {e}");
            return Err(ApiError::internal("storage I/O error"));
        }
        Ok(())
    }

    /// After the barrier opens: load tables, build the router, token and policy stores.
    pub(crate) fn post_unseal(&self) -> Result<(), ApiError> {
        let b = self.barrier.clone();
        let root = View::new(b.clone(), "");
        let cluster = cluster_info(&root)?;
        let (secret, auth) = mount_tables(&root)?;
        let identity_entry = secret.iter().find(|e| e.kind == "identity");
        let identity_entry = identity_entry.expect("mount_tables adds identity/");
        let identity = Arc::new(Identity::new(View::new(
            b.clone(),
            mounts::view_prefix(identity_entry, false),
        )));
        // the mountable engines first (fallible), the built-ins once the state exists
        let mut engines = vec![];
        for (entries, is_auth) in [(&secret, false), (&auth, true)] {
            for e in entries.iter() {
                let engine = match e.kind.as_str() {
                    "system" | "token" | "identity" => None,
                    _ => Some(mounts::instantiate(
                        e,
                        View::new(b.clone(), mounts::view_prefix(e, is_auth)),
                    )?),
                };
                engines.push((e.clone(), is_auth, engine));
            }
        }
        let tokens = TokenStore::open(View::new(b.clone(), "sys/token/"))?;
        let policies = PolicyStore::open(View::new(b.clone(), "sys/policy/"))?;
        let audit = AuditBroker::load(
            View::new(b.clone(), "core/audit/"),
            &self.options.audit_devices,
            self.metrics.audit_failures.clone(),
        )?;
        let state = Arc::new_cyclic(|me: &Weak<Unsealed>| {
            let router = Router::default();
            for (entry, is_auth, engine) in engines {
                let handler: Arc<dyn Backend> = match (entry.kind.as_str(), engine) {
                    (_, Some(engine)) => engine,
                    ("system", None) => Arc::new(SystemBackend::new(me.clone(), self.system())),
                    ("token", None) => Arc::new(TokenBackend::new(me.clone())),
                    _ => identity.clone(),
                };
                let prefix = match is_auth {
                    true => format!("auth/{}", entry.path),
                    false => entry.path.clone(),
                };
                router.insert(Mount {
                    entry,
                    prefix,
                    handler,
                    is_auth,
                });
            }
            Unsealed {
                barrier: b.clone(),
                identity: identity.clone(),
                router,
                tokens,
                policies,
                audit,
                cluster,
                active_since: chrono::Utc::now(),
            }
        });
        *self.state.write() = Some(state);
        Ok(())
    }

    /// What the built-in backends may do to the server (see [`System`]).
    fn system(&self) -> Arc<System> {
        let me = self.me.clone();
        Arc::new(System::new(
            self.metrics.clone(),
            self.options.allow_api_audit_creation,
            self.options.raft.clone(),
            self.ha.clone(),
            Box::new(move || {
                if let Some(core) = me.upgrade() {
                    core.seal_now()
                }
            }),
        ))
    }

    pub(crate) fn pre_seal(&self) {
        *self.state.write() = None;
        self.barrier.seal();
    }

    /// The full request pipeline, timed and counted for `sys/metrics`.
    pub fn handle(&self, inc: Incoming) -> Result<Response, ApiError> {
        let start = std::time::Instant::now();
        let op = inc.op;
        let mut routed = Routed::default();
        let result = self.handle_inner(inc, &mut routed);
        let status = match &result {
            Ok(r) => r.status,
            Err(e) => e.status,
        };
        self.metrics
            .record(routed.mount_type(), op.as_str(), status, start.elapsed());
        if let (Some((key, kind)), true) = (&routed.key_op, status < 400) {
            self.metrics.transit_op(key, kind);
        }
        result
    }

    fn handle_inner(&self, mut inc: Incoming, routed: &mut Routed) -> Result<Response, ApiError> {
        let u = self.unsealed()?;
        let (mount, mut req) = Self::route(&u, &mut inc)?;
        let handler = mount.as_ref().map(|m| &m.handler);
        let unauth = handler.is_some_and(|h| h.unauthenticated(&req.rel));
        let mut last_use = false;
        if unauth {
            // named, not trusted: sys/wrapping/unwrap takes the wrapping token this way
            req.client_token = inc.token.clone().filter(|t| !t.is_empty()).map(Arc::new);
        } else {
            last_use = self.authenticate(&u, &inc, &mut req)?;
        }
        let own_access = handler.is_some_and(|h| h.decides_own_access(&req.rel, req.op));
        if let (Some(token), false) = (req.token.clone(), own_access) {
            self.authorize(&u, &mut req, &token, mount.as_deref(), &inc.remote_addr)?;
        }
        let Some(mount) = mount else {
            routed.unrouted = true;
            return Err(ApiError::new(
                404,
                format!(
                    "no handler for route {:?}. route entry not found.",
                    req.path
                ),
            ));
        };
        routed.key_op = (mount.handler.key_operation(&req.rel)).map(|(k, op)| (k.to_string(), op));
        routed.mount = Some(mount.clone());
        let kind = &mount.entry.kind;
        u.audit.log_request(&req, kind, &inc.remote_addr)?;
        let result = self
            .dispatch(&u, &mount, &req)
            .and_then(|resp| match req.wrap_ttl {
                Some(ttl) if crate::wrapping::wrappable(&resp) => {
                    crate::wrapping::wrap(&u, resp, &req.path, ttl)
                }
                _ => Ok(resp),
            });
        u.audit
            .log_response(&req, kind, &inc.remote_addr, &result)?;
        if let (true, Some(t)) = (last_use, &req.token) {
            u.tokens.revoke_tree(&t.id_hash)?;
        }
        self.forget_revoked(&u)?;
        result
    }

    /// The canonical path, its mount and the request the rest of the pipeline sees: the ACL
    /// and the handler act on the same `path` and `rel`.
    fn route(u: &Unsealed, inc: &mut Incoming) -> Result<(Option<Arc<Mount>>, Request), ApiError> {
        let mut path = crate::paths::canonical(&inc.path, inc.op)?;
        let mount = u.router.route(&path);
        let (prefix, mut rel) = match &mount {
            Some(m) => (
                m.prefix.clone(),
                path[m.prefix.len().min(path.len())..].to_string(),
            ),
            None => (String::new(), path.clone()),
        };
        if let Some(folded) = mount.as_ref().and_then(|m| m.handler.canonical_rel(&rel)) {
            rel = folded;
            path = format!("{prefix}{rel}");
        }
        let req = Request {
            id: uuid::Uuid::new_v4().to_string(),
            op: inc.op,
            path,
            mount: prefix,
            rel,
            data: std::mem::take(&mut inc.data),
            token: None,
            content_type: inc.content_type.take(),
            client_token: None,
            remote_addr: inc.remote_addr.parse().ok(),
            wrap_ttl: inc.wrap_ttl.filter(|t| *t > 0),
        };
        Ok((mount, req))
    }

    /// Resolve the caller's token (valid, bound to this client's address) and spend one of
    /// its uses. Returns whether that was its last use (revoked after the request).
    fn authenticate(
        &self,
        u: &Unsealed,
        inc: &Incoming,
        req: &mut Request,
    ) -> Result<bool, ApiError> {
        let tok = inc
            .token
            .as_ref()
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::permission_denied)?;
        let entry = u
            .tokens
            .lookup(tok)?
            .ok_or_else(ApiError::permission_denied)?;
        if !crate::cidr::allows(&entry.bound_cidrs, req.remote_addr) {
            return Err(ApiError::permission_denied());
        }
        let (entry, last) = u
            .tokens
            .spend_use(&entry)?
            .ok_or_else(ApiError::permission_denied)?;
        req.client_token = Some(Arc::new(tok.clone()));
        req.token = Some(entry);
        Ok(last)
    }

    /// The ACL decision for an authenticated request; turns an update of a missing target
    /// into a create first when the answer matters.
    fn authorize(
        &self,
        u: &Unsealed,
        req: &mut Request,
        token: &TokenEntry,
        mount: Option<&Mount>,
        remote: &str,
    ) -> Result<(), ApiError> {
        let acl = u.acl(token)?;
        let caps = acl.capabilities(&req.path);
        let both = acl.is_root() || (caps.contains(Caps::CREATE) && caps.contains(Caps::UPDATE));
        if req.op == Operation::Update && !both {
            if let Some(b) = mount.map(|m| &m.handler) {
                if b.exists(req)? == Some(false) {
                    req.op = Operation::Create;
                }
            }
        }
        let sudo_needed = mount.is_some_and(|m| m.handler.needs_sudo(&req.rel, req.op));
        let allowed = caps.contains(op_caps(req.op)) && (!sudo_needed || caps.contains(Caps::SUDO));
        if !allowed {
            u.audit.log_denied(req, remote);
            return Err(ApiError::acl_denied());
        }
        Ok(())
    }

    /// Run the handler, then mint the token a login asked for.
    fn dispatch(&self, u: &Unsealed, mount: &Mount, req: &Request) -> Result<Response, ApiError> {
        let mut resp = mount.handler.handle(req)?;
        if let Some(spec) = resp.login.take() {
            resp.auth = Some(self.mint_login(u, spec, mount, req)?);
        }
        resp.request_id = req.id.clone();
        Ok(resp)
    }

    /// The token of a successful login. No auth method may mint a root token.
    fn mint_login(
        &self,
        u: &Unsealed,
        spec: AuthSpec,
        mount: &Mount,
        req: &Request,
    ) -> Result<Value, ApiError> {
        let policies = crate::token::sanitize_policies(spec.policies);
        if policies.iter().any(|p| p == "root") {
            return Err(ApiError::bad_request(
                "auth methods cannot create root tokens",
            ));
        }
        let login_mount = crate::backend::identity::LoginMount {
            accessor: &mount.entry.accessor,
            path: &mount.prefix,
            kind: &mount.entry.kind,
        };
        let entity_id = u
            .identity
            .entity_for_login(&login_mount, &spec.alias_name)?;
        let (tok, e) = u
            .tokens
            .create(NewToken {
                policies,
                no_default_policy: spec.no_default_policy,
                meta: spec.metadata,
                display_name: spec.display_name,
                num_uses: spec.num_uses,
                ttl: spec.ttl,
                explicit_max_ttl: spec.max_ttl,
                period: spec.period,
                renewable: spec.renewable,
                path: req.path.clone(),
                entity_id,
                bound_cidrs: spec.bound_cidrs,
                kind: spec.kind,
                ..Default::default()
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(e.auth_block(&tok, crate::token::now()))
    }

    /// Remove per-token data (cubbyholes) of tokens revoked so far.
    fn forget_revoked(&self, u: &Unsealed) -> Result<(), ApiError> {
        let gone = u.tokens.take_revoked();
        if gone.is_empty() {
            return Ok(());
        }
        for m in u.router.all() {
            m.handler.tokens_revoked(&gone)?;
        }
        Ok(())
    }

    /// `sys/storage/raft/join` on this (uninitialized) node.
    pub async fn raft_join(&self, d: &serde_json::Map<String, Value>) -> Result<Value, ApiError> {
        let r = self
            .options
            .raft
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("raft storage is not in use"))?;
        let initialized = self.seal_config()?.is_some();
        crate::ha::join::join(&self.ha, r, initialized, d).await
    }

    /// `sys/leader` body.
    pub fn leader(&self) -> Result<Value, ApiError> {
        let u = self.unsealed()?;
        if self.options.dev || self.storage_kind() == "inmem" {
            return Ok(json!({"ha_enabled": false}));
        }
        if let Some(r) = &self.options.raft {
            let since = u
                .active_since
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            return Ok(crate::ha::endpoints::leader(r, Some(since)));
        }
        Ok(json!({
            "ha_enabled": true,
            "is_self": true,
            "active_time": u.active_since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "leader_address": self.options.api_addr.clone().unwrap_or_default(),
            "leader_cluster_address": self.options.cluster_addr.clone().unwrap_or_default(),
            "raft_committed_index": 0,
            "raft_applied_index": 0,
        }))
    }
}

/// The cluster's name and id, made on first unseal.
fn cluster_info(root: &View) -> Result<ClusterInfo, ApiError> {
    if let Some(c) = root.get_json("core/cluster")? {
        return Ok(c);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let c = ClusterInfo {
        name: format!("vault-cluster-{}", &id[..8]),
        id,
    };
    root.put_json("core/cluster", &c)?;
    Ok(c)
}

/// The secret and auth mount tables, with the built-in mounts every server has.
fn mount_tables(root: &View) -> Result<(Vec<MountEntry>, Vec<MountEntry>), ApiError> {
    let mut secret: Vec<MountEntry> = root.get_json(mounts::MOUNTS_PATH)?.unwrap_or_default();
    let builtin = [
        (
            "cubbyhole/",
            "cubbyhole",
            "per-token private secret storage",
        ),
        (
            "sys/",
            "system",
            "system endpoints used for control, policy and debugging",
        ),
        ("identity/", "identity", "identity store"),
    ];
    let before = secret.len();
    for (path, kind, description) in builtin {
        // tables written before a built-in existed get it now
        if !secret.iter().any(|e| e.kind == kind) {
            secret.push(MountEntry::new(path, kind, description));
        }
    }
    if secret.len() != before {
        root.put_json(mounts::MOUNTS_PATH, &secret)?;
    }
    let mut auth: Vec<MountEntry> = root.get_json(mounts::AUTH_PATH)?.unwrap_or_default();
    if !auth.iter().any(|e| e.kind == "token") {
        auth.push(MountEntry::new(
            "token/",
            "token",
            "token based credentials",
        ));
        root.put_json(mounts::AUTH_PATH, &auth)?;
    }
    Ok((secret, auth))
}
