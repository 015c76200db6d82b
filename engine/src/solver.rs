//! Runs a build plan: for each needed stage, in dependency order, each step
//! gets its cache key; a hit reuses the recorded result, a miss runs the
//! step (COPY/ADD as filesystem operations on the host side, config
//! instructions on the image config) and records it. Every step reports
//! whether it was cached and why.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::cache::{self, CacheKey, Reason, StepInputs};
use crate::context::Context;
use crate::digest::Digest;
use crate::export::{self, HealthConfig, HistoryEntry, Image, ImageConfig, RootFs, RunConfig};
use crate::frontend::dockerignore::{self, Matcher};
use crate::frontend::instructions::{
    CommandLine, Copy, FileSources, Healthcheck, Instruction, Source,
};
use crate::fs::layer::{self, Compression, Content, LayerEntry, LayerInfo};
use crate::fs::{self as tree, Kind, Manifest, Meta};
use crate::plan::{Base, BuildPlan, PlannedStage, Step};
use crate::progress::{Event, Progress};
use crate::store::Store;

/// The default PATH BuildKit puts in the config of a stage that has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}:{line}: {step}: {message}")]
    Step {
        file: String,
        line: usize,
        step: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Layer(#[from] crate::fs::layer::LayerError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
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
    /// Layer timestamps (`SOURCE_DATE_EPOCH`, 0 by default).
    pub epoch: u64,
    pub compression: Compression,
    pub level: i32,
    /// Longest a RUN step may take.
    pub step_timeout: std::time::Duration,
    /// Most memory a RUN step's program may use, in bytes.
    pub step_memory: u64,
    /// `--secret` values by id (never part of a key, a record or a layer).
    pub secrets: BTreeMap<String, Vec<u8>>,
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
}

pub struct BuildOutcome {
    pub image: Image,
    pub steps: Vec<StepReport>,
}

/// The result of a step kept in a cache record.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct StepRecord {
    layer: Option<LayerInfo>,
}

#[derive(Clone)]
struct StageState {
    key: CacheKey,
    missed: bool,
    layers: Vec<LayerInfo>,
    config: RunConfig,
    history: Vec<HistoryEntry>,
    /// The rootfs metadata, rebuilt from the layers when first needed.
    manifest: Option<Manifest>,
    cmd_set: bool,
}

/// A tree files can be copied from: the context, or a stage's rootfs
/// materialized in a temp dir.
struct SourceTree {
    label: String,
    /// The stage this tree is the rootfs of (None for the context).
    stage: Option<usize>,
    root: PathBuf,
    entries: BTreeMap<String, Meta>,
    /// Keep owners (stage sources) or reset them to 0:0 (the context).
    keep_owner: bool,
    _tmp: Option<tempfile::TempDir>,
}

pub struct Solver<'a> {
    store: &'a Store,
    opts: BuildOptions,
    progress: &'a mut dyn Progress,
    started: Instant,
    vertex: usize,
    reports: Vec<StepReport>,
    stages: BTreeMap<usize, StageState>,
    materialized: BTreeMap<usize, Arc<SourceTree>>,
    context_tree: Arc<SourceTree>,
    /// Work directories of RUN steps whose layers are being written.
    run_dirs: Vec<tempfile::TempDir>,
}

fn now_key(s: &str) -> CacheKey {
    CacheKey(Digest::of(s.as_bytes()))
}

impl<'a> Solver<'a> {
    pub fn new(
        store: &'a Store,
        context: &'a Context,
        opts: BuildOptions,
        progress: &'a mut dyn Progress,
    ) -> Self {
        Solver {
            store,
            opts,
            progress,
            started: Instant::now(),
            vertex: 0,
            reports: Vec::new(),
            stages: BTreeMap::new(),
            materialized: BTreeMap::new(),
            run_dirs: Vec::new(),
            context_tree: Arc::new(SourceTree {
                label: "context".into(),
                stage: None,
                root: context.root.clone(),
                entries: context
                    .entries
                    .iter()
                    .map(|(k, e)| (k.clone(), e.meta.clone()))
                    .collect(),
                keep_owner: false,
                _tmp: None,
            }),
        }
    }

