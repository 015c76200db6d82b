//! RUN: what runs (argv, env, working directory, mounts: all of it in
//! the key), and on a miss running it in the sandbox on a copy of the
//! stage's rootfs; what it changed becomes the layer.

use std::collections::BTreeMap;
#[cfg(feature = "sandbox")]
use std::sync::Arc;
#[cfg(feature = "sandbox")]
use std::time::Instant;

use super::mounts::{bind_source, MountPlan};
#[cfg(feature = "sandbox")]
use super::mounts::{plan_of_mounts, set_up_mounts};
use super::{Executed, Op, StepCx};
use crate::cache::{self, CacheKey, StepInputs};
use crate::env;
#[cfg(feature = "sandbox")]
use crate::env::DEFAULT_PATH;
use crate::frontend::instructions::{MountType, Run};
#[cfg(feature = "sandbox")]
use crate::fs as tree;
use crate::oci::RunConfig;
use crate::plan::Step;
#[cfg(feature = "sandbox")]
use crate::progress::Event;
use crate::solve::env::Env;
#[cfg(feature = "sandbox")]
use crate::solve::StepFailure;
use crate::solve::{BuildError, StageState};

/// BuildKit's `runCommandString`: the ARGs in scope as `|N K=V …`, then
/// the command (a shell form after the config's shell).
fn run_command_string(run: &Run, step: &Step, config: &RunConfig) -> String {
    let mut words: Vec<String> = Vec::new();
    if !step.arg_decls.is_empty() {
        let env = config.env_map();
        words.push(format!("|{}", step.arg_decls.len()));
        for (k, v) in step.arg_decls.iter() {
            words.push(format!("{k}={}", env.get(k).unwrap_or(v)));
        }
    }
    words.extend(super::config_op::shell_form(config, &run.command));
    words.join(" ")
}

/// A RUN step.
pub(crate) struct ExecOp<'i> {
    run: &'i Run,
    /// Made by `cache_inputs`, run by `execute`.
    plan: Option<RunPlan>,
}

impl<'i> ExecOp<'i> {
    pub fn new(run: &'i Run) -> Self {
        ExecOp { run, plan: None }
    }
}

impl Op for ExecOp<'_> {
    /// As BuildKit's Dockerfile frontend writes it: a shell form under the
    /// config's SHELL (`/bin/sh -c` by default), and every ARG declared in
    /// the stage so far as `|N K=V` first (an ENV of the name giving the
    /// value). A heredoc RUN keeps its line as written.
    fn created_by(&self, step: &Step, config: &RunConfig) -> Option<String> {
        if !self.run.heredocs.is_empty() {
            return Some(step.display.clone());
        }
        Some(format!(
            "RUN {}",
            run_command_string(self.run, step, config)
        ))
    }

    fn cache_inputs(
        &mut self,
        env: &Env<'_>,
        cx: &StepCx<'_>,
        st: &mut StageState,
        inputs: &mut StepInputs,
    ) -> Result<(), BuildError> {
        let r = self.run;
        let mut rp = plan_run(env, cx.step, cx.label, st, r)?;
        // A cache mount `from=` a stage starts out as a copy of it.
        for mp in rp.mounts.iter_mut().filter(|m| m.kind == MountType::Cache) {
            let spec = &r.mounts[mp.index];
            if let Some(f) = &spec.from {
                let (tree, items) = bind_source(env, cx, spec)?;
                mp.from_stage = tree.stage;
                if tree.stage.is_none() {
                    mp.from_image = Some((
                        f.clone(),
                        cx.stage.platform.clone(),
                        !cx.stage.platform_named,
                    ));
                    // What the cache starts as is part of the key.
                    for (rel, m) in &items {
                        inputs
                            .files
                            .insert(format!("mount {}:{rel}", mp.target), cache::file_summary(m));
                    }
                }
            }
        }
        // The files a bind mount shows are part of the key.
        for mp in rp.mounts.iter_mut().filter(|m| m.kind == MountType::Bind) {
            let spec = &r.mounts[mp.index];
            let (tree, items) = bind_source(env, cx, spec)?;
            mp.from_stage = spec.from.as_ref().and_then(|_| tree.stage);
            if let (Some(f), None) = (&spec.from, tree.stage) {
                mp.from_image = Some((
                    f.clone(),
                    cx.stage.platform.clone(),
                    !cx.stage.platform_named,
                ));
            }
            for (rel, m) in &items {
                inputs
                    .files
                    .insert(format!("mount {}:{rel}", mp.target), cache::file_summary(m));
            }
        }
        inputs
            .extra
            .insert("run".into(), serde_json::to_string(&rp).expect("run plan"));
        // An image's own Linux programs emulated, or wbox's in their place
        // (`--wbox-shell`): not the same programs, so not the same result.
        inputs
            .extra
            .insert("linux programs".into(), env.opts.native.name().into());
        self.plan = Some(rp);
        Ok(())
    }

    fn execute(
        &mut self,
        env: &Env<'_>,
        cx: &StepCx<'_>,
        st: &mut StageState,
        key: &CacheKey,
    ) -> Result<Option<Executed>, BuildError> {
        let rp = self.plan.as_ref().expect("cache_inputs planned the run");
        execute_run(env, cx, st, rp, key).map(Some)
    }
}

