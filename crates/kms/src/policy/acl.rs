//! Evaluation of a token's policies. Rules with the same pattern across policies are merged
//! (capabilities unioned, `deny` wins); for a request path the single most specific
//! matching pattern decides, using Vault's precedence:
//!   a pattern ranks lower if its first `+`/`*` comes earlier, if it ends in `*` and the
//!   other does not, if it has more `+` segments, if it is shorter, or, last, if it sorts
//!   lower.

use super::{Caps, Policy};
use std::cmp::Ordering;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Compiled {
    pattern: String,
    caps: Caps,
}

#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    exact: BTreeMap<String, Caps>,
    wild: Vec<Compiled>,
}

fn matches(pattern: &str, path: &str) -> bool {
    let (pat, glob) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    if !pat.contains('+') {
        return if glob {
            path.starts_with(pat)
        } else {
            path == pat
        };
    }
    let psegs: Vec<&str> = pat.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    if (!glob && psegs.len() != segs.len()) || segs.len() < psegs.len() {
        return false;
    }
    let last = psegs.len() - 1;
    for (i, ps) in psegs.iter().enumerate() {
        if *ps == "+" {
            if segs[i].is_empty() && !(glob && i == last) {
                return false;
            }
            continue;
        }
        let ok = if glob && i == last {
            segs[i].starts_with(ps)
        } else {
            *ps == segs[i]
        };
        if !ok {
            return false;
        }
    }
    true
}

fn first_wild(p: &str) -> usize {
    p.find(['+', '*']).unwrap_or(p.len())
}

/// `Greater` means `a` has higher priority than `b`.
fn priority(a: &str, b: &str) -> Ordering {
    first_wild(a)
        .cmp(&first_wild(b))
        .then_with(|| b.ends_with('*').cmp(&a.ends_with('*')))
        .then_with(|| {
            let pa = a.split('/').filter(|s| *s == "+").count();
            let pb = b.split('/').filter(|s| *s == "+").count();
            pb.cmp(&pa)
        })
        .then_with(|| a.len().cmp(&b.len()))
        .then_with(|| a.cmp(b))
}

fn merge(into: &mut Caps, c: Caps) {
    *into = if into.contains(Caps::DENY) || c.contains(Caps::DENY) {
        Caps::DENY
    } else {
        into.union(c)
    };
}

