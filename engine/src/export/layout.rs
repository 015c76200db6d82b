//! The OCI image layout (`type=oci`, as a tar or with `tar=false` a
//! directory) and the tar `docker load` accepts (`type=docker`): the same
//! files, plus `manifest.json` for Docker.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    flag, io_err, required_dest, write_atomic, write_output_file, ExportContext, ExportError,
    Exporter, LayerPolicy, OutputType,
};
use crate::digest::Digest;
use crate::oci::media::MEDIA_INDEX;
use crate::oci::{image_blobs, Image, ImageIndex, IndexImage};
use crate::request::OutputKind;
use crate::store::Store;

/// A file of an output archive or directory.
struct OutFile {
    name: String,
    source: OutSource,
}

enum OutSource {
    Bytes(Vec<u8>),
    Blob(Digest),
}

fn layout_files(img: &Image, tags: &[String], docker: bool) -> Vec<OutFile> {
    layout_files_of(
        &img.manifest_desc,
        image_blobs(img),
        Some(img),
        tags,
        docker,
    )
}

/// An OCI layout whose `index.json` names `top` (an image manifest, or
/// the index of several) under each tag, with `blobs`.
fn layout_files_of(
    top: &crate::oci::Descriptor,
    blobs: Vec<Digest>,
    img: Option<&Image>,
    tags: &[String],
    docker: bool,
) -> Vec<OutFile> {
    let mut files = vec![OutFile {
        name: "oci-layout".into(),
        source: OutSource::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    }];
    let mut manifests = Vec::new();
    let names: Vec<Option<&String>> = if tags.is_empty() {
        vec![None]
    } else {
        tags.iter().map(Some).collect()
    };
    for t in names {
        let mut d = top.clone();
        if let Some(t) = t {
            d.annotations
                .insert("io.containerd.image.name".into(), full_name(t));
            d.annotations
                .insert("org.opencontainers.image.ref.name".into(), tag_of(t));
        }
        manifests.push(d);
    }
    let index = ImageIndex {
        schema_version: 2,
        media_type: MEDIA_INDEX.into(),
        manifests,
    };
    files.push(OutFile {
        name: "index.json".into(),
        source: OutSource::Bytes(serde_json::to_vec(&index).expect("index")),
    });
    if let (true, Some(img)) = (docker, img) {
        #[derive(Serialize)]
        struct DockerManifest<'a> {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags")]
            repo_tags: Vec<String>,
            #[serde(rename = "Layers")]
            layers: Vec<String>,
            #[serde(rename = "LayerSources", skip_serializing_if = "Option::is_none")]
            layer_sources: Option<&'a ()>,
        }
        let m = vec![DockerManifest {
            config: format!("blobs/sha256/{}", img.config_desc.digest.hex()),
            repo_tags: tags.iter().map(|t| docker_tag(t)).collect(),
            layers: img
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                .collect(),
            layer_sources: None,
        }];
        files.push(OutFile {
            name: "manifest.json".into(),
            source: OutSource::Bytes(serde_json::to_vec(&m).expect("manifest.json")),
        });
    }
    let mut blobs = blobs;
    blobs.sort();
    blobs.dedup();
    for b in blobs {
        files.push(OutFile {
            name: format!("blobs/sha256/{}", b.hex()),
            source: OutSource::Blob(b),
        });
    }
    files
}

/// `name:tag` with `:latest` added when there is no tag.
fn docker_tag(t: &str) -> String {
    let last = t.rsplit('/').next().unwrap_or(t);
    if last.contains(':') || t.contains('@') {
        t.to_string()
    } else {
        format!("{t}:latest")
    }
}

fn tag_of(t: &str) -> String {
    let full = docker_tag(t);
    full.rsplit_once(':')
        .map(|(_, tag)| tag.to_string())
        .unwrap_or(full)
}

fn full_name(t: &str) -> String {
    let tagged = docker_tag(t);
    let first = tagged.split('/').next().unwrap_or("");
    let has_registry = tagged.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        tagged
    } else if tagged.contains('/') {
        format!("docker.io/{tagged}")
    } else {
        format!("docker.io/library/{tagged}")
    }
}

/// Writes an OCI layout (with `manifest.json` too when `docker`) as a
/// deterministic tar to `w`.
pub fn write_layout_tar<W: Write>(
    store: &Store,
    img: &Image,
    tags: &[String],
    docker: bool,
    w: W,
) -> Result<W, ExportError> {
    write_files_tar(store, layout_files(img, tags, docker), w)
}