    /// Builds the plan's target stage and assembles its image.
    pub fn build(mut self, plan: &BuildPlan) -> Result<BuildOutcome, BuildError> {
        for stage in plan.needed_stages() {
            self.build_stage(plan, stage)?;
        }
        let target = &plan.stages[plan.target];
        let st = self.stages.remove(&plan.target).expect("target built");
        let created = export::rfc3339(self.opts.epoch);
        let config = ImageConfig {
            created,
            architecture: target.platform.architecture.clone(),
            os: target.platform.os.clone(),
            variant: target.platform.variant.clone(),
            config: st.config,
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: st.layers.iter().map(|l| l.diff_id.clone()).collect(),
            },
            history: st.history,
        };
        let image = export::assemble(self.store, config, st.layers, &target.platform)?;
        Ok(BuildOutcome {
            image,
            steps: self.reports,
        })
    }

    fn step_error(&self, step: &Step, label: &str, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.opts.dockerfile.clone(),
            line: step.line,
            step: format!("[{label}] {}", step.display),
            message: message.into(),
        }
    }

    fn build_stage(&mut self, plan: &BuildPlan, stage: &PlannedStage) -> Result<(), BuildError> {
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
        self.vertex += 1;
        let v = self.vertex;
        let t0 = Instant::now();
        self.progress.event(Event::Started {
            vertex: v,
            name: format!("[{}] {}", label_of(1), stage.from_display),
        });
        let mut st = match &stage.base {
            Base::Scratch => {
                let mut config = RunConfig::default();
                config.set_env("PATH", DEFAULT_PATH);
                StageState {
                    key: now_key(&format!("scratch {}", stage.platform.spec())),
                    missed: false,
                    layers: Vec::new(),
                    config,
                    history: Vec::new(),
                    manifest: Some(Manifest::new()),
                    cmd_set: false,
                }
            }
            Base::WbuildBase => self.wbuild_base(&stage.platform)?,
            Base::Stage(i) => {
                let mut s = self.stages.get(i).cloned().expect("dependencies are built first");
                s.cmd_set = false;
                s
            }
            Base::Image(name) => {
                return Err(BuildError::Step {
                    file: self.opts.dockerfile.clone(),
                    line: 0,
                    step: format!("[{}] {}", label_of(1), stage.from_display),
                    message: format!(
                        "cannot use image {name:?}: pulling base images is not supported yet; build FROM scratch or FROM an earlier stage"
                    ),
                })
            }
        };
        let from_cached = !st.missed;
        let from_reason = match &stage.base {
            Base::Stage(i) if st.missed => format!("stage {} rebuilt", plan.stages[*i].label()),
            _ => String::new(),
        };
        // Later steps are keyed on the base stage's key: when it rebuilt to
        // the same key, they can still be cache hits.
        st.missed = false;
        self.finish_vertex(v, t0, from_cached, &from_reason);
        self.reports.push(StepReport {
            stage: stage.label(),
            instruction: stage.from_display.clone(),
            cached: from_cached,
            reason: if from_cached {
                "hit".into()
            } else {
                from_reason
            },
            seconds: t0.elapsed().as_secs_f64(),
        });

        for (i, step) in stage.steps.iter().enumerate() {
            let label = label_of(i + 2);
            self.vertex += 1;
            let v = self.vertex;
            let t0 = Instant::now();
            self.progress.event(Event::Started {
                vertex: v,
                name: format!("[{label}] {}", step.display),
            });
            let result = self.run_step(plan, stage, step, &label, &mut st, filtered);
            match result {
                Ok((cached, reason)) => {
                    let reason_text = reason.to_string();
                    self.finish_vertex(v, t0, cached, if cached { "" } else { &reason_text });
                    self.reports.push(StepReport {
                        stage: stage.label(),
                        instruction: step.display.clone(),
                        cached,
                        reason: reason_text,
                        seconds: t0.elapsed().as_secs_f64(),
                    });
                }
                Err(e) => {
                    self.progress.event(Event::Error {
                        vertex: v,
                        message: e.to_string(),
                    });
                    return Err(e);
                }
            }
        }
        self.stages.insert(stage.index, st);
        Ok(())
    }

    fn finish_vertex(&mut self, v: usize, t0: Instant, cached: bool, reason: &str) {
        if cached {
            self.progress.event(Event::Cached {
                vertex: v,
                reason: "hit".into(),
            });
        } else {
            self.progress.event(Event::Done {
                vertex: v,
                seconds: t0.elapsed().as_secs_f64(),
                reason: reason.to_string(),
            });
        }
        let _ = self.started;
    }

    /// One step: key, lookup, run on a miss, record; then apply its effect
    /// on the stage's config.
    fn run_step(
        &mut self,
        plan: &BuildPlan,
        stage: &PlannedStage,
        step: &Step,
        label: &str,
        st: &mut StageState,
        filtered: bool,
    ) -> Result<(bool, Reason), BuildError> {
        let canonical = serde_json::to_string(&step.instruction).expect("instruction serializes");
        let mut inputs = StepInputs {
            parent: Some(st.key.to_string()),
            instruction: step.display.clone(),
            canonical,
            ..Default::default()
        };
        inputs
            .extra
            .insert("platform".into(), stage.platform.spec());
        if let Instruction::Arg { args } = &step.instruction {
            for a in args {
                inputs.args.insert(
                    a.name.clone(),
                    step.args.get(&a.name).cloned().unwrap_or_default(),
                );
            }
        }
        let run_plan = match &step.instruction {
            Instruction::Run(r) => {
                let mut rp = self.plan_run(step, label, st, r)?;
                // The files a bind mount shows are part of the key.
                // A cache mount `from=` a stage starts out as a copy of it.
                for mp in rp.mounts.iter_mut().filter(|m| m.kind == "cache") {
                    let spec = &r.mounts[mp.index];
                    if spec.from.is_some() {
                        let (tree, _) = self.bind_source(plan, step, label, spec)?;
                        mp.from_stage = tree.stage;
                    }
                }
                for mp in rp.mounts.iter_mut().filter(|m| m.kind == "bind") {
                    let spec = &r.mounts[mp.index];
                    let (tree, items) = self.bind_source(plan, step, label, spec)?;
                    mp.from_stage = spec.from.as_ref().and_then(|_| tree.stage);
                    for (rel, m) in &items {
                        inputs
                            .files
                            .insert(format!("mount {}:{rel}", mp.target), cache::file_summary(m));
                    }
                }
                inputs
                    .extra
                    .insert("run".into(), serde_json::to_string(&rp).expect("run plan"));
                Some(rp)
            }
            _ => None,
        };

        // What the step reads, for its key; the layer itself is laid out
        // only on a miss.
        let selection = match &step.instruction {
            Instruction::Copy(c) => {
                Some(self.select_sources(plan, step, label, &c.files, c.from.as_deref(), None)?)
            }
            Instruction::Add(a) => {
                if a.checksum.is_some() {
                    return Err(self.step_error(
                        step,
                        label,
                        "--checksum applies to URL sources, which are not supported yet",
                    ));
                }
                if a.keep_git_dir {
                    return Err(self.step_error(
                        step,
                        label,
                        "--keep-git-dir applies to git sources, which are not supported yet",
                    ));
                }
                Some(self.select_sources(
                    plan,
                    step,
                    label,
                    &a.files,
                    None,
                    Some(a.unpack.unwrap_or(true)),
                )?)
            }
            _ => None,
        };
        if let Some(sel) = &selection {
            inputs.files = sel.inputs.clone();
        }
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
            hit = self.cached_record(&key)?;
        }
        let mut new_entries: Option<Vec<LayerEntry>> = None;
        let (record, cached, reason) = match hit {
            Some(rec) => (rec, true, Reason::Hit),
            None => {
                // Last build's inputs for this step are read only to explain a miss.
                let previous: Option<StepInputs> = self
                    .store
                    .get_history(&scope)?
                    .and_then(|(_, inputs)| serde_json::from_str(&inputs).ok());
                let reason = match forced {
                    Some(r) if !st.missed => r,
                    _ => cache::explain(previous.as_ref(), &inputs, st.missed),
                };
                let entries = match (&step.instruction, selection) {
                    (Instruction::Run(_), _) => {
                        let rp = run_plan.as_ref().expect("planned");
                        Some(self.execute_run(step, label, st, rp, &key)?)
                    }
                    (Instruction::Workdir { .. }, _) => {
                        let dir = tree::manifest_path(&step.workdir);
                        let m = self.manifest(st)?;
                        if dir.is_empty() || m.get(&dir).is_some_and(|x| x.kind == Kind::Dir) {
                            None
                        } else {
                            Some(missing_parents(m, &format!("{dir}/x"), 0, 0))
                        }
                    }
                    (Instruction::Copy(c), Some(sel)) => {
                        Some(self.lay_out(step, label, st, &c.files, c.parents, sel)?)
                    }
                    (Instruction::Add(a), Some(sel)) => {
                        Some(self.lay_out(step, label, st, &a.files, false, sel)?)
                    }
                    _ => None,
                };
                let description = format!("[{}] {}", stage.label(), step.display);
                let rec = match entries {
                    Some(entries) => {
                        let entries = layer::normalize(entries);
                        let rec = self.record_layer(&key, &entries, &description)?;
                        new_entries = Some(entries);
                        self.run_dirs.clear();
                        rec
                    }
                    None => {
                        let rec = StepRecord::default();
                        self.store.put_cache(
                            &key.to_string(),
                            &serde_json::to_string(&rec).expect("record"),
                            0,
                            &description,
                            &[],
                        )?;
                        rec
                    }
                };
                (rec, false, reason)
            }
        };
        if self.store.history_key(&scope)?.as_deref() != Some(key.to_string().as_str()) {
            self.store.put_history(
                &scope,
                &key.to_string(),
                &serde_json::to_string(&inputs).expect("inputs"),
            )?;
        }

        // Effects on the stage.
        st.key = key;
        st.missed = st.missed || !cached;
        let created = export::rfc3339(self.opts.epoch);
        let empty_layer = record.layer.is_none();
        if let Some(l) = record.layer {
            match (new_entries, st.manifest.as_mut()) {
                // The layer was just written from these entries.
                (Some(entries), Some(m)) => {
                    for e in entries {
                        if e.whiteout {
                            let under = format!("{}/", e.path);
                            m.retain(|k, _| k != &e.path && !k.starts_with(&under));
                        } else {
                            m.insert(e.path, e.meta);
                        }
                    }
                }
                // A cached layer: the manifest is rebuilt if a later step
                // needs it.
                _ => st.manifest = None,
            }
            st.layers.push(l);
        }
        apply_config(&mut st.config, &mut st.cmd_set, step);
        st.history.push(HistoryEntry {
            created,
            created_by: step.display.clone(),
            comment: "wbuild.dockerfile.v0".into(),
            empty_layer,
        });
        Ok((cached, reason))
    }

    /// A usable cache record for `key`: its layer blob is there with the
    /// right size (other damage is caught when the blob is read) and is now
    /// held by this build's lease.
    fn cached_record(&self, key: &CacheKey) -> Result<Option<StepRecord>, BuildError> {
        let Some(row) = self.store.get_cache(&key.to_string())? else {
            return Ok(None);
        };
        let Ok(rec) = serde_json::from_str::<StepRecord>(&row.record) else {
            return Ok(None);
        };
        if let Some(l) = &rec.layer {
            if self.store.blob_size(&l.digest) != Some(l.size) {
                return Ok(None);
            }
            self.store.lease_blob(&l.digest)?;
        }
        Ok(Some(rec))
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
        let rec = StepRecord { layer: Some(info) };
        let l = rec.layer.as_ref().expect("just written");
        let json = serde_json::to_string(&rec).expect("record serializes");
        self.store.put_cache(
            &key.to_string(),
            &json,
            l.size,
            description,
            std::slice::from_ref(&l.digest),
        )?;
        Ok(rec)
    }

    /// The state `FROM wbuild/base` starts from: its one layer, written
    /// once per wbox build and then taken from the cache.
    fn wbuild_base(&mut self, platform: &crate::plan::Platform) -> Result<StageState, BuildError> {
        let key = now_key(&format!("{} {}", crate::base::identity(), platform.spec()));
        let entries = layer::normalize(crate::base::layer_entries());
        let record = match self.cached_record(&key)?.filter(|r| r.layer.is_some()) {
            Some(r) => r,
            None => self.record_layer(&key, &entries, "wbuild/base")?,
        };
        let layer = record.layer.expect("the base has a layer");
        let mut config = RunConfig::default();
        config.set_env("PATH", DEFAULT_PATH);
        let mut manifest = Manifest::new();
        for e in entries {
            manifest.insert(e.path, e.meta);
        }
        Ok(StageState {
            key,
            missed: false,
            layers: vec![layer],
            config,
            history: vec![HistoryEntry {
                created: export::rfc3339(self.opts.epoch),
                created_by: crate::base::identity(),
                comment: "wbuild.base.v0".into(),
                empty_layer: false,
            }],
            manifest: Some(manifest),
            cmd_set: false,
        })
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

    /// A finished stage's rootfs on disk, for `COPY --from`.
    fn stage_tree(&mut self, index: usize, label: &str) -> Result<Arc<SourceTree>, BuildError> {
        if let Some(t) = self.materialized.get(&index) {
            return Ok(t.clone());
        }
        let st = self
            .stages
            .get(&index)
            .expect("dependencies are built first");
        let tmp = tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(self.store.root().join("tmp"))
            .map_err(|e| crate::store::StoreError::Io {
                path: self.store.root().join("tmp"),
                source: e,
            })?;
        let mut m = Manifest::new();
        for l in &st.layers {
            layer::apply_to_dir(self.store, l, tmp.path(), &mut m)?;
        }
        let t = Arc::new(SourceTree {
            label: format!("stage {label}"),
            stage: Some(index),
            root: tmp.path().to_path_buf(),
            entries: m,
            keep_owner: true,
            _tmp: Some(tmp),
        });
        self.materialized.insert(index, t.clone());
        Ok(t)
    }

    /// What a RUN step will execute: argv, env, cwd (all part of its key).
    fn plan_run(
        &self,
        step: &Step,
        label: &str,
        st: &StageState,
        r: &crate::frontend::instructions::Run,
    ) -> Result<RunPlan, BuildError> {
        use crate::frontend::instructions::{MountType, NetworkMode};
        let mut mounts = Vec::new();
        for (i, m) in r.mounts.iter().enumerate() {
            let kind = m.kind();
            if kind == MountType::Ssh {
                return Err(self.step_error(
                    step,
                    label,
                    "--mount=type=ssh: there are no sockets in the sandbox, so no SSH agent",
                ));
            }
            let target = match (&m.target, kind) {
                (Some(t), _) => t.clone(),
                (None, MountType::Secret) if m.env.is_none() => {
                    format!(
                        "/run/secrets/{}",
                        m.id.clone()
                            .or_else(|| m.source.clone())
                            .unwrap_or_default()
                    )
                }
                (None, MountType::Secret) => String::new(),
                (None, _) => {
                    return Err(self.step_error(
                        step,
                        label,
                        format!("--mount={}: target= is required", m.raw),
                    ))
                }
            };
            let target = if target.is_empty() || target.starts_with('/') {
                target
            } else {
                format!("{}/{}", step.workdir.trim_end_matches('/'), target)
            };
            mounts.push(MountPlan {
                index: i,
                kind: MountType::NAMES[kind as usize].to_string(),
                target,
                read_only: m.is_read_only(),
                id: m.id.clone().or_else(|| {
                    if kind == MountType::Secret {
                        m.source.clone()
                    } else {
                        None
                    }
                }),
                sharing: m.sharing.map(|s| format!("{s:?}").to_ascii_lowercase()),
                source: m.source.clone(),
                from_stage: None,
                env: m.env.clone(),
                required: m.required.unwrap_or(false),
            });
        }
        if r.network == Some(NetworkMode::Host) {
            return Err(self.step_error(
                step,
                label,
                "--network=host: the sandbox has no sockets; use --network=none or default",
            ));
        }
        let shell = if st.config.shell.is_empty() {
            vec!["/bin/sh".to_string(), "-c".to_string()]
        } else {
            st.config.shell.clone()
        };
        let mut argv = if r.command.shell_form {
            let mut script = r.command.args.join(" ");
            if let Some(h) = r.heredocs.first() {
                // `RUN <<EOF` alone runs the heredoc as the script.
                let only_marker = r.heredocs.len() == 1
                    && crate::frontend::parser::parse_heredoc(script.trim())
                        .ok()
                        .flatten()
                        .is_some();
                if only_marker {
                    script = h.body();
                } else {
                    // As BuildKit does: the command line and every body,
                    // each closed by its delimiter, go to the shell, which
                    // reads the here-documents itself.
                    for h in &r.heredocs {
                        script.push('\n');
                        script.push_str(&h.content);
                        script.push_str(&h.name);
                    }
                }
            }
            let mut v = shell;
            v.push(script);
            v
        } else {
            r.command.args.clone()
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(self.step_error(step, label, "RUN has no command"));
        }
        // ENV wins over an ARG of the same name; ARGs in scope are env too.
        let mut env = st.config.env_map();
        for (k, v) in &step.args {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        env.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        let cwd = if step.workdir.is_empty() {
            "/".to_string()
        } else {
            step.workdir.clone()
        };
        env.insert("PWD".into(), cwd.clone());
        argv.shrink_to_fit();
        Ok(RunPlan {
            argv,
            env,
            cwd,
            mounts,
        })
    }

    /// The tree and the entries a bind mount shows (its source directory
    /// and everything under it).
    fn bind_source(
        &mut self,
        plan: &BuildPlan,
        step: &Step,
        label: &str,
        m: &crate::frontend::instructions::MountSpec,
    ) -> Result<(Arc<SourceTree>, Vec<TreeItem>), BuildError> {
        let tree = match &m.from {
            None => self.context_tree.clone(),
            Some(f) => match step.uses_stages.iter().find(|&&i| plan.stages[i].name.as_deref() == Some(&f.to_ascii_lowercase()) || f.parse::<usize>() == Ok(i)) {
                Some(&i) => {
                    let lbl = plan.stages[i].label();
                    self.stage_tree(i, &lbl)?
                }
                None => return Err(self.step_error(step, label, format!("--mount from={f}: no stage of that name, and mounting images is not supported yet"))),
            },
        };
        let src = m.source.clone().unwrap_or_else(|| ".".into());
        let picked = select(&tree, &src)
            .map_err(|e| self.step_error(step, label, format!("--mount={}: {e}", m.raw)))?;
        let (root_rel, meta) = picked.into_iter().next().expect("one source");
        if meta.kind != Kind::Dir {
            return Err(self.step_error(
                step,
                label,
                format!(
                    "--mount={}: binding a single file is not supported yet; bind its directory",
                    m.raw
                ),
            ));
        }
        let prefix = if root_rel.is_empty() {
            String::new()
        } else {
            format!("{root_rel}/")
        };
        let items: Vec<(String, Meta)> = tree
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].to_string(), v.clone()))
            .collect();
        Ok((tree, items))
    }

    /// Runs a RUN step on a copy of the stage's rootfs and returns what it
    /// changed, as layer entries.
    #[cfg(feature = "sandbox")]
    fn execute_run(
        &mut self,
        step: &Step,
        label: &str,
        st: &mut StageState,
        rp: &RunPlan,
        key: &CacheKey,
    ) -> Result<Vec<LayerEntry>, BuildError> {
        use crate::fs::snapshot::Snapshot;
        use crate::sandbox;
        let work = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(self.store.root().join("tmp"))
            .map_err(|e| {
                self.step_error(step, label, format!("cannot create a work directory: {e}"))
            })?;
        let mut snap = Snapshot::materialize(self.store, &st.layers, work.path())
            .map_err(|e| self.step_error(step, label, e.to_string()))?;
        let cwd_host = work.path().join(tree::manifest_path(&rp.cwd));
        std::fs::create_dir_all(&cwd_host)
            .map_err(|e| self.step_error(step, label, format!("WORKDIR {}: {e}", rp.cwd)))?;
        let path = rp
            .env
            .get("PATH")
            .map(String::as_str)
            .unwrap_or(DEFAULT_PATH);
        let (program_path, argv) = sandbox::resolve_program(&snap.dir, &rp.argv, &rp.cwd, path)
            .map_err(|m| self.step_error(step, label, m))?;
        let bytes = std::fs::read(&program_path)
            .map_err(|e| self.step_error(step, label, format!("{}: {e}", argv[0])))?;
        let cache_dir = self.store.root().join("compiled");
        let _ = std::fs::create_dir_all(&cache_dir);
        let module = sandbox::load_program(&bytes, &argv[0], Some(&cache_dir))
            .map_err(|e| self.step_error(step, label, e.to_string()))?;
        let mut env: Vec<(String, String)> =
            rp.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // HOME follows from the parent's rootfs and USER, both in the key.
        sandbox::complete_env(&mut env, work.path(), &st.config.user, &rp.cwd);
        let mut preopens = vec![sandbox::Preopen {
            host: work.path().to_path_buf(),
            guest: "/".into(),
            writable: true,
        }];
        let mut mounts = self
            .set_up_mounts(
                plan_of_mounts(step),
                rp,
                work.path(),
                &mut env,
                &mut preopens,
            )
            .map_err(|m| self.step_error(step, label, m))?;
        let spec = sandbox::RunSpec {
            program: Arc::new(bytes),
            program_name: argv[0].clone(),
            argv: argv.clone(),
            env,
            cwd: rp.cwd.clone(),
            preopens,
            clock: self.opts.epoch,
            seed: key.0.hex().as_bytes().to_vec(),
            timeout: self.opts.step_timeout,
            memory: self.opts.step_memory,
            output_limit: 64 << 20,
            inherit_stdio: false,
        };
        let t0 = Instant::now();
        let vertex = self.vertex;
        let progress = &mut *self.progress;
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let ctx = Arc::new(sandbox::SpawnContext {
            rootfs: Some(work.path().to_path_buf()),
            module_cache: Some(cache_dir.clone()),
            overrides: Default::default(),
            modes: sandbox::mode_exceptions(&snap.manifest),
            deadline: std::time::Instant::now() + self.opts.step_timeout,
        });
        let out = sandbox::run(&spec, &module, ctx.clone(), &mut |line: &str| {
            progress.event(Event::Log {
                vertex,
                seconds: t0.elapsed().as_secs_f64(),
                text: line.to_string(),
            });
            if tail.len() == 10 {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        });
        // Secrets leave the rootfs before anything looks at it.
        mounts.clean_up();
        let tail: Vec<String> = tail.into_iter().collect();
        let out = out.map_err(|e| {
            let mut msg = e.to_string();
            if !tail.is_empty() {
                msg.push_str(&format!("; last output:\n  {}", tail.join("\n  ")));
            }
            self.step_error(step, label, msg)
        })?;
        if out.exit_code != 0 {
            let mut msg = format!("process {:?} exited with code {}", argv, out.exit_code);
            if !tail.is_empty() {
                msg.push_str(&format!("; last output:\n  {}", tail.join("\n  ")));
            }
            return Err(self.step_error(step, label, msg));
        }
        snap.overrides =
            std::mem::take(&mut *ctx.overrides.lock().unwrap_or_else(|p| p.into_inner()));
        let entries = snap
            .diff()
            .map_err(|e| self.step_error(step, label, e.to_string()))?;
        // The entries point into the work dir: keep it until the layer is written.
        self.run_dirs.push(work);
        Ok(entries)
    }

    /// Prepares every mount of a RUN step: directories to preopen, secret
    /// files and variables. What it returns undoes the rootfs changes.
    #[cfg(feature = "sandbox")]
    fn set_up_mounts(
        &mut self,
        specs: Vec<crate::frontend::instructions::MountSpec>,
        rp: &RunPlan,
        rootfs: &Path,
        env: &mut Vec<(String, String)>,
        preopens: &mut Vec<crate::sandbox::Preopen>,
    ) -> Result<MountGuards, String> {
        let mut guards = MountGuards::default();
        let tmp_root = self.store.root().join("tmp");
        for mp in &rp.mounts {
            let spec = &specs[mp.index];
            match mp.kind.as_str() {
                "bind" => {
                    let dir = tempfile::Builder::new()
                        .prefix("bind-")
                        .tempdir_in(&tmp_root)
                        .map_err(|e| e.to_string())?;
                    let tree = match mp.from_stage {
                        Some(i) => self
                            .materialized
                            .get(&i)
                            .cloned()
                            .ok_or("bind source stage is not built")?,
                        None => self.context_tree.clone(),
                    };
                    let src = tree
                        .root
                        .join(tree::manifest_path(spec.source.as_deref().unwrap_or(".")));
                    copy_tree(&src, dir.path())
                        .map_err(|e| format!("--mount={}: {e}", spec.raw))?;
                    preopens.push(crate::sandbox::Preopen {
                        host: dir.path().to_path_buf(),
                        guest: mp.target.clone(),
                        writable: !mp.read_only,
                    });
                    guards.dirs.push(dir);
                }
                "tmpfs" => {
                    let dir = tempfile::Builder::new()
                        .prefix("tmpfs-")
                        .tempdir_in(&tmp_root)
                        .map_err(|e| e.to_string())?;
                    preopens.push(crate::sandbox::Preopen {
                        host: dir.path().to_path_buf(),
                        guest: mp.target.clone(),
                        writable: true,
                    });
                    guards.dirs.push(dir);
                }
                "cache" => {
                    let id = mp.id.clone().unwrap_or_else(|| mp.target.clone());
                    let base = self.store.root().join("cache-mounts");
                    let dir = base.join(crate::digest::Digest::of(id.as_bytes()).hex());
                    std::fs::create_dir_all(&dir).map_err(|e| format!("cache mount {id}: {e}"))?;
                    if let Some(i) = mp.from_stage {
                        let empty = std::fs::read_dir(&dir)
                            .map(|mut d| d.next().is_none())
                            .unwrap_or(false);
                        if empty {
                            let tree = self
                                .materialized
                                .get(&i)
                                .cloned()
                                .ok_or("cache source stage is not built")?;
                            let src = tree
                                .root
                                .join(tree::manifest_path(spec.source.as_deref().unwrap_or(".")));
                            copy_tree(&src, &dir)
                                .map_err(|e| format!("--mount={}: {e}", spec.raw))?;
                        }
                    }
                    let lock_path = base.join(format!(
                        "{}.lock",
                        crate::digest::Digest::of(id.as_bytes()).hex()
                    ));
                    let lock = std::fs::File::create(&lock_path)
                        .map_err(|e| format!("cache mount {id}: {e}"))?;
                    let host = match mp.sharing.as_deref() {
                        Some("locked") => {
                            lock.lock().map_err(|e| format!("cache mount {id}: {e}"))?;
                            guards.locks.push(lock);
                            dir
                        }
                        Some("private") => match lock.try_lock() {
                            Ok(()) => {
                                guards.locks.push(lock);
                                dir
                            }
                            Err(_) => {
                                // In use by another build: this one gets its own.
                                let own = tempfile::Builder::new()
                                    .prefix("cache-")
                                    .tempdir_in(&tmp_root)
                                    .map_err(|e| e.to_string())?;
                                let p = own.path().to_path_buf();
                                guards.dirs.push(own);
                                p
                            }
                        },
                        _ => dir,
                    };
                    preopens.push(crate::sandbox::Preopen {
                        host,
                        guest: mp.target.clone(),
                        writable: !mp.read_only,
                    });
                }
                "secret" => {
                    let id = mp.id.clone().unwrap_or_default();
                    let Some(value) = self.opts.secrets.get(&id) else {
                        if mp.required {
                            return Err(format!("secret {id:?} is required: pass --secret id={id},src=FILE (or env=VAR)"));
                        }
                        continue;
                    };
                    if let Some(var) = &mp.env {
                        env.retain(|(k, _)| k != var);
                        env.push((var.clone(), String::from_utf8_lossy(value).into_owned()));
                    }
                    if !mp.target.is_empty() {
                        guards.place_secret(rootfs, &mp.target, value)?;
                    }
                }
                other => return Err(format!("--mount type={other} is not supported")),
            }
        }
        Ok(guards)
    }

    #[cfg(not(feature = "sandbox"))]
    fn execute_run(
        &mut self,
        step: &Step,
        label: &str,
        _st: &mut StageState,
        _rp: &RunPlan,
        _key: &CacheKey,
    ) -> Result<Vec<LayerEntry>, BuildError> {
        Err(self.step_error(
            step,
            label,
            "this wbuild was built without the sandbox feature: RUN is not available",
        ))
    }

    /// Phase one of COPY/ADD: the files each source names, and their
    /// summaries for the key. Needs no rootfs.
    fn select_sources(
        &mut self,
        plan: &BuildPlan,
        step: &Step,
        label: &str,
        files: &FileSources,
        from: Option<&str>,
        unpack: Option<bool>,
    ) -> Result<Selection, BuildError> {
        let source = match from {
            None => self.context_tree.clone(),
            Some(f) => match step.uses_stages.first() {
                Some(&i) => {
                    let lbl = plan.stages[i].label();
                    self.stage_tree(i, &lbl)?
                }
                None => {
                    return Err(self.step_error(
                        step,
                        label,
                        format!("--from={f}: no stage of that name, and copying from images is not supported yet"),
                    ))
                }
            },
        };
        let exclude = Matcher::new(&files.exclude)
            .map_err(|e| self.step_error(step, label, e.to_string()))?;
        // Files of another stage are named `stage:/path` in reasons.
        let prefix = match from {
            Some(_) => format!("{}:/", source.label.trim_start_matches("stage ")),
            None => String::new(),
        };
        let mut picked = Vec::new();
        let mut inputs = BTreeMap::new();
        for src in &files.sources {
            match src {
                Source::Heredoc(h) => {
                    inputs.insert(
                        format!("<<{}", h.name),
                        Digest::of(h.content.as_bytes()).to_string(),
                    );
                    picked.push(Picked::Heredoc(
                        h.name.clone(),
                        Arc::from(h.content.as_bytes()),
                    ));
                }
                Source::Path(p) => {
                    if from.is_none() && is_url(p) {
                        return Err(self.step_error(
                            step,
                            label,
                            format!("{p}: adding from URLs and git repositories is not supported yet (wbuild has no network)"),
                        ));
                    }
                    let wildcard = has_wildcard(p);
                    for (root_rel, meta) in
                        select(&source, p).map_err(|m| self.step_error(step, label, m))?
                    {
                        if unpack == Some(true) && meta.kind == Kind::File {
                            if let Some(kind) = archive_kind(&source.root.join(&root_rel)) {
                                inputs.insert(
                                    format!("{prefix}{root_rel}"),
                                    cache::file_summary(&meta),
                                );
                                picked.push(Picked::Archive(
                                    source.root.join(&root_rel),
                                    kind,
                                    p.clone(),
                                ));
                                continue;
                            }
                        }
                        // The source itself, and everything under a directory.
                        let mut items = vec![(root_rel.clone(), meta.clone())];
                        if meta.kind == Kind::Dir {
                            let dir_prefix = if root_rel.is_empty() {
                                String::new()
                            } else {
                                format!("{root_rel}/")
                            };
                            items.extend(
                                source
                                    .entries
                                    .range(dir_prefix.clone()..)
                                    .take_while(|(k, _)| k.starts_with(&dir_prefix))
                                    .map(|(k, m)| (k.clone(), m.clone())),
                            );
                        }
                        items.retain(|(rel, _)| rel.is_empty() || !exclude.matches(rel));
                        for (rel, m) in &items {
                            if !rel.is_empty() {
                                inputs.insert(format!("{prefix}{rel}"), cache::file_summary(m));
                            }
                        }
                        picked.push(Picked::Tree {
                            root_rel,
                            meta,
                            wildcard,
                            items,
                        });
                    }
                }
            }
        }
        Ok(Selection {
            source,
            picked,
            inputs,
        })
    }

    /// Phase two of COPY/ADD, on a miss: where every picked file lands,
    /// with which owner and mode, and the parent directories to create.
    fn lay_out(
        &mut self,
        step: &Step,
        label: &str,
        st: &mut StageState,
        files: &FileSources,
        parents: bool,
        sel: Selection,
    ) -> Result<Vec<LayerEntry>, BuildError> {
        let (uid, gid) = match &files.chown {
            None => (None, None),
            Some(c) => {
                let (u, g) = c.split_once(':').unwrap_or((c.as_str(), c.as_str()));
                match (u.parse::<u32>(), g.parse::<u32>()) {
                    (Ok(u), Ok(g)) => (Some(u), Some(g)),
                    _ => {
                        return Err(self.step_error(
                            step,
                            label,
                            format!("--chown={c}: user and group names need /etc/passwd and /etc/group in the image; give numeric ids (e.g. --chown=1000:1000)"),
                        ))
                    }
                }
            }
        };
        let chmod = files
            .chmod
            .as_deref()
            .map(|m| u32::from_str_radix(m, 8).unwrap_or(0o644));
        let dest_abs = if files.dest.starts_with('/') {
            files.dest.clone()
        } else {
            format!("{}/{}", step.workdir.trim_end_matches('/'), files.dest)
        };
        let dest = tree::manifest_path(&dest_abs);
        let manifest = self.manifest(st)?.clone();
        let many = files.sources.len() > 1;
        let dest_is_dir = files.dest.ends_with('/')
            || files.dest == "."
            || dest.is_empty()
            || manifest.get(&dest).is_some_and(|m| m.kind == Kind::Dir);
        if many && !dest_is_dir {
            return Err(self.step_error(
                step,
                label,
                format!("with more than one source, the destination must be a directory and end with a /: write {}/", files.dest),
            ));
        }
        let source = &sel.source;
        let owned = |m: &Meta| -> Meta {
            let mut meta = m.clone();
            match (uid, gid) {
                (Some(u), Some(g)) => {
                    meta.uid = u;
                    meta.gid = g;
                }
                _ if source.keep_owner => {}
                _ => {
                    meta.uid = 0;
                    meta.gid = 0;
                }
            }
            if let Some(mode) = chmod {
                if meta.kind != Kind::Symlink {
                    meta.mode = mode;
                }
            }
            meta
        };
        let mut out: Vec<LayerEntry> = Vec::new();
        for p in sel.picked {
            match p {
                Picked::Heredoc(name, bytes) => {
                    let target = if dest_is_dir {
                        join(&dest, &name)
                    } else {
                        dest.clone()
                    };
                    let meta = Meta::file(
                        chmod.unwrap_or(0o644),
                        bytes.len() as u64,
                        Some(Digest::of(&bytes)),
                    )
                    .owned_by(uid.unwrap_or(0), gid.unwrap_or(0));
                    out.push(LayerEntry {
                        path: target,
                        meta,
                        content: Content::Bytes(bytes),
                        whiteout: false,
                    });
                }
                Picked::Archive(host, kind, shown) => {
                    let mut entries = unpack_archive(&host, kind, &dest, self.store)
                        .map_err(|m| self.step_error(step, label, format!("{shown}: {m}")))?;
                    out.append(&mut entries);
                }
                Picked::Tree {
                    root_rel,
                    meta,
                    wildcard,
                    items,
                } => {
                    let to_dir = dest_is_dir || wildcard || many;
                    let base_target = if parents {
                        join(&dest, &root_rel)
                    } else if meta.kind == Kind::Dir {
                        if wildcard {
                            join(&dest, tree::base_name(&root_rel))
                        } else {
                            dest.clone()
                        }
                    } else if to_dir {
                        join(&dest, tree::base_name(&root_rel))
                    } else {
                        dest.clone()
                    };
                    for (rel, m) in items {
                        let target = if rel == root_rel {
                            base_target.clone()
                        } else {
                            let rest = if root_rel.is_empty() {
                                rel.as_str()
                            } else {
                                &rel[root_rel.len() + 1..]
                            };
                            join(&base_target, rest)
                        };
                        if target.is_empty() {
                            continue;
                        }
                        let content = if m.kind == Kind::File {
                            Content::Host(source.root.join(&rel))
                        } else {
                            Content::None
                        };
                        out.push(LayerEntry {
                            path: target,
                            meta: owned(&m),
                            content,
                            whiteout: false,
                        });
                    }
                }
            }
        }
        // Parents that the image does not have yet.
        let mut needed: Manifest = Manifest::new();
        let present: std::collections::HashSet<String> =
            out.iter().map(|e| e.path.clone()).collect();
        for e in &out {
            for d in missing_parents(&manifest, &e.path, 0, 0) {
                if !present.contains(&d.path) {
                    needed.entry(d.path).or_insert(d.meta);
                }
            }
        }
        for (p, m) in needed {
            out.push(LayerEntry {
                path: p,
                meta: m,
                content: Content::None,
                whiteout: false,
            });
        }
        Ok(out)
    }
}

