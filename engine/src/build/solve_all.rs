//! The second phase: every platform's plan solved, one after the other,
//! each solved again while a damaged layer or an imported cache's damaged
//! blob turns up (the steps that made it are rebuilt).

use super::prepare::Prepared;
use super::Result;
use crate::oci::Image;
use crate::plan::BuildPlan;
use crate::report::Collector;
use crate::solve::{BuildOutcome, Solver, StepReport};

/// Every platform's image and every step's report.
pub(super) struct Solved {
    pub steps: Vec<StepReport>,
    /// One image per platform, in `--platform` order.
    pub images: Vec<Image>,
}

/// How often one plan is solved again before its error stands.
const DAMAGED_LAYER_RETRIES: u32 = 3;
const DAMAGED_IMPORT_RETRIES: u32 = 8;

pub(super) fn solve_all(p: &Prepared<'_>, sink: &mut Collector) -> Result<Solved> {
    let reads_layers = p.exporters.iter().any(|e| e.reads_layers());
    let mut outcomes = Vec::new();
    for plan in &p.plans {
        outcomes.push(solve_one(p, plan, reads_layers, sink)?);
    }
    // Once per build: the image depends on the checkout's umask.
    if let Some((path, mode)) = outcomes.iter().find_map(|o| o.loose_mode.clone()) {
        eprintln!(
            "hint: the context's {path} is {mode:04o}: group- or other-writable context files make the image and its cache keys depend on the checkout's umask; --context-modes=normalize gives the same image from every checkout"
        );
    }
    Ok(Solved {
        steps: outcomes.iter().flat_map(|o| o.steps.clone()).collect(),
        images: outcomes.into_iter().map(|o| o.image).collect(),
    })
}

/// Solves one plan. A layer found damaged when read has been removed
/// with the records that held it: solving again rebuilds the steps that
/// made it.
fn solve_one(
    p: &Prepared<'_>,
    plan: &BuildPlan,
    reads_layers: bool,
    sink: &mut Collector,
) -> Result<BuildOutcome> {
    let store = p.store;
    let mut attempts = 0;
    loop {
        let damaged = store.damaged_imports();
        let solved = Solver::build(store, &p.ctx, p.opts.clone(), plan, sink, p.shared.clone());
        match solved {
            Err(e) if attempts < DAMAGED_LAYER_RETRIES && e.damaged_layer().is_some() => {
                eprintln!("warning: {e}; rebuilding the steps that made it");
            }
            // An imported cache gave a damaged blob (said as a warning):
            // its records are misses now.
            Err(_) if attempts < DAMAGED_IMPORT_RETRIES && store.damaged_imports() > damaged => {}
            // The outputs that write layers read them all: a blob still
            // in an imported cache comes in now, while a damaged one can
            // still be rebuilt.
            Ok(o)
                if reads_layers
                    && attempts < DAMAGED_IMPORT_RETRIES
                    && o.image
                        .layers
                        .iter()
                        .any(|l| store.ensure_blob(&l.digest).is_err())
                    && store.damaged_imports() > damaged => {}
            r => {
                sink.stop_recording();
                return Ok(r?);
            }
        }
        attempts += 1;
        sink.restart();
    }
}