/// Layout files as a deterministic tar.
fn write_files_tar<W: Write>(store: &Store, files: Vec<OutFile>, w: W) -> Result<W, ExportError> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Deterministic);
    let mut dirs_done = std::collections::BTreeSet::new();
    for f in files {
        if let Some(parent) = Path::new(&f.name).parent() {
            let mut acc = PathBuf::new();
            for c in parent.components() {
                acc.push(c);
                if dirs_done.insert(acc.clone()) {
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_mtime(0);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{}/", acc.display()), io::empty())
                        .map_err(io_err(&acc))?;
                }
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(0);
        match f.source {
            OutSource::Bytes(bytes) => {
                h.set_size(bytes.len() as u64);
                b.append_data(&mut h, &f.name, &bytes[..])
                    .map_err(io_err(Path::new(&f.name)))?;
            }
            OutSource::Blob(d) => {
                // Opened first: a blob an imported cache holds comes in
                // then, and the header takes the size of what is written.
                let r = store.open_blob(&d)?;
                let size = r.len();
                h.set_size(size);
                let mut counted = CountingReader { inner: r, n: 0 };
                b.append_data(&mut h, &f.name, (&mut counted).take(size))
                    .map_err(io_err(Path::new(&f.name)))?;
                if counted.n != size {
                    return Err(ExportError::Io {
                        path: PathBuf::from(&f.name),
                        error: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("blob {d} gave {} bytes, not {size}", counted.n),
                        ),
                    });
                }
            }
        }
    }
    b.into_inner().map_err(io_err(Path::new("<tar>")))
}

/// Counts what passes through it.
struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: io::Read> io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Writes an OCI layout directory (`tar=false`).
pub fn write_layout_dir(
    store: &Store,
    img: &Image,
    tags: &[String],
    dest: &Path,
) -> Result<(), ExportError> {
    write_files_dir(store, layout_files(img, tags, false), dest)
}

/// The files of an index of several images' layout.
fn index_files(idx: &IndexImage, tags: &[String]) -> Vec<OutFile> {
    layout_files_of(&idx.desc, crate::oci::index_blobs(idx), None, tags, false)
}

