//! Instructions that change only the image config (ENV, LABEL, CMD,
//! ENTRYPOINT, USER, EXPOSE, …; ARG, which is keyed by its value), and
//! WORKDIR, which also creates its directory when the image lacks it.

use super::file::Layout;
use super::{Executed, Op, StepCx};
use crate::cache::{CacheKey, StepInputs};
use crate::env;
use crate::frontend::instructions::{ArgDecl, CommandLine, Copy, Healthcheck, Instruction};
use crate::fs::{self as tree, Kind};
use crate::oci::{Empty, HealthConfig, RunConfig};
use crate::plan::Step;
use crate::solve::env::Env;
use crate::solve::{BuildError, StageState, StepFailure};

/// ENV, LABEL, CMD and the other instructions that only change the
/// config.
pub(crate) struct ConfigOp;

impl Op for ConfigOp {}

/// ARG: keyed by its values, so a new `--build-arg` rebuilds from here.
pub(crate) struct ArgOp<'i> {
    pub args: &'i [ArgDecl],
}

impl Op for ArgOp<'_> {
    fn cache_inputs(
        &mut self,
        _env: &Env<'_>,
        cx: &StepCx<'_>,
        _st: &mut StageState,
        inputs: &mut StepInputs,
    ) -> Result<(), BuildError> {
        for a in self.args {
            inputs.args.insert(
                a.name.clone(),
                cx.step.args.get(&a.name).cloned().unwrap_or_default(),
            );
        }
        Ok(())
    }
}

/// ONBUILD: a trigger the config keeps, with no history entry (BuildKit's
/// `dispatchOnbuild` writes none).
pub(crate) struct OnbuildOp;

impl Op for OnbuildOp {
    fn created_by(&self, _step: &Step, _config: &RunConfig) -> Option<String> {
        None
    }
}

/// MAINTAINER: the image's author.
pub(crate) struct MaintainerOp<'i> {
    pub name: &'i str,
}

impl Op for MaintainerOp<'_> {
    fn author(&self) -> Option<&str> {
        Some(self.name)
    }
}

/// WORKDIR: sets the working directory, and creates it (and its parents)
/// when the image does not have it.
pub(crate) struct WorkdirOp;

impl Op for WorkdirOp {
    fn execute(
        &mut self,
        env: &Env<'_>,
        cx: &StepCx<'_>,
        st: &mut StageState,
        _key: &CacheKey,
    ) -> Result<Option<Executed>, BuildError> {
        let dir = tree::manifest_path(&cx.step.workdir);
        let fail = |f: StepFailure| env.step_error(cx.step, cx.label, f);
        let m = env.manifest(st)?;
        // As BuildKit's mkdir: the path followed through the image's
        // symlinks, what is missing made and owned by the current USER.
        let at = tree::resolve(m, &dir, true).map_err(|e| fail(e.into()))?;
        if dir.is_empty() {
            return Ok(None);
        }
        // As Docker 20.10's BuildKit: every WORKDIR but `/` is a layer,
        // an empty one (the tar of no entries) when the directory is
        // there already (recorded in `tests/parity/run.cases`).
        if at.is_empty() || m.get(&at).is_some_and(|x| x.kind == Kind::Dir) {
            return Ok(Some(Executed::entries(Vec::new())));
        }
        let mut layout = Layout::new(m.clone());
        let user = st.config.user.clone();
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            super::file::chown_ids(env, st, &user)
                .map_err(|e| fail(StepFailure::at(format!("USER {user}"), e)))?
        };
        layout
            .mkdir_all(&at, owner)
            .map_err(|e| fail(StepFailure::at(format!("WORKDIR {}", cx.step.workdir), e)))?;
        Ok(Some(Executed::entries(layout.out)))
    }
}

pub(crate) fn shell_form(config: &RunConfig, cmd: &CommandLine) -> Vec<String> {
    if !cmd.shell_form {
        return cmd.args.clone();
    }
    let mut v = env::shell_of(&config.shell);
    v.push(cmd.args.join(" "));
    v
}

