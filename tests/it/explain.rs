//! `wbuild explain`: what a build would do, running nothing — each step
//! cached or not, the first cause of each miss with the changed file's
//! digests and the chain it starts, `--json`, and `--step N` (every input
//! of a key).

use crate::harness;

use harness::Project;
use serde_json::Value;

fn short(body: &str) -> String {
    let d = wbuild::digest::Digest::of(body.as_bytes()).to_string();
    format!("{}…", &d[..7 + 12])
}

fn explain(p: &Project, args: &[&str]) -> String {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    all.push(".");
    let o = p.run(&all);
    assert!(
        o.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const DOCKERFILE: &str = "FROM scratch AS build
ARG MODE=dev
COPY src/ /src/
COPY extra.txt /extra.txt
LABEL mode=$MODE
FROM scratch
COPY --from=build /src/a.c /a.c
";

#[test]
fn explain_names_the_first_cause_and_its_chain_and_runs_nothing() {
    let p = Project::new(&[
        ("Dockerfile", DOCKERFILE),
        ("src/a.c", "int a;\n"),
        ("src/b.c", "int b;\n"),
        ("extra.txt", "x\n"),
    ]);
    // A fresh store: everything would build, and explaining twice
    // records nothing (the build after it still finds no previous build).
    let text = explain(&p, &[]);
    assert!(text.contains("#2 [build 2/5] ARG MODE=dev\n    REBUILD — no previous build → invalidates steps 3–5, stage stage-1"), "{text}");
    assert!(
        text.ends_with("7 step(s): 2 cached, 5 would rebuild (first causes: #2, #7)\n"),
        "{text}"
    );
    explain(&p, &[]);
    let b = p.build(&[]);
    assert!(b.steps[1..5].iter().all(|s| !s.cached), "{:?}", b.steps);
    assert_eq!(b.steps[1].reason, "no previous build");

    // Built: all cached.
    let text = explain(&p, &[]);
    assert!(
        text.ends_with("7 step(s): 7 cached, 0 would rebuild\n"),
        "{text}"
    );

    // One file changed: its COPY is the first cause, with the digests then
    // and now, and the chain it starts; the build then does just that.
    p.write("src/a.c", "int a = 1;\n");
    let text = explain(&p, &[]);
    let cause = format!(
        "#3 [build 3/5] COPY src/ /src/\n    REBUILD — src/a.c content changed (was {}, now {}) → invalidates steps 4–5, stage stage-1\n",
        short("int a;\n"),
        short("int a = 1;\n")
    );
    assert!(text.contains(&cause), "{text}");
    assert!(
        text.contains("#4 [build 4/5] COPY extra.txt /extra.txt\n    rebuild — parent rebuilt\n"),
        "{text}"
    );
    assert!(text.contains("#7 [stage-1 2/2] COPY --from=build /src/a.c /a.c\n    REBUILD — stage build rebuilds first, so this step may"), "{text}");

    let json: Value = serde_json::from_str(&explain(&p, &["--json"])).unwrap();
    let step3 = &json["steps"][2];
    assert_eq!(step3["changed"]["path"], "src/a.c");
    assert_eq!(step3["invalidates"], serde_json::json!([4, 5]));
    assert_eq!(step3["invalidates_stages"], serde_json::json!(["stage-1"]));
    assert_eq!(
        (json["cached"].as_u64(), json["rebuild"].as_u64()),
        (Some(3), Some(4))
    );

    // The key's inputs of step 3: parent key, the instruction, each file
    // with its mode and digest, the platform.
    let inputs = explain(&p, &["--step", "3"]);
    let key = step3["key"].as_str().unwrap();
    assert!(
        inputs.contains(&format!("  key          {key}\n")),
        "{inputs}"
    );
    assert!(inputs.contains("  parent key   sha256:"), "{inputs}");
    let a = wbuild::digest::Digest::of(b"int a = 1;\n");
    assert!(
        inputs.contains(&format!("    src/a.c  file 644 0:0 {a}\n")),
        "{inputs}"
    );
    assert!(inputs.contains("  files read (3):"), "{inputs}");
    let json: Value = serde_json::from_str(&explain(&p, &["--step", "3", "--json"])).unwrap();
    assert_eq!(
        json["inputs"]["files"]["src/a.c"],
        format!("file 644 0:0 {a}")
    );
    // A build arg in scope is an input of the step that uses it.
    let inputs = explain(&p, &["--step", "5"]);
    assert!(inputs.contains("LABEL mode=dev"), "{inputs}");

    let o = p.run(&["explain", "--step", "99", "."]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("the build has steps 1 to 7"),
        "{err}"
    );

    // The build does what explain said.
    let b = p.build(&[]);
    let got: Vec<bool> = b.steps.iter().map(|s| s.cached).collect();
    assert_eq!(got, [true, true, false, false, false, true, false]);
    assert_eq!(b.steps[2].reason, "src/a.c content changed");

    // A build arg: explain takes the build's flags.
    let text = explain(&p, &["--build-arg", "MODE=prod"]);
    assert!(text.contains("REBUILD"), "{text}");
}
