//! Registries: references normalized as Docker does, credentials from the
//! Docker config, and pulling an image — its manifest (through an index to
//! the build's platform), its config and its layers — into the store. Every
//! blob is verified against its digest while it streams and stored once;
//! one present in the store is never fetched again.
//!
//! The HTTP side is `oci-client` (async, on a tokio runtime of its own,
//! blocking at this module's edge); credentials come from
//! `docker_credential` (`~/.docker/config.json` or `$DOCKER_CONFIG`, with
//! `credHelpers` and `credsStore`).

mod cache;
mod error;
mod push;

pub use cache::RegistryBlobs;
pub use error::{Problem, RegistryError};
pub use push::PushReport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncWriteExt;

use crate::digest::Digest;
pub(crate) use crate::net::error_text;
use crate::net::{connect_timeout, http_client, is_timeout, stall_timeout};
use crate::oci::{Compression, HistoryEntry, LayerInfo, RunConfig};
pub use crate::request::PullPolicy;
use crate::store::Store;

/// Docker's normalization of an image reference: `debian` is
/// `docker.io/library/debian:latest`, `localhost:5000/x` keeps its host,
/// `host/ns/repo:tag@sha256:…` pins a digest.
pub fn parse_reference(s: &str) -> Result<Reference, RegistryError> {
    let bad = |message: String| RegistryError::BadReference {
        reference: s.to_string(),
        message,
    };
    let r = s.parse::<Reference>().map_err(|e| bad(e.to_string()))?;
    // Docker's rule: the host may have capitals, the repository not.
    if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad("repository name must be lowercase".into()));
    }
    Ok(r)
}

/// `base` (`--insecure-registry`) and the registries of `names` (an
/// output's or a cache's `registry.insecure=true`): those spoken to over
/// plain HTTP.
pub fn insecure_with(base: &[String], names: &[String]) -> Vec<String> {
    let mut out = base.to_vec();
    for n in names {
        if let Ok(r) = parse_reference(n) {
            out.push(r.resolve_registry().to_string());
        }
    }
    out
}

/// Docker talks plain HTTP to a registry on localhost or 127.0.0.0/8.
fn is_local(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 127)
}

/// An image resolved and its blobs in the store.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference, normalized (`docker.io/library/debian:12`).
    pub reference: String,
    /// The digest of the image manifest used (a platform's, under an index).
    pub manifest_digest: String,
    pub config_digest: String,
    pub config: RunConfig,
    /// The config's `os`, `architecture` and `variant`.
    pub os: String,
    pub architecture: String,
    pub variant: String,
    pub layers: Vec<LayerInfo>,
    /// The image's history, which the built image continues (as BuildKit
    /// keeps its base's).
    pub history: Vec<HistoryEntry>,
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Pulls images into a store and pushes them from it; one per build.
pub struct Puller<'s> {
    store: &'s Store,
    rt: Arc<tokio::runtime::Runtime>,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    /// Registries spoken to over plain HTTP besides localhost and
    /// 127.0.0.0/8 (`--insecure-registry`, `registry.insecure=true`).
    insecure: Vec<String>,
    /// What this build already resolved, by name and platform: one build
    /// asks the registry about a tag once (planning reads the config,
    /// solving the layers).
    memo: Mutex<HashMap<String, Pulled>>,
}

/// The platform wbuild builds, and the names it goes by in an index.
fn platform_matches(os: &str, arch: &str, want_os: &str, want_arch: &str) -> bool {
    let wasm = |o: &str| o == "wasip1" || o == "wasi";
    arch == want_arch && (os == want_os || (wasm(os) && wasm(want_os)))
}

