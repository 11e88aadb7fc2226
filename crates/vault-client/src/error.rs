//! Errors callers can act on.

use std::fmt;

use crate::types::Secret;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error answer from the server: method, URL, status and the server's `errors` list.
///
/// Its `Display` is the Vault CLI's "Error making API request." text. It never contains the
/// token or request body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub method: String,
    pub url: String,
    pub status: u16,
    /// The server's `errors` array (may be empty, e.g. a plain 404).
    pub errors: Vec<String>,
    /// The parsed body when it was a response envelope (e.g. a soft-deleted KV v2 version
    /// answers 404 with its metadata). `Debug` of it is redacted.
    pub response: Option<Box<Secret>>,
}

impl ApiError {
    /// The server's messages in one line, without Go's multierror wrapping
    /// (`1 error occurred:\n\t* ...`); `HTTP <status>` when there are none.
    pub fn summary(&self) -> String {
        let m = self
            .errors
            .iter()
            .map(|e| {
                let e = e.trim();
                let e = e
                    .strip_prefix("1 error occurred:")
                    .map(str::trim_start)
                    .unwrap_or(e);
                e.strip_prefix("* ").unwrap_or(e).trim().to_owned()
            })
            .collect::<Vec<_>>()
            .join("; ");
        if m.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            m
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Error making API request.\n\nURL: {} {}\nCode: {}. Errors:\n\n",
            self.method, self.url, self.status
        )?;
        let lines: Vec<String> = self.errors.iter().map(|e| format!("* {e}")).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// The one error Vault and OpenBao send for a sealed server (their `consts.ErrSealed`):
/// 503 alone also means "standby without an active node", so the wire protocol tells the
/// two apart only by this exact string; it is matched whole, as the protocol's constant.
const SEALED: &str = "Vault is sealed";

/// What went wrong, classified so that a caller can decide what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server could not be reached (connection refused, DNS, timeout). Retryable.
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// TLS failed (unknown CA, bad certificate, handshake error). Not retryable as is.
    #[error("TLS error talking to {address}: {reason}")]
    Tls { address: String, reason: String },
    /// The client configuration is unusable (bad address, unreadable CA file, ...).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// 503 "Vault is sealed".
    #[error("{0}")]
    Sealed(ApiError),
    /// 403: missing/invalid token or the ACL denies the path.
    #[error("{0}")]
    PermissionDenied(ApiError),
    /// 404.
    #[error("{0}")]
    NotFound(ApiError),
    /// 400 with the server's messages (bad parameters, wrong password, cas mismatch, ...).
    #[error("{0}")]
    BadRequest(ApiError),
    /// Any other error status.
    #[error("{0}")]
    Server(ApiError),
    /// The server answered something that is not the expected JSON.
    #[error("invalid response from {url}: {reason}")]
    InvalidResponse { url: String, reason: String },
}

impl Error {
    /// Builds the error for an HTTP error status (>= 400) and its (already parsed) body.
    pub(crate) fn from_status(
        method: &str,
        url: &str,
        status: u16,
        body: Option<serde_json::Value>,
    ) -> Error {
        let errors = body
            .as_ref()
            .and_then(|b| b.get("errors"))
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| e.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let response = body
            .and_then(Secret::from_envelope)
            .filter(|s| s.data.is_some() || !s.warnings().is_empty())
            .map(Box::new);
        let api = ApiError {
            method: method.to_owned(),
            url: url.to_owned(),
            status,
            errors,
            response,
        };
        match status {
            400 => Error::BadRequest(api),
            403 => Error::PermissionDenied(api),
            404 => Error::NotFound(api),
            503 if api.errors.iter().any(|e| e == SEALED) => Error::Sealed(api),
            _ => Error::Server(api),
        }
    }

