//! Symlinks for RUN steps on a host that keeps a rootfs's links as files
//! holding their target (Windows; see `fs::platform::links_as_files`).
//!
//! The step's links live in `SpawnContext::links` (manifest path →
//! target), which starts as the image's links: `path_symlink` (and wbox's
//! `make-symlink`) write the file and add the link, `path_readlink`
//! answers from the map, `path_unlink_file` and `path_rename` keep the map
//! in step with the tree, and `path_open` refuses to open a link, or a
//! path through one, as the file that holds it (`ENOTSUP`): following a
//! link is not emulated, and reading the target's name as the file's
//! content would be a wrong result. The diff then reads the files back as
//! links (`Snapshot::links`). Everywhere else these calls go straight to
//! wasmtime-wasi.

use std::collections::BTreeMap;

/// Whether `rel` is a link of the map, or lies under one (a path through
/// a link to a directory).
pub fn through_link(links: &BTreeMap<String, String>, rel: &str) -> bool {
    if links.is_empty() {
        return false;
    }
    let mut at = rel.len();
    loop {
        if links.contains_key(&rel[..at]) {
            return true;
        }
        match rel[..at].rfind('/') {
            Some(i) => at = i,
            None => return false,
        }
    }
}

/// After `from` was renamed to `to`: the links at or under `to` are gone
/// (replaced), and those at or under `from` are now under `to`.
pub fn renamed(links: &mut BTreeMap<String, String>, from: &str, to: &str) {
    let under = |p: &str, top: &str| p == top || p.starts_with(&format!("{top}/"));
    links.retain(|p, _| !under(p, to));
    let moved: Vec<String> = links.keys().filter(|p| under(p, from)).cloned().collect();
    for p in moved {
        if let Some(t) = links.remove(&p) {
            links.insert(format!("{to}{}", &p[from.len()..]), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_through_links_and_renames() {
        let mut l: BTreeMap<String, String> = [("lib", "usr/lib"), ("bin/py", "/usr/bin/python3")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert!(through_link(&l, "lib"));
        assert!(through_link(&l, "lib/x/y"));
        assert!(through_link(&l, "bin/py"));
        assert!(!through_link(&l, "libx"));
        assert!(!through_link(&l, "bin"));
        assert!(!through_link(&l, "bin/python"));
        renamed(&mut l, "bin", "sbin");
        assert_eq!(
            l.get("sbin/py").map(String::as_str),
            Some("/usr/bin/python3")
        );
        assert!(!l.contains_key("bin/py"));
        // A rename onto a link replaces it.
        l.insert("a".into(), "t".into());
        renamed(&mut l, "x", "a");
        assert!(!l.contains_key("a"));
    }
}