impl<'s> Puller<'s> {
    pub fn new(store: &'s Store, insecure: &[String]) -> Result<Puller<'s>, RegistryError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|error| {
                RegistryError::at(
                    "the registry client",
                    Problem::Io {
                        what: "cannot start the HTTP runtime".into(),
                        error,
                    },
                )
            })?;
        Ok(Puller {
            store,
            rt: Arc::new(rt),
            clients: Mutex::new(HashMap::new()),
            insecure: insecure.to_vec(),
            memo: Mutex::new(HashMap::new()),
        })
    }

    /// What talking to `r`'s registry needs: its client, the credentials
    /// (for a push when `push`) and how to explain a refusal.
    fn session(&self, r: &Reference, push: bool) -> Result<Session, RegistryError> {
        let registry = r.resolve_registry().to_string();
        let auth = self.auth(r, push)?;
        Ok(Session {
            shown: r.whole(),
            client: self.client(&registry),
            explain: Box::new(self.explainer(&registry, &auth)),
            auth,
            registry,
        })
    }

    /// Whether `registry` is spoken to over plain HTTP.
    fn plain_http(&self, registry: &str) -> bool {
        is_local(registry) || self.insecure.iter().any(|h| h == registry)
    }

    /// `http` or `https`, as `registry` is spoken to.
    fn scheme(&self, registry: &str) -> &'static str {
        if self.plain_http(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// What a registry error is (see [`Problem::of`]); a refusal says
    /// which credentials were tried and how to log in.
    fn explainer(
        &self,
        registry: &str,
        auth: &RegistryAuth,
    ) -> impl Fn(&OciDistributionError) -> Problem + Send + Sync + 'static {
        let tried = match auth {
            RegistryAuth::Basic(u, _) => format!("the credentials of {u:?} from the Docker config"),
            RegistryAuth::Bearer(_) => "the identity token from the Docker config".to_string(),
            _ => "no credentials (the Docker config has none for it)".to_string(),
        };
        let registry = registry.to_string();
        move |e| Problem::of(e, &registry, &tried)
    }

    fn client(&self, registry: &str) -> Arc<Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(registry.to_string())
            .or_insert_with(|| {
                let protocol = if self.plain_http(registry) {
                    ClientProtocol::HttpsExcept(vec![registry.to_string()])
                } else {
                    ClientProtocol::Https
                };
                Arc::new(Client::new(ClientConfig {
                    protocol,
                    platform_resolver: None,
                    read_timeout: Some(stall_timeout()),
                    connect_timeout: Some(connect_timeout()),
                    // Blobs stream from the store with their size known.
                    use_monolithic_push: true,
                    ..Default::default()
                }))
            })
            .clone()
    }

    /// Credentials for `r`'s registry from the Docker config: a user and
    /// password, or an identity token (what `az acr login` and others
    /// write), exchanged for an access token to `r`'s repository (`pull`,
    /// or `pull,push`) by the OAuth2 refresh-token flow, which oci-client
    /// does not speak; anonymous when the config has nothing.
    fn auth(&self, r: &Reference, push: bool) -> Result<RegistryAuth, RegistryError> {
        let registry = r.resolve_registry();
        let server = if registry == "docker.io" || registry == "index.docker.io" {
            "https://index.docker.io/v1/"
        } else {
            registry
        };
        match docker_credential::get_credential(server) {
            Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                // oci-client sends them to the token server the registry
                // names: only over HTTPS, or to the registry's own host.
                let scheme = self.scheme(registry);
                if let Some(realm) = self
                    .rt
                    .block_on(token_realm(scheme, registry))
                    .filter(|realm| !may_send_credentials(realm, registry))
                {
                    eprintln!(
                        "warning: {registry} sends logins to {realm}, plain HTTP on another host: wbuild does not send the Docker config's credentials there, and asks for an anonymous token"
                    );
                    return Ok(RegistryAuth::Anonymous);
                }
                Ok(RegistryAuth::Basic(u, p))
            }
            Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
                let scheme = self.scheme(registry);
                let scope = format!(
                    "repository:{}:{}",
                    r.repository(),
                    if push { "pull,push" } else { "pull" }
                );
                self.rt
                    .block_on(identity_exchange(scheme, registry, &scope, &token))
                    .map(RegistryAuth::Bearer)
                    .map_err(|cause| {
                        RegistryError::at(
                            r.whole(),
                            Problem::TokenRefused {
                                registry: registry.to_string(),
                                cause: Box::new(cause),
                            },
                        )
                    })
            }
            _ => Ok(RegistryAuth::Anonymous),
        }
    }

    /// An image by name for `os/arch`: what a `--build-context` of that
    /// name gives (`docker-image://`, `oci-layout://`), else the
    /// registry's. Each is resolved once per build. With `fallback` (the
    /// platform is the build's default, named nowhere), an index with no
    /// entry for wasi/wasm gives its linux/amd64 image, as BuildKit on an
    /// x86-64 host takes it: its programs run under the emulator.
    pub fn fetch_named(
        &self,
        name: &str,
        contexts: &std::collections::BTreeMap<String, crate::request::NamedContext>,
        os: &str,
        arch: &str,
        policy: PullPolicy,
        fallback: bool,
    ) -> Result<Pulled, RegistryError> {
        use crate::request::NamedContext;
        let mut wants = vec![(os, arch)];
        if fallback && platform_matches("wasi", "wasm", os, arch) {
            wants.push(("linux", "amd64"));
        }
        let wants = wants.as_slice();
        let key = format!("{name} {wants:?}");
        if let Some(p) = self
            .memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let p = match contexts.get(&crate::request::context_key(name)) {
            Some(NamedContext::Image(r)) => self.pull(r, wants, policy)?,
            Some(NamedContext::Layout { dir, tag, digest }) => {
                self.import_layout(dir, tag.as_deref(), digest.as_deref(), wants)?
            }
            Some(NamedContext::Dir(d)) => {
                return Err(RegistryError::at(
                    name,
                    Problem::Unusable(format!(
                        "the build context {name} is a directory ({}), not an image",
                        d.display()
                    )),
                ))
            }
            None => self.pull(name, wants, policy)?,
        };
        self.memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, p.clone());
        Ok(p)
    }

    /// Resolves `reference` for the first platform of `wants` (`os`,
    /// `arch`) its index has, and brings its config and layers into the
    /// store.
    pub fn pull(
        &self,
        reference: &str,
        wants: &[(&str, &str)],
        policy: PullPolicy,
    ) -> Result<Pulled, RegistryError> {
        let r = parse_reference(reference)?;
        let Session {
            shown,
            registry,
            client,
            auth,
            explain,
        } = self.session(&r, false)?;
        let fail = |problem: Problem| RegistryError::at(shown.clone(), problem);
        // The image kept from the last pull of this name: used as it is
        // with --pull=false, and when the registry cannot be reached
        // without --pull.
        let kept_image = self
            .store
            .list_images()
            .ok()
            .and_then(|l| l.into_iter().find(|(n, ..)| *n == shown))
            .map(|(_, m, _, _)| m.to_string())
            .filter(|m| self.stored(m).is_some());
        let src = Source::Registry {
            client: &client,
            r: &r,
            auth: &auth,
            explain: &explain,
        };
        let (pulled, blobs) = self.rt.block_on(async {
            // A digest pinned, or a tag's digest by one HEAD request: the
            // manifest comes from the store when it is there.
            let (top, from_kept) = match (r.digest(), policy, &kept_image) {
                (Some(d), ..) => (d.to_string(), false),
                (None, PullPolicy::Never, Some(m)) => (m.clone(), true),
                (None, policy, kept) => {
                    let quick = match auth {
                        RegistryAuth::Anonymous => self.anonymous_head(&registry, &r).await,
                        _ => None,
                    };
                    let head = match quick {
                        Some(d) => Ok(d),
                        None => retry(|| client.fetch_manifest_digest(&r, &auth)).await,
                    };
                    match head {
                        Ok(d) => (d, false),
                        Err(e)
                            if policy == PullPolicy::Check
                                && kept.is_some()
                                && explain(&e).is_transient() =>
                        {
                            eprintln!(
                                "warning: {shown}: the registry cannot be reached ({}); using the image pulled before",
                                error_text(&e)
                            );
                            (kept.clone().expect("checked"), true)
                        }
                        Err(e) => return Err(explain(&e)),
                    }
                }
            };
            self.resolve(&src, &top, wants, from_kept).await
        })
        .map_err(fail)?;
        self.fetch_layers(&src, &pulled.layers).map_err(fail)?;
        let mut pulled = pulled;
        pulled.reference = shown.clone();
        // Kept by name, as `wbuild images` shows it (`prune --all` drops
        // it), and each blob's repository noted for cross-repository
        // mounts when pushing.
        self.keep_image(&shown, &pulled, &blobs)?;
        for d in &blobs {
            let _ = self.store.put_blob_source(d, &registry, r.repository());
        }
        Ok(pulled)
    }

    /// A tag's digest by one HEAD request with no credentials, as a
    /// rebuild asks an open registry (oci-client would first ask `/v2/`
    /// how to log in, every time). None when the registry wants a login
    /// or answers anything else: the client's own flow then runs.
    async fn anonymous_head(&self, registry: &str, r: &Reference) -> Option<String> {
        let scheme = if self.plain_http(registry) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{}",
            r.repository(),
            r.tag().unwrap_or("latest")
        );
        let http = http_client().ok()?;
        let res = http
            .head(&url)
            .header("Accept", MANIFEST_TYPES.join(", "))
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        let d = res.headers().get("docker-content-digest")?.to_str().ok()?;
        d.parse::<Digest>().ok().map(|_| d.to_string())
    }

    /// Brings an image from an OCI layout directory into the store
    /// (`oci-layout://DIR[:TAG|@DIGEST]`): the entry of `index.json` the
    /// tag (`org.opencontainers.image.ref.name`) or digest names, else its
    /// only entry, else the one for the platform.
    pub fn import_layout(
        &self,
        dir: &std::path::Path,
        tag: Option<&str>,
        digest: Option<&str>,
        wants: &[(&str, &str)],
    ) -> Result<Pulled, RegistryError> {
        let (os, arch) = wants[0];
        let shown = format!("oci-layout://{}", dir.display());
        let fail = |problem: Problem| RegistryError::at(shown.clone(), problem);
        let index_path = dir.join("index.json");
        let bytes = std::fs::read(&index_path).map_err(|error| {
            fail(Problem::Io {
                what: format!(
                    "cannot read {} (give a directory holding an OCI image layout, e.g. from `skopeo copy docker://IMAGE oci:DIR`)",
                    index_path.display()
                ),
                error,
            })
        })?;
        let index: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            fail(Problem::Unusable(format!(
                "its index.json is not JSON: {e}"
            )))
        })?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let chosen: Vec<&serde_json::Value> = entries
            .iter()
            .filter(|m| {
                let name = m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or("");
                tag.is_none_or(|t| name == t)
                    && digest.is_none_or(|d| m["digest"].as_str() == Some(d))
            })
            .collect();
        let top = match chosen.as_slice() {
            [] => {
                return Err(fail(Problem::NotFound(format!(
                    "its index.json has no image {}",
                    match (tag, digest) {
                        (Some(t), _) => format!("tagged {t:?}"),
                        (_, Some(d)) => format!("with digest {d}"),
                        _ => "at all".into(),
                    }
                ))))
            }
            [one] => one["digest"].as_str().unwrap_or("").to_string(),
            several => wants
                .iter()
                .find_map(|(o, a)| several.iter().find(|m| entry_is_for(m, o, a)))
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| {
                    fail(Problem::NotFound(format!(
                        "its index.json has {} images and none for {os}/{arch}; name one with :TAG or @DIGEST",
                        several.len()
                    )))
                })?
                .to_string(),
        };
        let src = Source::Layout(dir);
        let (mut pulled, _blobs) = self
            .rt
            .block_on(self.resolve(&src, &top, wants, false))
            .map_err(fail)?;
        self.fetch_layers(&src, &pulled.layers).map_err(fail)?;
        pulled.reference = shown;
        Ok(pulled)
    }

    /// Every layer the store lacks, from `src`, on up to four threads at
    /// once (each verifies and writes its own stream, so downloading,
    /// hashing and writing use every core, as skopeo's goroutines do).
    fn fetch_layers(&self, src: &Source<'_>, layers: &[LayerInfo]) -> Result<(), Problem> {
        let missing: Vec<&LayerInfo> = layers
            .iter()
            .filter(|l| !self.store.has_blob(&l.digest))
            .collect();
        if !missing.is_empty() {
            self.download_layers(src, &missing)?;
        }
        // What the manifest and the config say of each layer, checked
        // before anything uses it or exports it again.
        for l in layers {
            self.check_layer(l)?;
        }
        Ok(())
    }

    /// A pulled layer is what its descriptor and its config say: the
    /// blob's size, and the digest of its uncompressed tar (hashed once,
    /// then known to the store). A layer that lies fails, naming the field.
    fn check_layer(&self, l: &LayerInfo) -> Result<(), Problem> {
        let size = self.store.blob_size(&l.digest).unwrap_or(0);
        check_size(
            &format!("layer {}", l.digest),
            l.digest.as_str(),
            l.size,
            size,
        )?;
        let known = self.store.diff_id_of(&l.digest)?;
        let actual = match known {
            Some(d) => d,
            None => {
                let r = crate::fs::layer::open_layer(self.store, l)
                    .map_err(|e| Problem::Mismatch(format!("layer {}: {e}", l.digest)))?;
                let (d, _) = crate::digest::digest_reader(r).map_err(|e| {
                    Problem::Mismatch(format!(
                        "layer {} cannot be decompressed as {:?} ({e}): the registry serves a broken layer",
                        l.digest, l.compression
                    ))
                })?;
                self.store.put_diff_id(&l.digest, &d)?;
                d
            }
        };
        if actual != l.diff_id.0 {
            return Err(Problem::Mismatch(format!(
                "its config's rootfs.diff_ids says layer {} unpacks to {}, but it unpacks to {actual}: the image lies about its layers",
                l.digest, l.diff_id.0
            )));
        }
        Ok(())
    }

    /// Downloads layers on up to four threads.
    fn download_layers(&self, src: &Source<'_>, missing: &[&LayerInfo]) -> Result<(), Problem> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = missing.len().min(4);
        let errors: Vec<Problem> = std::thread::scope(|sc| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    sc.spawn(|| {
                        let mut errs = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let Some(l) = missing.get(i) else { break };
                            let got = self.rt.block_on(self.blob(
                                src,
                                l.digest.as_str(),
                                l.size as i64,
                                false,
                            ));
                            if let Err(p) = got {
                                errs.push(p.about(format!("layer {}", l.digest)));
                            }
                        }
                        errs
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| {
                    w.join().unwrap_or_else(|_| {
                        vec![Problem::Unusable(
                            "a download thread panicked (please report it)".into(),
                        )]
                    })
                })
                .collect()
        });
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Keeps a pulled image by name, with every blob it holds.
    fn keep_image(&self, name: &str, p: &Pulled, blobs: &[Digest]) -> Result<(), RegistryError> {
        let fail = |m: String| RegistryError::at(name, Problem::Unusable(m));
        let manifest: Digest = p.manifest_digest.parse().map_err(|_| {
            fail(format!(
                "a manifest digest {:?} that is not sha256",
                p.manifest_digest
            ))
        })?;
        let config: Digest = p.config_digest.parse().map_err(|_| {
            fail(format!(
                "a config digest {:?} that is not sha256",
                p.config_digest
            ))
        })?;
        self.store
            .put_image_as(name, &manifest, &config, blobs, true)?;
        Ok(())
    }

    /// From a manifest or index digest to the image for `os/arch`, every
    /// blob in the store (fetched from `src` when missing). Returns the
    /// image and the digests of all its blobs (indexes and manifests too).
    async fn resolve(
        &self,
        src: &Source<'_>,
        top: &str,
        wants: &[(&str, &str)],
        from_kept: bool,
    ) -> Result<(Pulled, Vec<Digest>), Problem> {
        let (os, arch) = wants[0];
        let mut blobs: Vec<Digest> = Vec::new();
        let mut digest = top.to_string();
        let mut manifest = self.manifest(src, &digest).await?;
        blobs.push(
            digest
                .parse()
                .map_err(|_| Problem::Unusable(format!("{digest:?} is not a sha256 digest")))?,
        );
        // Through indexes (nested ones too) to the platform's manifest.
        for _ in 0..4 {
            let Some(list) = manifest["manifests"].as_array() else {
                break;
            };
            let entry = wants
                .iter()
                .find_map(|(o, a)| list.iter().find(|m| entry_is_for(m, o, a)))
                .ok_or_else(|| {
                    let have: Vec<String> = list
                        .iter()
                        .map(|m| {
                            format!(
                                "{}/{}",
                                m["platform"]["os"].as_str().unwrap_or("?"),
                                m["platform"]["architecture"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    Problem::NotFound(format!(
                        "no image for {os}/{arch} in its index (it has {}); pick one with FROM --platform=…",
                        have.join(", ")
                    ))
                })?;
            digest = entry["digest"]
                .as_str()
                .ok_or_else(|| Problem::Unusable("an index entry without a digest".into()))?
                .to_string();
            manifest = self.manifest(src, &digest).await?;
            blobs.push(
                digest
                    .parse()
                    .map_err(|_| Problem::Unusable(format!("{digest:?} is not a sha256 digest")))?,
            );
        }
        // The config.
        let cfg_desc = &manifest["config"];
        let cfg_digest = cfg_desc["digest"]
            .as_str()
            .ok_or_else(|| Problem::Unusable("a manifest without a config".into()))?
            .to_string();
        let cfg_size = descriptor_size(cfg_desc, "its config")?;
        let cfg_bytes = self
            .blob(src, &cfg_digest, cfg_size as i64, true)
            .await
            .map_err(|p| p.about(format!("config {cfg_digest}")))?;
        check_size("its config", &cfg_digest, cfg_size, cfg_bytes.len() as u64)?;
        blobs.push(
            cfg_digest
                .parse()
                .map_err(|_| Problem::Unusable(format!("{cfg_digest:?} is not a sha256 digest")))?,
        );
        let cfg = crate::oci::ImageConfig::read(&cfg_bytes)?;
        let (have_os, have_arch) = (cfg.os.as_str(), cfg.architecture.as_str());
        if from_kept
            && !wants
                .iter()
                .any(|(o, a)| platform_matches(have_os, have_arch, o, a))
        {
            return Err(Problem::NotFound(format!(
                "the image pulled before is for {have_os}/{have_arch}, not {os}/{arch}; pull it again with the registry reachable (without --pull=false)"
            )));
        }
        let diff_ids = &cfg.rootfs.diff_ids;
        let descs = manifest["layers"].as_array().cloned().unwrap_or_default();
        if descs.len() != diff_ids.len() {
            return Err(Problem::Mismatch(format!(
                "its manifest has {} layers but its config {} diff-ids",
                descs.len(),
                diff_ids.len()
            )));
        }
        // The layers, in parallel; each verified as it streams.
        let mut layers = Vec::new();
        for (desc, diff_id) in descs.iter().zip(diff_ids) {
            let media = desc["mediaType"].as_str().unwrap_or("");
            let compression = compression_of(media).ok_or_else(|| {
                Problem::Unusable(format!(
                    "a layer of media type {media:?}, which wbuild cannot unpack"
                ))
            })?;
            let d = desc["digest"]
                .as_str()
                .ok_or_else(|| Problem::Unusable("a layer without a digest".into()))?;
            let digest: Digest = d.parse().map_err(|_| {
                Problem::Unusable(format!("a layer digest {d:?} that is not sha256"))
            })?;
            let size = descriptor_size(desc, &format!("layer {digest}"))?;
            layers.push(LayerInfo {
                diff_id: diff_id.clone(),
                digest,
                size,
                media_type: compression.media_type().to_string(),
                compression,
            });
        }
        // The layers are fetched by the caller, outside the runtime, on
        // threads of their own (`fetch_layers`).
        blobs.extend(layers.iter().map(|l| l.digest.clone()));
        Ok((
            Pulled {
                reference: String::new(),
                manifest_digest: digest,
                config_digest: cfg_digest,
                os: cfg.os,
                architecture: cfg.architecture,
                variant: cfg.variant,
                config: cfg.config,
                history: cfg.history,
                layers,
            },
            blobs,
        ))
    }

    /// A manifest or index by digest, as JSON: from the store, else from
    /// `src` (verified, then kept so the next pull of it needs no request).
    async fn manifest(&self, src: &Source<'_>, digest: &str) -> Result<serde_json::Value, Problem> {
        let bytes = match self.stored(digest) {
            Some((b, _)) => b,
            None => {
                let b = match src {
                    Source::Registry {
                        client,
                        r,
                        auth,
                        explain,
                    } => {
                        let pinned = r.clone_with_digest(digest.to_string());
                        let (b, _) =
                            retry(|| client.pull_manifest_raw(&pinned, auth, MANIFEST_TYPES))
                                .await
                                .map_err(|e| explain(&e))?;
                        b.to_vec()
                    }
                    Source::Layout(dir) => {
                        std::fs::read(layout_blob(dir, digest)?).map_err(|error| Problem::Io {
                            what: format!("manifest {digest}"),
                            error,
                        })?
                    }
                };
                if Digest::of(&b).to_string() != digest {
                    return Err(Problem::Mismatch(format!(
                        "the manifest {digest} does not match its digest"
                    )));
                }
                self.keep(&b);
                b
            }
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Problem::Unusable(format!("its manifest {digest} is not JSON: {e}")))
    }

    /// A blob into the store from `src`, unless it is there.
    async fn blob(
        &self,
        src: &Source<'_>,
        digest: &str,
        size: i64,
        want: bool,
    ) -> Result<Vec<u8>, Problem> {
        match src {
            Source::Registry {
                client, r, explain, ..
            } => self.fetch(client, r, *explain, (digest, size), want).await,
            Source::Layout(dir) => {
                let d: Digest = digest
                    .parse()
                    .map_err(|_| Problem::Unusable(format!("{digest:?} is not a sha256 digest")))?;
                if !self.store.has_blob(&d) {
                    let path = layout_blob(dir, digest)?;
                    let io = |error| Problem::Io {
                        what: path.display().to_string(),
                        error,
                    };
                    let mut f = std::fs::File::open(&path).map_err(io)?;
                    let mut w = self.store.blob_writer()?;
                    std::io::copy(&mut f, &mut w).map_err(io)?;
                    w.commit_expecting(&d).map_err(|e| {
                        Problem::Mismatch(format!(
                            "{} does not match its digest ({e}); nothing was stored",
                            path.display()
                        ))
                    })?;
                }
                if want {
                    Ok(self.store.read_blob(&d)?)
                } else {
                    Ok(Vec::new())
                }
            }
        }
    }

    /// A manifest (or index) kept from an earlier pull, by digest.
    fn stored(&self, digest: &str) -> Option<(Vec<u8>, String)> {
        let d: Digest = digest.parse().ok()?;
        if !self.store.has_blob(&d) {
            return None;
        }
        self.store
            .read_blob(&d)
            .ok()
            .map(|b| (b, digest.to_string()))
    }

    /// Keeps a verified manifest, so the next pull of it asks only for
    /// its digest (a tag) or nothing (a digest).
    fn keep(&self, bytes: &[u8]) {
        let _ = self.store.put_blob(bytes);
    }

    /// A blob into the store, unless it is there: streamed through its
    /// digest, kept only when it matches. Returns its bytes when `want`
    /// (a config); a layer the store has is not read at all.
    async fn fetch(
        &self,
        client: &Client,
        r: &Reference,
        explain: &Explain,
        (digest, size): (&str, i64),
        want: bool,
    ) -> Result<Vec<u8>, Problem> {
        let d: Digest = digest
            .parse()
            .map_err(|_| Problem::Unusable(format!("{digest:?} is not a sha256 digest")))?;
        if self.store.has_blob(&d) {
            if !want {
                return Ok(Vec::new());
            }
            return Ok(self.store.read_blob(&d)?);
        }
        let desc = oci_client::manifest::OciDescriptor {
            digest: digest.to_string(),
            size,
            ..Default::default()
        };
        let intake = self.store.intake();
        if let Some(m) = intake.refuse(
            &format!("the blob (its manifest says {size} bytes)"),
            size.max(0) as u64,
        ) {
            return Err(Problem::TooLarge(m));
        }
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 << attempt)).await;
            }
            let mut buf: Vec<u8> = Vec::new();
            let mut w = BlobSink {
                writer: intake.bounded("the blob", self.store.blob_writer()?),
                small: &mut buf,
                keep: want,
            };
            let pulled = client.pull_blob(r, &desc, &mut w).await;
            let problem = match pulled {
                Ok(()) => {
                    w.flush().await.map_err(|error| Problem::Io {
                        what: format!("blob {digest}"),
                        error,
                    })?;
                    let BlobSink { writer, .. } = w;
                    return match writer.into_inner().commit_expecting(&d) {
                        Ok(_) => Ok(buf),
                        Err(crate::store::StoreError::Mismatch { actual, .. }) => {
                            Err(Problem::Mismatch(format!(
                                "the registry sent bytes that do not match the digest (they hash to {actual}); nothing was stored"
                            )))
                        }
                        Err(e) => Err(e.into()),
                    };
                }
                Err(e) => {
                    let text = error_text(&e);
                    // The build's bound: the rest would pass it too.
                    if text.contains("is more than") {
                        return Err(Problem::TooLarge(text));
                    }
                    explain(&e)
                }
            };
            // A digest mismatch is not retried (the registry's copy is
            // damaged), nor a stall (it had its whole time), nor what is
            // not a failure to talk.
            let stalled = matches!(&problem, Problem::Network { detail, .. } if is_timeout(detail));
            if matches!(problem, Problem::Mismatch(_)) {
                return Err(Problem::Mismatch(format!(
                    "the registry sent bytes that do not match the digest ({problem}); nothing was stored"
                )));
            }
            if stalled || !problem.is_transient() {
                return Err(problem);
            }
            last = Some(problem);
        }
        Err(last.expect("an attempt was made"))
    }
}

