//! The rootfs directories RUN steps run in: the one an earlier RUN left
//! on the same layers is taken over (a chain of RUN steps costs what it
//! changes, not a copy of the rootfs per step), else a new one is made of
//! hard links to a kept tree of the layers (`fs::pristine`).

use std::sync::{Arc, Mutex};

use super::lock;
use crate::fs::layer::LayerInfo;
use crate::fs::Manifest;
use crate::store::Store;

/// What a solve's RUN steps left and linked to.
#[derive(Default)]
pub(crate) struct RootfsPool {
    /// Rootfs directories RUN steps left, for the next RUN on the same
    /// layers to take over.
    warm: Mutex<Vec<WarmRootfs>>,
    /// Kept rootfs trees this build's RUN steps link to, put back when
    /// the build ends.
    claimed: Mutex<Vec<crate::fs::pristine::Pristine>>,
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

impl RootfsPool {
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
        store: &Store,
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
            return Ok((Snapshot::materialize(store, layers, work)?, None));
        }
        let kept = match Pristine::claim(store, layers) {
            Some(p) => p,
            None => Pristine::create(store, layers)?,
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
        let snap = Snapshot::resume(store, work, manifest, Some(stats?), rest)?;
        Ok((snap, Some(shared)))
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

    /// Ends the pool: the copies go first; then each kept tree is checked
    /// and put back.
    pub(super) fn release(&self, store: &Store) {
        lock(&self.warm).clear();
        for p in lock(&self.claimed).drain(..) {
            p.release(store);
        }
    }
}
