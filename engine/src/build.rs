//! One `wbuild build`, end to end: read and plan the Dockerfile, open the
//! store, scan the context, solve, write the outputs and the metadata.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::digest::Digest;
use crate::export;
use crate::frontend::{dockerignore, instructions};
use crate::fs::layer::{self, Compression, LayerInfo};
use crate::oci::{self, Image};
use crate::plan::{self, BuildPlan, PlanRequest};
use crate::progress::{self, Progress};
use crate::request::{BuildRequest, OutputSpec, ProgressMode, SecretSource};
use crate::solve::{BuildOptions, Solver, StepReport};
use crate::store::{self, Store};

/// What a finished build produced.
pub struct BuildSummary {
    pub image: Image,
    pub steps: Vec<StepReport>,
    pub plan: BuildPlan,
}

/// Reads and types the Dockerfile, with the file name in every error.
pub fn read_dockerfile(path: &Path) -> Result<instructions::Dockerfile> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read Dockerfile {}: check the path, or name it with -f/--file",
            path.display()
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    instructions::parse_dockerfile(&text).map_err(|e| e.in_file(path.display().to_string()).into())
}

/// `SOURCE_DATE_EPOCH`, 0 when unset.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        }),
        _ => Ok(0),
    }
}

fn output_compression(o: &OutputSpec) -> (Compression, i32) {
    let c = o
        .attrs
        .get("compression")
        .and_then(|c| Compression::parse(c))
        .unwrap_or(Compression::Gzip);
    let level = o
        .attrs
        .get("compression-level")
        .and_then(|l| l.parse().ok())
        .unwrap_or(c.default_level());
    (c, level)
}

/// Re-encodes a layer when an output asks for another compression; the
/// diffID stays, the blob digest changes.
fn convert_layer(
    store: &Store,
    l: &LayerInfo,
    c: Compression,
    level: i32,
    force: bool,
) -> Result<LayerInfo> {
    if l.compression == c && !force {
        return Ok(l.clone());
    }
    let mut r = layer::open_layer(store, l)?;
    let mut w = store.blob_writer()?;
    match c {
        Compression::Gzip => {
            let mut e = layer::ParallelGzip::new(&mut w, level.clamp(0, 9) as u32);
            std::io::copy(&mut r, &mut e)?;
            e.finish()?;
        }
        Compression::Zstd => {
            let mut e = layer::zstd_encoder(&mut w, level)?;
            std::io::copy(&mut r, &mut e)?;
            e.finish()?;
        }
        Compression::Uncompressed => {
            std::io::copy(&mut r, &mut w)?;
        }
    }
    let size = w.size();
    let digest = w.commit()?;
    Ok(LayerInfo {
        diff_id: l.diff_id.clone(),
        digest,
        size,
        media_type: c.media_type().to_string(),
        compression: c,
    })
}

/// Reads every `--secret` value.
fn load_secrets(req: &BuildRequest) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for s in &req.secrets {
        let value = match &s.source {
            SecretSource::File(p) => std::fs::read(p)
                .with_context(|| format!("--secret id={}: cannot read {}", s.id, p.display()))?,
            SecretSource::Env(v) => std::env::var(v)
                .with_context(|| {
                    format!(
                        "--secret id={}: the environment variable {v} is not set",
                        s.id
                    )
                })?
                .into_bytes(),
        };
        out.insert(s.id.clone(), value);
    }
    Ok(out)
}

