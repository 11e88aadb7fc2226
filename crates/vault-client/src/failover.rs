//! Several server addresses (the nodes of a cluster): which failures move a request on to
//! the next node.
//!
//! * A node that refuses the connection (down, restarting), cannot be connected to in time,
//!   or answers 503 (sealed, or a standby that knows no active node) has not run the
//!   request: it goes to the next address, at most once round the list.
//! * A read (`GET`, `HEAD`) also moves on after any other transport failure (the connection
//!   dropped, no answer in time): running it twice changes nothing.
//! * A write that failed after it was sent may or may not have happened. It is not repeated:
//!   the error (retryable, [`crate::Error::is_retryable`]) goes to the caller, and the next
//!   request starts at the next address.
//! * Any other answer (including 5xx other than 503, which may come from a node that
//!   forwarded the request) is the answer; the node that gave it is where the next request
//!   goes first.
//!
//! When no node answered: with one address its own error; with several an
//! [`crate::Error::Unreachable`] naming every address and why it failed, or the last 503
//! answer with the other nodes' failures added to its messages.

use serde_json::Value;

use crate::client::Method;
use crate::error::{Error, Result};

/// What one attempt against one address gave.
pub(crate) enum Outcome {
    /// The server answered (status, body).
    Answer((u16, Option<Value>)),
    /// The exchange failed; `true`: certainly before the request was sent.
    Transport(Error, bool),
    /// A local error (bad request, body not JSON): the same on every node.
    Local(Error),
}

/// What to do after an attempt.
pub(crate) enum Next {
    Done(Result<(u16, Option<Value>)>),
    /// The outcome is unknown: give the error back, move on for the next request.
    GiveUp(Error),
    /// The request did not run (or may run again): try the next address.
    Skip(Outcome),
}

/// Whether a ureq failure happened before any byte of the request left.
pub(crate) fn not_sent(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused | K::AddrNotAvailable | K::NetworkUnreachable | K::HostUnreachable
        ),
        _ => false,
    }
}

fn idempotent(m: Method) -> bool {
    matches!(m, Method::Get | Method::Head)
}

/// Decide on one attempt's outcome.
pub(crate) fn judge(method: Method, outcome: Outcome) -> Next {
    match outcome {
        Outcome::Answer((503, body)) => Next::Skip(Outcome::Answer((503, body))),
        Outcome::Answer(r) => Next::Done(Ok(r)),
        Outcome::Local(e) => Next::Done(Err(e)),
        Outcome::Transport(e @ Error::Unreachable { .. }, not_sent) => {
            if not_sent || idempotent(method) {
                Next::Skip(Outcome::Transport(e, not_sent))
            } else {
                Next::GiveUp(e)
            }
        }
        Outcome::Transport(e, _) => Next::Done(Err(e)),
    }
}

/// Every address was tried and skipped: the clearest account of why.
pub(crate) fn none_answered(mut skipped: Vec<(String, Outcome)>) -> Result<(u16, Option<Value>)> {
    if skipped.len() == 1 {
        return match skipped.pop() {
            Some((_, Outcome::Answer(r))) => Ok(r),
            Some((_, Outcome::Transport(e, _) | Outcome::Local(e))) => Err(e),
            None => Err(Error::Config("no server address given".into())),
        };
    }
    let reasons: Vec<String> = skipped
        .iter()
        .filter_map(|(addr, o)| match o {
            Outcome::Transport(Error::Unreachable { reason, .. }, _) => {
                Some(format!("{addr}: {reason}"))
            }
            _ => None,
        })
        .collect();
    let last_answer = skipped.into_iter().rev().find_map(|(_, o)| match o {
        Outcome::Answer(r) => Some(r),
        _ => None,
    });
    match last_answer {
        Some((status, body)) => Ok((status, Some(with_also_tried(body, &reasons)))),
        None => Err(Error::Unreachable {
            address: "every configured address".into(),
            reason: reasons.join("; "),
        }),
    }
}

/// A 503 body with the other nodes' transport failures added to its `errors`.
fn with_also_tried(body: Option<Value>, reasons: &[String]) -> Value {
    let mut body = body.unwrap_or_else(|| serde_json::json!({ "errors": [] }));
    if let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) {
        errors.extend(
            reasons
                .iter()
                .map(|r| Value::from(format!("also tried {r}"))),
        );
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unreachable() -> Error {
        Error::Unreachable {
            address: "http://a".into(),
            reason: "connection refused".into(),
        }
    }

    #[test]
    fn what_moves_on() {
        let skip = |m, o| matches!(judge(m, o), Next::Skip(_));
        assert!(skip(Method::Put, Outcome::Answer((503, None))));
        assert!(skip(Method::Put, Outcome::Transport(unreachable(), true)));
        assert!(skip(Method::Get, Outcome::Transport(unreachable(), false)));
        // a write that may have run is not repeated on another node
        assert!(matches!(
            judge(Method::Put, Outcome::Transport(unreachable(), false)),
            Next::GiveUp(_)
        ));
        assert!(matches!(
            judge(Method::Put, Outcome::Answer((500, None))),
            Next::Done(Ok((500, None)))
        ));
        let tls = Error::Tls {
            address: "x".into(),
            reason: "unknown ca".into(),
        };
        assert!(matches!(
            judge(Method::Get, Outcome::Transport(tls, true)),
            Next::Done(Err(Error::Tls { .. }))
        ));
    }

    #[test]
    fn none_answered_names_every_address() {
        let e = none_answered(vec![
            ("http://a".into(), Outcome::Transport(unreachable(), true)),
            ("http://b".into(), Outcome::Transport(unreachable(), true)),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Unreachable { .. }) && e.is_retryable());
        assert!(text.contains("http://a: connection refused"), "{text}");
        assert!(text.contains("http://b: connection refused"), "{text}");
        let sealed = none_answered(vec![
            ("http://a".into(), Outcome::Transport(unreachable(), true)),
            (
                "http://b".into(),
                Outcome::Answer((503, Some(json!({"errors": ["Vault is sealed"]})))),
            ),
        ])
        .unwrap();
        assert_eq!(sealed.0, 503);
        let errors = sealed.1.unwrap()["errors"].clone();
        assert_eq!(errors[0], "Vault is sealed");
        assert_eq!(errors[1], "also tried http://a: connection refused");
    }

    #[test]
    fn one_address_keeps_its_own_error() {
        let e = none_answered(vec![(
            "http://a".into(),
            Outcome::Transport(unreachable(), true),
        )])
        .unwrap_err();
        assert!(matches!(e, Error::Unreachable { address, .. } if address == "http://a"));
    }
}
