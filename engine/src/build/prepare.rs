//! The first phase of a build: everything checked before anything is
//! built ([`check`]: the Dockerfile, the flags, the outputs, the cache
//! kinds; no store yet, so bad input leaves nothing behind), then the
//! store opened and what the solve needs gathered ([`prepare`]: the
//! context scanned, the base images' configs read and the plans made
//! again with them, the secrets and the imported caches).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{read_dockerfile, source_date_epoch, store_root, Error, Result};
use crate::cache::kind::{cache_type, CacheCx, ImportedCache};
use crate::context::Context;
use crate::export::{self, Exporter, LayerPolicy};
use crate::frontend::{dockerignore, instructions};
use crate::plan::{self, BuildPlan, PlanRequest};
use crate::request::{BuildRequest, NamedContext, SecretSource};
use crate::settings::GcConfig;
use crate::solve::{BuildOptions, PullPolicy, SharedPuller};
use crate::store::Store;

/// What is known once the request has been checked.
pub(super) struct Checked {
    df: instructions::Dockerfile,
    /// The Dockerfile as the user named it.
    pub shown: String,
    contexts: BTreeMap<String, NamedContext>,
    platforms: Vec<Option<plan::Platform>>,
    /// One plan per platform, before the base images' configs are read.
    plans: Vec<BuildPlan>,
    /// `--gc`: the config's rules, read before anything is built.
    pub gc: Option<GcConfig>,
    pub exporters: Vec<Box<dyn Exporter>>,
    ignore: dockerignore::Matcher,
}

impl Checked {
    /// The plan for one platform, with what is known of the base images.
    fn plan(
        &self,
        req: &BuildRequest,
        platform: &Option<plan::Platform>,
        bases: &BTreeMap<String, plan::BaseConfig>,
    ) -> Result<BuildPlan> {
        let request = PlanRequest {
            build_args: req.build_args.clone(),
            target: req.target.clone(),
            contexts: self.contexts.keys().cloned().collect(),
            dir_contexts: self
                .contexts
                .iter()
                .filter(|(_, c)| matches!(c, NamedContext::Dir(_)))
                .map(|(k, _)| k.clone())
                .collect(),
            platform: platform.clone(),
            bases: bases.clone(),
        };
        Ok(plan::plan(&self.df, &request, &self.shown)?)
    }

    /// Every platform's plan.
    fn plan_all(
        &self,
        req: &BuildRequest,
        bases: &BTreeMap<String, plan::BaseConfig>,
    ) -> Result<Vec<BuildPlan>> {
        self.platforms
            .iter()
            .map(|p| self.plan(req, p, bases))
            .collect()
    }
}

/// Checks the whole request before the store is touched: the Dockerfile
/// parses and plans for every platform, each named context, stage filter,
/// output and cache is well-formed, the GC config reads.
pub(super) fn check(req: &BuildRequest) -> Result<Checked> {
    let df = read_dockerfile(&req.dockerfile)?;
    let shown = crate::paths::shown(&req.dockerfile);
    let mut contexts = BTreeMap::new();
    for (name, value) in &req.build_contexts {
        let c = NamedContext::parse(value).map_err(|error| Error::BuildContext {
            name: name.clone(),
            error,
        })?;
        contexts.insert(crate::request::context_key(name), c);
    }
    let mut checked = Checked {
        df,
        shown,
        contexts,
        platforms: platforms(req)?,
        plans: Vec::new(),
        gc: None,
        exporters: Vec::new(),
        ignore: Default::default(),
    };
    checked.plans = checked.plan_all(req, &BTreeMap::new())?;
    check_stage_filters(req, &checked.plans[0], &checked.shown)?;
    if req.gc {
        checked.gc = Some(
            crate::settings::load_gc(req.config.as_deref())
                .map_err(|e| Error::Config(Box::new(e)))?,
        );
    }
    checked.exporters = req
        .outputs
        .iter()
        .map(export::exporter_for)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    check_caches(req)?;
    checked.ignore = dockerignore::load(&req.context, &req.dockerfile)?;
    Ok(checked)
}

/// `--platform a,b`: each once, in order; none means the host's.
fn platforms(req: &BuildRequest) -> Result<Vec<Option<plan::Platform>>> {
    let mut out: Vec<Option<plan::Platform>> = Vec::new();
    for one in &req.platforms {
        let pf = plan::Platform::parse_any(one).map_err(Error::Platform)?;
        if !out.contains(&Some(pf.clone())) {
            out.push(Some(pf));
        }
    }
    if out.is_empty() {
        out.push(None);
    }
    Ok(out)
}

/// Every `--no-cache-filter` names a stage.
fn check_stage_filters(req: &BuildRequest, p: &BuildPlan, shown: &str) -> Result<()> {
    for s in &req.no_cache_filter {
        let lower = s.to_ascii_lowercase();
        if !p.stages.iter().any(|st| st.name.as_deref() == Some(&lower)) {
            return Err(Error::NoSuchStage {
                stage: s.clone(),
                dockerfile: shown.to_string(),
            });
        }
    }
    Ok(())
}

