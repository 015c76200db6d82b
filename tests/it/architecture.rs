//! The module tree keeps its shape: no import cycles between the rooms of
//! `engine/src` (a room is a top-level module; `crate::x` in a room's
//! code, tests aside, is an edge to room `x`), and no code points at files
//! outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Room → the rooms its non-test code names.
fn room_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let room = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(room.as_str(), "main" | "cli" | "lib") {
            continue; // the binary and the crate root sit above every room
        }
        let text = fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let deps = graph.entry(room.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != room {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for d in graph.get(last).into_iter().flatten() {
            if d == start {
                let mut c = path.clone();
                c.push(d.clone());
                return Some(c);
            }
            if seen.insert(d.clone()) {
                let mut p = path.clone();
                p.push(d.clone());
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn the_rooms_have_no_import_cycles() {
    let graph = room_graph();
    assert!(
        graph.contains_key("solve") && graph.contains_key("oci"),
        "{graph:?}"
    );
    for room in graph.keys() {
        if let Some(c) = cycle_from(&graph, room) {
            panic!("import cycle: {}", c.join(" → "));
        }
    }
    // The flow's lower rooms never reach up to the solver.
    for low in ["store", "cache", "fs", "oci", "sandbox", "env", "export"] {
        assert!(
            !graph[low].contains("solve") && !graph[low].contains("build"),
            "{low} uses {:?}",
            graph[low]
        );
    }
    assert!(graph["env"].is_empty(), "env is a leaf: {:?}", graph["env"]);
}

#[test]
fn no_code_points_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for d in [
        "engine/src",
        "guest-toolchain/wbox",
        "tests/guests",
        "benches",
        "docs",
    ] {
        let dir = root.join(d);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    files.push(root.join("docs/architecture.md"));
    files.push(root.join("engine/src/lib.rs"));
    for f in files {
        let text = fs::read_to_string(&f).unwrap_or_default();
        assert!(
            !text.contains("shared/design"),
            "{} points at shared/design",
            f.display()
        );
    }
}

/// The build script's wasmtime (engine/build.rs precompiles wbox with it)
/// is the engine's own: the same version, and resolver 1, which gives it
/// the same features on the build side as on the normal side. With
/// resolver 2 their features differed deep in the graph and Cargo built
/// wasmtime and Cranelift twice, half again the test build's time.
#[test]
fn the_build_scripts_wasmtime_is_built_once_with_the_engines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let resolver: Vec<&str> = workspace
        .lines()
        .filter(|l| l.trim_start().starts_with("resolver"))
        .collect();
    assert_eq!(
        resolver,
        ["resolver = \"1\""],
        "the workspace must use resolver 1 (see the comment above it)"
    );
    let engine = fs::read_to_string(root.join("engine/Cargo.toml")).unwrap();
    let wasmtime: BTreeSet<&str> = engine
        .lines()
        .filter(|l| l.starts_with("wasmtime = "))
        .collect();
    assert_eq!(
        wasmtime.len(),
        1,
        "build.rs must precompile with the wasmtime the engine runs: {wasmtime:?}"
    );
}
