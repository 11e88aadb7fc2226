//! The web UI (`/ui/`) in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/ui/`, no browser download) against a real
//! `strongroom server`: the article's flow, demo-like volumes and a transit rotation, a phone
//! screen, and a sealed TLS server unsealed through the UI. The scenarios (`tests/ui/run.mjs`)
//! also fail on any console error, any request with a token or password in its URL, any UI
//! response without a strict Content-Security-Policy and any unlabelled form control; each
//! page's screenshot is written to `target/tmp/ui-screenshots/<scenario>/`.
//!
//! Without chromium or `tests/ui/node_modules` the browser tests are skipped, unless
//! `STRONGROOM_UI_REQUIRED=1` (set by scripts/test.sh), which makes them fail instead.

mod common;

use common::{Pki, Server, ServerKind, Storage};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use strongroom_volume::tenant::{self, TenantLayout};
use strongroom_volume::{
    CreateRequest, Credential, FsType, KmsConfig, Manager, ManagerConfig, ProtectionRequest,
    SecretString,
};

const ROOT: &str = "s.ui-browser-root-token-4711";

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

fn chromium() -> PathBuf {
    std::env::var_os("STRONGROOM_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether the browser tools are here; without them, a skip, or a failure when required.
fn browser_ready() -> bool {
    let mut missing = vec![];
    if !chromium().is_file() {
        missing.push(format!("chromium at {}", chromium().display()));
    }
    if !ui_dir().join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "playwright-core in {}/node_modules",
            ui_dir().display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "browser tests need {} (scripts/test.sh installs them: apt-get install chromium; \
         npm ci --prefix crates/strongroom/tests/ui)",
        missing.join(", ")
    );
    assert!(
        std::env::var("STRONGROOM_UI_REQUIRED").as_deref() != Ok("1"),
        "STRONGROOM_UI_REQUIRED=1: {msg}"
    );
    eprintln!("SKIP: {msg}");
    false
}

fn shots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots")
}

/// Run one scenario of `tests/ui/run.mjs` with `env` (`UI_ROOT_TOKEN`, ...); fails with its
/// output and the server's log.
fn scenario(name: &str, server: &Server, env: &[(&str, &str)]) {
    let out = Command::new("node")
        .arg(ui_dir().join("run.mjs"))
        .arg(name)
        .current_dir(ui_dir())
        .env("UI_BASE", server.addr())
        .env("UI_SHOTS", shots_dir())
        .envs(env.iter().copied())
        .env("STRONGROOM_CHROMIUM", chromium())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "scenario {name} failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.logs()
    );
    assert!(stdout.contains("ok: "), "{stdout}");
}

/// Two tenants as `strongroom demo` makes them: alice's volume wrapped by her transit key,
/// bob's secret in KV (`secret/strongroom/bob/bob-logs`). Returns alice's token.
fn demo_volumes(server: &Server, dir: &Path) -> String {
    let kms = KmsConfig::new(server.addr().to_string());
    let admin = kms.client(&SecretString::new(ROOT.to_string())).unwrap();
    let layout = TenantLayout::default();
    let mut creds = vec![];
    for t in ["alice", "bob"] {
        let p = tenant::setup_tenant(&admin, t, &layout).expect("tenant setup");
        creds.push(tenant::create_token(&admin, &[p.as_str()], "1h").expect("tenant token"));
    }
    let mgr = Manager::new(ManagerConfig {
        root: dir.join("volumes"),
        cluster_id: "ui-cluster".into(),
        kms,
        cache_ttl: Duration::from_secs(60),
        datapath: None,
    });
    let vols = [
        (
            "alice-db",
            "alice",
            ProtectionRequest::envelope_for("alice"),
        ),
        (
            "bob-logs",
            "bob",
            ProtectionRequest::Kv {
                backend: tenant::kv_backend("secret", "bob"),
            },
        ),
    ];
    let alice = creds[0].expose().to_string();
    for ((id, t, protection), cred) in vols.into_iter().zip(creds) {
        let req = CreateRequest {
            id: id.into(),
            tenant: t.into(),
            size: 16 << 20,
            protection,
            store: None,
            fs_type: FsType::Ext4,
        };
        mgr.create(&req, &Credential::Tenant(cred))
            .unwrap_or_else(|e| panic!("create {id}: {e}"));
    }
    alice
}

