//! What an op may use while it keys and runs a step: the [`Env`] — the
//! store, the build's options (limits, secrets, epoch), the stages built
//! so far, the trees files are copied from (`trees.rs`), the registry and
//! fetch clients, the pool of rootfs directories RUN steps leave
//! (`pool.rs`), and where a running step's output goes. An op sees
//! nothing of the solver: not the cache, the scheduler or other steps.

use std::collections::BTreeMap;
#[cfg(feature = "registry")]
use std::sync::Arc;
use std::sync::{mpsc, Mutex};

use super::pool::RootfsPool;
use super::scheduler::Msg;
use super::trees::Trees;
use super::{lock, BuildError, BuildOptions, SharedPuller, StageState, StepFailure};
use crate::context::Context;
use crate::fs::layer;
use crate::fs::Manifest;
use crate::plan::Step;
use crate::progress::Event;
use crate::store::Store;

/// What an op may use; one per solve, shared by the stage threads.
pub(crate) struct Env<'a> {
    pub store: &'a Store,
    pub opts: BuildOptions,
    events: mpsc::Sender<Msg>,
    /// Finished stages, by index.
    stages: Mutex<BTreeMap<usize, StageState>>,
    /// The trees files are copied and mounted from.
    pub(super) trees: Trees,
    /// The registry client, made when a FROM first needs an image.
    #[cfg(feature = "registry")]
    puller: Mutex<Option<Arc<crate::registry::Puller<'a>>>>,
    /// What `ADD <url>` fetches with (its client made on first use).
    #[cfg(feature = "registry")]
    fetcher: crate::fetch::Fetcher<'a>,
    /// Rootfs directories RUN steps left, and kept trees they link to.
    pub pool: RootfsPool,
    /// The first context path a key read with group/other write bits.
    loose_mode: Mutex<Option<(String, u32)>>,
}

impl<'a> Env<'a> {
    pub(super) fn new(
        store: &'a Store,
        context: &'a Context,
        opts: BuildOptions,
        events: mpsc::Sender<Msg>,
        registry: SharedPuller<'a>,
    ) -> Env<'a> {
        #[cfg(not(feature = "registry"))]
        let _ = registry;
        Env {
            store,
            opts,
            events,
            stages: Mutex::new(BTreeMap::new()),
            trees: Trees::new(context),
            #[cfg(feature = "registry")]
            puller: Mutex::new(registry),
            #[cfg(feature = "registry")]
            fetcher: crate::fetch::Fetcher::new(store),
            pool: RootfsPool::default(),
            loose_mode: Mutex::new(None),
        }
    }

    /// A sender of progress events, for a stage's thread.
    pub(super) fn events(&self) -> mpsc::Sender<Msg> {
        self.events.clone()
    }

    /// Keeps a finished stage's state for the stages that read it.
    pub(super) fn stage_built(&self, index: usize, st: StageState) {
        lock(&self.stages).insert(index, st);
    }

    /// A finished stage's state, taken (the target's, once all is built).
    pub(super) fn take_stage(&self, index: usize) -> Option<StageState> {
        lock(&self.stages).remove(&index)
    }

    /// Notes the first context path among `items` whose mode has group or
    /// other write bits (the build's hint names it).
    pub(crate) fn note_loose_mode(&self, items: &[(String, crate::fs::Meta)]) {
        let loose = items.iter().find(|(p, m)| {
            !p.is_empty() && m.kind != crate::fs::Kind::Symlink && m.mode & 0o022 != 0
        });
        if let Some((p, m)) = loose {
            lock(&self.loose_mode).get_or_insert_with(|| (p.clone(), m.mode));
        }
    }

    /// What [`note_loose_mode`](Self::note_loose_mode) noted.
    pub(super) fn loose_mode(&self) -> Option<(String, u32)> {
        lock(&self.loose_mode).clone()
    }

    /// The build's registry client, made on first use.
    #[cfg(feature = "registry")]
    pub(crate) fn puller(
        &self,
    ) -> Result<Arc<crate::registry::Puller<'a>>, crate::registry::RegistryError> {
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

    /// Sends a progress event to the renderer.
    pub(crate) fn emit(&self, e: Event) {
        let _ = self.events.send(Msg::Event(e));
    }

    pub(crate) fn step_error(
        &self,
        step: &Step,
        label: &str,
        failure: impl Into<StepFailure>,
    ) -> BuildError {
        BuildError::Step {
            file: self.opts.dockerfile.clone(),
            line: step.line,
            step: format!("[{label}] {}", step.display),
            failure: Box::new(failure.into()),
        }
    }

    /// A finished stage's state.
    pub(crate) fn stage_state(&self, index: usize) -> StageState {
        lock(&self.stages)
            .get(&index)
            .cloned()
            .expect("dependencies are built first")
    }

    /// The stage's rootfs metadata (rebuilt from its layers if needed).
    pub(crate) fn manifest<'s>(&self, st: &'s mut StageState) -> Result<&'s Manifest, BuildError> {
        if st.manifest.is_none() {
            let mut m = Manifest::new();
            for l in &st.layers {
                layer::apply_to_manifest(self.store, l, &mut m)?;
            }
            st.manifest = Some(m);
        }
        Ok(st.manifest.as_ref().expect("set"))
    }

    /// An image by name for `platform` (or linux/amd64 with `fallback`,
    /// see `Puller::fetch_named`): what a `--build-context` of that name
    /// gives (`docker-image://`, `oci-layout://`), else the registry's.
    #[cfg(feature = "registry")]
    pub(crate) fn fetch_image(
        &self,
        name: &str,
        platform: &crate::plan::Platform,
        fallback: bool,
    ) -> Result<crate::registry::Pulled, crate::registry::RegistryError> {
        self.puller()?.fetch_named(
            name,
            &self.opts.contexts,
            &platform.os,
            &platform.architecture,
            self.opts.pull,
            fallback,
        )
    }

    /// An http(s) URL's content in the store (`ADD URL`): its digest,
    /// size and file name (see `fetch::http`).
    #[cfg(feature = "registry")]
    pub(crate) fn fetch_url(
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
    pub(crate) fn git_commit(
        &self,
        p: &str,
        checksum: Option<&str>,
        keep_git_dir: bool,
    ) -> Result<(crate::request::GitSource, String), crate::fetch::GitError> {
        let mut src = crate::request::GitSource::parse(p)?;
        if src.checksum.is_none() {
            src.checksum = checksum.map(String::from);
        }
        src.keep_git_dir |= keep_git_dir;
        let commit = crate::fetch::git::resolve(&src)?;
        Ok((src, commit))
    }

    /// The commit's tree as layer entries (see `fetch::git::tree`).
    #[cfg(feature = "registry")]
    pub(crate) fn git_tree(
        &self,
        src: &crate::request::GitSource,
        commit: &str,
    ) -> Result<(Vec<crate::fs::layer::LayerEntry>, tempfile::TempDir), crate::fetch::GitError>
    {
        crate::fetch::git::tree(self.store, src, commit)
    }

    #[cfg(not(feature = "registry"))]
    pub(crate) fn git_commit(
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
    pub(crate) fn git_tree(
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
    pub(crate) fn fetch_url(
        &self,
        url: &str,
        _: Option<&crate::digest::Digest>,
    ) -> Result<(crate::digest::Digest, u64, String), StepFailure> {
        Err(StepFailure::Invalid(format!(
            "cannot fetch {url}: this wbuild was built without network support"
        )))
    }
}

impl Drop for Env<'_> {
    fn drop(&mut self) {
        self.pool.release(self.store);
    }
}
