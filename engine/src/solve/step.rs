//! One stage, step by step, through the one lookup/record path: a step's
//! op gives its cache inputs, the key is looked up in the caches (`cache::lookup`),
//! and only on a miss does the op execute; its layer is written and
//! recorded. This path knows nothing of instruction kinds.

use std::time::Instant;

use super::ops::{self, StepCx};
use super::{lock, BuildError, Solver, StageState, StepFailure, StepReport};
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
            .opts
            .no_cache_filter
            .iter()
            .any(|f| stage.name.as_deref() == Some(&f.to_ascii_lowercase()));

        // FROM.
        let v = self.next_vertex();
        let t0 = Instant::now();
        self.emit(Event::Started {
            vertex: v,
            name: format!("[{}] {}", label_of(1), stage.from_display),
            stage: stage.index,
        });
        let mut st = self.base_state(stage, &label_of(1))?;
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
            self.emit(Event::Started {
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
                    self.emit(Event::Detail {
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
                    self.emit(Event::Error { vertex: v, message });
                    return Err(e);
                }
            }
        }
        lock(&self.stages).insert(stage.index, st);
        Ok(reports)
    }

    fn finish_vertex(&self, v: usize, t0: Instant, cached: bool, reason: &str) {
        if cached {
            // A hit from the store is "hit"; one from an imported cache
            // says where it came from.
            self.emit(Event::Cached {
                vertex: v,
                reason: if reason.is_empty() {
                    "hit".into()
                } else {
                    reason.to_string()
                },
            });
        } else {
            self.emit(Event::Done {
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
        if self.opts.dry_run {
            if st.unknown {
                return Ok(StepDone::unknown(Reason::ParentRebuilt));
            }
            // A stage it reads that would rebuild: its files are known
            // only once it has run.
            let first = step
                .uses_stages
                .iter()
                .find(|&&i| self.stage_state(i).unknown);
            if let Some(&i) = first {
                st.unknown = true;
                st.missed = true;
                let label = cx.plan.stages[i].label();
                return Ok(StepDone::unknown(Reason::SourceStageRebuilds(label)));
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
        op.cache_inputs(self, cx, st, &mut inputs)?;
        let key = inputs.key();
        let scope = format!("{}|{}|{}", self.opts.scope, stage.label(), step.line);
        let forced = if self.opts.no_cache {
            Some(Reason::NoCache)
        } else if filtered {
            Some(Reason::NoCacheFilter(stage.label()))
        } else {
            None
        };
        let mut hit: Option<StepRecord> = None;
        if forced.is_none() && !st.missed {
            hit = self.cache.lookup_step(&key, &inputs)?;
        }
        let mut new_entries: Option<Vec<LayerEntry>> = None;
        let mut changed = None;
        let mut changes = Vec::new();
        let (record, cached, reason) = match hit {
            Some(rec) => {
                let reason = match &rec.from {
                    Some(from) => Reason::HitFrom(from.clone()),
                    None => Reason::Hit,
                };
                (rec, true, reason)
            }
            None => {
                // Last build's inputs for this step are read only to explain a miss.
                let previous: Option<StepInputs> = self
                    .store
                    .get_history(&scope)?
                    .and_then(|(_, inputs)| serde_json::from_str(&inputs).ok());
                let reason = match (forced, self.cache.miss_note(&key)) {
                    (Some(r), _) if !st.missed => r,
                    (_, Some(note)) if !st.missed => Reason::ImportedMiss(note),
                    _ => cache::explain(previous.as_ref(), &inputs, st.missed),
                };
                if let Some(p) = &previous {
                    changes = cache::changes(p, &inputs);
                }
                if let Reason::FileChanged { path, .. } = &reason {
                    changed = Some(super::Changed {
                        path: path.clone(),
                        was: previous.as_ref().and_then(|p| p.files.get(path).cloned()),
                        now: inputs.files.get(path).cloned(),
                    });
                }
                if self.opts.dry_run {
                    st.unknown = true;
                    st.missed = true;
                    return Ok(StepDone {
                        cached: false,
                        reason,
                        key: Some(key.to_string()),
                        layer: None,
                        inputs: Some(Box::new(inputs)),
                        changed,
                        changes,
                    });
                }
                let description = format!("[{}] {}", stage.label(), step.display);
                let rec = match op.execute(self, cx, st, &key)? {
                    Some(out) => {
                        // A name the OCI layer format reserves would act
                        // as a deletion in this layer or a later one.
                        if let Some(e) = out.entries.iter().find(|e| layer::is_reserved(e)) {
                            return Err(self.step_error(
                                step,
                                cx.label,
                                StepFailure::ReservedName {
                                    path: format!("/{}", e.path),
                                },
                            ));
                        }
                        let entries = layer::normalize(out.entries);
                        let rec = self.record_layer(&key, &entries, &description)?;
                        // The entries' files may live in the op's work
                        // directory: it goes only now that the layer is
                        // written, and a RUN's rootfs is kept for the next
                        // step, as the tree of the layers with this one.
                        drop(out.work);
                        if let (Some(left), Some(l)) = (out.rootfs, &rec.layer) {
                            let (manifest, stats) = left.snapshot.advance(&entries);
                            let mut layers = left.layers;
                            layers.push(l.digest.clone());
                            self.keep_warm(super::WarmRootfs {
                                layers,
                                dir: left.dir,
                                manifest,
                                stats,
                                shared: left.shared,
                            });
                        }
                        new_entries = Some(entries);
                        rec
                    }
                    None => {
                        let rec = StepRecord::default();
                        self.cache.record(&key, &rec, &description)?;
                        rec
                    }
                };
                (rec, false, reason)
            }
        };
        if !self.opts.dry_run
            && self.store.history_key(&scope)?.as_deref() != Some(key.to_string().as_str())
        {
            self.store.put_history(
                &scope,
                &key.to_string(),
                &serde_json::to_string(&inputs).expect("inputs"),
            )?;
        }

        // Effects on the stage.
        let key_text = key.to_string();
        let kept_layer = record.layer.clone();
        st.key = key;
        st.missed = st.missed || !cached;
        let created = oci::rfc3339(self.opts.epoch);
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
        op.configure(step, &mut st.config, &mut st.cmd_set);
        // WORKDIR's entry names the directory it resolved to, as
        // BuildKit's does (`WORKDIR rel` on `/srv` is `WORKDIR /srv/rel`).
        let created_by = match &step.instruction {
            crate::frontend::instructions::Instruction::Workdir { .. } => {
                format!("WORKDIR {}", step.workdir)
            }
            _ => step.display.clone(),
        };
        st.history.push(HistoryEntry {
            created,
            created_by,
            comment: "wbuild.dockerfile.v0".into(),
            empty_layer,
        });
        Ok(StepDone {
            cached,
            reason,
            key: Some(key_text),
            layer: kept_layer,
            inputs: Some(Box::new(inputs)),
            changed,
            changes,
        })
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
