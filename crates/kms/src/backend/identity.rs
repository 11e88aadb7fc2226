//! `identity/`: entities (one per person or service) and their aliases (one per auth mount
//! login name). A login finds or creates the alias and its entity, and the token carries the
//! entity's id, as OpenBao does. Layout: `entity/<id>`, `alias/<id>`, `name/<entity name>` →
//! id, `by-alias/<mount accessor>/<alias name>` → alias id.

use super::table::{self, Ops, Route};
use super::Backend;
use crate::barrier::{BarrierOp, View};
use crate::fields;
use crate::request::{ApiError, Operation, Request, Response};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Entity {
    id: String,
    name: String,
    policies: Vec<String>,
    metadata: Option<Map<String, Value>>,
    disabled: bool,
    creation_time: String,
    last_update_time: String,
    aliases: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Alias {
    id: String,
    canonical_id: String,
    name: String,
    mount_accessor: String,
    mount_path: String,
    mount_type: String,
    creation_time: String,
    last_update_time: String,
}

/// The auth mount a login came through.
pub struct LoginMount<'a> {
    pub accessor: &'a str,
    pub path: &'a str,
    pub kind: &'a str,
}

pub struct Identity {
    view: View,
    /// Serializes find-or-create, so concurrent first logins make one entity.
    writes: Mutex<()>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && !n.contains('/') && n.len() <= 256
}

impl Identity {
    pub fn new(view: View) -> Self {
        Self {
            view,
            writes: Mutex::new(()),
        }
    }

    fn entity(&self, id: &str) -> Result<Option<Entity>, ApiError> {
        Ok(self.view.get_json(&format!("entity/{id}"))?)
    }

