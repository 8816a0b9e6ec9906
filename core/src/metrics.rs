//! `GET /metrics`: every stream's status in the Prometheus text exposition format (0.0.4).
//!
//! Counters are lifetime totals kept in the key-value store (see `status`), so they survive
//! component instances (one per request under Spin) and host restarts, and any replica serves
//! the same figures. Not a metrics library: only what the status holds.

use std::fmt::Write;

use crate::status::StreamStatus;

/// The `Content-Type` of the exposition format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the metrics of every stream's walk, labelled `stream` and `team_id` (`org` for the
/// org-wide walk).
pub fn render(statuses: &[StreamStatus]) -> String {
    let mut out = String::new();
    type Value = fn(&StreamStatus) -> Option<f64>;
    let families: &[(&str, &str, &str, Value)] = &[
        ("slack_logs_records_total", "counter", "Records the sink accepted.", |s| Some(s.total_records as f64)),
        ("slack_logs_passes_total", "counter", "Passes that walked the stream.", |s| Some(s.stored.passes as f64)),
        ("slack_logs_pages_total", "counter", "Pages read from Slack.", |s| Some(s.stored.total_pages as f64)),
        ("slack_logs_requests_total", "counter", "HTTP requests sent to Slack, retries included.", |s| {
            Some(s.stored.total_requests as f64)
        }),
        ("slack_logs_rate_limited_total", "counter", "Slack answers that were HTTP 429 or ratelimited.", |s| {
            Some(s.stored.total_rate_limited as f64)
        }),
        ("slack_logs_late_events_total", "counter", "Audit events the look-back re-scan found: Slack indexed them after the forward walk had passed their second.", |s| {
            Some(s.stored.total_late_events as f64)
        }),
        ("slack_logs_last_success_timestamp_seconds", "gauge", "Unix time of the last pass that ended without error (a budget end only if it made progress).", |s| {
            s.last_success.map(|t| t as f64)
        }),
        ("slack_logs_last_record_timestamp_seconds", "gauge", "Unix time of the last pass that delivered a record.", |s| {
            s.stored.last_record_at.map(|t| t as f64)
        }),
        ("slack_logs_watermark_timestamp_seconds", "gauge", "Unix time up to which the stream is complete.", |s| {
            s.watermark.map(|t| t as f64)
        }),
        ("slack_logs_lag_seconds", "gauge", "Seconds between now and the watermark.", |s| {
            s.lag_seconds.map(|l| l as f64)
        }),
        ("slack_logs_healthy", "gauge", "1 unless the silence alert (max_silence) is raised.", |s| {
            Some(if s.healthy() { 1.0 } else { 0.0 })
        }),
    ];
    for (name, kind, help, value) in families {
        family(&mut out, name, kind, help);
        for s in statuses {
            if let Some(v) = value(s) {
                sample(&mut out, name, &labels(s, None), v);
            }
        }
    }
    family(
        &mut out,
        "slack_logs_errors_total",
        "counter",
        "Failed passes by error code (Slack's or slack-logs').",
    );
    for s in statuses {
        for (code, n) in &s.stored.errors {
            sample(
                &mut out,
                "slack_logs_errors_total",
                &labels(s, Some(code)),
                *n as f64,
            );
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

fn labels(s: &StreamStatus, code: Option<&str>) -> String {
    let mut l = format!(
        "stream=\"{}\",team_id=\"{}\"",
        escape(&s.stream),
        escape(s.team_id.as_deref().unwrap_or("org"))
    );
    if let Some(c) = code {
        l += &format!(",code=\"{}\"", escape(c));
    }
    l
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StoredStatus;

    #[test]
    fn renders_counters_gauges_and_errors_per_walk() {
        let mut stored = StoredStatus {
            passes: 3,
            total_pages: 7,
            total_requests: 9,
            total_rate_limited: 2,
            ..Default::default()
        };
        stored.errors.insert("invalid_auth".into(), 1);
        let s = StreamStatus {
            stream: "access".into(),
            team_id: Some("T\"1".into()),
            watermark: Some(1000),
            lag_seconds: Some(60),
            last_success: Some(990),
            total_records: 42,
            stored,
            silent_for: Some(5),
            ..Default::default()
        };
        let text = render(&[s]);
        for line in [
            "slack_logs_records_total{stream=\"access\",team_id=\"T\\\"1\"} 42",
            "slack_logs_pages_total{stream=\"access\",team_id=\"T\\\"1\"} 7",
            "slack_logs_rate_limited_total{stream=\"access\",team_id=\"T\\\"1\"} 2",
            "slack_logs_lag_seconds{stream=\"access\",team_id=\"T\\\"1\"} 60",
            "slack_logs_healthy{stream=\"access\",team_id=\"T\\\"1\"} 0",
            "slack_logs_errors_total{stream=\"access\",team_id=\"T\\\"1\",code=\"invalid_auth\"} 1",
            "# TYPE slack_logs_requests_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("last_record_timestamp_seconds{"),
            "no sample without a value"
        );
    }
}
