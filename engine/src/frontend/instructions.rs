//! Typed instructions: every flag and argument of every Dockerfile
//! instruction checked and given a type, grouped into build stages.
//!
//! Values stay as written (quotes and `$VAR` included): expansion needs the
//! stage's environment, which the `plan` module owns. What can be checked
//! without it (flag names, argument counts, forms, mount keys) is checked
//! here, with the line and column of the offending text.

use std::time::Duration;

use super::error::{suggest, FrontendError};
use super::parser::{self, Arg, Ast, Heredoc, Node};

/// A whole Dockerfile: the ARGs before the first FROM and the stages.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Dockerfile {
    /// `ARG` instructions before the first `FROM` (visible to FROM lines).
    pub meta_args: Vec<Located<Vec<ArgDecl>>>,
    pub stages: Vec<Stage>,
    /// Parser directives (`syntax`, `escape`, `check`).
    pub directives: Vec<parser::Directive>,
    pub escape: char,
    pub warnings: Vec<String>,
}

/// A value with the lines it came from and its text as written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Located<T> {
    pub start_line: usize,
    pub end_line: usize,
    /// The instruction's text, continuation lines joined.
    pub original: String,
    pub value: T,
}

/// One build stage: a FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stage {
    /// The `AS` name, lower-cased; `None` for an unnamed stage.
    pub name: Option<String>,
    /// The base image or stage, as written (may hold `$ARG`s).
    pub base: String,
    /// `--platform`, as written.
    pub platform: Option<String>,
    pub start_line: usize,
    pub original: String,
    pub commands: Vec<Located<Instruction>>,
}

/// A typed instruction (FROM starts a [`Stage`] instead).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell {
        shell: Vec<String>,
    },
    Env {
        pairs: Vec<KeyValue>,
    },
    Label {
        pairs: Vec<KeyValue>,
    },
    Arg {
        args: Vec<ArgDecl>,
    },
    Add(Add),
    Copy(Copy),
    Workdir {
        path: String,
    },
    User {
        user: String,
    },
    Volume {
        paths: Vec<String>,
    },
    Expose {
        ports: Vec<String>,
    },
    #[serde(rename = "STOPSIGNAL")]
    StopSignal {
        signal: String,
    },
    Maintainer {
        name: String,
    },
    Healthcheck(Healthcheck),
    Onbuild(Onbuild),
}

impl Instruction {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell { .. } => "SHELL",
            Instruction::Env { .. } => "ENV",
            Instruction::Label { .. } => "LABEL",
            Instruction::Arg { .. } => "ARG",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Workdir { .. } => "WORKDIR",
            Instruction::User { .. } => "USER",
            Instruction::Volume { .. } => "VOLUME",
            Instruction::Expose { .. } => "EXPOSE",
            Instruction::StopSignal { .. } => "STOPSIGNAL",
            Instruction::Maintainer { .. } => "MAINTAINER",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
        }
    }
}

/// A command in exec form (`["a", "b"]`) or shell form (`a b`, run through
/// SHELL).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommandLine {
    pub args: Vec<String>,
    /// Shell form: the one argument is given to SHELL (default `/bin/sh -c`).
    pub shell_form: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Run {
    pub command: CommandLine,
    /// `--mount` specs, parsed; values may still hold `$VAR`s.
    pub mounts: Vec<MountSpec>,
    /// `--network` (not expanded, as in BuildKit).
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
    /// Heredocs on the line, in order (`RUN <<EOF`).
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

impl NetworkMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => NetworkMode::Default,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => return None,
        })
    }
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

impl SecurityMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sandbox" => SecurityMode::Sandbox,
            "insecure" => SecurityMode::Insecure,
            _ => return None,
        })
    }
}