    fn entity_by_name(&self, name: &str) -> Result<Option<Entity>, ApiError> {
        match self.view.get(&format!("name/{name}"))? {
            Some(id) => self.entity(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn alias(&self, id: &str) -> Result<Option<Alias>, ApiError> {
        Ok(self.view.get_json(&format!("alias/{id}"))?)
    }

    fn alias_by_name(&self, accessor: &str, name: &str) -> Result<Option<Alias>, ApiError> {
        match self.view.get(&format!("by-alias/{accessor}/{name}"))? {
            Some(id) => self.alias(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn save_entity(&self, e: &Entity, ops: &mut Vec<BarrierOp>) {
        let json = serde_json::to_vec(e).expect("entity serializes");
        ops.push(BarrierOp::Put(format!("entity/{}", e.id), json));
        ops.push(BarrierOp::Put(
            format!("name/{}", e.name),
            e.id.clone().into_bytes(),
        ));
    }

    fn save_alias(&self, a: &Alias, ops: &mut Vec<BarrierOp>) {
        let json = serde_json::to_vec(a).expect("alias serializes");
        ops.push(BarrierOp::Put(format!("alias/{}", a.id), json));
        let key = format!("by-alias/{}/{}", a.mount_accessor, a.name);
        ops.push(BarrierOp::Put(key, a.id.clone().into_bytes()));
    }

    /// The entity id for a login of `alias_name` through `mount`, creating the entity and
    /// its alias on the first login.
    pub fn entity_for_login(
        &self,
        mount: &LoginMount,
        alias_name: &str,
    ) -> Result<String, ApiError> {
        let _serial = self.writes.lock();
        if let Some(a) = self.alias_by_name(mount.accessor, alias_name)? {
            return Ok(a.canonical_id);
        }
        let t = now();
        let id = new_id();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let alias = Alias {
            id: new_id(),
            canonical_id: id.clone(),
            name: alias_name.to_string(),
            mount_accessor: mount.accessor.to_string(),
            mount_path: mount.path.to_string(),
            mount_type: mount.kind.to_string(),
            creation_time: t.clone(),
            last_update_time: t.clone(),
        };
        let entity = Entity {
            id: id.clone(),
            name: format!("entity_{suffix}.root"),
            creation_time: t.clone(),
            last_update_time: t,
            aliases: vec![alias.id.clone()],
            ..Default::default()
        };
        let mut ops = vec![];
        self.save_entity(&entity, &mut ops);
        self.save_alias(&alias, &mut ops);
        self.view.commit(ops)?;
        Ok(id)
    }

    fn alias_json(a: &Alias) -> Value {
        json!({
            "canonical_id": a.canonical_id,
            "creation_time": a.creation_time,
            "custom_metadata": null,
            "id": a.id,
            "last_update_time": a.last_update_time,
            "local": false,
            "merged_from_canonical_ids": null,
            "metadata": null,
            "mount_accessor": a.mount_accessor,
            "mount_path": a.mount_path,
            "mount_type": a.mount_type,
            "name": a.name,
            "namespace_id": "root",
        })
    }

    fn entity_json(&self, e: &Entity) -> Result<Value, ApiError> {
        let mut aliases = vec![];
        for id in &e.aliases {
            if let Some(a) = self.alias(id)? {
                let mut v = Self::alias_json(&a);
                v.as_object_mut().map(|o| o.remove("namespace_id"));
                aliases.push(v);
            }
        }
        Ok(json!({
            "aliases": aliases,
            "creation_time": e.creation_time,
            "direct_group_ids": [],
            "disabled": e.disabled,
            "group_ids": [],
            "id": e.id,
            "inherited_group_ids": [],
            "last_update_time": e.last_update_time,
            "merged_entity_ids": null,
            "metadata": e.metadata,
            "name": e.name,
            "namespace_id": "root",
            "policies": e.policies,
        }))
    }

    fn found(&self, e: Option<Entity>) -> Result<Response, ApiError> {
        let e = e.ok_or_else(ApiError::not_found)?;
        Ok(Response::data(self.entity_json(&e)?))
    }

    /// `entity` (by name or id in the body), `entity/id/<id>`, `entity/name/<name>` writes.
    fn write_entity(
        &self,
        req: &Request,
        existing: Option<Entity>,
        name: Option<String>,
    ) -> Result<Response, ApiError> {
        let _serial = self.writes.lock();
        let d = &req.data;
        let t = now();
        let created = existing.is_none();
        let mut e = existing.unwrap_or_else(|| Entity {
            id: new_id(),
            creation_time: t.clone(),
            ..Default::default()
        });
        let mut ops = vec![];
        if let Some(n) = name
            .or(fields::opt_str(d, "name")?)
            .filter(|n| !n.is_empty())
        {
            if !valid_name(&n) {
                return Err(ApiError::bad_request("invalid entity name"));
            }
            if n != e.name && self.entity_by_name(&n)?.is_some() {
                return Err(ApiError::bad_request(format!(
                    "entity name \"{n}\" is already in use"
                )));
            }
            if !e.name.is_empty() && e.name != n {
                ops.push(BarrierOp::Delete(format!("name/{}", e.name)));
            }
            e.name = n;
        }
        if e.name.is_empty() {
            e.name = format!("entity_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        }
        if let Some(p) = fields::opt_str_list(d, "policies")? {
            e.policies = crate::token::sanitize_policies(p);
        }
        if let Some(m) = fields::opt_str_map(d, "metadata")? {
            e.metadata = Some(m);
        }
        e.disabled = fields::bool_or(d, "disabled", e.disabled)?;
        e.last_update_time = t;
        self.save_entity(&e, &mut ops);
        self.view.commit(ops)?;
        if created {
            Ok(Response::data(
                json!({"aliases": null, "id": e.id, "name": e.name}),
            ))
        } else {
            Ok(Response::no_content())
        }
    }

    fn delete_entity(&self, e: Option<Entity>) -> Result<Response, ApiError> {
        let _serial = self.writes.lock();
        let Some(e) = e else {
            return Ok(Response::no_content());
        };
        let mut ops = vec![
            BarrierOp::Delete(format!("entity/{}", e.id)),
            BarrierOp::Delete(format!("name/{}", e.name)),
        ];
        for id in &e.aliases {
            if let Some(a) = self.alias(id)? {
                ops.push(BarrierOp::Delete(format!("alias/{}", a.id)));
                ops.push(BarrierOp::Delete(format!(
                    "by-alias/{}/{}",
                    a.mount_accessor, a.name
                )));
            }
        }
        self.view.commit(ops)?;
        Ok(Response::no_content())
    }

    fn list_entities(&self, by_name: bool) -> Result<Response, ApiError> {
        let ids = self.view.list("entity/")?;
        if ids.is_empty() {
            return Err(ApiError::not_found());
        }
        let mut keys = vec![];
        let mut info = Map::new();
        for id in ids {
            let Some(e) = self.entity(&id)? else { continue };
            let mut aliases = vec![];
            for aid in &e.aliases {
                if let Some(a) = self.alias(aid)? {
                    aliases.push(json!({"id": a.id, "mount_accessor": a.mount_accessor, "mount_path": a.mount_path, "mount_type": a.mount_type, "name": a.name}));
                }
            }
            keys.push(if by_name {
                e.name.clone()
            } else {
                e.id.clone()
            });
            info.insert(e.id.clone(), json!({"aliases": aliases, "name": e.name}));
        }
        if by_name {
            return Ok(Response::data(json!({ "keys": keys })));
        }
        Ok(Response::data(json!({"key_info": info, "keys": keys})))
    }

    fn create_alias(&self, req: &Request) -> Result<Response, ApiError> {
        let _serial = self.writes.lock();
        let d = &req.data;
        let name = fields::opt_str(d, "name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request("missing alias name"))?;
        let accessor = fields::opt_str(d, "mount_accessor")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request("missing mount_accessor"))?;
        let canonical = fields::opt_str(d, "canonical_id")?.unwrap_or_default();
        let mut e = self
            .entity(&canonical)?
            .ok_or_else(|| ApiError::bad_request("invalid canonical ID"))?;
        if self.alias_by_name(&accessor, &name)?.is_some() {
            return Err(ApiError::bad_request(
                "alias already exists for requested canonical ID, mount accessor, and name",
            ));
        }
        let t = now();
        let a = Alias {
            id: new_id(),
            canonical_id: e.id.clone(),
            name,
            mount_accessor: accessor,
            creation_time: t.clone(),
            last_update_time: t,
            ..Default::default()
        };
        e.aliases.push(a.id.clone());
        let mut ops = vec![];
        self.save_alias(&a, &mut ops);
        self.save_entity(&e, &mut ops);
        self.view.commit(ops)?;
        Ok(Response::data(
            json!({"canonical_id": a.canonical_id, "id": a.id}),
        ))
    }

    fn lookup(&self, req: &Request) -> Result<Response, ApiError> {
        let d = &req.data;
        let e = if let Some(id) = fields::opt_str(d, "id")? {
            self.entity(&id)?
        } else if let Some(n) = fields::opt_str(d, "name")? {
            self.entity_by_name(&n)?
        } else if let Some(aid) = fields::opt_str(d, "alias_id")? {
            self.alias(&aid)?
                .map(|a| a.canonical_id)
                .map(|id| self.entity(&id))
                .transpose()?
                .flatten()
        } else if let (Some(n), Some(acc)) = (
            fields::opt_str(d, "alias_name")?,
            fields::opt_str(d, "alias_mount_accessor")?,
        ) {
            self.alias_by_name(&acc, &n)?
                .map(|a| self.entity(&a.canonical_id))
                .transpose()?
                .flatten()
        } else {
            return Err(ApiError::bad_request("missing criteria"));
        };
        match e {
            Some(e) => Ok(Response::data(self.entity_json(&e)?)),
            None => Ok(Response::no_content()),
        }
    }
}

impl Backend for Identity {
    fn handle(&self, req: &Request) -> Result<Response, ApiError> {
        table::dispatch(self, ROUTES, req)
    }
}

const W: Ops = Ops::WRITE;
const RWD: Ops = Ops::READ.or(Ops::WRITE).or(Ops::DELETE);

/// Every path of the identity store.
static ROUTES: &[Route<Identity>] = &[
    rt("entity", W, |i, r, _| i.write_entity(r, None, None)),
    rt("entity/id", Ops::LIST, |i, _, _| i.list_entities(false)),
    rt("entity/id/:id", RWD, |i, r, c| i.by_id(r, c.get("id"))),
    rt("entity/name", Ops::LIST, |i, _, _| i.list_entities(true)),
    rt("entity/name/:name", RWD, |i, r, c| {
        i.by_name(r, c.get("name"))
    }),
    rt("entity-alias", W, |i, r, _| i.create_alias(r)),
    rt("entity-alias/id", Ops::LIST, |i, _, _| i.list_aliases()),
    rt("entity-alias/id/:id", Ops::READ, |i, _, c| {
        let a = i.alias(c.get("id"))?.ok_or_else(ApiError::not_found)?;
        Ok(Response::data(Identity::alias_json(&a)))
    }),
    rt("lookup/entity", W, |i, r, _| i.lookup(r)),
];

const fn rt(pattern: &'static str, ops: Ops, handler: table::Handler<Identity>) -> Route<Identity> {
    Route::new(pattern, ops, None, &[], handler)
}

impl Identity {
    fn list_aliases(&self) -> Result<Response, ApiError> {
        let keys = self.view.list("alias/")?;
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({ "keys": keys })))
    }

    fn by_id(&self, req: &Request, id: &str) -> Result<Response, ApiError> {
        let e = self.entity(id)?;
        match req.op {
            Operation::Read => self.found(e),
            Operation::Delete => self.delete_entity(e),
            _ => match e {
                Some(e) => self.write_entity(req, Some(e), None),
                None => Err(ApiError::bad_request("entity not found")),
            },
        }
    }

    fn by_name(&self, req: &Request, name: &str) -> Result<Response, ApiError> {
        let e = self.entity_by_name(name)?;
        match req.op {
            Operation::Read => self.found(e),
            Operation::Delete => self.delete_entity(e),
            _ => self.write_entity(req, e, Some(name.to_string())),
        }
    }
}
