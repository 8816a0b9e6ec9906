//! The Spin manifests (`spin.toml`, `deploy/spin/http-sink.toml`, `deploy/spin/s3-sink.toml`)
//! against what the build produces and what the component reads: every config key is a
//! variable, nothing unknown reaches the component, the sources and the sink dependency are the
//! built files, and the dependency names an import the component really has. The Spin CLI is not available to the test suite, so
//! this checks the manifest's facts instead of running `spin up`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use slack_logs_core::config::KEYS;
use toml::{Table, Value};

/// Application variables that are not component config: the hosts in allowed_outbound_hosts.
const HOST_VARIABLES: &[&str] = &["slack_api_host", "slack_audit_host"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Manifest {
    path: PathBuf,
    doc: Table,
}

impl Manifest {
    fn load(rel: &str) -> Manifest {
        let path = repo().join(rel);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Table = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()));
        Manifest { path, doc }
    }

    /// Spin resolves `source`, dependency `path`s and `workdir` against the manifest's directory.
    fn resolve(&self, rel: &str) -> PathBuf {
        self.path.parent().expect("manifest directory").join(rel)
    }

    fn table(&self, dotted: &str) -> &Table {
        let mut t = &self.doc;
        for part in dotted.split('.') {
            t = t
                .get(part)
                .and_then(Value::as_table)
                .unwrap_or_else(|| panic!("{}: no [{dotted}]", self.path.display()));
        }
        t
    }

    fn collector(&self) -> &Table {
        self.table("component.collector")
    }

    fn str_at<'a>(&self, t: &'a Table, key: &str) -> &'a str {
        t.get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: `{key}` is not a string", self.path.display()))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The component's own imports and exports.
fn world(path: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    common::component_world(&bytes)
}

fn key_names() -> BTreeSet<&'static str> {
    KEYS.iter().map(|(k, _)| *k).collect()
}

/// `{{ name }}` → `name`.
fn template_var(s: &str) -> Option<&str> {
    s.trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")
        .map(str::trim)
}