/// A descriptor's `size`: a number of bytes (not negative, not missing).
fn descriptor_size(desc: &serde_json::Value, what: &str) -> Result<u64, Problem> {
    desc["size"].as_u64().ok_or_else(|| {
        Problem::Unusable(format!(
            "its manifest gives {what} a size of {}, not a number of bytes: the registry serves a broken manifest",
            desc["size"]
        ))
    })
}

/// A blob's size is what its descriptor says.
fn check_size(what: &str, digest: &str, said: u64, actual: u64) -> Result<(), Problem> {
    if said != actual {
        return Err(Problem::Mismatch(format!(
            "its manifest says {what} is {said} bytes, but the blob {digest} is {actual} bytes: the image lies about its size"
        )));
    }
    Ok(())
}

/// The OAuth2 refresh-token flow of the distribution spec's token auth:
/// the registry's `/v2/` names the token server (`WWW-Authenticate:
/// Bearer realm=…,service=…`), which takes the identity token for an
/// access token to `scope`.
async fn identity_exchange(
    scheme: &str,
    registry: &str,
    scope: &str,
    token: &str,
) -> Result<String, Problem> {
    let http = http_client().map_err(|e| Problem::network(error_text(&e), registry))?;
    let params = challenge(&http, scheme, registry).await?;
    let realm = params
        .get("realm")
        .ok_or_else(|| Problem::Unusable("the registry's challenge names no realm".into()))?;
    if !may_send_credentials(realm, registry) {
        return Err(Problem::Unusable(format!(
            "the registry sends logins to {realm}, plain HTTP on another host: wbuild does not send the identity token there"
        )));
    }
    let mut form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", token.to_string()),
        ("client_id", "wbuild".to_string()),
        ("scope", scope.to_string()),
    ];
    if let Some(service) = params.get("service") {
        form.push(("service", service.clone()));
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", url_escape(v)))
        .collect::<Vec<_>>()
        .join("&");
    let res = http
        .post(realm)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| Problem::network(error_text(&e), registry))?;
    let status = res.status();
    let text = res
        .text()
        .await
        .map_err(|e| Problem::network(error_text(&e), registry))?;
    if !status.is_success() {
        return Err(Problem::Unusable(format!(
            "the token server {realm} answered {status}"
        )));
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Problem::Unusable(format!("the token server's answer: {e}")))?;
    v["access_token"]
        .as_str()
        .or_else(|| v["token"].as_str())
        .map(String::from)
        .ok_or_else(|| Problem::Unusable("the token server gave no access_token".into()))
}