/// What a RUN step executes.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RunPlan {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub mounts: Vec<MountPlan>,
}

/// What a RUN step will execute: argv, env, cwd (all part of its key).
pub(in crate::solve) fn plan_run(
    env: &Env<'_>,
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
            return Err(env.step_error(
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
            // As BuildKit: no target is the working directory.
            (None, _) => String::new(),
        };
        let target = if kind == MountType::Secret && target.is_empty() {
            target
        } else {
            // A relative (or empty) target is under WORKDIR, as BuildKit
            // joins it; only `/` itself cannot be mounted over.
            let joined = if target.starts_with('/') {
                target
            } else {
                format!("{}/{}", step.workdir.trim_end_matches('/'), target)
            };
            let clean = crate::paths::clean_path(&format!("/{joined}"));
            if clean == "/" {
                return Err(env.step_error(
                    step,
                    label,
                    format!(
                        "--mount={}: invalid mount target \"/\" (give target=, or a WORKDIR other than /)",
                        m.raw
                    ),
                ));
            }
            clean
        };
        mounts.push(MountPlan {
            index: i,
            kind,
            target,
            read_only: m.is_read_only(),
            id: m.id.clone().or_else(|| {
                if kind == MountType::Secret {
                    m.source.clone()
                } else {
                    None
                }
            }),
            sharing: m.sharing,
            source: m.source.clone(),
            from_stage: None,
            from_image: None,
            env: m.env.clone(),
            required: m.required.unwrap_or(false),
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
        });
    }
    if r.network == Some(NetworkMode::Host) {
        return Err(env.step_error(
            step,
            label,
            "--network=host: the sandbox has no sockets; use --network=none or default",
        ));
    }
    let shell = env::shell_of(&st.config.shell);
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
        return Err(env.step_error(step, label, "RUN has no command"));
    }
    let cwd = env::cwd_of(&step.workdir);
    let env = env::program_env(st.config.env_map(), &step.args, &step.args_over_env, &cwd);
    argv.shrink_to_fit();
    Ok(RunPlan {
        argv,
        env,
        cwd,
        mounts,
    })
}

