//! deploy/grafana/slack-logs-dashboard.json cannot drift from `/metrics`: every series a panel or
//! variable queries is one `metrics::render` writes, with labels it writes, and every series it
//! writes has a panel. Also checks what makes the dashboard importable anywhere: a templated
//! Prometheus datasource used by every panel and query, and the `stream` / `team_id` variables.

use std::collections::BTreeSet;

use serde_json::Value;
use slack_logs_core::metrics;
use slack_logs_core::status::{StoredStatus, StreamStatus};

const DASHBOARD: &str = include_str!("../../deploy/grafana/slack-logs-dashboard.json");

/// A walk with every field set, so every family has a sample (errors included).
fn rendered() -> String {
    let mut stored = StoredStatus {
        passes: 2,
        total_pages: 3,
        total_requests: 4,
        total_rate_limited: 1,
        last_record_at: Some(900),
        total_late_events: 1,
        ..Default::default()
    };
    stored.errors.insert("invalid_auth".into(), 1);
    metrics::render(&[StreamStatus {
        stream: "access".into(),
        team_id: Some("T1".into()),
        watermark: Some(1000),
        lag_seconds: Some(60),
        last_success: Some(990),
        last_error_at: Some(995),
        last_error: Some("e".into()),
        total_records: 5,
        stored,
        silent_for: None,
    }])
}

/// The family names (`# TYPE <name> <kind>`) and every label name of the samples.
fn families_and_labels(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    let mut labels = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((inside, _)) = rest.rsplit_once('}') else {
            continue;
        };
        for pair in inside.split(',') {
            if let Some((name, _)) = pair.split_once('=') {
                labels.insert(name.to_string());
            }
        }
    }
    (families, labels)
}

/// Every PromQL expression: panel targets' `expr` and the variables' `query`.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            out.push(
                target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a target without expr in {}", panel["title"]))
                    .to_string(),
            );
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        if var["type"] == "query" {
            let q = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .expect("a variable query");
            out.push(q.to_string());
        }
    }
    out
}

/// Identifiers starting with `slack_logs_` in an expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("slack_logs_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Label names an expression or a legend uses: matchers `{name=…}`, `by (…)`, `label_values(…, name)`
/// and legends `{{name}}`.
fn label_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let ident = |s: &str| {
        s.trim()
            .trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .to_string()
    };
    for part in text.split("{{").skip(1) {
        if let Some((name, _)) = part.split_once("}}") {
            names.push(ident(name));
        }
    }
    let text = text.replace("{{", "").replace("}}", "");
    for part in text.split('{').skip(1) {
        let inside = part.split('}').next().unwrap_or("");
        for matcher in inside.split(',') {
            if let Some(at) = matcher.find(['=', '!']) {
                names.push(ident(&matcher[..at]));
            }
        }
    }
    for part in text.split("by (").skip(1) {
        names.extend(part.split(')').next().unwrap_or("").split(',').map(ident));
    }
    if let Some(args) = text.strip_prefix("label_values(") {
        if let Some((_, label)) = args.trim_end_matches(')').rsplit_once(',') {
            names.push(ident(label));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

#[test]
fn the_dashboard_queries_exactly_the_series_metrics_writes() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let (families, labels) = families_and_labels(&rendered());
    assert!(
        families.len() >= 12 && labels.contains("code"),
        "{families:?} {labels:?}"
    );
    let queries = queries(&dashboard);
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    let unknown: Vec<_> = used.difference(&families).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries series /metrics does not write: {unknown:?} (written: {families:?})"
    );
    let unshown: Vec<_> = families.difference(&used).collect();
    assert!(unshown.is_empty(), "series /metrics writes that no panel shows: {unshown:?}; add a panel to deploy/grafana/slack-logs-dashboard.json");

    let mut texts = queries.clone();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            texts.extend(target["legendFormat"].as_str().map(String::from));
        }
    }
    for text in &texts {
        for label in label_names(text) {
            assert!(
                labels.contains(&label),
                "label {label:?} in {text:?} is not one /metrics writes ({labels:?})"
            );
        }
    }
}

#[test]
fn the_datasource_and_the_stream_and_workspace_are_variables() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"))
    };
    assert_eq!(
        (
            var("datasource")["type"].as_str(),
            var("datasource")["query"].as_str()
        ),
        (Some("datasource"), Some("prometheus"))
    );
    for name in ["stream", "team_id"] {
        assert_eq!(var(name)["type"], "query");
        assert_eq!(var(name)["datasource"]["uid"], "${datasource}");
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = &panel["title"];
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "panel ids are unique: {title}"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            // Every series is narrowed by both variables.
            for name in metric_names(expr) {
                let selector = format!("{name}{{stream=~\"$stream\",team_id=~\"$team_id\"}}");
                assert!(
                    expr.contains(&selector),
                    "{title}: {name} without the stream/team_id selector in {expr}"
                );
            }
        }
    }
}

#[test]
fn the_checks_catch_a_renamed_series() {
    // The extraction the tests above rely on finds names and labels where dashboards put them.
    assert_eq!(
        metric_names("sum by (stream) (rate(slack_logs_records_totl{stream=~\"$stream\"}[5m]))"),
        ["slack_logs_records_totl"]
    );
    assert_eq!(
        label_names("sum by (stream, code) (x{team=~\"$t\"})"),
        ["team", "stream", "code"]
    );
    assert_eq!(
        label_names("label_values(slack_logs_passes_total, stream)"),
        ["stream"]
    );
    assert_eq!(label_names("{{code}} {{team_id}}"), ["code", "team_id"]);
    let (families, _) = families_and_labels(&rendered());
    assert!(
        !families.contains("slack_logs_records_totl")
            && families.contains("slack_logs_records_total")
    );
}
