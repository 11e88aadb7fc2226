//! The canonical form of a request path, decided once, before routing and the ACL, so the
//! path the ACL checks is exactly the path the handler acts on.
//!
//! 1. The HTTP layer redirects a path with `//`, `.` or `..` segments to its cleaned form
//!    (307, as OpenBao's Go mux does); the core refuses such a path if one reaches it.
//! 2. A write to a path ending in `/` is refused (OpenBao's wording); a list is always of a
//!    directory (trailing `/` added); a read or delete names its target without one.
//! 3. Names a backend compares case-insensitively (policy names, userpass users) are
//!    lower-cased by the backend's [`fold_names`] declaration before the ACL sees them.

use crate::request::{ApiError, Operation};

/// Whether the segments of `rel` (a path after a `/`) are clean: none empty (a trailing `/`
/// aside), none `.` or `..`. `/` followed by such a path is its own `path.Clean`.
pub fn clean_rel(rel: &str) -> bool {
    if rel.is_empty() {
        return true;
    }
    let body = rel.strip_suffix('/').unwrap_or(rel);
    body.as_bytes()
        .split(|&b| b == b'/')
        .all(|s| !matches!(s, b"" | b"." | b".."))
}

/// Go's `path.Clean` of a URL path as OpenBao's mux applies it: `None` when `path` is clean,
/// else the path to redirect to (a trailing `/` is kept, as the mux keeps it).
pub fn redirect_target(path: &str) -> Option<String> {
    if path.strip_prefix('/').is_some_and(clean_rel) {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut clean = format!("/{}", out.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    (clean != path).then_some(clean)
}

/// The canonical logical path (no `/v1/` prefix) for an operation, or the error OpenBao
/// gives for it.
pub fn canonical(path: &str, op: Operation) -> Result<String, ApiError> {
    if path.is_empty() {
        return Ok(String::new());
    }
    if !clean_rel(path) {
        return Err(ApiError::bad_request("invalid request path"));
    }
    let dir = path.ends_with('/');
    match op {
        Operation::Create | Operation::Update | Operation::Patch if dir => Err(
            ApiError::bad_request("cannot write to a path ending in '/'"),
        ),
        Operation::List if !dir => Ok(format!("{path}/")),
        Operation::Read | Operation::Delete => Ok(path.trim_end_matches('/').to_string()),
        _ => Ok(path.to_string()),
    }
}

/// How a backend compares a name segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameFold {
    /// Case-insensitive (userpass usernames).
    Lower,
    /// Case-insensitive and blind to surrounding whitespace (policy names).
    TrimLower,
}

/// Folds the name segment that follows the first of `prefixes` that `rel` starts with.
/// `None` when nothing changes.
pub fn fold_names(rel: &str, prefixes: &[&str], fold: NameFold) -> Option<String> {
    let p = prefixes.iter().find(|p| rel.starts_with(**p))?;
    let rest = &rel[p.len()..];
    let (name, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let folded = match fold {
        NameFold::Lower => name.to_lowercase(),
        NameFold::TrimLower => name.trim().to_lowercase(),
    };
    (folded != name).then(|| format!("{p}{folded}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_match_go_path_clean() {
        assert_eq!(redirect_target("/v1/sys/mounts"), None);
        assert_eq!(redirect_target("/v1/sys/mounts/"), None);
        assert_eq!(
            redirect_target("/v1//sys/mounts").as_deref(),
            Some("/v1/sys/mounts")
        );
        assert_eq!(
            redirect_target("/v1/sys/policies//acl/x").as_deref(),
            Some("/v1/sys/policies/acl/x")
        );
        assert_eq!(
            redirect_target("/v1/sys/policies/acl/./x/").as_deref(),
            Some("/v1/sys/policies/acl/x/")
        );
        assert_eq!(
            redirect_target("/v1/sys/mounts/a/../secret").as_deref(),
            Some("/v1/sys/mounts/secret")
        );
        assert_eq!(redirect_target("/v1/../..").as_deref(), Some("/"));
    }

    /// The full `path.Clean` computation, without the clean-path shortcut.
    fn cleaned(path: &str) -> String {
        let mut out: Vec<&str> = Vec::new();
        for seg in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
            if seg == ".." {
                out.pop();
            } else {
                out.push(seg);
            }
        }
        let mut clean = format!("/{}", out.join("/"));
        if path.ends_with('/') && clean != "/" {
            clean.push('/');
        }
        clean
    }

    #[test]
    fn the_clean_shortcut_agrees_with_path_clean_on_every_short_path() {
        // every path of up to 7 characters over the characters that matter
        let alphabet = ['/', '.', 'a'];
        let mut paths = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..7 {
            let next: Vec<String> = frontier
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(next.iter().cloned());
            frontier = next;
        }
        for p in &paths {
            let full = cleaned(p);
            let expect = (full != *p).then_some(full);
            assert_eq!(redirect_target(p), expect, "{p:?}");
            let rel_clean = cleaned(&format!("/{p}")) == format!("/{p}");
            assert_eq!(clean_rel(p), rel_clean, "{p:?}");
            let api = redirect_target(&format!("/v1/{p}"));
            assert_eq!(clean_rel(p), api.is_none(), "{p:?}");
        }
    }

    #[test]
    fn canonical_forms_per_operation() {
        let bad = |p, op| canonical(p, op).unwrap_err().errors[0].clone();
        assert_eq!(
            bad("sys/policies/acl/x/", Operation::Update),
            "cannot write to a path ending in '/'"
        );
        assert_eq!(bad("a//b", Operation::Read), "invalid request path");
        assert_eq!(canonical("a/b/", Operation::Read).unwrap(), "a/b");
        assert_eq!(
            canonical("a/b//", Operation::Delete).unwrap_err().status,
            400
        );
        assert_eq!(canonical("a/b", Operation::List).unwrap(), "a/b/");
        assert_eq!(canonical("a/b", Operation::Update).unwrap(), "a/b");
    }

    #[test]
    fn names_fold_with_unicode_case() {
        let p = &["users/", "login/"];
        let l = NameFold::Lower;
        assert_eq!(fold_names("users/BOB", p, l).as_deref(), Some("users/bob"));
        assert_eq!(
            fold_names("users/Bob/password", p, l).as_deref(),
            Some("users/bob/password")
        );
        // the Kelvin sign folds to an ASCII k
        assert_eq!(
            fold_names("login/\u{212A}im", p, l).as_deref(),
            Some("login/kim")
        );
        assert_eq!(fold_names("users/bob", p, l), None);
        assert_eq!(fold_names("other/BOB", p, l), None);
        let t = NameFold::TrimLower;
        assert_eq!(
            fold_names("users/ Bob\t", p, t).as_deref(),
            Some("users/bob")
        );
    }
}
