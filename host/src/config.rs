//! The configuration handed to the component through `wasi:config/store`.
//!
//! Sources, later wins: a flat TOML file (`--config FILE`), then every
//! `SLACK_LOGS_<KEY>` environment variable, then (for `demo`) overrides set by
//! the host itself. The host does not know the schema: the component validates
//! key names and values itself, so that it behaves the same under Spin.
//! Values may hold tokens, so nothing here ever prints a value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Prefix of the environment variables that become config keys.
pub const ENV_PREFIX: &str = "SLACK_LOGS_";

/// `SLACK_LOGS_*` variables that configure the host, not the component. They
/// are not passed on, since the component rejects keys it does not know.
pub const HOST_ENV: &[&str] = &[
    "SLACK_LOGS_COMPONENT",
    "SLACK_LOGS_SINK_TOKEN",
    crate::STATE_ENV,
];

/// Flat key -> string value map, as `wasi:config/store` serves it.
pub type ConfigMap = BTreeMap<String, String>;

#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    NotFlat {
        path: PathBuf,
        key: String,
        kind: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Parse { path, message } => write!(
                f,
                "config file {} is not valid TOML: {}",
                path.display(),
                message.trim_end()
            ),
            ConfigError::NotFlat { path, key, kind } => write!(
                f,
                "config file {}: key `{key}` holds {kind}; only flat `key = value` pairs \
                 (string, integer or boolean) are allowed, e.g. `streams = \"audit,access\"`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parse the TOML text of a config file into flat string pairs.
pub fn parse_toml(path: &Path, text: &str) -> Result<ConfigMap, ConfigError> {
    // Not `e.to_string()`: it quotes the offending line, which may hold a token.
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: match e.span().and_then(|s| text.get(..s.start)) {
            Some(before) => format!(
                "{} (line {}, column {})",
                e.message(),
                before.matches('\n').count() + 1,
                before.rsplit('\n').next().unwrap_or("").chars().count() + 1
            ),
            None => e.message().to_owned(),
        },
    })?;
    let mut out = ConfigMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            // Harmless to pass on as text; the component decides if they are valid.
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Table(_) => {
                return Err(ConfigError::NotFlat {
                    path: path.to_owned(),
                    key,
                    kind: "a table",
                })
            }
            toml::Value::Array(_) => {
                return Err(ConfigError::NotFlat {
                    path: path.to_owned(),
                    key,
                    kind: "an array",
                })
            }
        };
        out.insert(key, text);
    }
    Ok(out)
}

/// Overlay `SLACK_LOGS_*` variables: `SLACK_LOGS_SLACK_TOKEN` -> `slack_token`.
/// Returns the names of variables skipped because they are not UTF-8.
pub fn apply_env(
    map: &mut ConfigMap,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<String> {
    let mut skipped = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest.is_empty() || HOST_ENV.contains(&name) {
            continue;
        }
        match value.into_string() {
            Ok(v) => {
                map.insert(rest.to_ascii_lowercase(), v);
            }
            Err(_) => skipped.push(name.to_owned()),
        }
    }
    skipped
}

/// The full configuration: file (if any) overlaid with the process environment.
pub fn load(file: Option<&Path>) -> Result<ConfigMap, ConfigError> {
    let mut map = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            parse_toml(path, &text)?
        }
        None => ConfigMap::new(),
    };
    for name in apply_env(&mut map, std::env::vars_os()) {
        crate::log_warn!("ignoring environment variable {name}: its value is not valid UTF-8");
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.toml")
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn flat_values_become_strings() {
        let m = parse_toml(
            p(),
            "streams = \"audit,access\"\naudit_lag_seconds = 60\nocsf = true\nratio = 0.5\n",
        )
        .unwrap();
        assert_eq!(m["streams"], "audit,access");
        assert_eq!(m["audit_lag_seconds"], "60");
        assert_eq!(m["ocsf"], "true");
        assert_eq!(m["ratio"], "0.5");
    }

    #[test]
    fn nested_table_and_array_are_rejected_naming_the_key() {
        let e = parse_toml(p(), "[slack]\ntoken = \"x\"\n").unwrap_err();
        assert!(
            matches!(&e, ConfigError::NotFlat { key, .. } if key == "slack"),
            "{e}"
        );
        assert!(e.to_string().contains("`slack`"));
        let e = parse_toml(p(), "streams = [\"audit\"]\n").unwrap_err();
        assert!(
            matches!(&e, ConfigError::NotFlat { key, .. } if key == "streams"),
            "{e}"
        );
        let e = parse_toml(p(), "a.b = 1\n").unwrap_err();
        assert!(
            matches!(&e, ConfigError::NotFlat { key, .. } if key == "a"),
            "{e}"
        );
    }

    #[test]
    fn bad_toml_is_an_error_not_a_panic() {
        let e = parse_toml(p(), "streams = \n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        assert!(e.to_string().contains("test.toml"));
    }

    #[test]
    fn toml_errors_do_not_quote_the_line() {
        let e = parse_toml(p(), "streams = \"audit\"\nslack_token = \"xoxp-secret\n").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("secret"), "{msg}");
        assert!(msg.contains("line 2"), "the error still says where: {msg}");
    }

    #[test]
    fn env_overrides_file_and_adds_keys() {
        let mut m = parse_toml(p(), "streams = \"audit\"\nslack_token = \"from-file\"\n").unwrap();
        let skipped = apply_env(
            &mut m,
            env(&[
                ("SLACK_LOGS_SLACK_TOKEN", "from-env"),
                ("SLACK_LOGS_MAX_RUN_SECONDS", "25"),
                ("SLACK_LOGS_", "ignored"),
                ("SLACK_LOGS_COMPONENT", "/x.wasm"),
                ("SLACK_LOGS_SINK_TOKEN", "sink-secret"),
                ("SLACK_LOGS_STATE", "redis://:pw@127.0.0.1:6379"),
                ("HOME", "/root"),
            ]),
        );
        assert!(skipped.is_empty());
        assert_eq!(m["slack_token"], "from-env");
        assert_eq!(m["max_run_seconds"], "25");
        assert_eq!(m["streams"], "audit");
        assert!(!m.contains_key("component"));
        assert!(!m.contains_key("sink_token"));
        assert!(
            !m.contains_key("state"),
            "the state store is the host's, not a component key"
        );
        assert!(!m.contains_key(""));
        assert!(!m.contains_key("home"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load(Some(Path::new("/nonexistent/slack-logs.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/slack-logs.toml"));
    }
}