/// The parameters of the Bearer challenge the registry's `/v2/` answers.
async fn challenge(
    http: &reqwest::Client,
    scheme: &str,
    registry: &str,
) -> Result<HashMap<String, String>, Problem> {
    let ping = http
        .get(format!("{scheme}://{registry}/v2/"))
        .send()
        .await
        .map_err(|e| Problem::network(error_text(&e), registry))?;
    let challenge = ping
        .headers()
        .get("www-authenticate")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| {
            Problem::Unusable("the registry asks for no token (no WWW-Authenticate on /v2/)".into())
        })?
        .to_string();
    bearer_params(&challenge).ok_or_else(|| {
        Problem::Unusable(format!(
            "the registry's challenge is not Bearer: {challenge:?}"
        ))
    })
}

/// The token server a registry names, if it names one.
async fn token_realm(scheme: &str, registry: &str) -> Option<String> {
    let http = http_client().ok()?;
    challenge(&http, scheme, registry)
        .await
        .ok()?
        .get("realm")
        .cloned()
}

/// Whether the registry's credentials may go to its token server `realm`:
/// over HTTPS, or to the registry's own host.
fn may_send_credentials(realm: &str, registry: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(realm) else {
        return false;
    };
    let registry_host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(host, _)| host)
        .trim_matches(['[', ']']);
    url.scheme() == "https"
        || url.host_str().is_some_and(|h| {
            h.trim_matches(['[', ']'])
                .eq_ignore_ascii_case(registry_host)
        })
}

