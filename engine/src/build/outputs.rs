//! The third phase: what the build made, written where it was asked —
//! the inline cache put in the images' configs, each `--output` given the
//! images as it wants their layers, the image kept in the store when
//! there is no output, then each `--cache-to` exported by its kind.

use std::collections::BTreeSet;

use super::prepare::{cache_cx, Prepared};
use super::solve_all::Solved;
use super::{Error, Result};
use crate::cache::kind::cache_type;
use crate::export::{self, LayerPolicy};
use crate::oci::cache_artifact::{CacheConfig, ExportedRecord};
use crate::oci::{self, Image, IndexImage};
use crate::plan;
use crate::request::{CacheSpec, ProgressMode};
use crate::solve::StepReport;

/// What the outputs made of the build: the image (the first output's,
/// as it wrote it), with several platforms their index, and the names
/// the image outputs kept or pushed.
pub(super) struct Made {
    pub image: Image,
    pub index: Option<IndexImage>,
    pub named: Vec<String>,
    pub steps: Vec<StepReport>,
}

impl Made {
    /// What the build made: the image's manifest digest, or with several
    /// platforms their index's.
    pub fn digest(&self) -> &crate::digest::Digest {
        self.index
            .as_ref()
            .map_or(&self.image.manifest_desc.digest, |i| &i.desc.digest)
    }
}

pub(super) fn write_outputs(p: &Prepared<'_>, solved: Solved) -> Result<Made> {
    let Solved { steps, mut images } = solved;
    put_inline_cache(p, &steps, &mut images)?;
    let several = images.len() > 1;
    let mut made = Made {
        image: images[0].clone(),
        index: None,
        named: Vec::new(),
        steps,
    };
    let epoch = p.opts.epoch;
    for (i, exporter) in p.exporters.iter().enumerate() {
        let policy = exporter.layer_policy();
        if policy.is_some_and(|l| l.zstd_kept_oci) {
            eprintln!(
                "warning: --output type={}: zstd layers need OCI media types; using oci-mediatypes=true",
                p.req.outputs[i].kind
            );
        }
        let converted = export::images_for(p.store, &images, policy)?;
        let cx = export::ExportContext {
            store: p.store,
            tags: &p.req.tags,
            epoch,
            insecure: &p.req.insecure_registries,
            verbose: p.req.progress != ProgressMode::Quiet,
            named: Default::default(),
        };
        if several {
            let docker = policy.is_some_and(|l| l.docker);
            let idx = oci::assemble_index(p.store, converted, docker)?;
            exporter.export_index(&cx, &idx)?;
            if i == 0 {
                made.index = Some(idx);
            }
        } else {
            let img = converted.into_iter().next().expect("one image");
            exporter.export(&cx, &img)?;
            if i == 0 {
                made.image = img;
            }
        }
        made.named
            .extend(cx.named.into_inner().unwrap_or_else(|e| e.into_inner()));
    }
    if several && made.index.is_none() {
        made.index = Some(oci::assemble_index(p.store, images, false)?);
    }
    if p.exporters.is_empty() {
        keep_image(p, &made)?;
    }
    export_caches(p, &made.steps)?;
    Ok(made)
}

/// No `--output`: the image is kept in the store under its `-t` names,
/// or unnamed (a build only for its cache).
fn keep_image(p: &Prepared<'_>, made: &Made) -> Result<()> {
    let (top, blobs) = match &made.index {
        Some(idx) => (idx.desc.digest.clone(), oci::index_blobs(idx)),
        None => (
            made.image.manifest_desc.digest.clone(),
            oci::image_blobs(&made.image),
        ),
    };
    let config = &made.image.config_desc.digest;
    if p.req.tags.is_empty() {
        let name = format!("<none>@{top}");
        p.store.put_image(&name, &top, config, &blobs)?;
    } else {
        export::image::keep_image(p.store, &p.req.tags, &top, config, &blobs)?;
    }
    Ok(())
}

/// A `--cache-to` whose kind puts its records in the image's own config
/// (`type=inline`): the final stage's records (mode=min, as BuildKit's
/// inline cache), in every platform's image.
fn put_inline_cache(p: &Prepared<'_>, steps: &[StepReport], images: &mut [Image]) -> Result<()> {
    let inline = p
        .req
        .cache_to
        .iter()
        .find(|s| cache_type(s.kind).is_some_and(|t| t.inline()));
    let Some(spec) = inline else {
        return Ok(());
    };
    let mut min = spec.clone();
    min.attrs.remove("mode");
    let records = cache_records(p, &min, steps)?;
    let value = serde_json::to_value(CacheConfig { records }).expect("a cache config serializes");
    for img in images.iter_mut() {
        let mut config = img.config.clone();
        config.inline_cache = Some(value.clone());
        *img = oci::assemble(p.store, config, img.layers.clone(), &img.platform)?;
    }
    Ok(())
}

/// Writes every `--cache-to` but the inline ones, each by its kind;
/// with `ignore-error=true` a failure is a warning.
fn export_caches(p: &Prepared<'_>, steps: &[StepReport]) -> Result<()> {
    let target = &p.plans[0].stages[p.plans[0].target].platform;
    let cx = cache_cx(p.store, p.req, target);
    for spec in &p.req.cache_to {
        let t = cache_type(spec.kind).ok_or(Error::CacheKind {
            flag: "--cache-to",
            kind: spec.kind,
        })?;
        if t.inline() {
            continue;
        }
        let records = cache_records(p, spec, steps)?;
        match t.export(&cx, spec, records) {
            Ok(what) => {
                if p.req.progress != ProgressMode::Quiet && !what.is_empty() {
                    eprintln!("{what}");
                }
            }
            Err(e) if spec.attr("ignore-error") == Some("true") => {
                eprintln!("warning: {e} (ignore-error=true)");
            }
            Err(e) => return Err(Error::CacheExport(Box::new(e))),
        }
    }
    Ok(())
}

/// The records a `--cache-to` exports: `mode=min` (the default) the steps
/// of the target stage and the stages it is FROM; `mode=max` every step
/// built. With `compression=`, layers in another compression are
/// converted (the stored blob is used as it is when it has it).
fn cache_records(
    p: &Prepared<'_>,
    spec: &CacheSpec,
    steps: &[StepReport],
) -> Result<Vec<ExportedRecord>> {
    let max = spec.attr("mode") == Some("max");
    let mut chain = BTreeSet::new();
    for plan in &p.plans {
        let mut t = plan.target;
        loop {
            chain.insert(t);
            match plan.stages[t].base {
                plan::Base::Stage(b) => t = b,
                _ => break,
            }
        }
    }
    let policy = match spec.attr("compression") {
        None => None,
        Some(_) => {
            Some(
                LayerPolicy::from_attrs(&spec.attrs).map_err(|error| Error::CacheSpec {
                    flag: "--cache-to",
                    kind: spec.kind,
                    error: error.into(),
                })?,
            )
        }
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for s in steps {
        let Some(key) = &s.key else { continue };
        if (!max && !chain.contains(&s.stage_index)) || !seen.insert(key.clone()) {
            continue;
        }
        let layer = match (&s.layer, &policy) {
            (Some(l), Some(policy)) => Some(export::convert_layer(p.store, l, policy)?),
            (l, _) => l.clone(),
        };
        out.push(ExportedRecord {
            key: key.clone(),
            layer,
            description: format!("[{}] {}", s.stage, s.instruction),
        });
    }
    Ok(out)
}