/// Runs a RUN step on a copy of the stage's rootfs and returns what it
/// changed, as layer entries.
#[cfg(feature = "sandbox")]
fn execute_run(
    env: &Env<'_>,
    cx: &StepCx<'_>,
    st: &mut StageState,
    rp: &RunPlan,
    key: &CacheKey,
) -> Result<Executed, BuildError> {
    use crate::sandbox;
    let fail = |f: StepFailure| env.step_error(cx.step, cx.label, f);
    let (work, mut snap, shared) = rootfs_for(env, st).map_err(|e| fail(e.into()))?;
    let cwd_host = work.path().join(tree::manifest_path(&rp.cwd));
    std::fs::create_dir_all(&cwd_host).map_err(|error| {
        fail(StepFailure::Io {
            what: format!("WORKDIR {}", rp.cwd),
            error,
        })
    })?;
    let program = program_of(env, cx, rp, &snap)?;
    let cache_dir = env.store.compiled_dir()?;
    let module = sandbox::load_program(&program.module, &program.argv[0], Some(&cache_dir))
        .map_err(|e| fail(e.into()))?;
    let mut vars = rp.env.clone();
    // HOME follows from the parent's rootfs and USER, both in the key;
    // so does who owns what the step creates.
    env::with_home(&mut vars, work.path(), &st.config.user);
    let ids = env::ids_of(work.path(), &st.config.user).map_err(|e| fail(e.into()))?;
    snap.new_owner = (ids.uid, ids.gid);
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    let mut preopens = vec![sandbox::Preopen {
        host: work.path().to_path_buf(),
        guest: "/".into(),
        writable: true,
    }];
    let mut mounts = set_up_mounts(
        env,
        plan_of_mounts(cx.step),
        rp,
        work.path(),
        &mut vars,
        &mut preopens,
    )
    .map_err(|e| fail(e.into()))?;
    let o = &env.opts;
    let spec = sandbox::RunSpec {
        program: Arc::new(program.module),
        program_name: program.argv[0].clone(),
        argv: program.argv.clone(),
        env: vars,
        cwd: rp.cwd.clone(),
        preopens,
        clock: o.epoch,
        seed: key.0.hex().as_bytes().to_vec(),
        timeout: o.step_timeout,
        memory: o.step_memory,
        limit_flags: sandbox::LimitFlags::STEP,
        output_limit: 64 << 20,
        inherit_stdio: false,
    };
    let mut ctx = sandbox::SpawnContext::new(
        Some(work.path().to_path_buf()),
        Some(cache_dir.clone()),
        std::time::Instant::now() + o.step_timeout,
    );
    ctx.tree.modes = sandbox::mode_exceptions(&snap.manifest);
    ctx.tree.ids = ids;
    ctx.tree.owners = sandbox::owner_exceptions(&snap.manifest, snap.new_owner);
    ctx.tree.shared = shared.clone();
    // The image's own /etc files are aside for the step (see
    // `ETC_FILES`): so are their link records, on a host that keeps links
    // as files. BuildKit's may not change.
    mounts.hide_etc_links(&mut snap.links);
    ctx.tree.read_only = mounts.read_only_files();
    mounts.show_placed(&mut ctx.tree);
    ctx.tree.mounts = mounts.take_access(&ctx.tree, work.path());
    ctx.tree.links = std::sync::Mutex::new(std::mem::take(&mut snap.links));
    // On the filesystem's clock, a tick after the rootfs was made.
    ctx.tree.started = crate::fs::snapshot::next_tick(work.path()).map_err(|e| fail(e.into()))?;
    for m in &mut ctx.tree.mounts {
        m.since = Some(ctx.tree.started);
    }
    ctx.limits.disk = sandbox::DiskBudget::new(o.step_disk);
    ctx.programs.native = o.native;
    let ctx = Arc::new(ctx);
    let (out, tail) = run_showing_output(env, cx.vertex, &spec, &module, ctx.clone());
    let etc_changed = mounts.etc_changed();
    // A cache keeps who made what in it, also when the step failed.
    for m in &ctx.tree.mounts {
        m.keep_owners(ctx.tree.new_owner()).map_err(|error| {
            fail(
                super::mounts::MountError::Cache {
                    id: m.guest.clone(),
                    error: format!("recording the owners in it: {error}"),
                }
                .into(),
            )
        })?;
    }
    // Secrets leave the rootfs before anything looks at it.
    mounts.clean_up();
    check_exit(out, tail, &ctx, program.argv).map_err(|f| fail(*f))?;
    if let Some(rel) = etc_changed {
        return Err(fail(super::mounts::MountError::EtcChanged(rel).into()));
    }
    snap.overrides =
        std::mem::take(&mut *ctx.tree.overrides.lock().unwrap_or_else(|p| p.into_inner()));
    snap.links = std::mem::take(&mut *ctx.tree.links.lock().unwrap_or_else(|p| p.into_inner()));
    mounts.restore_etc_records(&mut snap.overrides, &mut snap.links);
    let entries = snap.diff().map_err(|e| fail(e.into()))?;
    snap.settle_times(&entries, env.opts.epoch);
    // The entries point into the work dir: keep it until the layer is
    // written; then the next step may take it over.
    Ok(Executed {
        entries,
        work: Vec::new(),
        rootfs: Some(super::LeftRootfs {
            layers: st.layers.iter().map(|l| l.digest.clone()).collect(),
            dir: work,
            snapshot: snap,
            shared,
        }),
    })
}

