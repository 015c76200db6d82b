//! From typed instructions to a build plan: stages and their dependencies,
//! `--target` pruning, ARG scoping (global ARGs before the first FROM,
//! per-stage ARGs, build args, the predefined platform ARGs), and the
//! expansion of every instruction that BuildKit expands.
//!
//! Knows nothing of caching or wasm: the solver reads the plan.

use std::collections::{BTreeMap, BTreeSet};

use crate::frontend::error::{suggest, FrontendError};
use crate::frontend::instructions::{
    self, ArgDecl, Dockerfile, Expander, FileSources, Healthcheck, Instruction, KeyValue, Located,
    MountSpec, Source, Stage,
};
use crate::frontend::parser::Heredoc;
use crate::frontend::shell::{Env, ExpandError, Lexer};

/// The platform every wbuild image targets and every RUN step runs on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

impl Platform {
    /// WASI on wasm: `wasi/wasm`, the name Docker+Wasm, runwasi's shims
    /// and podman match when they run an image (`docker run
    /// --platform=wasi/wasm`). `--platform wasip1/wasm` (Go's and ko's
    /// name) builds under the other name.
    pub fn wasi() -> Self {
        Platform {
            os: "wasi".into(),
            architecture: "wasm".into(),
            variant: String::new(),
        }
    }

    /// `os/arch[/variant]`.
    pub fn spec(&self) -> String {
        if self.variant.is_empty() {
            format!("{}/{}", self.os, self.architecture)
        } else {
            format!("{}/{}/{}", self.os, self.architecture, self.variant)
        }
    }

    /// Parses `os/arch[/variant]`, whatever the platform.
    pub fn parse_any(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let p = match parts.as_slice() {
            [os, arch] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: String::new(),
            },
            [os, arch, variant] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.to_string(),
            },
            _ => return Err(PlatformError(s.to_string())),
        };
        Ok(p)
    }
}

/// A platform that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant]")]
pub struct PlatformError(pub String);

/// Why an instruction's words cannot be expanded or its flags used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    #[error(transparent)]
    Word(#[from] ExpandError),
    #[error("ARG {name}: {error}")]
    Arg { name: String, error: ExpandError },
    #[error("invalid --chmod={0}: expected an octal mode such as 0755")]
    Chmod(String),
    #[error("invalid --chown={0}: expected user[:group]")]
    Chown(String),
    #[error("--exclude={pattern}: {error}")]
    Exclude {
        pattern: String,
        error: crate::frontend::dockerignore::PatternError,
    },
    #[error("invalid --checksum {0:?}: expected sha256:<64 hex digits> (a URL's content) or a commit (a git source's)")]
    Checksum(String),
    #[error("--mount={raw}: {error}")]
    Mount {
        raw: String,
        error: instructions::MountFlagError,
    },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("invalid stage index {index}: a step can only use an earlier stage (this is stage {current})")]
    LaterStage { index: usize, current: usize },
}

/// An EXPOSE word that names no port, as BuildKit's `parsePortSpec` says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("no port specified in EXPOSE {0}")]
    NoPort(String),
    #[error("invalid protocol {proto:?} in EXPOSE {word}: use tcp, udp or sctp")]
    Protocol { proto: String, word: String },
    #[error("invalid port {0:?} in EXPOSE: expected a number from 0 to 65535, or a range such as 8000-8002")]
    Port(String),
}

/// What a build is asked to do, as far as planning is concerned.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: a stage name; the last stage when `None`.
    pub target: Option<String>,
    /// `--build-context` names, as [`crate::request::context_key`] gives
    /// them.
    pub contexts: BTreeSet<String>,
    /// Those of them that are local directories: `FROM NAME` is then
    /// `FROM scratch` with the directory's files copied in.
    pub dir_contexts: BTreeSet<String>,
    /// `--platform`: the platform to build for (`wasi/wasm` when None).
    /// RUN steps run on wasm whatever it is (that is `BUILDPLATFORM`).
    pub platform: Option<Platform>,
    /// The configs of the registry images stages start from, by
    /// [`base_key`]: what `$VAR` in the stage expands to, where a relative
    /// WORKDIR starts, and the ONBUILD triggers that run first (as
    /// BuildKit resolves an image's config while converting).
    pub bases: BTreeMap<String, BaseConfig>,
}

/// What planning needs of a base image's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseConfig {
    pub env: BTreeMap<String, String>,
    pub workdir: String,
    pub on_build: Vec<String>,
    /// The platform its config names, when it names one: what
    /// `TARGETOS`, `TARGETARCH` and `TARGETPLATFORM` read in the stage
    /// (a linux/amd64 base's stage is built for linux/amd64).
    pub platform: Option<Platform>,
}

/// How [`PlanRequest::bases`] names a stage's base image: its name and the
/// platform it is pulled for.
pub fn base_key(name: &str, platform: &Platform) -> String {
    format!("{name} {}/{}", platform.os, platform.architecture)
}

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "ref")]
pub enum Base {
    Scratch,
    /// `wbuild/base`, built into wbuild.
    WbuildBase,
    /// An earlier stage, by index in the Dockerfile.
    Stage(usize),
    /// An image reference.
    Image(String),
    /// A `--build-context` (by its key): in place of `FROM NAME`, or of a
    /// whole stage `AS NAME`, as in BuildKit.
    Context(String),
}