/// The parameters of a `Bearer k="v",k2="v2"` challenge.
fn bearer_params(h: &str) -> Option<HashMap<String, String>> {
    let rest = h.trim().strip_prefix("Bearer ")?;
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    Some(out)
}

/// `application/x-www-form-urlencoded` escaping.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether an index entry is the image for `os/arch`.
fn entry_is_for(m: &serde_json::Value, os: &str, arch: &str) -> bool {
    platform_matches(
        m["platform"]["os"].as_str().unwrap_or(""),
        m["platform"]["architecture"].as_str().unwrap_or(""),
        os,
        arch,
    )
}

/// How a registry error becomes a message (see `Puller::explainer`).
type Explain = dyn Fn(&OciDistributionError) -> Problem + Send + Sync;

/// One reference's registry, ready to talk to.
struct Session {
    /// The reference, normalized.
    shown: String,
    registry: String,
    client: Arc<Client>,
    auth: RegistryAuth,
    explain: Box<Explain>,
}

/// Where an image's blobs come from when the store lacks them.
enum Source<'a> {
    Registry {
        client: &'a Client,
        r: &'a Reference,
        auth: &'a RegistryAuth,
        explain: &'a Explain,
    },
    /// An OCI image layout directory.
    Layout(&'a std::path::Path),
}

