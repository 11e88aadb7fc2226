//! The RBD store's on-image layout is librbd's own LUKS2, checked both ways on a real cluster
//! (scripts/ceph/dev-cluster.sh): an image our engine formats opens in librbd
//! (`encryption_load` through python3-rbd) and, after `rbd export`, in cryptsetup; an image
//! librbd formatted opens in our engine. And no plaintext written through our engine is in
//! any RADOS object of the image.
//! Without Ceph the tests say so and pass, unless STRONGROOM_CEPH_REQUIRED=1 (scripts/test.sh).

use std::io::Write;
use std::process::{Command, Stdio};
use strongroom_luks::xts::Backend;
use strongroom_luks::{FormatParams, Volume};
use strongroom_rbd::dev::DevCluster;
use strongroom_rbd::{Cluster, Features, IoCtx};
use strongroom_volume::RbdDevice;

const MIB: u64 = 1 << 20;
/// librbd's python binding is Debian's, for Debian's interpreter.
const PY: &str = "/usr/bin/python3";

fn setup(image: &str) -> Option<(&'static DevCluster, IoCtx)> {
    let dev = DevCluster::for_tests()?;
    let c = Cluster::from_conf(Some(&dev.conf()), "admin").unwrap();
    let io = c.ioctx(dev.pool(), "", false).unwrap();
    io.create(image, 64 * MIB, Features::default_for_volumes())
        .unwrap();
    Some((dev, io))
}

fn marker(tag: &str) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..512 {
        m.extend_from_slice(format!("STRONGROOM-RBD-MARKER-{tag}-{i:05}|").as_bytes());
    }
    m
}

/// Run a python3-rbd script with the passphrase on stdin (never in argv or environment).
fn python(dev: &DevCluster, script: &str, args: &[&str], passphrase: &[u8]) -> Vec<u8> {
    let mut child = Command::new(PY)
        .arg("-c")
        .arg(script)
        .arg(dev.conf())
        .arg(dev.pool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (python3-rbd)");
    child.stdin.take().unwrap().write_all(passphrase).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3-rbd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const PY_READ: &str = r#"
import sys, rados, rbd
conf, pool, name, off, n = sys.argv[1:6]
pw = sys.stdin.buffer.read()
c = rados.Rados(conffile=conf); c.connect(timeout=20)
io = c.open_ioctx(pool)
with rbd.Image(io, name) as img:
    img.encryption_load(rbd.RBD_ENCRYPTION_FORMAT_LUKS2, pw)
    sys.stdout.buffer.write(img.read(int(off), int(n)))
io.close(); c.shutdown()
"#;

const PY_FORMAT_WRITE: &str = r#"
import sys, rados, rbd
conf, pool, name, off, path = sys.argv[1:6]
pw = sys.stdin.buffer.read()
data = open(path, "rb").read()
c = rados.Rados(conffile=conf); c.connect(timeout=20)
io = c.open_ioctx(pool)
with rbd.Image(io, name) as img:
    img.encryption_format(rbd.RBD_ENCRYPTION_FORMAT_LUKS2, pw, rbd.RBD_ENCRYPTION_ALGORITHM_AES256)
with rbd.Image(io, name) as img:
    img.encryption_load(rbd.RBD_ENCRYPTION_FORMAT_LUKS2, pw)
    img.write(data, int(off)); img.flush()
io.close(); c.shutdown()
"#;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn our_format_opens_in_librbd_and_in_cryptsetup_and_keeps_no_plaintext() {
    let Some((dev, io)) = setup("interop-ours") else {
        return;
    };
    let secret = b"0123456789abcdef0123456789abcdef-interop".to_vec();
    let data = marker("ours");
    {
        let d = RbdDevice::new(io.open("interop-ours").unwrap());
        let (vol, _vk) = Volume::format(&d, &FormatParams::default(), &secret).unwrap();
        let u = vol.unlock(&secret, None, false).unwrap();
        let crypt = vol.crypt_device(&d, &u, Backend::Auto).unwrap();
        crypt.write(5 * MIB + 4096, &data).unwrap();
        crypt.flush().unwrap();
    }
    // librbd reads our plaintext through its own LUKS2
    let got = python(
        dev,
        PY_READ,
        &[
            "interop-ours",
            &(5 * MIB + 4096).to_string(),
            &data.len().to_string(),
        ],
        &secret,
    );
    assert!(got == data, "librbd read what our engine wrote");
    let wrong = Command::new(PY)
        .args(["-c", PY_READ])
        .arg(dev.conf())
        .args([dev.pool(), "interop-ours", "0", "16"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "an empty passphrase must not open it"
    );

    // rbd export + cryptsetup: the header parses and the passphrase opens a keyslot
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("export.img");
    dev.tool(
        "rbd",
        &[
            "export",
            &format!("{}/interop-ours", dev.pool()),
            file.to_str().unwrap(),
        ],
    )
    .unwrap();
    let dump = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(&file)
        .output()
        .expect("cryptsetup");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
    assert_eq!(meta["segments"]["0"]["offset"], "16777216");
    assert_eq!(meta["segments"]["0"]["sector_size"], 4096);
    assert_eq!(meta["segments"]["0"]["encryption"], "aes-xts-plain64");
    let mut t = Command::new("cryptsetup")
        .args(["luksOpen", "--test-passphrase", "--key-file", "-"])
        .arg(&file)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    t.stdin.take().unwrap().write_all(&secret).unwrap();
    let t = t.wait_with_output().unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    assert!(!contains(&std::fs::read(&file).unwrap(), &data[..64]));

    // and RADOS holds ciphertext only
    let objects = dev.object_data("interop-ours").unwrap();
    assert!(
        !contains(&objects, &data[..64]),
        "plaintext marker in RADOS object data"
    );
    assert!(
        contains(&objects, b"LUKS\xba\xbe"),
        "the header is in the objects read"
    );
    io.remove("interop-ours").unwrap();
}

#[test]
fn librbd_format_opens_in_our_engine() {
    let Some((dev, io)) = setup("interop-librbd") else {
        return;
    };
    let secret = b"librbd-made-passphrase".to_vec();
    let data = marker("librbd");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    std::fs::write(&path, &data).unwrap();
    // librbd's format picks argon2id with its own benchmark (~13 s here)
    python(
        dev,
        PY_FORMAT_WRITE,
        &[
            "interop-librbd",
            &(3 * MIB).to_string(),
            path.to_str().unwrap(),
        ],
        &secret,
    );
    let d = RbdDevice::new(io.open("interop-librbd").unwrap());
    let vol = Volume::open(&d).unwrap();
    assert!(vol.unlock(b"not it", None, false).is_err());
    let u = vol.unlock(&secret, None, false).unwrap();
    let crypt = vol.crypt_device(&d, &u, Backend::Auto).unwrap();
    let mut back = vec![0; data.len()];
    crypt.read(3 * MIB, &mut back).unwrap();
    assert!(back == data, "our engine reads what librbd wrote");
    drop((crypt, vol));
    drop(d);
    io.remove("interop-librbd").unwrap();
}
