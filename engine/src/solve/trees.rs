//! The trees a step copies or mounts files from: the build context, a
//! finished stage's rootfs or an image's (materialized once per build,
//! however many steps read it), a named directory context.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::env::Env;
use super::{lock, BuildError};
use crate::context::Context;
use crate::fs::layer;
use crate::fs::{Manifest, Meta};

/// A tree files can be copied from: the context, or a stage's rootfs
/// materialized in a temp dir.
pub(crate) struct SourceTree {
    pub label: String,
    /// The stage this tree is the rootfs of (None for the context).
    pub stage: Option<usize>,
    pub root: PathBuf,
    pub entries: Arc<BTreeMap<String, Meta>>,
    /// Keep owners (stage sources) or reset them to 0:0 (the context).
    pub keep_owner: bool,
    /// The context's digests, made when a step first reads a file (None
    /// for a stage's rootfs, whose digests come with its layers).
    pub digests: Option<Arc<crate::context::Digests>>,
    _tmp: Option<tempfile::TempDir>,
}

/// A built stage's rootfs on disk, materialized once however many stages
/// read it.
type TreeSlot = Arc<Mutex<Option<Arc<SourceTree>>>>;

/// Why a tree to copy or mount from could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The image could not be pulled (or read from its layout).
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A directory context's `.dockerignore`.
    #[error(transparent)]
    Ignore(#[from] crate::frontend::FrontendError),
    /// A directory context could not be read.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// Its layers could not be laid out.
    #[error(transparent)]
    Layout(Box<BuildError>),
    #[error("cannot use image {0:?}: this wbuild was built without registry support")]
    NoRegistry(String),
}

/// The trees of one solve.
pub(crate) struct Trees {
    pub context: Arc<SourceTree>,
    /// Finished stages' rootfs trees, by index.
    stages: Mutex<BTreeMap<usize, TreeSlot>>,
    /// Images `COPY --from` reads, by reference, materialized once.
    #[cfg(feature = "registry")]
    images: Mutex<BTreeMap<String, TreeSlot>>,
}

impl Trees {
    pub(super) fn new(context: &Context) -> Trees {
        Trees {
            context: Arc::new(SourceTree {
                label: "context".into(),
                stage: None,
                root: context.root.clone(),
                entries: context.entries.clone(),
                keep_owner: false,
                digests: Some(context.digests.clone()),
                _tmp: None,
            }),
            stages: Mutex::new(BTreeMap::new()),
            #[cfg(feature = "registry")]
            images: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Env<'_> {
    /// A finished stage's rootfs on disk, for `COPY --from` and mounts:
    /// materialized by the first stage that asks, shared by the rest.
    pub(crate) fn stage_tree(
        &self,
        index: usize,
        label: &str,
    ) -> Result<Arc<SourceTree>, BuildError> {
        let slot = lock(&self.trees.stages).entry(index).or_default().clone();
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
    pub(crate) fn materialize(
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
    pub(crate) fn image_tree(
        &self,
        reference: &str,
        platform: &crate::plan::Platform,
        fallback: bool,
    ) -> Result<Arc<SourceTree>, TreeError> {
        let slot = lock(&self.trees.images)
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
                let p = self.fetch_image(reference, platform, fallback)?;
                self.materialize(&p.layers, format!("image {}", p.reference), None)
                    .map_err(|e| TreeError::Layout(Box::new(e)))?
            }
        };
        *slot = Some(t.clone());
        Ok(t)
    }

    /// The `--build-context` a name (`FROM`, `--from=`) stands for.
    #[cfg(feature = "registry")]
    pub(crate) fn named_context(&self, name: &str) -> Option<&crate::request::NamedContext> {
        self.opts.contexts.get(&crate::request::context_key(name))
    }

    /// A directory context as a tree to copy from (its `.dockerignore`
    /// applied), read as the main context is: owners become 0:0.
    #[cfg(feature = "registry")]
    pub(crate) fn dir_tree(
        &self,
        name: &str,
        dir: &std::path::Path,
    ) -> Result<Arc<SourceTree>, TreeError> {
        let ignore = crate::frontend::dockerignore::load(dir, &dir.join("Dockerfile"))?;
        let mut ctx = crate::context::Context::scan(dir, &ignore, Some(self.store))?;
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

    #[cfg(not(feature = "registry"))]
    pub(crate) fn image_tree(
        &self,
        reference: &str,
        _platform: &crate::plan::Platform,
        _fallback: bool,
    ) -> Result<Arc<SourceTree>, TreeError> {
        Err(TreeError::NoRegistry(reference.to_string()))
    }

    /// A stage's tree that [`Solver::stage_tree`] already materialized.
    #[cfg(feature = "sandbox")]
    pub(crate) fn materialized_tree(&self, index: usize) -> Option<Arc<SourceTree>> {
        let slot = lock(&self.trees.stages).get(&index).cloned()?;
        let t = lock(&slot).clone();
        t
    }

    /// Gives every file of `items` (paths relative to `tree`'s root) its
    /// digest: the context hashes what a step reads when it first reads it.
    pub(crate) fn complete_digests(
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
