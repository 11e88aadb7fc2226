//! The web UI at `/ui/`: hand-written HTML, CSS and JavaScript modules built into the binary
//! (no build step, nothing fetched at run time). The pages talk to the same `/v1/` API as the
//! CLI with the user's own token, which they keep in `sessionStorage` and send only in the
//! `X-Vault-Token` header. Every answer here carries a Content-Security-Policy that allows
//! scripts, styles and connections from this origin only (no inline script or style, no
//! framing), and `/` redirects to `/ui/` as in OpenBao when the UI is enabled.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// The policy sent with every UI response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            media_type: $ty,
            bytes: include_bytes!(concat!("../../ui/", $name)),
        }
    };
}

static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/engines.js", JS),
    asset!("js/kv.js", JS),
    asset!("js/transit.js", JS),
    asset!("js/access.js", JS),
    asset!("js/status.js", JS),
    asset!("js/volumes.js", JS),
];

/// The headers every UI response carries.
fn security_headers(h: &mut HeaderMap) {
    let pairs = [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
    ];
    for (k, v) in pairs {
        h.insert(k, HeaderValue::from_static(v));
    }
}

fn respond(status: StatusCode, media_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    security_headers(r.headers_mut());
    r
}

/// The answer for `path` (below `/ui`, without it), for a GET or HEAD. Asset names answer
/// with the asset; any other path is a page of the single-page app (`index.html`), except
/// names that look like a missing asset (with an extension), which are 404.
pub fn serve(path: &str) -> Response {
    let name = path.trim_start_matches('/');
    if let Some(a) = ASSETS.iter().find(|a| a.name == name) {
        return respond(StatusCode::OK, a.media_type, a.bytes);
    }
    let last = name.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"not found\n",
        );
    }
    respond(StatusCode::OK, HTML, ASSETS[0].bytes)
}

/// `/ui` without the slash, and `/`: to the UI.
pub fn redirect() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
    security_headers(r.headers_mut());
    r
}

/// A method other than GET/HEAD on a UI path.
pub fn method_not_allowed() -> Response {
    let mut r = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        b"method not allowed\n",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_carries_the_policy_and_no_inline_script_is_allowed() {
        for p in ["/", "/index.html", "/js/app.js", "/secrets/ocs", "/nope.js"] {
            let r = serve(p);
            let csp = r.headers()["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("script-src 'self';"), "{p}: {csp}");
            assert!(!csp.contains("unsafe-inline"), "{p}: {csp}");
        }
        assert_eq!(serve("/nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("/secrets/ocs").status(), StatusCode::OK);
        assert_eq!(serve("/js/app.js").headers()["content-type"], JS);
        assert!(redirect().headers().contains_key("content-security-policy"));
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for chunk in html.split("<script").skip(1) {
            let tag_end = chunk.find('>').unwrap();
            assert!(chunk[..tag_end].contains("src="), "inline script: {chunk}");
        }
        assert!(!html.contains("<style") && !html.contains(" style="));
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!html.contains(handler), "inline handler {handler}");
        }
    }
}
