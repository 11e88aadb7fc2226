//! Sector-encryption and format/unlock benchmark (a small harness, not criterion; run by
//! `bench/luks.sh`). Prints machine-readable lines:
//!   xts auto=B   (the backend `Backend::Auto` picks here)
//!   xts backend=B threads=N op=encrypt|decrypt gbps=X
//!   format_unlock strongroom_ms=X
//! GB/s = 10^9 bytes per second, 4 KiB sectors, 1 MiB processed per call, buffers reused.
//! `gbps` is per thread-CPU-second summed over threads (what `openssl speed` reports by default:
//! CPU user time, unaffected by other load on a shared machine); `wall_gbps` is wall-clock.

use std::time::{Duration, Instant};
use strongroom_luks::cipher::SectorCipher;
use strongroom_luks::format::FormatParams;
use strongroom_luks::xts::Backend;
use strongroom_luks::{FileDevice, Volume};

const SECTOR: usize = 4096;
const BUF: usize = 1 << 20;

fn thread_cpu_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Returns (CPU-time based GB/s summed over threads, wall-clock GB/s).
fn run(cipher: &SectorCipher, threads: usize, encrypt: bool, dur: Duration) -> (f64, f64) {
    let start = Instant::now();
    let per: Vec<(u64, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut buf = vec![t as u8; BUF];
                    let mut bytes = 0u64;
                    let mut iv = (t as u64) << 40;
                    let cpu0 = thread_cpu_secs();
                    while start.elapsed() < dur {
                        for _ in 0..16 {
                            cipher.process(&mut buf, SECTOR, iv, encrypt).unwrap();
                            iv += (BUF / 512) as u64;
                            bytes += BUF as u64;
                        }
                    }
                    (bytes, thread_cpu_secs() - cpu0)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let total: u64 = per.iter().map(|p| p.0).sum();
    let cpu: f64 = per.iter().map(|&(b, c)| b as f64 / c.max(1e-9)).sum();
    (cpu / 1e9, total as f64 / wall / 1e9)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let secs: f64 = std::env::var("LUKS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let dur = Duration::from_secs_f64(secs);
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut key = [0u8; 64];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    let auto = SectorCipher::new("aes-xts-plain64", &key, Backend::Auto)
        .ok()
        .and_then(|c| c.xts_backend());
    let name_of = |b: Backend| match b {
        Backend::Vaes => "vaes",
        Backend::AwsLc => "awslc",
        Backend::RustCrypto => "rustcrypto",
        Backend::Auto => "auto",
    };
    println!("xts auto={}", auto.map(name_of).unwrap_or("none"));
    let mut backends = vec![Backend::AwsLc, Backend::RustCrypto];
    if strongroom_luks::xts::vaes_available() {
        backends.insert(0, Backend::Vaes);
    }
    for be in backends {
        let name = name_of(be);
        let c = SectorCipher::new("aes-xts-plain64", &key, be).unwrap();
        let mut threads = vec![1];
        if ncpu > 1 {
            threads.push(ncpu);
        }
        for t in threads {
            for (op, enc) in [("encrypt", true), ("decrypt", false)] {
                let (g, w) = run(&c, t, enc, dur);
                println!("xts backend={name} threads={t} op={op} gbps={g:.2} wall_gbps={w:.2}");
            }
        }
    }
    // Format + unlock with the default (deterministic) profile on a fresh file.
    let dir = tempfile::tempdir().unwrap();
    let mut times = Vec::new();
    for i in 0..7 {
        let p = dir.path().join(format!("v{i}.img"));
        std::fs::File::create(&p)
            .unwrap()
            .set_len(17 << 20)
            .unwrap();
        let t0 = Instant::now();
        let (vol, _) = Volume::format(
            FileDevice::open(&p, true).unwrap(),
            &FormatParams::default(),
            b"bench",
        )
        .unwrap();
        drop(vol);
        let vol = Volume::open(FileDevice::open(&p, false).unwrap()).unwrap();
        vol.unlock(b"bench", None, false).unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("format_unlock strongroom_ms={:.1}", times[times.len() / 2]);
}