/// One instruction of a stage, expanded, with what was in scope.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub line: usize,
    /// The instruction as written.
    pub original: String,
    /// The instruction after expansion (what BuildKit shows in progress).
    pub display: String,
    pub instruction: Instruction,
    /// ARG values in scope (BuildKit passes these to RUN as env too);
    /// shared between the steps of a stage until an ARG changes them.
    pub args: std::sync::Arc<BTreeMap<String, String>>,
    /// The stage's ARG declarations so far, in order, with the value each
    /// had when declared ("" for none): what BuildKit's RUN history entry
    /// lists (`RUN |2 A=1 B= /bin/sh -c …`).
    #[serde(skip)]
    pub arg_decls: std::sync::Arc<Vec<(String, String)>>,
    /// ARGs declared after an ENV of the same name: their value wins over
    /// the ENV's in this step, as the later declaration does in BuildKit.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub args_over_env: std::sync::Arc<BTreeSet<String>>,
    /// The stage's WORKDIR when the step runs.
    pub workdir: String,
    /// Stages this step reads from (`COPY --from`, `RUN --mount from=`).
    pub uses_stages: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedStage {
    /// Index of the stage in the Dockerfile.
    pub index: usize,
    /// The line of its FROM.
    pub line: usize,
    pub name: Option<String>,
    pub base: Base,
    /// FROM as written, and expanded.
    pub from_original: String,
    pub from_display: String,
    pub platform: Platform,
    /// Whether a platform was named (`--platform`, `FROM --platform`):
    /// when not, an image without a wasi/wasm entry gives its linux/amd64
    /// one.
    pub platform_named: bool,
    pub steps: Vec<Step>,
    /// The ENV values in effect after the last step (what a stage built
    /// FROM this one starts with).
    pub env: BTreeMap<String, String>,
}

impl PlannedStage {
    /// How the stage is named in progress output: its name or its index.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BuildPlan {
    /// Every stage of the Dockerfile, planned.
    pub stages: Vec<PlannedStage>,
    /// The stage to build.
    pub target: usize,
    /// Indexes of the stages the target needs (itself included), in
    /// dependency order.
    pub needed: Vec<usize>,
    /// `--build-arg`s no ARG consumed.
    pub unused_build_args: Vec<String>,
    pub warnings: Vec<String>,
}

impl BuildPlan {
    /// The stages to build, in order.
    pub fn needed_stages(&self) -> impl Iterator<Item = &PlannedStage> {
        self.needed.iter().map(|&i| &self.stages[i])
    }
}

/// The names `FROM` accepts for the built-in base image (`crate::base`).
pub fn is_base(name: &str) -> bool {
    matches!(name, "wbuild/base" | "wbuild/base:latest")
}

/// The predefined platform ARGs, in the global scope.
pub fn platform_args(build: &Platform, target: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        m.insert(format!("{prefix}PLATFORM"), p.spec());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(format!("{prefix}VARIANT"), p.variant.clone());
    }
    m
}

/// A scope for expansion: ARGs and ENV, where the later declaration of a
/// name wins, as in BuildKit: ENV over an earlier ARG, and an ARG (with a
/// value) over an earlier ENV.
struct Scope<'a> {
    env: &'a BTreeMap<String, String>,
    args: &'a BTreeMap<String, String>,
    /// Names whose ARG came after their ENV.
    args_last: &'a BTreeSet<String>,
}

impl Env for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        let arg = self.args.get(name);
        if self.args_last.contains(name) && arg.is_some() {
            return arg.map(String::as_str);
        }
        self.env.get(name).or(arg).map(String::as_str)
    }
}

/// Plans a typed Dockerfile. `file` names it in errors.
pub fn plan(df: &Dockerfile, req: &PlanRequest, file: &str) -> Result<BuildPlan, FrontendError> {
    let platform = req.platform.clone().unwrap_or_else(Platform::wasi);
    let mut p = Planner {
        df,
        req,
        file,
        lex: Lexer::new(df.escape),
        predefined: platform_args(&Platform::wasi(), &platform),
        platform,
        consumed: BTreeSet::new(),
        global: BTreeMap::new(),
        declared_global: BTreeMap::new(),
        names: BTreeMap::new(),
        stages: Vec::new(),
    };
    p.global_args()?;
    for (index, stage) in df.stages.iter().enumerate() {
        let planned = p.stage(index, stage)?;
        if let Some(n) = &stage.name {
            p.names.insert(n.clone(), index);
        }
        p.stages.push(planned);
    }
    let target = p.target()?;
    let needed = dependency_order(&p.stages, target);
    let unused_build_args: Vec<String> = req
        .build_args
        .keys()
        .filter(|k| !p.consumed.contains(*k) && !p.predefined.contains_key(*k))
        .cloned()
        .collect();
    let mut warnings = df.warnings.clone();
    for k in &unused_build_args {
        warnings.push(format!("build-arg {k:?} was not consumed by any ARG"));
    }
    Ok(BuildPlan {
        stages: p.stages,
        target,
        needed,
        unused_build_args,
        warnings,
    })
}

/// What planning knows as it goes, stage by stage.
struct Planner<'a> {
    df: &'a Dockerfile,
    req: &'a PlanRequest,
    /// The Dockerfile's name, for errors.
    file: &'a str,
    lex: Lexer,
    /// The target platform, and the args it predefines.
    platform: Platform,
    predefined: BTreeMap<String, String>,
    /// The build args some ARG consumed.
    consumed: BTreeSet<String>,
    /// The global scope: the predefined args, then the meta ARGs.
    global: BTreeMap<String, String>,
    declared_global: BTreeMap<String, Option<String>>,
    /// The stages named so far, and the stages planned.
    names: BTreeMap<String, usize>,
    stages: Vec<PlannedStage>,
}

/// What a stage starts from.
struct StageBase {
    base: Base,
    /// FROM's `--platform`, expanded.
    platform_text: Option<String>,
    platform: Platform,
    /// FROM's image name, expanded.
    text: String,
    /// A named context of the stage's own name replaces it.
    replaced: bool,
}

/// The scope a stage's steps are expanded in, as its steps change it.
struct StageScope {
    env: BTreeMap<String, String>,
    args: BTreeMap<String, String>,
    /// Names whose ARG came after their ENV.
    args_last: BTreeSet<String>,
    /// What the steps hold: one map shared until an ARG changes it, so a
    /// long Dockerfile's plan stays linear in its length.
    shared_args: std::sync::Arc<BTreeMap<String, String>>,
    shared_over: std::sync::Arc<BTreeSet<String>>,
    /// Every ARG declared so far, in order (see `Step::arg_decls`).
    decls: std::sync::Arc<Vec<(String, String)>>,
    /// The predefined platform ARGs as the stage sees them: the target's
    /// `TARGET*` follow a base image's own platform.
    predefined: BTreeMap<String, String>,
    workdir: String,
}