/// The mounts of a step's spec, in order.
#[cfg(feature = "sandbox")]
fn plan_of_mounts(step: &Step) -> Vec<crate::frontend::instructions::MountSpec> {
    match &step.instruction {
        Instruction::Run(r) => r.mounts.clone(),
        _ => Vec::new(),
    }
}

/// What mounts hold during a RUN: temp dirs, cache locks, and secret files
/// placed in the rootfs, removed again by [`MountGuards::clean_up`].
#[cfg(feature = "sandbox")]
#[derive(Default)]
struct MountGuards {
    dirs: Vec<tempfile::TempDir>,
    locks: Vec<std::fs::File>,
    /// Files and then directories to remove from the rootfs, in order.
    placed: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
}

#[cfg(feature = "sandbox")]
impl MountGuards {
    fn place_secret(&mut self, rootfs: &Path, target: &str, value: &[u8]) -> Result<(), String> {
        let rel = tree::manifest_path(target);
        if rel.is_empty() {
            return Err("a secret cannot be mounted at /".into());
        }
        let host = rootfs.join(&rel);
        if host.exists() {
            return Err(format!(
                "secret target {target} already exists in the image; choose another target="
            ));
        }
        let mut cur = rootfs.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            cur.push(part);
            if !cur.exists() {
                std::fs::create_dir(&cur).map_err(|e| format!("secret target {target}: {e}"))?;
                self.created_dirs.push(cur.clone());
            }
        }
        std::fs::write(&host, value).map_err(|e| format!("secret target {target}: {e}"))?;
        self.placed.push(host);
        Ok(())
    }

    fn clean_up(&mut self) {
        for f in self.placed.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        // Deepest first; a directory the step wrote into stays.
        for d in self.created_dirs.drain(..).rev() {
            let _ = std::fs::remove_dir(d);
        }
        for l in self.locks.drain(..) {
            let _ = l.unlock();
        }
    }
}

