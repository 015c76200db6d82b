//! Runs a build plan. The [`scheduler`] starts every stage whose inputs are
//! built (up to `--jobs` at once); a stage runs its steps in order through
//! the one lookup/record path in [`step`], which asks each step's op
//! ([`ops`]: source, exec, file, config) for its cache inputs and, on a
//! miss, to execute; results are looked up and recorded through a
//! [`Caches`](crate::cache::lookup::Caches). Every step reports whether it was cached and why, as
//! progress events that reach the renderer through a channel.

mod ops;
mod scheduler;
pub use scheduler::dependencies;
mod step;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::cache::lookup::{Caches, StepRecord};
use crate::cache::{CacheKey, StepInputs};
use crate::context::Context;
use crate::fs::layer::{self, Compression, LayerEntry, LayerInfo};
use crate::fs::{Manifest, Meta};
use crate::oci::{self, HistoryEntry, Image, ImageConfig, PlatformDesc, RootFs, RunConfig};
use crate::plan::{BuildPlan, Step};
use crate::progress::{Event, Progress};
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
        message: String,
    ) -> BuildError {
        BuildError::Step {
            file: dockerfile.to_string(),
            line: stage.line,
            step: format!("[{}] {}", label, stage.from_display),
            failure: Box::new(StepFailure::Invalid(message)),
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
    /// A file whose name starts with `.wh.` would enter a layer.
    #[error("{path}: names that start with .wh. are reserved by the OCI image format for deletions (whiteouts), so this file cannot enter a layer; rename it, or leave it out with .dockerignore")]
    ReservedName { path: String },
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

/// A tree files can be copied from: the context, or a stage's rootfs
/// materialized in a temp dir.
struct SourceTree {
    label: String,
    /// The stage this tree is the rootfs of (None for the context).
    stage: Option<usize>,
    root: PathBuf,
    entries: Arc<BTreeMap<String, Meta>>,
    /// Keep owners (stage sources) or reset them to 0:0 (the context).
    keep_owner: bool,
    /// The context's digests, made when a step first reads a file (None
    /// for a stage's rootfs, whose digests come with its layers).
    digests: Option<Arc<crate::context::Digests>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Solver<'_> {
    /// Takes the left rootfs that is the longest prefix of `layers` (the
    /// caller applies the rest), if any: it is no longer in the pool, so
    /// no other step can take it too.
    #[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
    pub(crate) fn take_warm(&self, layers: &[LayerInfo]) -> Option<WarmRootfs> {
        if cold_runs() {
            return None;
        }
        let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        let fits = |w: &WarmRootfs| {
            w.layers.len() <= layers.len()
                && w.layers.iter().zip(layers).all(|(a, b)| *a == b.digest)
        };
        let best = (0..warm.len())
            .filter(|&i| fits(&warm[i]))
            .max_by_key(|&i| warm[i].layers.len())?;
        Some(warm.swap_remove(best))
    }

    /// A new copy of `layers` in the empty directory `work`: hard links
    /// to the kept tree of these layers (or of the first of them, the rest
    /// applied), which is made when there is none; the files it shares go
    /// with it.
    #[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
    pub(crate) fn fresh_rootfs(
        &self,
        layers: &[LayerInfo],
        work: &std::path::Path,
    ) -> Result<
        (
            crate::fs::snapshot::Snapshot,
            Option<Arc<crate::fs::pristine::SharedInodes>>,
        ),
        crate::fs::snapshot::SnapshotError,
    > {
        use crate::fs::pristine::Pristine;
        use crate::fs::snapshot::{Snapshot, SnapshotError};
        if !cfg!(unix) || cold_runs() {
            return Ok((Snapshot::materialize(self.store, layers, work)?, None));
        }
        let kept = match Pristine::claim(self.store, layers) {
            Some(p) => p,
            None => Pristine::create(self.store, layers)?,
        };
        let stats = kept.link_into(work).map_err(|error| SnapshotError::Io {
            path: work.to_path_buf(),
            error,
        });
        let shared = kept.shared.clone();
        let manifest = kept.manifest.clone();
        let rest = &layers[kept.layers.len()..];
        // Claimed: put back when the build ends, even if this step fails.
        lock(&self.claimed).push(kept);
        let snap = Snapshot::resume(self.store, work, manifest, Some(stats?), rest)?;
        Ok((snap, Some(shared)))
    }

    /// Notes the first context path among `items` whose mode has group or
    /// other write bits (the build's hint names it).
    pub(crate) fn note_loose_mode(&self, items: &[(String, Meta)]) {
        let loose = items.iter().find(|(p, m)| {
            !p.is_empty() && m.kind != crate::fs::Kind::Symlink && m.mode & 0o022 != 0
        });
        if let Some((p, m)) = loose {
            lock(&self.loose_mode).get_or_insert_with(|| (p.clone(), m.mode));
        }
    }

    /// Keeps a rootfs a step left for a later step (the oldest goes when
    /// the pool is full).
    pub(crate) fn keep_warm(&self, w: WarmRootfs) {
        let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        if warm.len() == WARM_KEPT {
            warm.remove(0);
        }
        warm.push(w);
    }

    /// Gives every file of `items` (paths relative to `tree`'s root) its
    /// digest: the context hashes what a step reads when it first reads it.
    fn complete_digests(
        &self,
        tree: &SourceTree,
        items: &mut [(String, Meta)],
    ) -> Result<(), crate::context::ContextError> {
        match &tree.digests {
            Some(d) => d.complete(Some(self.store), items),
            None => Ok(()),
        }
    }
}

/// A built stage's rootfs on disk, materialized once however many stages
/// read it.
type TreeSlot = Arc<Mutex<Option<Arc<SourceTree>>>>;

/// Shared by every stage of a build; stages run on their own threads.
pub struct Solver<'a> {
    store: &'a Store,
    cache: Caches<'a>,
    opts: BuildOptions,
    events: mpsc::Sender<Msg>,
    vertex: AtomicUsize,
    /// Finished stages, by index.
    stages: Mutex<BTreeMap<usize, StageState>>,
    materialized: Mutex<BTreeMap<usize, TreeSlot>>,
    /// Images `COPY --from` reads, by reference, materialized once.
    #[cfg(feature = "registry")]
    images: Mutex<BTreeMap<String, TreeSlot>>,
    context_tree: Arc<SourceTree>,
    /// The registry client, made when a FROM first needs an image.
    #[cfg(feature = "registry")]
    puller: Mutex<Option<Arc<crate::registry::Puller<'a>>>>,
    /// What `ADD <url>` fetches with (its client made on first use).
    #[cfg(feature = "registry")]
    fetcher: crate::fetch::Fetcher<'a>,
    /// Rootfs directories RUN steps left, for the next RUN on the same
    /// layers to take over (a chain of RUN steps costs what it changes,
    /// not a copy of the rootfs per step).
    warm: Mutex<Vec<WarmRootfs>>,
    /// Kept rootfs trees this build's RUN steps link to, put back when
    /// the build ends.
    claimed: Mutex<Vec<crate::fs::pristine::Pristine>>,
    /// The first context path a key read with group/other write bits.
    loose_mode: Mutex<Option<(String, u32)>>,
}

impl Drop for Solver<'_> {
    fn drop(&mut self) {
        // The copies go first; then each tree is checked and put back.
        lock(&self.warm).clear();
        for p in lock(&self.claimed).drain(..) {
            p.release(self.store);
        }
    }
}