impl Planner<'_> {
    fn at(&self, line: usize, msg: String) -> FrontendError {
        FrontendError::new(line, 1, msg).in_file(self.file)
    }

    /// The global scope: the predefined platform args, then the meta ARGs.
    fn global_args(&mut self) -> Result<(), FrontendError> {
        self.global = self.predefined.clone();
        for meta in &self.df.meta_args {
            for decl in &meta.value {
                let value = arg_value(
                    &self.lex,
                    decl,
                    &self.req.build_args,
                    &BTreeMap::new(),
                    &self.global,
                    &mut self.consumed,
                )
                .map_err(|e| self.at(meta.start_line, e.to_string()))?;
                if let Some(v) = &value {
                    self.global.insert(decl.name.clone(), v.clone());
                }
                self.declared_global.insert(decl.name.clone(), value);
            }
        }
        Ok(())
    }

    /// One stage: its base, then its steps (a base stage's ONBUILD
    /// triggers first), each expanded in the scope the steps before it
    /// leave.
    fn stage(&mut self, index: usize, stage: &Stage) -> Result<PlannedStage, FrontendError> {
        let b = self.stage_base(stage)?;
        let mut from_display = String::from("FROM ");
        if let Some(p) = &b.platform_text {
            from_display.push_str(&format!("--platform={p} "));
        }
        from_display.push_str(&b.text);
        if let Some(n) = &stage.name {
            from_display.push_str(&format!(" AS {n}"));
        }
        let mut scope = self.base_scope(&b);
        let triggers = self.triggers(&b, stage)?;
        let commands: &[Located<Instruction>] = if b.replaced { &[] } else { &stage.commands };
        // A directory context as a base: its files on an empty rootfs.
        let mut base = b.base;
        let mut dir_copy = Vec::new();
        if let Base::Context(k) = &base {
            if self.req.dir_contexts.contains(k) {
                let text = format!("FROM scratch\nCOPY --from={k} / /\n");
                let cmd = self
                    .synthetic(&text, stage.start_line)
                    .map_err(|e| self.at(stage.start_line, e.to_string()))?;
                dir_copy.push(cmd);
                base = Base::Scratch;
                scope.env = default_env();
            }
        }
        let mut steps = Vec::new();
        for cmd in dir_copy.iter().chain(&triggers).chain(commands) {
            steps.push(self.step(index, cmd, &mut scope)?);
        }
        Ok(PlannedStage {
            index,
            line: stage.start_line,
            name: stage.name.clone(),
            base,
            from_original: stage.original.clone(),
            from_display,
            platform: b.platform,
            platform_named: b.platform_text.is_some() || self.req.platform.is_some(),
            steps,
            env: scope.env,
        })
    }

    /// FROM, expanded in the global scope: the base, and the platform.
    fn stage_base(&self, stage: &Stage) -> Result<StageBase, FrontendError> {
        let (empty, none) = (BTreeMap::new(), BTreeSet::new());
        let from_scope = Scope {
            env: &empty,
            args: &self.global,
            args_last: &none,
        };
        let text = self
            .lex
            .process_word(&stage.base, &from_scope)
            .map_err(|e| {
                self.at(
                    stage.start_line,
                    format!("FROM {}: {}", stage.base, e.reason),
                )
                .with_hint("only ARGs declared before the first FROM can be used in FROM")
            })?;
        if text.is_empty() {
            return Err(self
                .at(
                    stage.start_line,
                    format!("FROM {:?} expands to an empty image name", stage.base),
                )
                .with_hint("give the ARG a default value or pass --build-arg"));
        }
        let platform_text = match &stage.platform {
            Some(p) => Some(
                self.lex
                    .process_word(p, &from_scope)
                    .map_err(|e| self.at(stage.start_line, e.to_string()))?,
            ),
            None => None,
        };
        // Another platform (a linux/amd64 image with files copied in)
        // builds too: its RUN steps use wasm programs or wbox's shell and
        // applets, and a native program fails when it is run.
        let platform = match &platform_text {
            Some(p) => {
                Platform::parse_any(p).map_err(|e| self.at(stage.start_line, e.to_string()))?
            }
            None => self.platform.clone(),
        };
        let contexts = &self.req.contexts;
        let replaced = stage
            .name
            .as_deref()
            .map(crate::request::context_key)
            .filter(|k| contexts.contains(k));
        let base = if let Some(k) = &replaced {
            Base::Context(k.clone())
        } else if text.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else if is_base(&text) {
            Base::WbuildBase
        } else if let Some(&i) = self.names.get(&text.to_ascii_lowercase()) {
            Base::Stage(i)
        } else if contexts.contains(&crate::request::context_key(&text)) {
            Base::Context(crate::request::context_key(&text))
        } else {
            Base::Image(text.clone())
        };
        Ok(StageBase {
            base,
            platform_text,
            platform,
            text,
            replaced: replaced.is_some(),
        })
    }

    /// What the base's config holds: its ENV and WORKDIR. Scratch and
    /// wbuild/base have the default PATH (as BuildKit's empty image does),
    /// so `$PATH` in `ENV PATH=$PATH:/opt/bin` expands to it.
    fn base_scope(&self, b: &StageBase) -> StageScope {
        let image = |n: &str| self.req.bases.get(&base_key(n, &b.platform));
        let (env, workdir) = match &b.base {
            Base::Stage(i) => (
                self.stages[*i].env.clone(),
                stage_workdir_end(&self.stages[*i]),
            ),
            Base::Scratch | Base::WbuildBase => (default_env(), "/".to_string()),
            Base::Image(n) | Base::Context(n) => (
                // A base without PATH gets the default, as its config
                // will (`solve::ops::source`).
                image(n)
                    .map(|b| {
                        let mut env = b.env.clone();
                        env.entry("PATH".into())
                            .or_insert_with(|| crate::env::DEFAULT_PATH.into());
                        env
                    })
                    .unwrap_or_default(),
                image(n)
                    .map(|b| join_workdir("/", &b.workdir))
                    .unwrap_or_else(|| "/".to_string()),
            ),
        };
        // With no --platform and no FROM --platform, the target is the
        // default (wasi/wasm) and a base image of another platform (one
        // linux/amd64 image) is what the stage builds for: its TARGET*
        // say so, as the image it makes does. A platform the user named
        // stays the target (`FROM --platform=$BUILDPLATFORM` stages keep
        // the build's TARGETOS, as BuildKit's do).
        let base_platform = match &b.base {
            Base::Image(n) | Base::Context(n)
                if b.platform_text.is_none() && self.req.platform.is_none() =>
            {
                image(n).and_then(|c| c.platform.clone())
            }
            _ => None,
        };
        let predefined = match base_platform {
            Some(p) => platform_args(&Platform::wasi(), &p),
            None => self.predefined.clone(),
        };
        StageScope {
            env,
            args: BTreeMap::new(),
            args_last: BTreeSet::new(),
            shared_args: std::sync::Arc::new(BTreeMap::new()),
            shared_over: std::sync::Arc::new(BTreeSet::new()),
            decls: Default::default(),
            predefined,
            workdir,
        }
    }

    /// A base's ONBUILD triggers, which run first, as the FROM's own
    /// steps (BuildKit's initOnBuildTriggers); they are not inherited
    /// further. A base stage's from its Dockerfile, a pulled image's as
    /// its config keeps them.
    fn triggers(
        &self,
        b: &StageBase,
        stage: &Stage,
    ) -> Result<Vec<Located<Instruction>>, FrontendError> {
        match &b.base {
            Base::Stage(i) => Ok(self.df.stages[*i]
                .commands
                .iter()
                .filter_map(|c| match &c.value {
                    Instruction::Onbuild(o) => Some(Located {
                        start_line: stage.start_line,
                        end_line: stage.start_line,
                        original: o.expression.clone(),
                        value: (*o.trigger).clone(),
                    }),
                    _ => None,
                })
                .collect()),
            Base::Image(n) | Base::Context(n) => {
                let triggers = self
                    .req
                    .bases
                    .get(&base_key(n, &b.platform))
                    .map(|b| b.on_build.clone())
                    .unwrap_or_default();
                let mut out = Vec::new();
                for t in triggers {
                    let text = format!("FROM scratch\n{t}\n");
                    let cmd = self.synthetic(&text, stage.start_line).map_err(|e| {
                        self.at(
                            stage.start_line,
                            format!("the ONBUILD trigger {t:?} of image {n}: {}", e.message),
                        )
                    })?;
                    out.push(cmd);
                }
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The one instruction of a Dockerfile wbuild makes (`FROM scratch`
    /// and it), placed at `line`.
    fn synthetic(&self, text: &str, line: usize) -> Result<Located<Instruction>, FrontendError> {
        let df = crate::frontend::instructions::parse_dockerfile(text)?;
        let mut cmd = df
            .stages
            .first()
            .and_then(|s| s.commands.first())
            .cloned()
            .ok_or_else(|| self.at(line, format!("{text:?} has no instruction")))?;
        cmd.start_line = line;
        cmd.end_line = line;
        Ok(cmd)
    }

    /// One step, expanded in `scope`, whose effects on it (ARG, ENV,
    /// WORKDIR) the steps after it see.
    fn step(
        &mut self,
        index: usize,
        cmd: &Located<Instruction>,
        scope: &mut StageScope,
    ) -> Result<Step, FrontendError> {
        let scope_err = |e: InstructionError| self.at(cmd.start_line, e.to_string());
        let expanded = {
            let s = Scope {
                env: &scope.env,
                args: &scope.args,
                args_last: &scope.args_last,
            };
            let w = |t: &str| self.lex.process_word(t, &s);
            expand_instruction(&cmd.value, &self.lex, &s, &w).map_err(scope_err)?
        };
        let mut uses = Vec::new();
        match &expanded {
            Instruction::Arg { args: decls } => {
                for (decl, raw) in decls.iter().zip(arg_decls(&cmd.value)) {
                    let value = self.arg_in_stage(decl, &raw, &scope.predefined);
                    std::sync::Arc::make_mut(&mut scope.decls)
                        .push((decl.name.clone(), value.clone().unwrap_or_default()));
                    if let Some(v) = value {
                        scope.args.insert(decl.name.clone(), v);
                        scope.args_last.insert(decl.name.clone());
                    } else {
                        // Declared without a value: visible as unset.
                        scope.args.remove(&decl.name);
                    }
                }
                scope.shared_args = std::sync::Arc::new(scope.args.clone());
                scope.shared_over = std::sync::Arc::new(scope.args_last.clone());
            }
            Instruction::Env { pairs } => {
                for kv in pairs {
                    scope.env.insert(kv.key.clone(), kv.value.clone());
                    if scope.args_last.remove(&kv.key) {
                        scope.shared_over = std::sync::Arc::new(scope.args_last.clone());
                    }
                }
            }
            Instruction::Workdir { path } => {
                scope.workdir = join_workdir(&scope.workdir, path);
            }
            Instruction::Copy(c) => {
                if let Some(from) = &c.from {
                    uses.extend(stage_ref(from, &self.names, index).map_err(scope_err)?);
                }
            }
            Instruction::Run(r) => {
                for from in r.mounts.iter().filter_map(|m| m.from.as_ref()) {
                    uses.extend(stage_ref(from, &self.names, index).map_err(scope_err)?);
                }
            }
            _ => {}
        }
        Ok(Step {
            line: cmd.start_line,
            original: cmd.original.clone(),
            display: display(&expanded, &cmd.original),
            instruction: expanded,
            args: scope.shared_args.clone(),
            arg_decls: scope.decls.clone(),
            args_over_env: scope.shared_over.clone(),
            workdir: scope.workdir.clone(),
            uses_stages: uses,
        })
    }

    /// An ARG's value in a stage: with a default, the build arg else the
    /// default; without, the build arg, else the global ARG of its name,
    /// else the predefined one.
    fn arg_in_stage(
        &mut self,
        decl: &ArgDecl,
        raw: &ArgDecl,
        predefined: &BTreeMap<String, String>,
    ) -> Option<String> {
        let build_args = &self.req.build_args;
        match &raw.default {
            Some(_) => {
                consumed_if_given(&decl.name, build_args, &mut self.consumed);
                build_args
                    .get(&decl.name)
                    .cloned()
                    .or_else(|| decl.default.clone())
            }
            None => {
                if let Some(v) = build_args.get(&decl.name) {
                    self.consumed.insert(decl.name.clone());
                    Some(v.clone())
                } else if let Some(Some(g)) = self.declared_global.get(&decl.name) {
                    Some(g.clone())
                } else {
                    predefined.get(&decl.name).cloned()
                }
            }
        }
    }

    /// The stage `--target` names, else the last.
    fn target(&self) -> Result<usize, FrontendError> {
        let stages = &self.stages;
        let Some(t) = &self.req.target else {
            return Ok(stages.len() - 1);
        };
        if let Some(i) = stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
        {
            return Ok(i);
        }
        let known: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
        let e = FrontendError::new(1, 1, format!("target stage {t:?} could not be found"))
            .in_file(self.file);
        Err(match suggest(t, &known) {
            Some(s) => e.with_hint(format!("did you mean {s}?")),
            None if known.is_empty() => {
                e.with_hint("the Dockerfile names no stages (FROM image AS name)")
            }
            None => e.with_hint(format!("the stages are: {}", known.join(", "))),
        })
    }
}

/// The ENV of an image with no parent: the default PATH.
fn default_env() -> BTreeMap<String, String> {
    BTreeMap::from([("PATH".to_string(), crate::env::DEFAULT_PATH.to_string())])
}

fn consumed_if_given(
    name: &str,
    build_args: &BTreeMap<String, String>,
    consumed: &mut BTreeSet<String>,
) {
    if build_args.contains_key(name) {
        consumed.insert(name.to_string());
    }
}

/// The raw declarations of an ARG instruction (before expansion).
fn arg_decls(i: &Instruction) -> Vec<ArgDecl> {
    match i {
        Instruction::Arg { args } => args.clone(),
        _ => Vec::new(),
    }
}

/// A global ARG's value: the build arg if given, else its default expanded
/// in the global scope so far.
fn arg_value(
    lex: &Lexer,
    decl: &ArgDecl,
    build_args: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    global: &BTreeMap<String, String>,
    consumed: &mut BTreeSet<String>,
) -> Result<Option<String>, InstructionError> {
    if let Some(v) = build_args.get(&decl.name) {
        consumed.insert(decl.name.clone());
        return Ok(Some(v.clone()));
    }
    match &decl.default {
        Some(d) => {
            let none = BTreeSet::new();
            let scope = Scope {
                env,
                args: global,
                args_last: &none,
            };
            Ok(Some(lex.process_word(d, &scope).map_err(|error| {
                InstructionError::Arg {
                    name: decl.name.clone(),
                    error,
                }
            })?))
        }
        None => Ok(global.get(&decl.name).cloned()),
    }
}

fn stage_workdir_end(s: &PlannedStage) -> String {
    s.steps
        .last()
        .map(|st| st.workdir.clone())
        .unwrap_or_else(|| "/".into())
}

/// Resolves `--from=`/`from=` to an earlier stage (by name or index);
/// `Ok(None)` means an image reference.
fn stage_ref(
    from: &str,
    names: &BTreeMap<String, usize>,
    current: usize,
) -> Result<Option<usize>, InstructionError> {
    if let Some(&i) = names.get(&from.to_ascii_lowercase()) {
        return Ok(Some(i));
    }
    if let Ok(i) = from.parse::<usize>() {
        if i >= current {
            return Err(InstructionError::LaterStage { index: i, current });
        }
        return Ok(Some(i));
    }
    Ok(None)
}

/// The target and every stage it needs, dependencies first.
fn dependency_order(stages: &[PlannedStage], target: usize) -> Vec<usize> {
    fn visit(stages: &[PlannedStage], i: usize, seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
        if !seen.insert(i) {
            return;
        }
        if let Base::Stage(b) = stages[i].base {
            visit(stages, b, seen, out);
        }
        for s in &stages[i].steps {
            for &u in &s.uses_stages {
                visit(stages, u, seen, out);
            }
        }
        out.push(i);
    }
    let mut out = Vec::new();
    visit(stages, target, &mut BTreeSet::new(), &mut out);
    out
}

/// WORKDIR semantics: relative paths join the current one; the result is
/// a clean absolute path.
pub fn join_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{}", current.trim_end_matches('/'), path)
    };
    crate::frontend::dockerignore::clean_path(&joined)
}

fn expand_all(w: Expander, items: &[String]) -> Result<Vec<String>, ExpandError> {
    items.iter().map(|s| w(s)).collect()
}

fn expand_opt(w: Expander, item: &Option<String>) -> Result<Option<String>, ExpandError> {
    item.as_deref().map(w).transpose()
}

fn expand_pairs(w: Expander, pairs: &[KeyValue]) -> Result<Vec<KeyValue>, ExpandError> {
    pairs
        .iter()
        .map(|kv| {
            Ok(KeyValue {
                key: w(&kv.key)?,
                value: w(&kv.value)?,
            })
        })
        .collect()
}

fn expand_files(
    f: &FileSources,
    lex: &Lexer,
    scope: &dyn Env,
    w: Expander,
) -> Result<FileSources, ExpandError> {
    let mut sources = Vec::new();
    for s in &f.sources {
        sources.push(match s {
            Source::Path(p) => Source::Path(w(p)?),
            Source::Heredoc(h) => Source::Heredoc(expand_heredoc(h, lex, scope)?),
        });
    }
    Ok(FileSources {
        sources,
        dest: w(&f.dest)?,
        chown: expand_opt(w, &f.chown)?,
        chmod: expand_opt(w, &f.chmod)?,
        link: f.link,
        exclude: expand_all(w, &f.exclude)?,
        json: f.json,
    })
}

/// A heredoc body with `$VAR`s replaced (quotes left alone), unless its
/// delimiter was quoted.
fn expand_heredoc(h: &Heredoc, lex: &Lexer, scope: &dyn Env) -> Result<Heredoc, ExpandError> {
    let mut out = h.clone();
    out.content = h.body();
    out.chomp = false;
    if h.expand {
        let mut raw = *lex;
        raw.skip_process_quotes = true;
        raw.escape = '\\';
        out.content = raw.process_word(&out.content, scope)?;
    }
    Ok(out)
}

fn expand_instruction(
    i: &Instruction,
    lex: &Lexer,
    scope: &dyn Env,
    w: Expander,
) -> Result<Instruction, InstructionError> {
    Ok(match i {
        Instruction::Env { pairs } => Instruction::Env {
            pairs: expand_pairs(w, pairs)?,
        },
        Instruction::Label { pairs } => Instruction::Label {
            pairs: expand_pairs(w, pairs)?,
        },
        Instruction::Arg { args } => Instruction::Arg {
            args: args
                .iter()
                .map(|a| {
                    Ok(ArgDecl {
                        name: w(&a.name)?,
                        default: expand_opt(w, &a.default)?,
                    })
                })
                .collect::<Result<_, ExpandError>>()?,
        },
        Instruction::Workdir { path } => Instruction::Workdir { path: w(path)? },
        Instruction::User { user } => Instruction::User { user: w(user)? },
        Instruction::StopSignal { signal } => Instruction::StopSignal { signal: w(signal)? },
        Instruction::Volume { paths } => Instruction::Volume {
            paths: expand_all(w, paths)?,
        },
        Instruction::Expose { ports } => {
            let mut out = Vec::new();
            for p in ports {
                for port in lex.process_words(p, scope)? {
                    // Checked here, with the line; split when the config is made.
                    expose_ports(port.as_str())?;
                    out.push(port.to_string());
                }
            }
            Instruction::Expose { ports: out }
        }
        Instruction::Copy(c) => {
            let files = expand_files(&c.files, lex, scope, w)?;
            check_file_flags(&files)?;
            Instruction::Copy(instructions::Copy {
                files,
                from: expand_opt(w, &c.from)?,
                parents: c.parents,
            })
        }
        Instruction::Add(a) => {
            let files = expand_files(&a.files, lex, scope, w)?;
            check_file_flags(&files)?;
            let checksum = expand_opt(w, &a.checksum)?;
            if let Some(c) = &checksum {
                let hex = |h: &str| h.bytes().all(|b| b.is_ascii_hexdigit());
                let digest = c
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && hex(h));
                // A git source's checksum is its commit, or a prefix of it.
                let commit = (7..=64).contains(&c.len()) && hex(c);
                if !digest && !commit {
                    return Err(InstructionError::Checksum(c.clone()));
                }
            }
            Instruction::Add(instructions::Add {
                files,
                checksum,
                keep_git_dir: a.keep_git_dir,
                unpack: a.unpack,
            })
        }
        Instruction::Run(r) => {
            let mut mounts: Vec<MountSpec> = Vec::new();
            for m in &r.mounts {
                mounts.push(instructions::parse_mount(&m.raw, Some(w)).map_err(|error| {
                    InstructionError::Mount {
                        raw: m.raw.clone(),
                        error,
                    }
                })?);
            }
            let mut run = r.clone();
            run.mounts = mounts;
            Instruction::Run(run)
        }
        Instruction::Healthcheck(Healthcheck::Cmd { .. })
        | Instruction::Healthcheck(Healthcheck::None)
        | Instruction::Cmd(_)
        | Instruction::Entrypoint(_)
        | Instruction::Shell { .. }
        | Instruction::Maintainer { .. }
        | Instruction::Onbuild(_) => i.clone(),
    })
}

