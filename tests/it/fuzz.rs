//! The fuzz targets' entry points (`wbuild::fuzz`), run on stable with a
//! fixed seed and a bounded count: mutations of real Dockerfiles and
//! ignore files (the examples, and BuildKit's parser test files where
//! they are present, and the corpus kept in `fuzz/corpus/`) must never
//! panic. `fuzz/` runs the same entry points under cargo-fuzz for
//! open-ended, coverage-guided runs; what those find goes into
//! `fuzz/corpus/<target>/`, which cargo-fuzz reads by default and this
//! test replays.

use std::fs;
use std::path::Path;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes Dockerfile readers treat specially.
const TOKENS: &[&[u8]] = &[
    b"\\",
    b"\\\n",
    b"`",
    b"$",
    b"${",
    b"}",
    b"${A:-",
    b"${A:+x}",
    b"<<",
    b"<<-EOF\n",
    b"EOF",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"[\"a\",",
    b"\n",
    b"\r\n",
    b"#",
    b"# escape=`\n",
    b"# syntax=x\n",
    b"--mount=type=bind,",
    b"--from=",
    b"AS ",
    b"FROM ",
    b"RUN ",
    b"COPY ",
    b"ARG ",
    b"ENV ",
    b"ONBUILD ",
    b"HEALTHCHECK ",
    b"!",
    b"**",
    b"*",
    b"?",
    b"/",
    b"..",
    b"\xff",
    b"\xc3\xa9",
    b"\0",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 if at < v.len() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(64)).min(v.len());
                let copy = v[at..end].to_vec();
                v.splice(at..at, copy);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    let mut add_dir = |dir: &Path| {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() {
                    stack.push(p);
                } else if name.contains("Dockerfile")
                    || name == ".dockerignore"
                    || d.ancestors().any(|a| a.ends_with("fuzz/corpus"))
                {
                    out.push(fs::read(&p).unwrap());
                }
            }
        }
    };
    add_dir(&root.join("examples"));
    add_dir(&root.join("fuzz/corpus"));
    let corpus = root.join("../shared/corpus/buildkit/parser-testfiles");
    if corpus.is_dir() {
        add_dir(&corpus);
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is absent (CI=true: it is beside the repo there)",
            corpus.display()
        );
        println!(
            "notice: {} is absent; fuzzing the examples only",
            corpus.display()
        );
    }
    out.sort();
    out
}

#[test]
fn mutated_dockerfiles_and_ignore_files_never_panic() {
    let seeds = seeds();
    assert!(seeds.len() >= 8, "{} seeds", seeds.len());
    let mut rng = Rng(0x5eed);
    let mut runs = 0;
    for seed in &seeds {
        for _ in 0..300 {
            let input = mutate(seed, &mut rng);
            let ok = std::panic::catch_unwind(|| {
                wbuild::fuzz::dockerfile(&input);
                wbuild::fuzz::dockerignore(&input);
            });
            assert!(
                ok.is_ok(),
                "panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
            runs += 1;
        }
    }
    println!("fuzz: {runs} inputs from {} seeds", seeds.len());
}
