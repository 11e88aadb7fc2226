//! The key manager's TLS listener, same checks against real OpenBao and `strongroom server`:
//! a client trusting the CA connects, one that does not is refused, and with
//! `tls_require_and_verify_client_cert` only a client with a certificate from the CA gets in.

mod common;

use common::{bao_bin, free_port, strongroom_bin, ServerKind};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strongroom_vault_client::{Client, ClientConfig, Error};

struct Pki(tempfile::TempDir);

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kms tls test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            ("server", vec!["127.0.0.1".to_string()]),
            ("client", vec!["client.test".to_string()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            let cert = p.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}-key.pem")),
                key.serialize_pem(),
            )
            .unwrap();
        }
        // a second, unrelated CA and client certificate
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = CertifiedIssuer::self_signed(other, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["rogue.test".to_string()])
            .unwrap()
            .signed_by(&key, &other)
            .unwrap();
        std::fs::write(dir.path().join("rogue.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("rogue-key.pem"), key.serialize_pem()).unwrap();
        Pki(dir)
    }
    fn p(&self, f: &str) -> PathBuf {
        self.0.path().join(f)
    }
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(kind: ServerKind, pki: &Pki, mtls: bool) -> (Proc, String) {
    let port = free_port();
    let mtls_lines = if mtls {
        format!(
            "  tls_client_ca_file = \"{}\"\n  tls_require_and_verify_client_cert = true\n",
            pki.p("ca.pem").display()
        )
    } else {
        String::new()
    };
    let cfg = format!(
        "storage \"inmem\" {{}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n{mtls_lines}}}\ndisable_mlock = true\napi_addr = \"https://127.0.0.1:{port}\"\n",
        pki.p("server.pem").display(),
        pki.p("server-key.pem").display()
    );
    let cfg_path = pki.p(&format!("server-{port}.hcl"));
    std::fs::write(&cfg_path, cfg).unwrap();
    let bin = match kind {
        ServerKind::OpenBao => bao_bin(),
        ServerKind::Strongroom => strongroom_bin(),
    };
    let child = Command::new(bin)
        .args(["server", "-config", cfg_path.to_str().unwrap()])
        .env("HOME", pki.0.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{kind:?} TLS listener did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Proc(child), format!("https://127.0.0.1:{port}"))
}

fn client(addr: &str, ca: Option<&Path>, cert: Option<(&Path, &Path)>) -> Client {
    let mut cfg = ClientConfig::new(addr);
    cfg.ca_cert = ca.map(Path::to_path_buf);
    if let Some((c, k)) = cert {
        cfg.client_cert = Some(c.to_path_buf());
        cfg.client_key = Some(k.to_path_buf());
    }
    Client::new(cfg).unwrap()
}

fn scenario(kind: ServerKind) {
    let pki = Pki::new();
    {
        let (_p, addr) = start(kind, &pki, false);
        let st = client(&addr, Some(&pki.p("ca.pem")), None)
            .seal_status()
            .expect("trusted CA connects");
        assert!(!st.initialized);
        let e = client(&addr, None, None).seal_status().unwrap_err();
        assert!(
            matches!(e, Error::Tls { .. }),
            "{kind:?}: unknown CA must be a TLS error, got {e:?}"
        );
    }
    let (_p, addr) = start(kind, &pki, true);
    let ok = client(
        &addr,
        Some(&pki.p("ca.pem")),
        Some((&pki.p("client.pem"), &pki.p("client-key.pem"))),
    );
    assert!(
        !ok.seal_status()
            .expect("client certificate from the CA is accepted")
            .initialized
    );
    let e = client(&addr, Some(&pki.p("ca.pem")), None)
        .seal_status()
        .unwrap_err();
    assert!(
        matches!(e, Error::Tls { .. } | Error::Unreachable { .. }),
        "{kind:?}: no client cert must fail, got {e:?}"
    );
    let rogue = client(
        &addr,
        Some(&pki.p("ca.pem")),
        Some((&pki.p("rogue.pem"), &pki.p("rogue-key.pem"))),
    );
    assert!(
        rogue.seal_status().is_err(),
        "{kind:?}: a certificate from another CA must be refused"
    );
}

#[test]
fn tls_and_mtls_openbao() {
    scenario(ServerKind::OpenBao);
}

#[test]
fn tls_and_mtls_strongroom() {
    scenario(ServerKind::Strongroom);
}