#[test]
fn ui_article_flow_in_chromium() {
    if !browser_ready() {
        return;
    }
    let server = Server::start_dev(ServerKind::Strongroom, ROOT);
    scenario("article", &server, &[("UI_ROOT_TOKEN", ROOT)]);
}

#[test]
fn ui_volumes_transit_rotation_and_phone_in_chromium() {
    if !browser_ready() {
        return;
    }
    let server = Server::start_dev(ServerKind::Strongroom, ROOT);
    let dir = tempfile::tempdir().unwrap();
    let alice = demo_volumes(&server, dir.path());
    scenario("phone", &server, &[("UI_ROOT_TOKEN", ROOT)]);
    let env = [("UI_ROOT_TOKEN", ROOT), ("UI_TENANT_TOKEN", alice.as_str())];
    scenario("volumes", &server, &env);
}

/// A TLS server with `ui = true` and a file audit device, initialized (2 of 3 shares) and
/// sealed.
fn sealed_tls_server(pki: &Pki) -> (Server, String, Vec<String>) {
    let mut server = Server::start_tls(ServerKind::Strongroom, Storage::Inmem, pki, false);
    let cfg = server.dir().join("server.hcl");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("ui            = false"), "{text}");
    let audit = server.dir().join("audit.log");
    let text = format!(
        "{}audit \"file\" \"main\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
        text.replace("ui            = false", "ui = true"),
        audit.display()
    );
    std::fs::write(&cfg, text).unwrap();
    server.restart();
    let c = server.client();
    let init = c
        .init(&strongroom_vault_client::InitRequest::shamir(3, 2))
        .expect("init");
    let shares = init.keys_base64[..2]
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    (server, init.root_token.expose().to_string(), shares)
}

#[test]
fn ui_sealed_tls_server_unsealed_in_chromium() {
    if !browser_ready() {
        return;
    }
    let pki = Pki::new();
    let (server, root, shares) = sealed_tls_server(&pki);
    assert!(server.addr().starts_with("https://"));
    let shares = shares.join(",");
    scenario(
        "sealed",
        &server,
        &[("UI_ROOT_TOKEN", &root), ("UI_SHARES", &shares)],
    );
    assert!(server.wait_health(&[200], Duration::from_secs(10)));
}

/// A raw GET over plain HTTP: (status line, lower-cased headers, body).
fn raw_get(addr: &str, path: &str) -> (String, String, String) {
    let hostport = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.into(), headers.to_ascii_lowercase(), body.into())
}

#[test]
fn ui_is_served_only_when_enabled_and_always_with_its_policy() {
    let off = Server::start(ServerKind::Strongroom, Storage::Inmem);
    let (status, _, _) = raw_get(off.addr(), "/ui/");
    assert!(
        status.contains(" 404 "),
        "ui = false still serves /ui/: {status}"
    );

    let dev = Server::start_dev(ServerKind::Strongroom, ROOT);
    for (path, code, kind) in [
        ("/ui/", "200", "text/html"),
        ("/ui/secrets/ocs/pvc-1", "200", "text/html"),
        ("/ui/js/app.js", "200", "text/javascript"),
        ("/ui/app.css", "200", "text/css"),
        ("/ui/js/missing.js", "404", "text/plain"),
        ("/ui", "307", "location: /ui/"),
        ("/", "307", "location: /ui/"),
    ] {
        let (status, headers, body) = raw_get(dev.addr(), path);
        assert!(status.contains(&format!(" {code} ")), "{path}: {status}");
        let want = if code == "307" {
            kind.to_string()
        } else {
            format!("content-type: {kind}")
        };
        assert!(headers.contains(&want), "{path}: {headers}");
        let csp = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{path}: no CSP in {headers}"));
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        if path == "/ui/" {
            assert!(body.contains("<script type=\"module\" src=\"/ui/js/app.js\">"));
        }
    }
    // the API beside it is untouched
    let (status, headers, _) = raw_get(dev.addr(), "/v1/sys/health");
    assert!(status.contains(" 200 ") && headers.contains("application/json"));
}
