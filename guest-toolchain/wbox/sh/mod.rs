//! `sh`: a POSIX shell for RUN lines and configure-style scripts, after
//! dash. Builtins and applets run in this process; the stages of a
//! pipeline run at once, each in its own instance joined by pipes (see
//! [`stage`]); any other program runs through the sandbox's `spawn`.

use std::collections::{BTreeMap, HashMap};

use std::io::Write;

use std::path::Path;

use std::rc::Rc;

use crate::lib::glob::{glob, pmatch, PChar};
use crate::lib::io::{Applet, Io, Stream, H};
use crate::lib::paths::{lookup, normalize, which, Found};

mod arith;

pub mod parse;

mod stage;

mod unparse;

use parse::{Cmd, Param, Part, Redir, RedirOp, Word};

/// How control leaves a command other than by finishing.
#[derive(Debug)]
enum Flow {
    Exit(i32),
    Return(i32),
    Break(u32),
    Continue(u32),
}

type R = Result<i32, Flow>;

#[derive(Clone, Default)]
struct Var {
    value: String,
    exported: bool,
    readonly: bool,
}

#[derive(Clone, Default)]
struct Opts {
    errexit: bool,
    nounset: bool,
    xtrace: bool,
    noglob: bool,
    pipefail: bool,
    allexport: bool,
    noclobber: bool,
    verbose: bool,
    noexec: bool,
}

/// Everything a subshell gets a copy of.
#[derive(Clone)]
struct State {
    vars: BTreeMap<String, Var>,
    pos: Vec<String>,
    funcs: HashMap<String, Rc<Cmd>>,
    opts: Opts,
    fds: Vec<Option<H>>,
    exit_trap: Option<String>,
    cwd: String,
    umask: u32,
}

pub struct Shell {
    st: State,
    arg0: String,
    status: i32,
    /// Inside a condition (`if`, `while`, `&&`, `||`, `!`): no errexit.
    cond: u32,
    loops: u32,
    funcs_depth: u32,
    locals: Vec<Vec<(String, Option<Var>)>>,
    line: usize,
    subst_status: Option<i32>,
    /// The applets, from the I/O context the shell started with.
    applets: &'static [(&'static str, Applet)],
    /// Background jobs started and not yet waited for: (the pid `$!`
    /// shows, the host's job).
    jobs: Vec<(u32, u32)>,
    /// `$!`.
    last_bg: Option<u32>,
}

/// What `$!` shows for a job: a number no real pid of the step takes.
const JOB_PID_BASE: u32 = 1000;

thread_local! {
    /// How deeply shells and applets nest in this process.
    static NEST: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

const SPECIAL: &[&str] = &[
    ":", ".", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set",
    "shift", "trap", "unset",
];

const BUILTINS: &[&str] = &[
    "cd", "pwd", "read", "local", "command", "type", "wait", "umask", "getopts", "alias",
    "unalias", "hash", "ulimit", "times", "echo", "true", "false", "test", "[", "printf", "kill",
    "source",
];

/// The `sh` applet: `sh -c CMD [ARG0 ARGS]`, `sh FILE [ARGS]`, or the
/// script on stdin.
pub fn main(args: &[String], io: &mut Io) -> i32 {
    let mut sh = Shell::new(io);
    if args.get(1).map(String::as_str) == Some(stage::STAGE_FLAG) {
        return run_stage(sh, &args[2..], io);
    }
    let mut i = 1;
    let mut command: Option<String> = None;
    let mut read_stdin = false;
    while i < args.len() {
        let a = &args[i];
        if a == "-c" {
            i += 1;
            match args.get(i) {
                Some(c) => command = Some(c.clone()),
                None => {
                    io.errln("sh: -c requires an argument");
                    return 2;
                }
            }
            i += 1;
            break;
        } else if a == "--" {
            i += 1;
            break;
        } else if a == "-s" {
            read_stdin = true;
            i += 1;
        } else if (a.starts_with('-') || a.starts_with('+')) && a.len() > 1 {
            let on = a.starts_with('-');
            let chars = a[1..].chars().peekable();
            for c in chars {
                if c == 'c' {
                    i += 1;
                    command = args.get(i).cloned();
                    if command.is_none() {
                        io.errln("sh: -c requires an argument");
                        return 2;
                    }
                    continue;
                }
                if c == 'o' {
                    i += 1;
                    let name = args.get(i).cloned().unwrap_or_default();
                    if !sh.set_named(&name, on) {
                        io.errln(&format!("sh: Illegal option -o {name}"));
                        return 2;
                    }
                    continue;
                }
                if !sh.set_flag(c, on) {
                    io.errln(&format!("sh: Illegal option -{c}"));
                    return 2;
                }
            }
            i += 1;
            if command.is_some() {
                break;
            }
        } else {
            break;
        }
    }
    let src;
    if let Some(c) = command {
        if let Some(a0) = args.get(i) {
            sh.arg0 = a0.clone();
            i += 1;
        }
        sh.st.pos = args[i.min(args.len())..].to_vec();
        src = c;
    } else if i < args.len() && !read_stdin {
        let file = args[i].clone();
        sh.arg0 = file.clone();
        sh.st.pos = args[i + 1..].to_vec();
        match std::fs::read(&file) {
            Ok(b) => src = String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                io.errln(&format!("sh: 0: cannot open {file}: {}", short_msg(&e)));
                return if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    2
                };
            }
        }
    } else {
        sh.st.pos = args[i.min(args.len())..].to_vec();
        src = match io.i.read_all() {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => String::new(),
        };
    }
    let code = sh.run_script(&src);
    sh.flush();
    code
}

/// `sh --wbox-stage STATE SOURCE ARG0 ARGS…`: one stage of a pipeline,
/// in the state its parent shell had.
fn run_stage(mut sh: Shell, args: &[String], io: &mut Io) -> i32 {
    let (state, src) = match (args.first(), args.get(1)) {
        (Some(state), Some(src)) => (state, src),
        _ => {
            io.errln("sh: --wbox-stage needs a state and a command");
            return 2;
        }
    };
    if let Err(m) = stage::restore(&mut sh, state) {
        io.errln(&format!("sh: --wbox-stage: {m}"));
        return 2;
    }
    if let Some(a0) = args.get(2) {
        sh.arg0 = a0.clone();
    }
    sh.st.pos = args.get(3..).unwrap_or(&[]).to_vec();
    let code = sh.run_script(src);
    sh.flush();
    code
}

fn short_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        _ => crate::lib::io::io_msg(e),
    }
}