impl Acl {
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>, root: bool) -> Self {
        let mut acl = Acl {
            root,
            ..Default::default()
        };
        let mut wild: BTreeMap<String, Caps> = BTreeMap::new();
        for p in policies {
            for r in &p.rules {
                let target = if r.pattern.ends_with('*') || r.pattern.contains('+') {
                    wild.entry(r.pattern.clone()).or_default()
                } else {
                    acl.exact.entry(r.pattern.clone()).or_default()
                };
                merge(target, r.caps);
            }
        }
        acl.wild = wild
            .into_iter()
            .map(|(pattern, caps)| Compiled { pattern, caps })
            .collect();
        acl
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The capabilities granted on `path` (deny = none).
    pub fn capabilities(&self, path: &str) -> Caps {
        if self.root {
            return Caps(0x1ff & !Caps::DENY.0);
        }
        let caps = if let Some(c) = self.exact.get(path) {
            *c
        } else {
            self.wild
                .iter()
                .filter(|r| matches(&r.pattern, path))
                .max_by(|a, b| priority(&a.pattern, &b.pattern))
                .map(|r| r.caps)
                .unwrap_or_default()
        };
        if caps.contains(Caps::DENY) {
            Caps::default()
        } else {
            caps
        }
    }

    /// The merged rules with exact patterns (as the UI's `sys/internal/ui/resultant-acl`
    /// shows them).
    pub fn exact_rules(&self) -> impl Iterator<Item = (&str, Caps)> {
        self.exact.iter().map(|(p, c)| (p.as_str(), *c))
    }

    /// The merged rules with `*` or `+` patterns (`*` kept, `+` segments as written).
    pub fn glob_rules(&self) -> impl Iterator<Item = (&str, Caps)> {
        self.wild.iter().map(|r| (r.pattern.as_str(), r.caps))
    }

    /// Whether any rule could grant something at or below `prefix` (for the UI mounts
    /// preflight: "some capability under the mount").
    pub fn any_under(&self, prefix: &str) -> bool {
        if self.root {
            return true;
        }
        let granted = |c: &Caps| !c.contains(Caps::DENY) && !c.is_empty();
        self.exact
            .iter()
            .any(|(p, c)| p.starts_with(prefix) && granted(c))
            || self.wild.iter().any(|r| {
                granted(&r.caps)
                    && (r.pattern.starts_with(prefix)
                        || matches(&r.pattern, prefix)
                        || prefix.starts_with(r.pattern.trim_end_matches('*')))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn acl(texts: &[&str]) -> Acl {
        let ps: Vec<Policy> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse(&format!("p{i}"), t).unwrap())
            .collect();
        Acl::new(ps.iter(), false)
    }

    #[test]
    fn glob_does_not_cover_its_own_prefix() {
        let a = acl(&[r#"path "ocs/*" { capabilities = ["read"] }"#]);
        assert_eq!(a.capabilities("ocs/x"), Caps::READ);
        assert_eq!(a.capabilities("ocs/x/y"), Caps::READ);
        assert!(a.capabilities("ocs").is_empty());
        assert!(a.capabilities("ocsx").is_empty());
        assert!(a.capabilities("other/x").is_empty());
    }

    #[test]
    fn exact_beats_glob_and_deny_wins_on_merge() {
        let a = acl(&[
            r#"path "s/*" { capabilities = ["read", "list"] }
               path "s/admin" { capabilities = ["deny"] }"#,
            r#"path "s/*" { capabilities = ["update"] }
               path "s/x" { capabilities = ["create"] }"#,
        ]);
        assert_eq!(
            a.capabilities("s/y"),
            Caps::READ.union(Caps::LIST).union(Caps::UPDATE)
        );
        assert!(a.capabilities("s/admin").is_empty());
        assert_eq!(a.capabilities("s/x"), Caps::CREATE);
        let b = acl(&[
            r#"path "s/*" { capabilities = ["read"] }"#,
            r#"path "s/*" { capabilities = ["deny"] }"#,
        ]);
        assert!(b.capabilities("s/y").is_empty());
    }

    #[test]
    fn plus_matches_one_segment_with_precedence() {
        let a = acl(&[r#"
            path "secret/+/teamb" { capabilities = ["read"] }
            path "secret/*" { capabilities = ["list"] }
            path "secret/+/teamb/*" { capabilities = ["update"] }
            path "secret/data/*" { capabilities = ["create"] }
        "#]);
        // "secret/data/*" has its first wildcard later than "secret/+/teamb": it wins
        assert_eq!(a.capabilities("secret/data/teamb"), Caps::CREATE);
        assert_eq!(a.capabilities("secret/meta/teamb"), Caps::READ);
        // equal first wildcard, both globs: fewer `+` segments wins
        assert_eq!(a.capabilities("secret/meta/teamb/k"), Caps::LIST);
        assert_eq!(a.capabilities("secret/meta/other"), Caps::LIST);
        assert_eq!(a.capabilities("secret/a/b/teamb"), Caps::LIST);
    }

    #[test]
    fn longer_glob_wins() {
        let a = acl(&[r#"
            path "a/*" { capabilities = ["read"] }
            path "a/b/*" { capabilities = ["update"] }
        "#]);
        assert_eq!(a.capabilities("a/b/c"), Caps::UPDATE);
        assert_eq!(a.capabilities("a/c"), Caps::READ);
        assert!(a.any_under("a/"));
        assert!(!a.any_under("z/"));
    }

    #[test]
    fn root_gets_everything() {
        let a = Acl::new([], true);
        assert!(a.capabilities("anything").contains(Caps::SUDO));
        assert!(!a.capabilities("anything").contains(Caps::DENY));
    }
}
