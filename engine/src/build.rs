//! One `wbuild build`, end to end: read and plan the Dockerfile, open the
//! store, scan the context, solve, write the outputs and the metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::context::{Context, ContextError};
use crate::digest::Digest;
use crate::export::{self, ExportError};
use crate::frontend::{dockerignore, instructions, FrontendError};
use crate::fs::layer::{self, Compression, LayerError, LayerInfo};
use crate::oci::{self, Image};
use crate::plan::{self, BuildPlan, PlanRequest};
use crate::progress::{self, Progress};
use crate::request::{
    BuildRequest, NamedContext, OutputKind, OutputSpec, ProgressMode, SecretSource,
};
use crate::solve::{BuildError, BuildOptions, PullPolicy, Solver, StepReport};
use crate::store::{self, Store, StoreError};

/// Why a build did not finish, with what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read Dockerfile {path}: {error}; check the path, or name it with -f/--file")]
    ReadDockerfile { path: String, error: std::io::Error },
    #[error(transparent)]
    Frontend(#[from] FrontendError),
    #[error(transparent)]
    CacheExport(Box<crate::cache::remote::RemoteError>),
    #[error(
        "{flag} type={kind}: not supported; use type=local, type=registry,ref=REF or type=inline"
    )]
    CacheKind { flag: &'static str, kind: String },
    #[error(transparent)]
    Config(Box<crate::settings::ConfigError>),
    #[error("--platform: {message}")]
    Platform { message: String },
    #[error("--build-context {name}: {message}")]
    BuildContext { name: String, message: String },
    #[error(transparent)]
    RemoteContext(Box<crate::context::remote::RemoteContextError>),
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds since 1970")]
    Epoch(String),
    #[error("--no-cache-filter {stage:?}: no stage of {dockerfile} has that name")]
    NoSuchStage { stage: String, dockerfile: String },
    #[error("--secret id={id}: cannot read {path}: {error}")]
    SecretFile {
        id: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--secret id={id}: the environment variable {var} is not set")]
    SecretEnv { id: String, var: String },
    #[error("re-compressing layer {digest}: {error}")]
    Recompress {
        digest: Digest,
        error: std::io::Error,
    },
    #[error("{flag} {path}: {error}")]
    WriteFile {
        flag: &'static str,
        path: PathBuf,
        error: Box<ExportError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Solve(#[from] BuildError),
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(Box<crate::registry::RegistryError>),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("{dockerfile}:{line}: {step}: {entitlement} is not allowed: pass --allow {entitlement} to let a RUN step ask for it, as buildx does")]
    Entitlement {
        dockerfile: String,
        line: usize,
        step: String,
        entitlement: &'static str,
    },
}

impl From<crate::context::remote::RemoteContextError> for Error {
    fn from(e: crate::context::remote::RemoteContextError) -> Error {
        Error::RemoteContext(Box::new(e))
    }
}

type Result<T> = std::result::Result<T, Error>;

/// What a finished build produced.
pub struct BuildSummary {
    /// The image (the first platform's, with several).
    pub image: Image,
    /// What the build made: the image's manifest digest, or with several
    /// platforms their index's.
    pub digest: Digest,
    pub steps: Vec<StepReport>,
    pub plan: BuildPlan,
}

/// Reads and types the Dockerfile, with the file name in every error.
pub fn read_dockerfile(path: &Path) -> Result<instructions::Dockerfile> {
    let bytes = std::fs::read(path).map_err(|error| Error::ReadDockerfile {
        path: crate::paths::shown(path),
        error,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    instructions::parse_dockerfile(&text).map_err(|e| e.in_file(crate::paths::shown(path)).into())
}

/// `SOURCE_DATE_EPOCH`, 0 when unset.
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| Error::Epoch(v)),
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
    let copied = (|| -> std::io::Result<()> {
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
        Ok(())
    })();
    copied.map_err(|error| Error::Recompress {
        digest: l.digest.clone(),
        error,
    })?;
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
            SecretSource::File(p) => std::fs::read(p).map_err(|error| Error::SecretFile {
                id: s.id.clone(),
                path: p.clone(),
                error,
            })?,
            SecretSource::Env(v) => std::env::var(v)
                .map_err(|_| Error::SecretEnv {
                    id: s.id.clone(),
                    var: v.clone(),
                })?
                .into_bytes(),
        };
        out.insert(s.id.clone(), value);
    }
    Ok(out)
}

