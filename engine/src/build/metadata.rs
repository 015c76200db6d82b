//! The fourth phase: what the build says it made, in the files the flags
//! name — `--metadata-file` (buildx's keys, plus `wbuild.steps` and
//! `wbuild.context`) and `--iidfile`.

use std::collections::BTreeMap;
use std::path::Path;

use super::outputs::Made;
use super::prepare::Prepared;
use super::{Error, Result};
use crate::export;
use crate::oci::Image;
use crate::solve::StepReport;

pub(super) fn write_metadata(p: &Prepared<'_>, made: &Made) -> Result<()> {
    if let Some(path) = &p.req.metadata_file {
        let names = if made.named.is_empty() {
            &p.req.tags
        } else {
            &made.named
        };
        let mut meta = metadata_json(&made.image, &made.steps, names);
        if let Some(idx) = &made.index {
            // As buildx for several platforms: the index is the result.
            meta["containerimage.digest"] = serde_json::json!(idx.desc.digest);
            meta["containerimage.descriptor"] =
                serde_json::to_value(&idx.desc).expect("descriptor");
            if let Some(m) = meta.as_object_mut() {
                m.remove("containerimage.config.digest");
            }
        }
        // What the context cost: files hashed because a step read them
        // (the others came from the stat cache or were never read).
        let (files, bytes) = p.ctx.digests.hashed();
        meta["wbuild.context"] = serde_json::json!({
            "files": p.ctx.entries.len(),
            "hashed_files": files,
            "hashed_bytes": bytes,
        });
        let text = serde_json::to_string_pretty(&meta).expect("metadata serializes");
        write_flag_file("--metadata-file", path, text.as_bytes())?;
    }
    if let Some(path) = &p.req.iidfile {
        let id = match &made.index {
            Some(idx) => idx.desc.digest.as_str(),
            None => made.image.config_desc.digest.as_str(),
        };
        write_flag_file("--iidfile", path, id.as_bytes())?;
    }
    Ok(())
}

/// Writes a file a flag names, whole or not at all.
pub(super) fn write_flag_file(flag: &'static str, path: &Path, bytes: &[u8]) -> Result<()> {
    export::write_atomic(path, bytes).map_err(|error| Error::WriteFile {
        flag,
        path: path.to_path_buf(),
        error: Box::new(error),
    })
}

/// buildx's metadata keys plus `wbuild.steps`.
pub fn metadata_json(img: &Image, steps: &[StepReport], tags: &[String]) -> serde_json::Value {
    let mut m = BTreeMap::new();
    m.insert(
        "containerimage.digest".to_string(),
        serde_json::json!(img.manifest_desc.digest),
    );
    m.insert(
        "containerimage.config.digest".to_string(),
        serde_json::json!(img.config_desc.digest),
    );
    m.insert(
        "containerimage.descriptor".to_string(),
        serde_json::to_value(&img.manifest_desc).expect("descriptor"),
    );
    if !tags.is_empty() {
        m.insert("image.name".to_string(), serde_json::json!(tags.join(",")));
    }
    m.insert(
        "wbuild.steps".to_string(),
        serde_json::to_value(steps).expect("steps"),
    );
    serde_json::to_value(m).expect("metadata")
}