/// The checks both manifests must pass; `extra_vars` are their own non-config variables and
/// `required` the config keys they require.
fn check_common(m: &Manifest, extra_vars: &[&str], required: &[&str]) {
    let shown = m.path.display().to_string();
    assert_eq!(
        m.doc
            .get("spin_manifest_version")
            .and_then(Value::as_integer),
        Some(2),
        "{shown}"
    );
    // Spin's v2 schema denies unknown fields; a typo would fail `spin up`, so catch it here.
    for key in m.doc.keys() {
        assert!(
            [
                "spin_manifest_version",
                "application",
                "variables",
                "trigger",
                "component"
            ]
            .contains(&key.as_str()),
            "{shown}: unknown top-level `{key}`"
        );
    }

    // The HTTP trigger routes everything to the collector; its routes match on the path's end.
    let http = m
        .doc
        .get("trigger")
        .and_then(|t| t.get("http"))
        .and_then(Value::as_array)
        .expect("[[trigger.http]]");
    assert_eq!(http.len(), 1, "{shown}");
    assert_eq!(
        http[0].get("route").and_then(Value::as_str),
        Some("/..."),
        "{shown}"
    );
    assert_eq!(
        http[0].get("component").and_then(Value::as_str),
        Some("collector"),
        "{shown}"
    );

    let c = m.collector();
    for key in c.keys() {
        assert!(
            [
                "source",
                "description",
                "variables",
                "environment",
                "files",
                "exclude_files",
                "allowed_outbound_hosts",
                "key_value_stores",
                "sqlite_databases",
                "ai_models",
                "build",
                "dependencies_inherit_configuration",
                "dependencies",
                "tool"
            ]
            .contains(&key.as_str()),
            "{shown}: unknown component field `{key}`"
        );
    }

    // The source is the file `cargo xtask build` produces, and it exists after the build.
    let source = m.resolve(m.str_at(c, "source"));
    assert!(
        same_file(&source, &common::component()),
        "{shown}: source {} is not {}",
        source.display(),
        common::component().display()
    );

    // Application variables: every config key, the host variables, nothing else.
    let vars = m.table("variables");
    let mut expected: BTreeSet<&str> = key_names();
    expected.extend(HOST_VARIABLES);
    expected.extend(extra_vars);
    let declared: BTreeSet<&str> = vars.keys().map(String::as_str).collect();
    assert_eq!(declared, expected, "{shown}: application variables");
    for (name, v) in vars {
        let v = v
            .as_table()
            .unwrap_or_else(|| panic!("{shown}: variable `{name}` is not a table"));
        for field in v.keys() {
            assert!(
                ["required", "default", "secret"].contains(&field.as_str()),
                "{shown}: variable `{name}` has `{field}`"
            );
        }
        let required = v.get("required").and_then(Value::as_bool).unwrap_or(false);
        // Spin: a variable is either required or has a default, never both.
        assert_ne!(
            required,
            v.contains_key("default"),
            "{shown}: variable `{name}` needs exactly one of required / default"
        );
    }
    // Not required: the OAuth install flow (/oauth/start) can supply the token instead, and a
    // required variable would force a placeholder that then wins over the installed token.
    let slack_token = vars["slack_token"].as_table().expect("slack_token");
    assert_eq!(
        slack_token.get("required").and_then(Value::as_bool),
        None,
        "{shown}: slack_token"
    );
    // The keys the core calls secret are secret here too, so Spin keeps them out of its logs.
    for (key, meaning) in KEYS {
        let secret = vars[*key]
            .get("secret")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        assert_eq!(
            secret,
            meaning.contains("Secret."),
            "{shown}: `secret` of `{key}`"
        );
        if !required.contains(key) {
            // Empty means unset: the component's own default applies, defined in one place.
            assert_eq!(
                vars[*key].get("default").and_then(Value::as_str),
                Some(""),
                "{shown}: default of `{key}`"
            );
        }
    }

    // Component variables: exactly the config keys, each the application variable of its name.
    // The component refuses keys it does not know, so nothing else may map into it.
    let cvars = m.table("component.collector.variables");
    let mapped: BTreeSet<&str> = cvars.keys().map(String::as_str).collect();
    assert_eq!(
        mapped,
        key_names(),
        "{shown}: component variables vs slack_logs_core::config::KEYS"
    );
    for (k, v) in cvars {
        assert_eq!(
            v.as_str().and_then(template_var),
            Some(k.as_str()),
            "{shown}: `{k}` maps to {v}"
        );
    }
    // And the component really accepts all of them (with the manifest's empty defaults).
    let pairs: Vec<(&str, &str)> = mapped
        .iter()
        .map(|k| (*k, if *k == "slack_token" { "xoxp-test" } else { "" }))
        .collect();
    slack_logs_core::Config::from_pairs(&pairs)
        .unwrap_or_else(|e| panic!("{shown}: the component refuses the manifest's variables: {e}"));

    // Outbound hosts are templates of host variables whose defaults are scheme://host, no path.
    let hosts = c
        .get("allowed_outbound_hosts")
        .and_then(Value::as_array)
        .expect("allowed_outbound_hosts");
    let mut templated = BTreeSet::new();
    for h in hosts {
        let var = h
            .as_str()
            .and_then(template_var)
            .unwrap_or_else(|| panic!("{shown}: outbound host {h} is not a {{{{ variable }}}}"));
        assert!(
            declared.contains(var) && !key_names().contains(var),
            "{shown}: `{var}` must be a host variable, not a config key"
        );
        if let Some(d) = vars[var].get("default").and_then(Value::as_str) {
            let rest = d
                .strip_prefix("https://")
                .or_else(|| d.strip_prefix("http://"))
                .unwrap_or_else(|| panic!("{shown}: {var} = {d:?} has no scheme"));
            assert!(
                !rest.is_empty() && !rest.contains('/'),
                "{shown}: {var} = {d:?}: Spin takes no path here"
            );
        }
        templated.insert(var);
    }
    for var in HOST_VARIABLES {
        assert!(
            templated.contains(var),
            "{shown}: `{var}` is not in allowed_outbound_hosts"
        );
    }
    // The host defaults allow what the component calls by default.
    let defaults = slack_logs_core::Config::default();
    for (var, base) in [
        ("slack_api_host", &defaults.slack_api_base),
        ("slack_audit_host", &defaults.slack_audit_base),
    ] {
        let host = vars[var]
            .get("default")
            .and_then(Value::as_str)
            .expect("host default");
        assert!(
            base.starts_with(&format!("{host}/")),
            "{shown}: {var} = {host} does not allow the default base {base}"
        );
    }

    let kv = c
        .get("key_value_stores")
        .and_then(Value::as_array)
        .expect("key_value_stores");
    assert_eq!(kv, &vec![Value::String("default".into())], "{shown}");

    // The build command builds the collector and the sinks for wasm32-wasip2 in one invocation.
    let build = m.table("component.collector.build");
    let command = m.str_at(build, "command");
    let workdir = build
        .get("workdir")
        .and_then(Value::as_str)
        .map_or_else(|| m.resolve(""), |w| m.resolve(w));
    assert!(
        same_file(&workdir, &repo()),
        "{shown}: the build runs in {}",
        workdir.display()
    );
    assert!(
        command.starts_with("cargo build --release --target wasm32-wasip2 "),
        "{shown}: {command}"
    );
    for package in [
        "slack-logs-collector",
        "sink-stdout",
        "sink-http",
        "sink-s3",
    ] {
        assert!(
            command
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["-p", package]),
            "{shown}: {command} does not build {package}"
        );
    }
}

