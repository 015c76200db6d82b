//! One stage, step by step, through the one lookup/record path: a step's
//! op gives its cache inputs, the key is looked up in the caches (`cache::lookup`),
//! and only on a miss does the op execute; its layer is written and
//! recorded. This path knows nothing of instruction kinds.

use std::time::Instant;

use super::ops::{self, StepCx};
use super::{BuildError, Solver, StageState, StepFailure, StepReport};
use crate::cache::lookup::StepRecord;
use crate::cache::{self, Reason, StepInputs};
use crate::fs::layer::{self, LayerEntry};
use crate::oci::{self, HistoryEntry};
use crate::plan::{Base, BuildPlan, PlannedStage};
use crate::progress::Event;

impl Solver<'_> {
    pub(super) fn build_stage(
        &self,
        plan: &BuildPlan,
        stage: &PlannedStage,
    ) -> Result<Vec<StepReport>, BuildError> {
        let mut reports = Vec::new();
        let total = stage.steps.len() + 1;
        let single = plan.needed.len() == 1;
        let label_of = |i: usize| {
            if single {
                format!("{i}/{total}")
            } else {
                format!("{} {i}/{total}", stage.label())
            }
        };
        let filtered = self
            .env
            .opts
            .no_cache_filter
            .iter()
            .any(|f| stage.name.as_deref() == Some(&f.to_ascii_lowercase()));

        // FROM.
        let v = self.next_vertex();
        let t0 = Instant::now();
        self.env.emit(Event::Started {
            vertex: v,
            name: format!("[{}] {}", label_of(1), stage.from_display),
            stage: stage.index,
        });
        let mut st = ops::source::base_state(&self.env, &self.cache, stage, &label_of(1))?;
        let from_cached = !st.missed;
        let from_reason = match &stage.base {
            Base::Stage(i) if st.missed => format!("stage {} rebuilt", plan.stages[*i].label()),
            _ => String::new(),
        };
        // Later steps are keyed on the base stage's key: when it rebuilt to
        // the same key, they can still be cache hits. (Explaining, a base
        // that would rebuild leaves them unknown.)
        st.missed = st.unknown;
        self.finish_vertex(v, t0, from_cached, &from_reason);
        reports.push(StepReport {
            stage: stage.label(),
            instruction: stage.from_display.clone(),
            cached: from_cached,
            reason: if from_cached {
                "hit".into()
            } else {
                from_reason
            },
            seconds: t0.elapsed().as_secs_f64(),
            key: None,
            layer: None,
            stage_index: stage.index,
            inputs: None,
            changed: None,
        });

        for (i, step) in stage.steps.iter().enumerate() {
            let label = label_of(i + 2);
            let v = self.next_vertex();
            let t0 = Instant::now();
            self.env.emit(Event::Started {
                vertex: v,
                name: format!("[{label}] {}", step.display),
                stage: stage.index,
            });
            let cx = StepCx {
                plan,
                stage,
                step,
                label: &label,
                vertex: v,
            };
            let result = self.run_step(&cx, &mut st, filtered);
            match result {
                Ok(done) => {
                    let reason_text = done.reason.to_string();
                    let files = done.inputs.as_ref().map(|i| &i.files);
                    self.env.emit(Event::Detail {
                        vertex: v,
                        detail: Box::new(crate::progress::StepDetail {
                            key: done.key.clone(),
                            layer_size: done.layer.as_ref().map(|l| l.size),
                            files: files
                                .into_iter()
                                .flat_map(|f| f.keys())
                                .take(crate::progress::FILES_SHOWN)
                                .cloned()
                                .collect(),
                            files_total: files.map_or(0, |f| f.len()),
                            changes: done.changes.clone(),
                        }),
                    });
                    self.finish_vertex(v, t0, done.cached, &reason_text);
                    reports.push(StepReport {
                        stage: stage.label(),
                        instruction: step.display.clone(),
                        cached: done.cached,
                        reason: reason_text,
                        seconds: t0.elapsed().as_secs_f64(),
                        key: done.key,
                        layer: done.layer,
                        stage_index: stage.index,
                        inputs: done.inputs,
                        changed: done.changed,
                    });
                }
                Err(e) => {
                    // The vertex already names the step, and its output
                    // went by live: the error line says what happened.
                    let message = match &e {
                        BuildError::Step { failure, .. } => match failure.as_ref() {
                            StepFailure::Exit { code, .. } => format!("exited with code {code}"),
                            f => f.to_string(),
                        },
                        e => e.to_string(),
                    };
                    self.env.emit(Event::Error { vertex: v, message });
                    return Err(e);
                }
            }
        }
        self.env.stage_built(stage.index, st);
        Ok(reports)
    }

    fn finish_vertex(&self, v: usize, t0: Instant, cached: bool, reason: &str) {
        if cached {
            // A hit from the store is "hit"; one from an imported cache
            // says where it came from.
            self.env.emit(Event::Cached {
                vertex: v,
                reason: if reason.is_empty() {
                    "hit".into()
                } else {
                    reason.to_string()
                },
            });
        } else {
            self.env.emit(Event::Done {
                vertex: v,
                seconds: t0.elapsed().as_secs_f64(),
                reason: reason.to_string(),
            });
        }
    }

    /// One step: its op's cache inputs, the key, a lookup; on a miss the op
    /// executes and its result is recorded. Then the step's effect on the
    /// stage (layer, config, history). Explaining (`dry_run`), a miss runs
    /// nothing and leaves the rest of the stage unknown.
    fn run_step(
        &self,
        cx: &StepCx<'_>,
        st: &mut StageState,
        filtered: bool,
    ) -> Result<StepDone, BuildError> {
        let (stage, step) = (cx.stage, cx.step);
        if self.env.opts.dry_run {
            if let Some(done) = self.not_known_yet(cx, st) {
                return Ok(done);
            }
        }
        let canonical = serde_json::to_string(&step.instruction).expect("instruction serializes");
        let mut inputs = StepInputs {
            parent: Some(st.key.to_string()),
            instruction: step.display.clone(),
            canonical,
            base: st.base.clone(),
            ..Default::default()
        };
        inputs
            .extra
            .insert("platform".into(), stage.platform.spec());
        let mut op = ops::op_for(&step.instruction);
        op.cache_inputs(&self.env, cx, st, &mut inputs)?;
        let key = inputs.key();
        let scope = format!("{}|{}|{}", self.env.opts.scope, stage.label(), step.line);
        let forced = if self.env.opts.no_cache {
            Some(Reason::NoCache)
        } else if filtered {
            Some(Reason::NoCacheFilter(stage.label()))
        } else {
            None
        };
        let hit = match forced.is_none() && !st.missed {
            true => self.cache.lookup_step(&key, &inputs)?,
            false => None,
        };
        let mut miss = Miss::default();
        let (record, new_entries) = match hit {
            Some(rec) => {
                miss.reason = match &rec.from {
                    Some(from) => Reason::HitFrom(from.clone()),
                    None => Reason::Hit,
                };
                (rec, None)
            }
            None => {
                miss = self.why_missed(&scope, &key, &inputs, forced, st.missed)?;
                if self.env.opts.dry_run {
                    st.unknown = true;
                    st.missed = true;
                    return Ok(miss.done(Some(key.to_string()), None, inputs));
                }
                self.execute(op.as_mut(), cx, st, &key)?
            }
        };
        let cached = !miss.missed;
        if !self.env.opts.dry_run {
            self.keep_inputs(&scope, &key, &inputs)?;
        }
        let key_text = key.to_string();
        let kept_layer = record.layer.clone();
        st.key = key;
        self.apply(op.as_ref(), cx, st, record, new_entries, cached);
        Ok(miss.done(Some(key_text), kept_layer, inputs))
    }

    /// Explaining: a step whose key cannot be known before an earlier one
    /// (or a stage it reads) runs.
    fn not_known_yet(&self, cx: &StepCx<'_>, st: &mut StageState) -> Option<StepDone> {
        if st.unknown {
            return Some(StepDone::unknown(Reason::ParentRebuilt));
        }
        // A stage it reads that would rebuild: its files are known only
        // once it has run.
        let &i = cx
            .step
            .uses_stages
            .iter()
            .find(|&&i| self.env.stage_state(i).unknown)?;
        st.unknown = true;
        st.missed = true;
        let label = cx.plan.stages[i].label();
        Some(StepDone::unknown(Reason::SourceStageRebuilds(label)))
    }

    /// Why a step missed: forced, an imported cache's note, or its inputs
    /// against last build's for the same step (read only to explain it).
    fn why_missed(
        &self,
        scope: &str,
        key: &crate::cache::CacheKey,
        inputs: &StepInputs,
        forced: Option<Reason>,
        parent_missed: bool,
    ) -> Result<Miss, BuildError> {
        let previous: Option<StepInputs> = self
            .env
            .store
            .get_history(scope)?
            .and_then(|(_, inputs)| serde_json::from_str(&inputs).ok());
        let reason = match (forced, self.cache.miss_note(key)) {
            (Some(r), _) if !parent_missed => r,
            (_, Some(note)) if !parent_missed => Reason::ImportedMiss(note),
            _ => cache::explain(previous.as_ref(), inputs, parent_missed),
        };
        let changed = match &reason {
            Reason::FileChanged { path, .. } => Some(super::Changed {
                path: path.clone(),
                was: previous.as_ref().and_then(|p| p.files.get(path).cloned()),
                now: inputs.files.get(path).cloned(),
            }),
            _ => None,
        };
        Ok(Miss {
            missed: true,
            reason,
            changed,
            changes: previous
                .map(|p| cache::changes(&p, inputs))
                .unwrap_or_default(),
        })
    }

    /// A miss: the op executes; what it changed becomes a layer, written
    /// and recorded (a step that changes nothing records no layer).
    fn execute(
        &self,
        op: &mut dyn ops::Op,
        cx: &StepCx<'_>,
        st: &mut StageState,
        key: &crate::cache::CacheKey,
    ) -> Result<(StepRecord, Option<Vec<LayerEntry>>), BuildError> {
        let description = format!("[{}] {}", cx.stage.label(), cx.step.display);
        let Some(out) = op.execute(&self.env, cx, st, key)? else {
            let rec = StepRecord::default();
            self.cache.record(key, &rec, &description)?;
            return Ok((rec, None));
        };
        // A name the OCI layer format reserves would act as a deletion in
        // this layer or a later one.
        if let Some(e) = out.entries.iter().find(|e| layer::is_reserved(e)) {
            return Err(self.env.step_error(
                cx.step,
                cx.label,
                StepFailure::ReservedName {
                    path: format!("/{}", e.path),
                },
            ));
        }
        let entries = layer::normalize(out.entries);
        let rec = self.record_layer(key, &entries, &description)?;
        // The entries' files may live in the op's work directory: it goes
        // only now that the layer is written, and a RUN's rootfs is kept
        // for the next step, as the tree of the layers with this one.
        drop(out.work);
        if let (Some(left), Some(l)) = (out.rootfs, &rec.layer) {
            let (manifest, stats) = left.snapshot.advance(&entries);
            let mut layers = left.layers;
            layers.push(l.digest.clone());
            self.env.pool.keep_warm(super::pool::WarmRootfs {
                layers,
                dir: left.dir,
                manifest,
                stats,
                shared: left.shared,
            });
        }
        Ok((rec, Some(entries)))
    }

    /// Keeps the step's inputs as its scope's last, to explain its next
    /// miss.
    fn keep_inputs(
        &self,
        scope: &str,
        key: &crate::cache::CacheKey,
        inputs: &StepInputs,
    ) -> Result<(), BuildError> {
        let store = self.env.store;
        if store.history_key(scope)?.as_deref() != Some(key.to_string().as_str()) {
            store.put_history(
                scope,
                &key.to_string(),
                &serde_json::to_string(inputs).expect("inputs"),
            )?;
        }
        Ok(())
    }

    /// The step's effect on the stage: its layer, the config, the history.
    fn apply(
        &self,
        op: &dyn ops::Op,
        cx: &StepCx<'_>,
        st: &mut StageState,
        record: StepRecord,
        new_entries: Option<Vec<LayerEntry>>,
        cached: bool,
    ) {
        st.missed = st.missed || !cached;
        let empty_layer = record.layer.is_none();
        if let Some(l) = record.layer {
            match (new_entries, st.manifest.as_mut()) {
                // The layer was just written from these entries.
                (Some(entries), Some(m)) => layer::apply_entries(m, &entries),
                // A cached layer: the manifest is rebuilt if a later step
                // needs it.
                _ => st.manifest = None,
            }
            st.layers.push(l);
        }
        // As BuildKit: RUN's entry names the shell of the config it ran
        // with, so it is said before this step changes the config.
        let created_by = op.created_by(cx.step, &st.config);
        op.configure(cx.step, &mut st.config, &mut st.cmd_set);
        if let Some(created_by) = created_by {
            st.history.push(HistoryEntry {
                created: oci::rfc3339(self.env.opts.epoch),
                created_by,
                comment: "wbuild.dockerfile.v0".into(),
                empty_layer,
            });
        }
    }
}

