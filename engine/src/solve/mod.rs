//! Runs a build plan. The [`scheduler`] starts every stage whose inputs are
//! built (up to `--jobs` at once); a stage runs its steps in order through
//! the one lookup/record path in [`step`], which asks each step's op
//! ([`ops`]: source, exec, file, config) for its cache inputs and, on a
//! miss, to execute; results are looked up and recorded through a
//! [`Caches`](crate::cache::lookup::Caches). Every step reports whether it was cached and why, as
//! progress events that reach the renderer through a channel.

mod env;
mod ops;
mod pool;
mod scheduler;
pub use scheduler::dependencies;
mod step;
#[cfg(test)]
mod testing;
mod trees;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::cache::lookup::{Caches, StepRecord};
use crate::cache::{CacheKey, StepInputs};
use crate::context::Context;
use crate::fs::layer::{self, Compression, LayerEntry, LayerInfo};
use crate::fs::Manifest;
use crate::oci::{self, HistoryEntry, Image, ImageConfig, PlatformDesc, RootFs, RunConfig};
use crate::plan::BuildPlan;
use crate::progress::Progress;
use crate::store::Store;
use scheduler::Msg;

pub use crate::request::PullPolicy;

/// The build's registry client, made before solving when planning needed
/// base images' configs (so a tag is asked about once per build).
#[cfg(feature = "registry")]
pub type SharedPuller<'a> = Option<Arc<crate::registry::Puller<'a>>>;
#[cfg(not(feature = "registry"))]
pub type SharedPuller<'a> = Option<std::marker::PhantomData<&'a ()>>;
pub use crate::fs::archive::ArchiveError;
pub use ops::file::SourceError;
pub use ops::mounts::MountError;