fn check_file_flags(f: &FileSources) -> Result<(), InstructionError> {
    if let Some(m) = &f.chmod {
        let octal = !m.is_empty() && m.len() <= 4 && m.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !octal {
            return Err(InstructionError::Chmod(m.clone()));
        }
    }
    if let Some(c) = &f.chown {
        if c.is_empty() || c.split(':').count() > 2 {
            return Err(InstructionError::Chown(c.clone()));
        }
    }
    for e in &f.exclude {
        crate::frontend::dockerignore::Matcher::new(&[e.as_str()]).map_err(|error| {
            InstructionError::Exclude {
                pattern: e.clone(),
                error,
            }
        })?;
    }
    Ok(())
}

/// `80`, `80/tcp`, `53/udp`, `8000-8010/tcp`.
/// The ports an EXPOSE word names, as BuildKit's `parsePortSpec` reads
/// it: `[ip:[hostport:]]port[-end][/proto]`, the protocol lowercased (tcp
/// when absent), a range split into one `port/proto` per port.
pub(crate) fn expose_ports(p: &str) -> Result<Vec<String>, PortError> {
    let container = p.rsplit(':').next().unwrap_or(p);
    let (range, proto) = match container.split_once('/') {
        Some((r, pr)) => (r, pr.to_ascii_lowercase()),
        None => (container, String::new()),
    };
    if range.is_empty() {
        return Err(PortError::NoPort(p.to_string()));
    }
    let proto = if proto.is_empty() {
        "tcp".to_string()
    } else {
        proto
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(PortError::Protocol {
            proto,
            word: p.to_string(),
        });
    }
    let bad = || PortError::Port(p.to_string());
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = range.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|n| format!("{n}/{proto}")).collect())
}

