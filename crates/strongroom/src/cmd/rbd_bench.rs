//! `strongroom volume bench-rbd` (hidden; driven by bench/rbd.sh): library-level RBD
//! throughput, no FUSE and no filesystem, one implementation per process so that the process's
//! CPU time is that implementation's:
//!
//! * `strongroom`: our LUKS2 engine over librbd: writes encrypted in this process (one pass,
//!   plaintext → ciphertext buffer) then `rbd_aio_write`; reads `rbd_aio_read` then decrypted
//!   in place on the thread that waited for them (never on the luks thread pool); buffers are
//!   reused, as an engine keeps its own;
//! * `librbd-luks2`: librbd's own LUKS2 (`encryption_load`) on the same on-image layout;
//! * `plain`: unencrypted librbd.
//!
//! All with the same block size and queue depth (asynchronous requests in flight). `prepare`
//! formats the image with our engine (PBKDF2: librbd loads it in milliseconds) and fills the
//! span, so reads read written data; `provision` times create + format + open.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use strongroom_luks::volume::Unlocked;
use strongroom_luks::xts::Backend;
use strongroom_luks::{CryptDevice, FormatParams, Volume};
use strongroom_rbd::{Cluster, Features, Image, IoCtx};
use strongroom_volume::RbdDevice;
use zeroize::Zeroizing;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum Impl {
    Strongroom,
    LibrbdLuks2,
    Plain,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum Workload {
    SeqWrite1m,
    SeqRead1m,
    RandWrite4k,
    RandRead4k,
}

impl Workload {
    fn block(self) -> usize {
        match self {
            Workload::SeqWrite1m | Workload::SeqRead1m => 1 << 20,
            _ => 4096,
        }
    }
    fn write(self) -> bool {
        matches!(self, Workload::SeqWrite1m | Workload::RandWrite4k)
    }
    fn random(self) -> bool {
        matches!(self, Workload::RandWrite4k | Workload::RandRead4k)
    }
}

#[derive(Args)]
pub struct BenchRbdArgs {
    /// ceph.conf naming the monitors and the keyring of the cluster to benchmark.
    #[arg(long)]
    ceph_conf: PathBuf,
    /// Pool of the benchmark image.
    #[arg(long, default_value = "rbd")]
    pool: String,
    /// The benchmark image (made by `--mode prepare`; its payload follows a 16 MiB LUKS2 area).
    #[arg(long)]
    image: String,
    /// File holding the LUKS2 passphrase (never an argument).
    #[arg(long)]
    key_file: PathBuf,
    /// `prepare` (format + fill), `run` (one workload), `provision` (timings).
    #[arg(long, value_enum)]
    mode: Mode,
    /// Which implementation moves the bytes: our engine over librbd, librbd's own LUKS2
    /// (`encryption_load`), or unencrypted librbd.
    #[arg(long, value_enum, default_value = "plain")]
    imp: Impl,
    /// Block size and pattern: sequential 1 MiB or random 4 KiB, write or read.
    #[arg(long, value_enum, default_value = "seq-write1m")]
    workload: Workload,
    /// Requests in flight (librbd aio).
    #[arg(long, default_value_t = 16)]
    qd: usize,
    /// How long a `run` lasts.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Bytes of the payload the workloads use (from its start).
    #[arg(long, default_value_t = 512 << 20)]
    span: u64,
    /// `provision`: how many volumes to time.
    #[arg(long, default_value_t = 20)]
    count: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Prepare,
    Run,
    Provision,
}

/// This process's CPU time (user + system) in seconds (USER_HZ is 100 on Linux).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

pub fn run(a: BenchRbdArgs) -> anyhow::Result<i32> {
    let secret = super::luks::read_secret(&a.key_file).context("reading the key file")?;
    let c = Cluster::from_conf(Some(&a.ceph_conf), "admin")?;
    let io = c.ioctx(&a.pool, "", false)?;
    match a.mode {
        Mode::Prepare => prepare(&a, &io, &secret),
        Mode::Run => workload(&a, &io, &secret),
        Mode::Provision => provision(&a, &io, &secret),
    }
    .map(|()| 0)
}

fn format(img: &Arc<Image>, secret: &[u8]) -> anyhow::Result<()> {
    let d = RbdDevice::shared(img.clone());
    Volume::format(&d, &FormatParams::default(), secret)?;
    Ok(())
}

fn prepare(a: &BenchRbdArgs, io: &IoCtx, secret: &[u8]) -> anyhow::Result<()> {
    io.create(
        &a.image,
        a.span + (16 << 20),
        Features::default_for_volumes(),
    )?;
    let img = Arc::new(io.open(&a.image)?);
    format(&img, secret)?;
    let (vol, u) = unlock(&img, secret)?;
    let crypt = vol.crypt_device(RbdDevice::shared(img.clone()), &u, Backend::Auto)?;
    let chunk = vec![0x5au8; 4 << 20];
    let mut pos = 0;
    while pos < a.span {
        let n = (a.span - pos).min(chunk.len() as u64) as usize;
        crypt.write(pos, &chunk[..n])?;
        pos += n as u64;
    }
    crypt.flush()?;
    Ok(())
}

fn unlock(img: &Arc<Image>, secret: &[u8]) -> anyhow::Result<(Volume<RbdDevice>, Unlocked)> {
    let vol = Volume::open(RbdDevice::shared(img.clone()))?;
    let u = vol.unlock(secret, None, false)?;
    Ok((vol, u))
}

/// The offsets a workload visits, in order (sequential wraps around; random is a fixed
/// xorshift sequence, the same for every implementation).
struct Offsets {
    next: u64,
    state: u64,
    block: u64,
    blocks: u64,
    random: bool,
}

impl Iterator for Offsets {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.random {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            return Some((self.state % self.blocks) * self.block);
        }
        let o = self.next;
        self.next = (self.next + self.block) % (self.blocks * self.block);
        Some(o)
    }
}

