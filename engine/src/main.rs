//! The `wbuild` binary: parses flags, calls the library, maps errors to
//! exit codes (0 success, 1 the build or the input is wrong, 2 bad usage).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

mod cli;

use cli::{BuildArgs, Cli, Command, DebugCommand, ImageCommand, StoreArgs};
use wbuild::frontend::{dockerignore, parser, FrontendError};
use wbuild::plan::{self, BuildPlan, PlanRequest};
use wbuild::store::{self, Store};

fn main() -> ExitCode {
    // Errors are reported as messages, never with a stack trace: do not
    // capture one for every error made on the way (with RUST_BACKTRACE=1,
    // every guest's exit did, a fifth of a shell script's time).
    // RUST_LIB_BACKTRACE=1 brings them back; panics still follow
    // RUST_BACKTRACE. Set before any thread starts.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse_from(global_options_after_subcommand(
        std::env::args_os().collect(),
    ));
    let result = match cli.command {
        Some(Command::Build(b)) => build(*b),
        Some(Command::Explain { build, json, step }) => explain(*build, json, step),
        Some(Command::Report { store, output }) => report(store, output),
        Some(Command::Watch(b)) => watch(*b),
        Some(Command::Debug(d)) => debug(d),
        Some(Command::Images { store }) | Some(Command::Image(ImageCommand::Ls { store })) => {
            images(store)
        }
        Some(Command::Rmi { store, images })
        | Some(Command::Image(ImageCommand::Rm { store, images })) => rmi(store, images),
        Some(Command::Run {
            store,
            rw,
            wbox_shell,
            volumes,
            env,
            timeout,
            memory,
            image,
            args,
        }) => match run_image(
            store, rw, wbox_shell, volumes, env, timeout, memory, image, args,
        ) {
            Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => Err(e),
        },
        Some(Command::Du { store, verbose }) => du(store, verbose),
        Some(Command::Prune {
            store,
            all,
            filter,
            keep_storage,
            reserved_space,
            max_used_space,
            min_free_space,
            verbose,
        }) => prune(
            store,
            all,
            filter,
            keep_storage,
            [reserved_space, max_used_space, min_free_space],
            verbose,
        ),
        None => build(cli.build),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(fe) = e.downcast_ref::<FrontendError>() {
                eprintln!("error: {fe}");
            } else {
                eprintln!("error: {}", chain_text(&e));
            }
            let usage = e.downcast_ref::<cli::FlagError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// An error and its causes, each said once: a cause whose text the error
/// already shows (`push: {0}` over its source) is not said again.
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let t = cause.to_string();
        if text.contains(&t) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&t);
    }
    text
}

/// `wbuild --root DIR du` is `wbuild du --root DIR`: the store option may
/// come before a subcommand, as global options do in docker's CLI.
fn global_options_after_subcommand(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let subcommands: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--root" {
            i += 2;
        } else if a.starts_with("--root=") {
            i += 1;
        } else {
            break;
        }
    }
    match args.get(i) {
        Some(sub) if i > 1 && subcommands.iter().any(|s| *s == sub.to_string_lossy()) => {
            let mut out = vec![args[0].clone(), sub.clone()];
            out.extend(args[1..i].iter().cloned());
            out.extend(args[i + 1..].iter().cloned());
            out
        }
        _ => args,
    }
}

/// Reads a Dockerfile as text; bytes that are not UTF-8 are replaced.
fn read_dockerfile(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read Dockerfile {}: check the path, or name it with -f/--file",
            wbuild::paths::shown(path)
        )
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn parse_typed(path: &Path) -> Result<wbuild::frontend::instructions::Dockerfile> {
    Ok(wbuild::build::read_dockerfile(path)?)
}

