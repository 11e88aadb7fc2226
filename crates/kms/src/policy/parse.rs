//! Policy HCL → [`Policy`]. Accepts `path "<pattern>" { capabilities = [..] }` blocks and the
//! legacy `policy = "read|write|deny|sudo"` shorthand. Anything else is an error that names
//! the offending path or key, in Vault's wording.

use super::{Caps, Policy, Rule};
use hcl::{Body, Expression, Structure};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("failed to parse policy: {0}")]
pub struct PolicyError(pub String);

fn legacy_caps(s: &str) -> Option<Caps> {
    Some(match s {
        "deny" => Caps::DENY,
        "read" => Caps::READ.union(Caps::LIST),
        "write" => Caps::READ
            .union(Caps::LIST)
            .union(Caps::CREATE)
            .union(Caps::UPDATE)
            .union(Caps::DELETE),
        "sudo" => Caps::READ
            .union(Caps::LIST)
            .union(Caps::CREATE)
            .union(Caps::UPDATE)
            .union(Caps::DELETE)
            .union(Caps::SUDO),
        _ => return None,
    })
}

fn path_body(path: &str, body: &Body) -> Result<Caps, PolicyError> {
    let err = |m: String| PolicyError(format!("path {path:?}: path {path:?}: {m}"));
    let mut caps = Caps::default();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => match a.key.as_str() {
                "capabilities" => {
                    let Expression::Array(items) = &a.expr else {
                        return Err(err("capabilities must be a list of strings".into()));
                    };
                    for it in items {
                        let Expression::String(name) = it else {
                            return Err(err("capabilities must be a list of strings".into()));
                        };
                        let c = Caps::from_name(name)
                            .ok_or_else(|| err(format!("invalid capability {name:?}")))?;
                        caps = caps.union(c);
                    }
                }
                "policy" => {
                    let Expression::String(p) = &a.expr else {
                        return Err(err("policy must be a string".into()));
                    };
                    caps = caps
                        .union(legacy_caps(p).ok_or_else(|| err(format!("invalid policy {p:?}")))?);
                }
                "min_wrapping_ttl"
                | "max_wrapping_ttl"
                | "allowed_parameters"
                | "denied_parameters"
                | "required_parameters"
                | "control_group" => {
                    return Err(err(format!(
                        "{:?} is not supported by this server; remove it",
                        a.key.as_str()
                    )))
                }
                other => return Err(err(format!("invalid key {other:?}"))),
            },
            Structure::Block(b) => {
                return Err(err(format!("invalid key {:?}", b.identifier.as_str())))
            }
        }
    }
    Ok(caps)
}

pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
    let body: Body = hcl::parse(text).map_err(|e| PolicyError(e.to_string()))?;
    let mut rules: Vec<Rule> = Vec::new();
    for s in body.iter() {
        match s {
            Structure::Block(b) if b.identifier.as_str() == "path" => {
                let [label] = b.labels.as_slice() else {
                    return Err(PolicyError("path blocks take exactly one label".into()));
                };
                let pattern = label.as_str().trim_start_matches('/').to_string();
                if pattern.contains("+*") {
                    return Err(PolicyError(format!(
                        "path {pattern:?}: path {pattern:?}: invalid use of wildcards ('+*' is forbidden)"
                    )));
                }
                let caps = path_body(&pattern, &b.body)?;
                // Same pattern twice in one policy: merge, as Vault does.
                if let Some(r) = rules.iter_mut().find(|r| r.pattern == pattern) {
                    r.caps = r.caps.union(caps);
                } else {
                    rules.push(Rule { pattern, caps });
                }
            }
            Structure::Attribute(a) if a.key.as_str() == "name" => {}
            Structure::Attribute(a) => {
                return Err(PolicyError(format!("invalid key {:?}", a.key.as_str())))
            }
            Structure::Block(b) => {
                return Err(PolicyError(format!(
                    "invalid key {:?}",
                    b.identifier.as_str()
                )))
            }
        }
    }
    Ok(Policy {
        name: name.to_string(),
        raw: text.to_string(),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_policy() {
        let p = parse(
            "ocs",
            "path \"ocs/*\" {\n  capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"]\n}\npath \"sys/mounts\" {\n  capabilities = [\"read\"]\n}\n",
        )
        .unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].pattern, "ocs/*");
        assert_eq!(
            p.rules[0].caps.names(),
            vec!["create", "delete", "list", "read", "update"]
        );
        assert_eq!(p.rules[1].caps, Caps::READ);
    }

    #[test]
    fn legacy_policy_and_default() {
        let p = parse("x", "path \"a/*\" { policy = \"write\" }").unwrap();
        assert!(p.rules[0].caps.contains(Caps::UPDATE));
        assert!(!p.rules[0].caps.contains(Caps::SUDO));
        assert!(parse("default", super::super::DEFAULT_POLICY).is_ok());
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse("x", "path \"x\" { capabilities = [\"bogus\"] }").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to parse policy: path \"x\": path \"x\": invalid capability \"bogus\""
        );
        assert!(parse("x", "path \"x\" { capabilities = ").is_err());
        assert!(parse("x", "bogus = 1").unwrap_err().0.contains("bogus"));
        assert!(parse("x", "path \"x\" { color = \"red\" }")
            .unwrap_err()
            .0
            .contains("color"));
        assert!(parse("x", "path { capabilities = [] }").is_err());
        for bad in ["a/+*", "a/+/+*", "a+*"] {
            let e = parse(
                "x",
                &format!("path \"{bad}\" {{ capabilities = [\"read\"] }}"),
            );
            assert_eq!(
                e.unwrap_err().to_string(),
                format!("failed to parse policy: path \"{bad}\": path \"{bad}\": invalid use of wildcards ('+*' is forbidden)")
            );
        }
        for ok in ["a/*b", "a/b+", "+/a", "a/+", "*", ""] {
            assert!(
                parse(
                    "x",
                    &format!("path \"{ok}\" {{ capabilities = [\"read\"] }}")
                )
                .is_ok(),
                "{ok}"
            );
        }
        assert!(parse("x", "path \"x\" { capabilities = \"read\" }").is_err());
    }
}