fn workload(a: &BenchRbdArgs, io: &IoCtx, secret: &[u8]) -> anyhow::Result<()> {
    let img = Arc::new(io.open(&a.image)?);
    let w = a.workload;
    let (crypt, base) = match a.imp {
        Impl::Strongroom => {
            let (vol, u) = unlock(&img, secret)?;
            let seg = vol.data_segment()?;
            let c = vol.crypt_device(RbdDevice::shared(img.clone()), &u, Backend::Auto)?;
            (Some(c), seg.offset)
        }
        Impl::LibrbdLuks2 => {
            img.encryption_load_luks2(secret)?;
            (None, 0)
        }
        Impl::Plain => (None, 16 << 20),
    };
    let block = w.block();
    let mut offs = Offsets {
        next: 0,
        state: 0x9e37_79b9_7f4a_7c15,
        block: block as u64,
        blocks: a.span / block as u64,
        random: w.random(),
    };
    if offs.blocks == 0 {
        bail!("--span is smaller than one block");
    }
    let template = vec![0xa5u8; block];
    let mut bytes = 0u64;
    // A finished request: counted; a read decrypted in place, here on the thread that waited
    // for it. Serially: the luks thread pool's hand-offs, wake-ups and spinning cost more CPU
    // than the decryption itself (seq-read 1 MiB: extra 0.19 -> 0.08 CPU-s/GB, the cipher's own
    // cost being 0.07). (Decrypting in librbd's completion callback instead, in the bytes its
    // thread had just copied in, measured the same CPU.)
    let mut finish = |(ofs, mut buf): (u64, Vec<u8>)| -> anyhow::Result<Vec<u8>> {
        bytes += buf.len() as u64;
        if let (Some(c), false) = (&crypt, w.write()) {
            c.crypt_sectors_serial(ofs - base, &mut buf, false)?;
        }
        Ok(buf)
    };
    let mut q = img.aio(a.qd);
    // Finished requests' buffers are reused (every byte is overwritten: by the read, by the
    // plaintext copy or by the encryption), as an engine keeps its buffers.
    let mut spare: Vec<Vec<u8>> = Vec::with_capacity(a.qd + 1);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < a.seconds {
        let pos = offs.next().unwrap_or(0);
        let mut buf = spare.pop().unwrap_or_else(|| vec![0u8; block]);
        let done = if w.write() {
            match &crypt {
                Some(c) => c.crypt_sectors_from(pos, &template, &mut buf, true)?,
                None => buf.copy_from_slice(&template),
            }
            q.write(base + pos, buf)?
        } else {
            q.read(base + pos, buf)?
        };
        if let Some(d) = done {
            spare.push(finish(d)?);
        }
    }
    while let Some(d) = q.wait_oldest()? {
        finish(d)?;
    }
    drop(q);
    if w.write() {
        img.flush()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "imp={:?} workload={:?} mbps={:.1} cpu_s={:.3} bytes={bytes} seconds={secs:.2}",
        a.imp,
        w,
        bytes as f64 / secs / 1e6,
        cpu
    );
    Ok(())
}

/// create + format + open (unlock, one read), `count` times with our engine, then once with
/// librbd's own format (argon2id with its benchmark, as `rbd encryption format` does).
fn provision(a: &BenchRbdArgs, io: &IoCtx, secret: &[u8]) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(a.count);
    for i in 0..a.count {
        let name = format!("{}-{i}", a.image);
        let t0 = Instant::now();
        io.create(&name, 64 << 20, Features::default_for_volumes())?;
        let img = Arc::new(io.open(&name)?);
        format(&img, secret)?;
        let (vol, u) = unlock(&img, secret)?;
        let crypt: CryptDevice<_> =
            vol.crypt_device(RbdDevice::shared(img.clone()), &u, Backend::Auto)?;
        let mut b = Zeroizing::new(vec![0u8; 4096]);
        crypt.read(0, &mut b)?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        drop((crypt, vol, img));
        io.remove(&name)?;
    }
    times.sort_by(|x, y| x.total_cmp(y));
    let p50 = times[(times.len() - 1) / 2];
    let name = format!("{}-librbd", a.image);
    io.create(&name, 64 << 20, Features::default_for_volumes())?;
    let img = io.open(&name)?;
    let t0 = Instant::now();
    img.encryption_format_luks2(secret)?;
    let librbd_ms = t0.elapsed().as_secs_f64() * 1000.0;
    drop(img);
    io.remove(&name)?;
    println!(
        "rbd provision p50_ms={p50:.1} librbd_format_ms={librbd_ms:.0} count={} kms=none",
        a.count
    );
    Ok(())
}
