//! The HTTP routes, as plain Rust: which route a request is, whether it is authorised, and the
//! JSON bodies. The component's incoming handler only moves bytes in and out.

use serde_json::{json, Value};
use slack_logs_core::{config::format_rfc3339, PassReport, StreamStatus};

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /collect`: run one pass.
    Collect,
    /// `GET /healthz`.
    Health,
    /// `GET /status`.
    Status,
    /// A known path with the wrong method; carries the allowed method.
    WrongMethod(&'static str),
    NotFound,
}

/// Matches on the path's last segments, so the app works under any Spin route prefix
/// (`/...`, `/slack-logs/...`).
pub fn route(method: &str, path_with_query: &str) -> Route {
    let path = path_with_query.split('?').next().unwrap_or("").trim_end_matches('/');
    if path.ends_with("/collect") {
        // GET too: schedulers such as `spin aka cron` send a plain GET (see `authorized`).
        return if method.eq_ignore_ascii_case("POST") || method.eq_ignore_ascii_case("GET") {
            Route::Collect
        } else {
            Route::WrongMethod("POST")
        };
    }
    let (allowed, r) = if path.ends_with("/healthz") {
        ("GET", Route::Health)
    } else if path.ends_with("/status") {
        ("GET", Route::Status)
    } else {
        return Route::NotFound;
    };
    if method.eq_ignore_ascii_case(allowed) || (allowed == "GET" && method.eq_ignore_ascii_case("HEAD")) {
        r
    } else {
        Route::WrongMethod(allowed)
    }
}

/// `Authorization: Bearer <collect_secret>`, or — for schedulers that cannot set headers, such
/// as `spin aka cron` — `?key=<collect_secret>` in the URL (which may end up in access logs, so
/// the header is preferred). Compared in constant time. No secret configured: everyone may
/// trigger a pass (the route is then as open as the host's listener).
pub fn authorized(secret: Option<&str>, authorization: Option<&[u8]>, path_with_query: &str) -> bool {
    let Some(secret) = secret else { return true };
    if let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) {
        return constant_time_eq(given, secret.as_bytes());
    }
    let query = path_with_query.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("key="))
        .any(|given| constant_time_eq(percent_decoded(given).as_bytes(), secret.as_bytes()))
}

fn percent_decoded(s: &str) -> String {
    slack_logs_core::synthetic::parse_query(&format!("?k={s}")).pop().map(|(_, v)| v).unwrap_or_default()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret-dependent work worth hiding; the content is.
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The pass report as `POST /collect` answers it.
pub fn report_json(r: &PassReport) -> Value {
    json!({
        "started_at": r.started_at,
        "duration_ms": r.duration_ms,
        "ok": !r.any_failed(),
        "streams": r.streams.iter().map(|s| json!({
            "stream": s.stream,
            "team_id": s.team_id,
            "outcome": s.outcome.name(),
            "records": s.records,
            "pages": s.pages,
            "requests": s.requests,
            "retries": s.retries,
            "watermark": s.watermark,
            "watermark_time": s.watermark.map(format_rfc3339),
            "lag_seconds": s.lag_seconds,
            "message": s.message,
            "error_code": s.error_code,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /status`: per stream, from the store. Holds no token or config value.
pub fn status_json(statuses: &[StreamStatus]) -> Value {
    json!({
        "streams": statuses.iter().map(|s| json!({
            "stream": s.stream,
            "team_id": s.team_id,
            "watermark": s.watermark,
            "watermark_time": s.watermark.map(format_rfc3339),
            "lag_seconds": s.lag_seconds,
            "last_success": s.last_success,
            "last_error_at": s.last_error_at,
            "last_error": s.last_error,
            "total_records": s.total_records,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_under_any_prefix() {
        assert_eq!(route("POST", "/collect"), Route::Collect);
        assert_eq!(route("POST", "/slack-logs/collect?x=1"), Route::Collect);
        assert_eq!(route("GET", "/collect"), Route::Collect);
        assert_eq!(route("DELETE", "/collect"), Route::WrongMethod("POST"));
        assert_eq!(route("GET", "/healthz"), Route::Health);
        assert_eq!(route("GET", "/status/"), Route::Status);
        assert_eq!(route("GET", "/"), Route::NotFound);
        assert_eq!(route("GET", "/statusx"), Route::NotFound);
    }

    #[test]
    fn bearer_secret_is_checked() {
        assert!(authorized(None, None, "/collect"));
        assert!(!authorized(Some("s3"), None, "/collect"));
        assert!(!authorized(Some("s3"), Some(b"Bearer s4"), "/collect"));
        assert!(!authorized(Some("s3"), Some(b"Bearer s33"), "/collect"));
        assert!(!authorized(Some("s3"), Some(b"s3"), "/collect"));
        assert!(authorized(Some("s3"), Some(b"Bearer s3"), "/collect"));
    }

    #[test]
    fn key_in_the_query_is_checked() {
        assert!(authorized(Some("a b"), None, "/collect?key=a%20b"));
        assert!(authorized(Some("s3"), None, "/collect?x=1&key=s3"));
        assert!(!authorized(Some("s3"), None, "/collect?key=s4"));
        assert!(!authorized(Some("s3"), None, "/collect?keys3"));
        // A wrong bearer is not rescued by a right key.
        assert!(!authorized(Some("s3"), Some(b"Bearer no"), "/collect?key=s3"));
    }
}
