//! The image config: what a container runs with, the rootfs's diff-ids
//! and the history.

use std::collections::BTreeMap;

use serde::Serialize;

use super::DiffId;

/// The runtime part of an image config (`config` in OCI terms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunConfig {
    #[serde(
        rename = "User",
        skip_serializing_if = "String::is_empty",
        default,
        deserialize_with = "nullable"
    )]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        skip_serializing_if = "BTreeMap::is_empty",
        default,
        deserialize_with = "nullable"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(
        rename = "Env",
        skip_serializing_if = "Vec::is_empty",
        default,
        deserialize_with = "nullable_strings"
    )]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "nullable_opt_strings"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(
        rename = "Cmd",
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "nullable_opt_strings"
    )]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        skip_serializing_if = "BTreeMap::is_empty",
        default,
        deserialize_with = "nullable"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        rename = "WorkingDir",
        skip_serializing_if = "String::is_empty",
        default,
        deserialize_with = "nullable"
    )]
    pub working_dir: String,
    #[serde(
        rename = "Labels",
        skip_serializing_if = "BTreeMap::is_empty",
        default,
        deserialize_with = "nullable_map"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        skip_serializing_if = "String::is_empty",
        default,
        deserialize_with = "nullable"
    )]
    pub stop_signal: String,
    /// Docker's flag that CMD/ENTRYPOINT are one escaped Windows command
    /// line: wbuild never sets it, but an image that has it keeps it, as
    /// BuildKit's config does (a Windows base's shell-form CMD).
    #[serde(
        rename = "ArgsEscaped",
        skip_serializing_if = "std::ops::Not::not",
        default,
        deserialize_with = "nullable"
    )]
    pub args_escaped: bool,
    #[serde(
        rename = "Healthcheck",
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "nullable"
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(
        rename = "OnBuild",
        skip_serializing_if = "Vec::is_empty",
        default,
        deserialize_with = "nullable_strings"
    )]
    pub on_build: Vec<String>,
    #[serde(
        rename = "Shell",
        skip_serializing_if = "Vec::is_empty",
        default,
        deserialize_with = "nullable_strings"
    )]
    pub shell: Vec<String>,
}

/// `{}` in JSON (read from anything: Docker's configs hold `{}`, some
/// writers `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

impl<'de> serde::Deserialize<'de> for Empty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Empty, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Empty {})
    }
}

/// A list of strings that may be `null`, or hold `null`s (Go reads each
/// as "").
fn nullable_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::Deserialize;
    let v = Option::<Vec<Option<String>>>::deserialize(d)?.unwrap_or_default();
    Ok(v.into_iter().map(Option::unwrap_or_default).collect())
}

/// [`nullable_strings`] where `null` (or absence) and `[]` differ.
fn nullable_opt_strings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    use serde::Deserialize;
    let v = Option::<Vec<Option<String>>>::deserialize(d)?;
    Ok(v.map(|v| v.into_iter().map(Option::unwrap_or_default).collect()))
}

/// A map of strings whose values may be `null` (Go reads them as "").
fn nullable_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::Deserialize;
    let v = Option::<BTreeMap<String, Option<String>>>::deserialize(d)?.unwrap_or_default();
    Ok(v.into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// A field JSON may give as `null`: read as absent (Docker 20.10's
/// BuildKit writes `"OnBuild": null`, `docker import` and `docker commit`
/// `"Volumes": null`, `"Cmd": null` and more).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HealthConfig {
    #[serde(rename = "Test", default, deserialize_with = "nullable_strings")]
    pub test: Vec<String>,
    #[serde(
        rename = "Interval",
        skip_serializing_if = "is_zero",
        default,
        deserialize_with = "nullable"
    )]
    pub interval: u64,
    #[serde(
        rename = "Timeout",
        skip_serializing_if = "is_zero",
        default,
        deserialize_with = "nullable"
    )]
    pub timeout: u64,
    #[serde(
        rename = "StartPeriod",
        skip_serializing_if = "is_zero",
        default,
        deserialize_with = "nullable"
    )]
    pub start_period: u64,
    #[serde(
        rename = "StartInterval",
        skip_serializing_if = "is_zero",
        default,
        deserialize_with = "nullable"
    )]
    pub start_interval: u64,
    #[serde(
        rename = "Retries",
        skip_serializing_if = "is_zero",
        default,
        deserialize_with = "nullable"
    )]
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    #[serde(default, deserialize_with = "nullable")]
    pub created: String,
    #[serde(default, deserialize_with = "nullable")]
    pub created_by: String,
    #[serde(default, deserialize_with = "nullable")]
    pub comment: String,
    #[serde(
        skip_serializing_if = "std::ops::Not::not",
        default,
        deserialize_with = "nullable"
    )]
    pub empty_layer: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub diff_ids: Vec<DiffId>,
}