/// Why a step ran (or that it did not), for its report.
#[derive(Default)]
struct Miss {
    missed: bool,
    reason: Reason,
    changed: Option<super::Changed>,
    /// A miss's inputs against its previous build's.
    changes: Vec<cache::InputChange>,
}

impl Miss {
    fn done(
        self,
        key: Option<String>,
        layer: Option<crate::oci::LayerInfo>,
        inputs: StepInputs,
    ) -> StepDone {
        StepDone {
            cached: !self.missed,
            reason: self.reason,
            key,
            layer,
            inputs: Some(Box::new(inputs)),
            changed: self.changed,
            changes: self.changes,
        }
    }
}

/// How a step ended, for its report.
pub(super) struct StepDone {
    cached: bool,
    reason: Reason,
    key: Option<String>,
    layer: Option<crate::oci::LayerInfo>,
    inputs: Option<Box<StepInputs>>,
    changed: Option<super::Changed>,
    /// A miss's inputs against its previous build's.
    changes: Vec<cache::InputChange>,
}

impl StepDone {
    /// Explaining: a step whose key cannot be known before an earlier one
    /// runs.
    fn unknown(reason: Reason) -> StepDone {
        StepDone {
            cached: false,
            reason,
            key: None,
            layer: None,
            inputs: None,
            changed: None,
            changes: Vec::new(),
        }
    }
}
