//! A fixture for the ops' unit tests: a Dockerfile and a context in temp
//! dirs, planned, with a solver on a temp store.

use std::collections::BTreeMap;
use std::sync::mpsc;

use super::ops::StepCx;
use super::scheduler::Msg;
use super::{BuildOptions, Solver, StageState};
use crate::cache::StepInputs;
use crate::context::Context;
use crate::fs::layer::Compression;
use crate::plan::{self, BuildPlan};
use crate::store::Store;

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub _store_dir: tempfile::TempDir,
    pub store: Store,
    pub context: Context,
    pub plan: BuildPlan,
}

impl Fixture {
    /// Plans `dockerfile` over a context holding `files`.
    pub fn new(dockerfile: &str, files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (p, body) in files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let context = Context::scan(dir.path(), &Default::default(), None).unwrap();
        let df = crate::frontend::instructions::parse_dockerfile(dockerfile).unwrap();
        let plan = plan::plan(&df, &Default::default(), "Dockerfile").unwrap();
        Fixture {
            dir,
            _store_dir: store_dir,
            store,
            context,
            plan,
        }
    }

    /// A solver over the fixture (its progress events are dropped).
    pub fn solver(&self) -> Solver<'_> {
        let (events, rx) = mpsc::channel::<Msg>();
        drop(rx);
        let opts = BuildOptions {
            dockerfile: "Dockerfile".into(),
            scope: self.dir.path().display().to_string(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            context_modes: Default::default(),
            epoch: 0,
            compression: Compression::Gzip,
            level: 6,
            step_timeout: std::time::Duration::from_secs(60),
            step_memory: 1 << 30,
            step_disk: 1 << 30,
            native: Default::default(),
            secrets: BTreeMap::new(),
            jobs: 1,
            insecure_registries: Vec::new(),
            pull: Default::default(),
            contexts: BTreeMap::new(),
            imported: Vec::new(),
            dry_run: false,
        };
        Solver::new(&self.store, &self.context, opts, events, None)
    }

    /// Where step `n` (0-based) of the last stage stands.
    pub fn cx(&self, n: usize) -> StepCx<'_> {
        let stage = self.plan.stages.last().unwrap();
        StepCx {
            plan: &self.plan,
            stage,
            step: &stage.steps[n],
            label: "test",
            vertex: 1,
        }
    }

    /// The last stage's state after its FROM.
    pub fn base(&self, solver: &Solver<'_>) -> StageState {
        super::ops::source::base_state(
            &solver.env,
            &solver.cache,
            self.plan.stages.last().unwrap(),
            "test",
        )
        .unwrap()
    }
}

/// Empty key inputs for a step.
pub(crate) fn inputs() -> StepInputs {
    StepInputs::default()
}