/// The rootfs a RUN step runs in: the one an earlier RUN of this build
/// left on these layers (or on the first of them, the rest applied), else
/// a new copy of the layers.
#[cfg(feature = "sandbox")]
#[allow(clippy::type_complexity)]
fn rootfs_for(
    env: &Env<'_>,
    st: &StageState,
) -> Result<
    (
        tempfile::TempDir,
        crate::fs::snapshot::Snapshot,
        Option<Arc<crate::fs::pristine::SharedInodes>>,
    ),
    crate::fs::snapshot::SnapshotError,
> {
    use crate::fs::snapshot::{Snapshot, SnapshotError};
    if let Some(w) = env.pool.take_warm(&st.layers) {
        let rest = &st.layers[w.layers.len()..];
        let snap = Snapshot::resume(env.store, w.dir.path(), w.manifest, Some(w.stats), rest)?;
        return Ok((w.dir, snap, w.shared));
    }
    let work = env.store.temp_dir("run-").map_err(SnapshotError::from)?;
    let (snap, shared) = env.pool.fresh_rootfs(env.store, &st.layers, work.path())?;
    Ok((work, snap, shared))
}

/// Finds the program a RUN step names in the rootfs (on PATH), and what
/// runs for it (`sandbox::guest_for`; the step's output says when that is
/// not the file itself). An exec-form RUN starts it as the kernel would: a
/// file without an execute bit is refused (EACCES; runc's exit code for
/// that is 126).
#[cfg(feature = "sandbox")]
fn program_of(
    env: &Env<'_>,
    cx: &StepCx<'_>,
    rp: &RunPlan,
    snap: &crate::fs::snapshot::Snapshot,
) -> Result<crate::sandbox::Guest, BuildError> {
    use crate::sandbox;
    let fail = |f: StepFailure| env.step_error(cx.step, cx.label, f);
    let path = rp
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(DEFAULT_PATH);
    let (program_path, guest_path, argv) =
        sandbox::resolve_program(&snap.dir, &rp.argv, &rp.cwd, path).map_err(|e| fail(e.into()))?;
    let exec_form = matches!(&cx.step.instruction, crate::frontend::instructions::Instruction::Run(r) if !r.command.shell_form);
    if exec_form {
        if let Some((_, guest)) = sandbox::find_program(&snap.dir, &rp.argv[0], &rp.cwd, path) {
            let rel = guest.trim_start_matches('/');
            let mode = snap
                .manifest
                .get(rel)
                .filter(|m| m.kind == crate::fs::Kind::File)
                .map(|m| m.mode);
            if mode.is_some_and(|m| m & 0o111 == 0) {
                return Err(fail(StepFailure::Exit {
                    argv: rp.argv.clone(),
                    code: 126,
                    tail: vec![format!(
                        "exec {guest}: permission denied (its mode is {:04o}: no execute bit; COPY --chmod=755 or RUN chmod +x gives one)",
                        mode.unwrap_or(0)
                    )],
                }));
            }
        }
    }
    let guest = sandbox::guest_for(&program_path, &guest_path, argv, env.opts.native)
        .map_err(|e| fail(e.into()))?;
    // wbox's sh standing in for the image's bash: a bash-only construct
    // would not fail there, it would read as something else (`[[` as a
    // command not found, false in an `if`); refuse it before it runs.
    let shell_form = !exec_form;
    if shell_form && guest.stand_in && reads_bash_syntax(&program_path, &rp.argv[0]) {
        if let Some(feature) = rp.argv.last().and_then(|s| bash_only(s)) {
            return Err(fail(StepFailure::BashOnly { feature }));
        }
    }
    if let Some(note) = &guest.note {
        env.emit(Event::Log {
            vertex: cx.vertex,
            seconds: 0.0,
            text: note.clone(),
        });
    }
    Ok(guest)
}

