//! `strongroom luks benchmark`: the engine's own XTS cost, as `cryptsetup benchmark` reports
//! the kernel's: encryption and decryption of 4 KiB sectors on one thread, per second of that
//! thread's CPU time (so other load on the machine does not skew it). The benchmarks read
//! its `--json` output as the cipher's CPU cost per GB next to a whole stack's.

use std::time::{Duration, Instant};

use clap::Args;
use strongroom_luks::xts::{plain64_iv, Backend, Xts};

#[derive(Args)]
pub struct BenchmarkArgs {
    /// Seconds of measurement per direction.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// XTS key size in bits (512: AES-256-XTS, LUKS2's default; 256: AES-128-XTS).
    #[arg(long, default_value_t = 512)]
    key_size: u16,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

const SECTOR: usize = 4096;
const BUFFER: usize = 1 << 20;

/// Nanoseconds this thread has spent on a CPU (`/proc/thread-self/schedstat`, first field).
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/thread-self/schedstat: {text:?}"))
}

/// GB (10^9 bytes) processed per CPU-second in one direction.
fn measure(xts: &Xts, encrypt: bool, seconds: f64) -> anyhow::Result<f64> {
    let mut buf = vec![0x5au8; BUFFER];
    let (start, cpu0) = (Instant::now(), thread_cpu_ns()?);
    let mut bytes = 0u64;
    let mut sector = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        xts.sectors(&mut buf, SECTOR, encrypt, |i| plain64_iv(sector + i as u64))?;
        sector += (BUFFER / SECTOR) as u64;
        bytes += BUFFER as u64;
    }
    let cpu_s = (thread_cpu_ns()? - cpu0) as f64 / 1e9;
    Ok(bytes as f64 / 1e9 / cpu_s.max(1e-9))
}

pub fn run(a: BenchmarkArgs) -> anyhow::Result<i32> {
    if !(a.seconds > 0.0 && a.seconds <= 600.0) {
        anyhow::bail!("--seconds must be in (0, 600], not {}", a.seconds);
    }
    if a.key_size != 256 && a.key_size != 512 {
        anyhow::bail!("--key-size must be 256 or 512, not {}", a.key_size);
    }
    // A benchmark key, not a secret: its halves differ (XTS refuses equal halves).
    let key: Vec<u8> = (0..a.key_size / 8).map(|i| i as u8).collect();
    let xts = Xts::new(&key, Backend::Auto)?;
    let backend = format!("{:?}", xts.backend()).to_lowercase();
    let enc = measure(&xts, true, a.seconds)?;
    let dec = measure(&xts, false, a.seconds)?;
    if a.json {
        let j = serde_json::json!({
            "cipher": "aes-xts-plain64",
            "key_bits": a.key_size,
            "sector_size": SECTOR,
            "backend": backend,
            "encrypt_gb_per_cpu_s": round3(enc),
            "decrypt_gb_per_cpu_s": round3(dec),
            "encrypt_cpu_s_per_gb": round3(1.0 / enc),
            "decrypt_cpu_s_per_gb": round3(1.0 / dec),
        });
        println!("{j}");
    } else {
        println!("# Tests are approximate, one thread, per second of its CPU time ({backend}).");
        println!("#     Algorithm |       Key |      Encryption |      Decryption");
        println!(
            "{:>15} {:>10}b {:>12.1} MiB/s {:>12.1} MiB/s",
            "aes-xts",
            a.key_size,
            enc * 1e9 / 1048576.0,
            dec * 1e9 / 1048576.0
        );
    }
    Ok(0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