/// Copies a host tree (files, directories, symlinks) into `dest`.
#[cfg(feature = "sandbox")]
fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = std::fs::symlink_metadata(&from)?.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// What a RUN step executes.
#[derive(Debug, Clone, serde::Serialize)]
struct RunPlan {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: String,
    mounts: Vec<MountPlan>,
}

/// One `RUN --mount`, as it takes part in the key (a secret's id, target
/// and env name count; its value never does).
#[derive(Debug, Clone, serde::Serialize)]
struct MountPlan {
    index: usize,
    kind: String,
    target: String,
    read_only: bool,
    id: Option<String>,
    sharing: Option<String>,
    source: Option<String>,
    from_stage: Option<usize>,
    env: Option<String>,
    required: bool,
}

/// A path of a source tree (relative to a chosen root) and its metadata.
type TreeItem = (String, Meta);

/// What one COPY/ADD source picked.
enum Picked {
    Heredoc(String, Arc<[u8]>),
    Archive(PathBuf, ArchiveKind, String),
    Tree {
        root_rel: String,
        meta: Meta,
        wildcard: bool,
        items: Vec<(String, Meta)>,
    },
}

struct Selection {
    source: Arc<SourceTree>,
    picked: Vec<Picked>,
    inputs: BTreeMap<String, String>,
}