/// Runs a whole build.
pub fn run(req: &BuildRequest) -> Result<BuildSummary> {
    let df = read_dockerfile(&req.dockerfile)?;
    let shown = req.dockerfile.display().to_string();
    let p = plan::plan(
        &df,
        &PlanRequest {
            build_args: req.build_args.clone(),
            target: req.target.clone(),
        },
        &shown,
    )?;
    for s in &req.no_cache_filter {
        if !p
            .stages
            .iter()
            .any(|st| st.name.as_deref() == Some(&s.to_ascii_lowercase()))
        {
            bail!("--no-cache-filter {s:?}: no stage of {shown} has that name");
        }
    }
    // Every output is checked before anything is built.
    let exporters = req
        .outputs
        .iter()
        .map(export::exporter_for)
        .collect::<Result<Vec<_>, _>>()?;
    let ignore = dockerignore::load(&req.context, &req.dockerfile)?;
    let root = match &req.root {
        Some(r) => r.clone(),
        None => store::default_root()?,
    };
    let mut store = Store::open(&root)?;
    store.begin_lease()?;
    let _ = store.clean_tmp();
    let ctx = Context::scan(&req.context, &ignore, Some(&store))?;
    let epoch = source_date_epoch()?;
    let (compression, level) = req
        .outputs
        .first()
        .map(output_compression)
        .unwrap_or((Compression::Gzip, 6));
    let opts = BuildOptions {
        dockerfile: shown.clone(),
        scope: std::fs::canonicalize(&req.dockerfile)
            .unwrap_or_else(|_| req.dockerfile.clone())
            .display()
            .to_string(),
        no_cache: req.no_cache,
        no_cache_filter: req.no_cache_filter.clone(),
        epoch,
        compression,
        level,
        step_timeout: req.step_timeout,
        step_memory: req.step_memory,
        secrets: load_secrets(req)?,
        jobs: req.jobs,
    };
    let tty = req.progress == ProgressMode::Tty
        || (req.progress == ProgressMode::Auto
            && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let mut sink: Box<dyn Progress> = match req.progress {
        ProgressMode::Quiet => Box::new(progress::Quiet),
        ProgressMode::RawJson => Box::new(progress::RawJson::new(std::io::stderr())),
        _ if tty => Box::new(progress::Tty::new()),
        _ => Box::new(progress::Plain::new(std::io::stderr())),
    };
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    let outcome = Solver::build(&store, &ctx, opts, &p, sink.as_mut())?;
    let mut image = outcome.image;

    for (o, exporter) in req.outputs.iter().zip(&exporters) {
        let (c, level) = output_compression(o);
        let force = o.attrs.get("force-compression").map(String::as_str) == Some("true");
        let img = if image.layers.iter().all(|l| l.compression == c) && !force {
            image.clone()
        } else {
            let layers = image
                .layers
                .iter()
                .map(|l| convert_layer(&store, l, c, level, force))
                .collect::<Result<Vec<_>>>()?;
            oci::assemble(&store, image.config.clone(), layers, &image.platform)?
        };
        let cx = export::ExportContext {
            store: &store,
            tags: &req.tags,
            epoch,
        };
        exporter.export(&cx, &img)?;
        if std::ptr::eq(o, &req.outputs[0]) {
            image = img;
        }
    }
    if req.outputs.is_empty() {
        let names: Vec<String> = if req.tags.is_empty() {
            vec![format!("<none>@{}", image.manifest_desc.digest)]
        } else {
            req.tags.clone()
        };
        for n in names {
            store.put_image(
                &n,
                &image.manifest_desc.digest,
                &image.config_desc.digest,
                &oci::image_blobs(&image),
            )?;
        }
    }
    if let Some(path) = &req.metadata_file {
        let meta = metadata_json(&image, &outcome.steps, &req.tags);
        export::write_atomic(path, serde_json::to_string_pretty(&meta)?.as_bytes())
            .with_context(|| format!("--metadata-file {}", path.display()))?;
    }
    if let Some(path) = &req.iidfile {
        export::write_atomic(path, image.config_desc.digest.as_str().as_bytes())
            .with_context(|| format!("--iidfile {}", path.display()))?;
    }
    store.end_lease()?;
    Ok(BuildSummary {
        image,
        steps: outcome.steps,
        plan: p,
    })
}

/// buildx's metadata keys plus `wbuild.steps`.
pub fn metadata_json(img: &Image, steps: &[StepReport], tags: &[String]) -> serde_json::Value {
    let mut m = BTreeMap::new();
    m.insert(
        "containerimage.digest".to_string(),
        serde_json::json!(img.manifest_desc.digest),
    );
    m.insert(
        "containerimage.config.digest".to_string(),
        serde_json::json!(img.config_desc.digest),
    );
    m.insert(
        "containerimage.descriptor".to_string(),
        serde_json::to_value(&img.manifest_desc).expect("descriptor"),
    );
    if !tags.is_empty() {
        m.insert("image.name".to_string(), serde_json::json!(tags.join(",")));
    }
    m.insert(
        "wbuild.steps".to_string(),
        serde_json::to_value(steps).expect("steps"),
    );
    serde_json::to_value(m).expect("metadata")
}

/// `wbuild images`: name, manifest digest, config digest, created.
pub fn list_images(root: Option<&Path>) -> Result<Vec<(String, Digest, Digest, i64)>> {
    let root = match root {
        Some(r) => r.to_path_buf(),
        None => store::default_root()?,
    };
    Ok(Store::open(&root)?.list_images()?)
}
