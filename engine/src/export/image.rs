//! `type=image` and `type=registry`: the image kept in wbuild's store under
//! its names (as BuildKit keeps it in its image store) and, with
//! `push=true` (always for `type=registry`), pushed to the registry each
//! name points at.

use super::{flag, ExportContext, ExportError, Exporter, LayerPolicy, OutputType, SpecError};
use crate::digest::Digest;
use crate::oci::{image_blobs, index_blobs, Image, IndexImage};
use crate::request::{OutputKind, OutputSpec};
use crate::store::Store;

pub struct ImageOutput {
    /// `name=` (comma-separated), else the `-t` names.
    pub names: Vec<String>,
    pub push: bool,
    /// `registry.insecure=true`: the names' registries over plain HTTP.
    pub insecure: bool,
    pub layers: LayerPolicy,
}

/// `type=image`: kept in the store under its names (`push=true` pushes
/// them too).
pub const IMAGE: OutputType = OutputType {
    kind: OutputKind::Image,
    keys: KEYS,
    make: |o| make(o, false),
};

/// `type=registry`: pushed under its names.
pub const REGISTRY: OutputType = OutputType {
    kind: OutputKind::Registry,
    keys: KEYS,
    make: |o| make(o, true),
};

const KEYS: &[&str] = &[
    "name",
    "push",
    "registry.insecure",
    "compression",
    "compression-level",
    "force-compression",
    "oci-mediatypes",
];

fn make(o: &OutputSpec, push: bool) -> Result<Box<dyn Exporter>, SpecError> {
    Ok(Box::new(ImageOutput {
        names: o
            .attrs
            .get("name")
            .map(|n| {
                n.split(',')
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        push: push || flag(&o.attrs, "push")? == Some(true),
        insecure: flag(&o.attrs, "registry.insecure")? == Some(true),
        layers: LayerPolicy::from_attrs(&o.attrs)?,
    }))
}

impl Exporter for ImageOutput {
    fn layer_policy(&self) -> Option<LayerPolicy> {
        Some(self.layers)
    }

    fn reads_layers(&self) -> bool {
        false
    }

    fn export(&self, cx: &ExportContext<'_>, img: &Image) -> Result<(), ExportError> {
        let names = self.names(cx);
        keep_image(
            cx.store,
            &names,
            &img.manifest_desc.digest,
            &img.config_desc.digest,
            &image_blobs(img),
        )?;
        if !self.push {
            lock(&cx.named).extend(names);
            return Ok(());
        }
        self.push_to(cx, Pushed::One(img), &names)
    }

    fn export_index(&self, cx: &ExportContext<'_>, idx: &IndexImage) -> Result<(), ExportError> {
        let names = self.names(cx);
        keep_image(
            cx.store,
            &names,
            &idx.desc.digest,
            &idx.images[0].config_desc.digest,
            &index_blobs(idx),
        )?;
        if !self.push {
            lock(&cx.named).extend(names);
            return Ok(());
        }
        self.push_to(cx, Pushed::Index(idx), &names)
    }
}

/// Keeps an image (or an index) in the store under each name. Its blobs
/// come in first from an imported cache that has not brought them yet: an
/// image kept by name is there to be run or pushed.
pub fn keep_image(
    store: &Store,
    names: &[String],
    top: &Digest,
    config: &Digest,
    blobs: &[Digest],
) -> Result<(), crate::store::StoreError> {
    for b in blobs {
        store.ensure_blob(b)?;
    }
    for n in names {
        store.put_image(n, top, config, blobs)?;
    }
    Ok(())
}

/// What goes to the registry: one image, or an index of several.
#[cfg_attr(not(feature = "registry"), allow(dead_code))]
enum Pushed<'a> {
    One(&'a Image),
    Index(&'a IndexImage),
}

impl ImageOutput {
    /// `name=`, else the `-t` names.
    fn names(&self, cx: &ExportContext<'_>) -> Vec<String> {
        if self.names.is_empty() {
            cx.tags.to_vec()
        } else {
            self.names.clone()
        }
    }

    #[cfg(feature = "registry")]
    fn push_to(
        &self,
        cx: &ExportContext<'_>,
        what: Pushed<'_>,
        names: &[String],
    ) -> Result<(), ExportError> {
        let extra: &[String] = if self.insecure { names } else { &[] };
        let insecure = crate::registry::insecure_with(cx.insecure, extra);
        let puller = crate::registry::Puller::new(cx.store, &insecure)?;
        let report = match what {
            Pushed::One(img) => puller.push(img, names)?,
            Pushed::Index(idx) => puller.push_index(idx, names)?,
        };
        if cx.verbose {
            eprintln!(
                "pushed {} ({}): {} blob(s) uploaded, {} mounted, {} already there",
                report.names.join(", "),
                report.digest,
                report.uploaded,
                report.mounted,
                report.present
            );
        }
        lock(&cx.named).extend(report.names);
        Ok(())
    }

    #[cfg(not(feature = "registry"))]
    fn push_to(
        &self,
        _: &ExportContext<'_>,
        _: Pushed<'_>,
        _: &[String],
    ) -> Result<(), ExportError> {
        Err(ExportError::Unsupported(
            crate::request::OutputKind::Registry,
        ))
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