fn join(dir: &str, rest: &str) -> String {
    match (dir.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{rest}"),
    }
}

fn is_url(p: &str) -> bool {
    p.starts_with("http://")
        || p.starts_with("https://")
        || p.starts_with("git@")
        || p.starts_with("git://")
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Directories of `path` that `m` lacks, shallowest first (0755, owned
/// by `uid:gid`).
fn missing_parents(m: &Manifest, path: &str, uid: u32, gid: u32) -> Vec<LayerEntry> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur = join(&cur, part);
        if m.get(&cur).is_none_or(|x| x.kind != Kind::Dir) {
            out.push(LayerEntry {
                path: cur.clone(),
                meta: Meta {
                    uid,
                    gid,
                    ..Meta::dir(0o755)
                },
                content: Content::None,
                whiteout: false,
            });
        }
    }
    out
}

/// The entries a COPY source names: `(path in the source tree, meta)`.
/// The path `""` is the tree's root.
fn select(source: &SourceTree, src: &str) -> Result<Vec<(String, Meta)>, String> {
    let cleaned = dockerignore::clean_path(src.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(format!(
            "source {src:?} is outside the build context: only files under the context can be copied"
        ));
    }
    let rel = if cleaned == "." {
        String::new()
    } else {
        cleaned
    };
    if has_wildcard(&rel) {
        let m = Matcher::new(&[rel.as_str()]).map_err(|e| format!("source {src:?}: {e}"))?;
        let found: Vec<(String, Meta)> = source
            .entries
            .iter()
            .filter(|(k, _)| m.matches_exact(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if found.is_empty() {
            return Err(format!(
                "no source files were specified: {src:?} matches nothing in the {}",
                source.label
            ));
        }
        return Ok(found);
    }
    if rel.is_empty() {
        return Ok(vec![(String::new(), Meta::dir(0o755))]);
    }
    match source.entries.get(&rel) {
        Some(m) => Ok(vec![(rel, m.clone())]),
        None => Err(format!(
            "{src:?} not found in the {} (or excluded by .dockerignore)",
            source.label
        )),
    }
}

#[derive(Clone, Copy)]
enum ArchiveKind {
    Tar,
    Gzip,
    Zstd,
}

/// Recognizes the archives ADD unpacks by their first bytes.
fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return Some(ArchiveKind::Gzip);
    }
    if n >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        return Some(ArchiveKind::Zstd);
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Some(ArchiveKind::Tar);
    }
    None
}

