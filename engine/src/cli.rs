//! The command line, named as `docker buildx build` names it. Parsing and
//! validation live here; `main.rs` maps errors to exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use wbuild::cache::kind::{cache_type, keys};
use wbuild::export;
use wbuild::request::{
    BuildRequest, CacheKind, CacheSpec, OutputKind, OutputSpec, ProgressMode, SecretSource,
    SecretSpec,
};

/// Builds Dockerfiles into OCI images; every RUN step runs as WebAssembly.
#[derive(Debug, Parser)]
#[command(
    name = "wbuild",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `wbuild [OPTIONS] PATH` is `wbuild build [OPTIONS] PATH`.
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile (the default command).
    Build(Box<BuildArgs>),
    /// Say what a build would do, running nothing: per step, cached or
    /// rebuilt, and for each first miss its cause and what it invalidates.
    Explain {
        #[command(flatten)]
        build: Box<BuildArgs>,
        /// The same as JSON.
        #[arg(long)]
        json: bool,
        /// List every input of step N's key (N as numbered in the listing).
        #[arg(long, value_name = "N")]
        step: Option<usize>,
    },
    /// Run an image's ENTRYPOINT/CMD in the sandbox, with this terminal's stdio.
    Run {
        #[command(flatten)]
        store: StoreArgs,
        /// Let the program write to the rootfs (the changes are thrown away).
        #[arg(long)]
        rw: bool,
        /// Run a Linux image's sh and the coreutils wbox has as wbox's (fast) instead of the image's own under the emulator.
        #[arg(long)]
        wbox_shell: bool,
        /// Bind a host directory: HOST:GUEST[:ro].
        #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST[:ro]")]
        volumes: Vec<String>,
        /// Set an environment variable (KEY=VALUE).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Longest the program may run.
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        timeout: String,
        /// Most memory the program may use.
        #[arg(long, value_name = "SIZE", default_value = "2GB")]
        memory: String,
        /// The image: a name from `wbuild images` or a digest.
        image: String,
        /// Arguments that replace the image's CMD.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then build again whenever a file of the context or the
    /// Dockerfile changes, saying each time what was rebuilt and why.
    Watch(Box<BuildArgs>),
    /// Write the HTML report of the store's last build (to stdout, or -o FILE).
    Report {
        #[command(flatten)]
        store: StoreArgs,
        /// Where to write it (default: standard output).
        #[arg(short = 'o', long = "output", value_name = "FILE.html")]
        output: Option<PathBuf>,
    },
    /// List the images kept in the store (builds with no --output).
    Images {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show the build cache: records with their size and last use.
    Du {
        #[command(flatten)]
        store: StoreArgs,
        /// Show every record, not only the total.
        #[arg(long)]
        verbose: bool,
    },
    /// Remove build cache.
    Prune {
        #[command(flatten)]
        store: StoreArgs,
        /// Remove all cache, not only records no kept image uses.
        #[arg(short, long)]
        all: bool,
        /// Only records last used longer ago than this (until=24h).
        #[arg(long, value_name = "until=DURATION")]
        filter: Vec<String>,
        /// Keep at most this much cache (e.g. 10GB, 512MB).
        #[arg(long, value_name = "SIZE")]
        keep_storage: Option<String>,
        /// Amount of disk space always allowed to keep for cache (e.g. 10GB, 10%).
        #[arg(long, value_name = "SIZE")]
        reserved_space: Option<String>,
        /// Maximum amount of disk space allowed to keep for cache (e.g. 100GB, 80%).
        #[arg(long, value_name = "SIZE")]
        max_used_space: Option<String>,
        /// Target amount of free disk space after pruning (e.g. 20GB, 20%).
        #[arg(long, value_name = "SIZE")]
        min_free_space: Option<String>,
        /// Say what was removed.
        #[arg(long)]
        verbose: bool,
    },
    /// Remove images kept in the store (their blobs go with the next prune).
    Rmi {
        #[command(flatten)]
        store: StoreArgs,
        /// Names (`app`, `app:1`, `<none>@sha256:…`) or image IDs.
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Manage images kept in the store: `image ls`, `image rm`.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Look inside the frontend: the parse tree, typed instructions, the plan.
    #[command(subcommand)]
    Debug(DebugCommand),
}

/// `wbuild image …`, as `docker image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images kept in the store.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove images kept in the store.
    #[command(alias = "remove")]
    Rm {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
}

/// Where the store is, for the commands that only read or clean it.
#[derive(Debug, Args, Default, Clone)]
pub struct StoreArgs {
    /// Where wbuild keeps its store (blobs, cache index).
    #[arg(long, env = "WBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Parses `10GB`, `512MB`, `1.5G`, `4096` (bytes; powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, FlagError> {
    match wbuild::store::Space::parse(s) {
        Ok(wbuild::store::Space::Bytes(b)) => Ok(b),
        Ok(wbuild::store::Space::Percent(_)) => Err(flag_err(
            "--keep-storage",
            s,
            "expected a size such as 512MB or 10GB, not a share of the disk",
        )),
        Err(_) if s.trim().starts_with('-') => {
            Err(flag_err("--keep-storage", s, "the size cannot be negative"))
        }
        Err(_) => Err(flag_err(
            "--keep-storage",
            s,
            "expected a size such as 512MB or 10GB",
        )),
    }
}

/// Parses `until=DURATION` filters (Go durations: 24h, 30m, 1h30m) and
/// `type=KIND` ones; returns the duration and the types.
pub fn parse_filters(
    filters: &[String],
) -> Result<(Option<std::time::Duration>, Vec<String>), FlagError> {
    let mut out = None;
    let mut types = Vec::new();
    for f in filters {
        match f.split_once('=') {
            Some(("until", d)) => {
                out = Some(
                    wbuild::frontend::instructions::parse_go_duration(d)
                        .map_err(|m| flag_err("--filter", f, m))?,
                )
            }
            Some(("type", t)) | Some(("type=", t)) => {
                let t = t.trim_start_matches('=');
                if !matches!(
                    t,
                    "regular"
                        | "exec.cachemount"
                        | "compiled"
                        | "source.local"
                        | "source.git.checkout"
                ) {
                    return Err(flag_err(
                        "--filter",
                        f,
                        "type is one of regular, exec.cachemount, compiled, source.local, source.git.checkout",
                    ));
                }
                types.push(format!("type=={t}"));
            }
            _ => {
                return Err(flag_err(
                    "--filter",
                    f,
                    "filters are until=DURATION (e.g. until=24h) and type=TYPE",
                ))
            }
        }
    }
    Ok((out, types))
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's parse tree in BuildKit's `result` format.
    Parse {
        /// The Dockerfile to read.
        file: PathBuf,
    },
    /// Print a Dockerfile's typed instructions, grouped by stage, as JSON.
    Instructions {
        /// The Dockerfile to read.
        file: PathBuf,
    },
    /// Print the build plan: the stages to build and every step expanded.
    Plan {
        /// The build context.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Name of the Dockerfile (default: PATH/Dockerfile).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment).
        #[arg(long = "build-arg", value_name = "KEY=VALUE")]
        build_args: Vec<String>,
        /// Set the target build stage to build.
        #[arg(long)]
        target: Option<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The flags of `wbuild build`, as in `docker buildx build`.
#[derive(Debug, Args, Default, Clone)]
pub struct BuildArgs {
    /// The build context directory.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Name of the Dockerfile (default: PATH/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Name and optionally a tag (format: "name:tag").
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not cache specified stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Context files' permission bits: as the filesystem has them (keep, as
    /// BuildKit), or git's model, the same under any umask and OS
    /// (normalize: 0644, 0755 when the owner may execute, directories 0755).
    #[arg(long = "context-modes", value_enum, default_value = "keep")]
    pub context_modes: wbuild::request::ContextModes,
    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or "id=X,env=VAR").
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// Output destination (format: "type=local,dest=path").
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Set type of progress output ("auto", "plain", "tty", "rawjson", "quiet").
    #[arg(long, default_value = "auto", value_name = "TYPE")]
    pub progress: String,
    /// Write build result metadata to a file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Write the build report, one self-contained HTML file (also when the build fails).
    #[arg(long = "report", value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Write the image ID to a file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Allow extra privileged entitlement (e.g., "network.host", "security.insecure").
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Set target platform(s) for build (default wasi/wasm; several, comma-separated, make one index).
    #[arg(long, value_name = "PLATFORM", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Where wbuild keeps its store (blobs, cache index).
    #[arg(long, env = "WBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Longest a RUN step may run (e.g. 30s, 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub step_timeout: String,
    /// Most memory a RUN step's program may use (e.g. 512MB, 2GB; at most 4GB).
    #[arg(long, value_name = "SIZE", default_value = "2GB")]
    pub step_memory: String,
    /// Most a RUN step may write to files, with all it starts (e.g. 500MB, 10GB).
    #[arg(long, value_name = "SIZE", default_value = "10GB")]
    pub step_disk: String,
    /// Run a Linux image's sh and the coreutils wbox has as wbox's WebAssembly ones (fast) instead of the image's own programs under the emulator.
    #[arg(long)]
    pub wbox_shell: bool,
    /// Most one download (ADD <url>, a registry layer) or unpacked archive may bring (e.g. 10GB; default: the store's free disk space less 512 MiB).
    #[arg(long = "max-download", value_name = "SIZE")]
    pub max_download: Option<String>,
    /// How many stages may build at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Shorthand for "--output=type=registry": push the image to the registry its -t names say.
    #[arg(long)]
    pub push: bool,
    /// Always ask the registry for a FROM image's tag (--pull=false: use an image pulled before, offline).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pull: Option<String>,
    /// Talk to this registry over plain HTTP (localhost and 127.0.0.0/8 always are).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Collect garbage by the config's rules after the build (--gc=false: not this time).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub gc: String,
    /// wbuild's config file (default: wbuild.toml in the platform's config directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Cache export destinations (e.g. "type=local,dest=DIR,mode=max").
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Cache import sources (e.g. "type=local,src=DIR").
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Additional build contexts (e.g., name=path, name=docker-image://REF, name=oci-layout://DIR[:TAG|@DIGEST]).
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
}

/// A flag whose value is wrong: the flag, the value and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub reason: FlagReason,
}

/// Why a flag's value is wrong: the parser's own words, or the typed
/// cause a kind gave when it checked its keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagReason {
    #[error("{0}")]
    Said(String),
    #[error(transparent)]
    Cache(#[from] wbuild::cache::kind::CacheSpecError),
    #[error(transparent)]
    Output(#[from] export::SpecError),
    #[error(transparent)]
    Space(#[from] wbuild::store::SpaceError),
    #[error(transparent)]
    Duration(#[from] wbuild::frontend::instructions::DurationError),
    #[error(transparent)]
    Platform(#[from] wbuild::plan::PlatformError),
}

impl From<String> for FlagReason {
    fn from(s: String) -> Self {
        FlagReason::Said(s)
    }
}

impl From<&str> for FlagReason {
    fn from(s: &str) -> Self {
        FlagReason::Said(s.to_string())
    }
}

fn flag_err(flag: &'static str, value: &str, reason: impl Into<FlagReason>) -> FlagError {
    FlagError {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses `KEY=VALUE` build args; a bare `KEY` takes the value from the
/// environment, and is dropped when the environment has none (as buildx).
pub fn parse_build_args(items: &[String]) -> Result<BTreeMap<String, String>, FlagError> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some(("", _)) => {
                return Err(flag_err(
                    "--build-arg",
                    item,
                    "the name is empty; write KEY=VALUE",
                ))
            }
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None if item.is_empty() => {
                return Err(flag_err("--build-arg", item, "write KEY=VALUE"))
            }
            None => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// Splits a comma-separated list as CSV does: a field in double quotes
/// may hold commas (`"name=a:1,a:2"`), and `""` in it is one quote.
fn buildx_fields(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parses one comma-separated `key=value` list (quoted fields allowed).
fn kv_list(flag: &'static str, spec: &str) -> Result<Vec<(String, String)>, FlagError> {
    let mut out = Vec::new();
    for field in buildx_fields(spec) {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        match field.split_once('=') {
            Some((k, v)) => out.push((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )),
            None => {
                return Err(flag_err(
                    flag,
                    spec,
                    format!("field {field:?} must be a key=value pair"),
                ))
            }
        }
    }
    Ok(out)
}

/// `--pull`, `--pull=true|false`, or neither.
fn parse_pull(pull: Option<&str>) -> Result<Option<bool>, FlagError> {
    match pull {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(flag_err(
            "--pull",
            other,
            "use --pull, --pull=true or --pull=false",
        )),
    }
}

/// `--build-context NAME=VALUE`s, by lowercase name.
fn parse_build_contexts(given: &[String]) -> Result<BTreeMap<String, String>, FlagError> {
    let mut build_contexts = BTreeMap::new();
    for c in given {
        match c.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                build_contexts.insert(k.to_ascii_lowercase(), v.to_string());
            }
            _ => {
                return Err(flag_err(
                    "--build-context",
                    c,
                    "write NAME=VALUE: a directory, docker-image://REF or oci-layout://DIR[:TAG|@DIGEST]",
                ))
            }
        }
    }
    Ok(build_contexts)
}

/// `--progress`.
fn parse_progress(mode: &str) -> Result<ProgressMode, FlagError> {
    Ok(match mode {
        "auto" => ProgressMode::Auto,
        "plain" => ProgressMode::Plain,
        "tty" => ProgressMode::Tty,
        "rawjson" => ProgressMode::RawJson,
        "quiet" => ProgressMode::Quiet,
        other => {
            return Err(flag_err(
                "--progress",
                other,
                "use auto, plain, tty, rawjson or quiet",
            ))
        }
    })
}

/// Parses an `--output` value as buildx does: `type=…,dest=…`, a bare path
/// (a local directory) or `-` (a tar on stdout). Each kind says which
/// keys it takes and checks their values (`export::OUTPUT_TYPES`).
pub fn parse_output(spec: &str) -> Result<OutputSpec, FlagError> {
    if spec == "-" {
        return Ok(OutputSpec {
            kind: OutputKind::Tar,
            dest: Some("-".into()),
            attrs: BTreeMap::new(),
        });
    }
    if !spec.contains('=') {
        return Ok(OutputSpec {
            kind: OutputKind::Local,
            dest: Some(spec.to_string()),
            attrs: BTreeMap::new(),
        });
    }
    let fail = |m: String| flag_err("--output", spec, m);
    let names = || names_of(OutputKind::ALL.iter().map(|(_, n)| *n));
    let mut kind = None;
    let mut dest = None;
    let mut attrs = BTreeMap::new();
    for (k, v) in kv_list("--output", spec)? {
        match k.as_str() {
            "type" => kind = Some(v),
            "dest" if v.is_empty() => {
                return Err(fail(
                    "dest= is empty: give a file, a directory for type=local, or - for stdout"
                        .into(),
                ))
            }
            "dest" => dest = Some(v),
            _ => {
                attrs.insert(k, v);
            }
        }
    }
    let kind = kind.ok_or_else(|| fail(format!("type= is required ({})", names())))?;
    let kind = OutputKind::parse(&kind)
        .ok_or_else(|| fail(format!("unknown output type {kind:?} (use {})", names())))?;
    let t = export::output_type(kind);
    if let Some(k) = attrs.keys().find(|k| !t.keys.contains(&k.as_str())) {
        return Err(fail(format!(
            "type={kind} takes no key {k:?} (it takes: {})",
            ["type", "dest"]
                .iter()
                .chain(t.keys)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let o = OutputSpec { kind, dest, attrs };
    (t.make)(&o).map_err(|e| flag_err("--output", spec, e))?;
    Ok(o)
}

/// `a, b or c`.
fn names_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// Parses a `--cache-to` (`export`) or `--cache-from` value as buildx
/// does: `type=local,dest=DIR,mode=max`, `type=local,src=DIR`; a bare
/// reference in `--cache-from` is `type=registry,ref=REF`. Each kind says
/// which keys it takes and checks their values (`cache::kind`).
pub fn parse_cache(spec: &str, export: bool) -> Result<CacheSpec, FlagError> {
    let flag = if export { "--cache-to" } else { "--cache-from" };
    let fail = |m: String| flag_err(flag, spec, m);
    if !spec.contains('=') && !export {
        return Ok(CacheSpec {
            kind: CacheKind::Registry,
            attrs: BTreeMap::from([("ref".to_string(), spec.to_string())]),
        });
    }
    let names = || names_of(CacheKind::ALL.iter().map(|(_, n)| *n));
    let mut kind = None;
    let mut attrs = BTreeMap::new();
    for (k, v) in kv_list(flag, spec)? {
        if k == "type" {
            kind = Some(v);
        } else {
            attrs.insert(k, v);
        }
    }
    let kind = kind.ok_or_else(|| fail(format!("type= is required ({})", names())))?;
    let kind = CacheKind::parse(&kind)
        .ok_or_else(|| fail(format!("unknown cache type {kind:?} (use {})", names())))?;
    let t = cache_type(kind).ok_or_else(|| {
        fail(format!(
            "type={kind} needs registry support, which this wbuild was built without"
        ))
    })?;
    let other = if export { "--cache-from" } else { "--cache-to" };
    let (takes, other_takes) = (keys(t, export), keys(t, !export));
    if let Some(k) = attrs.keys().find(|k| !takes.contains(&k.as_str())) {
        return Err(fail(if other_takes.contains(&k.as_str()) {
            format!("{k}= is for {other}, not {flag}")
        } else {
            format!(
                "type={kind} takes no key {k:?} in {flag} (it takes: {})",
                ["type"]
                    .iter()
                    .chain(&takes)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }));
    }
    let c = CacheSpec { kind, attrs };
    t.check(&c, export).map_err(|e| flag_err(flag, spec, e))?;
    Ok(c)
}

/// Parses a `--secret` value: `id=X,src=FILE`, `id=X,env=VAR`,
/// `type=env,id=X` (the variable named X), or `id=X` (env X, else file X).
pub fn parse_secret(spec: &str) -> Result<SecretSpec, FlagError> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut typ = None;
    for (k, v) in kv_list("--secret", spec)? {
        match k.as_str() {
            "id" => id = Some(v),
            "src" | "source" => src = Some(v),
            "env" => env = Some(v),
            "type" => typ = Some(v),
            other => {
                return Err(flag_err(
                    "--secret",
                    spec,
                    format!("unknown key {other:?} (known: id, src, source, env, type)"),
                ))
            }
        }
    }
    if let Some(t) = &typ {
        if !matches!(t.as_str(), "file" | "env") {
            return Err(flag_err("--secret", spec, "type must be file or env"));
        }
    }
    let id = match id
        .or_else(|| env.clone())
        .or_else(|| src.as_deref().map(|s| basename(s).to_string()))
    {
        Some(i) if !i.is_empty() => i,
        _ => {
            return Err(flag_err(
                "--secret",
                spec,
                "id= is required (id=mysecret,src=FILE)",
            ))
        }
    };
    let source = match (typ.as_deref(), src, env) {
        (Some("env"), Some(s), None) | (_, None, Some(s)) => SecretSource::Env(s),
        (Some("env"), None, None) => SecretSource::Env(id.clone()),
        (_, Some(s), None) => SecretSource::File(PathBuf::from(s)),
        (_, Some(_), Some(_)) => {
            return Err(flag_err("--secret", spec, "give src= or env=, not both"))
        }
        (_, None, None) => {
            if std::env::var_os(&id).is_some() {
                SecretSource::Env(id.clone())
            } else {
                SecretSource::File(PathBuf::from(&id))
            }
        }
    };
    if let SecretSource::File(p) = &source {
        if !p.is_file() {
            return Err(flag_err(
                "--secret",
                spec,
                format!(
                    "secret file {} not found; give src=<existing file> or env=<VAR>",
                    p.display()
                ),
            ));
        }
    }
    Ok(SecretSpec { id, source })
}

fn basename(s: &str) -> &str {
    Path::new(s)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(s)
}

/// Checks an image reference as the distribution spec names them:
/// `[registry[:port]/]path[:tag][@digest]`, path components lower case.
pub fn validate_tag(tag: &str) -> Result<(), FlagError> {
    let bad = |why: &str| Err(flag_err("--tag", tag, why.to_string()));
    if tag.is_empty() {
        return bad("the name is empty");
    }
    let (name, digest) = match tag.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (tag, None),
    };
    if let Some(d) = digest {
        let ok = d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !ok {
            return bad("the digest must be sha256:<64 lower-case hex digits>");
        }
    }
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (path, tagpart) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tagpart {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return bad("the tag may hold letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')");
        }
    }
    let mut comps: Vec<&str> = path.split('/').collect();
    if comps.len() > 1
        && (comps[0].contains('.') || comps[0].contains(':') || comps[0] == "localhost")
    {
        comps.remove(0);
    }
    for c in comps {
        let ok = !c.is_empty()
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
            && c.chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_alphanumeric())
            && c.chars()
                .last()
                .is_some_and(|ch| ch.is_ascii_alphanumeric());
        if !ok {
            return bad("repository names must be lower case letters, digits and separators (. _ -), e.g. myapp:1.0");
        }
    }
    Ok(())
}

impl BuildArgs {
    /// Checks every flag and resolves paths into a [`BuildRequest`].
    pub fn into_request(self) -> Result<BuildRequest, FlagError> {
        let context = self.path.clone().unwrap_or_else(|| PathBuf::from("."));
        let dockerfile = self
            .file
            .clone()
            .unwrap_or_else(|| context.join("Dockerfile"));
        for t in &self.tags {
            validate_tag(t)?;
        }
        let build_args = parse_build_args(&self.build_args)?;
        let outputs = self.outputs()?;
        let pull = parse_pull(self.pull.as_deref())?;
        let build_contexts = parse_build_contexts(&self.build_contexts)?;
        let secrets = self
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<Result<Vec<_>, _>>()?;
        let progress = parse_progress(&self.progress)?;
        self.check_names()?;
        let (step_timeout, step_memory, step_disk) = self.step_limits()?;
        let max_download = match &self.max_download {
            Some(m) => Some(parse_size(m).map_err(|e| FlagError {
                flag: "--max-download",
                ..e
            })?),
            None => None,
        };
        let jobs = match self.jobs {
            Some(0) => return Err(flag_err("--jobs", "0", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(BuildRequest {
            jobs,
            step_timeout,
            step_memory,
            step_disk,
            native: wbuild::request::Native::from_wbox_shell(self.wbox_shell),
            context,
            dockerfile,
            tags: self.tags,
            build_args,
            target: self.target,
            no_cache: self.no_cache,
            no_cache_filter: self.no_cache_filter,
            context_modes: self.context_modes,
            allow: self.allow,
            max_download,
            secrets,
            outputs,
            progress,
            metadata_file: self.metadata_file,
            report: self.report,
            iidfile: self.iidfile,
            root: self.root,
            pull,
            cache_to: self
                .cache_to
                .iter()
                .map(|c| parse_cache(c, true))
                .collect::<Result<_, _>>()?,
            cache_from: self
                .cache_from
                .iter()
                .map(|c| parse_cache(c, false))
                .collect::<Result<_, _>>()?,
            platforms: self.platform,
            gc: match self.gc.as_str() {
                "true" | "1" | "" => true,
                "false" | "0" => false,
                other => return Err(flag_err("--gc", other, "use --gc=true or --gc=false")),
            },
            config: self.config,
            insecure_registries: self.insecure_registries,
            build_contexts,
        })
    }

    /// `--output`s, with `--push` made `type=registry` (or `push=true` on
    /// an image output already asked for), as buildx does; every output
    /// that pushes has a name.
    fn outputs(&self) -> Result<Vec<OutputSpec>, FlagError> {
        let mut outputs = self
            .outputs
            .iter()
            .map(|o| parse_output(o))
            .collect::<Result<Vec<_>, _>>()?;
        if self.push {
            // As buildx: --push is type=registry, or push=true on an image
            // output already asked for.
            match outputs
                .iter_mut()
                .find(|o| matches!(o.kind, OutputKind::Image | OutputKind::Registry))
            {
                Some(o) => {
                    o.attrs.insert("push".into(), "true".into());
                }
                None => outputs.push(OutputSpec {
                    kind: OutputKind::Registry,
                    dest: None,
                    attrs: BTreeMap::new(),
                }),
            }
        }
        for o in &outputs {
            let pushes = o.kind == OutputKind::Registry
                || o.attrs.get("push").map(String::as_str) == Some("true");
            let named = o.attrs.get("name").is_some_and(|n| !n.is_empty()) || !self.tags.is_empty();
            if pushes && !named {
                return Err(flag_err(
                    "--output",
                    o.kind.name(),
                    "a name is needed to push: give -t REGISTRY/NAME:TAG, or name= in --output",
                ));
            }
            if let Some(names) = o.attrs.get("name") {
                for n in names.split(',').filter(|n| !n.is_empty()) {
                    validate_tag(n).map_err(|e| FlagError {
                        flag: "--output",
                        ..e
                    })?;
                }
            }
        }
        Ok(outputs)
    }

    /// `--platform`, `--no-cache-filter` and `--allow` values are ones
    /// wbuild knows.
    fn check_names(&self) -> Result<(), FlagError> {
        for p in &self.platform {
            wbuild::plan::Platform::parse_any(p).map_err(|m| flag_err("--platform", p, m))?;
        }
        for s in &self.no_cache_filter {
            if s.is_empty() {
                return Err(flag_err("--no-cache-filter", s, "give a stage name"));
            }
        }
        for a in &self.allow {
            if !matches!(a.as_str(), "network.host" | "security.insecure") {
                return Err(flag_err(
                    "--allow",
                    a,
                    "invalid entitlement: give network.host or security.insecure",
                ));
            }
        }
        Ok(())
    }

    /// `--step-timeout`, `--step-memory`, `--step-disk`, each in range.
    fn step_limits(&self) -> Result<(std::time::Duration, u64, u64), FlagError> {
        let step_timeout = wbuild::frontend::instructions::parse_go_duration(&self.step_timeout)
            .map_err(|m| flag_err("--step-timeout", &self.step_timeout, m))?;
        if step_timeout.is_zero() {
            return Err(flag_err(
                "--step-timeout",
                &self.step_timeout,
                "must be more than 0",
            ));
        }
        let step_memory = parse_size(&self.step_memory).map_err(|e| FlagError {
            flag: "--step-memory",
            ..e
        })?;
        if !((1 << 20)..=(4 << 30)).contains(&step_memory) {
            return Err(flag_err(
                "--step-memory",
                &self.step_memory,
                "must be from 1MB to 4GB (wasm32 memories are at most 4 GiB)",
            ));
        }
        let step_disk = parse_size(&self.step_disk).map_err(|e| FlagError {
            flag: "--step-disk",
            ..e
        })?;
        if step_disk < (1 << 20) {
            return Err(flag_err(
                "--step-disk",
                &self.step_disk,
                "must be at least 1MB",
            ));
        }
        Ok((step_timeout, step_memory, step_disk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(parse_output("out").unwrap().kind, OutputKind::Local);
        assert_eq!(parse_output("-").unwrap().dest.as_deref(), Some("-"));
        let o = parse_output("type=oci,dest=x.tar,compression=zstd,compression-level=3").unwrap();
        assert_eq!(o.attrs.get("compression").map(String::as_str), Some("zstd"));
        assert!(parse_output("type=oci,tar=false,dest=dir").is_ok());
        assert!(parse_output("type=nope,dest=x")
            .unwrap_err()
            .reason
            .to_string()
            .contains("unknown output type"));
        assert_eq!(
            parse_output("type=local").unwrap_err().reason,
            FlagReason::Output(export::SpecError::NoDest {
                kind: OutputKind::Local,
                what: "<directory>"
            })
        );
        assert_eq!(
            parse_output("type=oci,dest=x,compression=lz4")
                .unwrap_err()
                .reason,
            FlagReason::Output(export::SpecError::Value {
                key: "compression",
                allowed: "gzip, zstd or uncompressed"
            })
        );
        assert_eq!(
            parse_output("type=oci,dest=x,compression-level=12")
                .unwrap_err()
                .reason,
            FlagReason::Output(export::SpecError::GzipLevel)
        );
        assert!(parse_output("type=oci,dest=x,colour=red").is_err());
        assert!(parse_output("dest=x").is_err());
        // Several names in one quoted field, as buildx reads CSV.
        let o = parse_output(r#"type=image,"name=r/a:1,r/a:2",push=true"#).unwrap();
        assert_eq!(o.attrs["name"], "r/a:1,r/a:2");
        assert_eq!(o.attrs["push"], "true");
        assert_eq!(
            parse_output("type=registry,registry.insecure=maybe")
                .unwrap_err()
                .reason,
            FlagReason::Output(export::SpecError::Value {
                key: "registry.insecure",
                allowed: "true or false"
            })
        );
        // Each kind takes its own keys, and says which.
        let e = parse_output("type=local,dest=d,oci-mediatypes=false").unwrap_err();
        assert!(
            e.reason.to_string()
                .contains("type=local takes no key \"oci-mediatypes\" (it takes: type, dest, compression, compression-level)"),
            "{}",
            e.reason
        );
        assert!(parse_output("type=docker,dest=x,tar=false").is_err());
        assert!(parse_output("type=oci,dest=d,tar=false,name=x").is_err());
        assert!(parse_output("type=image,name=x,tar=false").is_err());
        assert!(parse_output("type=tar,dest=x,compression=zstd").is_ok());
    }

    #[test]
    fn caches() {
        let c = parse_cache("r.example/cache:1", false).unwrap();
        assert_eq!(
            (c.kind, c.attr("ref")),
            (CacheKind::Registry, Some("r.example/cache:1"))
        );
        let c = parse_cache("type=local,dest=d,mode=max,compression=zstd", true).unwrap();
        assert_eq!((c.kind, c.attr("mode")), (CacheKind::Local, Some("max")));
        let reason =
            |spec: &str, export: bool| parse_cache(spec, export).unwrap_err().reason.to_string();
        // A key of the other direction says which flag it belongs to.
        assert_eq!(
            reason("type=local,dest=d,verify=true", true),
            "verify= is for --cache-from, not --cache-to"
        );
        assert_eq!(
            reason("type=local,src=d,mode=max", false),
            "mode= is for --cache-to, not --cache-from"
        );
        assert!(reason("type=local,src=d,colour=red", false).contains("type=local takes no key \"colour\" in --cache-from (it takes: type, src, tag, digest, verify)"));
        assert_eq!(
            reason("type=local", true),
            "type=local needs dest=<directory>"
        );
        assert_eq!(
            reason("type=local", false),
            "type=local needs src=<directory>"
        );
        assert_eq!(
            reason("type=local,dest=d,mode=all", true),
            "mode must be min or max"
        );
        assert_eq!(
            reason("type=s3,bucket=b", true),
            "unknown cache type \"s3\" (use local, registry or inline)"
        );
        assert_eq!(
            reason("mode=max", true),
            "type= is required (local, registry or inline)"
        );
        assert!(
            reason("type=local,src=d,verify=yes", false).contains("verify must be true or false")
        );
        if cfg!(feature = "registry") {
            assert_eq!(
                reason("type=registry,mode=max", true),
                "type=registry needs ref=<image reference>"
            );
            assert!(reason("type=inline", false).contains("type=inline is for --cache-to"));
            assert!(parse_cache("type=inline", true).is_ok());
            assert!(reason("type=registry,ref=r/c,image-manifest=false", true)
                .contains("not supported"));
        }
    }

    fn args(extra: &[&str]) -> BuildArgs {
        let mut all = vec!["wbuild"];
        all.extend_from_slice(extra);
        Cli::try_parse_from(all).unwrap().build
    }

    #[test]
    fn push_pull_and_contexts() {
        // --push is type=registry, and needs a name.
        let r = args(&["-t", "127.0.0.1:5000/a:1", "--push", "."])
            .into_request()
            .unwrap();
        assert_eq!(r.outputs[0].kind, OutputKind::Registry);
        let e = args(&["--push", "."]).into_request().unwrap_err();
        assert!(
            e.reason.to_string().contains("a name is needed to push"),
            "{e}"
        );
        // --push on an image output sets push=true on it.
        let r = args(&["-o", "type=image,name=r/a:1", "--push", "."])
            .into_request()
            .unwrap();
        assert_eq!(r.outputs.len(), 1);
        assert_eq!(r.outputs[0].attrs["push"], "true");
        assert!(args(&["-o", "type=image,name=Bad/Name", "."])
            .into_request()
            .is_err());
        // --pull, --pull=false, neither.
        assert_eq!(
            args(&["--pull", "."]).into_request().unwrap().pull,
            Some(true)
        );
        assert_eq!(
            args(&["--pull=false", "."]).into_request().unwrap().pull,
            Some(false)
        );
        assert_eq!(args(&["."]).into_request().unwrap().pull, None);
        assert!(args(&["--pull=maybe", "."]).into_request().is_err());
        // --build-context NAME=VALUE.
        let r = args(&["--build-context", "Base=docker-image://x:1", "."])
            .into_request()
            .unwrap();
        assert_eq!(r.build_contexts["base"], "docker-image://x:1");
        assert!(args(&["--build-context", "nothing", "."])
            .into_request()
            .is_err());
    }

    #[test]
    fn secrets() {
        std::env::set_var("WBUILD_TEST_SECRET_ENV", "v");
        assert_eq!(
            parse_secret("id=a,env=WBUILD_TEST_SECRET_ENV")
                .unwrap()
                .source,
            SecretSource::Env("WBUILD_TEST_SECRET_ENV".into())
        );
        assert_eq!(
            parse_secret("type=env,id=WBUILD_TEST_SECRET_ENV")
                .unwrap()
                .source,
            SecretSource::Env("WBUILD_TEST_SECRET_ENV".into())
        );
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tok");
        std::fs::write(&f, "x").unwrap();
        let s = parse_secret(&format!("src={}", f.display())).unwrap();
        assert_eq!(s.id, "tok");
        assert!(parse_secret("id=a,src=/definitely/not/here")
            .unwrap_err()
            .reason
            .to_string()
            .contains("not found"));
        assert!(parse_secret("id=a,colour=red").is_err());
        assert!(parse_secret("src=").is_err());
    }

    #[test]
    fn build_args() {
        std::env::set_var("WBUILD_TEST_BA", "fromenv");
        let m = parse_build_args(&[
            "A=1".into(),
            "B=".into(),
            "WBUILD_TEST_BA".into(),
            "WBUILD_TEST_UNSET_X".into(),
        ])
        .unwrap();
        assert_eq!(m.get("A").map(String::as_str), Some("1"));
        assert_eq!(m.get("B").map(String::as_str), Some(""));
        assert_eq!(m.get("WBUILD_TEST_BA").map(String::as_str), Some("fromenv"));
        assert!(!m.contains_key("WBUILD_TEST_UNSET_X"));
        assert!(parse_build_args(&["=x".into()]).is_err());
    }

    #[test]
    fn sizes_and_filters() {
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert_eq!(
            parse_filters(&["until=24h".into()]).unwrap().0,
            Some(std::time::Duration::from_secs(86400))
        );
        assert!(parse_filters(&["label=x".into()]).is_err());
        assert!(parse_filters(&["until=soon".into()]).is_err());
        assert_eq!(
            parse_filters(&["type=exec.cachemount".into()]).unwrap().1,
            ["type==exec.cachemount"]
        );
        assert!(parse_filters(&["type=nope".into()]).is_err());
    }

    #[test]
    fn tags() {
        for ok in [
            "demo",
            "demo:1.0",
            "localhost:5000/a/b:latest",
            "r.io/x_y/z-w:v1",
            "a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            validate_tag(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "Demo", "demo:", "demo:.x", "a//b", "-a", "a@sha256:xyz"] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_defaults() {
        let r = BuildArgs::default();
        let mut r = r;
        r.progress = "auto".into();
        r.step_timeout = "1h".into();
        r.step_memory = "2GB".into();
        r.step_disk = "10GB".into();
        let req = r.into_request().unwrap();
        assert_eq!(req.context, PathBuf::from("."));
        assert_eq!(req.step_disk, 10 << 30);
        assert_eq!(req.dockerfile, PathBuf::from("./Dockerfile"));
        let bad = BuildArgs {
            progress: "fancy".into(),
            step_timeout: "1h".into(),
            step_memory: "2GB".into(),
            step_disk: "10GB".into(),
            ..Default::default()
        };
        assert_eq!(bad.into_request().unwrap_err().flag, "--progress");
    }
}
