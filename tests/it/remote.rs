//! Remote sources: `ADD <http(s) URL>` against an HTTP server the test
//! starts on 127.0.0.1 (ETags, Last-Modified, redirects, a 404, a slow
//! answer, a body that does not match `--checksum`). No test reaches any
//! other address.

use crate::harness;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use harness::Project;

/// What the server serves at a path: a body with an ETag, a redirect, or
/// an answer that comes too late.
#[derive(Clone)]
enum Page {
    File {
        body: Vec<u8>,
        etag: String,
    },
    Redirect(String),
    Slow,
    /// Bytes without end (no Content-Length).
    Endless,
    /// A Content-Length of a terabyte, then a few bytes.
    Huge,
    /// A trickle: one byte a second, forever (the stall timeout never
    /// fires, the size bound does).
    Trickle,
}

/// An HTTP/1.1 server on 127.0.0.1, for as long as it lives; it records
/// each request's path and conditional header.
struct Server {
    port: u16,
    pages: Arc<Mutex<HashMap<String, Page>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pages: Arc<Mutex<HashMap<String, Page>>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (p, l) = (pages.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (p, l) = (p.clone(), l.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut first = String::new();
                    if r.read_line(&mut first).is_err() {
                        return;
                    }
                    let path = first.split(' ').nth(1).unwrap_or("/").to_string();
                    let mut if_none = None;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("if-none-match") {
                                if_none = Some(v.trim().to_string());
                            }
                        }
                    }
                    l.lock()
                        .unwrap()
                        .push(format!("{path} {}", if_none.clone().unwrap_or_default()));
                    let page = p.lock().unwrap().get(&path).cloned();
                    let reply = match page {
                        Some(Page::File { etag, .. }) if if_none.as_deref() == Some(etag.as_str()) => {
                            format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n").into_bytes()
                        }
                        Some(Page::File { body, etag }) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nETag: {etag}\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&body);
                            r
                        }
                        Some(Page::Redirect(to)) => {
                            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
                        }
                        Some(Page::Slow) => {
                            std::thread::sleep(std::time::Duration::from_secs(5));
                            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlate".to_vec()
                        }
                        Some(Page::Endless) => {
                            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                            let chunk = vec![b'y'; 1 << 16];
                            while conn.write_all(&chunk).is_ok() {}
                            return;
                        }
                        Some(Page::Huge) => {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\nConnection: close\r\n\r\nsome".to_vec()
                        }
                        Some(Page::Trickle) => {
                            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                            while conn.write_all(&[b'y'; 4096]).is_ok() {
                                std::thread::sleep(std::time::Duration::from_millis(200));
                            }
                            return;
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&reply);
                    let _ = r.read(&mut [0u8; 1]);
                });
            }
        });
        Server { port, pages, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&self, path: &str, page: Page) {
        self.pages.lock().unwrap().insert(path.to_string(), page);
    }

    fn file(&self, path: &str, body: &str, etag: &str) {
        self.bytes(path, body.as_bytes(), etag);
    }

    fn bytes(&self, path: &str, body: &[u8], etag: &str) {
        self.serve(
            path,
            Page::File {
                body: body.to_vec(),
                etag: format!("\"{etag}\""),
            },
        );
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn sha256(s: &str) -> String {
    wbuild::digest::Digest::of(s.as_bytes()).to_string()
}

#[test]
fn add_from_a_url_revalidates_and_keys_on_the_content() {
    let srv = Server::start();
    srv.file("/files/tool.sh", "echo v1\n", "v1");
    let p = Project::with_dockerfile(&format!(
        "FROM scratch\nADD {} /opt/\n",
        srv.url("/files/tool.sh")
    ));
    let out = p.store.path().join("out");
    let b = p.build(&["-o", &format!("type=local,dest={}", out.display())]);
    assert!(!b.steps[1].cached, "{:?}", b.steps);
    assert_eq!(
        std::fs::read_to_string(out.join("opt/tool.sh")).unwrap(),
        "echo v1\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("opt/tool.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "a downloaded file is 0600, as in BuildKit"
        );
    }
    assert_eq!(srv.requests(), vec!["/files/tool.sh ".to_string()]);

    // Unchanged: a conditional request, a 304, and the step stays cached.
    let b = p.build(&[]);
    assert!(b.steps[1].cached, "{:?}", b.steps);
    assert_eq!(srv.requests(), vec!["/files/tool.sh \"v1\"".to_string()]);

    // A new ETag with the same bytes: fetched again, still cached (the key
    // follows the content).
    srv.file("/files/tool.sh", "echo v1\n", "v1-again");
    assert!(p.build(&[]).steps[1].cached);

    // New content: rebuilt, and the reason names the URL.
    srv.file("/files/tool.sh", "echo v2\n", "v2");
    let b = p.build(&[]);
    assert!(!b.steps[1].cached);
    assert!(
        b.steps[1].reason == format!("{} content changed", srv.url("/files/tool.sh")),
        "{:?}",
        b.steps
    );

    // --chmod, a redirect, and URLs whose path ends in `/` (named as
    // BuildKit's frontend names them: Go's path.Base) or is only `/`.
    srv.serve("/moved", Page::Redirect(srv.url("/files/tool.sh")));
    srv.file("/dir/", "index\n", "i");
    srv.file("/", "root\n", "r");
    p.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD --chmod=755 {} /bin/tool\nADD {} /d/\nADD {} /d/\n",
            srv.url("/moved"),
            srv.url("/dir/"),
            srv.url("/")
        ),
    );
    let b = p.build(&["-o", &format!("type=local,dest={}", out.display())]);
    assert_eq!(
        std::fs::read_to_string(out.join("bin/tool")).unwrap(),
        "echo v2\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("d/dir")).unwrap(),
        "index\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("d/__unnamed__")).unwrap(),
        "root\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    drop(b);

    // The downloads are records the GC and prune see: `prune --all` drops
    // them, and the next build asks without a condition.
    let records = || std::fs::read_dir(p.store.path().join("http")).map_or(0, |d| d.count());
    assert_eq!(records(), 4);
    let o = p.run(&["prune", "--all"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(records(), 0);
    srv.requests();
    p.build(&[]);
    assert!(
        srv.requests().iter().all(|r| r.ends_with(' ')),
        "unconditional"
    );
}

#[test]
fn add_with_a_checksum_needs_no_network_once_stored_and_refuses_other_bytes() {
    let srv = Server::start();
    srv.file("/a.txt", "pinned\n", "a");
    let p = Project::with_dockerfile(&format!(
        "FROM scratch\nADD --checksum={} {} /a.txt\n",
        sha256("pinned\n"),
        srv.url("/a.txt")
    ));
    assert!(!p.build(&[]).steps[1].cached);
    assert_eq!(srv.requests().len(), 1);
    // The key needs no request, and the stored bytes serve the layer.
    assert!(p.build(&["--no-cache"]).steps[1]
        .reason
        .contains("--no-cache"));
    assert!(
        srv.requests().is_empty(),
        "no request once the bytes are stored"
    );

    // Other bytes than the checksum: a clear failure, nothing stored.
    let q = Project::with_dockerfile(&format!(
        "FROM scratch\nADD --checksum={} {} /a.txt\n",
        sha256("something else\n"),
        srv.url("/a.txt")
    ));
    let err = q.fails(&[]);
    assert!(
        err.contains("checksum mismatch") && err.contains(&sha256("pinned\n")),
        "{err}"
    );
    // --checksum on a local file is an error, as in BuildKit.
    q.write("local.txt", "x");
    q.write(
        "Dockerfile",
        &format!("FROM scratch\nADD --checksum={} local.txt /\n", sha256("x")),
    );
    assert!(q.fails(&[]).contains("only to http(s) URL and git sources"));
}

#[test]
fn unreachable_missing_and_slow_urls_fail_clearly() {
    let srv = Server::start();
    srv.serve("/slow", Page::Slow);
    let p = Project::with_dockerfile(&format!("FROM scratch\nADD {} /\n", srv.url("/missing")));
    let err = p.fails(&[]);
    assert!(err.contains("404") && err.contains("/missing"), "{err}");

    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    p.write(
        "Dockerfile",
        &format!("FROM scratch\nADD http://127.0.0.1:{closed}/x /\n"),
    );
    let err = p.fails(&[]);
    assert!(
        err.contains("cannot fetch") && err.contains("127.0.0.1"),
        "{err}"
    );

    // Slower than the timeout.
    p.write(
        "Dockerfile",
        &format!("FROM scratch\nADD {} /\n", srv.url("/slow")),
    );
    let o = harness::wbuild_with(
        p.dir.path(),
        p.store.path(),
        &["build", "--progress", "plain", "."],
        &[("WBUILD_HTTP_TIMEOUT", "1")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("sent nothing for 1 s (WBUILD_HTTP_TIMEOUT)"),
        "{err}"
    );
}

/// Downloads and unpacks stop at a bound: `--max-download`, or the
/// store's free disk space (less a margin), checked against a
/// Content-Length before anything is written and against the bytes as
/// they come; an archive that unpacks to more (a gzip bomb) stops too.
/// A download that keeps moving, however slowly, is not a stall.
#[test]
fn downloads_and_unpacks_stop_at_their_bound() {
    let srv = Server::start();
    srv.serve("/endless", Page::Endless);
    srv.serve("/huge", Page::Huge);
    srv.serve("/trickle", Page::Trickle);
    let p = Project::with_dockerfile(&format!("FROM scratch\nADD {} /x\n", srv.url("/endless")));
    let err = p.fails(&["--max-download", "10MB"]);
    assert!(
        err.contains("the download is more than 10.0 MiB (--max-download 10.0 MiB)"),
        "{err}"
    );
    // Nothing of it stays in the store.
    let blobs: u64 = std::fs::read_dir(p.store.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(blobs < 1 << 20, "{blobs} bytes of blobs");
    // A terabyte by its Content-Length: refused before a byte is written,
    // by the free disk space alone.
    p.write(
        "Dockerfile",
        &format!("FROM scratch\nADD {} /x\n", srv.url("/huge")),
    );
    let err = p.fails(&[]);
    assert!(
        err.contains("by its Content-Length) is more than") && err.contains("free"),
        "{err}"
    );
    // A trickle is no stall: the size bound stops it.
    p.write(
        "Dockerfile",
        &format!("FROM scratch\nADD {} /x\n", srv.url("/trickle")),
    );
    let o = harness::wbuild_with(
        p.dir.path(),
        p.store.path(),
        &[
            "build",
            "--progress",
            "plain",
            "--max-download",
            "16KB",
            ".",
        ],
        &[("WBUILD_HTTP_TIMEOUT", "1")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is more than 16.0 KiB"),
        "{err}"
    );
    // A gzip bomb: 16 MiB of zeros in a small archive.
    let mut raw = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(16 << 20);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    raw.append_data(&mut h, "zeros", std::io::repeat(0).take(16 << 20))
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw.into_inner().unwrap()).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    std::fs::write(p.path("bomb.tar.gz"), &bomb).unwrap();
    p.write("Dockerfile", "FROM scratch\nADD bomb.tar.gz /x/\n");
    let err = p.fails(&["--max-download", "8MB"]);
    assert!(
        err.contains("what the archive unpacks to is more than 8.0 MiB"),
        "{err}"
    );
    // The same from a URL with --unpack.
    srv.bytes("/bomb.tar.gz", &bomb, "b1");
    p.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD --unpack=true {} /x/\n",
            srv.url("/bomb.tar.gz")
        ),
    );
    let err = p.fails(&["--max-download", "8MB"]);
    assert!(err.contains("is more than 8.0 MiB"), "{err}");
}

/// A gzip'd tarball of these files.
fn tarball(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    for (path, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, path, body.as_bytes()).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

/// A tarball URL as the build context, as `docker buildx build URL` takes
/// it (fetched, revalidated, unpacked); a plain file as the Dockerfile with
/// an empty context; a tarball as a named context; a git URL refused
/// clearly, for now.
#[test]
fn remote_contexts_from_tarball_urls() {
    let srv = Server::start();
    srv.bytes(
        "/ctx.tar.gz",
        &tarball(&[
            (
                "Dockerfile",
                "FROM scratch\nCOPY a.txt /a.txt\nCOPY --from=extra b.txt /b.txt\n",
            ),
            ("a.txt", "from the tarball\n"),
        ]),
        "c1",
    );
    srv.bytes("/extra.tar.gz", &tarball(&[("b.txt", "named\n")]), "e1");
    srv.file("/Dockerfile", "FROM scratch\nLABEL from=url\n", "d1");
    let p = Project::with_dockerfile("FROM scratch\n");
    let out = p.store.path().join("out");
    let build = |args: &[&str]| {
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        p.run(&all)
    };
    let extra = format!("extra={}", srv.url("/extra.tar.gz"));
    let ctx = srv.url("/ctx.tar.gz");
    let dest = format!("type=local,dest={}", out.display());
    let o = build(&["--build-context", &extra, "-o", &dest, &ctx]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(out.join("a.txt")).unwrap(),
        "from the tarball\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("b.txt")).unwrap(),
        "named\n"
    );
    // Again: revalidated (a 304), and every step cached.
    srv.requests();
    let o = build(&["--build-context", &extra, &ctx]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && log.contains("3 cached, 0 rebuilt"),
        "{log}"
    );
    assert!(
        srv.requests().iter().all(|r| r.contains('"')),
        "conditional requests"
    );

    // A URL that is not an archive is the Dockerfile.
    let o = build(&[&srv.url("/Dockerfile")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Runs git in `dir`, with an identity of its own.
fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A bare repository (`repo.git`) whose main has one commit, tagged v1
/// (an executable, a symlink, a subdir), and the work tree it came from.
fn repository() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("README"), "readme\n").unwrap();
    std::fs::write(work.join("src/lib.txt"), "lib v1\n").unwrap();
    std::fs::write(work.join("run.sh"), "#!/bin/sh\n").unwrap();
    git(&work, &["init", "-q"]);
    #[cfg(unix)]
    std::os::unix::fs::symlink("README", work.join("link")).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["update-index", "--chmod=+x", "run.sh"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "v1"]);
    let bare = t.path().join("repo.git");
    git(t.path(), &["clone", "-q", "--bare", "work", "repo.git"]);
    (t, work, bare)
}

/// `ADD <git repository>` from file:// and from `git daemon` on
/// 127.0.0.1: tags, branches, subdirs; the key is the commit, so a moved
/// branch rebuilds and says so; a wrong --checksum and an unknown ref fail
/// clearly.
#[test]
fn add_from_git_repositories() {
    if !harness::have_tool("git", &["--version"]) {
        return;
    }
    let (_t, work, bare) = repository();
    let url = format!("file://{}", bare.display());
    // The repository as a build context: the Dockerfile is the repo's.
    std::fs::write(
        work.join("Dockerfile"),
        "FROM scratch\nCOPY src/ /from-ctx/\n",
    )
    .unwrap();
    git(&work, &["add", "Dockerfile"]);
    git(&work, &["commit", "-q", "-m", "dockerfile"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let p = Project::with_dockerfile("FROM scratch\n");
    let o = p.run(&[
        "build",
        "--progress",
        "plain",
        &format!("file://{}#main", bare.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = Project::with_dockerfile(&format!(
        "FROM scratch\nADD {url}#v1 /src/\nADD {url}#main:src /lib/\n"
    ));
    let out = p.store.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let b = p.build(&["-o", &dest]);
    assert_eq!(
        std::fs::read_to_string(out.join("src/README")).unwrap(),
        "readme\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("lib/lib.txt")).unwrap(),
        "lib v1\n"
    );
    assert!(!out.join("lib/README").exists() && !out.join("src/.git").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("src/run.sh"), mode("src/README")), (0o755, 0o644));
        assert_eq!(
            std::fs::read_link(out.join("src/link")).unwrap().to_str(),
            Some("README")
        );
    }
    let first = b.digest();
    // Nothing moved: all cached, the same image.
    let b = p.build(&[]);
    assert!(b.steps.iter().all(|s| s.cached), "{:?}", b.steps);
    assert_eq!(b.digest(), first);

    // main moves: its step rebuilds and says from where to where; v1's
    // does not.
    let old = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("src/lib.txt"), "lib v2\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    let new = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let b = p.build(&["-o", &dest]);
    assert!(b.steps[1].cached, "{:?}", b.steps);
    assert_eq!(
        b.steps[2].reason,
        format!("git ref main moved ({} → {})", &old[..7], &new[..7])
    );
    assert_eq!(
        std::fs::read_to_string(out.join("lib/lib.txt")).unwrap(),
        "lib v2\n"
    );

    // A pinned commit that is not where the ref is, and an unknown ref.
    p.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD --checksum={} {url}#main /x/\n",
            &old[..12]
        ),
    );
    let err = p.fails(&[]);
    assert!(
        err.contains("checksum mismatch") && err.contains(&new),
        "{err}"
    );
    p.write("Dockerfile", &format!("FROM scratch\nADD {url}#nope /x/\n"));
    assert!(p.fails(&[]).contains("unknown ref \"nope\""));

    // The same repository through git daemon on 127.0.0.1.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = bare.parent().unwrap();
    let _daemon = GitDaemon::start(base, port);
    p.write(
        "Dockerfile",
        &format!("FROM scratch\nADD git://127.0.0.1:{port}/repo.git?tag=v1&subdir=src /d/\n"),
    );
    let b = p.build(&["-o", &dest]);
    assert_eq!(
        std::fs::read_to_string(out.join("d/lib.txt")).unwrap(),
        "lib v1\n"
    );
    drop(b);
    // The store's repositories are GC items of BuildKit's type for them.
    assert!(p.store.path().join("git").read_dir().unwrap().count() > 0);
    let o = p.run(&["prune", "--filter", "type=source.git.checkout", "--verbose"]);
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && text.contains("git repository"),
        "{text}"
    );
    assert_eq!(p.store.path().join("git").read_dir().unwrap().count(), 0);
}

/// `git daemon` serving `base` on 127.0.0.1, stopped when dropped (a
/// failed assertion too).
struct GitDaemon(std::process::Child);

impl GitDaemon {
    fn start(base: &std::path::Path, port: u16) -> GitDaemon {
        // git-daemon itself: `git daemon` would leave it running when killed.
        let exec_path = git(base, &["--exec-path"]);
        let child = std::process::Command::new(std::path::Path::new(&exec_path).join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let d = GitDaemon(child);
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed().as_secs() < 10, "git daemon did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        d
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bare repository `NAME.git` in `base` with these files (and these
/// submodules: path, URL, commit) on its main; returns its commit.
fn bare_repo(
    base: &std::path::Path,
    name: &str,
    files: &[(&str, &str)],
    submodules: &[(&str, &str, &str)],
) -> String {
    let work = base.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    for (f, body) in files {
        std::fs::write(work.join(f), body).unwrap();
    }
    let mut modules = String::new();
    for (path, url, _) in submodules {
        modules += &format!("[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n");
    }
    if !modules.is_empty() {
        std::fs::write(work.join(".gitmodules"), modules).unwrap();
    }
    git(&work, &["init", "-q"]);
    git(&work, &["add", "."]);
    for (path, _, commit) in submodules {
        git(
            &work,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{commit},{path}"),
            ],
        );
    }
    git(&work, &["commit", "-q", "-m", name]);
    let bare = base.join(format!("{name}.git"));
    git(
        base,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&work, &["rev-parse", "HEAD"])
}

/// Submodules are filled in at the commit the tree names, from the
/// relative URL `.gitmodules` gives, unless `submodules=false`;
/// `--keep-git-dir` keeps a `.git` that git itself reads back (HEAD at the
/// commit, origin the remote, a clean status) and is part of the key.
#[test]
fn git_submodules_and_keep_git_dir() {
    if !harness::have_tool("git", &["--version"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let sub = t.path().join("subwork");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("sub.txt"), "from the submodule\n").unwrap();
    git(&sub, &["init", "-q"]);
    git(&sub, &["add", "."]);
    git(&sub, &["commit", "-q", "-m", "sub"]);
    let sub_commit = git(&sub, &["rev-parse", "HEAD"]);
    git(t.path(), &["clone", "-q", "--bare", "subwork", "sub.git"]);
    // Moves on after the commit the superproject pins.
    std::fs::write(sub.join("sub.txt"), "later\n").unwrap();
    git(&sub, &["commit", "-q", "-am", "later"]);
    git(
        &sub,
        &[
            "push",
            "-q",
            t.path().join("sub.git").to_str().unwrap(),
            "main",
        ],
    );

    let main = t.path().join("mainwork");
    std::fs::create_dir_all(&main).unwrap();
    std::fs::write(main.join("main.txt"), "main\n").unwrap();
    std::fs::write(
        main.join(".gitmodules"),
        "[submodule \"lib\"]\n\tpath = lib\n\turl = ../sub.git\n",
    )
    .unwrap();
    git(&main, &["init", "-q"]);
    git(&main, &["add", "."]);
    git(
        &main,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sub_commit},lib"),
        ],
    );
    git(&main, &["commit", "-q", "-m", "main"]);
    let commit = git(&main, &["rev-parse", "HEAD"]);
    git(t.path(), &["clone", "-q", "--bare", "mainwork", "main.git"]);
    // Over git's own protocol: a relative submodule URL stays on the
    // server (over file:// it would be a path on the host, see below).
    let port = free_port();
    let _daemon = GitDaemon::start(t.path(), port);
    let url = format!("git://127.0.0.1:{port}/main.git");

    let p = Project::with_dockerfile(&format!(
        "FROM scratch\nADD {url}#main /m/\nADD {url}?branch=main&submodules=false /n/\nADD --keep-git-dir=true {url}#main /k/\n"
    ));
    let out = p.store.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let first = p.build(&["-o", &dest]);
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("m/lib/sub.txt"), "from the submodule\n");
    assert_eq!(read("m/main.txt"), "main\n");
    assert!(!out.join("m/.git").exists());
    assert!(out.join("n/lib").is_dir() && out.join("n/lib").read_dir().unwrap().count() == 0);
    assert_eq!(read("k/lib/sub.txt"), "from the submodule\n");
    // The kept .git is a repository git reads: at the commit, origin the
    // remote, nothing changed in the work tree.
    assert_eq!(read("k/.git/HEAD").trim(), commit);
    let k = out.join("k");
    assert_eq!(git(&k, &["rev-parse", "HEAD"]), commit);
    assert_eq!(git(&k, &["config", "remote.origin.url"]), url);
    assert_eq!(git(&k, &["rev-parse", "refs/heads/main"]), commit);
    assert_eq!(
        git(&k, &["status", "--porcelain", "--ignore-submodules=all"]),
        ""
    );
    // The same again: all cached, the same image.
    let again = p.build(&[]);
    assert!(again.steps.iter().all(|s| s.cached), "{:?}", again.steps);
    assert_eq!(again.digest(), first.digest());

    // A gitlink .gitmodules does not name fails clearly.
    git(
        &main,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sub_commit},other"),
        ],
    );
    git(&main, &["commit", "-q", "-m", "other"]);
    git(
        &main,
        &[
            "push",
            "-q",
            t.path().join("main.git").to_str().unwrap(),
            "main",
        ],
    );
    p.write("Dockerfile", &format!("FROM scratch\nADD {url}#main /m/\n"));
    let err = p.fails(&[]);
    assert!(
        err.contains("submodule at other") && err.contains("submodules=false"),
        "{err}"
    );
}

/// Every file under `dir` named `name`.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name() == name {
            found.push(p.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(files_named(&p, name));
        }
    }
    found
}