/// Whether the shell a step names would take bash's syntax: bash, or a
/// BusyBox `sh`/`ash` (Alpine's, whose ash has `[[` and arrays' kin);
/// dash would not, and fails on them as wbox's sh does.
#[cfg(feature = "sandbox")]
fn reads_bash_syntax(host: &std::path::Path, argv0: &str) -> bool {
    match argv0.rsplit('/').next() {
        Some("bash") => true,
        Some("sh" | "ash") => {
            std::fs::read(host).is_ok_and(|b| b.windows(7).any(|w| w == b"BusyBox"))
        }
        _ => false,
    }
}

/// The first construct of `script` that only bash has and wbox's POSIX
/// `sh` reads otherwise, if any: a `[[` word, process substitution
/// (`<(…)`, `>(…)`), an array assignment (`name=(…)`). Quoted text and
/// escaped characters are not looked at.
#[cfg(feature = "sandbox")]
pub(crate) fn bash_only(script: &str) -> Option<&'static str> {
    let chars: Vec<char> = script.chars().collect();
    let (mut single, mut double, mut word_start) = (false, false, true);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if single {
            single = c != '\'';
            i += 1;
            continue;
        }
        if c == '\\' {
            i += 2;
            word_start = false;
            continue;
        }
        if double {
            double = c != '"';
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let ends_word = |j: usize| {
            chars
                .get(j)
                .is_none_or(|c| c.is_whitespace() || ";&|".contains(*c))
        };
        if word_start && c == '[' && next == Some('[') && ends_word(i + 2) {
            return Some("`[[ … ]]` (bash's test command)");
        }
        if (c == '<' || c == '>') && next == Some('(') {
            return Some("process substitution `<(…)`");
        }
        if word_start && (c.is_ascii_alphabetic() || c == '_') {
            let mut j = i;
            while chars
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                j += 1;
            }
            if chars.get(j) == Some(&'=') && chars.get(j + 1) == Some(&'(') {
                return Some("an array assignment `name=(…)`");
            }
        }
        match c {
            '\'' => single = true,
            '"' => double = true,
            _ => {}
        }
        word_start = c.is_whitespace() || ";&|(){}".contains(c);
        i += 1;
    }
    None
}

/// Runs the program, each line it prints shown as the step's output as
/// it comes; its outcome and its last ten lines.
#[cfg(feature = "sandbox")]
fn run_showing_output(
    env: &Env<'_>,
    vertex: usize,
    spec: &crate::sandbox::RunSpec,
    module: &crate::sandbox::Program,
    ctx: Arc<crate::sandbox::SpawnContext>,
) -> (
    Result<crate::sandbox::RunOutput, crate::sandbox::SandboxError>,
    Vec<String>,
) {
    let t0 = Instant::now();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let out = crate::sandbox::run(spec, module, ctx, &mut |line: &str| {
        env.emit(Event::Log {
            vertex,
            seconds: t0.elapsed().as_secs_f64(),
            text: line.to_string(),
        });
        if tail.len() == 10 {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    });
    (out, tail.into_iter().collect())
}

/// The step's failure, if the program did not exit 0 (or the sandbox
/// stopped it).
#[cfg(feature = "sandbox")]
fn check_exit(
    out: Result<crate::sandbox::RunOutput, crate::sandbox::SandboxError>,
    mut tail: Vec<String>,
    ctx: &crate::sandbox::SpawnContext,
    argv: Vec<String>,
) -> Result<(), Box<StepFailure>> {
    if ctx
        .tree
        .link_refused
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        tail.push(
            "wbuild: the step opened a path through a symlink, which this host keeps as a file holding its target; RUN steps here cannot follow links yet (Not supported): use the link's target in the step, or build on Linux".into(),
        );
    }
    let out = match out {
        Ok(out) => out,
        Err(error) => return Err(Box::new(StepFailure::Sandbox { error, tail })),
    };
    if out.exit_code != 0 {
        return Err(Box::new(StepFailure::Exit {
            argv,
            code: out.exit_code,
            tail,
        }));
    }
    Ok(())
}

