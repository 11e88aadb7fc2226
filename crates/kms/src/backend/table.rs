//! Path tables: a backend declares each path it serves (pattern, operations, body fields,
//! handler) in one table, and [`dispatch`] routes a request through it — OpenBao's
//! framework paths, in one routing style for every backend.
//!
//! Pattern segments: a literal, `:name` (one non-empty segment, a valid name), a final
//! `*name` (the optional rest: `hash/*alg` matches `hash` and `hash/sha2-256`, not `hash/`),
//! or a final `**name` (everything after the `/`, possibly empty: `data/**path` matches
//! `data/`, `data/a/b` and `data/a/`, not `data` — OpenBao's `data/(?P<path>.*)`).

use crate::fields::Data;
use crate::request::{ApiError, Operation, Request, Response};

/// The operations a path answers. A write (`Create`/`Update`) is one entry: the router
/// decides which of the two a request is for the ACL, the handler serves both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ops(u8);

impl Ops {
    pub const READ: Ops = Ops(1);
    pub const WRITE: Ops = Ops(2);
    pub const DELETE: Ops = Ops(4);
    pub const LIST: Ops = Ops(8);
    pub const PATCH: Ops = Ops(16);

    pub const fn or(self, o: Ops) -> Ops {
        Ops(self.0 | o.0)
    }

    fn allows(self, op: Operation) -> bool {
        let bit = match op {
            Operation::Read => Self::READ,
            Operation::Create | Operation::Update => Self::WRITE,
            Operation::Delete => Self::DELETE,
            Operation::List => Self::LIST,
            Operation::Patch => Self::PATCH,
        };
        self.0 & bit.0 != 0
    }
}

/// Values a pattern captured from the path.
#[derive(Default, Debug)]
pub struct Captures<'a> {
    pairs: Vec<(&'static str, &'a str)>,
}

impl<'a> Captures<'a> {
    /// The captured value (`""` for an optional rest that was absent).
    pub fn get(&self, name: &str) -> &'a str {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or("")
    }

    /// The optional rest, `None` when absent.
    pub fn opt(&self, name: &str) -> Option<&'a str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }
}

pub type Handler<B> = fn(&B, &Request, &Captures) -> Result<Response, ApiError>;

/// One path of a backend.
pub struct Route<B: 'static> {
    pub pattern: &'static str,
    pub ops: Ops,
    /// Body fields the path declares: others earn OpenBao's "ignored" warning. `None`: no
    /// declaration (no warnings).
    pub fields: Option<&'static [&'static str]>,
    /// Names captured from the path that override body values of the same name (OpenBao
    /// warns when a body value is replaced).
    pub captures: &'static [&'static str],
    pub handler: Handler<B>,
    /// Needs `sudo` besides the operation's capability (OpenBao's root paths).
    pub sudo: bool,
    /// Needs no token (OpenBao's unauthenticated paths).
    pub unauthenticated: bool,
}

impl<B> Route<B> {
    /// A path with no special needs.
    pub const fn new(
        pattern: &'static str,
        ops: Ops,
        fields: Option<&'static [&'static str]>,
        captures: &'static [&'static str],
        handler: Handler<B>,
    ) -> Self {
        Route {
            pattern,
            ops,
            fields,
            captures,
            handler,
            sudo: false,
            unauthenticated: false,
        }
    }

    /// The same path, needing `sudo`.
    pub const fn sudo(self) -> Self {
        Route { sudo: true, ..self }
    }

    /// The same path, needing no token.
    pub const fn unauthenticated(self) -> Self {
        Route {
            unauthenticated: true,
            ..self
        }
    }
}

/// Whether the path `rel` names needs `sudo`.
pub fn needs_sudo<B>(table: &'static [Route<B>], rel: &str) -> bool {
    find(table, rel).is_some_and(|(r, _)| r.sudo)
}

/// Whether the path `rel` names needs no token.
pub fn unauthenticated<B>(table: &'static [Route<B>], rel: &str) -> bool {
    find(table, rel).is_some_and(|(r, _)| r.unauthenticated)
}

/// Names a `:name` segment accepts: OpenBao's `GenericNameRegex`, `\w(([\w-.]+)?\w)?`
/// (ASCII).
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            word(f) && word(l) && b.iter().all(|&c| word(c) || c == b'-' || c == b'.')
        }
        _ => false,
    }
}