/// Layout files into a directory.
fn write_files_dir(store: &Store, files: Vec<OutFile>, dest: &Path) -> Result<(), ExportError> {
    for f in files {
        let p = dest.join(&f.name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        match f.source {
            OutSource::Bytes(b) => write_atomic(&p, &b)?,
            OutSource::Blob(d) => {
                if !p.is_file() {
                    let bytes = store.read_blob(&d)?;
                    write_atomic(&p, &bytes)?;
                }
            }
        }
    }
    Ok(())
}

/// `type=oci`: an OCI layout, as a tar (`dest=FILE` or `-`), or with
/// `tar=false` a directory.
pub const OCI: OutputType = OutputType {
    kind: OutputKind::Oci,
    keys: &[
        "tar",
        "compression",
        "compression-level",
        "force-compression",
        "oci-mediatypes",
    ],
    make: |o| {
        let layers = LayerPolicy::from_attrs(&o.attrs)?;
        if flag(&o.attrs, "tar")? == Some(false) {
            let dest = required_dest(o, "<directory>")?;
            return Ok(Box::new(LayoutDir {
                dest: dest.into(),
                layers,
            }));
        }
        Ok(Box::new(LayoutTar {
            dest: required_dest(o, "<file> (or dest=- for stdout)")?,
            docker: false,
            layers,
        }))
    },
};

/// `type=docker`: the tar `docker load` takes.
pub const DOCKER: OutputType = OutputType {
    kind: OutputKind::Docker,
    keys: &[
        "compression",
        "compression-level",
        "force-compression",
        "oci-mediatypes",
    ],
    make: |o| {
        Ok(Box::new(LayoutTar {
            dest: required_dest(o, "<file> (or dest=- for stdout)")?,
            docker: true,
            layers: LayerPolicy::from_attrs(&o.attrs)?,
        }))
    },
};

/// `type=oci` or `type=docker` as a tar (a file, or `-` for stdout).
pub struct LayoutTar {
    pub dest: String,
    pub docker: bool,
    pub layers: LayerPolicy,
}

impl Exporter for LayoutTar {
    fn layer_policy(&self) -> Option<LayerPolicy> {
        Some(self.layers)
    }

    fn reads_layers(&self) -> bool {
        true
    }

    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError> {
        write_output_file(cx.store, &self.dest, |w| {
            write_layout_tar(cx.store, img, cx.tags, self.docker, w).map(|_| ())
        })
    }

    fn export_index(&self, cx: &ExportContext<'_>, idx: &IndexImage) -> Result<(), ExportError> {
        if self.docker {
            // As BuildKit: `docker load` takes one image.
            return Err(ExportError::NoIndex(OutputKind::Docker));
        }
        write_output_file(cx.store, &self.dest, |w| {
            write_files_tar(cx.store, index_files(idx, cx.tags), w).map(|_| ())
        })
    }
}

/// `type=oci,tar=false`: the layout as a directory.
pub struct LayoutDir {
    pub dest: PathBuf,
    pub layers: LayerPolicy,
}

impl Exporter for LayoutDir {
    fn layer_policy(&self) -> Option<LayerPolicy> {
        Some(self.layers)
    }

    fn reads_layers(&self) -> bool {
        true
    }

    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError> {
        write_layout_dir(cx.store, img, cx.tags, &self.dest)
    }

    fn export_index(&self, cx: &ExportContext<'_>, idx: &IndexImage) -> Result<(), ExportError> {
        write_files_dir(cx.store, index_files(idx, cx.tags), &self.dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves blobs from a directory, as an imported cache does.
    struct Dir(std::path::PathBuf);

    impl crate::store::BlobSource for Dir {
        fn fetch(&self, d: &Digest, w: &mut dyn Write) -> io::Result<bool> {
            match fs::read(self.0.join(d.hex())) {
                Ok(b) => w.write_all(&b).map(|_| true),
                Err(_) => Ok(false),
            }
        }
        fn label(&self) -> String {
            "test".into()
        }
    }

    /// A layer blob the store brings in from a source only when the tar is
    /// written gets a header of its own size (it once got 0, with its
    /// bytes after it: a tar that `tar` stops reading).
    #[test]
    fn a_blob_brought_in_while_writing_has_its_size_in_the_header() {
        use crate::fs::layer::{write_layer, Content, LayerEntry};
        use crate::fs::Meta;
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let body: std::sync::Arc<[u8]> = std::sync::Arc::from(&b"some bytes of a file\n"[..]);
        let entries = vec![LayerEntry {
            path: "f.txt".into(),
            meta: Meta::file(0o644, body.len() as u64, Some(Digest::of(&body))),
            content: Content::Bytes(body.clone()),
            whiteout: false,
        }];
        let layer = write_layer(&store, &entries, 0, crate::oci::Compression::Gzip, 6).unwrap();
        // The blob leaves the store for a source that gives it on demand.
        let away = tempfile::tempdir().unwrap();
        fs::rename(
            store.blob_path(&layer.digest),
            away.path().join(layer.digest.hex()),
        )
        .unwrap();
        store.add_blob_source(std::sync::Arc::new(Dir(away.path().to_path_buf())));
        let config = crate::oci::ImageConfig::read(b"{}").unwrap();
        let platform = crate::oci::PlatformDesc {
            architecture: "wasm".into(),
            os: "wasip1".into(),
            variant: String::new(),
        };
        let img = crate::oci::assemble(&store, config, vec![layer.clone()], &platform).unwrap();
        let tar = write_layout_tar(&store, &img, &[], false, Vec::new()).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let mut seen = false;
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut b = Vec::new();
            io::Read::read_to_end(&mut e, &mut b).unwrap();
            if name.ends_with(&layer.digest.hex()) {
                assert_eq!(b.len() as u64, layer.size);
                assert_eq!(Digest::of(&b), layer.digest);
                seen = true;
            }
        }
        assert!(seen, "the layer is in the tar");
    }

    #[test]
    fn names() {
        assert_eq!(docker_tag("demo"), "demo:latest");
        assert_eq!(
            docker_tag("localhost:5000/demo"),
            "localhost:5000/demo:latest"
        );
        assert_eq!(full_name("demo:1"), "docker.io/library/demo:1");
        assert_eq!(full_name("me/demo"), "docker.io/me/demo:latest");
        assert_eq!(full_name("r.io/me/demo:2"), "r.io/me/demo:2");
        assert_eq!(tag_of("r.io:5000/demo"), "latest");
    }
}