/// What an instruction does to the image config.
pub(crate) fn apply_config(c: &mut RunConfig, cmd_set: &mut bool, step: &Step) {
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
                c.volumes.insert(p.clone(), Empty {});
            }
        }
        Instruction::Expose { ports } => {
            // A range is one port each, as BuildKit's parsePortSpec gives
            // them (the plan has refused what does not parse).
            for p in ports {
                for port in crate::plan::expose_ports(p).unwrap_or_default() {
                    c.exposed_ports.insert(port, Empty {});
                }
            }
        }
        Instruction::StopSignal { signal } => c.stop_signal = signal.clone(),
        Instruction::Healthcheck(h) => c.healthcheck = Some(health_config(h)),
        Instruction::Onbuild(o) => c.on_build.push(o.expression.clone()),
        Instruction::Copy(Copy { .. })
        | Instruction::Add(_)
        | Instruction::Arg { .. }
        | Instruction::Maintainer { .. }
        | Instruction::Run(_) => {}
    }
}

/// The config a HEALTHCHECK gives.
pub(crate) fn health_config(h: &Healthcheck) -> HealthConfig {
    match h {
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
            let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64).unwrap_or(0);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::solve::ops::op_for;
    use crate::solve::testing::{inputs, Fixture};

    fn key() -> CacheKey {
        CacheKey(Digest::of(b"test"))
    }

    #[test]
    fn an_arg_is_keyed_by_its_value_and_env_changes_only_the_config() {
        let f = Fixture::new(
            "FROM scratch\nARG V=1\nENV A=$V B=2\nLABEL l=x\nEXPOSE 80 8000-8002/UDP\nCMD [\"run\"]\n",
            &[],
        );
        let solver = f.solver();
        let mut st = f.base(&solver);
        let stage = f.plan.stages.last().unwrap();
        let mut inp = inputs();
        let mut op = op_for(&stage.steps[0].instruction);
        op.cache_inputs(&solver.env, &f.cx(0), &mut st, &mut inp)
            .unwrap();
        assert_eq!(inp.args.get("V").map(String::as_str), Some("1"));
        let mut config = RunConfig::default();
        let mut cmd_set = false;
        for (n, step) in stage.steps.iter().enumerate() {
            let mut op = op_for(&step.instruction);
            assert!(
                op.execute(&solver.env, &f.cx(n), &mut st, &key())
                    .unwrap()
                    .is_none(),
                "{} makes no layer",
                step.display
            );
            op.configure(step, &mut config, &mut cmd_set);
        }
        assert_eq!(config.env, ["A=1", "B=2"]);
        assert_eq!(config.labels.get("l").map(String::as_str), Some("x"));
        assert!(config.exposed_ports.contains_key("80/tcp"));
        for p in ["8000/udp", "8001/udp", "8002/udp"] {
            assert!(config.exposed_ports.contains_key(p), "{p}");
        }
        assert_eq!(config.cmd, Some(vec!["run".to_string()]));
    }

    #[test]
    fn workdir_creates_only_what_the_image_lacks() {
        let f = Fixture::new("FROM scratch\nWORKDIR /a/b\nWORKDIR /\n", &[]);
        let solver = f.solver();
        let mut st = f.base(&solver);
        let stage = f.plan.stages.last().unwrap();
        let out = WorkdirOp
            .execute(&solver.env, &f.cx(0), &mut st, &key())
            .unwrap()
            .unwrap();
        let made: Vec<(&str, &str)> = out
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.meta.kind.name()))
            .collect();
        assert_eq!(made, [("a", "dir"), ("a/b", "dir")]);
        let mut config = RunConfig::default();
        WorkdirOp.configure(&stage.steps[0], &mut config, &mut false);
        assert_eq!(config.working_dir, "/a/b");
        // WORKDIR / has nothing to create.
        assert!(WorkdirOp
            .execute(&solver.env, &f.cx(1), &mut st, &key())
            .unwrap()
            .is_none());
    }
}
