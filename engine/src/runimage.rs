//! `wbuild run IMAGE [ARGS]`: runs a built image's ENTRYPOINT/CMD in the
//! same sandbox as RUN steps, with this terminal's stdio, for trying what
//! was built. The rootfs is a throwaway copy: read-only unless `--rw`, and
//! even then its changes are discarded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::digest::Digest;
use crate::env;
use crate::fs::layer::{Compression, LayerInfo};
use crate::fs::snapshot::Snapshot;
use crate::oci::{ImageConfig, ImageManifest};
use crate::sandbox;
use crate::store::Store;

/// Why an image could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("image {0:?} is not in the store: build it with -t {0} and no --output (see `wbuild images`)")]
    NoSuchImage(String),
    #[error("image {image:?}: its {what} is not valid JSON: {error}")]
    BadJson {
        image: String,
        what: &'static str,
        error: serde_json::Error,
    },
    #[error("image {0:?} is an index with no WebAssembly image (see its platforms with skopeo inspect --raw)")]
    NoWasmEntry(String),
    #[error("layer {digest} has an unsupported media type {media_type}")]
    MediaType { digest: Digest, media_type: String },
    #[error("image {0} has no ENTRYPOINT or CMD: give the program to run after the image name")]
    NoCommand(String),
    #[error("-v {volume:?}: {problem}")]
    Volume { volume: String, problem: String },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Snapshot(#[from] crate::fs::snapshot::SnapshotError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
}

type Result<T> = std::result::Result<T, RunError>;

/// What `wbuild run` was asked.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// A name from `wbuild images`, or a manifest digest (or its start).
    pub image: String,
    pub args: Vec<String>,
    pub rw: bool,
    /// `--wbox-shell`: what runs an image's own Linux programs.
    pub native: sandbox::Native,
    /// `HOST:GUEST[:ro]`.
    pub volumes: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Duration,
    pub memory: u64,
}

/// Finds an image in the store by name or manifest digest.
pub fn find_image(store: &Store, image: &str) -> Result<(ImageManifest, ImageConfig)> {
    let (_, manifest) = store
        .find_image(image)?
        .ok_or_else(|| RunError::NoSuchImage(image.to_string()))?;
    let bad = |what: &'static str| {
        move |error| RunError::BadJson {
            image: image.to_string(),
            what,
            error,
        }
    };
    let mut bytes = store.read_blob(&manifest)?;
    // An index (several platforms): its WebAssembly entry.
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(bad("manifest"))?;
    if let Some(list) = v["manifests"].as_array() {
        let wasm = list
            .iter()
            .find(|m| m["platform"]["architecture"] == "wasm")
            .and_then(|m| m["digest"].as_str())
            .and_then(|d| d.parse::<crate::digest::Digest>().ok())
            .ok_or_else(|| RunError::NoWasmEntry(image.to_string()))?;
        bytes = store.read_blob(&wasm)?;
    }
    let m: ImageManifest = serde_json::from_slice(&bytes).map_err(bad("manifest"))?;
    let c: ImageConfig =
        serde_json::from_slice(&store.read_blob(&m.config.digest)?).map_err(bad("config"))?;
    Ok((m, c))
}

fn layer_info(d: &crate::oci::Descriptor, diff_id: &crate::oci::DiffId) -> Result<LayerInfo> {
    let compression = match d.media_type.as_str() {
        t if t.ends_with("+gzip") || t.ends_with(".tar.gzip") => Compression::Gzip,
        t if t.ends_with("+zstd") || t.ends_with(".tar.zstd") => Compression::Zstd,
        t if t.ends_with(".tar") => Compression::Uncompressed,
        other => {
            return Err(RunError::MediaType {
                digest: d.digest.clone(),
                media_type: other.to_string(),
            })
        }
    };
    Ok(LayerInfo {
        diff_id: diff_id.clone(),
        digest: d.digest.clone(),
        size: d.size,
        media_type: d.media_type.clone(),
        compression,
    })
}