fn make_plan(
    dockerfile: &Path,
    build_args: &[String],
    target: Option<String>,
) -> Result<BuildPlan> {
    let df = parse_typed(dockerfile)?;
    let req = PlanRequest {
        build_args: cli::parse_build_args(build_args)?,
        target,
        ..Default::default()
    };
    Ok(plan::plan(&df, &req, &wbuild::paths::shown(dockerfile))?)
}

fn debug(cmd: DebugCommand) -> Result<()> {
    match cmd {
        DebugCommand::Parse { file } => {
            let text = read_dockerfile(&file)?;
            let shown = wbuild::paths::shown(&file);
            let ast = parser::parse(&text)
                .and_then(|ast| parser::check_known(&ast).map(|()| ast))
                .map_err(|e| e.in_file(shown.clone()))?;
            for w in &ast.warnings {
                eprintln!("warning: {shown}: {w}");
            }
            print!("{}", ast.dump());
        }
        DebugCommand::Instructions { file } => {
            let df = parse_typed(&file)?;
            println!("{}", serde_json::to_string_pretty(&df)?);
        }
        DebugCommand::Plan {
            path,
            file,
            build_args,
            target,
            json,
        } => {
            let dockerfile = file.unwrap_or_else(|| path.join("Dockerfile"));
            let p = make_plan(&dockerfile, &build_args, target)?;
            dockerignore::load(&path, &dockerfile)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_plan(&p);
            }
        }
    }
    Ok(())
}

fn print_plan(p: &BuildPlan) {
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    for stage in p.needed_stages() {
        let n = stage.steps.len() + 1;
        println!("[{} 1/{n}] {}", stage.label(), stage.from_display);
        for (i, step) in stage.steps.iter().enumerate() {
            println!("[{} {}/{n}] {}", stage.label(), i + 2, step.display);
        }
    }
}

fn build(args: BuildArgs) -> Result<()> {
    let req = args.into_request()?;
    let summary = wbuild::build::run(&req)?;
    let rebuilt = summary.steps.iter().filter(|s| !s.cached).count();
    // What started the rebuilds.
    if req.progress != wbuild::request::ProgressMode::Quiet {
        let width = std::io::IsTerminal::is_terminal(&std::io::stderr())
            .then(|| console::Term::stderr().size_checked())
            .flatten()
            .map_or(usize::MAX, |(_, cols)| cols as usize);
        for s in wbuild::build::first_causes(&summary.steps) {
            let head = format!("cause: [{}] {}", s.stage, s.instruction);
            let tail = format!("— {}", s.reason);
            eprintln!("{}", wbuild::progress::tty_line(&head, &tail, width));
        }
    }
    eprintln!(
        "built {} ({} step(s), {} cached, {} rebuilt)",
        summary.digest,
        summary.steps.len(),
        summary.steps.len() - rebuilt,
        rebuilt
    );
    Ok(())
}

fn watch(args: BuildArgs) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let req = args.into_request()?;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // Twice: the build in flight is abandoned, as a killed build
            // is (the store keeps what it finished, and nothing half-made).
            std::process::exit(130);
        }
        eprintln!("stopping (a build in flight finishes first; Ctrl-C again abandons it)");
    })?;
    Ok(wbuild::watch::watch(&req, &mut std::io::stdout(), &stop)?)
}

fn explain(args: BuildArgs, json: bool, step: Option<usize>) -> Result<()> {
    let req = args.into_request()?;
    let ex = wbuild::build::explain(&req)?;
    let text = match step {
        Some(n) => {
            let s = wbuild::explain::step(&ex, n)?;
            if json {
                let v = serde_json::json!({
                    "step": n,
                    "stage": s.stage,
                    "instruction": s.instruction,
                    "cached": s.cached,
                    "reason": s.reason,
                    "key": s.key,
                    "inputs": s.inputs,
                });
                serde_json::to_string_pretty(&v)? + "\n"
            } else {
                wbuild::explain::inputs_text(n, s)
            }
        }
        None if json => serde_json::to_string_pretty(&wbuild::explain::json(&ex))? + "\n",
        None => wbuild::explain::text(&ex),
    };
    print!("{text}");
    Ok(())
}