/// Match `rel` against one pattern.
fn matches<'a>(pattern: &'static str, rel: &'a str) -> Option<Captures<'a>> {
    let mut caps = Captures::default();
    let mut rest = rel;
    for (i, seg) in pattern.split('/').enumerate() {
        if let Some(name) = seg.strip_prefix("**") {
            // everything after the `/` (or the whole path for a pattern that is only this)
            let tail = if i == 0 {
                rest
            } else {
                rest.strip_prefix('/')?
            };
            caps.pairs.push((name, tail));
            return Some(caps);
        }
        if let Some(name) = seg.strip_prefix('*') {
            // optional rest: absent, or `/` + something non-empty
            if i == 0 {
                caps.pairs.push((name, rest));
                return Some(caps);
            }
            return match rest {
                "" => {
                    caps.pairs.push((name, ""));
                    Some(caps)
                }
                r => {
                    let tail = r.strip_prefix('/').filter(|t| !t.is_empty())?;
                    caps.pairs.push((name, tail));
                    Some(caps)
                }
            };
        }
        if i > 0 {
            rest = rest.strip_prefix('/')?;
        }
        let end = rest.find('/').unwrap_or(rest.len());
        let (head, tail) = rest.split_at(end);
        match seg.strip_prefix(':') {
            Some(name) if is_name(head) => caps.pairs.push((name, head)),
            Some(_) => return None,
            None if head == seg => {}
            None => return None,
        }
        rest = tail;
    }
    rest.is_empty().then_some(caps)
}

/// The route `rel` names, with its captures.
pub fn find<'a, B>(
    table: &'static [Route<B>],
    rel: &'a str,
) -> Option<(&'static Route<B>, Captures<'a>)> {
    // a trailing `/` is part of the path; a path that lists also matches without it
    // (OpenBao's `keys/?$`)
    let dir = rel.strip_suffix('/');
    table.iter().find_map(|r| {
        let lists = r.ops.0 & Ops::LIST.0 != 0;
        matches(r.pattern, rel)
            .or_else(|| dir.filter(|_| lists).and_then(|d| matches(r.pattern, d)))
            .map(|c| (r, c))
    })
}

/// Route a request: unknown path → 404 "unsupported path", known path with another
/// operation → 405, else the handler, with OpenBao's framework warnings appended.
pub fn dispatch<B>(b: &B, table: &'static [Route<B>], req: &Request) -> Result<Response, ApiError> {
    let (route, caps) = find(table, &req.rel).ok_or_else(ApiError::unsupported_path)?;
    if !route.ops.allows(req.op) {
        return Err(ApiError::unsupported_operation());
    }
    let resp = (route.handler)(b, req, &caps)?;
    Ok(match route.fields {
        Some(known) => framework_warnings(resp, &req.data, known, route.captures),
        None => resp,
    })
}

/// The framework's warnings, after the handler's own: body fields the path does not
/// declare, and body values replaced by a value captured from the path.
fn framework_warnings(mut resp: Response, d: &Data, known: &[&str], captures: &[&str]) -> Response {
    if let Some(w) = crate::backend::transit::params::ignored_warning(d, known) {
        resp = resp.with_warning(w);
    }
    let mut replaced: Vec<&str> = captures
        .iter()
        .copied()
        .filter(|k| d.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if !replaced.is_empty() {
        replaced.sort_unstable();
        resp = resp.with_warning(format!(
            "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [{}]",
            replaced.join(" ")
        ));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &'static str, rel: &str) -> Option<Vec<(&'static str, String)>> {
        matches(p, rel).map(|c| c.pairs.iter().map(|(n, v)| (*n, v.to_string())).collect())
    }

    #[test]
    fn patterns_match_segments_names_and_optional_rests() {
        assert_eq!(m("keys", "keys"), Some(vec![]));
        assert_eq!(
            m("keys/:name", "keys/k1"),
            Some(vec![("name", "k1".into())])
        );
        assert_eq!(m("keys/:name", "keys/"), None);
        assert_eq!(m("keys/:name", "keys/a/b"), None);
        assert_eq!(
            m("keys/:name/config", "keys/a/config"),
            Some(vec![("name", "a".into())])
        );
        assert_eq!(m("data/**p", "data/"), Some(vec![("p", "".into())]));
        assert_eq!(m("data/**p", "data/a/b/"), Some(vec![("p", "a/b/".into())]));
        assert_eq!(m("data/**p", "data"), None);
        assert_eq!(m("data/**p", "database"), None);
        assert_eq!(m("hash/*alg", "hash"), Some(vec![("alg", "".into())]));
        assert_eq!(
            m("hash/*alg", "hash/sha2-256"),
            Some(vec![("alg", "sha2-256".into())])
        );
        assert_eq!(m("hash/*alg", "hash/"), None);
        assert_eq!(m("hash/*alg", "hashx"), None);
        assert_eq!(
            m("random/*rest", "random/hex/32"),
            Some(vec![("rest", "hex/32".into())])
        );
        assert_eq!(
            m("hmac/:name/*alg", "hmac/k"),
            Some(vec![("name", "k".into()), ("alg", "".into())])
        );
        assert_eq!(
            m("datakey/:plaintext/:name", "datakey/wrapped/k"),
            Some(vec![("plaintext", "wrapped".into()), ("name", "k".into())])
        );
    }
}