/// A rootfs directory a RUN step left: the tree its stage's `layers` make.
#[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
pub(crate) struct WarmRootfs {
    pub layers: Vec<crate::digest::Digest>,
    pub dir: tempfile::TempDir,
    pub manifest: Manifest,
    pub stats: std::collections::HashMap<String, crate::fs::platform::FileStat>,
    pub shared: Option<Arc<crate::fs::pristine::SharedInodes>>,
}

/// `WBUILD_TEST_COLD_RUN`: every RUN materializes its layers afresh, with
/// no directory taken over or linked (tests compare the two).
fn cold_runs() -> bool {
    std::env::var_os("WBUILD_TEST_COLD_RUN").is_some()
}

/// How many left rootfs directories a build keeps at once (each holds a
/// whole rootfs on disk).
const WARM_KEPT: usize = 4;

/// The image author a stage ends with: its last MAINTAINER, else its
/// base stage's (as BuildKit sets the image's Author from MAINTAINER).
fn author_of(plan: &BuildPlan, stage: usize) -> String {
    let s = &plan.stages[stage];
    for step in s.steps.iter().rev() {
        if let crate::frontend::instructions::Instruction::Maintainer { name } = &step.instruction {
            return name.clone();
        }
    }
    match s.base {
        crate::plan::Base::Stage(i) => author_of(plan, i),
        _ => String::new(),
    }
}

