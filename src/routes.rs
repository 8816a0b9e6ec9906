//! The HTTP routes, as plain Rust: which route a request is, whether it is authorised, and the
//! JSON and HTML bodies. The component's incoming handler only moves bytes in and out.

use serde_json::{json, Value};
use slack_logs_core::oauth::{Installation, OAuthError, SlackRevoke};
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
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /` (any path ending in `/`, such as `/slack-logs/` under a route prefix): the status
    /// page for a person (`status_page`).
    StatusPage,
    /// `GET /oauth/start`: redirect the admin to Slack's authorize page.
    OAuthStart,
    /// `GET /oauth/callback`: where Slack sends the admin back with a code.
    OAuthCallback,
    /// `POST /oauth/revoke`: revoke and forget the installed token (authorised like `/collect`).
    OAuthRevoke,
    /// A known path with the wrong method; carries the allowed method.
    WrongMethod(&'static str),
    NotFound,
}

/// Matches on the path's last segments, so the app works under any Spin route prefix
/// (`/...`, `/slack-logs/...`).
pub fn route(method: &str, path_with_query: &str) -> Route {
    let raw_path = path_with_query.split('?').next().unwrap_or("");
    let path = raw_path.trim_end_matches('/');
    if path.ends_with("/collect") {
        // GET too: schedulers such as `spin aka cron` send a plain GET (see `authorized`).
        return if method.eq_ignore_ascii_case("POST") || method.eq_ignore_ascii_case("GET") {
            Route::Collect
        } else {
            Route::WrongMethod("POST")
        };
    }
    let (allowed, r) = if path.ends_with("/oauth/start") {
        // GET only: a HEAD (link preview, prefetch) must not issue a state.
        return if method.eq_ignore_ascii_case("GET") {
            Route::OAuthStart
        } else {
            Route::WrongMethod("GET")
        };
    } else if path.ends_with("/oauth/callback") {
        return if method.eq_ignore_ascii_case("GET") {
            Route::OAuthCallback
        } else {
            Route::WrongMethod("GET")
        };
    } else if path.ends_with("/oauth/revoke") {
        // POST only: revoking from a link someone clicks (or a crawler follows) would be a surprise.
        return if method.eq_ignore_ascii_case("POST") {
            Route::OAuthRevoke
        } else {
            Route::WrongMethod("POST")
        };
    } else if path.ends_with("/healthz") {
        ("GET", Route::Health)
    } else if path.ends_with("/status") {
        ("GET", Route::Status)
    } else if path.ends_with("/metrics") {
        ("GET", Route::Metrics)
    } else if raw_path.is_empty() || raw_path.ends_with('/') {
        // The app's root under whatever prefix it is mounted at; the page's links are relative.
        ("GET", Route::StatusPage)
    } else {
        return Route::NotFound;
    };
    if method.eq_ignore_ascii_case(allowed)
        || (allowed == "GET" && method.eq_ignore_ascii_case("HEAD"))
    {
        r
    } else {
        Route::WrongMethod(allowed)
    }
}

/// `Authorization: Bearer <collect_secret>`, or — for schedulers that cannot set headers, such
/// as `spin aka cron` — `?key=<collect_secret>` in the URL (which may end up in access logs, so
/// the header is preferred). Compared in constant time. No secret configured: everyone may
/// trigger a pass (the route is then as open as the host's listener).
pub fn authorized(
    secret: Option<&str>,
    authorization: Option<&[u8]>,
    path_with_query: &str,
) -> bool {
    let Some(secret) = secret else { return true };
    if let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) {
        return secret_matches(given, secret.as_bytes());
    }
    slack_logs_core::url::parse_query(path_with_query)
        .iter()
        .filter(|(k, _)| k == "key")
        .any(|(_, given)| secret_matches(given.as_bytes(), secret.as_bytes()))
}

/// Whether `given` is the secret, in time that tells an attacker nothing about the secret: both
/// sides are hashed (SHA-256) and the 32-byte digests compared with `subtle`, so neither the
/// position of the first wrong byte nor the secret's length shows in the timing.
fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(given).ct_eq(&Sha256::digest(secret)).into()
}

/// An answer, before the incoming handler writes it out.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Json(u16, Value),
    /// Prometheus text exposition (`/metrics`).
    Metrics(String),
    /// A page for a person in a browser (the OAuth routes).
    Html(u16, String),
    /// The status page (`GET /`): like `Html`, but its CSP also allows its inline style.
    StatusPage(u16, String),
    /// `302 Found` to this URL.
    Redirect(String),
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Json(s, _) | Answer::Html(s, _) | Answer::StatusPage(s, _) => *s,
            Answer::Metrics(_) => 200,
            Answer::Redirect(_) => 302,
        }
    }

    /// Headers besides the status. The OAuth pages are never cached and never leak their URL
    /// (which holds the one-time code) to another site through `Referer`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let private = [
            ("cache-control", "no-store".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
        ];
        match self {
            Answer::Json(..) => vec![("content-type", "application/json".into())],
            Answer::Metrics(_) => vec![(
                "content-type",
                slack_logs_core::metrics::CONTENT_TYPE.into(),
            )],
            Answer::Html(..) => {
                let mut h = vec![
                    ("content-type", "text/html; charset=utf-8".to_string()),
                    // The pages are static text: no script, no style, no frame.
                    (
                        "content-security-policy",
                        "default-src 'none'; frame-ancestors 'none'".into(),
                    ),
                ];
                h.extend(private);
                h
            }
            Answer::StatusPage(..) => {
                let mut h = vec![
                    ("content-type", "text/html; charset=utf-8".to_string()),
                    // No script, no image, no frame; only the page's own <style>.
                    (
                        "content-security-policy",
                        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'".into(),
                    ),
                    ("x-content-type-options", "nosniff".into()),
                ];
                // Never a stale status from a cache; the page reloads itself.
                h.extend(private);
                h
            }
            Answer::Redirect(location) => {
                let mut h = vec![
                    ("location", location.clone()),
                    ("content-type", "text/plain; charset=utf-8".into()),
                ];
                h.extend(private);
                h
            }
        }
    }

    pub fn body(&self) -> Vec<u8> {
        match self {
            Answer::Json(_, v) => v.to_string().into_bytes(),
            Answer::Html(_, page) | Answer::StatusPage(_, page) => page.clone().into_bytes(),
            Answer::Metrics(text) => text.clone().into_bytes(),
            Answer::Redirect(location) => format!("Continue at {location}\n").into_bytes(),
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A plain page: a title and paragraphs, every piece escaped.
pub fn html_page(title: &str, paragraphs: &[String]) -> String {
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>slack-logs: {t}</title></head>\n<body>\n<h1>{t}</h1>\n",
        t = escape_html(title)
    );
    for p in paragraphs {
        page += &format!("<p>{}</p>\n", escape_html(p));
    }
    page += "</body>\n</html>\n";
    page
}

/// The page an OAuth route shows when it fails: what happened and what to do, never a secret.
pub fn oauth_error_page(e: &OAuthError) -> Answer {
    Answer::Html(
        e.http_status(),
        html_page(
            "Slack app not installed",
            &[e.to_string(), format!("Error code: {}", e.code())],
        ),
    )
}

/// The page after a successful install. Describes the token; never shows it.
pub fn oauth_installed_page(i: &Installation) -> Answer {
    let place = match (&i.enterprise_id, &i.team_id, i.is_enterprise_install) {
        (Some(e), _, true) => format!("the Enterprise Grid organization {e} (org-wide install)"),
        (_, Some(t), _) => format!("the workspace {t}"),
        _ => "Slack".to_string(),
    };
    Answer::Html(
        200,
        html_page(
            "Slack app installed",
            &[
                format!("Installed on {place} by user {}, with the scopes {}.", i.user_id, i.scopes.join(", ")),
                "The token is stored encrypted in the collector's key-value store and is used from the next \
                 pass on. It is never shown, here or in /status. POST /oauth/revoke revokes it."
                    .to_string(),
                "You can close this page.".to_string(),
            ],
        ),
    )
}

/// `POST /oauth/revoke`'s answer.
pub fn revoke_json(result: &Result<SlackRevoke, OAuthError>) -> Answer {
    match result {
        Ok(outcome) => {
            let (revoked_at_slack, message) = match outcome {
                SlackRevoke::Revoked => (true, "revoked at Slack (auth.revoke) and removed".to_string()),
                SlackRevoke::AlreadyInvalid(code) => {
                    (false, format!("Slack no longer accepted the token ({code}); removed"))
                }
                SlackRevoke::NotAsked(why) => (
                    false,
                    format!("removed without asking Slack ({why}); remove the app in Slack's admin settings to be sure it is revoked"),
                ),
            };
            Answer::Json(
                200,
                json!({"ok": true, "revoked_at_slack": revoked_at_slack, "message": message}),
            )
        }
        Err(e) => Answer::Json(
            e.http_status(),
            json!({"ok": false, "error": e.code(), "message": e.to_string()}),
        ),
    }
}

/// What `/status` shows about the OAuth install: who, which scopes, when — not the token.
pub fn oauth_status_json(installation: Result<Option<Installation>, OAuthError>) -> Value {
    match installation {
        Ok(Some(i)) => json!({
            "installed": true,
            "user_id": i.user_id,
            "scopes": i.scopes,
            "team_id": i.team_id,
            "enterprise_id": i.enterprise_id,
            "is_enterprise_install": i.is_enterprise_install,
            "installed_at": i.installed_at,
            "installed_time": format_rfc3339(i.installed_at),
        }),
        Ok(None) => json!({"installed": false}),
        Err(e) => json!({"installed": null, "error": e.to_string()}),
    }
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
            "late_events": s.stored.total_late_events,
            "healthy": s.healthy(),
            "silent_for_seconds": s.silent_for,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /healthz`: 200 when the config loads and no stream's silence alert is raised; 503
