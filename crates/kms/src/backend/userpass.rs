//! `userpass` auth: users with passwords (stored as Argon2id PHC strings) and token
//! settings; `login/<user>` answers without a token and asks the core for one.

use super::table::{self, Captures, Ops, Route};
use super::Backend;
use crate::barrier::View;
use crate::fields;
use crate::request::{ApiError, AuthSpec, Operation, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct User {
    password_hash: String,
    token_policies: Vec<String>,
    token_ttl: u64,
    token_max_ttl: u64,
    token_period: u64,
    token_num_uses: i64,
    token_no_default_policy: bool,
    token_bound_cidrs: Vec<String>,
    /// `None`: the mount's default (service).
    #[serde(default)]
    token_type: Option<crate::token::TokenKind>,
}

pub struct Userpass {
    view: View,
    /// Verified against when the user does not exist, so timing does not reveal usernames.
    dummy_hash: String,
    lockout: super::lockout::Lockout,
}

fn hash_password(pw: &str) -> Result<String, ApiError> {
    super::password::hash(pw)
}

impl Userpass {
    pub fn new(view: View) -> Self {
        let dummy_hash = hash_password("strongroom-dummy-password").unwrap_or_default();
        Self {
            view,
            dummy_hash,
            lockout: Default::default(),
        }
    }

    fn key(name: &str) -> String {
        format!("user/{}", name.to_lowercase())
    }

    fn apply_token_fields(u: &mut User, d: &Map<String, Value>) -> Result<(), ApiError> {
        if let Some(p) =
            fields::opt_str_list(d, "token_policies")?.or(fields::opt_str_list(d, "policies")?)
        {
            u.token_policies = p;
        }
        if let Some(t) = fields::opt_duration(d, "token_ttl")?.or(fields::opt_duration(d, "ttl")?) {
            u.token_ttl = t;
        }
        if let Some(t) =
            fields::opt_duration(d, "token_max_ttl")?.or(fields::opt_duration(d, "max_ttl")?)
        {
            u.token_max_ttl = t;
        }
        if let Some(t) =
            fields::opt_duration(d, "token_period")?.or(fields::opt_duration(d, "period")?)
        {
            u.token_period = t;
        }
        if let Some(n) = fields::opt_i64(d, "token_num_uses")? {
            u.token_num_uses = n;
        }
        if let Some(t) = fields::opt_str(d, "token_type")? {
            u.token_type = match t.as_str() {
                "" | "default" => None,
                other => Some(
                    crate::token::TokenKind::parse(other)
                        .ok_or_else(|| ApiError::bad_request("invalid 'token_type' value"))?,
                ),
            };
        }
        if let Some(b) = fields::opt_bool(d, "token_no_default_policy")? {
            u.token_no_default_policy = b;
        }
        if let Some(c) = fields::opt_str_list(d, "token_bound_cidrs")?
            .or(fields::opt_str_list(d, "bound_cidrs")?)
        {
            crate::cidr::parse_list(&c).map_err(|e| ApiError::bad_request(e.to_string()))?;
            u.token_bound_cidrs = c;
        }
        Ok(())
    }

    fn user_json(u: &User) -> Value {
        json!({
            "policies": u.token_policies,
            "token_policies": u.token_policies,
            "ttl": u.token_ttl,
            "token_ttl": u.token_ttl,
            "max_ttl": u.token_max_ttl,
            "token_max_ttl": u.token_max_ttl,
            "period": u.token_period,
            "token_period": u.token_period,
            "num_uses": u.token_num_uses,
            "token_num_uses": u.token_num_uses,
            "bound_cidrs": u.token_bound_cidrs,
            "token_bound_cidrs": u.token_bound_cidrs,
            "token_explicit_max_ttl": 0,
            "token_no_default_policy": u.token_no_default_policy,
            "token_type": u.token_type.map(|k| k.as_str()).unwrap_or("default"),
        })
    }

    fn login(&self, name: &str, req: &Request) -> Result<Response, ApiError> {
        let pw = Zeroizing::new(fields::opt_str(&req.data, "password")?.unwrap_or_default());
        if pw.is_empty() {
            return Err(ApiError::bad_request("missing password"));
        }
        if self.lockout.is_locked(name) {
            return Err(ApiError::permission_denied());
        }
        let user: Option<User> = self.view.get_json(&Self::key(name))?;
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.as_str())
            .unwrap_or(&self.dummy_hash);
        let ok = super::password::verify(&req.path, hash, pw.as_bytes())?;
        let (true, Some(u)) = (ok, user.as_ref()) else {
            if user.is_some() {
                self.lockout.failed(name);
            }
            return Err(ApiError::bad_request("invalid username or password"));
        };
        self.lockout.clear(name);
        let bound_cidrs = crate::cidr::parse_list(&u.token_bound_cidrs)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if !crate::cidr::allows(&bound_cidrs, req.remote_addr) {
            return Err(ApiError::permission_denied());
        }
        let mut metadata = Map::new();
        metadata.insert("username".into(), json!(name));
        Ok(Response::login(AuthSpec {
            policies: u.token_policies.clone(),
            metadata,
            display_name: format!("userpass-{name}"),
            ttl: u.token_ttl,
            max_ttl: u.token_max_ttl,
            period: u.token_period,
            num_uses: u.token_num_uses,
            renewable: true,
            no_default_policy: u.token_no_default_policy,
            bound_cidrs,
            kind: u.token_type.unwrap_or_default(),
            alias_name: name.to_string(),
        }))
    }
}

