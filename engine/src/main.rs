//! The `wbuild` binary: parses flags, calls the library, maps errors to
//! exit codes (0 success, 1 the build or the input is wrong, 2 bad usage).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use wbuild::cli::{BuildArgs, Cli, Command, DebugCommand};
use wbuild::frontend::{dockerignore, instructions, parser, FrontendError};
use wbuild::plan::{self, BuildPlan, PlanRequest};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Build(b)) => build(*b),
        Some(Command::Debug(d)) => debug(d),
        None => build(cli.build),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(fe) = e.downcast_ref::<FrontendError>() {
                eprintln!("error: {fe}");
            } else {
                eprintln!("error: {e:#}");
            }
            let usage = e.downcast_ref::<wbuild::cli::FlagError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// Reads a Dockerfile as text; bytes that are not UTF-8 are replaced.
fn read_dockerfile(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read Dockerfile {}: check the path, or name it with -f/--file",
            path.display()
        )
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn parse_typed(path: &Path) -> Result<instructions::Dockerfile> {
    let text = read_dockerfile(path)?;
    let shown = path.display().to_string();
    instructions::parse_dockerfile(&text).map_err(|e| e.in_file(shown).into())
}

fn make_plan(
    dockerfile: &Path,
    build_args: &[String],
    target: Option<String>,
) -> Result<BuildPlan> {
    let df = parse_typed(dockerfile)?;
    let req = PlanRequest {
        build_args: wbuild::cli::parse_build_args(build_args)?,
        target,
    };
    Ok(plan::plan(&df, &req, &dockerfile.display().to_string())?)
}

fn debug(cmd: DebugCommand) -> Result<()> {
    match cmd {
        DebugCommand::Parse { file } => {
            let text = read_dockerfile(&file)?;
            let shown = file.display().to_string();
            let ast = parser::parse(&text)
                .and_then(|ast| parser::check_known(&ast).map(|()| ast))
                .map_err(|e| e.in_file(shown))?;
            for w in &ast.warnings {
                eprintln!("warning: {}: {w}", file.display());
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
    let df = parse_typed(&req.dockerfile)?;
    let shown = req.dockerfile.display().to_string();
    let p = plan::plan(
        &df,
        &PlanRequest {
            build_args: req.build_args.clone(),
            target: req.target.clone(),
        },
        &shown,
    )?;
    for s in &req.no_cache_filter {
        if !p
            .stages
            .iter()
            .any(|st| st.name.as_deref() == Some(&s.to_ascii_lowercase()))
        {
            anyhow::bail!("--no-cache-filter {s:?}: no stage of {shown} has that name");
        }
    }
    dockerignore::load(&req.context, &req.dockerfile)?;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    let steps: usize = p.needed_stages().map(|s| s.steps.len() + 1).sum();
    anyhow::bail!(
        "{shown} is valid ({} stage(s), {steps} step(s) to build), but this wbuild cannot execute builds yet: \
         the build engine (store, cache, export) is not implemented. \
         `wbuild debug plan {}` shows what would be built",
        p.needed.len(),
        req.context.display()
    )
}