/// Every `--cache-from` and `--cache-to` is of a kind this wbuild has,
/// with what that kind needs (the CLI checked as much; a request made
/// otherwise is checked here).
fn check_caches(req: &BuildRequest) -> Result<()> {
    let all = [
        ("--cache-from", &req.cache_from, false),
        ("--cache-to", &req.cache_to, true),
    ];
    for (flag, specs, export) in all {
        for spec in specs {
            let t = cache_type(spec.kind).ok_or(Error::CacheKind {
                flag,
                kind: spec.kind,
            })?;
            t.check(spec, export).map_err(|error| Error::CacheSpec {
                flag,
                kind: spec.kind,
                error,
            })?;
        }
    }
    Ok(())
}

/// The store a build uses, leased for the build.
pub(super) fn open_store(req: &BuildRequest) -> Result<Store> {
    let mut store = Store::open(&store_root(req)?)?;
    store.set_max_download(req.max_download);
    store.begin_lease()?;
    let _ = store.clean_tmp();
    Ok(store)
}

/// Everything the solve and the later phases need.
pub(super) struct Prepared<'a> {
    pub req: &'a BuildRequest,
    pub store: &'a Store,
    /// The Dockerfile as the user named it.
    pub shown: String,
    /// One plan per platform, with the base images' configs.
    pub plans: Vec<BuildPlan>,
    pub ctx: Context,
    pub opts: BuildOptions,
    /// The registry client the plans' base images were read with.
    pub shared: SharedPuller<'a>,
    pub exporters: Vec<Box<dyn Exporter>>,
    pub gc: Option<GcConfig>,
}

/// Scans the context, reads the base images' configs and plans again
/// with them, and gathers the solver's options.
pub(super) fn prepare<'a>(
    req: &'a BuildRequest,
    checked: Checked,
    store: &'a Store,
) -> Result<Prepared<'a>> {
    let mut ctx = Context::scan(&req.context, &checked.ignore, Some(store))?;
    ctx.apply_modes(req.context_modes);
    let opts = build_options(req, &checked, store)?;
    // The registry images the stages start from: their configs, read
    // before the steps are planned again with them (ENV for `$VAR`, the
    // WORKDIR a relative one starts from, ONBUILD triggers), as BuildKit
    // resolves them while converting. The client is the solver's too, so
    // each tag is asked about once.
    let (shared, plans) = match resolve_bases(store, &checked.plans, &opts)? {
        Some((puller, bases)) => (Some(puller), checked.plan_all(req, &bases)?),
        None => (None, checked.plans.clone()),
    };
    for w in &plans[0].warnings {
        eprintln!("warning: {w}");
    }
    check_entitlements(req, &plans[0], &checked.shown)?;
    Ok(Prepared {
        req,
        store,
        shown: checked.shown,
        plans,
        ctx,
        opts,
        shared,
        exporters: checked.exporters,
        gc: checked.gc,
    })
}

/// The solver's options. Layers are stored as the first output says
/// (`compression=`; the other outputs convert them), or gzip.
fn build_options(req: &BuildRequest, checked: &Checked, store: &Store) -> Result<BuildOptions> {
    let layers = req
        .outputs
        .first()
        .and_then(|o| LayerPolicy::from_attrs(&o.attrs).ok())
        .unwrap_or_default();
    let target = &checked.plans[0].stages[checked.plans[0].target].platform;
    Ok(BuildOptions {
        dockerfile: checked.shown.clone(),
        scope: std::fs::canonicalize(&req.dockerfile)
            .unwrap_or_else(|_| req.dockerfile.clone())
            .display()
            .to_string(),
        no_cache: req.no_cache,
        no_cache_filter: req.no_cache_filter.clone(),
        context_modes: req.context_modes,
        epoch: source_date_epoch()?,
        compression: layers.compression,
        level: layers.level,
        step_timeout: req.step_timeout,
        step_memory: req.step_memory,
        step_disk: req.step_disk,
        native: req.native,
        secrets: load_secrets(req)?,
        jobs: req.jobs,
        insecure_registries: req.insecure_registries.clone(),
        imported: import_caches(store, req, target),
        contexts: checked.contexts.clone(),
        dry_run: false,
        pull: match req.pull {
            None => PullPolicy::Check,
            Some(true) => PullPolicy::Always,
            Some(false) => PullPolicy::Never,
        },
    })
}

/// What importing or exporting a cache needs of this build.
pub(super) fn cache_cx<'a>(
    store: &'a Store,
    req: &'a BuildRequest,
    platform: &'a plan::Platform,
) -> CacheCx<'a> {
    CacheCx {
        store,
        insecure: &req.insecure_registries,
        os: &platform.os,
        arch: &platform.architecture,
    }
}