impl Backend for Userpass {
    fn locked_users(&self) -> Vec<String> {
        self.lockout.locked()
    }

    fn unlock_user(&self, name: &str) {
        self.lockout.clear(&name.to_lowercase())
    }

    fn unauthenticated(&self, rel: &str) -> bool {
        table::unauthenticated(ROUTES, rel)
    }

    /// Usernames are case-insensitive: `users/BOB` and `login/Bob` are `bob`.
    fn canonical_rel(&self, rel: &str) -> Option<String> {
        crate::paths::fold_names(rel, &["users/", "login/"], crate::paths::NameFold::Lower)
    }

    fn exists(&self, req: &Request) -> Result<Option<bool>, ApiError> {
        match req.rel.strip_prefix("users/") {
            Some(n) if !n.contains('/') => Ok(Some(self.view.get(&Self::key(n))?.is_some())),
            _ => Ok(None),
        }
    }

    fn handle(&self, req: &Request) -> Result<Response, ApiError> {
        table::dispatch(self, ROUTES, req)
    }
}

const W: Ops = Ops::WRITE;

/// Every path of the method; usernames are OpenBao's generic names.
static ROUTES: &[Route<Userpass>] = &[
    Route::new("login/:name", W, None, &[], login).unauthenticated(),
    Route::new("users", Ops::LIST.or(Ops::READ), None, &[], |b, _, _| {
        b.list_users()
    }),
    Route::new(
        "users/:name",
        Ops::READ.or(W).or(Ops::DELETE),
        None,
        &[],
        user,
    ),
    Route::new("users/:name/password", W, None, &[], |b, r, c| {
        b.set_password(c.get("name"), r)
    }),
    Route::new("users/:name/policies", W, None, &[], |b, r, c| {
        b.set_policies(c.get("name"), r)
    }),
];

fn login(b: &Userpass, r: &Request, c: &Captures) -> Result<Response, ApiError> {
    b.login(c.get("name"), r)
}

fn user(b: &Userpass, r: &Request, c: &Captures) -> Result<Response, ApiError> {
    let name = c.get("name");
    match r.op {
        Operation::Read => {
            let u: User = b
                .view
                .get_json(&Userpass::key(name))?
                .ok_or_else(ApiError::not_found)?;
            Ok(Response::data(Userpass::user_json(&u)))
        }
        Operation::Delete => {
            b.view.delete(&Userpass::key(name))?;
            b.lockout.forget(name);
            Ok(Response::no_content())
        }
        _ => b.write_user(name, r),
    }
}

impl Userpass {
    fn list_users(&self) -> Result<Response, ApiError> {
        let keys = self.view.list("user/")?;
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({ "keys": keys })))
    }

    fn write_user(&self, name: &str, req: &Request) -> Result<Response, ApiError> {
        let key = Self::key(name);
        let existing: Option<User> = self.view.get_json(&key)?;
        let mut u = existing.clone().unwrap_or_default();
        let pw = fields::opt_str(&req.data, "password")?.map(Zeroizing::new);
        match (&pw, &existing) {
            (Some(p), _) if !p.is_empty() => u.password_hash = hash_password(p)?,
            (_, None) => return Err(ApiError::bad_request("missing password")),
            _ => {}
        }
        Self::apply_token_fields(&mut u, &req.data)?;
        self.view.put_json(&key, &u)?;
        Ok(Response::no_content())
    }

    fn existing(&self, name: &str) -> Result<User, ApiError> {
        self.view
            .get_json(&Self::key(name))?
            .ok_or_else(|| ApiError::bad_request("username does not exist"))
    }

    fn set_password(&self, name: &str, req: &Request) -> Result<Response, ApiError> {
        let mut u = self.existing(name)?;
        let pw = Zeroizing::new(fields::opt_str(&req.data, "password")?.unwrap_or_default());
        if pw.is_empty() {
            return Err(ApiError::bad_request("missing password"));
        }
        u.password_hash = hash_password(&pw)?;
        self.view.put_json(&Self::key(name), &u)?;
        Ok(Response::no_content())
    }

    fn set_policies(&self, name: &str, req: &Request) -> Result<Response, ApiError> {
        let mut u = self.existing(name)?;
        Self::apply_token_fields(&mut u, &req.data)?;
        self.view.put_json(&Self::key(name), &u)?;
        Ok(Response::no_content())
    }
}