/// The OCI image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub created: String,
    /// `MAINTAINER`'s name.
    #[serde(
        skip_serializing_if = "String::is_empty",
        default,
        deserialize_with = "nullable"
    )]
    pub author: String,
    #[serde(default, deserialize_with = "nullable")]
    pub architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    pub os: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        default,
        deserialize_with = "nullable"
    )]
    pub variant: String,
    #[serde(default, deserialize_with = "nullable")]
    pub config: RunConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub rootfs: RootFs,
    #[serde(default, deserialize_with = "nullable")]
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

/// An image config that is not one (its JSON says where).
#[derive(Debug, thiserror::Error)]
#[error("its config cannot be read: {0}")]
pub struct ConfigReadError(pub serde_json::Error);

impl ImageConfig {
    /// Reads a config another builder wrote: every field may be missing
    /// or `null` (read as absent); what cannot be read says which field.
    pub fn read(bytes: &[u8]) -> Result<ImageConfig, ConfigReadError> {
        serde_json::from_slice(bytes).map_err(ConfigReadError)
    }
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

    /// A config with every field Docker and BuildKit write.
    const RICH: &str = r#"{
        "architecture": "amd64", "os": "linux", "variant": "v1", "created": "2024-01-01T00:00:00Z",
        "author": "me",
        "config": {"User": "app", "ExposedPorts": {"80/tcp": {}}, "Env": ["PATH=/bin", "A=1"],
            "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"], "Volumes": {"/data": {}},
            "WorkingDir": "/srv", "Labels": {"a": "b"}, "StopSignal": "SIGTERM",
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1, "Timeout": 2, "StartPeriod": 3,
                "StartInterval": 4, "Retries": 5},
            "OnBuild": ["RUN x"], "Shell": ["/bin/sh", "-c"], "ArgsEscaped": true,
            "Hostname": "", "Domainname": "", "AttachStdin": false, "Tty": false, "Image": "sha256:0"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "x", "comment": "c", "empty_layer": true}],
        "container_config": {"Cmd": null}, "docker_version": "20.10.24"
    }"#;

    /// Every place a value can be, as a JSON pointer.
    fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    pointers(x, p, out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    pointers(x, p, out);
                }
            }
            _ => {}
        }
    }

    /// `null` in any field of a config reads as that field absent; `null`
    /// inside a list either reads or says what it could not read — never
    /// a panic (issue 26: Docker 20.10's BuildKit writes `"OnBuild":
    /// null`, `docker import` and `docker commit` `"Volumes": null`).
    #[test]
    fn nulls_anywhere_read_as_absent() {
        let rich: serde_json::Value = serde_json::from_str(RICH).unwrap();
        let full = ImageConfig::read(RICH.as_bytes()).unwrap();
        assert_eq!(full.config.on_build, vec!["RUN x"]);
        // Issue 28 item 6: an inherited ArgsEscaped is kept, where Docker
        // writes it (after StopSignal).
        assert!(full.config.args_escaped);
        let written = serde_json::to_string(&full.config).unwrap();
        assert!(
            written.contains(r#""StopSignal":"SIGTERM","ArgsEscaped":true,"Healthcheck""#),
            "{written}"
        );
        let mut all = Vec::new();
        pointers(&rich, String::new(), &mut all);
        assert!(all.len() > 40, "{}", all.len());
        for p in &all {
            let mut v = rich.clone();
            *v.pointer_mut(p).unwrap() = serde_json::Value::Null;
            let bytes = serde_json::to_vec(&v).unwrap();
            // Only an element of a list of objects or digests may be
            // refused (Go too reads no struct or digest from `null`).
            let in_list = p.rsplit('/').next().unwrap().parse::<usize>().is_ok()
                && (p.starts_with("/history") || p.starts_with("/rootfs"));
            match ImageConfig::read(&bytes) {
                Ok(c) if !in_list => {
                    // The other fields are still read.
                    if p != "/config" {
                        assert!(
                            c.config.env.len() == 2 || p.starts_with("/config/Env"),
                            "{p}"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => assert!(in_list, "{p}: {e}"),
            }
        }
        // Whole configs that real builders wrote with nulls.
        for real in [
            // `docker import` (Docker 20.10)
            r#"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"created":"2026-12-07T00:00:00.0Z","docker_version":"20.10.24+dfsg1","history":[{"created":"2026-12-07T00:00:00.0Z","comment":"Imported from -"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#,
            // Docker 20.10's BuildKit
            r#"{"architecture":"amd64","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/","OnBuild":null},"created":null,"history":[{"created":null,"created_by":"RUN x","comment":"buildkit.dockerfile.v0","empty_layer":null}],"os":"linux","rootfs":{"type":"layers","diff_ids":null}}"#,
        ] {
            let c = ImageConfig::read(real.as_bytes()).unwrap();
            assert!(c.config.on_build.is_empty() && c.config.volumes.is_empty());
        }
    }

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
