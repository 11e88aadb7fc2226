//! Link Ceph's client libraries (Debian: librbd-dev, librados-dev).
fn main() {
    println!("cargo:rustc-link-lib=dylib=rbd");
    println!("cargo:rustc-link-lib=dylib=rados");
}
