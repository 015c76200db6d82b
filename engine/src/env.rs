//! The environment a program runs with, as a container runtime sets it:
//! the defaults BuildKit and runc apply (PATH, the shell, PWD, HOME), in
//! one place. A leaf module: it knows no step, cache or sandbox.

use std::collections::BTreeMap;
use std::path::Path;

/// The PATH BuildKit puts in the config of a stage that has none, and
/// that a program gets when its image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell of shell-form instructions when the image has no SHELL.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The image's SHELL, or the default one.
pub fn shell_of(shell: &[String]) -> Vec<String> {
    if shell.is_empty() {
        DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
    } else {
        shell.to_vec()
    }
}

/// The working directory a program starts in: WORKDIR, or `/`.
pub fn cwd_of(workdir: &str) -> String {
    if workdir.is_empty() {
        "/".to_string()
    } else {
        workdir.to_string()
    }
}

/// A program's environment before HOME: the image's ENV, then `extra`
/// (build args in scope; of an ENV and an ARG of the same name the later
/// wins, as BuildKit adds both to the step's env in order: `extra_wins`
/// names the ARGs that came later), PATH when
/// neither sets it, and PWD (how a preview-1 program learns its working
/// directory). Everything here follows from the step's instruction and
/// config, so it is part of a RUN step's key.
pub fn program_env(
    image_env: BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
    extra_wins: &std::collections::BTreeSet<String>,
    cwd: &str,
) -> BTreeMap<String, String> {
    let mut env = image_env;
    for (k, v) in extra {
        if extra_wins.contains(k) {
            env.insert(k.clone(), v.clone());
        } else {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    env.insert("PWD".into(), cwd.to_string());
    env
}

/// Adds HOME when the environment has none, from the rootfs's
/// `/etc/passwd` for `user` (runc's rule: that user's home, else `/`).
/// HOME follows from the rootfs and USER, which a step's key holds.
pub fn with_home(env: &mut BTreeMap<String, String>, rootfs: &Path, user: &str) {
    if !env.contains_key("HOME") {
        env.insert("HOME".into(), home_of(rootfs, user));
    }
}

/// The rows of the rootfs's `/etc/passwd` or `/etc/group` (`name`), each
/// split at `:`; none when the file is missing, or `/etc` or the file is
/// not a real directory and file (a symlink is not followed: it could lead
/// out of the rootfs).
fn etc_table(rootfs: &Path, name: &str) -> Vec<Vec<String>> {
    let regular = |p: &Path, dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
    };
    let etc = rootfs.join("etc");
    let file = etc.join(name);
    if !regular(&etc, true) || !regular(&file, false) {
        return Vec::new();
    }
    let text = std::fs::read(&file).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// The passwd row of `user` (a name, or a uid a row has).
fn passwd_row<'a>(passwd: &'a [Vec<String>], user: &str) -> Option<&'a Vec<String>> {
    passwd
        .iter()
        .find(|f| f.len() >= 4 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)))
}

/// `user`'s home directory by the rootfs's `/etc/passwd` (a name or a
/// uid, optionally `:group`; empty is root), `/` when it has none. A
/// symlinked `/etc` or `/etc/passwd` is not followed out of the rootfs.
pub fn home_of(rootfs: &Path, user: &str) -> String {
    let name = match user.split(':').next().unwrap_or("") {
        "" => "0",
        n => n,
    };
    passwd_row(&etc_table(rootfs, "passwd"), name)
        .and_then(|f| f.get(5))
        .filter(|h| !h.is_empty())
        .cloned()
        .unwrap_or_else(|| "/".into())
}

/// A USER the image's `/etc/passwd` or `/etc/group` does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    User(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    Group(String),
}

/// Who a RUN step's programs run as: a user, its group and its
/// supplementary groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// The groups of `/etc/group` that list the user by name, when USER
    /// named no group (runc's rule); none otherwise.
    pub groups: Vec<u32>,
}

impl Ids {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the user belongs to group `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The ids a RUN step's USER runs as, read from the rootfs's `/etc/passwd`
/// and `/etc/group` as runc reads them (BuildKit's executor): `uid[:gid]`
/// numbers as they are; a user alone brings its passwd entry's group (or
/// 0 when a numeric user has no entry) and, when it has an entry, the
/// groups that list its name as supplementary groups; a name the files do
/// not have is an error naming it, in runc's words.
pub fn ids_of(rootfs: &Path, user: &str) -> Result<Ids, IdError> {
    if user.is_empty() {
        return Ok(Ids::default());
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = etc_table(rootfs, "passwd");
    let row = passwd_row(&passwd, u);
    let uid = match (u.parse::<u32>(), row) {
        (Ok(n), _) => n,
        (Err(_), Some(r)) => r[2].parse().map_err(|_| IdError::User(u.to_string()))?,
        (Err(_), None) => return Err(IdError::User(u.to_string())),
    };
    let groups = || etc_table(rootfs, "group");
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups()
                .iter()
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| IdError::Group(g.to_string()))?,
        },
        None => row.and_then(|r| r[3].parse().ok()).unwrap_or(0),
    };
    let mut supplementary = Vec::new();
    if let (None, Some(r)) = (g, row) {
        for f in groups().iter().filter(|f| f.len() >= 4) {
            let member = f[3].split(',').any(|m| m == r[0]);
            if let (true, Ok(id)) = (member, f[2].parse::<u32>()) {
                supplementary.push(id);
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        groups: supplementary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_wins_over_args_and_path_is_defaulted() {
        let image: BTreeMap<String, String> = [("A".to_string(), "env".to_string())].into();
        let args: BTreeMap<String, String> = [
            ("A".to_string(), "arg".to_string()),
            ("B".to_string(), "arg".to_string()),
        ]
        .into();
        let env = program_env(image, &args, &Default::default(), "/w");
        assert_eq!(env["A"], "env");
        assert_eq!(env["B"], "arg");
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["PWD"], "/w");
    }

    #[test]
    fn home_comes_from_passwd() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(home_of(d.path(), ""), "/root");
        assert_eq!(home_of(d.path(), "app"), "/home/app");
        assert_eq!(home_of(d.path(), "1000:1000"), "/home/app");
        assert_eq!(home_of(d.path(), "nobody"), "/");
        // Ids as runc gives them to a step's USER.
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:app\nwheel:x:10:root,app\n",
        )
        .unwrap();
        let ids = |u: &str| ids_of(d.path(), u).map(|i| (i.uid, i.gid, i.groups));
        assert_eq!(ids(""), Ok((0, 0, vec![])));
        assert_eq!(ids("app"), Ok((1000, 1000, vec![50, 10])), "member of");
        assert_eq!(ids("1000"), Ok((1000, 1000, vec![50, 10])));
        assert_eq!(ids("2000"), Ok((2000, 0, vec![])), "no entry: group 0");
        assert_eq!(ids("app:staff"), Ok((1000, 50, vec![])), "group named");
        assert_eq!(ids("7:8"), Ok((7, 8, vec![])));
        assert_eq!(ids("root"), Ok((0, 0, vec![10])));
        assert_eq!(ids("nobody"), Err(IdError::User("nobody".into())));
        assert_eq!(ids("app:nogroup"), Err(IdError::Group("nogroup".into())));
        let mut env = BTreeMap::new();
        with_home(&mut env, d.path(), "app");
        assert_eq!(env["HOME"], "/home/app");
        assert_eq!(shell_of(&[]), vec!["/bin/sh", "-c"]);
        assert_eq!(cwd_of(""), "/");
    }
}
