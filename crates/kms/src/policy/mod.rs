//! ACL policies: the HCL language (`path "p" { capabilities = [...] }`), the built-in
//! `default` and `root` policies, and the evaluation of a set of policies against a path.

mod acl;
mod parse;

pub use acl::Acl;
pub use parse::{parse, PolicyError};

/// A capability set as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps(pub u16);

impl Caps {
    pub const CREATE: Caps = Caps(1);
    pub const READ: Caps = Caps(2);
    pub const UPDATE: Caps = Caps(4);
    pub const DELETE: Caps = Caps(8);
    pub const LIST: Caps = Caps(16);
    pub const SUDO: Caps = Caps(32);
    pub const DENY: Caps = Caps(64);
    pub const PATCH: Caps = Caps(128);
    pub const SUBSCRIBE: Caps = Caps(256);

    const NAMES: [(&'static str, Caps); 9] = [
        ("create", Caps::CREATE),
        ("delete", Caps::DELETE),
        ("deny", Caps::DENY),
        ("list", Caps::LIST),
        ("patch", Caps::PATCH),
        ("read", Caps::READ),
        ("subscribe", Caps::SUBSCRIBE),
        ("sudo", Caps::SUDO),
        ("update", Caps::UPDATE),
    ];

    pub fn from_name(s: &str) -> Option<Caps> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, c)| *c)
    }
    pub fn contains(self, o: Caps) -> bool {
        self.0 & o.0 == o.0 && o.0 != 0
    }
    pub fn union(self, o: Caps) -> Caps {
        Caps(self.0 | o.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Sorted capability names, or `["deny"]` when nothing is granted (Vault's rendering).
    pub fn names(self) -> Vec<String> {
        if self.contains(Caps::DENY) || self.is_empty() {
            return vec!["deny".into()];
        }
        Self::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub pattern: String,
    pub caps: Caps,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    /// The text exactly as written, returned verbatim on read.
    pub raw: String,
    pub rules: Vec<Rule>,
}

/// The built-in `default` policy: what every token may do about itself.
pub const DEFAULT_POLICY: &str = r#"# Every token may look itself up, renew and revoke itself.
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

path "auth/token/renew-self" {
    capabilities = ["update"]
}

path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# ... and ask what it may do.
path "sys/capabilities-self" {
    capabilities = ["update"]
}

path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# A private scratch space per token.
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Response wrapping and hashing tools.
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

path "sys/tools/hash" {
    capabilities = ["update"]
}

path "sys/tools/hash/*" {
    capabilities = ["update"]
}
"#;