/// The build's registry client with the configs of the images the needed
/// stages start from, when any does.
#[cfg(feature = "registry")]
#[allow(clippy::type_complexity)]
fn resolve_bases<'s>(
    store: &'s Store,
    plans: &[BuildPlan],
    opts: &BuildOptions,
) -> Result<
    Option<(
        std::sync::Arc<crate::registry::Puller<'s>>,
        BTreeMap<String, plan::BaseConfig>,
    )>,
> {
    let mut wanted = Vec::new();
    for p in plans {
        for st in p.needed_stages() {
            if let plan::Base::Image(n) | plan::Base::Context(n) = &st.base {
                wanted.push((n.clone(), st));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(None);
    }
    let fail = |st: &plan::PlannedStage, m: String| {
        Error::Solve(BuildError::from_failed(
            &opts.dockerfile,
            st,
            &st.label(),
            m,
        ))
    };
    let puller = std::sync::Arc::new(
        crate::registry::Puller::new(store, &opts.insecure_registries)
            .map_err(|e| Error::Registry(Box::new(e)))?,
    );
    let mut bases = BTreeMap::new();
    for (name, st) in wanted {
        let key = plan::base_key(&name, &st.platform);
        if bases.contains_key(&key) {
            continue;
        }
        let pulled = puller
            .fetch_named(
                &name,
                &opts.contexts,
                &st.platform.os,
                &st.platform.architecture,
                opts.pull,
            )
            .map_err(|e| fail(st, e.to_string()))?;
        bases.insert(
            key,
            plan::BaseConfig {
                env: pulled.config.env_map(),
                workdir: pulled.config.working_dir.clone(),
                on_build: pulled.config.on_build.clone(),
            },
        );
    }
    Ok(Some((puller, bases)))
}

#[cfg(not(feature = "registry"))]
#[allow(clippy::type_complexity)]
fn resolve_bases(
    _: &Store,
    _: &[BuildPlan],
    _: &BuildOptions,
) -> Result<Option<((), BTreeMap<String, plan::BaseConfig>)>> {
    Ok(None)
}

/// Reads every `--cache-from`: a local directory, or a registry
/// reference (a cache manifest, or an image's inline cache). A cache that
/// is missing or damaged is a warning and imports nothing. Each becomes a
/// place the store fetches missing blobs from when they are read.
#[cfg_attr(not(feature = "registry"), allow(unused_variables))]
fn import_caches(
    store: &Store,
    req: &BuildRequest,
    platform: &plan::Platform,
) -> Result<Vec<std::sync::Arc<dyn crate::cache::remote::ImportedCache>>> {
    let mut out: Vec<std::sync::Arc<dyn crate::cache::remote::ImportedCache>> = Vec::new();
    for spec in &req.cache_from {
        match spec.kind.as_str() {
            "local" => {
                let src = PathBuf::from(spec.attr("src").unwrap_or_default());
                let (c, warning) = crate::cache::remote::LocalDirCache::open(
                    &src,
                    spec.attr("tag").unwrap_or("latest"),
                    spec.attr("digest"),
                );
                if let Some(w) = warning {
                    eprintln!("warning: {w}");
                }
                let mut c = c;
                c.verify = verify_of(spec);
                let c = std::sync::Arc::new(c);
                store.add_blob_source(c.clone());
                out.push(c);
            }
            #[cfg(feature = "registry")]
            "registry" => {
                let reference = spec.attr("ref").unwrap_or_default();
                let insecure = insecure_for(req, spec);
                let got = crate::registry::Puller::new(store, &insecure)
                    .and_then(|p| p.pull_cache(reference, &platform.os, &platform.architecture));
                match got {
                    Ok((config, blobs)) => {
                        let label = blobs.label.clone();
                        store.add_blob_source(std::sync::Arc::new(blobs));
                        out.push(std::sync::Arc::new(crate::cache::remote::RecordsCache {
                            label,
                            records: config
                                .records
                                .into_iter()
                                .map(|r| (r.key.clone(), r))
                                .collect(),
                            verify: verify_of(spec),
                        }));
                    }
                    Err(e) => {
                        eprintln!("warning: cache-from registry:{reference}: {e}; nothing imported")
                    }
                }
            }
            other => {
                return Err(Error::CacheKind {
                    flag: "--cache-from",
                    kind: other.to_string(),
                })
            }
        }
    }
    for spec in &req.cache_to {
        let known = spec.kind == "local"
            || (matches!(spec.kind.as_str(), "registry" | "inline") && cfg!(feature = "registry"));
        if !known {
            return Err(Error::CacheKind {
                flag: "--cache-to",
                kind: spec.kind.clone(),
            });
        }
        if spec.kind == "registry" && spec.attr("ref").is_none_or(str::is_empty) {
            return Err(Error::CacheKind {
                flag: "--cache-to",
                kind: "registry without ref=REF".into(),
            });
        }
        if spec.attr("image-manifest") == Some("false") {
            return Err(Error::CacheKind {
                flag: "--cache-to",
                kind: format!("{},image-manifest=false", spec.kind),
            });
        }
    }
    Ok(out)
}

/// `--cache-from …,verify=true`: use only records whose layer can be
/// checked against the step's inputs.
fn verify_of(spec: &crate::request::CacheSpec) -> bool {
    spec.attr("verify") == Some("true")
}

/// The plain-HTTP registries for a registry cache: `--insecure-registry`,
/// and its own with `registry.insecure=true`.
#[cfg(feature = "registry")]
fn insecure_for(req: &BuildRequest, spec: &crate::request::CacheSpec) -> Vec<String> {
    let own: Vec<String> = match (spec.attr("registry.insecure"), spec.attr("ref")) {
        (Some("true"), Some(r)) => vec![r.to_string()],
        _ => Vec::new(),
    };
    crate::registry::insecure_with(&req.insecure_registries, &own)
}

/// Writes one `--cache-to` (local or registry); what it did, to say.
fn export_cache(
    store: &Store,
    req: &BuildRequest,
    spec: &crate::request::CacheSpec,
    records: Vec<crate::cache::remote::ExportedRecord>,
) -> Result<String> {
    if spec.kind == "local" {
        let dest = PathBuf::from(spec.attr("dest").unwrap_or_default());
        let tag = spec.attr("tag").unwrap_or("latest");
        let r = crate::cache::remote::export_local(store, &dest, tag, &records)
            .map_err(|e| Error::CacheExport(Box::new(e)))?;
        return Ok(format!(
            "cache-to local:{}: {} record(s), {} blob(s) written, {} already there, {} no tag reaches removed",
            dest.display(),
            r.records,
            r.blobs_written,
            r.blobs_kept,
            r.blobs_removed
        ));
    }
    #[cfg(feature = "registry")]
    {
        let reference = spec.attr("ref").unwrap_or_default();
        let insecure = insecure_for(req, spec);
        let report = crate::registry::Puller::new(store, &insecure)
            .and_then(|p| p.push_cache(&crate::cache::remote::CacheConfig { records }, reference))
            .map_err(|e| {
                Error::CacheExport(Box::new(crate::cache::remote::RemoteError::Bad {
                    label: format!("cache-to registry:{reference}"),
                    message: e.to_string(),
                }))
            })?;
        Ok(format!(
            "cache-to registry:{}: {} blob(s) uploaded, {} mounted, {} already there",
            report.names.join(", "),
            report.uploaded,
            report.mounted,
            report.present
        ))
    }
    #[cfg(not(feature = "registry"))]
    {
        let _ = (req, records);
        Err(Error::CacheKind {
            flag: "--cache-to",
            kind: spec.kind.clone(),
        })
    }
}

/// The records a `--cache-to` exports: `mode=min` (the default) the steps
/// of the target stage and the stages it is FROM; `mode=max` every step
/// built. Layers in another compression than asked are converted (the
/// stored blob is used as it is when it has it).
fn cache_records(
    store: &Store,
    spec: &crate::request::CacheSpec,
    plans: &[BuildPlan],
    steps: &[StepReport],
) -> Result<Vec<crate::cache::remote::ExportedRecord>> {
    let max = spec.attr("mode") == Some("max");
    let mut chain = std::collections::BTreeSet::new();
    for p in plans {
        let mut t = p.target;
        loop {
            chain.insert(t);
            match p.stages[t].base {
                plan::Base::Stage(b) => t = b,
                _ => break,
            }
        }
    }
    let wanted = spec.attr("compression").and_then(Compression::parse);
    let force = spec.attr("force-compression") == Some("true");
    let level = spec.attr("compression-level").and_then(|l| l.parse().ok());
    let mut out: Vec<crate::cache::remote::ExportedRecord> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in steps {
        let Some(key) = &s.key else { continue };
        if (!max && !chain.contains(&s.stage_index)) || !seen.insert(key.clone()) {
            continue;
        }
        let layer = match (&s.layer, wanted) {
            (Some(l), Some(c)) => Some(convert_layer(
                store,
                l,
                c,
                level.unwrap_or(c.default_level()),
                force,
            )?),
            (l, _) => l.clone(),
        };
        out.push(crate::cache::remote::ExportedRecord {
            key: key.clone(),
            layer,
            description: format!("[{}] {}", s.stage, s.instruction),
        });
    }
    Ok(out)
}

/// The store a build uses: `--root`, or the default one.
fn store_root(req: &BuildRequest) -> Result<PathBuf> {
    match &req.root {
        Some(r) => Ok(r.clone()),
        None => Ok(store::default_root()?),
    }
}

/// Runs a whole build. A context or named context given as an http(s)
/// URL is fetched first (see [`crate::context::remote::fetch_contexts`]).
pub fn run(req: &BuildRequest) -> Result<BuildSummary> {
    let (local, _dirs) = crate::context::remote::fetch_contexts(req, &store_root(req)?)?;
    match run_local(local.as_ref().unwrap_or(req), false)? {
        Ran::Built(s) => Ok(*s),
        Ran::Explained(..) => unreachable!("a build builds"),
    }
}

/// What started a build's rebuilds: each stage's first rebuilt step that
/// another stage (or the step before it) did not cause.
pub fn first_causes(steps: &[StepReport]) -> Vec<&StepReport> {
    let mut seen = std::collections::BTreeSet::new();
    steps
        .iter()
        .filter(|s| !s.cached && seen.insert(s.stage_index))
        .filter(|s| s.reason != "parent rebuilt" && !s.reason.starts_with("stage "))
        .collect()
}

/// What `wbuild explain` found: each needed step's report in plan order
/// (cached or not, why, its key's inputs), nothing run.
pub struct Explained {
    pub steps: Vec<StepReport>,
    pub plan: BuildPlan,
}

/// Plans the build and looks every step's key up in the store, running
/// nothing (`wbuild explain`); the first platform's plan.
pub fn explain(req: &BuildRequest) -> Result<Explained> {
    let (local, _dirs) = crate::context::remote::fetch_contexts(req, &store_root(req)?)?;
    match run_local(local.as_ref().unwrap_or(req), true)? {
        Ran::Explained(steps, plan) => Ok(Explained { steps, plan }),
        Ran::Built(_) => unreachable!("an explanation builds nothing"),
    }
}

enum Ran {
    Built(Box<BuildSummary>),
    Explained(Vec<StepReport>, BuildPlan),
}

/// What a build's report is made from, once the build has planned.
struct ReportSlot {
    collector: crate::report::Collector,
    plan: Option<BuildPlan>,
    root: PathBuf,
    dockerfile: String,
}

/// What RUN steps ask for beyond a sandbox, refused unless `--allow`
/// names it (as buildx and BuildKit's solver do), and said to change
/// nothing when allowed: every RUN step is a wasm program in any case.
fn check_entitlements(req: &BuildRequest, plan: &BuildPlan, dockerfile: &str) -> Result<()> {
    use crate::frontend::instructions::{Instruction, SecurityMode};
    for &i in &plan.needed {
        for step in &plan.stages[i].steps {
            let Instruction::Run(run) = &step.instruction else {
                continue;
            };
            if run.security == Some(SecurityMode::Insecure) {
                if !req.allow.iter().any(|a| a == "security.insecure") {
                    return Err(Error::Entitlement {
                        dockerfile: dockerfile.to_string(),
                        line: step.line,
                        step: step.display.clone(),
                        entitlement: "security.insecure",
                    });
                }
                eprintln!(
                    "warning: {dockerfile}:{}: RUN --security=insecure changes nothing here: every RUN step runs as a WebAssembly program in wbuild's sandbox, with no more rights than any other",
                    step.line
                );
            }
        }
    }
    Ok(())
}

/// Runs the build (or explains it), then writes its report — the build
/// failed or not — as the store's last one and to `--report`.
fn run_local(req: &BuildRequest, explain: bool) -> Result<Ran> {
    let mut slot = None;
    let ran = run_local_inner(req, explain, &mut slot);
    let outcome = match &ran {
        Ok(Ran::Built(b)) => Ok(format!("built {}", b.digest)),
        Ok(Ran::Explained(..)) => return ran,
        Err(e) => Err(e.to_string()),
    };
    let (report, root) = match (slot, outcome) {
        (
            Some(ReportSlot {
                collector,
                plan: Some(plan),
                root,
                dockerfile,
            }),
            outcome,
        ) => (
            crate::report::Report::new(&dockerfile, &plan, &collector, outcome),
            Some(root),
        ),
        // It failed before its first step: a report of just the error.
        (_, Err(e)) if !explain => (
            crate::report::Report::failed_early(&crate::paths::shown(&req.dockerfile), e),
            store_root(req).ok(),
        ),
        _ => return ran,
    };
    if let Some(root) = root.filter(|r| r.is_dir()) {
        if let Err(e) = crate::report::keep_last(&root, &report) {
            eprintln!("warning: cannot keep the build report in the store: {e}");
        }
    }
    if let Some(path) = &req.report {
        let written = export::write_atomic(path, crate::report::html(&report).as_bytes());
        match (written, &ran) {
            (Err(error), Ok(_)) => {
                return Err(Error::WriteFile {
                    flag: "--report",
                    path: path.clone(),
                    error: Box::new(error),
                })
            }
            (Err(e), Err(_)) => eprintln!("warning: --report: {e}"),
            (Ok(()), _) => {}
        }
    }
    ran
}

fn run_local_inner(
    req: &BuildRequest,
    explain: bool,
    slot: &mut Option<ReportSlot>,
) -> Result<Ran> {
    let df = read_dockerfile(&req.dockerfile)?;
    let shown = crate::paths::shown(&req.dockerfile);
    let mut contexts = BTreeMap::new();
    for (name, value) in &req.build_contexts {
        let c = NamedContext::parse(value).map_err(|message| Error::BuildContext {
            name: name.clone(),
            message,
        })?;
        contexts.insert(crate::request::context_key(name), c);
    }
    // One plan per platform (`--platform a,b`), built one after the other.
    let mut platforms: Vec<Option<plan::Platform>> = Vec::new();
    for one in &req.platforms {
        let pf = plan::Platform::parse_any(one).map_err(|message| Error::Platform { message })?;
        if !platforms.contains(&Some(pf.clone())) {
            platforms.push(Some(pf));
        }
    }
    if platforms.is_empty() {
        platforms.push(None);
    }
    let plan_for = |platform: &Option<plan::Platform>,
                    bases: &BTreeMap<String, plan::BaseConfig>|
     -> Result<BuildPlan> {
        Ok(plan::plan(
            &df,
            &PlanRequest {
                build_args: req.build_args.clone(),
                target: req.target.clone(),
                contexts: contexts.keys().cloned().collect(),
                dir_contexts: contexts
                    .iter()
                    .filter(|(_, c)| matches!(c, NamedContext::Dir(_)))
                    .map(|(k, _)| k.clone())
                    .collect(),
                platform: platform.clone(),
                bases: bases.clone(),
            },
            &shown,
        )?)
    };
    let mut plans = Vec::new();
    for platform in &platforms {
        plans.push(plan_for(platform, &BTreeMap::new())?);
    }
    let p = plans[0].clone();
    for s in &req.no_cache_filter {
        if !p
            .stages
            .iter()
            .any(|st| st.name.as_deref() == Some(&s.to_ascii_lowercase()))
        {
            return Err(Error::NoSuchStage {
                stage: s.clone(),
                dockerfile: shown,
            });
        }
    }
    // The config is read before anything is built, so a broken one stops
    // the build at once.
    let gc_config = if req.gc {
        Some(
            crate::settings::load_gc(req.config.as_deref())
                .map_err(|e| Error::Config(Box::new(e)))?,
        )
    } else {
        None
    };
    // Every output is checked before anything is built.
    let exporters = req
        .outputs
        .iter()
        .map(export::exporter_for)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let ignore = dockerignore::load(&req.context, &req.dockerfile)?;
    let root = store_root(req)?;
    let mut store = Store::open(&root)?;
    store.set_max_download(req.max_download);
    store.begin_lease()?;
    let _ = store.clean_tmp();
    let mut ctx = Context::scan(&req.context, &ignore, Some(&store))?;
    ctx.apply_modes(req.context_modes);
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
        context_modes: req.context_modes,
        epoch,
        compression,
        level,
        step_timeout: req.step_timeout,
        step_memory: req.step_memory,
        step_disk: req.step_disk,
        secrets: load_secrets(req)?,
        jobs: req.jobs,
        insecure_registries: req.insecure_registries.clone(),
        imported: import_caches(&store, req, &plans[0].stages[plans[0].target].platform)?,
        contexts: contexts.clone(),
        dry_run: false,
        pull: match req.pull {
            None => PullPolicy::Check,
            Some(true) => PullPolicy::Always,
            Some(false) => PullPolicy::Never,
        },
    };
    let tty = req.progress == ProgressMode::Tty
        || (req.progress == ProgressMode::Auto
            && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let sink: Box<dyn Progress> = match req.progress {
        ProgressMode::Quiet => Box::new(progress::Quiet),
        ProgressMode::RawJson => Box::new(progress::RawJson::new(std::io::stderr())),
        _ if tty => Box::new(progress::Tty::new()),
        _ => Box::new(progress::Plain::new(std::io::stderr())),
    };
    // The registry images the stages start from: their configs, read
    // before the steps are planned again with them (ENV for `$VAR`, the
    // WORKDIR a relative one starts from, ONBUILD triggers), as BuildKit
    // resolves them while converting. The client is the solver's too, so
    // each tag is asked about once.
    let registry = resolve_bases(&store, &plans, &opts)?;
    if let Some((_, bases)) = &registry {
        let mut again = Vec::new();
        for platform in &platforms {
            again.push(plan_for(platform, bases)?);
        }
        plans = again;
    }
    #[cfg(feature = "registry")]
    let shared = registry.map(|(p, _)| p);
    #[cfg(not(feature = "registry"))]
    let shared = registry.map(|_| std::marker::PhantomData);
    let p = plans[0].clone();
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    check_entitlements(req, &p, &shown)?;
    if explain {
        let steps = Solver::explain(&store, &ctx, opts, &p, shared)?;
        drop(sink);
        store.end_lease()?;
        return Ok(Ran::Explained(steps, p));
    }
    let sink = &mut slot
        .insert(ReportSlot {
            collector: crate::report::Collector::new(sink),
            plan: Some(p.clone()),
            root: root.clone(),
            dockerfile: shown.clone(),
        })
        .collector;
    // A layer found damaged when read has been removed with the records
    // that held it: solving again rebuilds the steps that made it.
    let mut outcomes = Vec::new();
    let reads_layers = req.outputs.iter().any(|o| {
        matches!(
            o.kind,
            OutputKind::Oci | OutputKind::Docker | OutputKind::Local | OutputKind::Tar
        )
    });
    for plan in &plans {
        let mut attempts = 0;
        outcomes.push(loop {
            let damaged = store.damaged_imports();
            match Solver::build(&store, &ctx, opts.clone(), plan, sink, shared.clone()) {
                Err(e) if attempts < 3 && e.damaged_layer().is_some() => {
                    attempts += 1;
                    eprintln!("warning: {e}; rebuilding the steps that made it");
                    sink.restart();
                }
                // An imported cache gave a damaged blob (said as a warning):
                // its records are misses now.
                Err(_) if attempts < 8 && store.damaged_imports() > damaged => {
                    attempts += 1;
                    sink.restart();
                }
                // The outputs that write layers read them all: a blob still
                // in an imported cache comes in now, while a damaged one
                // can still be rebuilt.
                Ok(o)
                    if reads_layers
                        && attempts < 8
                        && o.image
                            .layers
                            .iter()
                            .any(|l| store.ensure_blob(&l.digest).is_err())
                        && store.damaged_imports() > damaged =>
                {
                    attempts += 1;
                    sink.restart();
                }
                r => {
                    sink.stop_recording();
                    break r?;
                }
            }
        });
    }
    // Once per build: the image depends on the checkout's umask.
    if let Some((path, mode)) = outcomes.iter().find_map(|o| o.loose_mode.clone()) {
        eprintln!(
            "hint: the context's {path} is {mode:04o}: group- or other-writable context files make the image and its cache keys depend on the checkout's umask; --context-modes=normalize gives the same image from every checkout"
        );
    }
    let steps: Vec<StepReport> = outcomes.iter().flat_map(|o| o.steps.clone()).collect();
    let several = outcomes.len() > 1;
    let mut image = outcomes[0].image.clone();
    let mut images: Vec<Image> = outcomes.into_iter().map(|o| o.image).collect();
    // `--cache-to type=inline`: the final stage's records ride in the
    // image's config (mode=min, as BuildKit's inline cache).
    if let Some(spec) = req.cache_to.iter().find(|s| s.kind == "inline") {
        let mut min = spec.clone();
        min.attrs.remove("mode");
        let records = cache_records(&store, &min, &plans, &steps)?;
        let value = serde_json::to_value(crate::cache::remote::CacheConfig { records })
            .expect("a cache config serializes");
        for img in images.iter_mut() {
            let mut config = img.config.clone();
            config.inline_cache = Some(value.clone());
            *img = oci::assemble(&store, config, img.layers.clone(), &img.platform)?;
        }
        image = images[0].clone();
    }
    // The index of several platforms' images, for the outputs and the
    // metadata (the first output's compression and media types).
    let mut index: Option<oci::IndexImage> = None;

    let mut named = Vec::new();
    for (o, exporter) in req.outputs.iter().zip(&exporters) {
        let (c, level) = output_compression(o);
        let force = o.attrs.get("force-compression").map(String::as_str) == Some("true");
        // Docker's media types when asked (`oci-mediatypes=false`); zstd
        // has none, so it keeps OCI's, as BuildKit does.
        let mut docker = o.attrs.get("oci-mediatypes").map(String::as_str) == Some("false");
        if docker && c == Compression::Zstd {
            eprintln!("warning: --output type={}: zstd layers need OCI media types; using oci-mediatypes=true", o.kind);
            docker = false;
        }
        let converted = images
            .iter()
            .map(|image| {
                if image.layers.iter().all(|l| l.compression == c) && !force && !docker {
                    return Ok(image.clone());
                }
                let layers = image
                    .layers
                    .iter()
                    .map(|l| convert_layer(&store, l, c, level, force))
                    .collect::<Result<Vec<_>>>()?;
                Ok(oci::assemble_typed(
                    &store,
                    image.config.clone(),
                    layers,
                    &image.platform,
                    docker,
                )?)
            })
            .collect::<Result<Vec<Image>>>()?;
        let cx = export::ExportContext {
            store: &store,
            tags: &req.tags,
            epoch,
            insecure: &req.insecure_registries,
            verbose: req.progress != ProgressMode::Quiet,
            named: Default::default(),
        };
        let first = std::ptr::eq(o, &req.outputs[0]);
        if several {
            let idx = oci::assemble_index(&store, converted, docker)?;
            exporter.export_index(&cx, &idx)?;
            if first {
                index = Some(idx);
            }
        } else {
            let img = converted.into_iter().next().expect("one image");
            exporter.export(&cx, &img)?;
            if first {
                image = img;
            }
        }
        named.extend(cx.named.into_inner().unwrap_or_else(|e| e.into_inner()));
    }
    if several && index.is_none() {
        index = Some(oci::assemble_index(
            &store,
            std::mem::take(&mut images),
            false,
        )?);
    }
    if req.outputs.is_empty() {
        let (top, blobs) = match &index {
            Some(idx) => (idx.desc.digest.clone(), oci::index_blobs(idx)),
            None => (image.manifest_desc.digest.clone(), oci::image_blobs(&image)),
        };
        if req.tags.is_empty() {
            // Unnamed (a build only for its cache): nothing is fetched.
            let name = format!("<none>@{top}");
            store.put_image(&name, &top, &image.config_desc.digest, &blobs)?;
        } else {
            export::image::keep_image(&store, &req.tags, &top, &image.config_desc.digest, &blobs)?;
        }
    }
    for spec in req.cache_to.iter().filter(|s| s.kind != "inline") {
        let records = cache_records(&store, spec, &plans, &steps)?;
        let exported = export_cache(&store, req, spec, records);
        match exported {
            Ok(what) => {
                if req.progress != ProgressMode::Quiet {
                    eprintln!("{what}");
                }
            }
            Err(e) if spec.attr("ignore-error") == Some("true") => {
                eprintln!("warning: {e} (ignore-error=true)");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(path) = &req.metadata_file {
        let names = if named.is_empty() {
            req.tags.clone()
        } else {
            named.clone()
        };
        let mut meta = metadata_json(&image, &steps, &names);
        if let Some(idx) = &index {
            // As buildx for several platforms: the index is the result.
            meta["containerimage.digest"] = serde_json::json!(idx.desc.digest);
            meta["containerimage.descriptor"] =
                serde_json::to_value(&idx.desc).expect("descriptor");
            if let Some(m) = meta.as_object_mut() {
                m.remove("containerimage.config.digest");
            }
        }
        // What the context cost: files hashed because a step read them
        // (the others came from the stat cache or were never read).
        let (files, bytes) = ctx.digests.hashed();
        meta["wbuild.context"] = serde_json::json!({
            "files": ctx.entries.len(),
            "hashed_files": files,
            "hashed_bytes": bytes,
        });
        let text = serde_json::to_string_pretty(&meta).expect("metadata serializes");
        export::write_atomic(path, text.as_bytes()).map_err(|error| Error::WriteFile {
            flag: "--metadata-file",
            path: path.clone(),
            error: Box::new(error),
        })?;
    }
    if let Some(path) = &req.iidfile {
        let id = match &index {
            Some(idx) => idx.desc.digest.as_str(),
            None => image.config_desc.digest.as_str(),
        };
        export::write_atomic(path, id.as_bytes()).map_err(|error| Error::WriteFile {
            flag: "--iidfile",
            path: path.clone(),
            error: Box::new(error),
        })?;
    }
    // Garbage collection by the config's rules, at most once a minute.
    if let Some(gc) = gc_config {
        if gc.enabled {
            match store.gc_after_build(&gc.policies) {
                Ok(Some(r)) if !r.removed.is_empty() && req.progress != ProgressMode::Quiet => {
                    eprintln!(
                        "gc: removed {} item(s) and {} blob(s), {} bytes",
                        r.removed.len(),
                        r.blobs,
                        r.bytes
                    );
                }
                Ok(_) => {}
                Err(e) => eprintln!("warning: gc: {e}"),
            }
        }
    }
    // The registry client borrows the store; it goes before the lease.
    #[cfg(feature = "registry")]
    drop(shared);
    store.end_lease()?;
    Ok(Ran::Built(Box::new(BuildSummary {
        digest: index
            .as_ref()
            .map_or(image.manifest_desc.digest.clone(), |i| {
                i.desc.digest.clone()
            }),
        image,
        steps,
        plan: p,
    })))
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