    /// The HTTP status, for errors that came from a server answer.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|a| a.status)
    }

    /// The server's answer, for errors that came from one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Sealed(a)
            | Error::PermissionDenied(a)
            | Error::NotFound(a)
            | Error::BadRequest(a)
            | Error::Server(a) => Some(a),
            _ => None,
        }
    }

    /// The server's error messages (empty for local errors).
    pub fn messages(&self) -> &[String] {
        self.api().map(|a| a.errors.as_slice()).unwrap_or(&[])
    }

    /// Worth retrying later: unreachable, sealed, or a 5xx (e.g. standby without an active node).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Sealed(_) => true,
            Error::Server(a) => a.status >= 500,
            _ => false,
        }
    }

    /// The token itself was refused (missing, invalid, expired or revoked), as opposed to an
    /// ACL denying a valid token. Vault/OpenBao answer the former with a bare
    /// `["permission denied"]` and the latter with the multierror text
    /// `"1 error occurred:\n\t* permission denied\n\n"`. Use it to tell UNAUTHENTICATED from
    /// PERMISSION_DENIED; `auth/token/lookup-self` is the definitive check.
    pub fn is_invalid_token(&self) -> bool {
        matches!(self, Error::PermissionDenied(a) if a.errors.len() == 1 && a.errors[0].trim() == "permission denied")
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::PermissionDenied(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "http://127.0.0.1:8200/v1/sys/auth";

    #[test]
    fn maps_status_codes() {
        let e = Error::from_status(
            "GET",
            URL,
            403,
            Some(json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})),
        );
        assert!(e.is_permission_denied());
        assert_eq!(e.status(), Some(403));
        let text = e.to_string();
        assert!(
            text.contains("Code: 403")
                && text.contains("permission denied")
                && text.contains("URL: GET http"),
            "{text}"
        );

        assert!(
            matches!(Error::from_status("PUT", URL, 400, Some(json!({"errors": ["missing data fields"]}))), Error::BadRequest(a) if a.errors == ["missing data fields"])
        );
        assert!(Error::from_status("GET", URL, 404, Some(json!({"errors": []}))).is_not_found());
        assert!(Error::from_status("GET", URL, 404, None).is_not_found());
        let sealed = Error::from_status(
            "GET",
            URL,
            503,
            Some(json!({"errors": ["Vault is sealed"]})),
        );
        assert!(matches!(sealed, Error::Sealed(_)) && sealed.is_retryable());
        let other503 = Error::from_status("GET", URL, 503, Some(json!({"errors": ["standby"]})));
        assert!(matches!(other503, Error::Server(_)) && other503.is_retryable());
        let e500 = Error::from_status("GET", URL, 500, Some(json!("not an object")));
        assert!(matches!(e500, Error::Server(ref a) if a.errors.is_empty()));
        let e405 = Error::from_status("DELETE", URL, 405, Some(json!({"errors": [1, "x"]})));
        assert_eq!(e405.messages(), ["1", "x"]);
        assert!(!e405.is_retryable());
    }

    #[test]
    fn not_found_keeps_envelope_but_debug_hides_values() {
        let body = json!({"request_id": "r", "data": {"data": null, "metadata": {"secretish": "hunter2"}}, "warnings": null});
        let e = Error::from_status("GET", URL, 404, Some(body));
        let Error::NotFound(a) = &e else {
            panic!("not NotFound")
        };
        assert!(a.response.is_some());
        assert!(!format!("{e:?}").contains("hunter2"));
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn invalid_token_vs_acl_denial() {
        let bad_token = Error::from_status(
            "GET",
            URL,
            403,
            Some(json!({"errors": ["permission denied"]})),
        );
        let acl = Error::from_status(
            "GET",
            URL,
            403,
            Some(json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})),
        );
        assert!(bad_token.is_invalid_token() && bad_token.is_permission_denied());
        assert!(!acl.is_invalid_token() && acl.is_permission_denied());
    }

    #[test]
    fn summary_unwraps_multierror_text() {
        let acl = Error::from_status(
            "GET",
            URL,
            403,
            Some(json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})),
        );
        assert_eq!(acl.api().unwrap().summary(), "permission denied");
        let two = Error::from_status("GET", URL, 400, Some(json!({"errors": ["a", "b"]})));
        assert_eq!(two.api().unwrap().summary(), "a; b");
        let none = Error::from_status("GET", URL, 502, None);
        assert_eq!(none.api().unwrap().summary(), "HTTP 502");
    }

    #[test]
    fn plain_error_body_is_not_a_response() {
        let e = Error::from_status("GET", URL, 404, Some(json!({"errors": []})));
        assert!(matches!(e, Error::NotFound(ref a) if a.response.is_none()));
    }

    #[test]
    fn unreachable_is_retryable() {
        let e = Error::Unreachable {
            address: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert!(e.is_retryable() && e.status().is_none() && e.messages().is_empty());
    }
}
