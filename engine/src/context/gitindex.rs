//! The executable bits git records for a work tree's files, read from its
//! index (`.git/index`, versions 2 to 4), for hosts whose filesystems have
//! no permission bits (Windows): there, a context inside a git work tree
//! gets 0755 for what git calls executable (mode 100755), so it gives the
//! image a Linux checkout gives. Git on such hosts keeps the bit in its
//! index for this very reason (`core.fileMode=false`).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The work tree holding `dir` and the path of `dir` inside it (`""` at
/// its top, else `a/b/`), with the index file git keeps for it. `None`
/// when `dir` is not in a work tree.
pub fn find(dir: &Path) -> Option<(String, PathBuf)> {
    let mut inside = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let dot_git = d.join(".git");
        let git_dir = if dot_git.is_dir() {
            Some(dot_git)
        } else if dot_git.is_file() {
            // A linked work tree or a submodule: `gitdir: <path>`.
            let text = fs::read_to_string(&dot_git).ok()?;
            let to = text.strip_prefix("gitdir:")?.trim();
            Some(d.join(to))
        } else {
            None
        };
        if let Some(g) = git_dir {
            inside.reverse();
            let prefix: String = inside.iter().map(|p: &String| format!("{p}/")).collect();
            return Some((prefix, g.join("index")));
        }
        inside.push(d.file_name()?.to_string_lossy().into_owned());
        cur = d.parent();
    }
    None
}

/// The paths (relative to the work tree, `/`-separated) that the index
/// records as executable files. An index this cannot read gives an error
/// naming what is wrong.
pub fn executables(index: &Path) -> Result<HashSet<String>, IndexError> {
    let path = || crate::paths::shown(index);
    let bytes = fs::read(index).map_err(|error| IndexError::Read {
        path: path(),
        error,
    })?;
    parse(&bytes).map_err(|problem| IndexError::Bad {
        path: path(),
        problem,
    })
}

/// A git index wbuild cannot read, and where it is.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {problem}")]
    Bad { path: String, problem: IndexProblem },
}

/// What is wrong with a git index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexProblem {
    #[error("the index is cut short")]
    Short,
    #[error("not a git index (no DIRC signature)")]
    NotAnIndex,
    #[error("git index version {0} is not one wbuild reads (2 to 4)")]
    Version(u32),
    #[error("a name in the index has no end")]
    NameUnended,
    #[error("a name in the index strips too much")]
    StripsTooMuch,
    #[error("a name in the index disagrees with its length")]
    NameLength,
}

fn parse(b: &[u8]) -> Result<HashSet<String>, IndexProblem> {
    let u32_at = |at: usize| -> Result<u32, IndexProblem> {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or(IndexProblem::Short)
    };
    if b.get(..4) != Some(b"DIRC") {
        return Err(IndexProblem::NotAnIndex);
    }
    let version = u32_at(4)?;
    if !(2..=4).contains(&version) {
        return Err(IndexProblem::Version(version));
    }
    let count = u32_at(8)? as usize;
    let mut at = 12;
    let mut out = HashSet::new();
    let mut prev: Vec<u8> = Vec::new();
    for _ in 0..count {
        // ctime, mtime (8 each), dev, ino, then the mode.
        let mode = u32_at(at + 24)?;
        // uid, gid, size (4 each), the object id, then the flags. A SHA-1
        // id is 20 bytes; an index with SHA-256 ids has 32.
        let flags_at = at + 40 + 20;
        let flags = b
            .get(flags_at..flags_at + 2)
            .map(|s| u16::from_be_bytes([s[0], s[1]]))
            .ok_or(IndexProblem::Short)?;
        let mut name_at = flags_at + 2;
        if version >= 3 && flags & 0x4000 != 0 {
            name_at += 2;
        }
        let name_len_hint = (flags & 0x0fff) as usize;
        let name: Vec<u8>;
        if version == 4 {
            // The name is the previous one less N bytes, plus a suffix.
            let (strip, used) = varint(&b[name_at.min(b.len())..])?;
            let start = name_at + used;
            let end = start
                + b[start.min(b.len())..]
                    .iter()
                    .position(|&c| c == 0)
                    .ok_or(IndexProblem::NameUnended)?;
            let keep = prev
                .len()
                .checked_sub(strip)
                .ok_or(IndexProblem::StripsTooMuch)?;
            let mut n = prev[..keep].to_vec();
            n.extend_from_slice(&b[start..end]);
            name = n;
            at = end + 1;
        } else {
            let end = name_at
                + b[name_at.min(b.len())..]
                    .iter()
                    .position(|&c| c == 0)
                    .ok_or(IndexProblem::NameUnended)?;
            name = b[name_at..end].to_vec();
            if name_len_hint < 0x0fff && name.len() != name_len_hint {
                return Err(IndexProblem::NameLength);
            }
            // Entries are padded with 1 to 8 NULs to a multiple of 8.
            let len = end - at;
            at += (len + 8) & !7;
        }
        if mode == 0o100755 {
            out.insert(String::from_utf8_lossy(&name).into_owned());
        }
        prev = name;
    }
    Ok(out)
}

/// Git's offset varint (index version 4).
fn varint(b: &[u8]) -> Result<(usize, usize), IndexProblem> {
    let mut i = 0;
    let mut c = *b.first().ok_or(IndexProblem::Short)?;
    let mut val = (c & 127) as usize;
    while c & 128 != 0 {
        i += 1;
        c = *b.get(i).ok_or(IndexProblem::Short)?;
        val = ((val + 1) << 7) | (c & 127) as usize;
    }
    Ok((val, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A real git makes the index, in each version wbuild reads.
    #[test]
    fn reads_the_executable_bits_git_records() {
        if Command::new("git").arg("--version").output().is_err() {
            println!("notice: git is not installed; the index reader is not checked");
            return;
        }
        for version in ["2", "3", "4"] {
            let d = tempfile::tempdir().unwrap();
            let git = |args: &[&str]| {
                let o = Command::new("git")
                    .args(args)
                    .current_dir(d.path())
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            };
            git(&["init", "-q"]);
            fs::create_dir_all(d.path().join("sub/deeper")).unwrap();
            for f in [
                "a.txt",
                "run.sh",
                "sub/deeper/tool",
                "sub/deeper/tool.txt",
                "sub/x",
            ] {
                fs::write(d.path().join(f), "x").unwrap();
            }
            git(&["add", "."]);
            git(&["update-index", "--chmod=+x", "run.sh", "sub/deeper/tool"]);
            git(&["update-index", "--index-version", version]);
            let (prefix, index) = find(&d.path().join("sub/deeper")).unwrap();
            assert_eq!(prefix, "sub/deeper/");
            let exe = executables(&index).unwrap();
            let want: HashSet<String> = ["run.sh", "sub/deeper/tool"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(exe, want, "index version {version}");
        }
    }

    #[test]
    fn a_damaged_index_is_an_error() {
        assert_eq!(parse(b"DIRX"), Err(IndexProblem::NotAnIndex));
        assert_eq!(
            parse(b"DIRC\0\0\0\x05\0\0\0\0"),
            Err(IndexProblem::Version(5))
        );
        assert_eq!(parse(b"DIRC\0\0\0\x02\0\0\0\x01"), Err(IndexProblem::Short));
        assert!(find(Path::new("/")).is_none());
    }
}
