//! Pushing a built image: every blob the repository lacks goes up (in
//! parallel, streamed from the store and checked against its digest as it
//! is read), a blob another repository of the same registry has is
//! mounted from there instead, and the manifest goes last, once per tag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference, RegistryOperation};

use super::{parse_reference, retry, Problem, Puller, RegistryError};
use crate::digest::Digest;
use crate::oci::Image;

/// What a push did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PushReport {
    /// The names pushed, normalized (`127.0.0.1:5000/app:1`).
    pub names: Vec<String>,
    /// The manifest digest the registry now has under each name.
    pub digest: String,
    /// Blobs sent, mounted from another repository, and already there.
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
}

impl Puller<'_> {
    /// Pushes `img` (its blobs in the store) under every name in `names`.
    pub fn push(&self, img: &Image, names: &[String]) -> Result<PushReport, RegistryError> {
        let manifest = self.store.read_blob(&img.manifest_desc.digest)?;
        let mut blobs = vec![(img.config_desc.digest.clone(), img.config_desc.size)];
        blobs.extend(img.layers.iter().map(|l| (l.digest.clone(), l.size)));
        let top = (
            img.manifest_desc.digest.clone(),
            manifest,
            img.manifest_desc.media_type.clone(),
        );
        self.push_parts(&blobs, &[], &top, names)
    }

    /// Pushes the images of several platforms: every blob, each manifest
    /// by its digest, then the index under every name.
    pub fn push_index(
        &self,
        idx: &crate::oci::IndexImage,
        names: &[String],
    ) -> Result<PushReport, RegistryError> {
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        for img in &idx.images {
            blobs.push((img.config_desc.digest.clone(), img.config_desc.size));
            blobs.extend(img.layers.iter().map(|l| (l.digest.clone(), l.size)));
            children.push((
                img.manifest_desc.digest.clone(),
                self.store.read_blob(&img.manifest_desc.digest)?,
                img.manifest_desc.media_type.clone(),
            ));
        }
        blobs.sort();
        blobs.dedup();
        let top = (
            idx.desc.digest.clone(),
            self.store.read_blob(&idx.desc.digest)?,
            idx.desc.media_type.clone(),
        );
        self.push_parts(&blobs, &children, &top, names)
    }

    /// The push itself: `blobs` that the repository lacks, then
    /// `children` (manifests) by digest, then `top` under every tag.
    pub(super) fn push_parts(
        &self,
        blobs: &[(Digest, u64)],
        children: &[(Digest, Vec<u8>, String)],
        top: &(Digest, Vec<u8>, String),
        names: &[String],
    ) -> Result<PushReport, RegistryError> {
        if names.is_empty() {
            return Err(RegistryError::NoName);
        }
        // Names grouped by repository: blobs go once per repository, the
        // manifest once per tag.
        let mut repos: BTreeMap<(String, String), Vec<Reference>> = BTreeMap::new();
        for n in names {
            let r = parse_reference(n)?;
            if r.digest().is_some() {
                return Err(RegistryError::BadReference {
                    reference: n.clone(),
                    message: "a name to push to cannot hold a digest; give a tag".into(),
                });
            }
            repos
                .entry((r.resolve_registry().to_string(), r.repository().to_string()))
                .or_default()
                .push(r);
        }
        let mut report = PushReport {
            digest: top.0.to_string(),
            ..Default::default()
        };
        // A blob an imported cache has not brought in yet comes in now,
        // before the runtime runs (its source blocks on the same runtime).
        for (d, _) in blobs {
            self.store.ensure_blob(d)?;
        }
        for ((registry, repository), refs) in &repos {
            let first = &refs[0];
            let super::Session {
                shown,
                client,
                auth,
                explain,
                ..
            } = self.session(first, true)?;
            let fail = |problem: Problem| RegistryError::at(shown.clone(), problem);
            self.rt.block_on(async {
                retry(|| client.auth(first, &auth, RegistryOperation::Push))
                    .await
                    .map_err(|e| fail(explain(&e).about("cannot log in to push")))?;
                let sends = blobs.iter().map(|(d, size)| {
                    self.send_blob(&client, first, registry, repository, d, *size)
                });
                let mut outcomes = Vec::new();
                // Four at a time, as BuildKit's pusher does by default.
                for chunk in sends.collect::<Vec<_>>().chunks_mut(4) {
                    let batch = chunk.iter_mut().map(|f| f.as_mut());
                    outcomes.extend(futures_util::future::join_all(batch).await);
                }
                for (o, (d, _)) in outcomes.into_iter().zip(blobs) {
                    match o.map_err(|e| fail(e.problem(&explain).about(format!("blob {d}"))))? {
                        Sent::Uploaded => report.uploaded += 1,
                        Sent::Mounted => report.mounted += 1,
                        Sent::Present => report.present += 1,
                    }
                }
                for (d, bytes, media) in children {
                    let by_digest = first.clone_with_digest(d.to_string());
                    retry(|| {
                        client.push_manifest_raw(
                            &by_digest,
                            bytes.clone(),
                            media.parse().expect("a media type is a header value"),
                        )
                    })
                    .await
                    .map_err(|e| fail(explain(&e).about(format!("manifest {d}"))))?;
                }
                for r in refs {
                    retry(|| {
                        client.push_manifest_raw(
                            r,
                            top.1.clone(),
                            top.2.parse().expect("a media type is a header value"),
                        )
                    })
                    .await
                    .map_err(|e| fail(explain(&e).about("manifest")))?;
                    report.names.push(r.whole());
                }
                Ok::<(), RegistryError>(())
            })?;
            for (d, _) in blobs {
                let _ = self.store.put_blob_source(d, registry, repository);
            }
        }
        Ok(report)
    }

    /// One blob into the repository `r` names, unless it is there.
    fn send_blob<'a>(
        &'a self,
        client: &'a Client,
        r: &'a Reference,
        registry: &'a str,
        repository: &'a str,
        digest: &'a Digest,
        size: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Sent, PushError>> + Send + 'a>>
    {
        Box::pin(async move {
            let d = digest.to_string();
            if retry(|| client.blob_exists(r, &d))
                .await
                .map_err(PushError::Registry)?
            {
                return Ok(Sent::Present);
            }
            let sources = self
                .store
                .blob_sources(digest, registry)
                .unwrap_or_default();
            for from in sources.iter().filter(|s| s.as_str() != repository) {
                let source = Reference::with_tag(registry.to_string(), from.clone(), "x".into());
                // 201 when mounted; a registry that will not mount answers
                // otherwise, and the blob is uploaded instead.
                if client.mount_blob(r, &source, &d).await.is_ok()
                    && client.blob_exists(r, &d).await.unwrap_or(false)
                {
                    return Ok(Sent::Mounted);
                }
            }
            let mut last = None;
            for attempt in 0..3u32 {
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(300 << attempt)).await;
                }
                let reader = self.store.open_blob(digest).map_err(PushError::Store)?;
                let broken = Arc::new(Mutex::new(None));
                let stream = blob_stream(reader, broken.clone());
                match client.push_blob_stream(r, stream, &d, Some(size)).await {
                    Ok(_) => return Ok(Sent::Uploaded),
                    Err(e) => {
                        // The store's copy failed its digest while read:
                        // that is the error, and no retry helps.
                        if let Some(m) = broken.lock().unwrap_or_else(|e| e.into_inner()).take() {
                            return Err(PushError::Local(m));
                        }
                        let transient = is_transient(&super::error_text(&e));
                        last = Some(e);
                        if !transient {
                            break;
                        }
                    }
                }
            }
            Err(PushError::Registry(last.expect("an attempt was made")))
        })
    }
}

