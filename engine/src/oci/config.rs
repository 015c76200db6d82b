//! The image config: what a container runs with, the rootfs's diff-ids
//! and the history.

use std::collections::BTreeMap;

use serde::Serialize;

use super::DiffId;

/// The runtime part of an image config (`config` in OCI terms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", skip_serializing_if = "String::is_empty", default)]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty", default)]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        rename = "WorkingDir",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub working_dir: String,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub stop_signal: String,
    #[serde(
        rename = "Healthcheck",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "OnBuild", skip_serializing_if = "Vec::is_empty", default)]
    pub on_build: Vec<String>,
    #[serde(rename = "Shell", skip_serializing_if = "Vec::is_empty", default)]
    pub shell: Vec<String>,
}

/// `{}` in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HealthConfig {
    #[serde(rename = "Test")]
    pub test: Vec<String>,
    #[serde(rename = "Interval", skip_serializing_if = "is_zero", default)]
    pub interval: u64,
    #[serde(rename = "Timeout", skip_serializing_if = "is_zero", default)]
    pub timeout: u64,
    #[serde(rename = "StartPeriod", skip_serializing_if = "is_zero", default)]
    pub start_period: u64,
    #[serde(rename = "StartInterval", skip_serializing_if = "is_zero", default)]
    pub start_interval: u64,
    #[serde(rename = "Retries", skip_serializing_if = "is_zero", default)]
    pub retries: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl RunConfig {
    /// Sets `KEY=VALUE` in Env, replacing an earlier value.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key))
        {
            Some(e) => *e = entry,
            None => self.env.push(entry),
        }
    }

    pub fn env_map(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    pub created: String,
    pub created_by: String,
    pub comment: String,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub empty_layer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<DiffId>,
}

/// The OCI image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub created: String,
    /// `MAINTAINER`'s name.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub author: String,
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub variant: String,
    pub config: RunConfig,
    pub rootfs: RootFs,
    pub history: Vec<HistoryEntry>,
    /// `--cache-to type=inline`: the cache config of the steps that made
    /// this image, under wbuild's own key (BuildKit's is
    /// `moby.buildkit.cache.v0`).
    #[serde(
        rename = "wbuild.cache.v0",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub inline_cache: Option<serde_json::Value>,
}

/// RFC 3339 UTC for seconds since the epoch (civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn env_replaces_in_place() {
        let mut c = RunConfig::default();
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        assert_eq!(c.env, vec!["A=3", "B=2"]);
    }
}
