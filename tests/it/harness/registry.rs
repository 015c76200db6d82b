//! A real registry for tests and benches: Debian's `docker-registry`
//! (the CNCF distribution registry), started on a free 127.0.0.1 port with
//! its own storage and stopped when dropped; its access log shows every
//! request.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::have_tool;

/// A running registry; stopped when dropped.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub storage: tempfile::TempDir,
    log: PathBuf,
}

impl Registry {
    pub fn start() -> Option<Registry> {
        Registry::start_with(None)
    }

    /// A registry that asks for `user`'s password (htpasswd, bcrypt), when
    /// given.
    pub fn start_with(user: Option<(&str, &str)>) -> Option<Registry> {
        if !have_tool("docker-registry", &["--version"]) || !have_tool("skopeo", &["--version"]) {
            return None;
        }
        let storage = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((u, pw)) = user {
            if !have_tool("htpasswd", &["-nbB", "x", "y"]) {
                return None;
            }
            let o = Command::new("htpasswd")
                .args(["-nbB", u, pw])
                .output()
                .unwrap();
            let file = storage.path().join("htpasswd");
            fs::write(&file, &o.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: wbuild-test\n    path: {}\n",
                file.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let log = storage.path().join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::from(fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap();
        let r = Registry {
            child,
            addr,
            storage,
            log,
        };
        let start = Instant::now();
        while r.get("/v2/").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the registry did not start: {}",
                fs::read_to_string(&r.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    /// A GET's status line, or None when nothing listens.
    pub fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.lines().next().map(str::to_string)
    }

    /// The requests the registry has served, as its access log shows them.
    pub fn requests(&self) -> Vec<String> {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default())
            .lines()
            .filter_map(|l| {
                let i = l.find("\"GET ").or_else(|| l.find("\"HEAD "))?;
                Some(l[i + 1..].split('"').next().unwrap_or("").to_string())
            })
            .collect()
    }

    /// Every request the registry has served (any method).
    pub fn all_requests(&self) -> Vec<String> {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default())
            .lines()
            .filter_map(|l| {
                let i = [
                    "\"GET ",
                    "\"HEAD ",
                    "\"PUT ",
                    "\"POST ",
                    "\"PATCH ",
                    "\"DELETE ",
                ]
                .iter()
                .filter_map(|m| l.find(m))
                .min()?;
                Some(l[i + 1..].split('"').next().unwrap_or("").to_string())
            })
            .collect()
    }

    /// Blob uploads (and mounts) among requests.
    pub fn uploads(reqs: &[String]) -> Vec<String> {
        reqs.iter()
            .filter(|r| {
                (r.starts_with("POST ") || r.starts_with("PUT ") || r.starts_with("PATCH "))
                    && r.contains("/blobs/")
            })
            .cloned()
            .collect()
    }

    /// Puts an OCI layout directory into the registry as `name`.
    pub fn put(&self, layout: &Path, name: &str) {
        self.put_as(layout, name, None)
    }

    /// Pushes the index tagged `multi` in `layout` with every image it
    /// lists (skopeo `--all`), as `name` (`multi:1`).
    pub fn put_index(&self, layout: &Path, name: &str) {
        let o = Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:multi", layout.display()))
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo copy --all: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    pub fn put_as(&self, layout: &Path, name: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.arg(format!("--dest-creds={c}"));
        }
        let o = cmd
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