/// A repository's `.gitmodules` cannot run a command on the build host
/// (a URL git would take as an option, `ext::`), nor read the host's own
/// repositories (`file://`, a plain path, or a relative URL that leaves a
/// local top repository); a local submodule inside a local top repository
/// is fine. The user's git config (here an `insteadOf`) applies to the URL
/// the user wrote, not to URLs a repository names. Both as `ADD <git>` and
/// as the build context.
#[test]
fn submodule_urls_cannot_run_commands_or_read_the_host() {
    if !harness::have_tool("git", &["--version"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let srv = t.path().join("srv");
    let real = srv.join("real");
    std::fs::create_dir_all(&real).unwrap();
    // A repository of the host's, outside what is served.
    let secret = bare_repo(
        t.path(),
        "host-secret",
        &[("secret.txt", "SECRET-OF-THE-HOST\n")],
        &[],
    );
    let secret_path = t.path().join("host-secret.git");
    let sub = bare_repo(&real, "sub", &[("sub.txt", "sub\n")], &[]);
    let port = free_port();
    let _daemon = GitDaemon::start(&srv, port);
    let served = format!("git://127.0.0.1:{port}");
    // The user's own config: `alias/` is `real/`.
    let user_config = t.path().join("user.gitconfig");
    std::fs::write(
        &user_config,
        format!("[url \"{served}/real/\"]\n\tinsteadOf = {served}/alias/\n"),
    )
    .unwrap();
    let p = Project::with_dockerfile("FROM scratch\n");
    let build = |p: &Project| {
        harness::wbuild_with(
            p.dir.path(),
            p.store.path(),
            &["build", "--progress", "plain", "."],
            &[("GIT_CONFIG_GLOBAL", user_config.to_str().unwrap())],
        )
    };
    let host = secret_path.display().to_string();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "upload-pack",
            "--upload-pack=touch PWNED".into(),
            "starts with '-'",
        ),
        ("short-u", "-utouch PWNED".into(), "starts with '-'"),
        ("ext", "ext::sh -c touch% PWNED".into(), "not allowed"),
        ("file-url", format!("file://{host}"), "a path on this host"),
        ("host-path", host.clone(), "a path on this host"),
        // The user's alias does not reach a repository's URLs.
        ("alias", format!("{served}/alias/sub.git"), "cannot fetch"),
    ];
    for (name, url, refusal) in &cases {
        let commit = if name.contains("file") || name.contains("path") {
            &secret
        } else {
            &sub
        };
        bare_repo(
            &real,
            name,
            &[("top.txt", "top\n")],
            &[("lib", url, commit)],
        );
        let top = format!("{served}/real/{name}.git");
        // As ADD, and as the build context (its Dockerfile the repo's).
        p.write("Dockerfile", &format!("FROM scratch\nADD {top}#main /m/\n"));
        for o in [
            build(&p),
            harness::wbuild_with(
                p.dir.path(),
                p.store.path(),
                &["build", "--progress", "plain", &format!("{top}#main")],
                &[("GIT_CONFIG_GLOBAL", user_config.to_str().unwrap())],
            ),
        ] {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{name}: {err}");
            assert!(
                err.contains("submodule lib") && err.contains(refusal),
                "{name}: {err}"
            );
            assert!(!err.contains("SECRET-OF-THE-HOST"), "{name}: {err}");
        }
    }
    for dir in [t.path(), p.dir.path(), p.store.path()] {
        assert!(files_named(dir, "PWNED").is_empty(), "a command ran");
    }
    // The user's alias applies to the URL the user wrote; the submodule's
    // real URL works.
    bare_repo(
        &real,
        "good",
        &[("top.txt", "top\n")],
        &[("lib", &format!("{served}/real/sub.git"), &sub)],
    );
    let out = p.store.path().join("out");
    // Builds into `out`, which must succeed.
    let build_out = |envs: &[(&str, &str)]| {
        let o = harness::wbuild_with(
            p.dir.path(),
            p.store.path(),
            &[
                "build",
                "--progress",
                "plain",
                "-o",
                &format!("type=local,dest={}", out.display()),
                ".",
            ],
            envs,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    p.write(
        "Dockerfile",
        &format!("FROM scratch\nADD {served}/alias/good.git#main /m/\n"),
    );
    build_out(&[("GIT_CONFIG_GLOBAL", user_config.to_str().unwrap())]);
    assert_eq!(
        std::fs::read_to_string(out.join("m/lib/sub.txt")).unwrap(),
        "sub\n"
    );

    // A local top repository: a submodule inside it is fine, one beside
    // it is the host's.
    let local = t.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let top = local.join("top.git");
    let inner = bare_repo(&local, "inner", &[("inner.txt", "inner\n")], &[]);
    bare_repo(
        &local,
        "top",
        &[("top.txt", "top\n")],
        &[("lib", "./inner.git", &inner)],
    );
    std::fs::rename(local.join("inner.git"), top.join("inner.git")).unwrap();
    p.write(
        "Dockerfile",
        &format!("FROM scratch\nADD file://{}#main /m/\n", top.display()),
    );
    build_out(&[]);
    assert_eq!(
        std::fs::read_to_string(out.join("m/lib/inner.txt")).unwrap(),
        "inner\n"
    );
    bare_repo(
        &local,
        "escapes",
        &[("top.txt", "top\n")],
        &[("lib", "../../host-secret.git", &secret)],
    );
    p.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD file://{}#main /m/\n",
            local.join("escapes.git").display()
        ),
    );
    let err = p.fails(&[]);
    assert!(
        err.contains("a path on this host") && err.contains("outside the build's repository"),
        "{err}"
    );
}

