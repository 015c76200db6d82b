//! FROM: the state a stage starts from. `scratch` (an empty rootfs),
//! `wbuild/base` (built in, never pulled), or an earlier stage; images
//! from a registry come here too.

use crate::cache::lookup::Caches;
use crate::cache::CacheKey;
use crate::digest::Digest;
use crate::env::DEFAULT_PATH;
use crate::fs::layer;
use crate::fs::Manifest;
use crate::oci::{self, HistoryEntry, RunConfig};
use crate::plan::{Base, PlannedStage};
use crate::solve::env::Env;
use crate::solve::{BuildError, StageState};

/// The key of a base that has no parent step: the digest of what names it
/// exactly (`scratch` and the platform, or wbox's identity).
fn fixed_key(identity: &str) -> CacheKey {
    CacheKey(Digest::of(identity.as_bytes()))
}

/// The config of an image with no parent, as BuildKit's `emptyImage`
/// makes it: the default PATH and WorkingDir `/`.
fn empty_config() -> RunConfig {
    let mut config = RunConfig::default();
    config.set_env("PATH", DEFAULT_PATH);
    config.working_dir = "/".into();
    config
}

/// The state a stage's FROM gives it.
pub(in crate::solve) fn base_state(
    env: &Env<'_>,
    cache: &Caches<'_>,
    stage: &PlannedStage,
    label: &str,
) -> Result<StageState, BuildError> {
    Ok(match &stage.base {
        Base::Scratch => {
            let config = empty_config();
            StageState {
                key: fixed_key(&format!("scratch {}", stage.platform.spec())),
                missed: false,
                unknown: false,
                layers: Vec::new(),
                config,
                history: Vec::new(),
                manifest: Some(Manifest::new()),
                cmd_set: false,
                platform: None,
                base: None,
            }
        }
        Base::WbuildBase => wbuild_base(env, cache, &stage.platform)?,
        Base::Stage(i) => {
            let mut s = env.stage_state(*i);
            s.cmd_set = false;
            // Its ONBUILD triggers ran as this stage's first steps.
            s.config.on_build.clear();
            s
        }
        Base::Image(name) | Base::Context(name) => image_state(env, stage, label, name)?,
    })
}

/// The state `FROM image` starts from: the image pulled for the
/// stage's platform; its key is the manifest's digest, so a moved tag
/// rebuilds what follows.
#[cfg(feature = "registry")]
fn image_state(
    env: &Env<'_>,
    stage: &PlannedStage,
    label: &str,
    name: &str,
) -> Result<StageState, BuildError> {
    let p = env
        .fetch_image(name, &stage.platform, !stage.platform_named)
        .map_err(|m| BuildError::from_failed(&env.opts.dockerfile, stage, label, m))?;
    let key = fixed_key(&format!("image {} {}", p.reference, p.manifest_digest));
    let platform = (!p.os.is_empty()).then(|| crate::plan::Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone(),
    });
    // Its ONBUILD triggers ran as this stage's first steps (planning
    // read them from this config); they are not inherited further.
    let mut config = p.config;
    config.on_build.clear();
    // As BuildKit: a base without PATH (one `docker import` made) gets
    // the default, after its own variables (Docker 20.10, recorded in
    // `tests/parity/run.cases`).
    if !config.env_map().contains_key("PATH") {
        config.set_env("PATH", DEFAULT_PATH);
    }
    Ok(StageState {
        key,
        missed: false,
        unknown: false,
        layers: p.layers,
        config,
        history: p.history,
        manifest: None,
        cmd_set: false,
        platform,
        base: Some(format!("{name} {}", p.manifest_digest)),
    })
}

#[cfg(not(feature = "registry"))]
fn image_state(
    env: &Env<'_>,
    stage: &PlannedStage,
    label: &str,
    name: &str,
) -> Result<StageState, BuildError> {
    Err(BuildError::from_failed(
        &env.opts.dockerfile,
        stage,
        label,
        format!("cannot use image {name:?}: this wbuild was built without registry support"),
    ))
}

/// The state `FROM wbuild/base` starts from: its one layer, written
/// once per wbox build and then taken from the cache.
fn wbuild_base(
    env: &Env<'_>,
    cache: &Caches<'_>,
    platform: &crate::plan::Platform,
) -> Result<StageState, BuildError> {
    let key = fixed_key(&format!("{} {}", crate::base::identity(), platform.spec()));
    let entries = layer::normalize(crate::base::layer_entries());
    let record = match cache.lookup(&key)?.filter(|r| r.layer.is_some()) {
        Some(r) => r,
        None => super::super::record_layer(env, cache, &key, &entries, "wbuild/base")?,
    };
    let layer = record.layer.expect("the base has a layer");
    let config = empty_config();
    let mut manifest = Manifest::new();
    for e in entries {
        manifest.insert(e.path, e.meta);
    }
    Ok(StageState {
        key,
        missed: false,
        unknown: false,
        layers: vec![layer],
        config,
        history: vec![HistoryEntry {
            created: oci::rfc3339(env.opts.epoch),
            created_by: crate::base::identity(),
            comment: "wbuild.base.v0".into(),
            empty_layer: false,
        }],
        manifest: Some(manifest),
        cmd_set: false,
        platform: None,
        base: None,
    })
}

#[cfg(test)]
mod tests {
    use super::base_state;
    use crate::env::DEFAULT_PATH;
    use crate::solve::testing::Fixture;

    #[test]
    fn scratch_is_empty_with_the_default_path_and_base_has_one_layer() {
        let f = Fixture::new("FROM scratch AS s\nFROM wbuild/base\n", &[]);
        let solver = f.solver();
        let scratch = base_state(&solver.env, &solver.cache, &f.plan.stages[0], "s").unwrap();
        assert!(scratch.layers.is_empty());
        assert_eq!(scratch.config.env, [format!("PATH={DEFAULT_PATH}")]);
        // As BuildKit's emptyImage: WorkingDir is `/`.
        assert_eq!(scratch.config.working_dir, "/");
        let base = base_state(&solver.env, &solver.cache, &f.plan.stages[1], "b").unwrap();
        assert_eq!(base.config.working_dir, "/");
        assert_eq!(base.config.env, [format!("PATH={DEFAULT_PATH}")]);
        assert_eq!(base.layers.len(), 1);
        assert!(base.manifest.as_ref().unwrap().contains_key("bin/wbox"));
        // The same base, asked again, is the same record and key.
        let again = base_state(&solver.env, &solver.cache, &f.plan.stages[1], "b").unwrap();
        assert_eq!(again.key, base.key);
        assert_eq!(again.layers, base.layers);
        assert_ne!(scratch.key, base.key);
    }
}
