//! A registry the test controls, on 127.0.0.1: it serves images the test
//! puts (manifests by tag and digest, blobs), can name a token server and
//! send blobs elsewhere (both on `localhost`, another host name for the
//! same loopback port), can serve what a real registry never would (a
//! manifest that lies about sizes or diff-ids, bytes that do not match,
//! a blob that stalls), and records every request with its `Host` and
//! `Authorization` headers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub authorization: Option<String>,
}

/// How the server misbehaves.
#[derive(Default, Clone)]
pub struct Behaviour {
    /// `/v2/` answers 401 with a Bearer challenge naming this realm.
    pub realm: Option<String>,
    /// Blob requests are redirected to `http://localhost:PORT/external/…`.
    pub redirect_blobs: bool,
    /// Blob requests send their headers and the first bytes, then nothing.
    pub stall_blobs: bool,
    /// Blobs served with other bytes than their digest's.
    pub corrupt: Vec<String>,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Vec<u8>>,
    /// (repository, tag or digest) → (media type, bytes).
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    behaviour: Behaviour,
    seen: Vec<Seen>,
}

pub struct FakeRegistry {
    pub port: u16,
    /// `127.0.0.1:PORT`, the registry's name in references.
    pub addr: String,
    state: Arc<Mutex<State>>,
}

pub fn sha256(b: &[u8]) -> String {
    wbuild::digest::Digest::of(b).to_string()
}

/// A gzip-compressed tar of these files, and its uncompressed digest (the
/// diff-id).
pub fn layer(files: &[(&str, &str)]) -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, body.as_bytes()).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), sha256(&raw))
}

impl FakeRegistry {
    pub fn start(behaviour: Behaviour) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            behaviour,
            ..Default::default()
        }));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s, port));
            }
        });
        FakeRegistry {
            port,
            addr: format!("127.0.0.1:{port}"),
            state,
        }
    }

    pub fn behave(&self, b: Behaviour) {
        self.state.lock().unwrap().behaviour = b;
    }

    pub fn put_blob(&self, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        self.state
            .lock()
            .unwrap()
            .blobs
            .insert(d.clone(), bytes.to_vec());
        d
    }

    /// Puts a linux/amd64 image of these layers under `repo:tag`; `edit`
    /// may change the config and then the manifest before they are stored
    /// (to make them lie). Returns the manifest's digest.
    pub fn put_image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[(Vec<u8>, String)],
        edit: impl FnOnce(&mut Value, &mut Value),
    ) -> String {
        let mut config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
            "history": layers.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
        });
        let mut descs = Vec::new();
        for (gz, _) in layers {
            let d = self.put_blob(gz);
            descs.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d,
                "size": gz.len(),
            }));
        }
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": descs,
        });
        // The config as the test wants it; its descriptor follows it unless
        // the edit changed that too.
        let mut config_edit = config.clone();
        edit(&mut config_edit, &mut manifest);
        if config_edit != config {
            config = config_edit;
        }
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let cd = self.put_blob(&config_bytes);
        if manifest["config"]["digest"].is_null() {
            manifest["config"]["digest"] = json!(cd);
        }
        if manifest["config"]["size"].is_null() {
            manifest["config"]["size"] = json!(config_bytes.len());
        }
        self.put_manifest(repo, tag, &manifest)
    }

    /// Stores a manifest (or index) under a tag and its digest.
    pub fn put_manifest(&self, repo: &str, tag: &str, manifest: &Value) -> String {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let d = sha256(&bytes);
        let media = manifest["mediaType"].as_str().unwrap_or("").to_string();
        let mut st = self.state.lock().unwrap();
        for r in [tag.to_string(), d.clone()] {
            st.manifests
                .insert((repo.to_string(), r), (media.clone(), bytes.clone()));
        }
        d
    }

    /// The requests so far (and forgets them).
    pub fn seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }
}

fn reply(conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += &format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

fn serve(mut conn: TcpStream, state: &Mutex<State>, port: u16) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let (mut host, mut authorization, mut length) = (String::new(), None, 0usize);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim().to_string();
            match k.to_ascii_lowercase().as_str() {
                "host" => host = v,
                "authorization" => authorization = Some(v),
                "content-length" => length = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = r.read_exact(&mut body);
    let behaviour = {
        let mut st = state.lock().unwrap();
        st.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            host,
            authorization,
        });
        st.behaviour.clone()
    };
    let head = method == "HEAD";
    let path_only = path.split('?').next().unwrap_or("").to_string();
    if path_only == "/v2/" || path_only == "/v2" {
        match &behaviour.realm {
            Some(realm) => reply(
                &mut conn,
                "401 Unauthorized",
                &[(
                    "WWW-Authenticate",
                    format!("Bearer realm=\"{realm}\",service=\"fake\""),
                )],
                b"",
            ),
            None => reply(&mut conn, "200 OK", &[], b"{}"),
        }
        return;
    }
    if path_only == "/token" {
        reply(
            &mut conn,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            br#"{"token":"anonymous-token","access_token":"anonymous-token"}"#,
        );
        return;
    }
    if let Some(d) = path_only.strip_prefix("/external/") {
        let blob = state.lock().unwrap().blobs.get(d).cloned();
        match blob {
            Some(b) => reply(&mut conn, "200 OK", &[], &b),
            None => reply(&mut conn, "404 Not Found", &[], b""),
        }
        return;
    }
    let Some(rest) = path_only.strip_prefix("/v2/") else {
        reply(&mut conn, "404 Not Found", &[], b"");
        return;
    };
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let found = state
            .lock()
            .unwrap()
            .manifests
            .get(&(repo.to_string(), reference.to_string()))
            .cloned();
        match found {
            Some((media, bytes)) => {
                let headers = [
                    ("Content-Type", media),
                    ("Docker-Content-Digest", sha256(&bytes)),
                ];
                if head {
                    let mut h = "HTTP/1.1 200 OK\r\n".to_string();
                    for (k, v) in &headers {
                        h += &format!("{k}: {v}\r\n");
                    }
                    h += &format!(
                        "Content-Length: {}\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    );
                    let _ = conn.write_all(h.as_bytes());
                } else {
                    reply(&mut conn, "200 OK", &headers, &bytes);
                }
            }
            None => reply(
                &mut conn,
                "404 Not Found",
                &[("Content-Type", "application/json".into())],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        }
        return;
    }
    if let Some((_, d)) = rest.rsplit_once("/blobs/") {
        let blob = state.lock().unwrap().blobs.get(d).cloned();
        let Some(mut b) = blob else {
            reply(&mut conn, "404 Not Found", &[], b"");
            return;
        };
        if behaviour.corrupt.iter().any(|c| c == d) {
            let last = b.len() - 1;
            b[last] ^= 0xff;
        }
        if behaviour.redirect_blobs {
            reply(
                &mut conn,
                "307 Temporary Redirect",
                &[("Location", format!("http://localhost:{port}/external/{d}"))],
                b"",
            );
        } else if behaviour.stall_blobs {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&b[..b.len() / 2]);
            let _ = conn.flush();
            std::thread::sleep(Duration::from_secs(600));
        } else if head {
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nDocker-Content-Digest: {d}\r\nConnection: close\r\n\r\n",
                b.len()
            );
            let _ = conn.write_all(h.as_bytes());
        } else {
            reply(
                &mut conn,
                "200 OK",
                &[("Docker-Content-Digest", d.to_string())],
                &b,
            );
        }
        return;
    }
    reply(&mut conn, "404 Not Found", &[], b"");
}