/// An archive from a URL is unpacked only with --unpack (BuildKit's rule;
/// a local one is unpacked unless --unpack=false); COPY refuses URLs and
/// git repositories as BuildKit's frontend does.
#[test]
fn add_unpacks_a_url_only_when_asked_and_copy_refuses_remote_sources() {
    let srv = Server::start();
    srv.bytes("/files.tar.gz", &tarball(&[("a.txt", "inside\n")]), "t1");
    let url = srv.url("/files.tar.gz");
    let p = Project::with_dockerfile(&format!(
        "FROM scratch\nADD {url} /plain/\nADD --unpack=true {url} /u/\n"
    ));
    let out = p.store.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    p.build(&["-o", &dest]);
    assert!(out.join("plain/files.tar.gz").is_file());
    assert!(!out.join("plain/a.txt").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("u/a.txt")).unwrap(),
        "inside\n"
    );
    assert!(!out.join("u/files.tar.gz").exists());

    for (src, what) in [
        (url.as_str(), "source can't be a URL for COPY"),
        (
            "https://127.0.0.1:9/r.git#main",
            "source can't be a git ref for COPY",
        ),
    ] {
        p.write("Dockerfile", &format!("FROM scratch\nCOPY {src} /x\n"));
        let err = p.fails(&[]);
        assert!(err.contains(what) && err.contains("use ADD"), "{err}");
    }
}