/// Runs the image; returns the program's exit code.
pub fn run(store: &Store, req: &RunRequest) -> Result<i32> {
    let (manifest, config) = find_image(store, &req.image)?;
    let layers = manifest
        .layers
        .iter()
        .zip(config.rootfs.diff_ids.iter())
        .map(|(d, id)| layer_info(d, id))
        .collect::<Result<Vec<_>>>()?;
    let work = store.temp_dir("run-image-")?;
    let mut snap = Snapshot::materialize(store, &layers, work.path())?;
    let rc = &config.config;
    let mut argv: Vec<String> = rc.entrypoint.clone().unwrap_or_default();
    if req.args.is_empty() {
        argv.extend(rc.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(req.args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(RunError::NoCommand(req.image.clone()));
    }
    let mut image_env = rc.env_map();
    for e in &req.env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        image_env.insert(k.to_string(), v.to_string());
    }
    let cwd = env::cwd_of(&rc.working_dir);
    let mut env = env::program_env(image_env, &Default::default(), &Default::default(), &cwd);
    env::with_home(&mut env, &snap.dir, &rc.user);
    let lookup_path = env.get("PATH").cloned().unwrap_or_default();
    let env: Vec<(String, String)> = env.into_iter().collect();
    let (program, path, argv) = sandbox::resolve_program(&snap.dir, &argv, &cwd, &lookup_path)?;
    let guest = sandbox::guest_for(&program, &path, argv, req.native)?;
    let argv = guest.argv;
    let bytes = guest.module;
    let cache = store.compiled_dir()?;
    let module = sandbox::load_program(&bytes, &argv[0], Some(&cache))?;
    let cache = cache.clone();
    let mut preopens = vec![sandbox::Preopen {
        host: work.path().to_path_buf(),
        guest: "/".into(),
        writable: req.rw,
    }];
    for v in &req.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (host, guest, writable) = match parts.as_slice() {
            [h, g] => (*h, *g, true),
            [h, g, "ro"] => (*h, *g, false),
            [h, g, "rw"] => (*h, *g, true),
            _ => return Err(volume(v, "write HOST:GUEST[:ro]".into())),
        };
        let host = PathBuf::from(host);
        if !host.is_dir() {
            return Err(volume(v, format!("{} is not a directory", host.display())));
        }
        if !guest.starts_with('/') {
            return Err(volume(v, "the guest path must be absolute".into()));
        }
        if crate::fs::manifest_path(guest).is_empty() {
            return Err(volume(
                v,
                "cannot mount over / (the image's rootfs); mount below it, e.g. HOST:/data".into(),
            ));
        }
        let mount_point = work.path().join(crate::fs::manifest_path(guest));
        std::fs::create_dir_all(&mount_point).map_err(|error| RunError::Io {
            what: format!("-v {v}: creating {guest} in the rootfs"),
            error,
        })?;
        preopens.push(sandbox::Preopen {
            host,
            guest: guest.to_string(),
            writable,
        });
    }
    let spec = sandbox::RunSpec {
        program: Arc::new(bytes),
        program_name: argv[0].clone(),
        argv,
        env,
        cwd,
        preopens,
        clock: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        seed: Digest::of(format!("{:?}", std::time::SystemTime::now()).as_bytes())
            .hex()
            .as_bytes()
            .to_vec(),
        timeout: req.timeout,
        memory: req.memory,
        limit_flags: sandbox::LimitFlags::RUN,
        output_limit: 1 << 20,
        inherit_stdio: true,
    };
    let mut ctx = sandbox::SpawnContext::new(
        Some(work.path().to_path_buf()),
        Some(cache),
        std::time::Instant::now() + req.timeout,
    );
    ctx.tree.modes = sandbox::mode_exceptions(&snap.manifest);
    ctx.tree.links = std::sync::Mutex::new(std::mem::take(&mut snap.links));
    let ctx = Arc::new(ctx);
    let out = sandbox::run(&spec, &module, ctx, &mut |_| {})?;
    Ok(out.exit_code)
}

fn volume(v: &str, problem: String) -> RunError {
    RunError::Volume {
        volume: v.to_string(),
        problem,
    }
}
