//! `wbuild.toml`: wbuild's own settings, from the platform's config
//! directory (`~/.config/wbuild/wbuild.toml` on Linux) or `--config FILE`.
//! Today it holds the garbage-collection rules, named as buildkitd.toml
//! names them:
//!
//! ```toml
//! [gc]
//! enabled = true
//! reservedSpace = "10GB"     # bytes, "512MB" or "10%" of the disk
//! maxUsedSpace = "80%"
//! minFreeSpace = "20%"
//!
//! [[gc.policy]]              # when given, these replace the default rules
//! filters = ["type==exec.cachemount"]
//! keepDuration = "48h"
//! maxUsedSpace = "512MB"
//! ```

use std::path::{Path, PathBuf};

use crate::store::{default_policies, GcPolicy, Space};

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("config {path}: {cause}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub cause: ConfigCause,
}

/// What is wrong with the config's text, or why it cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigCause {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Space(#[from] crate::store::SpaceError),
    #[error("keepDuration {text:?}: {error}")]
    Duration {
        text: String,
        error: crate::frontend::instructions::DurationError,
    },
}

/// A size in the config: a number of bytes, or a string.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum SpaceValue {
    Bytes(u64),
    Text(String),
}

/// A duration: seconds, or Go's form (`48h`, `1h30m`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    gc: Option<GcSection>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GcSection {
    enabled: Option<bool>,
    reserved_space: Option<SpaceValue>,
    max_used_space: Option<SpaceValue>,
    min_free_space: Option<SpaceValue>,
    policy: Option<Vec<PolicySection>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicySection {
    all: Option<bool>,
    filters: Option<Vec<String>>,
    keep_duration: Option<DurationValue>,
    reserved_space: Option<SpaceValue>,
    max_used_space: Option<SpaceValue>,
    min_free_space: Option<SpaceValue>,
}

/// The GC settings: whether to collect after builds, and the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    pub enabled: bool,
    pub policies: Vec<GcPolicy>,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            enabled: true,
            policies: default_policies(),
        }
    }
}

/// The config file wbuild reads when `--config` names none.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "wbuild").map(|d| d.config_dir().join("wbuild.toml"))
}

/// Reads the GC settings from `path` (a missing default file is the
/// defaults; a missing `--config` file is an error).
pub fn load_gc(path: Option<&Path>) -> Result<GcConfig, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok(GcConfig::default()),
        },
    };
    let err = |cause: ConfigCause| ConfigError {
        path: path.clone(),
        cause,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(GcConfig::default())
        }
        Err(e) => return Err(err(e.into())),
    };
    parse_gc(&text).map_err(err)
}

fn space(v: &Option<SpaceValue>) -> Result<Option<Space>, ConfigCause> {
    match v {
        None => Ok(None),
        Some(SpaceValue::Bytes(b)) => Ok(Some(Space::Bytes(*b))),
        Some(SpaceValue::Text(t)) => Ok(Some(Space::parse(t)?)),
    }
}

/// The GC settings a config text gives.
pub fn parse_gc(text: &str) -> Result<GcConfig, ConfigCause> {
    let f: File = toml::from_str(text)?;
    let Some(gc) = f.gc else {
        return Ok(GcConfig::default());
    };
    let mut policies = match &gc.policy {
        Some(list) => list
            .iter()
            .map(|p| {
                Ok(GcPolicy {
                    all: p.all.unwrap_or(false),
                    filters: p.filters.clone().unwrap_or_default(),
                    keep_duration: match &p.keep_duration {
                        None => None,
                        Some(DurationValue::Seconds(s)) => Some(std::time::Duration::from_secs(*s)),
                        Some(DurationValue::Text(t)) => {
                            Some(crate::frontend::instructions::parse_go_duration(t).map_err(
                                |error| ConfigCause::Duration {
                                    text: t.clone(),
                                    error,
                                },
                            )?)
                        }
                    },
                    reserved_space: space(&p.reserved_space)?,
                    max_used_space: space(&p.max_used_space)?,
                    min_free_space: space(&p.min_free_space)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigCause>>()?,
        None => default_policies(),
    };
    // The top-level caps fill every rule that has caps of its own, and
    // no rule of the given ones that leaves them out.
    let (r, m, f) = (
        space(&gc.reserved_space)?,
        space(&gc.max_used_space)?,
        space(&gc.min_free_space)?,
    );
    if gc.policy.is_none() {
        for p in policies
            .iter_mut()
            .filter(|p| p.max_used_space.is_some() && p.keep_duration.is_none())
        {
            p.reserved_space = r.or(p.reserved_space);
            p.max_used_space = m.or(p.max_used_space);
            p.min_free_space = f.or(p.min_free_space);
        }
    }
    Ok(GcConfig {
        enabled: gc.enabled.unwrap_or(true),
        policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_buildkits_gc_settings() {
        let c = parse_gc("").unwrap();
        assert_eq!(c, GcConfig::default());
        assert_eq!(c.policies.len(), 4);
        let c = parse_gc("[gc]\nenabled = false\nmaxUsedSpace = \"2GB\"\n").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.policies[2].max_used_space, Some(Space::Bytes(2 << 30)));
        assert_eq!(c.policies[0].max_used_space, Some(Space::Bytes(512 << 20)));
        let c = parse_gc(
            "[[gc.policy]]\nfilters = [\"type==exec.cachemount\"]\nkeepDuration = \"48h\"\n[[gc.policy]]\nall = true\nmaxUsedSpace = \"10%\"\n",
        )
        .unwrap();
        assert_eq!(c.policies.len(), 2);
        assert_eq!(
            c.policies[0].keep_duration,
            Some(std::time::Duration::from_secs(48 * 3600))
        );
        assert_eq!(c.policies[1].max_used_space, Some(Space::Percent(10)));
        assert!(matches!(
            parse_gc("[gc]\nmaxUsedSpace = \"lots\"\n"),
            Err(ConfigCause::Space(crate::store::SpaceError::NotASize(_)))
        ));
        assert!(matches!(
            parse_gc("[gc]\nunknown = 1\n"),
            Err(ConfigCause::Toml(_))
        ));
        assert!(matches!(
            parse_gc("[[gc.policy]]\nkeepDuration = \"forever\"\n"),
            Err(ConfigCause::Duration { .. })
        ));
    }
}