#[cfg(not(feature = "sandbox"))]
fn execute_run(
    env: &Env<'_>,
    cx: &StepCx<'_>,
    _st: &mut StageState,
    _rp: &RunPlan,
    _key: &CacheKey,
) -> Result<Executed, BuildError> {
    Err(env.step_error(
        cx.step,
        cx.label,
        "this wbuild was built without the sandbox feature: RUN is not available",
    ))
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "sandbox")]
    #[test]
    fn bash_only_constructs_are_found_outside_quotes() {
        use super::bash_only;
        assert!(bash_only("if [[ -f /x ]]; then echo y; fi").is_some_and(|f| f.contains("[[")));
        assert!(bash_only("diff <(sort a) b").is_some_and(|f| f.contains("<(")));
        assert!(bash_only("a=1; arr=(x y) && echo").is_some_and(|f| f.contains("array")));
        for fine in [
            "echo '[[ x ]]' \"<(y)\"",
            "[ -f /x ] && echo $(( 1 < 2 ))",
            "echo a\\[[ b",
            "x=$(echo 1) y=\"(\" z='=('",
            "f() { echo hi; }; f",
        ] {
            assert_eq!(bash_only(fine), None, "{fine}");
        }
    }

    use super::*;
    use crate::digest::Digest;
    use crate::solve::testing::{inputs, Fixture};

    fn exec_op(f: &Fixture, n: usize) -> ExecOp<'_> {
        match &f.plan.stages.last().unwrap().steps[n].instruction {
            crate::frontend::instructions::Instruction::Run(r) => ExecOp::new(r),
            other => panic!("not RUN: {other:?}"),
        }
    }

    #[test]
    fn the_key_holds_argv_env_cwd_and_the_files_a_bind_mount_shows() {
        let f = Fixture::new(
            "FROM wbuild/base\nARG V=1\nENV E=e\nWORKDIR /w\n\
             RUN --mount=type=bind,source=src,target=/s --mount=type=cache,target=/c,sharing=locked cat /s/a\n",
            &[("src/a", "a"), ("other", "o")],
        );
        let solver = f.solver();
        let mut st = f.base(&solver);
        st.config.set_env("E", "e");
        let mut op = exec_op(&f, 3);
        let mut inp = inputs();
        op.cache_inputs(&solver.env, &f.cx(3), &mut st, &mut inp)
            .unwrap();
        let run: serde_json::Value = serde_json::from_str(&inp.extra["run"]).unwrap();
        assert_eq!(
            run["argv"],
            serde_json::json!(["/bin/sh", "-c", "cat /s/a"])
        );
        assert_eq!(run["cwd"], "/w");
        assert_eq!(run["env"]["E"], "e");
        assert_eq!(run["env"]["V"], "1");
        assert_eq!(run["env"]["PWD"], "/w");
        assert_eq!(run["env"]["PATH"], DEFAULT_PATH);
        // Mount kinds and sharing modes have stable names in the key.
        assert_eq!(run["mounts"][0]["kind"], "bind");
        assert_eq!(run["mounts"][1]["kind"], "cache");
        assert_eq!(run["mounts"][1]["sharing"], "locked");
        let files: Vec<&str> = inp.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["mount /s:a"]);
    }

    #[cfg(feature = "sandbox")]
    #[test]
    fn a_run_becomes_a_layer_of_what_it_changed() {
        let f = Fixture::new(
            "FROM wbuild/base\nRUN echo hi > /f && rm /etc/passwd && mkdir -p /d\n",
            &[],
        );
        let solver = f.solver();
        let mut st = f.base(&solver);
        let mut op = exec_op(&f, 0);
        op.cache_inputs(&solver.env, &f.cx(0), &mut st, &mut inputs())
            .unwrap();
        let key = CacheKey(Digest::of(b"test"));
        let out = op
            .execute(&solver.env, &f.cx(0), &mut st, &key)
            .unwrap()
            .unwrap();
        let got: Vec<(&str, bool)> = out
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.whiteout))
            .collect();
        assert_eq!(got, [("d", false), ("etc/passwd", true), ("f", false)]);
        let f_entry = out.entries.iter().find(|e| e.path == "f").unwrap();
        assert_eq!(f_entry.meta.digest, Some(Digest::of(b"hi\n")));
        let left = out
            .rootfs
            .expect("the work dir stays until the layer is written");
        assert!(left.dir.path().join("f").is_file());
        assert_eq!(left.layers, vec![st.layers[0].digest.clone()]);
    }
}