/// Reads every `--cache-from`, each by its kind. A cache that is missing
/// or damaged is a warning and imports nothing. Each becomes a place the
/// store fetches missing blobs from when they are read.
fn import_caches(
    store: &Store,
    req: &BuildRequest,
    platform: &plan::Platform,
) -> Vec<Arc<dyn ImportedCache>> {
    let cx = cache_cx(store, req, platform);
    req.cache_from
        .iter()
        .filter_map(|spec| cache_type(spec.kind)?.import(&cx, spec))
        .collect()
}

/// Reads every `--secret` value.
fn load_secrets(req: &BuildRequest) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for s in &req.secrets {
        let value = match &s.source {
            SecretSource::File(p) => std::fs::read(p).map_err(|error| Error::SecretFile {
                id: s.id.clone(),
                path: p.clone(),
                error,
            })?,
            SecretSource::Env(v) => std::env::var(v)
                .map_err(|_| Error::SecretEnv {
                    id: s.id.clone(),
                    var: v.clone(),
                })?
                .into_bytes(),
        };
        out.insert(s.id.clone(), value);
    }
    Ok(out)
}

/// The build's registry client with the configs of the images the needed
/// stages start from, when any does.
#[cfg(feature = "registry")]
#[allow(clippy::type_complexity)]
fn resolve_bases<'s>(
    store: &'s Store,
    plans: &[BuildPlan],
    opts: &BuildOptions,
) -> Result<
    Option<(
        Arc<crate::registry::Puller<'s>>,
        BTreeMap<String, plan::BaseConfig>,
    )>,
> {
    let mut wanted = Vec::new();
    for p in plans {
        for st in p.needed_stages() {
            if let plan::Base::Image(n) | plan::Base::Context(n) = &st.base {
                wanted.push((n.clone(), st));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(None);
    }
    let fail = |st: &plan::PlannedStage, e: crate::registry::RegistryError| {
        Error::Solve(crate::solve::BuildError::from_failed(
            &opts.dockerfile,
            st,
            &st.label(),
            e,
        ))
    };
    let puller = Arc::new(
        crate::registry::Puller::new(store, &opts.insecure_registries)
            .map_err(|e| Error::Registry(Box::new(e)))?,
    );
    let mut bases = BTreeMap::new();
    for (name, st) in wanted {
        let key = plan::base_key(&name, &st.platform);
        if bases.contains_key(&key) {
            continue;
        }
        let pulled = puller
            .fetch_named(
                &name,
                &opts.contexts,
                &st.platform.os,
                &st.platform.architecture,
                opts.pull,
                !st.platform_named,
            )
            .map_err(|e| fail(st, e))?;
        if !st.platform_named && pulled.os == "linux" && st.platform.architecture == "wasm" {
            eprintln!(
                "note: {name} has no wasi/wasm image: using its {}/{} one, as BuildKit on an x86-64 host would; its programs run under wbuild's x86-64 emulator (FROM --platform=… picks another)",
                pulled.os, pulled.architecture
            );
        }
        bases.insert(
            key,
            plan::BaseConfig {
                platform: (!pulled.os.is_empty()).then(|| plan::Platform {
                    os: pulled.os.clone(),
                    architecture: pulled.architecture.clone(),
                    variant: pulled.variant.clone(),
                }),
                env: pulled.config.env_map(),
                workdir: pulled.config.working_dir.clone(),
                on_build: pulled.config.on_build.clone(),
            },
        );
    }
    Ok(Some((puller, bases)))
}

#[cfg(not(feature = "registry"))]
#[allow(clippy::type_complexity)]
fn resolve_bases<'s>(
    _: &'s Store,
    _: &[BuildPlan],
    _: &BuildOptions,
) -> Result<
    Option<(
        std::marker::PhantomData<&'s ()>,
        BTreeMap<String, plan::BaseConfig>,
    )>,
> {
    Ok(None)
}

/// What RUN steps ask for beyond a sandbox, refused unless `--allow`
/// names it (as buildx and BuildKit's solver do), and said to change
/// nothing when allowed: every RUN step is a wasm program in any case.
fn check_entitlements(req: &BuildRequest, plan: &BuildPlan, dockerfile: &str) -> Result<()> {
    use crate::frontend::instructions::{Instruction, SecurityMode};
    for &i in &plan.needed {
        for step in &plan.stages[i].steps {
            let Instruction::Run(run) = &step.instruction else {
                continue;
            };
            if run.security == Some(SecurityMode::Insecure) {
                if !req.allow.iter().any(|a| a == "security.insecure") {
                    return Err(Error::Entitlement {
                        dockerfile: dockerfile.to_string(),
                        line: step.line,
                        step: step.display.clone(),
                        entitlement: "security.insecure",
                    });
                }
                eprintln!(
                    "warning: {dockerfile}:{}: RUN --security=insecure changes nothing here: every RUN step runs as a WebAssembly program in wbuild's sandbox, with no more rights than any other",
                    step.line
                );
            }
        }
    }
    Ok(())
}