fn report(store: StoreArgs, output: Option<std::path::PathBuf>) -> Result<()> {
    let root = match &store.root {
        Some(r) => r.clone(),
        None => store::default_root()?,
    };
    let r = wbuild::report::load_last(&root)?;
    let page = wbuild::report::html(&r);
    match output {
        Some(path) => wbuild::export::write_atomic(&path, page.as_bytes())
            .map_err(|e| anyhow::anyhow!("-o {}: {e}", path.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(page.as_bytes())?;
        }
    }
    Ok(())
}

fn open_store(args: &StoreArgs) -> Result<Store> {
    let root = match &args.root {
        Some(r) => r.clone(),
        None => store::default_root()?,
    };
    Ok(Store::open(&root)?)
}

#[allow(clippy::too_many_arguments)]
#[cfg(feature = "sandbox")]
fn run_image(
    store: StoreArgs,
    rw: bool,
    wbox_shell: bool,
    volumes: Vec<String>,
    env: Vec<String>,
    timeout: String,
    memory: String,
    image: String,
    args: Vec<String>,
) -> Result<i32> {
    let timeout = wbuild::frontend::instructions::parse_go_duration(&timeout)
        .map_err(|m| anyhow::anyhow!("--timeout {timeout:?}: {m}"))?;
    let memory = cli::parse_size(&memory)?;
    let s = open_store(&store)?;
    Ok(wbuild::runimage::run(
        &s,
        &wbuild::runimage::RunRequest {
            image,
            args,
            rw,
            native: wbuild::request::Native::from_wbox_shell(wbox_shell),
            volumes,
            env,
            timeout,
            memory,
        },
    )?)
}

#[allow(clippy::too_many_arguments)]
#[cfg(not(feature = "sandbox"))]
fn run_image(
    _: StoreArgs,
    _: bool,
    _: bool,
    _: Vec<String>,
    _: Vec<String>,
    _: String,
    _: String,
    _: String,
    _: Vec<String>,
) -> Result<i32> {
    anyhow::bail!(
        "this wbuild was built without the sandbox feature: `wbuild run` is not available"
    )
}

fn images(args: StoreArgs) -> Result<()> {
    let s = open_store(&args)?;
    let pulled: std::collections::HashSet<String> =
        s.pulled_images()?.into_iter().map(|(n, _)| n).collect();
    println!(
        "{:<40} {:<20} {:<8} {:<20}",
        "NAME", "IMAGE ID", "ORIGIN", "CREATED"
    );
    for (name, _manifest, config, created) in s.list_images()? {
        let origin = if pulled.contains(&name) {
            "pulled"
        } else {
            "built"
        };
        println!(
            "{:<40} {:<20} {:<8} {}",
            name,
            config.short(),
            origin,
            wbuild::oci::rfc3339(created.max(0) as u64)
        );
    }
    Ok(())
}

fn rmi(args: StoreArgs, images: Vec<String>) -> Result<()> {
    let s = open_store(&args)?;
    let mut missing = Vec::new();
    for q in &images {
        match s.find_image(q)? {
            Some((name, _)) => {
                s.remove_image(&name)?;
                println!("Untagged: {name}");
            }
            None => missing.push(q.clone()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "no such image: {} (see `wbuild images`)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", units[u])
    }
}

fn du(args: StoreArgs, verbose: bool) -> Result<()> {
    let s = open_store(&args)?;
    let rows = s.list_cache()?;
    let now = store::now();
    println!(
        "{:<16} {:>10} {:>12}  DESCRIPTION",
        "ID", "SIZE", "LAST USED"
    );
    let mut total = 0;
    for r in &rows {
        total += r.size;
        if verbose || rows.len() <= 50 {
            let ago = (now - r.last_used).max(0);
            let ago = if ago < 120 {
                format!("{ago}s ago")
            } else if ago < 7200 {
                format!("{}m ago", ago / 60)
            } else {
                format!("{}h ago", ago / 3600)
            };
            let id = r.key.strip_prefix("sha256:").unwrap_or(&r.key);
            println!(
                "{:<16} {:>10} {:>12}  {}",
                &id[..12.min(id.len())],
                human(r.size),
                ago,
                r.description
            );
        }
    }
    println!("Total: {} in {} record(s)", human(total), rows.len());
    // Everything else under the store's root, so nothing takes space unseen.
    let u = s.usage()?;
    println!("Images: {} holding {}", u.images, human(u.image_bytes));
    println!(
        "Blobs (layers, configs, manifests, images): {}",
        human(u.blob_bytes)
    );
    println!("Cache mounts: {}", human(u.cache_mount_bytes));
    println!("Compiled modules: {}", human(u.compiled_bytes));
    println!("Temporary files: {}", human(u.tmp_bytes));
    // By type, as BuildKit's du names them, with what prune could take
    // (what no kept image holds).
    let items = s.gc_items()?;
    println!(
        "{:<16} {:>6} {:>10} {:>12}",
        "TYPE", "ITEMS", "SIZE", "RECLAIMABLE"
    );
    for kind in ["regular", "exec.cachemount", "compiled"] {
        let of: Vec<_> = items.iter().filter(|i| i.kind == kind).collect();
        println!(
            "{:<16} {:>6} {:>10} {:>12}",
            kind,
            of.len(),
            human(of.iter().map(|i| i.size).sum()),
            human(of.iter().filter(|i| !i.shared).map(|i| i.size).sum())
        );
    }
    println!(
        "{:<16} {:>6} {:>10} {:>12}",
        "image",
        u.images,
        human(u.image_bytes),
        human(0)
    );
    Ok(())
}

fn prune(
    args: StoreArgs,
    all: bool,
    filter: Vec<String>,
    keep: Option<String>,
    spaces: [Option<String>; 3],
    verbose: bool,
) -> Result<()> {
    let (until, types) = cli::parse_filters(&filter)?;
    let keep = keep.as_deref().map(cli::parse_size).transpose()?;
    let space = |flag: &'static str, v: &Option<String>| -> Result<Option<store::Space>> {
        Ok(v.as_deref()
            .map(store::Space::parse)
            .transpose()
            .map_err(|e| cli::FlagError {
                flag,
                value: v.clone().unwrap_or_default(),
                reason: e.into(),
            })?)
    };
    let reserved = space("--reserved-space", &spaces[0])?;
    let max_used = space("--max-used-space", &spaces[1])?;
    let min_free = space("--min-free-space", &spaces[2])?;
    let s = open_store(&args)?;
    let by_rule = !types.is_empty()
        || reserved.is_some()
        || max_used.is_some()
        || min_free.is_some()
        || verbose;
    if !by_rule {
        let r = s.prune(all, until, keep)?;
        println!(
            "Removed {} untagged image(s), {} cache record(s) and {} blob(s); reclaimed {}",
            r.images,
            r.records,
            r.blobs,
            human(r.bytes)
        );
        return Ok(());
    }
    // buildx's flags: one rule, as BuildKit's prune takes them.
    let untagged = s.remove_untagged_images()?;
    let policy = store::GcPolicy {
        all,
        filters: types,
        keep_duration: until,
        reserved_space: reserved,
        max_used_space: max_used.or(keep.map(store::Space::Bytes)),
        min_free_space: min_free,
    };
    let r = s.gc(&[policy])?;
    if verbose {
        for (kind, id, size) in &r.removed {
            println!("{kind:<16} {:>10}  {id}", human(*size));
        }
    }
    println!(
        "Removed {untagged} untagged image(s), {} item(s) and {} blob(s); reclaimed {}",
        r.removed.len(),
        r.blobs,
        human(r.bytes)
    );
    Ok(())
}
