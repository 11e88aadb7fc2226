//! Slow and greedy clients against a real listener (issue 15, availability). Vault's listener
//! timeouts close connections that stall in a header, in a body or idle between requests; a
//! body whose decoding would take more memory than the server sets aside is refused with 413
//! before it is decoded; large bodies arriving together share a memory budget, and those
//! beyond it are refused with 429 instead of being buffered. Everything here is
//! unauthenticated (`sys/unseal`), as an attacker would send it.
//!
//! The connection cap and the login flood need a process of their own (a descriptor limit,
//! a memory limit): `crates/strongroom/tests/kms_flood.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strongroom_kms::config::{HttpTimeouts, ListenerConfig};
use strongroom_kms::core::{Core, CoreOptions};
use strongroom_kms::http::budget::{BUDGET_WAIT, REQUEST_MEMORY};
use strongroom_kms::storage::InmemStorage;

struct Srv {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn start(timeouts: HttpTimeouts) -> Srv {
    let options = CoreOptions {
        max_request_size: strongroom_kms::server::DEFAULT_MAX_REQUEST_SIZE,
        ..Default::default()
    };
    let core = Core::new(Arc::new(InmemStorage::new()), options);
    core.init_dev(Some("root")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let l = ListenerConfig {
        address: "127.0.0.1:0".into(),
        tls_disable: true,
        timeouts,
        ..Default::default()
    };
    rt.spawn(strongroom_kms::server::serve(core, vec![l], Some(tx)));
    let addr = rt.block_on(rx).unwrap()[0];
    Srv { addr, _rt: rt }
}

/// How long until the server closes `s` (EOF or reset), reading and discarding whatever it
/// sends; `None` if it is still open after `max`.
fn closed_after(s: &mut TcpStream, t0: Instant, max: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(max)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(t0.elapsed()),
        }
        if t0.elapsed() > max {
            return None;
        }
    }
}

/// Reads one response with a `Content-Length` (keep-alive) and returns its status.
fn read_response(s: &mut TcpStream) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return head.split_whitespace().nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

#[test]
fn slow_headers_slow_bodies_and_idle_connections_are_closed_at_their_timeouts() {
    let srv = start(HttpTimeouts {
        read_header: Duration::from_secs(1),
        read: Duration::from_secs(2),
        idle: Duration::from_secs(3),
    });
    let addr = srv.addr;
    // (what the client does, the timeout that must close it)
    let cases: Vec<(&str, Duration)> = vec![
        ("nothing", Duration::from_secs(1)),
        ("half a header", Duration::from_secs(1)),
        ("half a body", Duration::from_secs(2)),
        ("idle after a request", Duration::from_secs(3)),
    ];
    let results: Vec<(&str, Duration, Option<Duration>)> = std::thread::scope(|s| {
        let hs: Vec<_> = cases
            .iter()
            .map(|&(what, limit)| {
                s.spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    match what {
                        "half a header" => c.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n").unwrap(),
                        "half a body" => c
                            .write_all(b"PUT /v1/sys/unseal HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"key\":")
                            .unwrap(),
                        "idle after a request" => {
                            c.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                            assert_eq!(read_response(&mut c), 200);
                        }
                        _ => {}
                    }
                    let t0 = Instant::now();
                    (what, limit, closed_after(&mut c, t0, limit + Duration::from_secs(5)))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (what, limit, closed) in results {
        let closed =
            closed.unwrap_or_else(|| panic!("{what}: still open {limit:?} after the timeout"));
        // The reaper looks every 250 ms.
        assert!(
            closed + Duration::from_millis(100) >= limit
                && closed <= limit + Duration::from_millis(1500),
            "{what}: closed after {closed:?}, timeout {limit:?}"
        );
    }
    // A client that keeps its requests coming is served throughout.
    let mut c = TcpStream::connect(addr).unwrap();
    for _ in 0..5 {
        c.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut c), 200);
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// `PUT /v1/sys/unseal` with `body`, on a new connection: status and body text.
fn unseal(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    let head = format!(
        "PUT /v1/sys/unseal HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    let _ = c.write_all(body); // the server may answer (and close) before reading it all
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}

#[test]
fn json_that_would_decode_too_large_is_refused_before_decoding() {
    let srv = start(HttpTimeouts::default());
    // 4 MiB of `0,`: two million values, some 500 MiB as a tree.
    let bomb = format!("[{}0]", "0,".repeat(2 << 20));
    let t0 = Instant::now();
    let (code, body) = unseal(srv.addr, bomb.as_bytes());
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("request body too large"), "{body}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // A quarter of it decodes (and is then refused for what it is).
    let small = format!("[{}0]", "0,".repeat(1 << 19));
    let (code, body) = unseal(srv.addr, small.as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("cannot unmarshal array"), "{body}");
}

#[test]
fn large_bodies_at_once_share_the_memory_budget() {
    let srv = start(HttpTimeouts::default());
    // Each 30 MiB body reserves itself and its decoded copy: four fit in the budget.
    let size = 30 << 20;
    let fit = REQUEST_MEMORY / (2 * size + (64 << 10));
    let clients = fit + 3;
    // (Padded with blanks: cheap to decode, and then refused as an invalid key.)
    let mut body = b"{\"key\":\"x\"".to_vec();
    body.resize(size - 1, b' ');
    body.push(b'}');
    let body = Arc::new(body);
    let head = format!(
        "PUT /v1/sys/unseal HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n"
    );
    let codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|_| {
                let (body, head) = (body.clone(), head.clone());
                s.spawn(move || {
                    let mut c = TcpStream::connect(srv.addr).unwrap();
                    c.write_all(head.as_bytes()).unwrap();
                    c.write_all(&body[..1024]).unwrap();
                    // Admitted requests wait for the rest of their body; the others are
                    // refused once BUDGET_WAIT is over.
                    c.set_read_timeout(Some(BUDGET_WAIT + Duration::from_secs(3)))
                        .unwrap();
                    let mut first = [0u8; 12];
                    if c.read_exact(&mut first).is_ok() {
                        return String::from_utf8_lossy(&first[9..12]).parse().unwrap_or(0);
                    }
                    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    c.write_all(&body[1024..]).unwrap();
                    let mut out = Vec::new();
                    let _ = c.read_to_end(&mut out);
                    let text = String::from_utf8_lossy(&out).to_string();
                    text.split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Served: read whole, then refused as an invalid key (400).
    let refused = codes.iter().filter(|&&c| c == 429).count();
    let served = codes.iter().filter(|&&c| c == 400).count();
    assert_eq!((served, refused), (fit, clients - fit), "{codes:?}");
}
