//! The stage scheduler. Stages form a DAG (`FROM stage`, `COPY --from`,
//! `RUN --mount=from=`); every stage whose inputs are built starts at once
//! on its own thread, at most `--jobs` at a time, and its steps' progress
//! events reach the renderer through one channel, interleaved as they
//! happen (as BuildKit's plain mode shows parallel vertices). Reports come
//! back in plan order, and nothing a step computes depends on the
//! interleaving, so the image is the same however the stages ran.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;

use super::{BuildError, Solver, StepReport};
use crate::plan::{Base, BuildPlan, PlannedStage};
use crate::progress::{Event, Progress};

/// What the stage threads tell the scheduler.
pub(super) enum Msg {
    /// A progress event, for the renderer.
    Event(Event),
    /// A stage ended, with its steps' reports or the error that stopped it.
    StageDone(usize, Result<Vec<StepReport>, BuildError>),
}

/// The stages a stage reads: its base and every stage its steps use.
pub fn dependencies(stage: &PlannedStage) -> BTreeSet<usize> {
    let mut deps: BTreeSet<usize> = stage
        .steps
        .iter()
        .flat_map(|s| s.uses_stages.iter().copied())
        .collect();
    if let Base::Stage(i) = stage.base {
        deps.insert(i);
    }
    deps
}

/// Builds every needed stage, ready stages in parallel (at most
/// `opts.jobs` at once), rendering events as they come. Returns the
/// reports of every step in plan order; on a failure, lets the running
/// stages end, starts no more, and returns the first error.
pub(super) fn run(
    solver: &Solver<'_>,
    plan: &BuildPlan,
    rx: mpsc::Receiver<Msg>,
    progress: &mut dyn Progress,
) -> Result<Vec<StepReport>, BuildError> {
    let deps: BTreeMap<usize, BTreeSet<usize>> = plan
        .needed
        .iter()
        .map(|&i| (i, dependencies(&plan.stages[i])))
        .collect();
    let jobs = solver.env.opts.jobs.max(1);
    let mut pending: Vec<usize> = plan.needed.clone();
    let mut done: BTreeMap<usize, Vec<StepReport>> = BTreeMap::new();
    let mut running = 0usize;
    let mut failure: Option<BuildError> = None;
    std::thread::scope(|s| loop {
        while failure.is_none() && running < jobs {
            let ready = pending.iter().position(|i| {
                deps[i]
                    .iter()
                    .all(|d| done.contains_key(d) || !deps.contains_key(d))
            });
            let Some(pos) = ready else { break };
            let index = pending.remove(pos);
            running += 1;
            let tx = solver.env.events();
            s.spawn(move || {
                let stage = &plan.stages[index];
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    solver.build_stage(plan, stage)
                }))
                .unwrap_or_else(|_| {
                    Err(BuildError::Internal(format!(
                        "building stage {} panicked",
                        stage.label()
                    )))
                });
                let _ = tx.send(Msg::StageDone(index, result));
            });
        }
        if running == 0 {
            break;
        }
        match rx.recv() {
            Ok(Msg::Event(e)) => progress.event(e),
            Ok(Msg::StageDone(index, result)) => {
                running -= 1;
                match result {
                    Ok(reports) => {
                        done.insert(index, reports);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            Err(_) => break,
        }
    });
    // Events sent after the last stage ended.
    while let Ok(Msg::Event(e)) = rx.try_recv() {
        progress.event(e);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if !pending.is_empty() {
        return Err(BuildError::Internal(
            "stages wait on each other in a cycle".into(),
        ));
    }
    Ok(plan
        .needed
        .iter()
        .flat_map(|i| done.remove(i).unwrap_or_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solve::testing::Fixture;

    #[test]
    fn a_stage_waits_for_its_base_and_every_stage_its_steps_read() {
        let f = Fixture::new(
            "FROM scratch AS a\nFROM scratch AS b\nFROM scratch AS m\n\
             FROM a AS c\nCOPY --from=b / /\nRUN --mount=type=bind,from=m,target=/m true\n",
            &[],
        );
        assert!(dependencies(&f.plan.stages[0]).is_empty());
        assert_eq!(dependencies(&f.plan.stages[3]), BTreeSet::from([0, 1, 2]));
    }
}
