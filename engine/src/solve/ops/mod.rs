//! One op per instruction family, as BuildKit's ops (`CacheMap` + `Exec`):
//! [`source`] (FROM), [`exec`] (RUN, with its [`mounts`]), [`file`]
//! (COPY/ADD, with [`archive`] unpacking) and [`config`] (instructions
//! that only change the image config, and WORKDIR). An op says what a
//! step reads, for its key, and on a miss executes it; the lookup and
//! the record happen in `step`, which knows no instruction kinds.

pub(super) mod config_op;
pub(super) mod exec;
pub(super) mod file;
pub(super) mod history;
pub(super) mod mounts;
pub(super) mod source;

use super::env::Env;
use super::{BuildError, StageState};
use crate::cache::{CacheKey, StepInputs};
use crate::frontend::instructions::Instruction;
use crate::fs::layer::LayerEntry;
use crate::oci::RunConfig;
use crate::plan::{BuildPlan, PlannedStage, Step};

/// Where a step stands: its plan, stage, label and progress vertex.
pub(crate) struct StepCx<'p> {
    pub plan: &'p BuildPlan,
    pub stage: &'p PlannedStage,
    pub step: &'p Step,
    /// `1/5` or `stage 1/5`, as progress shows it.
    pub label: &'p str,
    /// Where a running step's output is shown.
    #[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
    pub vertex: usize,
}

/// What an executed step changed: the entries of its layer, and the work
/// directories their files live in (kept until the layer is written).
pub(crate) struct Executed {
    pub entries: Vec<LayerEntry>,
    pub work: Vec<tempfile::TempDir>,
    /// A RUN step's rootfs, which the next step may take over once the
    /// layer is written.
    pub rootfs: Option<LeftRootfs>,
}

/// The rootfs a RUN step ran in: its directory and snapshot, on the
/// stage's `layers` before the step.
pub(crate) struct LeftRootfs {
    pub layers: Vec<crate::digest::Digest>,
    pub dir: tempfile::TempDir,
    pub snapshot: crate::fs::snapshot::Snapshot,
    /// The files it shares with a kept tree.
    pub shared: Option<std::sync::Arc<crate::fs::pristine::SharedInodes>>,
}

impl Executed {
    pub fn entries(entries: Vec<LayerEntry>) -> Self {
        Executed {
            entries,
            work: Vec::new(),
            rootfs: None,
        }
    }
}

/// A step of one instruction family.
pub(crate) trait Op {
    /// Adds what the step reads to its key inputs (files with their
    /// summaries, a RUN's command, env and mounts); the step's instruction,
    /// parent and platform are there already.
    fn cache_inputs(
        &mut self,
        _env: &Env<'_>,
        _cx: &StepCx<'_>,
        _st: &mut StageState,
        _inputs: &mut StepInputs,
    ) -> Result<(), BuildError> {
        Ok(())
    }

    /// On a miss: runs the step and returns what it changed (`None`: the
    /// step makes no layer).
    fn execute(
        &mut self,
        _env: &Env<'_>,
        _cx: &StepCx<'_>,
        _st: &mut StageState,
        _key: &CacheKey,
    ) -> Result<Option<Executed>, BuildError> {
        Ok(None)
    }

    /// What the step does to the image config, hit or miss.
    fn configure(&self, step: &Step, config: &mut RunConfig, cmd_set: &mut bool) {
        config_op::apply_config(config, cmd_set, step);
    }

    /// The step as the image's history says it (`created_by`), given the
    /// config the step runs with; None for a step BuildKit writes no
    /// history entry for (ONBUILD).
    fn created_by(&self, step: &Step, config: &RunConfig) -> Option<String> {
        Some(history::created_by(step, config))
    }

    /// The image author it names (MAINTAINER), which the image keeps
    /// unless a later step names another.
    fn author(&self) -> Option<&str> {
        None
    }
}

/// The op of an instruction. Every instruction is routed here by name
/// (no catch-all), so a new one does not build until it has its op.
pub(crate) fn op_for(instruction: &Instruction) -> Box<dyn Op + '_> {
    match instruction {
        Instruction::Run(r) => Box::new(exec::ExecOp::new(r)),
        Instruction::Copy(c) => Box::new(file::FileOp::copy(c)),
        Instruction::Add(a) => Box::new(file::FileOp::add(a)),
        Instruction::Workdir { .. } => Box::new(config_op::WorkdirOp),
        Instruction::Arg { args } => Box::new(config_op::ArgOp { args }),
        Instruction::Maintainer { name } => Box::new(config_op::MaintainerOp { name }),
        Instruction::Cmd(_)
        | Instruction::Entrypoint(_)
        | Instruction::Shell { .. }
        | Instruction::Env { .. }
        | Instruction::Label { .. }
        | Instruction::User { .. }
        | Instruction::Volume { .. }
        | Instruction::Expose { .. }
        | Instruction::StopSignal { .. }
        | Instruction::Healthcheck(_) => Box::new(config_op::ConfigOp),
        Instruction::Onbuild(_) => Box::new(config_op::OnbuildOp),
    }
}
