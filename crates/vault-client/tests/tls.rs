//! TLS and mutual TLS against a real OpenBao listener with certificates from a test CA:
//! custom CA trust, refusal of an unknown CA, VAULT_SKIP_VERIFY, client certificates.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use strongroom_vault_client::{Client, ClientConfig, Error};
use support::{bao_bin, free_port};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1/localhost and a client certificate.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "strongroom test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, s: String| std::fs::write(dir.path().join(name), s).unwrap();
        write("ca.pem", ca.pem());
        for (name, sans) in [
            (
                "server",
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ),
            ("client", vec!["client.test".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            let cert = p.signed_by(&key, &ca).unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, f: &str) -> std::path::PathBuf {
        self.dir.path().join(f)
    }
}

struct TlsServer {
    child: Child,
    addr: String,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(pki: &Pki, require_client_cert: bool) -> TlsServer {
    let port = free_port();
    let d = pki.dir.path();
    let client_ca = if require_client_cert {
        format!(
            "  tls_client_ca_file = \"{}\"\n  tls_require_and_verify_client_cert = true\n",
            d.join("ca.pem").display()
        )
    } else {
        String::new()
    };
    let cfg = format!(
        "storage \"inmem\" {{}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{}\"\n  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n{client_ca}}}\ndisable_mlock = true\napi_addr = \"https://127.0.0.1:{port}\"\n",
        free_port(),
        d.join("server.pem").display(),
        d.join("server-key.pem").display()
    );
    let cfg_path = d.join(format!("server-{port}.hcl"));
    std::fs::write(&cfg_path, cfg).unwrap();
    let child = Command::new(bao_bin())
        .args(["server", "-config", cfg_path.to_str().unwrap()])
        .env("HOME", d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = TlsServer {
        child,
        addr: format!("https://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("TLS OpenBao did not start");
}

fn client(
    addr: &str,
    ca: Option<&Path>,
    cert: Option<(&Path, &Path)>,
    skip_verify: bool,
) -> Client {
    let mut cfg = ClientConfig::new(addr);
    cfg.ca_cert = ca.map(Path::to_path_buf);
    if let Some((c, k)) = cert {
        cfg.client_cert = Some(c.to_path_buf());
        cfg.client_key = Some(k.to_path_buf());
    }
    cfg.skip_verify = skip_verify;
    Client::new(cfg).unwrap()
}

#[test]
fn server_tls_with_custom_ca() {
    let pki = Pki::new();
    let srv = start(&pki, false);
    // trusted through VAULT_CACERT-style CA file: an uninitialized server answers 501
    let h = client(&srv.addr, Some(&pki.path("ca.pem")), None, false)
        .health()
        .unwrap();
    assert_eq!((h.status, h.initialized), (501, false));
    // the built-in roots do not know the test CA
    let e = client(&srv.addr, None, None, false).health().unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
    assert!(!e.is_retryable());
    // skip-verify (testing only) connects anyway
    assert_eq!(
        client(&srv.addr, None, None, true).health().unwrap().status,
        501
    );
    // a CA file with no certificate is a configuration error
    let mut cfg = ClientConfig::new(srv.addr.as_str());
    cfg.ca_cert = Some(pki.path("server-key.pem"));
    assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
}

#[test]
fn mutual_tls_client_certificate() {
    let pki = Pki::new();
    let srv = start(&pki, true);
    let with_cert = client(
        &srv.addr,
        Some(&pki.path("ca.pem")),
        Some((&pki.path("client.pem"), &pki.path("client-key.pem"))),
        false,
    );
    assert_eq!(with_cert.health().unwrap().status, 501);
    let without = client(&srv.addr, Some(&pki.path("ca.pem")), None, false);
    let e = without.health().unwrap_err();
    assert!(
        matches!(e, Error::Tls { .. } | Error::Unreachable { .. }),
        "{e:?}"
    );
    // cert without key is refused locally
    let mut cfg = ClientConfig::new(srv.addr.as_str());
    cfg.client_cert = Some(pki.path("client.pem"));
    assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
}