enum Sent {
    Uploaded,
    Mounted,
    Present,
}

/// Why a blob did not go up.
enum PushError {
    Registry(OciDistributionError),
    Store(crate::store::StoreError),
    /// Reading the store's copy failed (it is damaged: it was removed).
    Local(String),
}

impl PushError {
    fn problem(self, explain: &super::Explain) -> Problem {
        match self {
            PushError::Registry(e) => explain(&e),
            PushError::Store(e) => Problem::Store(e),
            PushError::Local(m) => Problem::Mismatch(m),
        }
    }
}

/// A blob's bytes as a stream of 1 MiB chunks, each read through the
/// store's verifying reader; a read error ends the stream and is kept in
/// `broken` for the message.
fn blob_stream(
    reader: crate::store::VerifyingReader,
    broken: Arc<Mutex<Option<String>>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> + Send + 'static {
    futures_util::stream::unfold(Some(reader), move |state| {
        let broken = broken.clone();
        async move {
            let mut r = state?;
            let mut buf = vec![0u8; 1 << 20];
            let mut filled = 0;
            while filled < buf.len() {
                match std::io::Read::read(&mut r, &mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let m = e.to_string();
                        *broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
                        return Some((Err(OciDistributionError::GenericError(Some(m))), None));
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            Some((Ok(bytes::Bytes::from(buf)), Some(r)))
        }
    })
}

/// A server error or a broken connection, worth another try.
pub(super) fn is_transient(text: &str) -> bool {
    [
        "500",
        "502",
        "503",
        "504",
        "connect",
        "timed out",
        "Connection refused",
        "Connection reset",
    ]
    .iter()
    .any(|w| text.contains(w))
}