fn quote_for_set(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

struct Fields {
    done: Vec<Vec<PChar>>,
    cur: Vec<PChar>,
    live: bool,
    split_ws: bool,
}

impl Fields {
    fn new() -> Fields {
        Fields {
            done: Vec::new(),
            cur: Vec::new(),
            live: false,
            split_ws: false,
        }
    }
    fn push_quoted(&mut self, s: &str) {
        self.cur.extend(s.chars().map(|c| (c, true)));
        self.live = true;
        self.split_ws = false;
    }
    fn push_lit(&mut self, s: &str) {
        if !s.is_empty() {
            self.cur.extend(s.chars().map(|c| (c, false)));
            self.live = true;
            self.split_ws = false;
        }
    }
    fn end_field(&mut self) {
        let f = std::mem::take(&mut self.cur);
        self.done.push(f);
        self.live = false;
    }
    /// Adds an unquoted expansion's value, split on IFS.
    fn push_split(&mut self, v: &str, ifs: &str) {
        for c in v.chars() {
            if ifs.contains(c) {
                if c == ' ' || c == '\t' || c == '\n' {
                    if !self.cur.is_empty() || self.live {
                        self.end_field();
                        self.split_ws = true;
                    }
                } else {
                    if !self.split_ws {
                        self.end_field();
                    }
                    self.split_ws = false;
                }
            } else {
                self.cur.push((c, false));
                self.live = true;
                self.split_ws = false;
            }
        }
    }
    fn finish(mut self) -> Vec<Vec<PChar>> {
        if !self.cur.is_empty() || self.live {
            self.end_field();
        }
        self.done
    }
}

impl arith::Vars for Shell {
    fn get(&self, name: &str) -> Option<String> {
        self.st.vars.get(name).map(|v| v.value.clone())
    }
    fn set(&mut self, name: &str, value: String) {
        let _ = self.assign(name, value);
    }
}

impl Shell {
    fn new(io: &Io) -> Shell {
        let mut vars = BTreeMap::new();
        for (k, v) in &io.env {
            if parse::is_name(k) {
                vars.insert(
                    k.clone(),
                    Var {
                        value: v.clone(),
                        exported: true,
                        readonly: false,
                    },
                );
            }
        }
        let cwd = match io.var("PWD") {
            Some(p) if p.starts_with('/') && Path::new(p).is_dir() => normalize(p),
            _ => crate::lib::sys::cwd(),
        };
        for (k, v) in [
            ("IFS", " \t\n"),
            ("PS1", "# "),
            ("PS2", "> "),
            ("PS4", "+ "),
            ("OPTIND", "1"),
        ] {
            vars.entry(k.to_string()).or_insert(Var {
                value: v.to_string(),
                exported: false,
                readonly: false,
            });
        }
        vars.insert(
            "PWD".into(),
            Var {
                value: cwd.clone(),
                exported: true,
                readonly: false,
            },
        );
        Shell {
            st: State {
                vars,
                pos: Vec::new(),
                funcs: HashMap::new(),
                opts: Opts::default(),
                fds: vec![Some(io.i.clone()), Some(io.o.clone()), Some(io.e.clone())],
                exit_trap: None,
                cwd,
                umask: crate::lib::sys::umask(),
            },
            arg0: "sh".into(),
            applets: io.applets,
            status: 0,
            cond: 0,
            loops: 0,
            funcs_depth: 0,
            locals: Vec::new(),
            line: 1,
            subst_status: None,
            jobs: Vec::new(),
            last_bg: None,
        }
    }

    /// The umask `umask` set (a stage gets its parent's).
    pub(crate) fn umask(&self) -> u32 {
        self.st.umask
    }

    pub(crate) fn set_umask(&mut self, m: u32) {
        self.st.umask = m & 0o777;
        crate::lib::sys::set_umask(m);
    }

    fn set_flag(&mut self, c: char, on: bool) -> bool {
        let o = &mut self.st.opts;
        match c {
            'e' => o.errexit = on,
            'u' => o.nounset = on,
            'x' => o.xtrace = on,
            'f' => o.noglob = on,
            'a' => o.allexport = on,
            'C' => o.noclobber = on,
            'v' => o.verbose = on,
            'n' => o.noexec = on,
            'h' | 'm' | 'b' | 'i' | 'E' => {}
            _ => return false,
        }
        true
    }

    fn set_named(&mut self, name: &str, on: bool) -> bool {
        let c = match name {
            "errexit" => 'e',
            "nounset" => 'u',
            "xtrace" => 'x',
            "noglob" => 'f',
            "allexport" => 'a',
            "noclobber" => 'C',
            "verbose" => 'v',
            "noexec" => 'n',
            "pipefail" => {
                self.st.opts.pipefail = on;
                return true;
            }
            "nolog" | "monitor" | "notify" | "ignoreeof" | "interactive" | "emacs" | "vi"
            | "posix" | "hashall" => return true,
            _ => return false,
        };
        self.set_flag(c, on)
    }

    fn flags(&self) -> String {
        let o = &self.st.opts;
        let mut s = String::new();
        for (on, c) in [
            (o.errexit, 'e'),
            (o.noglob, 'f'),
            (o.nounset, 'u'),
            (o.verbose, 'v'),
            (o.xtrace, 'x'),
            (o.allexport, 'a'),
            (o.noclobber, 'C'),
            (o.noexec, 'n'),
        ] {
            if on {
                s.push(c);
            }
        }
        s
    }

    fn fd(&self, n: usize) -> H {
        self.st
            .fds
            .get(n)
            .cloned()
            .flatten()
            .unwrap_or_else(|| H::new(Stream::Null))
    }

    fn flush(&mut self) {
        let _ = self.fd(1).flush();
        let _ = std::io::stdout().flush();
    }

    fn errmsg(&mut self, msg: &str) {
        let m = format!("{}: {}: {msg}\n", self.arg0, self.line);
        let _ = self.fd(1).flush();
        let _ = self.fd(2).write_all(m.as_bytes());
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.st.vars.get(name).map(|v| v.value.as_str())
    }

    fn assign(&mut self, name: &str, value: String) -> Result<(), Flow> {
        let allexport = self.st.opts.allexport;
        let v = self.st.vars.entry(name.to_string()).or_default();
        if v.readonly {
            self.errmsg(&format!("{name}: is read only"));
            return Err(Flow::Exit(2));
        }
        v.value = value;
        if allexport {
            v.exported = true;
        }
        Ok(())
    }

    fn env(&self) -> Vec<(String, String)> {
        self.st
            .vars
            .iter()
            .filter(|(_, v)| v.exported)
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }

    // ---- running scripts ----

    fn run_script(&mut self, src: &str) -> i32 {
        let r = self.run_source(src);
        let mut code = match r {
            Ok(c) => c,
            Err(Flow::Exit(c)) => c,
            Err(Flow::Return(c)) => c,
            Err(_) => self.status,
        };
        self.status = code;
        if let Some(t) = self.st.exit_trap.take() {
            if let Err(Flow::Exit(c)) = self.run_source(&t) {
                code = c
            }
        }
        code
    }

    /// Parses and runs a script one complete command at a time, as dash
    /// does: a syntax error stops it where it is found.
    fn run_source(&mut self, src: &str) -> R {
        let mut p = parse::Parser::new(src);
        loop {
            match p.next_command() {
                Ok(None) => return Ok(self.status),
                Ok(Some(c)) => {
                    if self.st.opts.noexec {
                        continue;
                    }
                    let s = self.exec(&c)?;
                    self.status = s;
                }
                Err(e) => {
                    self.line = e.line;
                    self.errmsg(&e.msg);
                    return Err(Flow::Exit(2));
                }
            }
        }
    }

    fn errexit(&self, status: i32) -> R {
        if status != 0 && self.st.opts.errexit && self.cond == 0 {
            return Err(Flow::Exit(status));
        }
        Ok(status)
    }

    fn in_cond(&mut self, c: &Cmd) -> R {
        self.cond += 1;
        let r = self.exec(c);
        self.cond -= 1;
        r
    }

    fn exec(&mut self, c: &Cmd) -> R {
        let s = match c {
            Cmd::Simple {
                assigns,
                words,
                redirs,
                line,
            } => {
                self.line = *line;
                let s = self.simple(assigns, words, redirs)?;
                self.status = s;
                return self.errexit(s);
            }
            Cmd::Pipeline { cmds, bang } => {
                let s = if cmds.len() == 1 {
                    if *bang {
                        self.in_cond(&cmds[0])?
                    } else {
                        self.exec(&cmds[0])?
                    }
                } else {
                    if *bang {
                        self.cond += 1;
                    }
                    let r = self.pipeline(cmds);
                    if *bang {
                        self.cond -= 1;
                    }
                    r?
                };
                let s = if *bang { (s == 0) as i32 } else { s };
                self.status = s;
                if *bang {
                    return Ok(s);
                }
                return self.errexit(s);
            }
            Cmd::And(a, b) => {
                let s = self.in_cond(a)?;
                self.status = s;
                if s == 0 {
                    self.exec(b)?
                } else {
                    s
                }
            }
            Cmd::Or(a, b) => {
                let s = self.in_cond(a)?;
                self.status = s;
                if s != 0 {
                    self.exec(b)?
                } else {
                    s
                }
            }
            Cmd::List(v) => {
                let mut s = self.status;
                if v.is_empty() {
                    s = 0;
                }
                for c in v {
                    s = self.exec(c)?;
                    self.status = s;
                }
                s
            }
            Cmd::Background(c) => {
                if !self.background(c) {
                    // Where its output cannot follow (a redirected shell), it
                    // runs to its end now.
                    self.cond += 1;
                    let r = self.exec(c);
                    self.cond -= 1;
                    r?;
                }
                0
            }
            Cmd::If {
                branches,
                otherwise,
            } => {
                let mut s = 0;
                let mut taken = false;
                for (cond, body) in branches {
                    let cs = self.in_cond(cond)?;
                    self.status = cs;
                    if cs == 0 {
                        s = self.exec(body)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    if let Some(o) = otherwise {
                        s = self.exec(o)?;
                    }
                }
                s
            }
            Cmd::Loop { cond, body, until } => {
                let mut s = 0;
                self.loops += 1;
                let r = loop {
                    let cs = match self.in_cond(cond) {
                        Ok(cs) => cs,
                        Err(f) => break Err(f),
                    };
                    if (cs == 0) == *until {
                        break Ok(s);
                    }
                    match self.exec(body) {
                        Ok(b) => s = b,
                        Err(Flow::Break(n)) => {
                            if n > 1 {
                                break Err(Flow::Break(n - 1));
                            }
                            break Ok(0);
                        }
                        Err(Flow::Continue(n)) => {
                            if n > 1 {
                                break Err(Flow::Continue(n - 1));
                            }
                        }
                        Err(f) => break Err(f),
                    }
                };
                self.loops -= 1;
                r?
            }
            Cmd::For { var, words, body } => {
                let items = match words {
                    Some(ws) => self.expand_words(ws)?,
                    None => self.st.pos.clone(),
                };
                let mut s = 0;
                self.loops += 1;
                let mut r = Ok(0);
                for it in items {
                    if let Err(f) = self.assign(var, it) {
                        r = Err(f);
                        break;
                    }
                    match self.exec(body) {
                        Ok(b) => s = b,
                        Err(Flow::Break(n)) => {
                            if n > 1 {
                                r = Err(Flow::Break(n - 1));
                            }
                            break;
                        }
                        Err(Flow::Continue(n)) => {
                            if n > 1 {
                                r = Err(Flow::Continue(n - 1));
                                break;
                            }
                        }
                        Err(f) => {
                            r = Err(f);
                            break;
                        }
                    }
                }
                self.loops -= 1;
                r?;
                s
            }
            Cmd::Case { word, arms } => {
                let w = self.expand_str(word)?;
                let wc: Vec<char> = w.chars().collect();
                let mut s = 0;
                'arms: for arm in arms {
                    for p in &arm.patterns {
                        let pat = self.expand_pattern(p)?;
                        if pmatch(&pat, &wc) {
                            if let Some(b) = &arm.body {
                                s = self.exec(b)?;
                            }
                            break 'arms;
                        }
                    }
                }
                s
            }
            Cmd::Subshell(body) => {
                let s = self.subshell(|sh| sh.exec(body));
                self.status = s;
                return self.errexit(s);
            }
            Cmd::Group(body) => self.exec(body)?,
            Cmd::Func { name, body } => {
                self.st.funcs.insert(name.clone(), body.clone());
                0
            }
            Cmd::Redirected(c, redirs) => {
                let saved = match self.redirect(redirs) {
                    Ok(s) => s,
                    Err(m) => {
                        self.errmsg(&m);
                        self.status = 2;
                        return self.errexit(2);
                    }
                };
                let r = self.exec(c);
                self.restore(saved);
                r?
            }
        };
        self.status = s;
        Ok(s)
    }

    /// Runs `f` on a copy of the shell's state: nothing it changes
    /// (variables, directory, descriptors) survives it.
    fn subshell(&mut self, f: impl FnOnce(&mut Shell) -> R) -> i32 {
        let saved = self.st.clone();
        let (cond, loops) = (self.cond, self.loops);
        let trap = self.st.exit_trap.take();
        let mut code = match f(self) {
            Ok(c) => c,
            Err(Flow::Exit(c)) | Err(Flow::Return(c)) => c,
            Err(_) => self.status,
        };
        if let Some(t) = self.st.exit_trap.take() {
            self.status = code;
            if let Err(Flow::Exit(c)) = self.run_source(&t) {
                code = c;
            }
        }
        let _ = self.fd(1).flush();
        let cwd_changed = self.st.cwd != saved.cwd;
        crate::lib::sys::set_umask(saved.umask);
        self.st = saved;
        self.st.exit_trap = trap;
        self.cond = cond;
        self.loops = loops;
        if cwd_changed {
            let _ = crate::lib::sys::set_cwd(&self.st.cwd);
        }
        code
    }

    /// Runs a pipeline's stages at once, each in its own instance (see
    /// [`stage`]); its status is the last stage's, or with pipefail the
    /// last that failed.
    /// `cmd &`: starts `c` in the background, in an instance of its own (a
    /// stage's shell, as a pipeline's), its stdin empty; whether it could.
    /// Only while this shell writes to its own stdout and stderr: a job's
    /// output goes there, not to a redirection.
    fn background(&mut self, c: &Cmd) -> bool {
        if !self.fd(1).is_real(1) || !self.fd(2).is_real(2) {
            return false;
        }
        self.flush();
        let mut argv = vec![
            "sh".to_string(),
            stage::STAGE_FLAG.to_string(),
            stage::encode(self),
            stage::source(c, self.line),
            self.arg0.clone(),
        ];
        argv.extend(self.st.pos.iter().cloned());
        let mut env = self.env();
        env.retain(|(k, _)| k != "PWD");
        env.push(("PWD".into(), self.st.cwd.clone()));
        match crate::lib::sys::spawn_background(&[argv], &env, &self.st.cwd) {
            Some(job) => {
                let pid = JOB_PID_BASE + job;
                self.jobs.push((pid, job));
                self.last_bg = Some(pid);
                true
            }
            None => false,
        }
    }

    /// `wait [PID…]`: every job (status 0), or each one named (the last
    /// one's status; 127 for a pid that is no job of this shell).
    fn wait(&mut self, args: &[&str]) -> R {
        self.flush();
        if args.is_empty() {
            for (_, job) in std::mem::take(&mut self.jobs) {
                let _ = crate::lib::sys::wait_job(job);
            }
            return Ok(0);
        }
        let mut s = 0;
        for a in args {
            let pid: Option<u32> = a.parse().ok();
            let found = self.jobs.iter().position(|(p, _)| Some(*p) == pid);
            s = match found {
                Some(i) => {
                    let (_, job) = self.jobs.remove(i);
                    match crate::lib::sys::wait_job(job) {
                        Some(c) if c < 0 => 126,
                        Some(c) => c,
                        None => 127,
                    }
                }
                None => 127,
            };
        }
        Ok(s)
    }

    fn pipeline(&mut self, cmds: &[Cmd]) -> R {
        self.flush();
        let state = stage::encode(self);
        let stages: Vec<Vec<String>> = cmds
            .iter()
            .map(|c| {
                let mut argv = vec![
                    "sh".to_string(),
                    stage::STAGE_FLAG.to_string(),
                    state.clone(),
                    stage::source(c, self.line),
                    self.arg0.clone(),
                ];
                argv.extend(self.st.pos.iter().cloned());
                argv
            })
            .collect();
        let (i, o, e) = (self.fd(0), self.fd(1), self.fd(2));
        let merged = Rc::ptr_eq(&o.0, &e.0);
        let streams = crate::lib::sys::Streams {
            stdin: if i.is_real(0) {
                None
            } else {
                Some(i.read_all().unwrap_or_default())
            },
            capture_out: !o.is_real(1),
            capture_err: !merged && !e.is_real(2),
            err_to_out: merged,
        };
        let mut env = self.env();
        env.retain(|(k, _)| k != "PWD");
        env.push(("PWD".into(), self.st.cwd.clone()));
        let r = crate::lib::sys::spawn_pipeline(&stages, &env, &self.st.cwd, &streams);
        if !r.stdout.is_empty() {
            let _ = o.clone().write_all(&r.stdout);
        }
        if !r.stderr.is_empty() {
            let _ = e.clone().write_all(&r.stderr);
        }
        let statuses: Vec<i32> = r
            .statuses
            .iter()
            .map(|&s| if s < 0 { 126 } else { s })
            .collect();
        let last = match statuses.last() {
            Some(s) => *s,
            None => 126,
        };
        if self.st.opts.pipefail {
            if let Some(s) = statuses.iter().rev().find(|s| **s != 0) {
                return Ok(*s);
            }
        }
        Ok(last)
    }

    // ---- simple commands ----

    fn simple(&mut self, assigns: &[(String, Word)], words: &[Word], redirs: &[Redir]) -> R {
        self.subst_status = None;
        let argv = self.expand_words(words)?;
        let mut values = Vec::new();
        for (name, w) in assigns {
            let v = self.expand_str(w)?;
            if argv.is_empty() {
                // `a=1 b=$a`: each assignment sees the ones before it.
                self.assign(name, v.clone())?;
            }
            values.push((name.clone(), v));
        }
        if self.st.opts.xtrace {
            let mut parts: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.extend(argv.iter().cloned());
            let ps4 = self.var("PS4").unwrap_or("+ ").to_string();
            let line = format!("{ps4}{}\n", parts.join(" "));
            let _ = self.fd(1).flush();
            let _ = self.fd(2).write_all(line.as_bytes());
        }
        if argv.is_empty() {
            let saved = match self.redirect(redirs) {
                Ok(s) => s,
                Err(m) => {
                    self.errmsg(&m);
                    return Ok(2);
                }
            };
            self.restore(saved);
            return Ok(self.subst_status.unwrap_or(0));
        }
        let name = argv[0].clone();
        let special = SPECIAL.contains(&name.as_str());
        // `exec` with only redirections makes them permanent.
        if name == "exec" && argv.len() == 1 {
            return match self.redirect(redirs) {
                Ok(_) => Ok(0),
                Err(m) => {
                    self.errmsg(&m);
                    Err(Flow::Exit(2))
                }
            };
        }
        let saved = match self.redirect(redirs) {
            Ok(s) => s,
            Err(m) => {
                self.errmsg(&m);
                if special {
                    return Err(Flow::Exit(2));
                }
                return Ok(2);
            }
        };
        let r = if special {
            for (k, v) in values {
                if let Err(f) = self.assign(&k, v) {
                    self.restore(saved);
                    return Err(f);
                }
            }
            self.builtin(&argv)
        } else {
            // Assignments are temporary, and exported, for the command.
            let mut old = Vec::new();
            for (k, v) in values {
                old.push((k.clone(), self.st.vars.get(&k).cloned()));
                let e = self.st.vars.entry(k).or_default();
                e.value = v;
                e.exported = true;
            }
            let r = self.command(&argv, true);
            for (k, o) in old.into_iter().rev() {
                match o {
                    Some(v) => {
                        self.st.vars.insert(k, v);
                    }
                    None => {
                        self.st.vars.remove(&k);
                    }
                }
            }
            r
        };
        self.restore(saved);
        r
    }

    /// Runs a command by name: a function, a builtin, an applet or a program.
    fn command(&mut self, argv: &[String], functions: bool) -> R {
        let name = argv[0].as_str();
        if functions {
            if let Some(body) = self.st.funcs.get(name).cloned() {
                return self.call(&body, argv);
            }
        }
        if SPECIAL.contains(&name) || BUILTINS.contains(&name) {
            return self.builtin(argv);
        }
        let path = self
            .var("PATH")
            .unwrap_or("/usr/local/bin:/usr/bin:/bin")
            .to_string();
        match lookup(name, &path, self.applets) {
            Found::Applet(a) => Ok(self.applet(&a, argv)),
            Found::Script(p) => {
                let mut v = vec!["sh".to_string(), p];
                v.extend(argv.iter().skip(1).cloned());
                Ok(self.applet("sh", &v))
            }
            Found::Program(p) => Ok(self.spawn(&p, argv.to_vec())),
            Found::Interp(interp, arg, p) => {
                let mut v = vec![interp.clone()];
                v.extend(arg);
                v.push(p);
                v.extend(argv.iter().skip(1).cloned());
                Ok(self.spawn(&interp, v))
            }
            Found::Denied(p) => {
                self.errmsg(&format!("{p}: Permission denied"));
                Ok(126)
            }
            Found::Missing => {
                self.errmsg(&format!("{name}: not found"));
                Ok(127)
            }
        }
    }

    fn io(&self) -> Io {
        Io {
            i: self.fd(0),
            o: self.fd(1),
            e: self.fd(2),
            env: self.env(),
            applets: self.applets,
        }
    }

    fn applet(&mut self, name: &str, argv: &[String]) -> i32 {
        if NEST.with(|n| n.get()) > 64 {
            self.errmsg(&format!("{name}: scripts nested too deeply"));
            return 2;
        }
        let mut io = self.io();
        NEST.with(|n| n.set(n.get() + 1));
        let code = io.run_applet(name, argv);
        if name == "sh" {
            let _ = crate::lib::sys::set_cwd(&self.st.cwd);
        }
        NEST.with(|n| n.set(n.get() - 1));
        let _ = io.o.flush();
        code
    }

    fn spawn(&mut self, program: &str, argv: Vec<String>) -> i32 {
        self.flush();
        let mut io = self.io();
        io.env.retain(|(k, _)| k != "PWD");
        io.env.push(("PWD".into(), self.st.cwd.clone()));
        crate::lib::proc::spawn_with(program, &argv, &mut io)
    }

    fn call(&mut self, body: &Rc<Cmd>, argv: &[String]) -> R {
        if self.funcs_depth > 1000 {
            self.errmsg("function calls nested too deeply");
            return Err(Flow::Exit(2));
        }
        let saved = std::mem::replace(&mut self.st.pos, argv[1..].to_vec());
        self.funcs_depth += 1;
        self.locals.push(Vec::new());
        let loops = std::mem::replace(&mut self.loops, 0);
        let r = self.exec(body);
        self.loops = loops;
        if let Some(locals) = self.locals.pop() {
            for (k, old) in locals.into_iter().rev() {
                match old {
                    Some(v) => {
                        self.st.vars.insert(k, v);
                    }
                    None => {
                        self.st.vars.remove(&k);
                    }
                }
            }
        }
        self.funcs_depth -= 1;
        self.st.pos = saved;
        match r {
            Err(Flow::Return(n)) => Ok(n),
            other => other,
        }
    }

    // ---- redirections ----

    fn redirect(&mut self, redirs: &[Redir]) -> Result<Vec<(usize, Option<H>)>, String> {
        let mut saved = Vec::new();
        for r in redirs {
            match self.one_redirect(r) {
                Ok((fd, h)) => {
                    while self.st.fds.len() <= fd {
                        self.st.fds.push(None);
                    }
                    saved.push((fd, self.st.fds[fd].take()));
                    self.st.fds[fd] = h;
                }
                Err(m) => {
                    self.restore(saved);
                    return Err(m);
                }
            }
        }
        Ok(saved)
    }

    fn restore(&mut self, saved: Vec<(usize, Option<H>)>) {
        for (fd, h) in saved.into_iter().rev() {
            if let Some(cur) = self.st.fds.get(fd).cloned().flatten() {
                let _ = cur.clone().flush();
            }
            if fd < self.st.fds.len() {
                self.st.fds[fd] = h;
            }
        }
    }

    fn one_redirect(&mut self, r: &Redir) -> Result<(usize, Option<H>), String> {
        let default = match r.op {
            RedirOp::In | RedirOp::ReadWrite | RedirOp::DupIn | RedirOp::Here => 0,
            _ => 1,
        };
        let fd = r.fd.unwrap_or(default) as usize;
        if fd > 9 {
            return Err(format!("{fd}: Bad file descriptor"));
        }
        if r.op == RedirOp::Here {
            let body = match &r.here {
                Some(h) => {
                    let h = h.borrow();
                    if h.literal {
                        h.body
                            .iter()
                            .map(|p| {
                                if let Part::Lit(s, _) = p {
                                    s.as_str()
                                } else {
                                    ""
                                }
                            })
                            .collect::<String>()
                    } else {
                        let w = h.body.clone();
                        drop(h);
                        self.expand_str(&w)
                            .map_err(|_| "bad here-document".to_string())?
                    }
                }
                None => String::new(),
            };
            return Ok((
                fd,
                Some(H::new(Stream::Read(std::io::Cursor::new(
                    body.into_bytes(),
                )))),
            ));
        }
        let target = self
            .expand_str(&r.target)
            .map_err(|_| "bad redirection".to_string())?;
        match r.op {
            RedirOp::DupIn | RedirOp::DupOut => {
                if target == "-" {
                    return Ok((fd, None));
                }
                match target.parse::<usize>() {
                    Ok(n) if n <= 9 => match self.st.fds.get(n).cloned().flatten() {
                        Some(h) => Ok((fd, Some(h))),
                        None => Err(format!("{n}: Bad file descriptor")),
                    },
                    _ => Err("Syntax error: Bad fd number".into()),
                }
            }
            _ => {
                match target.as_str() {
                    "/dev/null" => return Ok((fd, Some(H::new(Stream::Null)))),
                    "/dev/stdout" => return Ok((fd, Some(self.fd(1)))),
                    "/dev/stderr" => return Ok((fd, Some(self.fd(2)))),
                    "/dev/stdin" => return Ok((fd, Some(self.fd(0)))),
                    _ => {}
                }
                let mut o = std::fs::OpenOptions::new();
                match r.op {
                    RedirOp::In => {
                        o.read(true);
                    }
                    RedirOp::Out | RedirOp::Clobber => {
                        if r.op == RedirOp::Out
                            && self.st.opts.noclobber
                            && Path::new(&target).is_file()
                        {
                            return Err(format!("cannot create {target}: File exists"));
                        }
                        o.write(true).create(true).truncate(true);
                    }
                    RedirOp::Append => {
                        o.append(true).create(true);
                    }
                    _ => {
                        o.read(true).write(true).create(true);
                    }
                }
                let existed = r.op == RedirOp::In || Path::new(&target).exists();
                match o.open(&target) {
                    Ok(f) => {
                        if Path::new(&target).is_dir() {
                            return Err(format!("cannot open {target}: Is a directory"));
                        }
                        if !existed {
                            crate::lib::sys::created(&target, false);
                        }
                        Ok((fd, Some(H::new(Stream::File(f)))))
                    }
                    Err(e) => {
                        let verb = if r.op == RedirOp::In {
                            "open"
                        } else {
                            "create"
                        };
                        let msg = match e.kind() {
                            std::io::ErrorKind::NotFound if r.op == RedirOp::In => {
                                "No such file".to_string()
                            }
                            std::io::ErrorKind::NotFound => "Directory nonexistent".to_string(),
                            _ => {
                                let m = crate::lib::io::io_msg(&e);
                                if m == "Is a directory" {
                                    m
                                } else {
                                    short_msg(&e)
                                }
                            }
                        };
                        Err(format!("cannot {verb} {target}: {msg}"))
                    }
                }
            }
        }
    }

    // ---- expansion ----

    fn expand_words(&mut self, words: &[Word]) -> Result<Vec<String>, Flow> {
        let mut out = Vec::new();
        for w in words {
            let mut f = Fields::new();
            self.expand_into(w, &mut f, true)?;
            for field in f.finish() {
                let has_glob = !self.st.opts.noglob
                    && field
                        .iter()
                        .any(|(c, q)| !q && (*c == '*' || *c == '?' || *c == '['));
                if has_glob {
                    let matches = glob(&field);
                    if !matches.is_empty() {
                        out.extend(matches);
                        continue;
                    }
                }
                out.push(field.iter().map(|(c, _)| *c).collect());
            }
        }
        Ok(out)
    }

    /// One string: no field splitting, no globbing.
    fn expand_str(&mut self, w: &Word) -> Result<String, Flow> {
        let mut f = Fields::new();
        self.expand_into(w, &mut f, false)?;
        let fields = f.finish();
        Ok(fields
            .iter()
            .map(|fl| fl.iter().map(|(c, _)| *c).collect::<String>())
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn expand_pattern(&mut self, w: &Word) -> Result<Vec<PChar>, Flow> {
        let mut f = Fields::new();
        self.expand_into(w, &mut f, false)?;
        let mut out = Vec::new();
        for (i, fl) in f.finish().into_iter().enumerate() {
            if i > 0 {
                out.push((' ', true));
            }
            out.extend(fl);
        }
        Ok(out)
    }

    fn ifs(&self) -> String {
        self.var("IFS")
            .map(|s| s.to_string())
            .unwrap_or_else(|| " \t\n".into())
    }

    fn expand_into(&mut self, w: &Word, f: &mut Fields, split: bool) -> Result<(), Flow> {
        for part in w {
            match part {
                Part::Lit(s, true) => f.push_quoted(s),
                Part::Lit(s, false) => f.push_lit(s),
                Part::Tilde(user) => {
                    let home = if user.is_empty() {
                        self.var("HOME").unwrap_or("/").to_string()
                    } else if user == "root" {
                        "/root".to_string()
                    } else {
                        format!("~{user}")
                    };
                    f.push_quoted(&home);
                }
                Part::Cmd(c, quoted) => {
                    let out = self.substitute(c);
                    let t = out.trim_end_matches('\n');
                    self.put(f, t, *quoted, split);
                }
                Part::Arith(w, quoted) => {
                    let expr = self.expand_str(w)?;
                    let v = match arith::eval(&expr, self) {
                        Ok(v) => v,
                        Err(m) => {
                            self.errmsg(&m);
                            return Err(Flow::Exit(2));
                        }
                    };
                    self.put(f, &v.to_string(), *quoted, split);
                }
                Part::Param(p, quoted) => self.param(p, *quoted, f, split)?,
            }
        }
        Ok(())
    }

    /// The word of an unquoted `${x-word}` or `${x+word}`: its plain text
    /// is split on IFS as the rest of the expansion's value is.
    fn expand_op_word(
        &mut self,
        word: &Word,
        quoted: bool,
        f: &mut Fields,
        split: bool,
    ) -> Result<(), Flow> {
        if quoted || !split {
            return self.expand_into(word, f, split);
        }
        let ifs = self.var("IFS").unwrap_or(" \t\n").to_string();
        for part in word {
            match part {
                Part::Lit(s, false) => f.push_split(s, &ifs),
                other => self.expand_into(&vec![other.clone()], f, split)?,
            }
        }
        Ok(())
    }

    fn put(&self, f: &mut Fields, v: &str, quoted: bool, split: bool) {
        if quoted {
            f.push_quoted(v);
        } else if split {
            let ifs = self.ifs();
            f.push_split(v, &ifs);
        } else {
            f.cur.extend(v.chars().map(|c| (c, false)));
            if !v.is_empty() {
                f.live = true;
            }
        }
    }

    fn substitute(&mut self, c: &Rc<Cmd>) -> String {
        let buf = H::new(Stream::Buf(Vec::new()));
        let b = buf.clone();
        let s = self.subshell(|sh| {
            sh.st.fds[1] = Some(b);
            sh.exec(c)
        });
        self.subst_status = Some(s);
        self.status = s;
        String::from_utf8_lossy(&buf.take()).into_owned()
    }

    /// A parameter's value, or None when it is unset.
    fn param_value(&self, name: &str) -> Option<String> {
        match name {
            "?" => Some(self.status.to_string()),
            "#" => Some(self.st.pos.len().to_string()),
            "$" => Some("1".into()),
            "!" => self.last_bg.map(|p| p.to_string()),
            "-" => Some(self.flags()),
            "0" => Some(self.arg0.clone()),
            "@" | "*" => {
                if self.st.pos.is_empty() {
                    None
                } else {
                    Some(self.st.pos.join(" "))
                }
            }
            n if n.bytes().all(|b| b.is_ascii_digit()) => {
                let i: usize = n.parse().unwrap_or(usize::MAX);
                self.st.pos.get(i.wrapping_sub(1)).cloned()
            }
            n => self.var(n).map(|s| s.to_string()),
        }
    }

    fn param(&mut self, p: &Param, quoted: bool, f: &mut Fields, split: bool) -> Result<(), Flow> {
        let name = p.name.as_str();
        if quoted && name != "@" {
            // "${unset}" is still one (empty) field.
            f.live = true;
        }
        if p.length {
            let v = if name == "@" || name == "*" {
                self.st.pos.len().to_string()
            } else {
                let v = self.param_value(name);
                if v.is_none() && self.st.opts.nounset && name != "@" && name != "*" {
                    self.errmsg(&format!("{name}: parameter not set"));
                    return Err(Flow::Exit(2));
                }
                v.unwrap_or_default().chars().count().to_string()
            };
            self.put(f, &v, quoted, split);
            return Ok(());
        }
        let value = self.param_value(name);
        let (op, word) = match &p.op {
            None => {
                if value.is_none() && self.st.opts.nounset && name != "@" && name != "*" {
                    self.errmsg(&format!("{name}: parameter not set"));
                    return Err(Flow::Exit(2));
                }
                self.put_value(name, value, quoted, f, split);
                return Ok(());
            }
            Some((op, w)) => (op.as_str(), w),
        };
        let colon = op.starts_with(':');
        let unset_or_null = value.is_none() || (colon && value.as_deref() == Some(""));
        match op.trim_start_matches(':') {
            "-" => {
                if unset_or_null {
                    self.expand_op_word(word, quoted, f, split)?;
                } else {
                    self.put_value(name, value, quoted, f, split);
                }
            }
            "=" => {
                if unset_or_null {
                    let v = self.expand_str(word)?;
                    if !parse::is_name(name) {
                        self.errmsg(&format!("{name}: bad variable name"));
                        return Err(Flow::Exit(2));
                    }
                    self.assign(name, v.clone())?;
                    self.put(f, &v, quoted, split);
                } else {
                    self.put_value(name, value, quoted, f, split);
                }
            }
            "?" => {
                if unset_or_null {
                    let msg = self.expand_str(word)?;
                    let msg = if !msg.is_empty() {
                        msg
                    } else if colon {
                        "parameter not set or null".into()
                    } else {
                        "parameter not set".into()
                    };
                    self.errmsg(&format!("{name}: {msg}"));
                    return Err(Flow::Exit(2));
                }
                self.put_value(name, value, quoted, f, split);
            }
            "+" => {
                if !unset_or_null {
                    self.expand_op_word(word, quoted, f, split)?;
                }
            }
            op => {
                if value.is_none() && self.st.opts.nounset {
                    self.errmsg(&format!("{name}: parameter not set"));
                    return Err(Flow::Exit(2));
                }
                let v: Vec<char> = value.unwrap_or_default().chars().collect();
                let pat = self.expand_pattern(word)?;
                let n = v.len();
                let out: String = match op {
                    "%" => (0..=n)
                        .rev()
                        .find(|&i| pmatch(&pat, &v[i..]))
                        .map(|i| v[..i].iter().collect()),
                    "%%" => (0..=n)
                        .find(|&i| pmatch(&pat, &v[i..]))
                        .map(|i| v[..i].iter().collect()),
                    "#" => (0..=n)
                        .find(|&i| pmatch(&pat, &v[..i]))
                        .map(|i| v[i..].iter().collect()),
                    _ => (0..=n)
                        .rev()
                        .find(|&i| pmatch(&pat, &v[..i]))
                        .map(|i| v[i..].iter().collect()),
                }
                .unwrap_or_else(|| v.iter().collect());
                self.put(f, &out, quoted, split);
            }
        }
        Ok(())
    }

    /// A parameter's value into the fields; `$@` and `$*` make one field
    /// per positional parameter.
    fn put_value(
        &mut self,
        name: &str,
        value: Option<String>,
        quoted: bool,
        f: &mut Fields,
        split: bool,
    ) {
        if (name == "@" || name == "*") && split {
            let pos = self.st.pos.clone();
            if quoted && name == "*" {
                let ifs = self.ifs();
                let sep = ifs
                    .chars()
                    .next()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                f.push_quoted(&pos.join(&sep));
                return;
            }
            for (i, p) in pos.iter().enumerate() {
                if i > 0 {
                    if quoted {
                        f.end_field();
                    } else {
                        if !f.cur.is_empty() || f.live {
                            f.end_field();
                        }
                        f.split_ws = true;
                    }
                }
                self.put(f, p, quoted, split);
            }
            return;
        }
        if name == "*" && quoted {
            let ifs = self.ifs();
            let sep = ifs
                .chars()
                .next()
                .map(|c| c.to_string())
                .unwrap_or_default();
            f.push_quoted(&self.st.pos.join(&sep));
            return;
        }
        if let Some(v) = value {
            self.put(f, &v, quoted, split);
        }
    }

    // ---- builtins ----

    fn out(&mut self, s: &str) {
        let _ = self.fd(1).write_all(s.as_bytes());
    }

    fn builtin(&mut self, argv: &[String]) -> R {
        let name = argv[0].as_str();
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        match name {
            ":" | "true" => Ok(0),
            "false" => Ok(1),
            "echo" => {
                let (nl, words) = match args.first() {
                    Some(&"-n") => (false, &args[1..]),
                    _ => (true, &args[..]),
                };
                let mut s = String::new();
                let mut stop = false;
                for (i, w) in words.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    if crate::lib::fmt::unescape_into(w, &mut s, true) {
                        stop = true;
                        break;
                    }
                }
                if nl && !stop {
                    s.push('\n');
                }
                let mut o = self.fd(1);
                match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
                    Ok(()) => Ok(0),
                    Err(_) => {
                        self.errmsg("echo: echo: I/O error");
                        Ok(1)
                    }
                }
            }
            "test" | "[" | "printf" | "kill" => Ok(self.applet(name, argv)),
            "cd" => self.cd(&args),
            "pwd" => {
                let c = self.st.cwd.clone();
                self.out(&format!("{c}\n"));
                Ok(0)
            }
            "exit" => {
                let code = match args.first() {
                    Some(a) => match a.parse::<i64>() {
                        Ok(n) => (n & 255) as i32,
                        Err(_) => {
                            self.errmsg(&format!("exit: Illegal number: {a}"));
                            2
                        }
                    },
                    None => self.status,
                };
                Err(Flow::Exit(code))
            }
            "return" => {
                let code = match args.first() {
                    Some(a) => a.parse::<i64>().map(|n| (n & 255) as i32).unwrap_or(2),
                    None => self.status,
                };
                Err(Flow::Return(code))
            }
            "break" | "continue" => {
                let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
                if self.loops == 0 {
                    return Ok(0);
                }
                let n = n.max(1).min(self.loops);
                Err(if name == "break" {
                    Flow::Break(n)
                } else {
                    Flow::Continue(n)
                })
            }
            "shift" => {
                let n: usize = match args.first() {
                    Some(a) => match a.parse() {
                        Ok(n) => n,
                        Err(_) => {
                            self.errmsg(&format!("shift: Illegal number: {a}"));
                            return Err(Flow::Exit(2));
                        }
                    },
                    None => 1,
                };
                if n > self.st.pos.len() {
                    self.errmsg("shift: can't shift that many");
                    return Err(Flow::Exit(2));
                }
                self.st.pos.drain(..n);
                Ok(0)
            }
            "set" => self.set(&argv[1..]),
            "export" | "readonly" => {
                if args.is_empty() || args == ["-p"] {
                    let lines: Vec<String> = self
                        .st
                        .vars
                        .iter()
                        .filter(|(_, v)| {
                            if name == "export" {
                                v.exported
                            } else {
                                v.readonly
                            }
                        })
                        .map(|(k, v)| format!("{name} {k}={}\n", quote_for_set(&v.value)))
                        .collect();
                    for l in lines {
                        self.out(&l);
                    }
                    return Ok(0);
                }
                for a in args {
                    if a == "-p" {
                        continue;
                    }
                    let (k, v) = match a.find('=') {
                        Some(i) => (&a[..i], Some(a[i + 1..].to_string())),
                        None => (a, None),
                    };
                    if !parse::is_name(k) {
                        self.errmsg(&format!("{name}: {k}: bad variable name"));
                        return Err(Flow::Exit(2));
                    }
                    if let Some(v) = v {
                        self.assign(k, v)?;
                    }
                    let e = self.st.vars.entry(k.to_string()).or_default();
                    if name == "export" {
                        e.exported = true;
                    } else {
                        e.readonly = true;
                    }
                }
                Ok(0)
            }
            "local" => {
                for a in args {
                    let (k, v) = match a.find('=') {
                        Some(i) => (&a[..i], Some(a[i + 1..].to_string())),
                        None => (a, None),
                    };
                    let old = self.st.vars.get(k).cloned();
                    if let Some(l) = self.locals.last_mut() {
                        l.push((k.to_string(), old));
                    }
                    if let Some(v) = v {
                        self.assign(k, v)?;
                    }
                }
                Ok(0)
            }
            "unset" => {
                let funcs = args.first() == Some(&"-f");
                for a in args.iter().filter(|a| !a.starts_with('-')) {
                    if funcs {
                        self.st.funcs.remove(*a);
                    } else {
                        if self.st.vars.get(*a).is_some_and(|v| v.readonly) {
                            self.errmsg(&format!("unset: {a}: is read only"));
                            return Err(Flow::Exit(2));
                        }
                        self.st.vars.remove(*a);
                    }
                }
                Ok(0)
            }
            "eval" => {
                let src = args.join(" ");
                self.run_source(&src)
            }
            "." | "source" => {
                let file = match args.first() {
                    Some(f) => f.to_string(),
                    None => return Ok(0),
                };
                let path = if file.contains('/') {
                    file.clone()
                } else {
                    let p = self.var("PATH").unwrap_or("").to_string();
                    p.split(':')
                        .map(|d| format!("{}/{file}", if d.is_empty() { "." } else { d }))
                        .find(|c| Path::new(c).is_file())
                        .unwrap_or_else(|| file.clone())
                };
                match std::fs::read(&path) {
                    Ok(b) => {
                        let src = String::from_utf8_lossy(&b).into_owned();
                        let saved = if args.len() > 1 {
                            Some(std::mem::replace(&mut self.st.pos, argv[2..].to_vec()))
                        } else {
                            None
                        };
                        let r = self.run_source(&src);
                        if let Some(s) = saved {
                            self.st.pos = s;
                        }
                        match r {
                            Err(Flow::Return(n)) => Ok(n),
                            other => other,
                        }
                    }
                    Err(_) => {
                        self.errmsg(&format!(".: cannot open {file}: No such file"));
                        Err(Flow::Exit(2))
                    }
                }
            }
            "exec" => {
                let s = self.command(&argv[1..], false)?;
                Err(Flow::Exit(s))
            }
            "read" => self.read(&args),
            "trap" => {
                if args.is_empty() {
                    if let Some(t) = self.st.exit_trap.clone() {
                        self.out(&format!("trap -- {} EXIT\n", quote_for_set(&t)));
                    }
                    return Ok(0);
                }
                let (action, sigs) = if args.len() == 1 {
                    ("-", &args[..])
                } else {
                    (args[0], &args[1..])
                };
                for s in sigs {
                    if matches!(*s, "EXIT" | "0") {
                        self.st.exit_trap = if action == "-" || action.is_empty() {
                            None
                        } else {
                            Some(action.to_string())
                        };
                    }
                }
                Ok(0)
            }
            "command" => {
                let mut i = 0;
                let mut v = false;
                while let Some(a) = args.get(i) {
                    match *a {
                        "-v" | "-V" => v = true,
                        "-p" => {}
                        _ => break,
                    }
                    i += 1;
                }
                if i >= args.len() {
                    return Ok(0);
                }
                if v {
                    let n = args[i];
                    if self.st.funcs.contains_key(n)
                        || SPECIAL.contains(&n)
                        || BUILTINS.contains(&n)
                    {
                        self.out(&format!("{n}\n"));
                        return Ok(0);
                    }
                    let path = self.var("PATH").unwrap_or("").to_string();
                    return Ok(match lookup(n, &path, self.applets) {
                        Found::Missing | Found::Denied(_) => 127,
                        Found::Applet(_) if !n.contains('/') => match which(n, &path) {
                            Some(p) => {
                                self.out(&format!("{p}\n"));
                                0
                            }
                            None => {
                                self.out(&format!("{n}\n"));
                                0
                            }
                        },
                        _ => {
                            let p = which(n, &path).unwrap_or_else(|| n.to_string());
                            self.out(&format!("{p}\n"));
                            0
                        }
                    });
                }
                self.command(&argv[i + 1..], false)
            }
            "type" => {
                let mut code = 0;
                let path = self.var("PATH").unwrap_or("").to_string();
                for n in args {
                    let line = if self.st.funcs.contains_key(n) {
                        format!("{n} is a shell function\n")
                    } else if SPECIAL.contains(&n) {
                        format!("{n} is a special shell builtin\n")
                    } else if BUILTINS.contains(&n) {
                        format!("{n} is a shell builtin\n")
                    } else if let Some(p) = which(n, &path) {
                        format!("{n} is {p}\n")
                    } else {
                        code = 127;
                        format!("{n}: not found\n")
                    };
                    self.out(&line);
                }
                Ok(code)
            }
            "umask" => match args.as_slice() {
                [] => {
                    self.out(&format!("{:04o}\n", self.st.umask));
                    Ok(0)
                }
                [m] if !m.is_empty()
                    && m.len() <= 4
                    && m.chars().all(|c| ('0'..='7').contains(&c)) =>
                {
                    let m = u32::from_str_radix(m, 8).unwrap_or(0o022);
                    self.st.umask = m;
                    crate::lib::sys::set_umask(m);
                    Ok(0)
                }
                _ => {
                    // Fail loudly rather than leave the mask as it was.
                    self.errmsg(&format!(
                        "umask: {}: only an octal mask (such as 077) is supported",
                        args.join(" ")
                    ));
                    Ok(1)
                }
            },
            "getopts" => self.getopts(&args),
            "wait" => self.wait(&args),
            _ => Ok(0),
        }
    }

    fn cd(&mut self, args: &[&str]) -> R {
        let args: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| *a != "-L" && *a != "-P")
            .collect();
        let mut print = false;
        let target = match args.first() {
            None => self.var("HOME").unwrap_or("/").to_string(),
            Some(&"-") => {
                print = true;
                self.var("OLDPWD").unwrap_or(&self.st.cwd).to_string()
            }
            Some(d) => d.to_string(),
        };
        let abs = if target.starts_with('/') {
            target.clone()
        } else {
            format!("{}/{target}", self.st.cwd)
        };
        let norm = normalize(&abs);
        let searchable = crate::lib::sys::access(&norm, crate::lib::sys::X_OK).is_ok();
        if !Path::new(&norm).is_dir() || !searchable || crate::lib::sys::set_cwd(&norm).is_err() {
            self.errmsg(&format!("cd: can't cd to {target}"));
            return Ok(2);
        }
        let old = std::mem::replace(&mut self.st.cwd, norm.clone());
        let _ = self.assign("OLDPWD", old);
        let _ = self.assign("PWD", norm.clone());
        if let Some(v) = self.st.vars.get_mut("PWD") {
            v.exported = true;
        }
        if print {
            self.out(&format!("{norm}\n"));
        }
        Ok(0)
    }

    fn set(&mut self, args: &[String]) -> R {
        if args.is_empty() {
            let lines: Vec<String> = self
                .st
                .vars
                .iter()
                .map(|(k, v)| format!("{k}={}\n", quote_for_set(&v.value)))
                .collect();
            for l in lines {
                self.out(&l);
            }
            return Ok(0);
        }
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            if a == "--" {
                self.st.pos = args[i + 1..].to_vec();
                return Ok(0);
            }
            if (a.starts_with('-') || a.starts_with('+')) && a.len() > 1 {
                let on = a.starts_with('-');
                for c in a[1..].chars() {
                    if c == 'o' {
                        i += 1;
                        match args.get(i) {
                            Some(n) => {
                                if !self.set_named(n, on) {
                                    self.errmsg(&format!("set: Illegal option -o {n}"));
                                    return Err(Flow::Exit(2));
                                }
                            }
                            None => {
                                let o = self.st.opts.clone();
                                let s = format!(
                                    "errexit\t{}\nnounset\t{}\nxtrace\t{}\npipefail\t{}\n",
                                    onoff(o.errexit),
                                    onoff(o.nounset),
                                    onoff(o.xtrace),
                                    onoff(o.pipefail)
                                );
                                self.out(&s);
                            }
                        }
                    } else if !self.set_flag(c, on) {
                        self.errmsg(&format!("set: Illegal option -{c}"));
                        return Err(Flow::Exit(2));
                    }
                }
                i += 1;
                continue;
            }
            if a == "-" {
                self.st.opts.xtrace = false;
                self.st.opts.verbose = false;
                i += 1;
                continue;
            }
            self.st.pos = args[i..].to_vec();
            return Ok(0);
        }
        Ok(0)
    }

    fn read(&mut self, args: &[&str]) -> R {
        let mut raw = false;
        let mut names = Vec::new();
        let mut i = 0;
        while i < args.len() {
            match args[i] {
                "-r" => raw = true,
                "-p" => {
                    i += 1;
                    if let Some(p) = args.get(i) {
                        let _ = self.fd(2).write_all(p.as_bytes());
                    }
                }
                a => names.push(a.to_string()),
            }
            i += 1;
        }
        if names.is_empty() {
            names.push("REPLY".into());
        }
        let inp = self.fd(0);
        let mut bytes = Vec::new();
        let mut eof = true;
        // (char, escaped) pairs, so escaped IFS characters do not split.
        let mut chars: Vec<(u8, bool)> = Vec::new();
        while let Some(b) = inp.byte() {
            if b == b'\n' {
                eof = false;
                break;
            }
            if b == b'\\' && !raw {
                match inp.byte() {
                    Some(b'\n') => continue,
                    Some(n) => {
                        chars.push((n, true));
                        continue;
                    }
                    None => break,
                }
            }
            chars.push((b, false));
            bytes.push(b);
        }
        let ifs = self.ifs();
        let is_ifs = |c: u8, esc: bool| !esc && ifs.as_bytes().contains(&c);
        let is_ws = |c: u8, esc: bool| is_ifs(c, esc) && (c == b' ' || c == b'\t' || c == b'\n');
        let mut pos = 0;
        while pos < chars.len() && is_ws(chars[pos].0, chars[pos].1) {
            pos += 1;
        }
        for (n, name) in names.iter().enumerate() {
            let last = n + 1 == names.len();
            let mut val: Vec<u8> = Vec::new();
            if last {
                let mut end = chars.len();
                while end > pos && is_ws(chars[end - 1].0, chars[end - 1].1) {
                    end -= 1;
                }
                val.extend(chars[pos.min(end)..end].iter().map(|c| c.0));
                pos = chars.len();
            } else {
                while pos < chars.len() && !is_ifs(chars[pos].0, chars[pos].1) {
                    val.push(chars[pos].0);
                    pos += 1;
                }
                // Skip one delimiter and the blanks around it.
                while pos < chars.len() && is_ws(chars[pos].0, chars[pos].1) {
                    pos += 1;
                }
                if pos < chars.len()
                    && is_ifs(chars[pos].0, chars[pos].1)
                    && !is_ws(chars[pos].0, chars[pos].1)
                {
                    pos += 1;
                    while pos < chars.len() && is_ws(chars[pos].0, chars[pos].1) {
                        pos += 1;
                    }
                }
            }
            self.assign(name, String::from_utf8_lossy(&val).into_owned())?;
        }
        Ok(if eof { 1 } else { 0 })
    }

    fn getopts(&mut self, args: &[&str]) -> R {
        if args.len() < 2 {
            self.errmsg("getopts: usage: getopts optstring var [arg ...]");
            return Ok(2);
        }
        let spec = args[0];
        let var = args[1];
        let params: Vec<String> = if args.len() > 2 {
            args[2..].iter().map(|s| s.to_string()).collect()
        } else {
            self.st.pos.clone()
        };
        let mut ind: usize = self.var("OPTIND").and_then(|v| v.parse().ok()).unwrap_or(1);
        let sub: usize = self
            .var("_WBOX_OPTPOS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let arg = match params.get(ind.wrapping_sub(1)) {
            Some(a) if a.starts_with('-') && a.len() > 1 && a != "--" => a.clone(),
            Some(a) if a == "--" => {
                self.assign("OPTIND", (ind + 1).to_string())?;
                self.assign(var, "?".into())?;
                return Ok(1);
            }
            _ => {
                self.assign(var, "?".into())?;
                return Ok(1);
            }
        };
        let chars: Vec<char> = arg.chars().collect();
        let c = chars.get(sub).copied().unwrap_or('?');
        let mut next_sub = sub + 1;
        let takes = spec
            .find(c)
            .map(|i| spec[i + c.len_utf8()..].starts_with(':'));
        let silent = spec.starts_with(':');
        match takes {
            None => {
                if !silent {
                    self.errmsg(&format!("Illegal option -{c}"));
                }
                self.assign(var, "?".into())?;
                if silent {
                    self.assign("OPTARG", c.to_string())?;
                }
            }
            Some(true) => {
                let optarg = if next_sub < chars.len() {
                    Some(chars[next_sub..].iter().collect::<String>())
                } else {
                    ind += 1;
                    params.get(ind - 1).cloned()
                };
                match optarg {
                    Some(a) => {
                        self.assign("OPTARG", a)?;
                        self.assign(var, c.to_string())?;
                    }
                    None => {
                        if !silent {
                            self.errmsg(&format!("No arg for -{c} option"));
                        }
                        self.assign(var, if silent { ":".into() } else { "?".into() })?;
                    }
                }
                next_sub = chars.len();
            }
            Some(false) => {
                self.assign(var, c.to_string())?;
            }
        }
        if next_sub >= chars.len() {
            ind += 1;
            next_sub = 1;
        }
        self.assign("OPTIND", ind.to_string())?;
        self.assign("_WBOX_OPTPOS", next_sub.to_string())?;
        Ok(0)
    }
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}