/// Unpacks a local archive into layer entries under `dest` (contents are
/// extracted to a temp dir in the store).
fn unpack_archive(
    path: &Path,
    kind: ArchiveKind,
    dest: &str,
    store: &Store,
) -> Result<Vec<LayerEntry>, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let r: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(f),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        ArchiveKind::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(f).map_err(|e| e.to_string())?)
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("unpack-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(|e| e.to_string())?
        .keep();
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    for (n, entry) in ar
        .entries()
        .map_err(|e| format!("not a valid tar archive: {e}"))?
        .enumerate()
    {
        let mut entry = entry.map_err(|e| format!("not a valid tar archive: {e}"))?;
        let raw = entry.path().map_err(|e| e.to_string())?.into_owned();
        let mut parts = Vec::new();
        for c in raw.components() {
            match c {
                std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                std::path::Component::CurDir => {}
                _ => {
                    return Err(format!(
                        "archive entry {} leaves the destination",
                        raw.display()
                    ))
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        let rel = parts.join("/");
        let h = entry.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let (meta, content) = match h.entry_type() {
            tar::EntryType::Directory => (
                Meta {
                    uid,
                    gid,
                    ..Meta::dir(mode)
                },
                Content::None,
            ),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (Meta::symlink(&target).owned_by(uid, gid), Content::None)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let host = tmp.join(format!("{n}"));
                let mut file = std::fs::File::create(&host).map_err(|e| e.to_string())?;
                let mut hasher = crate::digest::Hasher::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut size = 0u64;
                loop {
                    let k = entry.read(&mut buf).map_err(|e| e.to_string())?;
                    if k == 0 {
                        break;
                    }
                    hasher.update(&buf[..k]);
                    std::io::Write::write_all(&mut file, &buf[..k]).map_err(|e| e.to_string())?;
                    size += k as u64;
                }
                (
                    Meta::file(mode, size, Some(hasher.finish())).owned_by(uid, gid),
                    Content::Host(host),
                )
            }
            other => {
                return Err(format!(
                    "archive entry {rel} has an unsupported type {other:?}"
                ))
            }
        };
        out.push(LayerEntry {
            path: join(dest, &rel),
            meta,
            content,
            whiteout: false,
        });
    }
    Ok(out)
}

fn shell_form(config: &RunConfig, cmd: &CommandLine) -> Vec<String> {
    if !cmd.shell_form {
        return cmd.args.clone();
    }
    let mut v = if config.shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        config.shell.clone()
    };
    v.push(cmd.args.join(" "));
    v
}

/// What an instruction does to the image config.
fn apply_config(c: &mut RunConfig, cmd_set: &mut bool, step: &Step) {
    match &step.instruction {
        Instruction::Env { pairs } => {
            for kv in pairs {
                c.set_env(&kv.key, &kv.value);
            }
        }
        Instruction::Label { pairs } => {
            for kv in pairs {
                c.labels.insert(kv.key.clone(), kv.value.clone());
            }
        }
        Instruction::Cmd(cmd) => {
            c.cmd = Some(shell_form(c, cmd));
            *cmd_set = true;
        }
        Instruction::Entrypoint(cmd) => {
            c.entrypoint = if cmd.args.is_empty() && !cmd.shell_form {
                Some(Vec::new())
            } else {
                Some(shell_form(c, cmd))
            };
            if !*cmd_set {
                c.cmd = None;
            }
        }
        Instruction::Shell { shell } => c.shell = shell.clone(),
        Instruction::Workdir { .. } => c.working_dir = step.workdir.clone(),
        Instruction::User { user } => c.user = user.clone(),
        Instruction::Volume { paths } => {
            for p in paths {
                c.volumes.insert(p.clone(), export::Empty {});
            }
        }
        Instruction::Expose { ports } => {
            for p in ports {
                let p = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                c.exposed_ports.insert(p, export::Empty {});
            }
        }
        Instruction::StopSignal { signal } => c.stop_signal = signal.clone(),
        Instruction::Healthcheck(h) => {
            c.healthcheck = Some(match h {
                Healthcheck::None => HealthConfig {
                    test: vec!["NONE".into()],
                    ..Default::default()
                },
                Healthcheck::Cmd {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let ns = |d: &Option<std::time::Duration>| {
                        d.map(|d| d.as_nanos() as u64).unwrap_or(0)
                    };
                    let test = if test.first().map(String::as_str) == Some("CMD-SHELL") {
                        vec!["CMD-SHELL".to_string(), test[1..].join(" ")]
                    } else {
                        test.clone()
                    };
                    HealthConfig {
                        test,
                        interval: ns(interval),
                        timeout: ns(timeout),
                        start_period: ns(start_period),
                        start_interval: ns(start_interval),
                        retries: retries.map(u64::from).unwrap_or(0),
                    }
                }
            })
        }
        Instruction::Onbuild(o) => c.on_build.push(o.expression.clone()),
        Instruction::Copy(Copy { .. })
        | Instruction::Add(_)
        | Instruction::Arg { .. }
        | Instruction::Maintainer { .. }
        | Instruction::Run(_) => {}
    }
}