/// The dependency: its key names a real import, its path is the built sink that exports it.
fn check_dependency(m: &Manifest, sink_file: &str) {
    let shown = m.path.display().to_string();
    let deps = m.table("component.collector.dependencies");
    assert_eq!(deps.len(), 1, "{shown}: {deps:?}");
    let (name, dep) = deps.iter().next().expect("one dependency");
    let (imports, _) = world(&common::component());
    // Spin matches `package/interface` against the import name without its version.
    let import = imports
        .iter()
        .find(|i| i.split('@').next() == Some(name.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "{shown}: dependency `{name}` matches none of the component's imports {imports:?}"
            )
        });
    let path = m.resolve(
        dep.get("path")
            .and_then(Value::as_str)
            .expect("a path dependency"),
    );
    let built = common::component().with_file_name(sink_file);
    assert!(
        same_file(&path, &built),
        "{shown}: dependency path {} is not the built {}",
        path.display(),
        built.display()
    );
    let (_, sink_exports) = world(&built);
    assert!(
        sink_exports.contains(import),
        "{}: exports {sink_exports:?}, not {import}",
        built.display()
    );
}

fn inherits(m: &Manifest) -> Option<bool> {
    m.collector()
        .get("dependencies_inherit_configuration")
        .and_then(Value::as_bool)
}

#[test]
fn spin_toml_matches_the_component_and_the_build() {
    let m = Manifest::load("spin.toml");
    check_common(&m, &[], &[]);
    check_dependency(&m, "sink_stdout.wasm");
    // The stdout sink needs nothing; without inheritance Spin composes it behind a deny-all
    // adapter, so it can reach neither the token nor the network.
    assert_eq!(inherits(&m), Some(false));
}