/// A blob's file in an OCI layout.
fn layout_blob(dir: &std::path::Path, digest: &str) -> Result<std::path::PathBuf, Problem> {
    let (alg, hex) = digest
        .split_once(':')
        .filter(|(a, h)| {
            *a == "sha256" && h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .ok_or_else(|| Problem::Unusable(format!("{digest:?} is not a sha256 digest")))?;
    Ok(dir.join("blobs").join(alg).join(hex))
}

/// Retries a registry call on a server error or a broken connection, with
/// backoff, three times in all.
async fn retry<T, F, Fut>(mut f: F) -> Result<T, oci_client::errors::OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, oci_client::errors::OciDistributionError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let text = error_text(&e);
                attempt += 1;
                // A stall had its whole time (WBUILD_HTTP_TIMEOUT): not
                // tried again.
                if !push::is_transient(&text) || is_timeout(&text) || attempt >= 3 {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(300 << attempt)).await;
            }
        }
    }
}

/// The compression a layer media type names (OCI or Docker).
fn compression_of(media: &str) -> Option<Compression> {
    Some(match media {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::Uncompressed,
        _ => return None,
    })
}

/// Where a pulled blob's bytes go: the store's writer (hashing), and for a
/// small blob a copy in memory.
struct BlobSink<'a, 'b> {
    writer: crate::store::Bounded<crate::store::BlobWriter<'a>>,
    small: &'b mut Vec<u8>,
    keep: bool,
}

