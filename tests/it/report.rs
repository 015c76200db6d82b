//! The HTML build report: Chromium (headless) loads it and the test reads
//! the DOM it built — every step, its status word, its reason, the changed
//! file with its digests then and now — and proves the page asks nothing
//! of any network (a proxy on 127.0.0.1 that must see no request, checked
//! against a page that does make one). Screenshots land in the test's
//! output folder.

use crate::harness;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::Project;

/// Chromium, or None (a notice; under CI=true a failure).
fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser"] {
        if harness::have_tool(c, &["--version"]) {
            return Some(c);
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "chromium is missing: .ci/run installs it"
    );
    eprintln!("notice: chromium is not installed; the report's browser checks are skipped");
    None
}

/// Hosts Chromium itself talks to, whatever page it shows.
const CHROMIUM_OWN: &[&str] = &[
    "accounts.google.com",
    "clients2.google.com",
    "www.google.com",
    "update.googleapis.com",
    "safebrowsingohttpgateway.googleapis.com",
];

/// Runs headless Chromium on `page` with every request sent to a proxy on
/// 127.0.0.1; returns its output and how many connections the proxy saw.
fn browse(chromium: &str, page: &Path, args: &[&str]) -> (String, usize) {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    // The proxy answers every request at once (502), so a page that asks
    // still finishes loading, and keeps the first line of each.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let kept = seen.clone();
    proxy.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let server = std::thread::spawn(move || {
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut c, _)) = proxy.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            let _ = c.set_nonblocking(false);
            let _ = c.set_read_timeout(Some(std::time::Duration::from_millis(500)));
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let _ = c.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            kept.lock().unwrap().push(line);
        }
    });
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-component-extensions-with-background-pages",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,InterestFeedContentSuggestions",
            "--no-pings",
            "--no-default-browser-check",
            "--metrics-recording-only",
            "--safebrowsing-disable-auto-update",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--proxy-server=http://127.0.0.1:{port}"))
        .arg("--proxy-bypass-list=<-loopback>")
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut count = 0;
    for line in seen.lock().unwrap().iter() {
        // Chromium's own services (sign-in, its clock), which no flag
        // fully silences, are not the page's requests.
        let host = line
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .trim_start_matches("http://")
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        if CHROMIUM_OWN.contains(&host) {
            eprintln!("chromium itself asked: {line}");
        } else {
            eprintln!("the proxy saw: {line}");
            count += 1;
        }
    }
    (String::from_utf8_lossy(&out.stdout).into_owned(), count)
}

/// Where this test's screenshots go.
fn output_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_report_shows_every_step_and_why_and_loads_nothing() {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch AS build\nARG MODE=dev\nCOPY src/ /src/\nLABEL mode=$MODE\nFROM scratch\nCOPY --from=build /src/a.c /a.c\nCOPY notes.txt /notes.txt\n",
        ),
        ("src/a.c", "int a;\n"),
        ("src/b.c", "int b;\n"),
        ("notes.txt", "notes\n"),
    ]);
    p.build(&[]);
    p.write("src/a.c", "int a = 2;\n");
    let html = p.path("report.html");
    let html_arg = html.to_str().unwrap().to_string();
    p.build(&["--report", &html_arg]);
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: no script, and nothing fetched by any element.
    for never in ["<script", "src=", "@import", "<link", "<iframe"] {
        assert!(!page.contains(never), "the page holds {never}");
    }
    // url() only for the page's own fragments (the graph's arrowhead).
    assert!(page
        .match_indices("url(")
        .all(|(i, _)| page[i + 4..].starts_with('#')));
    assert!(page.contains("Content-Security-Policy"));
    // `wbuild report` gives the same page from the store.
    let o = p.run(&["report"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), page);

    let Some(chromium) = chromium() else {
        return;
    };
    let (dom, requests) = browse(chromium, &html, &["--dump-dom"]);
    assert_eq!(requests, 0, "the report made network requests");
    // Every step, with its status in words.
    for step in [
        "ARG MODE=dev",
        "COPY src/ /src/",
        "LABEL mode=dev",
        "COPY --from=build /src/a.c /a.c",
        "COPY notes.txt /notes.txt",
    ] {
        assert!(dom.contains(step), "{step} is not on the page:\n{dom}");
    }
    assert!(
        dom.contains("✓ cached") && dom.contains("↻ rebuilt"),
        "{dom}"
    );
    // The rebuilt COPY: its reason, and the changed file then and now.
    assert!(dom.contains("src/a.c content changed"), "{dom}");
    let was = wbuild::digest::Digest::of(b"int a;\n");
    let now = wbuild::digest::Digest::of(b"int a = 2;\n");
    assert!(dom.contains("<code>file src/a.c</code>"), "{dom}");
    assert!(
        dom.contains(&was.to_string()) && dom.contains(&now.to_string()),
        "{dom}"
    );
    // The graph and the totals.
    assert!(
        dom.contains("id=\"graph\"") && dom.contains("reads build (COPY --from"),
        "{dom}"
    );
    assert!(dom.contains("Bytes reused"), "{dom}");

    // A control: the same check sees a page that does ask the network.
    let control = p.path("control.html");
    std::fs::write(
        &control,
        "<!doctype html><img src=\"http://wbuild-report-test.invalid/x.png\">",
    )
    .unwrap();
    let (_, requests) = browse(chromium, &control, &["--dump-dom"]);
    assert!(
        requests > 0,
        "the proxy check sees nothing: it proves nothing"
    );

    // Screenshots, wide and at phone width.
    let out = output_dir();
    for (name, size) in [
        ("report.png", "1000,1400"),
        ("report-phone.png", "390,1400"),
    ] {
        let shot = out.join(name);
        let _ = std::fs::remove_file(&shot);
        browse(
            chromium,
            &html,
            &[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={size}"),
            ],
        );
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}");
        eprintln!("screenshot: {}", shot.display());
    }
}

#[test]
fn a_failed_build_has_its_report_too() {
    let p =
        Project::with_dockerfile("FROM scratch\nCOPY here.txt /here.txt\nCOPY missing.txt /x\n");
    p.write("here.txt", "here\n");
    let html = p.path("failed.html");
    let err = p.fails(&["--report", html.to_str().unwrap()]);
    assert!(err.contains("missing.txt"), "{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("✗ build failed:"), "{page}");
    assert!(page.contains("data-status=\"failed\""), "{page}");
    assert!(page.contains("data-status=\"rebuilt\""), "{page}");
    // And the store keeps it as the last build's.
    let o = p.run(&["report"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), page);
    // A build that fails before its first step (a Dockerfile that does
    // not parse, an image that cannot be pulled) has one too, with the
    // error.
    for (dockerfile, says) in [
        ("FROM scratch\nNOSUCH x\n", "NOSUCH"),
        ("FROM 127.0.0.1:9/none/such:1\n", "127.0.0.1:9"),
    ] {
        p.write("Dockerfile", dockerfile);
        let early = p.path("early.html");
        let _ = std::fs::remove_file(&early);
        let err = p.fails(&["--report", early.to_str().unwrap()]);
        assert!(err.contains(says), "{err}");
        let page = std::fs::read_to_string(&early).unwrap();
        assert!(
            page.contains("✗ build failed:") && page.contains(says),
            "{page}"
        );
    }
    // A store with no build has none, and says so.
    let fresh = tempfile::tempdir().unwrap();
    let o = harness::wbuild(p.dir.path(), fresh.path(), &["report"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("run a build first"),
        "{err}"
    );
}