#[test]
fn http_sink_manifest_grants_what_the_http_sink_needs() {
    let m = Manifest::load("deploy/spin/http-sink.toml");
    check_common(&m, &["sink_host"], &["sink_url"]);
    check_dependency(&m, "sink_http.wasm");
    // It reads variables and sends over the network: both come only with inheritance.
    assert_eq!(inherits(&m), Some(true));
    let vars = m.table("variables");
    for required in ["sink_url", "sink_host"] {
        assert_eq!(
            vars[required].get("required").and_then(Value::as_bool),
            Some(true),
            "{required}"
        );
    }
    let hosts = m.collector()["allowed_outbound_hosts"]
        .as_array()
        .expect("hosts");
    assert!(hosts
        .iter()
        .any(|h| h.as_str().and_then(template_var) == Some("sink_host")));
}

#[test]
fn s3_sink_manifest_grants_what_the_s3_sink_needs() {
    let m = Manifest::load("deploy/spin/s3-sink.toml");
    let required = ["s3_bucket", "s3_access_key_id", "s3_secret_access_key"];
    check_common(&m, &["s3_host"], &required);
    check_dependency(&m, "sink_s3.wasm");
    // It reads variables and sends over the network: both come only with inheritance.
    assert_eq!(inherits(&m), Some(true));
    let vars = m.table("variables");
    for name in required.iter().chain(&["s3_host"]) {
        assert_eq!(
            vars[*name].get("required").and_then(Value::as_bool),
            Some(true),
            "{name}"
        );
    }
    let hosts = m.collector()["allowed_outbound_hosts"]
        .as_array()
        .expect("hosts");
    assert!(hosts
        .iter()
        .any(|h| h.as_str().and_then(template_var) == Some("s3_host")));
}

#[test]
fn deploy_examples_name_only_manifest_variables() {
    let m = Manifest::load("spin.toml");
    let vars: BTreeSet<String> = m.table("variables").keys().cloned().collect();
    let runtime = |rel: &str| -> Table {
        let text = std::fs::read_to_string(repo().join(rel)).expect(rel);
        toml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };

    let redis = runtime("deploy/spin/runtime-config-redis.toml");
    assert_eq!(
        redis["key_value_store"]["default"]["type"].as_str(),
        Some("redis")
    );
    let vault = runtime("deploy/spin/runtime-config-vault.toml");
    assert_eq!(vault["config_provider"][0]["type"].as_str(), Some("vault"));

    // `spin aka deploy --variable @deploy/akamai/variables.toml`
    let aka = runtime("deploy/akamai/variables.toml");
    for k in aka.keys() {
        assert!(
            vars.contains(k),
            "deploy/akamai/variables.toml: `{k}` is not a manifest variable"
        );
    }
    let max_run: u32 = aka["max_run_seconds"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("max_run_seconds");
    assert!(max_run < 30, "Akamai Functions ends a request at 30 s");

    // SPIN_VARIABLE_<NAME> lines of the env file (commented ones too: they are suggestions).
    let env = std::fs::read_to_string(repo().join("deploy/spin/slack-logs.env")).expect("env file");
    for line in env.lines().map(|l| l.trim_start_matches('#')) {
        if let Some((name, _)) = line
            .strip_prefix("SPIN_VARIABLE_")
            .and_then(|l| l.split_once('='))
        {
            assert!(
                vars.contains(&name.to_ascii_lowercase()),
                "slack-logs.env: {name}"
            );
        }
    }

    // The SpinApp's `variables` entries (a flat YAML list: `- name: x` under `variables:`).
    let spinapp = std::fs::read_to_string(repo().join("deploy/kubernetes/spinapp.yaml"))
        .expect("spinapp.yaml");
    let section = spinapp
        .split("\n  variables:\n")
        .nth(1)
        .and_then(|s| s.split("\n  runtimeConfig:").next())
        .expect("variables section");
    let names: Vec<&str> = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .collect();
    assert!(names.contains(&"slack_token"), "{names:?}");
    for n in names {
        assert!(
            vars.contains(n),
            "spinapp.yaml: `{n}` is not a manifest variable"
        );
    }
}
