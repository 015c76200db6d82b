//! `cargo bench --bench registry`: pull and push against `skopeo copy`,
//! on one local registry (Debian's `docker-registry` on 127.0.0.1) and one
//! image of 100 MB in 10 layers, cold; then the requests a no-change
//! rebuild of `FROM 127.0.0.1:PORT/img` makes. Figures, not assertions.
//! Skips with a notice when `docker-registry` or `skopeo` is missing.

#[path = "../tests/it/harness/mod.rs"]
mod harness;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::registry::Registry;

const LAYERS: usize = 10;
const LAYER_BYTES: usize = 10 << 20;

/// Requests in the registry's access log.
fn requests(reg: &Registry) -> usize {
    reg.all_requests().len()
}

/// Incompressible bytes (a real image's layers are mostly compressed
/// already), deterministic.
fn noise(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

fn wbuild(args: &[&str], dir: &Path, root: &Path) -> Duration {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_wbuild"))
        .args(args)
        .current_dir(dir)
        .env("WBUILD_ROOT", root)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "wbuild {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed()
}

fn skopeo(args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let Some(reg) = Registry::start() else {
        println!("registry bench skipped: docker-registry or skopeo is not installed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();

    // The image: 10 layers of 10 MB, built by wbuild into an OCI layout.
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let mut df = String::from("FROM scratch\n");
    let mut buf = vec![0u8; LAYER_BYTES];
    for i in 0..LAYERS {
        noise(&mut buf, i as u64 + 1);
        fs::write(ctx.join(format!("l{i}")), &buf).unwrap();
        df.push_str(&format!("COPY l{i} /data/l{i}\n"));
    }
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    let store = tmp.path().join("store");
    wbuild(
        &[
            "build",
            "--progress",
            "quiet",
            "-o",
            "type=oci,tar=false,dest=../layout",
            ".",
        ],
        &ctx,
        &store,
    );
    let layout = tmp.path().join("layout");
    println!(
        "image: {LAYERS} layers, {} MB",
        LAYERS * LAYER_BYTES / (1 << 20)
    );

    // Push, cold (an empty repository): skopeo from the layout, wbuild
    // from its store (the image was just built there).
    let sk_push = skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}", layout.display()),
        &format!("docker://{}/sk/img:1", reg.addr),
    ]);
    let name = format!("{}/wb/img:1", reg.addr);
    let wb_push = wbuild(
        &["build", "--progress", "quiet", "-t", &name, "--push", "."],
        &ctx,
        &store,
    );
    println!(
        "push, cold:   skopeo copy {}   wbuild --push {} (a cached build, then the push)",
        ms(sk_push),
        ms(wb_push)
    );

    // Pull, cold: skopeo into a new layout, wbuild into a new store.
    let sk_pull = skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/sk/img:1", reg.addr),
        &format!("oci:{}", tmp.path().join("pulled").display()),
    ]);
    let from = tmp.path().join("from");
    fs::create_dir_all(&from).unwrap();
    fs::write(
        from.join("Dockerfile"),
        format!("FROM {}/sk/img:1\n", reg.addr),
    )
    .unwrap();
    let store2 = tmp.path().join("store2");
    let wb_pull = wbuild(&["build", "--progress", "quiet", "."], &from, &store2);
    println!(
        "pull, cold:   skopeo copy {}   wbuild FROM {} (pull into a new store)",
        ms(sk_pull),
        ms(wb_pull)
    );

    // A no-change rebuild: its requests to the registry.
    let before = requests(&reg);
    let again = wbuild(&["build", "--progress", "quiet", "."], &from, &store2);
    let after = requests(&reg);
    println!(
        "no-change rebuild of FROM 127.0.0.1:PORT/img: {} HTTP request(s), {}",
        after - before,
        ms(again)
    );
    let before = requests(&reg);
    wbuild(
        &["build", "--progress", "quiet", "--pull=false", "."],
        &from,
        &store2,
    );
    println!(
        "the same with --pull=false: {} HTTP request(s)",
        requests(&reg) - before
    );
    // A second push of the unchanged image.
    let before = requests(&reg);
    let again = wbuild(
        &["build", "--progress", "quiet", "-t", &name, "--push", "."],
        &ctx,
        &store,
    );
    println!(
        "second push, unchanged: {} HTTP request(s), {}",
        requests(&reg) - before,
        ms(again)
    );
}