impl tokio::io::AsyncWrite for BlobSink<'_, '_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::io::Write::write_all(&mut this.writer, buf)?;
        if this.keep {
            this.small.extend_from_slice(buf);
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(std::io::Write::flush(&mut self.get_mut().writer))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_as_docker_does() {
        let r = parse_reference("debian").unwrap();
        assert_eq!(r.whole(), "docker.io/library/debian:latest");
        let r = parse_reference("localhost:5000/x").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "x");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_reference(&format!("host.io/ns/repo:tag@{d}")).unwrap();
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest(), Some(d.as_str()));
        assert!(parse_reference("Bad/Upper:1").is_err());
        assert!(parse_reference("debian:bad!tag").is_err());
        assert_eq!(parse_reference("Host.io/x").unwrap().registry(), "Host.io");
        assert!(is_local("localhost:5000") && is_local("127.0.0.1:1234"));
        assert!(!is_local("docker.io") && !is_local("10.0.0.1:5000"));
        assert!(platform_matches("wasi", "wasm", "wasip1", "wasm"));
        assert!(!platform_matches("linux", "amd64", "wasip1", "wasm"));
    }

    /// A token server on 127.0.0.1 that takes one identity token, behind a
    /// registry `/v2/` that names it.
    fn token_server() -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (s, _) = l.accept().unwrap();
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                let mut s = s;
                let reply = if line.starts_with("GET /v2/") {
                    format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"test-registry\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                } else if body.contains("grant_type=refresh_token")
                    && body.contains("refresh_token=the-identity-token")
                    && body.contains("service=test-registry")
                    && body.contains("scope=repository%3Ateam%2Fapp%3Apull")
                {
                    let j = r#"{"access_token":"the-access-token"}"#;
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{j}", j.len())
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                s.write_all(reply.as_bytes()).unwrap();
                seen.push(format!("{} {body}", line.trim()));
            }
            seen
        });
        (addr, h)
    }

    #[test]
    fn identity_tokens_are_exchanged_for_access_tokens() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (addr, server) = token_server();
        let got = rt
            .block_on(identity_exchange(
                "http",
                &addr,
                "repository:team/app:pull",
                "the-identity-token",
            ))
            .unwrap();
        assert_eq!(got, "the-access-token");
        let seen = server.join().unwrap();
        assert!(seen[1].starts_with("POST /token"), "{seen:?}");
        // A token the server does not take is an error naming it.
        let (addr, server) = token_server();
        let err = rt
            .block_on(identity_exchange(
                "http",
                &addr,
                "repository:team/app:pull",
                "a-stale-token",
            ))
            .unwrap_err();
        assert!(matches!(err, Problem::Unusable(_)), "{err:?}");
        assert!(err.to_string().contains("401"), "{err}");
        server.join().unwrap();
        let p = bearer_params(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull""#,
        )
        .unwrap();
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a:pull");
        assert!(bearer_params("Basic realm=x").is_none());
    }

    #[test]
    fn credentials_go_to_a_realm_over_https_or_on_the_registry_host() {
        assert!(may_send_credentials("https://auth.example/token", "reg.io"));
        assert!(may_send_credentials(
            "http://127.0.0.1:9/token",
            "127.0.0.1:5000"
        ));
        assert!(may_send_credentials("http://[::1]:9/t", "[::1]:5000"));
        assert!(!may_send_credentials(
            "http://localhost:9/token",
            "127.0.0.1:5000"
        ));
        assert!(!may_send_credentials("http://evil.example/token", "reg.io"));
        assert!(!may_send_credentials("not a url", "reg.io"));
    }
}