/// naming the silent streams otherwise.
pub fn health_json(statuses: &[StreamStatus]) -> (u16, Value) {
    let silent: Vec<Value> = statuses
        .iter()
        .filter(|s| !s.healthy())
        .map(|s| json!({"stream": s.stream, "team_id": s.team_id, "silent_for_seconds": s.silent_for}))
        .collect();
    if silent.is_empty() {
        (200, json!({"ok": true}))
    } else {
        let error = "no record and no successful pass for longer than max_silence; see /status";
        (503, json!({"ok": false, "error": error, "silent": silent}))
    }
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
        assert_eq!(route("GET", "/x/metrics"), Route::Metrics);
        assert_eq!(route("POST", "/metrics"), Route::WrongMethod("GET"));
        assert_eq!(route("GET", "/statusx"), Route::NotFound);
    }

    #[test]
    fn the_status_page_is_the_root_under_any_prefix() {
        assert_eq!(route("GET", "/"), Route::StatusPage);
        assert_eq!(route("HEAD", "/"), Route::StatusPage);
        assert_eq!(route("GET", ""), Route::StatusPage);
        assert_eq!(route("GET", "/?refresh=1"), Route::StatusPage);
        assert_eq!(route("GET", "/slack-logs/"), Route::StatusPage);
        assert_eq!(route("POST", "/"), Route::WrongMethod("GET"));
        // Other routes keep their trailing-slash forms.
        assert_eq!(route("GET", "/slack-logs/status/"), Route::Status);
        assert_eq!(route("POST", "/collect/"), Route::Collect);
        assert_eq!(route("GET", "/slack-logs"), Route::NotFound);
    }

    #[test]
    fn the_status_page_answer_is_strict() {
        let page = Answer::StatusPage(200, "<!DOCTYPE html>".into());
        let h = page.headers();
        let csp = &h
            .iter()
            .find(|(k, _)| *k == "content-security-policy")
            .expect("a CSP")
            .1;
        assert!(
            csp.starts_with("default-src 'none'; style-src 'unsafe-inline';"),
            "{csp}"
        );
        assert!(!csp.contains("script"), "no script source: {csp}");
        assert!(h.contains(&("cache-control", "no-store".to_string())));
        assert!(h
            .iter()
            .any(|(k, v)| *k == "content-type" && v.starts_with("text/html")));
        assert_eq!(
            (page.status(), page.body()),
            (200, b"<!DOCTYPE html>".to_vec())
        );
    }

    #[test]
    fn oauth_routes_match_under_any_prefix_with_their_method() {
        assert_eq!(route("GET", "/oauth/start"), Route::OAuthStart);
        assert_eq!(route("GET", "/slack-logs/oauth/start/"), Route::OAuthStart);
        assert_eq!(route("HEAD", "/oauth/start"), Route::WrongMethod("GET"));
        assert_eq!(
            route("GET", "/x/oauth/callback?code=1&state=2"),
            Route::OAuthCallback
        );
        assert_eq!(route("POST", "/oauth/callback"), Route::WrongMethod("GET"));
        assert_eq!(route("POST", "/oauth/revoke"), Route::OAuthRevoke);
        assert_eq!(route("GET", "/oauth/revoke"), Route::WrongMethod("POST"));
        assert_eq!(route("GET", "/oauth"), Route::NotFound);
    }

    #[test]
    fn pages_escape_everything() {
        let page = html_page(
            "<t>",
            &["a <script>alert('x')</script> & \"b\"".to_string()],
        );
        assert!(
            !page.contains("<script>") && !page.contains("<t>"),
            "{page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;b&quot;"),
            "{page}"
        );
        // Slack's `error` parameter comes from the URL: it is shown, escaped.
        let e = OAuthError::Denied {
            error: "<img src=x>".into(),
        };
        let Answer::Html(400, page) = oauth_error_page(&e) else {
            panic!("a 400 page")
        };
        assert!(
            page.contains("&lt;img src=x&gt;") && !page.contains("<img"),
            "{page}"
        );
    }

    #[test]
    fn oauth_answers_carry_safe_headers() {
        let r = Answer::Redirect("https://slack.com/oauth/v2/authorize?state=s".into());
        assert_eq!(r.status(), 302);
        let h = r.headers();
        assert!(h.contains(&(
            "location",
            "https://slack.com/oauth/v2/authorize?state=s".to_string()
        )));
        assert!(h.contains(&("cache-control", "no-store".to_string())));
        let page = oauth_installed_page(&Installation {
            user_id: "U1".into(),
            scopes: vec!["admin".into(), "auditlogs:read".into()],
            team_id: None,
            enterprise_id: Some("E1".into()),
            is_enterprise_install: true,
            installed_at: 0,
        });
        assert_eq!(page.status(), 200);
        let body = String::from_utf8(page.body()).unwrap();
        assert!(
            body.contains("E1 (org-wide install)") && body.contains("admin, auditlogs:read"),
            "{body}"
        );
        assert!(page
            .headers()
            .iter()
            .any(|(k, v)| *k == "content-type" && v.starts_with("text/html")));
    }

    #[test]
    fn revoke_answers_say_what_happened() {
        let Answer::Json(200, v) = revoke_json(&Ok(SlackRevoke::Revoked)) else {
            panic!()
        };
        assert_eq!(v["revoked_at_slack"], true);
        let Answer::Json(404, v) = revoke_json(&Err(OAuthError::NoTokenYet)) else {
            panic!()
        };
        assert_eq!(v["error"], "no_token");
        let v = oauth_status_json(Ok(None));
        assert_eq!(v["installed"], false);
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
    fn secrets_compare_by_digest() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cret", b"s3creT"));
        // Different lengths, either way round, prefixes included.
        assert!(!secret_matches(b"s3c", b"s3cret"));
        assert!(!secret_matches(b"s3cret-and-more", b"s3cret"));
        // Empty on either side matches only empty.
        assert!(!secret_matches(b"", b"s3cret"));
        assert!(!secret_matches(b"s3cret", b""));
        assert!(secret_matches(b"", b""));
        // Longer than a SHA-256 block (64 bytes), differing only at the end.
        let long = [b'x'; 200];
        let mut other = long;
        other[199] = b'y';
        assert!(secret_matches(&long, &long));
        assert!(!secret_matches(&long, &other));
    }

    #[test]
    fn key_in_the_query_is_checked() {
        assert!(authorized(Some("a b"), None, "/collect?key=a%20b"));
        assert!(authorized(Some("s3"), None, "/collect?x=1&key=s3"));
        assert!(!authorized(Some("s3"), None, "/collect?key=s4"));
        assert!(!authorized(Some("s3"), None, "/collect?keys3"));
        // A wrong bearer is not rescued by a right key.
        assert!(!authorized(
            Some("s3"),
            Some(b"Bearer no"),
            "/collect?key=s3"
        ));
    }
}
