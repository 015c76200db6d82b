//! One `wbuild build`, end to end, as a driver of named phases, each in
//! its own file:
//!
//! 1. [`prepare`]: the request checked whole before the store is touched
//!    (the Dockerfile planned for every platform, the outputs, the caches,
//!    the GC config), then the store opened, the context scanned, the base
//!    images' configs read and the caches imported;
//! 2. [`solve_all`]: every platform's plan solved;
//! 3. [`outputs`]: each `--output` written, the image kept, each
//!    `--cache-to` exported;
//! 4. [`metadata`]: `--metadata-file`, `--iidfile`;
//! 5. after: garbage collection, the lease ended, and (built or not) the
//!    build's report kept and written ([`run_and_report`]).
//!
//! `wbuild explain` runs the first phase and looks every key up.

mod metadata;
mod outputs;
mod prepare;
mod solve_all;

pub use metadata::metadata_json;

use std::path::{Path, PathBuf};

use crate::context::ContextError;
use crate::digest::Digest;
use crate::export::{self, ExportError};
use crate::frontend::{instructions, FrontendError};
use crate::fs::layer::LayerError;
use crate::oci::Image;
use crate::plan::BuildPlan;
use crate::progress::{self, Progress};
use crate::request::{BuildRequest, CacheKind, ProgressMode};
use crate::solve::{BuildError, Solver, StepReport};
use crate::store::{self, StoreError};

/// Why a build did not finish, with what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read Dockerfile {path}: {error}; check the path, or name it with -f/--file")]
    ReadDockerfile { path: String, error: std::io::Error },
    #[error(transparent)]
    Frontend(#[from] FrontendError),
    #[error(transparent)]
    CacheExport(Box<crate::cache::kind::RemoteError>),
    #[error("{flag} type={kind}: this wbuild was built without registry support; use type=local")]
    CacheKind { flag: &'static str, kind: CacheKind },
    #[error("{flag} type={kind}: {error}")]
    CacheSpec {
        flag: &'static str,
        kind: CacheKind,
        error: crate::cache::kind::CacheSpecError,
    },
    #[error(transparent)]
    Config(Box<crate::settings::ConfigError>),
    #[error("--platform: {0}")]
    Platform(crate::plan::PlatformError),
    #[error("--build-context {name}: {error}")]
    BuildContext {
        name: String,
        error: crate::request::NamedContextError,
    },
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
    let (fetched, _dirs) = crate::context::remote::fetch_contexts(req, &store_root(req)?)?;
    match run_and_report(fetched.as_ref().unwrap_or(req), false)? {
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
    let (fetched, _dirs) = crate::context::remote::fetch_contexts(req, &store_root(req)?)?;
    match run_and_report(fetched.as_ref().unwrap_or(req), true)? {
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

/// Runs the build (or explains it), then writes its report — the build
/// failed or not — as the store's last one and to `--report`.
fn run_and_report(req: &BuildRequest, explain: bool) -> Result<Ran> {
    let mut slot = None;
    let ran = run_phases(req, explain, &mut slot);
    use crate::report::Outcome;
    let outcome = match &ran {
        Ok(Ran::Built(b)) => Outcome::Built(b.digest.to_string()),
        Ok(Ran::Explained(..)) => return ran,
        // The report shows the error as the terminal does.
        Err(e) => Outcome::Failed(e.to_string()),
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
            crate::report::Report::new(&dockerfile, &plan, &collector, &outcome),
            Some(root),
        ),
        // It failed before its first step: a report of just the error.
        (_, Outcome::Failed(e)) if !explain => (
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

/// The phases, in order; `slot` gets what the report needs once the
/// build has planned.
fn run_phases(req: &BuildRequest, explain: bool, slot: &mut Option<ReportSlot>) -> Result<Ran> {
    let checked = prepare::check(req)?;
    let mut store = prepare::open_store(req)?;
    let prepared = prepare::prepare(req, checked, &store)?;
    if explain {
        let p = &prepared;
        let plan = p.plans[0].clone();
        let steps = Solver::explain(&store, &p.ctx, p.opts.clone(), &plan, p.shared.clone())?;
        drop(prepared);
        store.end_lease()?;
        return Ok(Ran::Explained(steps, plan));
    }
    let plan = prepared.plans[0].clone();
    let sink = &mut slot
        .insert(ReportSlot {
            collector: crate::report::Collector::new(progress_sink(req.progress)),
            plan: Some(plan.clone()),
            root: store_root(req)?,
            dockerfile: prepared.shown.clone(),
        })
        .collector;
    let solved = solve_all::solve_all(&prepared, sink)?;
    let made = outputs::write_outputs(&prepared, solved)?;
    metadata::write_metadata(&prepared, &made)?;
    collect_garbage(&prepared);
    // The registry client borrows the store; it goes before the lease.
    drop(prepared);
    store.end_lease()?;
    Ok(Ran::Built(Box::new(BuildSummary {
        digest: made.digest().clone(),
        image: made.image,
        steps: made.steps,
        plan,
    })))
}

/// Where progress goes, as `--progress` says (a terminal by default when
/// stderr is one).
fn progress_sink(mode: ProgressMode) -> Box<dyn Progress> {
    let tty = mode == ProgressMode::Tty
        || (mode == ProgressMode::Auto && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match mode {
        ProgressMode::Quiet => Box::new(progress::Quiet),
        ProgressMode::RawJson => Box::new(progress::RawJson::new(std::io::stderr())),
        _ if tty => Box::new(progress::Tty::new()),
        _ => Box::new(progress::Plain::new(std::io::stderr())),
    }
}

/// `--gc`: garbage collection by the config's rules, at most once a
/// minute; a failure is a warning (the build is done).
fn collect_garbage(p: &prepare::Prepared<'_>) {
    let Some(gc) = p.gc.as_ref().filter(|gc| gc.enabled) else {
        return;
    };
    match p.store.gc_after_build(&gc.policies) {
        Ok(Some(r)) if !r.removed.is_empty() && p.req.progress != ProgressMode::Quiet => {
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