/// A build that stopped, with the step, file and line it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}:{line}: {}: {failure}", crate::progress::shortened(.step))]
    Step {
        file: String,
        line: usize,
        step: String,
        failure: Box<StepFailure>,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Layer(#[from] crate::fs::layer::LayerError),
    /// A bug in wbuild, not in the build's input.
    #[error("internal error: {0} (please report it)")]
    Internal(String),
}

impl BuildError {
    /// A stage's FROM that cannot be had (an image that cannot be pulled),
    /// at its line and under its progress label.
    pub fn from_failed(
        dockerfile: &str,
        stage: &crate::plan::PlannedStage,
        label: &str,
        failure: impl Into<StepFailure>,
    ) -> BuildError {
        BuildError::Step {
            file: dockerfile.to_string(),
            line: stage.line,
            step: format!("[{}] {}", label, stage.from_display),
            failure: Box::new(failure.into()),
        }
    }

    /// The layer whose blob turned out damaged when it was read (it has
    /// been removed, with the cache records that held it), if that is what
    /// stopped the build.
    pub fn damaged_layer(&self) -> Option<&crate::digest::Digest> {
        use crate::fs::layer::LayerError;
        use crate::fs::snapshot::SnapshotError;
        let layer = match self {
            BuildError::Layer(l) => l,
            BuildError::Step { failure, .. } => match failure.as_ref() {
                StepFailure::Snapshot(SnapshotError::Layer(l)) => l,
                _ => return None,
            },
            _ => return None,
        };
        match layer {
            LayerError::Corrupt { digest, .. } => Some(digest),
            _ => None,
        }
    }
}

/// Why a step failed; a timeout or a memory limit stays typed up to the
/// message (`StepFailure::Sandbox`).
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// The step asks for something wrong or not built yet; the text says
    /// what to do.
    #[error("{0}")]
    Invalid(String),
    /// The step's program ran and exited with a code other than 0 (the
    /// step, shown before this, says what ran).
    #[error("exited with code {code}{}", last_output(.tail))]
    Exit {
        argv: Vec<String>,
        code: i32,
        /// The last lines it printed.
        tail: Vec<String>,
    },
    /// The sandbox stopped the program or could not start it (timeout,
    /// out of memory, a crash, a program that is not WebAssembly).
    #[cfg(feature = "sandbox")]
    #[error("{error}{}", last_output(.tail))]
    Sandbox {
        error: crate::sandbox::SandboxError,
        tail: Vec<String>,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{source_path}: {error}")]
    Archive {
        source_path: String,
        error: ArchiveError,
    },
    #[error(transparent)]
    Snapshot(#[from] crate::fs::snapshot::SnapshotError),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    /// A URL's content could not be had (`ADD <url>`).
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// A git source could not be had (`ADD <repository>`).
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Git(#[from] crate::fetch::GitError),
    /// A registry refused or failed (FROM, COPY --from, a mount's image).
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A tree to copy or mount from could not be had (`--from=`, a
    /// mount's `from=`).
    #[error("{what}: {error}")]
    Tree {
        what: String,
        error: trees::TreeError,
    },
    /// A construct only bash has, in a step whose bash runs as wbox's sh.
    #[error("{feature} is bash's (BusyBox's ash takes `[[` too), and this step runs wbuild's wbox sh, a POSIX shell, in place of the image's shell, which would read it otherwise: write it for POSIX sh (`[ … ]` for `[[ … ]]`, a temp file for `<(…)`)")]
    BashOnly { feature: &'static str },
    /// The step's USER is not in the image's passwd or group file.
    #[error(transparent)]
    User(#[from] crate::env::IdError),
    /// A digest the step was given (`--checksum=`) is malformed.
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestError),
    /// `--chown=` or USER names ids the image cannot give.
    #[error(transparent)]
    Owner(#[from] ops::file::OwnerError),
    /// A path of the image cannot be resolved or changed as the step asks.
    #[error(transparent)]
    Path(#[from] crate::fs::PathError),
    /// What failed, and where (a source, a flag): the cause stays typed.
    #[error("{what}: {cause}")]
    At {
        what: String,
        cause: Box<StepFailure>,
    },
    /// A file of the context could not be read.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// An `--exclude` pattern.
    #[error(transparent)]
    Pattern(#[from] crate::frontend::dockerignore::PatternError),
    /// A file whose name starts with `.wh.` would enter a layer.
    #[error("{path}: names that start with .wh. are reserved by the OCI image format for deletions (whiteouts), so this file cannot enter a layer; rename it, or leave it out with .dockerignore")]
    ReservedName { path: String },
}

impl StepFailure {
    /// `cause`, said to be about `what` (a source, a flag, a user).
    pub fn at(what: impl Into<String>, cause: impl Into<StepFailure>) -> StepFailure {
        StepFailure::At {
            what: what.into(),
            cause: Box::new(cause.into()),
        }
    }
}

impl From<String> for StepFailure {
    fn from(message: String) -> Self {
        StepFailure::Invalid(message)
    }
}

impl From<&str> for StepFailure {
    fn from(message: &str) -> Self {
        StepFailure::Invalid(message.to_string())
    }
}

#[cfg(feature = "sandbox")]
impl From<crate::sandbox::SandboxError> for StepFailure {
    fn from(error: crate::sandbox::SandboxError) -> Self {
        StepFailure::Sandbox {
            error,
            tail: Vec::new(),
        }
    }
}

/// `; last output:` and the lines, or nothing.
fn last_output(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output:\n  {}", tail.join("\n  "))
    }
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile as the user named it (for errors).
    pub dockerfile: String,
    /// Where step history is kept: the Dockerfile's absolute path.
    pub scope: String,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    /// `--context-modes` (named directory contexts follow it too).
    pub context_modes: crate::request::ContextModes,
    /// Layer timestamps (`SOURCE_DATE_EPOCH`, 0 by default).
    pub epoch: u64,
    pub compression: Compression,
    pub level: i32,
    /// Longest a RUN step may take.
    pub step_timeout: std::time::Duration,
    /// Most memory a RUN step's program may use, in bytes.
    pub step_memory: u64,
    /// Most bytes a RUN step (with all it starts) may write to files.
    pub step_disk: u64,
    /// What runs an image's own Linux programs (`--wbox-shell`).
    pub native: crate::request::Native,
    /// `--secret` values by id (never part of a key, a record or a layer).
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// How many stages may build at once.
    pub jobs: usize,
    /// Registries reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// `--pull`, `--pull=false`, or neither.
    pub pull: PullPolicy,
    /// `--cache-from` caches, read before the build.
    pub imported: Vec<Arc<dyn crate::cache::kind::ImportedCache>>,
    /// `--build-context`s by key ([`crate::request::context_key`]).
    pub contexts: BTreeMap<String, crate::request::NamedContext>,
    /// `wbuild explain`: keys are computed and looked up, and nothing is
    /// run, written or recorded.
    pub dry_run: bool,
}

/// What a step did, for `--metadata-file` and people.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepReport {
    pub stage: String,
    pub instruction: String,
    pub cached: bool,
    pub reason: String,
    #[serde(skip)]
    pub seconds: f64,
    /// The step's key and its record's layer (for `--cache-to`), and the
    /// stage's index in the plan; none for FROM.
    #[serde(skip)]
    pub key: Option<String>,
    #[serde(skip)]
    pub layer: Option<crate::oci::LayerInfo>,
    #[serde(skip)]
    pub stage_index: usize,
    /// What went into the key (none for FROM, or when it could not be
    /// known without running an earlier step).
    #[serde(skip)]
    pub inputs: Option<Box<StepInputs>>,
    /// A miss's first changed file, with its key line then and now.
    #[serde(skip)]
    pub changed: Option<Changed>,
}

/// A file whose key line changed: `was`/`now` are `KIND MODE OWNER
/// DIGEST` lines (None when it was added or removed).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Changed {
    pub path: String,
    pub was: Option<String>,
    pub now: Option<String>,
}

pub struct BuildOutcome {
    pub image: Image,
    pub steps: Vec<StepReport>,
    /// A context path a step's key read with group or other write bits,
    /// and its mode (under `--context-modes=keep`).
    pub loose_mode: Option<(String, u32)>,
}

/// A stage as its steps leave it.
#[derive(Clone)]
struct StageState {
    key: CacheKey,
    missed: bool,
    /// `wbuild explain`: a step would rebuild, so what follows it (its
    /// keys, this stage's files) is known only once it has run.
    unknown: bool,
    layers: Vec<LayerInfo>,
    config: RunConfig,
    history: Vec<HistoryEntry>,
    /// The rootfs metadata, rebuilt from the layers when first needed.
    manifest: Option<Manifest>,
    cmd_set: bool,
    /// The platform an image base says it is for (its config's os and
    /// architecture), which the built image keeps; None: the stage's.
    platform: Option<crate::plan::Platform>,
    /// The registry image the stage rests on (`REFERENCE DIGEST`), for
    /// the reason when it moves.
    base: Option<String>,
}

/// Solves one plan: the stages' states as their steps leave them, the
/// step path's cache, and what ops may use ([`Env`](env::Env)).
pub struct Solver<'a> {
    env: env::Env<'a>,
    cache: Caches<'a>,
    vertex: AtomicUsize,
}

impl<'a> Solver<'a> {
    /// What a build would do (`wbuild explain`): every step's key looked
    /// up, nothing run; the reports in plan order.
    pub fn explain(
        store: &'a Store,
        context: &'a Context,
        mut opts: BuildOptions,
        plan: &BuildPlan,
        registry: SharedPuller<'a>,
    ) -> Result<Vec<StepReport>, BuildError> {
        opts.dry_run = true;
        let (events, rx) = mpsc::channel();
        let solver = Solver::new(store, context, opts, events, registry);
        scheduler::run(&solver, plan, rx, &mut crate::progress::Quiet)
    }

    /// Builds the plan's target stage and assembles its image; progress
    /// events go to `progress` as they happen.
    pub fn build(
        store: &'a Store,
        context: &'a Context,
        opts: BuildOptions,
        plan: &BuildPlan,
        progress: &mut dyn Progress,
        registry: SharedPuller<'a>,
    ) -> Result<BuildOutcome, BuildError> {
        let (events, rx) = mpsc::channel();
        let solver = Solver::new(store, context, opts, events, registry);
        let reports = scheduler::run(&solver, plan, rx, progress)?;
        solver.finish(plan, reports)
    }

    /// A solver over `context` whose progress events go to `events`.
    fn new(
        store: &'a Store,
        context: &'a Context,
        opts: BuildOptions,
        events: mpsc::Sender<Msg>,
        registry: SharedPuller<'a>,
    ) -> Solver<'a> {
        let mut cache = Caches::new(store);
        cache.imported = opts.imported.clone();
        Solver {
            env: env::Env::new(store, context, opts, events, registry),
            cache,
            vertex: AtomicUsize::new(0),
        }
    }

    /// The target's image, from its finished stage.
    fn finish(
        self,
        plan: &BuildPlan,
        reports: Vec<StepReport>,
    ) -> Result<BuildOutcome, BuildError> {
        let target = &plan.stages[plan.target];
        let st = self
            .env
            .take_stage(plan.target)
            .expect("the target was built");
        // An image base's own platform (a linux/amd64 image with files
        // copied in stays linux/amd64), else the stage's.
        let pf = st
            .platform
            .clone()
            .unwrap_or_else(|| target.platform.clone());
        let config = ImageConfig {
            created: oci::rfc3339(self.env.opts.epoch),
            author: author_of(plan, plan.target),
            architecture: pf.architecture.clone(),
            os: pf.os.clone(),
            variant: pf.variant.clone(),
            config: st.config,
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: st.layers.iter().map(|l| l.diff_id.clone()).collect(),
            },
            history: st.history,
            inline_cache: None,
        };
        let platform = PlatformDesc {
            architecture: pf.architecture,
            os: pf.os,
            variant: pf.variant,
        };
        let image = oci::assemble(self.env.store, config, st.layers, &platform)?;
        Ok(BuildOutcome {
            image,
            steps: reports,
            loose_mode: self.env.loose_mode(),
        })
    }

    /// A new vertex number (in the order steps start, as BuildKit counts).
    fn next_vertex(&self) -> usize {
        self.vertex.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Writes a layer of `entries` and records it under `key`.
    fn record_layer(
        &self,
        key: &CacheKey,
        entries: &[LayerEntry],
        description: &str,
    ) -> Result<StepRecord, BuildError> {
        record_layer(&self.env, &self.cache, key, entries, description)
    }
}

/// Writes a layer of `entries` as the build's options say, and records
/// it under `key`.
fn record_layer(
    env: &env::Env<'_>,
    cache: &Caches<'_>,
    key: &CacheKey,
    entries: &[LayerEntry],
    description: &str,
) -> Result<StepRecord, BuildError> {
    let o = &env.opts;
    let info = layer::write_layer(env.store, entries, o.epoch, o.compression, o.level)?;
    let rec = StepRecord {
        layer: Some(info),
        from: None,
    };
    cache.record(key, &rec, description)?;
    Ok(rec)
}

/// The image author a stage ends with: its last MAINTAINER, else its
/// base stage's (as BuildKit sets the image's Author from MAINTAINER).
fn author_of(plan: &BuildPlan, stage: usize) -> String {
    let s = &plan.stages[stage];
    for step in s.steps.iter().rev() {
        if let Some(name) = ops::op_for(&step.instruction).author() {
            return name.to_string();
        }
    }
    match s.base {
        crate::plan::Base::Stage(i) => author_of(plan, i),
        _ => String::new(),
    }
}

/// Locks a mutex; a panic elsewhere does not poison the build's state.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