/// The instruction as progress shows it: the keyword and the expanded
/// arguments (RUN and others that are not expanded show as written).
fn display(i: &Instruction, original: &str) -> String {
    let q = |s: &str| {
        if s.contains(' ') {
            format!("{s:?}")
        } else {
            s.to_string()
        }
    };
    match i {
        Instruction::Env { pairs } | Instruction::Label { pairs } => format!(
            "{} {}",
            i.keyword(),
            pairs
                .iter()
                .map(|kv| format!("{}={}", kv.key, q(&kv.value)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Arg { args } => format!(
            "ARG {}",
            args.iter()
                .map(|a| match &a.default {
                    Some(d) => format!("{}={}", a.name, q(d)),
                    None => a.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Workdir { path } => format!("WORKDIR {path}"),
        Instruction::User { user } => format!("USER {user}"),
        Instruction::StopSignal { signal } => format!("STOPSIGNAL {signal}"),
        Instruction::Volume { paths } => format!("VOLUME {}", paths.join(" ")),
        Instruction::Expose { ports } => format!("EXPOSE {}", ports.join(" ")),
        Instruction::Copy(c) => {
            let mut s = String::from("COPY");
            if let Some(f) = &c.from {
                s.push_str(&format!(" --from={f}"));
            }
            push_file_flags(&mut s, &c.files);
            if c.parents {
                s.push_str(" --parents");
            }
            push_sources(&mut s, &c.files);
            s
        }
        Instruction::Add(a) => {
            let mut s = String::from("ADD");
            push_file_flags(&mut s, &a.files);
            if let Some(c) = &a.checksum {
                s.push_str(&format!(" --checksum={c}"));
            }
            push_sources(&mut s, &a.files);
            s
        }
        _ => original.to_string(),
    }
}

fn push_file_flags(s: &mut String, f: &FileSources) {
    if let Some(c) = &f.chown {
        s.push_str(&format!(" --chown={c}"));
    }
    if let Some(c) = &f.chmod {
        s.push_str(&format!(" --chmod={c}"));
    }
    if f.link {
        s.push_str(" --link");
    }
    for e in &f.exclude {
        s.push_str(&format!(" --exclude={e}"));
    }
}

fn push_sources(s: &mut String, f: &FileSources) {
    for src in &f.sources {
        match src {
            Source::Path(p) => {
                s.push(' ');
                s.push_str(p);
            }
            Source::Heredoc(h) => s.push_str(&format!(" <<{}", h.name)),
        }
    }
    s.push(' ');
    s.push_str(&f.dest);
}

/// The located ARG declarations (for tests and `debug`).
pub fn meta_arg_names(df: &Dockerfile) -> Vec<String> {
    df.meta_args
        .iter()
        .flat_map(|l: &Located<Vec<ArgDecl>>| l.value.iter().map(|a| a.name.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::instructions::parse_dockerfile;

    fn plan_of(
        text: &str,
        args: &[(&str, &str)],
        target: Option<&str>,
    ) -> Result<BuildPlan, FrontendError> {
        let df = parse_dockerfile(text).unwrap();
        let req = PlanRequest {
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: target.map(String::from),
            ..Default::default()
        };
        plan(&df, &req, "Dockerfile")
    }

    fn step_args(p: &BuildPlan, stage: usize, step: usize) -> BTreeMap<String, String> {
        p.stages[stage].steps[step].args.as_ref().clone()
    }

    #[test]
    fn global_args_reach_from_only_until_redeclared() {
        let text = "ARG BASE=alpine\nARG V=1\nFROM $BASE:$V\nRUN echo $V\nARG V\nRUN echo $V\n";
        let p = plan_of(text, &[], None).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("alpine:1".into()));
        assert!(!step_args(&p, 0, 0).contains_key("V"));
        assert_eq!(step_args(&p, 0, 2).get("V").map(String::as_str), Some("1"));
        let p = plan_of(text, &[("V", "2")], None).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("alpine:2".into()));
        assert_eq!(step_args(&p, 0, 2).get("V").map(String::as_str), Some("2"));
        assert!(p.unused_build_args.is_empty());
    }

    #[test]
    fn stage_args_defaults_and_overrides() {
        let text = "FROM scratch\nARG A=x\nARG B=${A}y\nENV A=env\nLABEL l=$A-$B\n";
        let p = plan_of(text, &[], None).unwrap();
        let label = &p.stages[0].steps[3].instruction;
        assert_eq!(
            label,
            &Instruction::Label {
                pairs: vec![KeyValue {
                    key: "l".into(),
                    value: "env-xy".into()
                }]
            }
        );
        let p = plan_of(text, &[("B", "over"), ("UNUSED", "1")], None).unwrap();
        assert_eq!(
            step_args(&p, 0, 1).get("B").map(String::as_str),
            Some("over")
        );
        assert_eq!(p.unused_build_args, vec!["UNUSED".to_string()]);
        assert!(p.warnings.iter().any(|w| w.contains("UNUSED")));
    }

    #[test]
    fn platform_args_are_predefined() {
        let p = plan_of(
            "FROM --platform=$BUILDPLATFORM scratch\nARG TARGETARCH\nWORKDIR /$TARGETARCH\n",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            p.stages[0].from_display,
            "FROM --platform=wasi/wasm scratch"
        );
        assert_eq!(p.stages[0].steps[1].workdir, "/wasm");
        // Another platform builds, RUN steps too (they run through wasm
        // programs or wbox's applets; a native one fails when run).
        assert!(plan_of(
            "FROM --platform=linux/amd64 scratch\nLABEL a=b\nRUN make\n",
            &[],
            None
        )
        .is_ok());
        // Only a stage the target needs must be buildable (issue 17, item 16).
        let p = plan_of(
            "FROM --platform=linux/amd64 scratch AS native\nRUN make\nFROM scratch\nLABEL a=b\n",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(p.needed, vec![1]);
        assert!(plan_of(
            "FROM --platform=linux scratch AS x\nFROM scratch\n",
            &[],
            None
        )
        .is_err());
    }

    #[test]
    fn target_and_dependencies() {
        let text = "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a / /\nFROM b AS c\nFROM scratch AS d\nCOPY --from=1 / /\n";
        let p = plan_of(text, &[], Some("c")).unwrap();
        assert_eq!(p.target, 2);
        assert_eq!(p.needed, vec![0, 1, 2]);
        let p = plan_of(text, &[], None).unwrap();
        assert_eq!(p.needed, vec![0, 1, 3]);
        let e = plan_of(text, &[], Some("cc")).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean c?"));
        assert!(plan_of("FROM scratch\nCOPY --from=0 / /\n", &[], None).is_err());
    }

    #[test]
    fn workdir_env_and_stage_inheritance() {
        let text = "FROM scratch AS a\nENV P=/opt\nWORKDIR $P\nWORKDIR app\nFROM a\nCOPY x .\n";
        let p = plan_of(text, &[], None).unwrap();
        assert_eq!(p.stages[0].steps[2].workdir, "/opt/app");
        assert_eq!(p.stages[1].base, Base::Stage(0));
        assert_eq!(p.stages[1].steps[0].workdir, "/opt/app");
        assert_eq!(p.stages[1].env.get("P").map(String::as_str), Some("/opt"));
    }

    #[test]
    fn path_in_env_expands_to_the_base_default() {
        // BuildKit's empty image has the default PATH; so does wbuild/base.
        for base in ["scratch", "wbuild/base"] {
            let text = format!("FROM {base}\nENV PATH=$PATH:/opt/bin\n");
            let p = plan_of(&text, &[], None).unwrap();
            assert_eq!(
                p.stages[0].env["PATH"],
                format!("{}:/opt/bin", crate::env::DEFAULT_PATH)
            );
        }
    }

    #[test]
    fn copy_expansion_and_heredocs() {
        let text = "FROM scratch\nARG D=/dst\nARG M=0644\nCOPY --chmod=$M src/$D $D/\nCOPY <<EOF <<'RAW' /x/\n$D \"q\"\nEOF\n$D\nRAW\n";
        let p = plan_of(text, &[], None).unwrap();
        assert_eq!(
            p.stages[0].steps[2].display,
            "COPY --chmod=0644 src//dst /dst/"
        );
        match &p.stages[0].steps[3].instruction {
            Instruction::Copy(c) => {
                let bodies: Vec<String> = c
                    .files
                    .sources
                    .iter()
                    .map(|s| match s {
                        Source::Heredoc(h) => h.content.clone(),
                        Source::Path(p) => p.clone(),
                    })
                    .collect();
                assert_eq!(bodies, vec!["/dst \"q\"\n".to_string(), "$D\n".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(plan_of("FROM scratch\nCOPY --chmod=999 a b\n", &[], None).is_err());
        assert!(plan_of("FROM scratch\nEXPOSE 80/xyz\n", &[], None).is_err());
        assert!(plan_of("FROM scratch\nEXPOSE 70000\n", &[], None).is_err());
        assert!(plan_of("FROM scratch\nADD --checksum=md5:1 a b\n", &[], None).is_err());
    }

    #[test]
    fn run_mounts_expand() {
        let text = "FROM scratch\nARG T=/cache\nRUN --mount=type=cache,target=$T x\n";
        let p = plan_of(text, &[], None).unwrap();
        match &p.stages[0].steps[1].instruction {
            Instruction::Run(r) => assert_eq!(r.mounts[0].target.as_deref(), Some("/cache")),
            other => panic!("{other:?}"),
        }
        let bad = "FROM scratch\nARG T=nope\nRUN --mount=type=$T,target=/x x\n";
        assert!(plan_of(bad, &[], None).is_err());
    }

    #[test]
    fn from_errors() {
        assert!(plan_of("ARG I\nFROM $I\n", &[], None)
            .unwrap_err()
            .message
            .contains("empty image name"));
        assert_eq!(
            plan_of("ARG I\nFROM $I\n", &[("I", "busybox")], None)
                .unwrap()
                .stages[0]
                .base,
            Base::Image("busybox".into())
        );
    }

    #[test]
    fn backtick_escape_in_expansion() {
        let text =
            "# escape=`\nFROM scratch\nENV A=x` y B=c:\\dir\nWORKDIR $B\nEXPOSE 80 `\n  443/udp\n";
        let p = plan_of(text, &[], None).unwrap();
        let s = &p.stages[0].steps;
        assert_eq!(p.stages[0].env.get("A").map(String::as_str), Some("x y"));
        assert_eq!(
            p.stages[0].env.get("B").map(String::as_str),
            Some("c:\\dir")
        );
        assert_eq!(s[2].display, "EXPOSE 80 443/udp");
    }

    #[test]
    fn expose_splits_words_after_expansion() {
        let p = plan_of(
            "FROM scratch\nARG P=\"80 443\"\nEXPOSE $P \"8080\"\n",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            p.stages[0].steps[1].instruction,
            Instruction::Expose {
                ports: vec!["80".into(), "443".into(), "8080".into()]
            }
        );
    }

    #[test]
    fn expose_splits_ranges_as_buildkit_does() {
        let ports = |s: &str| expose_ports(s);
        assert_eq!(
            ports("8000-8002/UDP").unwrap(),
            ["8000/udp", "8001/udp", "8002/udp"]
        );
        assert_eq!(ports("127.0.0.1:80:8080").unwrap(), ["8080/tcp"]);
        assert_eq!(ports("53/sctp").unwrap(), ["53/sctp"]);
        for bad in ["", "x", "70000", "9-8", "80/icmp", "80-"] {
            assert!(ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn workdir_join() {
        assert_eq!(join_workdir("/", "a"), "/a");
        assert_eq!(join_workdir("/a", "../b"), "/b");
        assert_eq!(join_workdir("/a", "/c/"), "/c");
    }
}
