//! Network blocks (`10.0.0.0/8`, `::1/128`, or a bare address) for `token_bound_cidrs`:
//! a login from outside is refused and a bound token is refused from outside.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CIDR block {0:?}")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(s.to_string());
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

/// As OpenBao shows them: a single address without its `/32` (`/128`).
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

fn bits(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => (u32::from(v4) as u128, 32),
            None => (u128::from(v), 128),
        },
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = bits(self.addr);
        let (ip, ip_width) = bits(ip);
        if width != ip_width {
            return false;
        }
        let shift = width - self.prefix as u32;
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        (net & mask) == (ip & mask)
    }
}

/// Whether a client at `remote` may use something bound to `cidrs` (no binding: anyone; a
/// binding and no IP address: no one).
pub fn allows(cidrs: &[Cidr], remote: Option<IpAddr>) -> bool {
    cidrs.is_empty() || remote.is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip)))
}

/// Parse a list, failing on the first bad block with OpenBao-like wording.
pub fn parse_list(items: &[String]) -> Result<Vec<Cidr>, CidrError> {
    items.iter().map(|s| s.parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "127.0.0.1/32".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1");
        assert!(one.contains(ip("::ffff:127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
    }

    #[test]
    fn bad_blocks_are_errors() {
        for s in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
    }

    #[test]
    fn binding_rules() {
        let c = parse_list(&["127.0.0.1".into()]).unwrap();
        assert!(allows(&[], None));
        assert!(allows(&c, Some(ip("127.0.0.1"))));
        assert!(!allows(&c, Some(ip("127.0.0.2"))));
        assert!(!allows(&c, None));
    }
}