/// The kinds of `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub const NAMES: &'static [&'static str] = &["bind", "cache", "tmpfs", "secret", "ssh"];

    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount=` value.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct MountSpec {
    /// The value as written after `--mount=`.
    pub raw: String,
    pub mount_type: Option<MountType>,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub read_only: Option<bool>,
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub required: Option<bool>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `env=` of a secret mount.
    pub env: Option<String>,
    /// `size=` of a tmpfs mount, in bytes.
    pub size: Option<u64>,
}

impl MountSpec {
    /// The mount's type (`bind` when none was given).
    pub fn kind(&self) -> MountType {
        self.mount_type.unwrap_or(MountType::Bind)
    }

    /// Whether the guest may write: cache and tmpfs default to writable,
    /// the others to read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
            .unwrap_or(!matches!(self.kind(), MountType::Cache | MountType::Tmpfs))
    }
}

/// A COPY or ADD source: a path (or URL) or a heredoc.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Path(String),
    Heredoc(Heredoc),
}

/// What COPY and ADD share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileSources {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    /// The arguments were a JSON array.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Copy {
    #[serde(flatten)]
    pub files: FileSources,
    /// `--from=<stage|image|index>`.
    pub from: Option<String>,
    pub parents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Add {
    #[serde(flatten)]
    pub files: FileSources,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    /// `--unpack`: `None` lets ADD decide (local archives are unpacked).
    pub unpack: Option<bool>,
}

/// An ENV or LABEL pair, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of an ARG, with its default if given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Cmd {
        /// `["CMD", …]` for exec form, `["CMD-SHELL", cmd]` for shell form.
        test: Vec<String>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Onbuild {
    /// The trigger as written (what the image config stores).
    pub expression: String,
    /// The trigger, typed.
    pub trigger: Box<Instruction>,
}

/// Parses and types a whole Dockerfile.
pub fn parse_dockerfile(text: &str) -> Result<Dockerfile, FrontendError> {
    let ast = parser::parse(text)?;
    from_ast(&ast)
}

/// Types an already parsed file.
pub fn from_ast(ast: &Ast) -> Result<Dockerfile, FrontendError> {
    parser::check_known(ast)?;
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &ast.children {
        fn located<T>(node: &Node, value: T) -> Located<T> {
            Located {
                start_line: node.start_line,
                end_line: node.end_line,
                original: node.original.trim().to_string(),
                value,
            }
        }
        if node.command() == "from" {
            stages.push(parse_from(node)?);
            continue;
        }
        let instr = parse_instruction(node)?;
        match stages.last_mut() {
            Some(stage) => stage.commands.push(located(node, instr)),
            None => match instr {
                Instruction::Arg { args } => meta_args.push(located(node, args)),
                other => {
                    return Err(FrontendError::new(
                        node.start_line,
                        column_of(node, &node.keyword),
                        format!(
                            "{} before the first FROM: no build stage in current context",
                            other.keyword()
                        ),
                    )
                    .with_hint("only ARG may come before the first FROM"))
                }
            },
        }
    }
    if stages.is_empty() {
        let line = ast.children.last().map(|n| n.start_line).unwrap_or(1);
        return Err(
            FrontendError::new(line, 1, "the Dockerfile has no FROM instruction")
                .with_hint("start a build stage with FROM <image> (or FROM scratch)"),
        );
    }
    let mut warnings = ast.warnings.clone();
    if let Some(d) = ast.directives.iter().find(|d| d.name == "syntax") {
        let image = d.value.split([':', '@']).next().unwrap_or("");
        if !matches!(image, "docker/dockerfile" | "docker.io/docker/dockerfile") {
            warnings.push(format!(
                "line {}: syntax={} is ignored: wbuild reads Dockerfiles with its own frontend (docker/dockerfile:1 syntax)",
                d.line, d.value
            ));
        }
    }
    Ok(Dockerfile {
        meta_args,
        stages,
        directives: ast.directives.clone(),
        escape: ast.escape,
        warnings,
    })
}

/// The 1-based column where `needle` first appears in the node's text.
fn column_of(node: &Node, needle: &str) -> usize {
    node.original
        .find(needle)
        .map(|p| node.original[..p].chars().count() + 1)
        .unwrap_or(1)
}

fn err(node: &Node, message: impl Into<String>) -> FrontendError {
    FrontendError::new(node.start_line, column_of(node, &node.keyword), message)
}

fn parse_from(node: &Node) -> Result<Stage, FrontendError> {
    let mut flags = Flags::new(node, &[("platform", FlagKind::String)])?;
    let platform = flags.string("platform");
    let args = node.values();
    let name = match args.len() {
        1 => None,
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_ascii_lowercase();
            if !valid_stage_name(&name) {
                return Err(FrontendError::new(
                    node.start_line,
                    column_of(node, &args[2]),
                    format!("invalid name for build stage: {:?}, name can't start with a number or contain symbols", args[2]),
                ));
            }
            Some(name)
        }
        0 => {
            return Err(err(node, "FROM requires at least one argument")
                .with_hint("write FROM <image> [AS <name>]"))
        }
        _ => {
            return Err(err(node, "FROM requires either one or three arguments")
                .with_hint("write FROM <image> [AS <name>]"))
        }
    };
    Ok(Stage {
        name,
        base: args[0].clone(),
        platform,
        start_line: node.start_line,
        original: node.original.trim().to_string(),
        commands: Vec::new(),
    })
}

/// `^[a-z][a-z0-9-_\.]*$`
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

fn command_line(node: &Node) -> CommandLine {
    CommandLine {
        args: node.values(),
        shell_form: !node.json,
    }
}

/// Refuses any flag (`--x`) on an instruction that takes none.
fn no_flags(node: &Node) -> Result<(), FrontendError> {
    Flags::new(node, &[]).map(|_| ())
}

fn parse_instruction(node: &Node) -> Result<Instruction, FrontendError> {
    let cmd = node.command();
    let args = node.values();
    let exactly_one = |node: &Node, what: &str| -> Result<String, FrontendError> {
        no_flags(node)?;
        if args.len() != 1 {
            return Err(err(
                node,
                format!(
                    "{} requires exactly one argument",
                    node.keyword.to_ascii_uppercase()
                ),
            )
            .with_hint(format!(
                "write {} <{what}>",
                node.keyword.to_ascii_uppercase()
            )));
        }
        Ok(args[0].clone())
    };
    Ok(match cmd.as_str() {
        "run" => parse_run(node, &args)?,
        "cmd" => {
            no_flags(node)?;
            Instruction::Cmd(command_line(node))
        }
        "entrypoint" => {
            no_flags(node)?;
            Instruction::Entrypoint(command_line(node))
        }
        "shell" => parse_shell(node, args)?,
        "env" | "label" => parse_key_values(node, &cmd, &args)?,
        "arg" => parse_arg(node, &args)?,
        "add" => parse_add(node)?,
        "copy" => parse_copy(node)?,
        "workdir" => Instruction::Workdir {
            path: exactly_one(node, "path")?,
        },
        "user" => Instruction::User {
            user: exactly_one(node, "user[:group]")?,
        },
        "stopsignal" => Instruction::StopSignal {
            signal: exactly_one(node, "signal")?,
        },
        "maintainer" => Instruction::Maintainer {
            name: exactly_one(node, "name")?,
        },
        "volume" => parse_volume(node, &args)?,
        "expose" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err(err(node, "EXPOSE requires at least one argument")
                    .with_hint("write EXPOSE <port>[/<protocol>]"));
            }
            Instruction::Expose { ports: args }
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(node)?),
        "onbuild" => parse_onbuild(node)?,
        other => {
            return Err(err(
                node,
                format!("unknown instruction {:?}", other.to_ascii_uppercase()),
            ))
        }
    })
}

/// RUN [--mount=…] [--network=…] [--security=…] <command>.
fn parse_run(node: &Node, args: &[String]) -> Result<Instruction, FrontendError> {
    let mut flags = Flags::new(
        node,
        &[
            ("mount", FlagKind::Strings),
            ("network", FlagKind::String),
            ("security", FlagKind::String),
        ],
    )?;
    let mut mounts = Vec::new();
    for raw in flags.strings("mount") {
        let spec = parse_mount(&raw, None).map_err(|m| {
            FrontendError::new(
                node.start_line,
                column_of(node, "--mount"),
                format!("--mount={raw}: {m}"),
            )
        })?;
        mounts.push(spec);
    }
    let network = match flags.string("network") {
        None => None,
        Some(n) => Some(NetworkMode::parse(&n).ok_or_else(|| {
            FrontendError::new(
                node.start_line,
                column_of(node, "--network"),
                format!("unsupported network mode {n:?}"),
            )
            .with_hint("use --network=default, none or host")
        })?),
    };
    let security = match flags.string("security") {
        None => None,
        Some(s) => Some(SecurityMode::parse(&s).ok_or_else(|| {
            FrontendError::new(
                node.start_line,
                column_of(node, "--security"),
                format!("unsupported security mode {s:?}"),
            )
            .with_hint("use --security=sandbox or insecure")
        })?),
    };
    if args.is_empty() {
        return Err(
            err(node, "RUN requires at least one argument").with_hint("write RUN <command>")
        );
    }
    Ok(Instruction::Run(Run {
        command: command_line(node),
        mounts,
        network,
        security,
        heredocs: node.heredocs.clone(),
    }))
}

/// ENV and LABEL: `key=value` pairs (the parser gave them in threes).
fn parse_key_values(node: &Node, cmd: &str, args: &[String]) -> Result<Instruction, FrontendError> {
    no_flags(node)?;
    let upper = cmd.to_ascii_uppercase();
    if args.is_empty() {
        return Err(err(node, format!("{upper} requires at least one argument"))
            .with_hint(format!("write {upper} name=value")));
    }
    let mut pairs = Vec::new();
    for chunk in args.chunks(3) {
        if chunk[0].is_empty() {
            return Err(err(node, format!("{upper} names can not be blank")));
        }
        pairs.push(KeyValue {
            key: chunk[0].clone(),
            value: chunk.get(1).cloned().unwrap_or_default(),
        });
    }
    Ok(if cmd == "env" {
        Instruction::Env { pairs }
    } else {
        Instruction::Label { pairs }
    })
}

/// ARG name[=default] ….
fn parse_arg(node: &Node, args: &[String]) -> Result<Instruction, FrontendError> {
    no_flags(node)?;
    if args.is_empty() {
        return Err(
            err(node, "ARG requires at least one argument").with_hint("write ARG name[=default]")
        );
    }
    let mut decls = Vec::new();
    for a in args {
        let (name, default) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if name.is_empty() {
            return Err(err(node, "ARG names can not be blank"));
        }
        decls.push(ArgDecl { name, default });
    }
    Ok(Instruction::Arg { args: decls })
}

/// ADD [--checksum] [--keep-git-dir] [--unpack] and the file flags.
fn parse_add(node: &Node) -> Result<Instruction, FrontendError> {
    let mut flags = Flags::new(
        node,
        &with_file_flags(&[
            ("checksum", FlagKind::String),
            ("keep-git-dir", FlagKind::Bool),
            ("unpack", FlagKind::Bool),
        ]),
    )?;
    let files = file_sources(node, &mut flags)?;
    Ok(Instruction::Add(Add {
        files,
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        unpack: flags.bool("unpack"),
    }))
}

/// COPY [--from] [--parents] and the file flags.
fn parse_copy(node: &Node) -> Result<Instruction, FrontendError> {
    let mut flags = Flags::new(
        node,
        &with_file_flags(&[("from", FlagKind::String), ("parents", FlagKind::Bool)]),
    )?;
    let files = file_sources(node, &mut flags)?;
    Ok(Instruction::Copy(Copy {
        files,
        from: flags.string("from"),
        parents: flags.bool("parents").unwrap_or(false),
    }))
}

/// SHELL ["executable", "parameters"].
fn parse_shell(node: &Node, args: Vec<String>) -> Result<Instruction, FrontendError> {
    no_flags(node)?;
    if !node.json && !args.is_empty() {
        return Err(err(node, "SHELL requires the arguments to be in JSON form")
            .with_hint("write SHELL [\"executable\", \"parameters\"]"));
    }
    if args.is_empty() {
        return Err(err(node, "SHELL requires at least one argument"));
    }
    Ok(Instruction::Shell { shell: args })
}

/// VOLUME /path ….
fn parse_volume(node: &Node, args: &[String]) -> Result<Instruction, FrontendError> {
    no_flags(node)?;
    if args.is_empty() {
        return Err(
            err(node, "VOLUME requires at least one argument").with_hint("write VOLUME /path")
        );
    }
    let mut paths = Vec::new();
    for v in args {
        let v = v.trim();
        if v.is_empty() {
            return Err(err(node, "VOLUME specified can not be an empty string"));
        }
        paths.push(v.to_string());
    }
    Ok(Instruction::Volume { paths })
}

/// ONBUILD <instruction>: any but ONBUILD, MAINTAINER and FROM.
fn parse_onbuild(node: &Node) -> Result<Instruction, FrontendError> {
    no_flags(node)?;
    let Some(Arg::Sub(sub)) = node.args.first() else {
        return Err(err(node, "ONBUILD requires at least one argument")
            .with_hint("write ONBUILD <instruction>"));
    };
    let trigger = sub.command().to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err(err(
                node,
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ))
        }
        "MAINTAINER" | "FROM" => {
            return Err(err(
                node,
                format!("{trigger} isn't allowed as an ONBUILD trigger"),
            ))
        }
        _ => {}
    }
    let mut sub = (**sub).clone();
    sub.start_line = node.start_line;
    let typed = parse_instruction(&sub)?;
    let expression = strip_keyword(node.original.trim_start(), &node.keyword)
        .trim_start()
        .to_string();
    Ok(Instruction::Onbuild(Onbuild {
        expression,
        trigger: Box::new(typed),
    }))
}

fn strip_keyword<'a>(s: &'a str, keyword: &str) -> &'a str {
    match s.get(..keyword.len()) {
        Some(head) if head.eq_ignore_ascii_case(keyword) => &s[keyword.len()..],
        _ => s,
    }
}

/// The flags COPY and ADD share, read by [`file_sources`], plus `own`.
fn with_file_flags(own: &[(&'static str, FlagKind)]) -> Vec<(&'static str, FlagKind)> {
    let mut all = vec![
        ("chown", FlagKind::String),
        ("chmod", FlagKind::String),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::Strings),
    ];
    all.extend_from_slice(own);
    all
}

fn file_sources(node: &Node, flags: &mut Flags) -> Result<FileSources, FrontendError> {
    let upper = node.keyword.to_ascii_uppercase();
    let args = node.values();
    if args.len() < 2 {
        return Err(err(
            node,
            format!("{upper} requires at least two arguments, but only {} was provided. Destination could not be determined.", if args.is_empty() { "none" } else { "one" }),
        )
        .with_hint(format!("write {upper} <source>... <destination>")));
    }
    let (srcs, dest) = args.split_at(args.len() - 1);
    let dest = dest[0].clone();
    let mut sources = Vec::new();
    let mut docs = node.heredocs.iter();
    let heredoc_ok = !node.json && !node.heredocs.is_empty();
    if heredoc_ok && parser::parse_heredoc(&dest).ok().flatten().is_some() {
        return Err(err(node, format!("{upper} destination can't be a heredoc")));
    }
    for s in srcs {
        match heredoc_ok
            .then(|| parser::parse_heredoc(s).ok().flatten())
            .flatten()
        {
            Some(marker) => {
                let doc = docs
                    .find(|d| d.name == marker.name)
                    .cloned()
                    .ok_or_else(|| err(node, format!("heredoc {:?} has no body", marker.name)))?;
                sources.push(Source::Heredoc(doc));
            }
            None => sources.push(Source::Path(s.clone())),
        }
    }
    Ok(FileSources {
        sources,
        dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        exclude: flags.strings("exclude"),
        json: node.json,
    })
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, FrontendError> {
    let args = node.values();
    let Some(typ) = args.first() else {
        return Err(err(node, "HEALTHCHECK requires at least one argument")
            .with_hint("write HEALTHCHECK CMD <command> or HEALTHCHECK NONE"));
    };
    let typ = typ.to_ascii_uppercase();
    let rest = &args[1..];
    if typ == "NONE" {
        Flags::new(node, &[])?;
        if !rest.is_empty() {
            return Err(err(node, "HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(Healthcheck::None);
    }
    let mut flags = Flags::new(
        node,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    if typ != "CMD" {
        return Err(err(
            node,
            format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"),
        ));
    }
    if rest.is_empty() {
        return Err(err(node, "Missing command after HEALTHCHECK CMD"));
    }
    let mut test = vec![if node.json {
        "CMD".to_string()
    } else {
        "CMD-SHELL".to_string()
    }];
    test.extend(rest.iter().cloned());
    let mut dur = |name: &str| -> Result<Option<Duration>, FrontendError> {
        let Some(v) = flags.string(name) else {
            return Ok(None);
        };
        let d = parse_go_duration(&v).map_err(|m| {
            FrontendError::new(
                node.start_line,
                column_of(node, &format!("--{name}")),
                format!("--{name}={v}: {m}"),
            )
            .with_hint("write a duration such as 30s, 1m30s or 500ms")
        })?;
        if !d.is_zero() && d < Duration::from_millis(1) {
            return Err(FrontendError::new(
                node.start_line,
                column_of(node, &format!("--{name}")),
                format!("Interval {name:?} cannot be less than 1ms"),
            ));
        }
        Ok(Some(d))
    };
    let interval = dur("interval")?;
    let timeout = dur("timeout")?;
    let start_period = dur("start-period")?;
    let start_interval = dur("start-interval")?;
    let retries = match flags.string("retries") {
        None => None,
        Some(r) => Some(r.parse::<u32>().map_err(|_| {
            FrontendError::new(
                node.start_line,
                column_of(node, "--retries"),
                format!("--retries={r}: not a whole number"),
            )
            .with_hint("write --retries=3")
        })?),
    };
    Ok(Healthcheck::Cmd {
        test,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    })
}

/// Why a text is not a Go duration (`time.ParseDuration`'s errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("negative duration {0:?}")]
    Negative(String),
    #[error("missing unit in duration {0:?}")]
    NoUnit(String),
    #[error("unknown unit {unit:?} in duration {text:?}")]
    Unit { unit: String, text: String },
    #[error("duration {0:?} is too long")]
    TooLong(String),
}

/// Go's `time.ParseDuration`: `300ms`, `1.5h`, `2h45m`, `0`.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Invalid(s.to_string());
    let t = s.strip_prefix('+').unwrap_or(s);
    if t.starts_with('-') {
        return Err(DurationError::Negative(s.to_string()));
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .count();
        if num_len == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .chars()
            .take_while(|c| !(c.is_ascii_digit() || *c == '.'))
            .map(char::len_utf8)
            .sum();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(DurationError::NoUnit(s.to_string())),
            _ => {
                return Err(DurationError::Unit {
                    unit: unit.to_string(),
                    text: s.to_string(),
                })
            }
        };
        total += num * nanos;
    }
    if total > u64::MAX as f64 {
        return Err(DurationError::TooLong(s.to_string()));
    }
    Ok(Duration::from_nanos(total as u64))
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

/// BuildKit's BFlags: `--name=value` or (bool) `--name`.
struct Flags {
    values: Vec<(String, Vec<String>)>,
}

impl Flags {
    fn new(node: &Node, known: &[(&str, FlagKind)]) -> Result<Flags, FrontendError> {
        let upper = node.keyword.to_ascii_uppercase();
        let mut values: Vec<(String, Vec<String>)> = Vec::new();
        for raw in &node.flags {
            let at = |msg: String| FrontendError::new(node.start_line, column_of(node, raw), msg);
            let Some(body) = raw.strip_prefix("--") else {
                return Err(at(format!("flag should start with --: {raw}")));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(_, kind)) = known.iter().find(|(n, _)| *n == name) else {
                let mut e = at(format!("unknown flag --{name} for {upper}"));
                let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                if let Some(s) = suggest(name, &names) {
                    e = e.with_hint(format!("did you mean --{s}?"));
                } else if names.is_empty() {
                    e = e.with_hint(format!("{upper} takes no flags"));
                } else {
                    e = e.with_hint(format!(
                        "{upper} takes {}",
                        names
                            .iter()
                            .map(|n| format!("--{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                return Err(e);
            };
            let existing = values.iter_mut().find(|(n, _)| n == name);
            if existing.is_some() && kind != FlagKind::Strings {
                return Err(at(format!("duplicate flag specified: --{name}")));
            }
            let v = match kind {
                FlagKind::Bool => match value {
                    None => "true".to_string(),
                    Some("") => return Err(at(format!("missing a value on flag: --{name}"))),
                    Some(v)
                        if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") =>
                    {
                        v.to_ascii_lowercase()
                    }
                    Some(v) => {
                        return Err(at(format!(
                            "expecting boolean value for flag --{name}, not: {v}"
                        )))
                    }
                },
                FlagKind::String | FlagKind::Strings => match value {
                    None => {
                        return Err(at(format!("missing a value on flag: --{name}"))
                            .with_hint(format!("write --{name}=<value>")))
                    }
                    Some(v) => v.to_string(),
                },
            };
            match existing {
                Some((_, vs)) => vs.push(v),
                None => values.push((name.to_string(), vec![v])),
            }
        }
        Ok(Flags { values })
    }

    fn take(&mut self, name: &str) -> Vec<String> {
        match self.values.iter().position(|(n, _)| n == name) {
            Some(p) => self.values.remove(p).1,
            None => Vec::new(),
        }
    }

    fn string(&mut self, name: &str) -> Option<String> {
        self.take(name).pop()
    }

    fn strings(&mut self, name: &str) -> Vec<String> {
        self.take(name)
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        self.take(name).pop().map(|v| v == "true")
    }
}

/// A CSV record Go's `encoding/csv` refuses (its messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("bare \" in non-quoted-field")]
    BareQuote,
    #[error("extraneous or missing \" in quoted-field")]
    Extraneous,
}

/// Reads one CSV record as Go's `encoding/csv` does (quotes, `""`).
fn go_csv_fields(s: &str) -> Result<Vec<String>, CsvError> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_field_start = true;
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                    match chars.peek() {
                        None | Some(',') => {}
                        Some(_) => return Err(CsvError::Extraneous),
                    }
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_field_start = true;
                continue;
            }
            '"' if at_field_start => in_quotes = true,
            '"' => return Err(CsvError::BareQuote),
            _ => cur.push(c),
        }
        at_field_start = false;
    }
    if in_quotes {
        return Err(CsvError::Extraneous);
    }
    fields.push(cur);
    Ok(fields)
}

/// A function that expands `$VAR`s in a mount value.
pub type Expander<'a> = &'a dyn Fn(&str) -> Result<String, crate::frontend::shell::ExpandError>;

/// Why a `--mount=` value is refused, in BuildKit's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountFlagError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(CsvError),
    #[error(transparent)]
    Expand(#[from] crate::frontend::shell::ExpandError),
    #[error("invalid field '{0}' must be a key=value pair")]
    NotAPair(String),
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    #[error("unexpected key '{key}' in '{field}'{}", did_you_mean(*.suggestion))]
    UnexpectedKey {
        key: String,
        field: String,
        suggestion: Option<&'static str>,
    },
    #[error("invalid value for {key}: {value}")]
    Bool { key: String, value: String },
    #[error("unsupported mount type {value:?}{}", did_you_mean(*.suggestion))]
    Type {
        value: String,
        suggestion: Option<&'static str>,
    },
    #[error("unsupported sharing value {0:?} (use shared, private or locked)")]
    Sharing(String),
    #[error("invalid value {value} for {key}")]
    Value { key: &'static str, value: String },
    #[error("{key} not allowed for \"{kind}\" type mounts")]
    NotAllowed {
        key: &'static str,
        kind: &'static str,
    },
    #[error("unexpected key 'required' for mount type '{0}'")]
    Required(&'static str),
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("invalid secret mount: one of id, target or env is required")]
    SecretUnnamed,
    #[error("both source and id can't be set")]
    SourceAndId,
}

fn did_you_mean(s: Option<&str>) -> String {
    s.map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// Parses a `--mount=` value. Without an expander, values holding `$` are
/// kept unchecked (they are checked again after expansion).
pub fn parse_mount(raw: &str, expand: Option<Expander>) -> Result<MountSpec, MountFlagError> {
    let fields = go_csv_fields(raw).map_err(MountFlagError::Csv)?;
    let mut m = MountSpec {
        raw: raw.to_string(),
        ..Default::default()
    };
    const KEYS: &[&str] = &[
        "type",
        "from",
        "source",
        "src",
        "target",
        "dst",
        "destination",
        "readonly",
        "ro",
        "readwrite",
        "rw",
        "id",
        "sharing",
        "required",
        "mode",
        "uid",
        "gid",
        "env",
        "size",
    ];
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => m.read_only = Some(true),
                "readwrite" | "rw" => m.read_only = Some(false),
                "required" => m.required = Some(true),
                _ => return Err(MountFlagError::NotAPair(field)),
            }
            continue;
        };
        let value = match expand {
            Some(f) => f(&value)?,
            None if value.contains('$') => {
                if key == "from" {
                    return Err(MountFlagError::FromVariable);
                }
                if !KEYS.contains(&key.as_str()) {
                    return Err(unexpected_key(&key, &field));
                }
                // Checked once the value is known.
                set_raw(&mut m, &key, value);
                continue;
            }
            None => value,
        };
        let parse_bool = |v: &str| match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Ok(true),
            "0" | "f" | "false" => Ok(false),
            _ => Err(MountFlagError::Bool {
                key: key.clone(),
                value: v.to_string(),
            }),
        };
        match key.as_str() {
            "type" => {
                m.mount_type =
                    Some(
                        MountType::parse(&value).ok_or_else(|| MountFlagError::Type {
                            suggestion: suggest(&value, MountType::NAMES),
                            value: value.clone(),
                        })?,
                    )
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => m.read_only = Some(parse_bool(&value)?),
            "readwrite" | "rw" => m.read_only = Some(!parse_bool(&value)?),
            "required" => m.required = Some(parse_bool(&value)?),
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(MountFlagError::Sharing(value)),
                })
            }
            "mode" => {
                m.mode =
                    Some(
                        u32::from_str_radix(&value, 8).map_err(|_| MountFlagError::Value {
                            key: "mode",
                            value: value.clone(),
                        })?,
                    )
            }
            "uid" => {
                m.uid = Some(value.parse().map_err(|_| MountFlagError::Value {
                    key: "uid",
                    value: value.clone(),
                })?)
            }
            "gid" => {
                m.gid = Some(value.parse().map_err(|_| MountFlagError::Value {
                    key: "gid",
                    value: value.clone(),
                })?)
            }
            "env" => m.env = Some(value),
            "size" => {
                m.size = Some(parse_size(&value).ok_or_else(|| MountFlagError::Value {
                    key: "size",
                    value: value.clone(),
                })?)
            }
            _ => return Err(unexpected_key(&key, &field)),
        }
    }
    check_mount(&m)?;
    Ok(m)
}

fn unexpected_key(key: &str, field: &str) -> MountFlagError {
    const KEYS: &[&str] = &[
        "type",
        "from",
        "source",
        "target",
        "readonly",
        "id",
        "sharing",
        "required",
        "mode",
        "uid",
        "gid",
        "src",
        "dst",
        "ro",
        "rw",
        "readwrite",
        "env",
        "size",
    ];
    MountFlagError::UnexpectedKey {
        key: key.to_string(),
        field: field.to_string(),
        suggestion: suggest(key, KEYS),
    }
}

fn set_raw(m: &mut MountSpec, key: &str, value: String) {
    match key {
        "source" | "src" => m.source = Some(value),
        "target" | "dst" | "destination" => m.target = Some(value),
        "id" => m.id = Some(value),
        "env" => m.env = Some(value),
        _ => {}
    }
}

/// `64m`, `1g`, `512k`, `4096` (bytes).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        't' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn check_mount(m: &MountSpec) -> Result<(), MountFlagError> {
    let kind = m.kind();
    let name = MountType::NAMES[kind as usize];
    let file_info = matches!(kind, MountType::Secret | MountType::Ssh | MountType::Cache);
    if m.mode.is_some() && !file_info {
        return Err(MountFlagError::NotAllowed {
            key: "mode",
            kind: name,
        });
    }
    if m.uid.is_some() && !file_info {
        return Err(MountFlagError::NotAllowed {
            key: "uid",
            kind: name,
        });
    }
    if m.gid.is_some() && !file_info {
        return Err(MountFlagError::NotAllowed {
            key: "gid",
            kind: name,
        });
    }
    if m.required.is_some() && !matches!(kind, MountType::Secret | MountType::Ssh) {
        return Err(MountFlagError::Required(name));
    }
    if m.sharing.is_some() && kind != MountType::Cache {
        return Err(MountFlagError::SharingNotCache(name));
    }
    if m.env.is_some() && kind != MountType::Secret {
        return Err(MountFlagError::NotAllowed {
            key: "env",
            kind: name,
        });
    }
    if m.size.is_some() && kind != MountType::Tmpfs {
        return Err(MountFlagError::NotAllowed {
            key: "size",
            kind: name,
        });
    }
    if kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountFlagError::SecretFrom);
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err(MountFlagError::SecretUnnamed);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountFlagError::SourceAndId);
        }
    }
    // No target is allowed: the step's WORKDIR is the target (see the
    // RUN plan), as BuildKit resolves it.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn df(s: &str) -> Dockerfile {
        parse_dockerfile(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn first(s: &str) -> Instruction {
        df(&format!("FROM scratch\n{s}\n")).stages[0].commands[0]
            .value
            .clone()
    }

    fn fails(s: &str) -> FrontendError {
        parse_dockerfile(&format!("FROM scratch\n{s}\n")).unwrap_err()
    }

    #[test]
    fn from_with_platform_and_name() {
        let d = df("ARG V=1\nFROM --platform=$BUILDPLATFORM img:$V AS Build\nFROM build\n");
        assert_eq!(d.meta_args[0].value[0].name, "V");
        assert_eq!(d.stages[0].name.as_deref(), Some("build"));
        assert_eq!(d.stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(d.stages[1].base, "build");
        assert!(parse_dockerfile("FROM a AS 1x\n").is_err());
        assert!(parse_dockerfile("FROM a b\n").is_err());
        assert!(parse_dockerfile("RUN x\n")
            .unwrap_err()
            .message
            .contains("before the first FROM"));
        assert!(parse_dockerfile("FROM --plaform=x a\n")
            .unwrap_err()
            .hint
            .unwrap()
            .contains("--platform"));
    }

    #[test]
    fn run_forms_and_flags() {
        match first("RUN --network=none --security=sandbox echo hi") {
            Instruction::Run(r) => {
                assert_eq!(
                    r.command,
                    CommandLine {
                        args: vec!["echo hi".into()],
                        shell_form: true
                    }
                );
                assert_eq!(r.network, Some(NetworkMode::None));
                assert_eq!(r.security, Some(SecurityMode::Sandbox));
            }
            other => panic!("{other:?}"),
        }
        match first("RUN [\"a\", \"b\"]") {
            Instruction::Run(r) => assert!(!r.command.shell_form),
            other => panic!("{other:?}"),
        }
        assert!(fails("RUN --network=bridge x").message.contains("network"));
        assert!(fails("RUN --network=$NET x").message.contains("network"));
        assert!(fails("RUN --security=root x").message.contains("security"));
        let e = fails("RUN --mout=type=cache,target=/x x");
        assert_eq!(e.hint.as_deref(), Some("did you mean --mount?"));
        assert_eq!((e.location.line, e.location.column), (2, 5));
    }

    #[test]
    fn mounts() {
        let m = parse_mount(
            "type=cache,target=/root/.cache,id=x,sharing=locked,mode=0755,uid=1,gid=2",
            None,
        )
        .unwrap();
        assert_eq!(m.kind(), MountType::Cache);
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert!(!m.is_read_only());
        let b = parse_mount("target=/src,source=.,from=build", None).unwrap();
        assert_eq!(b.kind(), MountType::Bind);
        assert!(b.is_read_only());
        assert!(!parse_mount("type=bind,target=/x,rw", None)
            .unwrap()
            .is_read_only());
        let s = parse_mount("type=secret,id=tok,env=TOKEN,required", None).unwrap();
        assert_eq!((s.env.as_deref(), s.required), (Some("TOKEN"), Some(true)));
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,size=64m", None)
                .unwrap()
                .size,
            Some(64 << 20)
        );
        let e = parse_mount("type=bnd,target=/x", None).unwrap_err();
        assert!(e.to_string().contains("did you mean bind"), "{e}");
        assert_eq!(
            parse_mount("type=bind,target=/x,sharing=locked", None),
            Err(MountFlagError::SharingNotCache("bind"))
        );
        assert_eq!(
            parse_mount("type=bind,target=/x,mode=0700", None),
            Err(MountFlagError::NotAllowed {
                key: "mode",
                kind: "bind"
            })
        );
        assert_eq!(
            parse_mount("type=secret,id=a,from=x", None),
            Err(MountFlagError::SecretFrom)
        );
        // No target is WORKDIR (the RUN plan resolves it), as in BuildKit.
        for m in ["type=cache", "type=bind", "from=x", "ro", "from=x,src=a,rw"] {
            assert!(parse_mount(m, None).is_ok(), "{m}");
        }
        assert!(parse_mount("type=cache,target=/x,colour=red", None).is_err());
        assert!(parse_mount("type=cache,target=$T", None).is_ok());
        assert!(parse_mount("type=bind,target=/x,from=$STAGE", None).is_err());
        assert!(parse_mount("\"type=bind,target=/x", None).is_err());
        let q = parse_mount("\"type=bind\",\"target=/a,b\"", None).unwrap();
        assert_eq!(q.target.as_deref(), Some("/a,b"));
    }

    #[test]
    fn copy_and_add_flags() {
        match first("COPY --from=build --chown=1:2 --chmod=0644 --link --parents --exclude=*.md --exclude=x a b /dst/") {
            Instruction::Copy(c) => {
                assert_eq!(c.from.as_deref(), Some("build"));
                assert_eq!(c.files.chown.as_deref(), Some("1:2"));
                assert_eq!(c.files.chmod.as_deref(), Some("0644"));
                assert!(c.files.link && c.parents);
                assert_eq!(c.files.exclude, vec!["*.md", "x"]);
                assert_eq!(c.files.dest, "/dst/");
                assert_eq!(c.files.sources, vec![Source::Path("a".into()), Source::Path("b".into())]);
            }
            other => panic!("{other:?}"),
        }
        match first(
            "ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tgz /y",
        ) {
            Instruction::Add(a) => {
                assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
                assert!(a.keep_git_dir);
                assert_eq!(a.unpack, Some(false));
            }
            other => panic!("{other:?}"),
        }
        assert!(fails("COPY a").message.contains("at least two arguments"));
        assert!(fails("COPY --link=maybe a b").message.contains("boolean"));
        assert!(fails("COPY --from a b").message.contains("missing a value"));
        assert!(fails("COPY --from=a --from=b a b")
            .message
            .contains("duplicate"));
        assert!(fails("ADD --parents a b")
            .message
            .contains("unknown flag --parents for ADD"));
    }

    #[test]
    fn copy_heredoc_sources() {
        match first("COPY <<A <<-B /dst/\nhello $X\nA\n\tworld\n\tB") {
            Instruction::Copy(c) => {
                assert_eq!(c.files.sources.len(), 2);
                match &c.files.sources[1] {
                    Source::Heredoc(h) => assert_eq!(h.body(), "world\n"),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(fails("COPY a <<EOF\nx\nEOF")
            .message
            .contains("destination can't be a heredoc"));
    }

    #[test]
    fn add_and_run_heredocs() {
        match first("ADD <<EOF /x\nbody\nEOF") {
            Instruction::Add(a) => match &a.files.sources[0] {
                Source::Heredoc(h) => assert_eq!(h.content, "body\n"),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        match first("RUN 3<<IN <<-'SCRIPT' sh\nin\nIN\n\techo $HOME\n\tSCRIPT") {
            Instruction::Run(r) => {
                assert_eq!(r.heredocs.len(), 2);
                assert_eq!(r.heredocs[0].file_descriptor, 3);
                assert!(!r.heredocs[1].expand);
                assert_eq!(r.heredocs[1].body(), "echo $HOME\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_syntax_directive_warns() {
        let d = df("# syntax=example.com/frontend\nFROM scratch\n");
        assert!(d.warnings[0].contains("is ignored"));
        assert!(df("# syntax=docker/dockerfile:1.7\nFROM scratch\n")
            .warnings
            .is_empty());
    }

    #[test]
    fn env_label_arg() {
        assert_eq!(
            first("ENV a=1 b=\"2 3\""),
            Instruction::Env {
                pairs: vec![
                    KeyValue {
                        key: "a".into(),
                        value: "1".into()
                    },
                    KeyValue {
                        key: "b".into(),
                        value: "\"2 3\"".into()
                    }
                ]
            }
        );
        assert_eq!(
            first("LABEL k v w"),
            Instruction::Label {
                pairs: vec![KeyValue {
                    key: "k".into(),
                    value: "v w".into()
                }]
            }
        );
        assert_eq!(
            first("ARG a b=2"),
            Instruction::Arg {
                args: vec![
                    ArgDecl {
                        name: "a".into(),
                        default: None
                    },
                    ArgDecl {
                        name: "b".into(),
                        default: Some("2".into())
                    }
                ]
            }
        );
        assert!(fails("ARG =x").message.contains("blank"));
        assert!(fails("ENV").message.contains("at least one argument"));
        assert!(fails("ENV --x=1 a=b").message.contains("unknown flag"));
    }

    #[test]
    fn single_argument_instructions() {
        assert_eq!(
            first("WORKDIR /app"),
            Instruction::Workdir {
                path: "/app".into()
            }
        );
        assert_eq!(
            first("USER 1000:1000"),
            Instruction::User {
                user: "1000:1000".into()
            }
        );
        assert_eq!(
            first("STOPSIGNAL SIGTERM"),
            Instruction::StopSignal {
                signal: "SIGTERM".into()
            }
        );
        assert_eq!(
            first("MAINTAINER me <m@x>"),
            Instruction::Maintainer {
                name: "me <m@x>".into()
            }
        );
        assert_eq!(
            first("VOLUME [\"/a\", \"/b\"]"),
            Instruction::Volume {
                paths: vec!["/a".into(), "/b".into()]
            }
        );
        assert_eq!(
            first("EXPOSE 80/tcp 53/udp"),
            Instruction::Expose {
                ports: vec!["80/tcp".into(), "53/udp".into()]
            }
        );
        assert!(fails("WORKDIR").message.contains("exactly one"));
        assert!(fails("VOLUME [\"\"]").message.contains("empty"));
    }

    #[test]
    fn cmd_entrypoint_shell() {
        assert_eq!(
            first("CMD [\"a\"]"),
            Instruction::Cmd(CommandLine {
                args: vec!["a".into()],
                shell_form: false
            })
        );
        assert_eq!(
            first("ENTRYPOINT a b"),
            Instruction::Entrypoint(CommandLine {
                args: vec!["a b".into()],
                shell_form: true
            })
        );
        assert_eq!(
            first("SHELL [\"/bin/bash\", \"-c\"]"),
            Instruction::Shell {
                shell: vec!["/bin/bash".into(), "-c".into()]
            }
        );
        assert!(fails("SHELL /bin/bash -c").message.contains("JSON"));
    }

    #[test]
    fn healthcheck() {
        assert_eq!(
            first("HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck::None)
        );
        match first("HEALTHCHECK --interval=5s --timeout=1m30s --start-period=0s --start-interval=500ms --retries=3 CMD curl x") {
            Instruction::Healthcheck(Healthcheck::Cmd { test, interval, timeout, start_interval, retries, .. }) => {
                assert_eq!(test, vec!["CMD-SHELL", "curl x"]);
                assert_eq!(interval, Some(Duration::from_secs(5)));
                assert_eq!(timeout, Some(Duration::from_secs(90)));
                assert_eq!(start_interval, Some(Duration::from_millis(500)));
                assert_eq!(retries, Some(3));
            }
            other => panic!("{other:?}"),
        }
        assert!(fails("HEALTHCHECK CONNECT TCP 7000")
            .message
            .contains("Unknown type"));
        assert!(fails("HEALTHCHECK --interval=5 CMD x")
            .message
            .contains("--interval"));
        assert!(fails("HEALTHCHECK NONE x").message.contains("no arguments"));
        assert!(fails("HEALTHCHECK CMD").message.contains("Missing command"));
    }

    #[test]
    fn onbuild() {
        match first("ONBUILD RUN echo hi") {
            Instruction::Onbuild(o) => {
                assert_eq!(o.expression, "RUN echo hi");
                assert!(matches!(*o.trigger, Instruction::Run(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(fails("ONBUILD ONBUILD RUN x").message.contains("Chaining"));
        assert!(fails("ONBUILD FROM x").message.contains("isn't allowed"));
        assert!(fails("ONBUILD COPY a").message.contains("two arguments"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("1h2m3s").unwrap(),
            Duration::from_secs(3723)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_go_duration("5"),
            Err(DurationError::NoUnit("5".into()))
        );
        assert_eq!(
            parse_go_duration("5x"),
            Err(DurationError::Unit {
                unit: "x".into(),
                text: "5x".into()
            })
        );
        assert_eq!(
            parse_go_duration("-1s"),
            Err(DurationError::Negative("-1s".into()))
        );
    }
}