impl<'a> Solver<'a> {
    /// Builds the plan's target stage and assembles its image; progress
    /// events go to `progress` as they happen.
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
        let solver = Solver::new(store, context, opts, events);
        solver.set_puller(registry);
        scheduler::run(&solver, plan, rx, &mut crate::progress::Quiet)
    }

    fn set_puller(&self, registry: SharedPuller<'a>) {
        #[cfg(feature = "registry")]
        {
            *lock(&self.puller) = registry;
        }
        #[cfg(not(feature = "registry"))]
        let _ = registry;
    }

    pub fn build(
        store: &'a Store,
        context: &'a Context,
        opts: BuildOptions,
        plan: &BuildPlan,
        progress: &mut dyn Progress,
        registry: SharedPuller<'a>,
    ) -> Result<BuildOutcome, BuildError> {
        let (events, rx) = mpsc::channel();
        let solver = Solver::new(store, context, opts, events);
        solver.set_puller(registry);
        let reports = scheduler::run(&solver, plan, rx, progress)?;
        solver.finish(plan, reports)
    }

    /// A solver over `context` whose progress events go to `events`.
    fn new(
        store: &'a Store,
        context: &'a Context,
        opts: BuildOptions,
        events: mpsc::Sender<Msg>,
    ) -> Solver<'a> {
        let mut cache = Caches::new(store);
        cache.imported = opts.imported.clone();
        Solver {
            store,
            cache,
            opts,
            events,
            vertex: AtomicUsize::new(0),
            stages: Mutex::new(BTreeMap::new()),
            materialized: Mutex::new(BTreeMap::new()),
            #[cfg(feature = "registry")]
            images: Mutex::new(BTreeMap::new()),
            context_tree: Arc::new(SourceTree {
                label: "context".into(),
                stage: None,
                root: context.root.clone(),
                entries: context.entries.clone(),
                keep_owner: false,
                digests: Some(context.digests.clone()),
                _tmp: None,
            }),
            #[cfg(feature = "registry")]
            puller: Mutex::new(None),
            #[cfg(feature = "registry")]
            fetcher: crate::fetch::Fetcher::new(store),
            warm: Mutex::new(Vec::new()),
            claimed: Mutex::new(Vec::new()),
            loose_mode: Mutex::new(None),
        }
    }

    /// The build's registry client, made on first use.
    #[cfg(feature = "registry")]
    fn puller(&self) -> Result<Arc<crate::registry::Puller<'a>>, crate::registry::RegistryError> {
        let mut slot = lock(&self.puller);
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let p = Arc::new(crate::registry::Puller::new(
            self.store,
            &self.opts.insecure_registries,
        )?);
        *slot = Some(p.clone());
        Ok(p)
    }

    /// The target's image, from its finished stage.
    fn finish(
        self,
        plan: &BuildPlan,
        reports: Vec<StepReport>,
    ) -> Result<BuildOutcome, BuildError> {
        let target = &plan.stages[plan.target];
        let st = lock(&self.stages)
            .remove(&plan.target)
            .expect("the target was built");
        // An image base's own platform (a linux/amd64 image with files
        // copied in stays linux/amd64), else the stage's.
        let pf = st
            .platform
            .clone()
            .unwrap_or_else(|| target.platform.clone());
        let config = ImageConfig {
            created: oci::rfc3339(self.opts.epoch),
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
        let image = oci::assemble(self.store, config, st.layers, &platform)?;
        Ok(BuildOutcome {
            image,
            steps: reports,
            loose_mode: lock(&self.loose_mode).clone(),
        })
    }

    /// Sends a progress event to the renderer.
    fn emit(&self, e: Event) {
        let _ = self.events.send(Msg::Event(e));
    }

    /// A new vertex number (in the order steps start, as BuildKit counts).
    fn next_vertex(&self) -> usize {
        self.vertex.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn step_error(&self, step: &Step, label: &str, failure: impl Into<StepFailure>) -> BuildError {
        BuildError::Step {
            file: self.opts.dockerfile.clone(),
            line: step.line,
            step: format!("[{label}] {}", step.display),
            failure: Box::new(failure.into()),
        }
    }

    /// A finished stage's state.
    fn stage_state(&self, index: usize) -> StageState {
        lock(&self.stages)
            .get(&index)
            .cloned()
            .expect("dependencies are built first")
    }

    /// Writes a layer of `entries` and records it under `key`.
    fn record_layer(
        &self,
        key: &CacheKey,
        entries: &[LayerEntry],
        description: &str,
    ) -> Result<StepRecord, BuildError> {
        let info = layer::write_layer(
            self.store,
            entries,
            self.opts.epoch,
            self.opts.compression,
            self.opts.level,
        )?;
        let rec = StepRecord {
            layer: Some(info),
            from: None,
        };
        self.cache.record(key, &rec, description)?;
        Ok(rec)
    }

    /// The stage's rootfs metadata (rebuilt from its layers if needed).
    fn manifest<'s>(&self, st: &'s mut StageState) -> Result<&'s Manifest, BuildError> {
        if st.manifest.is_none() {
            let mut m = Manifest::new();
            for l in &st.layers {
                layer::apply_to_manifest(self.store, l, &mut m)?;
            }
            st.manifest = Some(m);
        }
        Ok(st.manifest.as_ref().expect("set"))
    }

    /// A finished stage's rootfs on disk, for `COPY --from` and mounts:
    /// materialized by the first stage that asks, shared by the rest.
    fn stage_tree(&self, index: usize, label: &str) -> Result<Arc<SourceTree>, BuildError> {
        let slot = lock(&self.materialized).entry(index).or_default().clone();
        let mut slot = lock(&slot);
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let st = self.stage_state(index);
        let t = self.materialize(&st.layers, format!("stage {label}"), Some(index))?;
        *slot = Some(t.clone());
        Ok(t)
    }

    /// Layers applied into a temp dir of the store: a tree to copy from,
    /// owners kept (a stage's or an image's rootfs).
    fn materialize(
        &self,
        layers: &[crate::oci::LayerInfo],
        label: String,
        stage: Option<usize>,
    ) -> Result<Arc<SourceTree>, BuildError> {
        let tmp = self.store.temp_dir("tree-")?;
        let mut m = Manifest::new();
        layer::apply_layers_to_dir(self.store, layers, tmp.path(), &mut m)?;
        Ok(Arc::new(SourceTree {
            label,
            stage,
            root: tmp.path().to_path_buf(),
            entries: Arc::new(m),
            keep_owner: true,
            digests: None,
            _tmp: Some(tmp),
        }))
    }

    /// An image's rootfs on disk for `COPY --from=image`: pulled for
    /// `platform` and materialized once per build.
    #[cfg(feature = "registry")]
    fn image_tree(
        &self,
        reference: &str,
        platform: &crate::plan::Platform,
    ) -> Result<Arc<SourceTree>, String> {
        let slot = lock(&self.images)
            .entry(reference.to_string())
            .or_default()
            .clone();
        let mut slot = lock(&slot);
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = match self.named_context(reference) {
            Some(crate::request::NamedContext::Dir(dir)) => self.dir_tree(reference, dir)?,
            _ => {
                let p = self.fetch_image(reference, platform)?;
                self.materialize(&p.layers, format!("image {}", p.reference), None)
                    .map_err(|e| e.to_string())?
            }
        };
        *slot = Some(t.clone());
        Ok(t)
    }

    /// The `--build-context` a name (`FROM`, `--from=`) stands for.
    #[cfg(feature = "registry")]
    fn named_context(&self, name: &str) -> Option<&crate::request::NamedContext> {
        self.opts.contexts.get(&crate::request::context_key(name))
    }

    /// A directory context as a tree to copy from (its `.dockerignore`
    /// applied), read as the main context is: owners become 0:0.
    #[cfg(feature = "registry")]
    fn dir_tree(&self, name: &str, dir: &std::path::Path) -> Result<Arc<SourceTree>, String> {
        let ignore = crate::frontend::dockerignore::load(dir, &dir.join("Dockerfile"))
            .map_err(|e| e.to_string())?;
        let mut ctx = crate::context::Context::scan(dir, &ignore, Some(self.store))
            .map_err(|e| e.to_string())?;
        ctx.apply_modes(self.opts.context_modes);
        Ok(Arc::new(SourceTree {
            label: format!("context {name}"),
            stage: None,
            root: ctx.root.clone(),
            entries: ctx.entries.clone(),
            keep_owner: false,
            digests: Some(ctx.digests.clone()),
            _tmp: None,
        }))
    }

    /// An image by name for `platform`: what a `--build-context` of that
    /// name gives (`docker-image://`, `oci-layout://`), else the registry's.
    #[cfg(feature = "registry")]
    fn fetch_image(
        &self,
        name: &str,
        platform: &crate::plan::Platform,
    ) -> Result<crate::registry::Pulled, String> {
        let puller = self.puller().map_err(|e| e.to_string())?;
        puller
            .fetch_named(
                name,
                &self.opts.contexts,
                &platform.os,
                &platform.architecture,
                self.opts.pull,
            )
            .map_err(|e| e.to_string())
    }

    #[cfg(not(feature = "registry"))]
    fn image_tree(
        &self,
        reference: &str,
        _platform: &crate::plan::Platform,
    ) -> Result<Arc<SourceTree>, String> {
        Err(format!(
            "cannot use image {reference:?}: this wbuild was built without registry support"
        ))
    }

    /// An http(s) URL's content in the store (`ADD URL`): its digest,
    /// size and file name (see `fetch::http`).
    #[cfg(feature = "registry")]
    fn fetch_url(
        &self,
        url: &str,
        checksum: Option<&crate::digest::Digest>,
    ) -> Result<(crate::digest::Digest, u64, String), crate::fetch::FetchError> {
        let f = self.fetcher.fetch_url(url, checksum)?;
        Ok((f.digest, f.size, f.name))
    }

    /// A git source (`ADD <repository>`) and the commit its ref names now
    /// (see `fetch::git`); ADD's `--checksum` and `--keep-git-dir` join
    /// what the URL says.
    #[cfg(feature = "registry")]
    fn git_commit(
        &self,
        p: &str,
        checksum: Option<&str>,
        keep_git_dir: bool,
    ) -> Result<(crate::request::GitSource, String), crate::fetch::GitError> {
        let mut src =
            crate::request::GitSource::parse(p).map_err(crate::fetch::GitError::Refused)?;
        if src.checksum.is_none() {
            src.checksum = checksum.map(String::from);
        }
        src.keep_git_dir |= keep_git_dir;
        let commit = crate::fetch::git::resolve(&src)?;
        Ok((src, commit))
    }

    /// The commit's tree as layer entries (see `fetch::git::tree`).
    #[cfg(feature = "registry")]
    fn git_tree(
        &self,
        src: &crate::request::GitSource,
        commit: &str,
    ) -> Result<(Vec<crate::fs::layer::LayerEntry>, tempfile::TempDir), crate::fetch::GitError>
    {
        crate::fetch::git::tree(self.store, src, commit)
    }

    #[cfg(not(feature = "registry"))]
    fn git_commit(
        &self,
        p: &str,
        _: Option<&str>,
        _: bool,
    ) -> Result<(crate::request::GitSource, String), StepFailure> {
        Err(StepFailure::Invalid(format!(
            "cannot fetch {p}: this wbuild was built without network support"
        )))
    }

    #[cfg(not(feature = "registry"))]
    fn git_tree(
        &self,
        src: &crate::request::GitSource,
        _: &str,
    ) -> Result<(Vec<crate::fs::layer::LayerEntry>, tempfile::TempDir), StepFailure> {
        Err(StepFailure::Invalid(format!(
            "cannot fetch {}: this wbuild was built without network support",
            src.remote
        )))
    }

    #[cfg(not(feature = "registry"))]
    fn fetch_url(
        &self,
        url: &str,
        _: Option<&crate::digest::Digest>,
    ) -> Result<(crate::digest::Digest, u64, String), StepFailure> {
        Err(StepFailure::Invalid(format!(
            "cannot fetch {url}: this wbuild was built without network support"
        )))
    }

    /// A stage's tree that [`Solver::stage_tree`] already materialized.
    #[cfg(feature = "sandbox")]
    fn materialized_tree(&self, index: usize) -> Option<Arc<SourceTree>> {
        let slot = lock(&self.materialized).get(&index).cloned()?;
        let t = lock(&slot).clone();
        t
    }
}

/// Locks a mutex; a panic elsewhere does not poison the build's state.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
