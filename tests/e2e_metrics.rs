//! `/metrics` and the silence alert, end to end: the built component in the host against the
//! simulator. The metrics are parsed with a Prometheus text parser (not our own), and their
//! counters are compared with what the passes reported and delivered.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use slack_sim::{Fault, SimConfig, Simulator};

/// Parses Prometheus text with the `prometheus-parse` crate; keys are `name{stream,team_id[,code]}`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text exposition");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("unexpected sample type for {}: {other:?}", s.metric),
        };
        let mut key = format!("{}{{{}", s.metric, s.labels.get("stream").unwrap_or(""));
        if let Some(code) = s.labels.get("code") {
            key += &format!(",{code}");
        }
        key.push('}');
        out.insert(key, value);
    }
    out
}

fn serve(dir: &Scratch, settings: &[(&str, String)], port: u16) -> KillOnDrop {
    serve_on(host(dir, settings), port, std::process::Stdio::null())
}

#[test]
fn metrics_parse_and_their_counters_match_the_passes() {
    let sim = Simulator::start(SimConfig {
        seed: 31,
        audit_events: 40,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new("metrics");
    let settings = audit_settings(&sim, start);
    let port = free_port();
    let _host = serve(&dir, &settings, port);

    // Two 429s in the first pass: retried, counted.
    sim.fail_request(
        2,
        Fault::RateLimited {
            retry_after: Some("0".into()),
        },
    );
    sim.fail_request(
        4,
        Fault::RateLimited {
            retry_after: Some("0".into()),
        },
    );
    let (code, body) = http(port, "POST", "/collect", None);
    assert_eq!(code, 200, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    // A second pass: nothing new, but one more request and pass.
    let (code, body) = http(port, "POST", "/collect", None);
    assert_eq!(code, 200, "{body}");
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();

    let (code, text) = http(port, "GET", "/metrics", None);
    assert_eq!(code, 200, "{text}");
    let m = parse_metrics(&text);
    let sum = |field: &str| -> f64 {
        [&first, &second]
            .iter()
            .map(|r| r["streams"][0][field].as_f64().unwrap())
            .sum()
    };
    let delivered = delivered_ids(&dir.path("out.ndjson")).len() as f64;
    assert_eq!(m["slack_logs_records_total{audit}"], delivered, "{text}");
    assert_eq!(delivered, sim.audit_truth(start, now()).len() as f64);
    assert_eq!(m["slack_logs_pages_total{audit}"], sum("pages"));
    assert_eq!(m["slack_logs_requests_total{audit}"], sum("requests"));
    assert_eq!(m["slack_logs_rate_limited_total{audit}"], 2.0);
    assert_eq!(m["slack_logs_passes_total{audit}"], 2.0);
    assert_eq!(m["slack_logs_healthy{audit}"], 1.0);
    let last_success = m["slack_logs_last_success_timestamp_seconds{audit}"];
    assert!((last_success - now() as f64).abs() < 60.0, "{last_success}");
    let lag = m["slack_logs_lag_seconds{audit}"];
    assert!((0.0..60.0).contains(&lag), "lag {lag}");

    // A failing pass is counted by its error code.
    let (code, body) = http(
        sim.local_addr().port(),
        "POST",
        "/api/auth.revoke",
        Some(&format!("Bearer {}", slack_sim::ORG_OWNER_TOKEN)),
    );
    assert_eq!(code, 200, "{body}");
    let (code, _) = http(port, "POST", "/collect", None);
    assert_eq!(code, 500);
    let m = parse_metrics(&http(port, "GET", "/metrics", None).1);
    let errors: Vec<_> = m
        .keys()
        .filter(|k| k.starts_with("slack_logs_errors_total{audit,"))
        .collect();
    assert_eq!(errors.len(), 1, "{m:?}");
    assert_eq!(m[errors[0]], 1.0);
    assert_eq!(m["slack_logs_passes_total{audit}"], 3.0);
}

#[test]
fn the_silence_alert_raises_and_clears() {
    let sim = Simulator::start(SimConfig {
        seed: 32,
        audit_events: 10,
        ..SimConfig::default()
    })
    .unwrap();
    let dir = Scratch::new("silence");
    // No backfill: nothing is due, so only the pass outcome counts; a revoked token fails it.
    let mut settings: Vec<(&str, String)> = audit_settings(&sim, 0)
        .into_iter()
        .filter(|(k, _)| *k != "backfill_start_time")
        .collect();
    settings.push(("max_silence", "5s".into()));
    settings.push(("slack_token", slack_sim::REVOKED_TOKEN.into()));
    settings.retain(|(k, v)| *k != "slack_token" || v == slack_sim::REVOKED_TOKEN);

    let pass = |settings: &[(&str, String)]| {
        let out = host(&dir, settings)
            .args(["run", "--once"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let status = |settings: &[(&str, String)]| -> serde_json::Value {
        let out = host(&dir, settings)
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let log = pass(&settings);
    assert!(log.contains("failed"), "{log}");
    assert!(!log.contains("stream_silent"), "not silent yet:\n{log}");
    assert_eq!(status(&settings)[0]["healthy"], true);

    std::thread::sleep(Duration::from_millis(6100));
    let log = pass(&settings);
    let line = log
        .lines()
        .find(|l| l.contains("\"event\":\"stream_silent\""))
        .unwrap_or_else(|| panic!("no silence line in\n{log}"));
    let json: serde_json::Value = serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap();
    assert_eq!(
        (
            json["stream"].as_str(),
            json["max_silence_seconds"].as_i64()
        ),
        (Some("audit"), Some(5))
    );
    let s = status(&settings);
    assert_eq!(s[0]["healthy"], false, "{s}");
    assert!(s[0]["silent_for_seconds"].as_i64().unwrap() >= 3);

    let port = free_port();
    {
        let _host = serve(&dir, &settings, port);
        let (code, body) = http(port, "GET", "/healthz", None);
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("silent"), "{body}");
        let (_, body) = http(port, "GET", "/status", None);
        assert!(body.contains("\"healthy\":false"), "{body}");
        let (_, text) = http(port, "GET", "/metrics", None);
        assert_eq!(parse_metrics(&text)["slack_logs_healthy{audit}"], 0.0);
    }

    // A good token again: the pass ends well, the alert clears, once.
    let good: Vec<(&str, String)> = settings
        .iter()
        .map(|(k, v)| {
            if *k == "slack_token" {
                (*k, slack_sim::ORG_OWNER_TOKEN.to_string())
            } else {
                (*k, v.clone())
            }
        })
        .collect();
    let log = pass(&good);
    assert!(
        log.contains("\"event\":\"stream_silence_cleared\""),
        "{log}"
    );
    assert_eq!(status(&good)[0]["healthy"], true);
    let log = pass(&good);
    assert!(
        !log.contains("stream_silence"),
        "cleared is said once:\n{log}"
    );
    let _ = &sim;
}

#[test]
fn run_every_serves_metrics_but_not_collect() {
    let sim = Simulator::start(SimConfig {
        seed: 33,
        audit_events: 12,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new("metrics-every");
    let port = free_port();
    let child = host(&dir, &audit_settings(&sim, start))
        .args([
            "run",
            "--every",
            "1h",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _host = KillOnDrop(child);
    let expected = sim.audit_truth(start, now()).len() as f64;
    assert!(
        wait_for(60, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && parse_metrics(&http(port, "GET", "/metrics", None).1)
                    .get("slack_logs_records_total{audit}")
                    == Some(&expected)
        }),
        "the first pass's records show in /metrics"
    );
    let (code, body) = http(port, "POST", "/collect", None);
    assert_eq!(code, 404, "passes run on the schedule only: {body}");
    assert_eq!(http(port, "GET", "/healthz", None).0, 200);
}
