//! Slack's answers that are not data: error codes, rate limits, server failures, and what an
//! operator should do about each.

use std::fmt;

use serde::Deserialize;

/// What went wrong talking to Slack, classified for retrying and for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlackError {
    /// HTTP 429 or `ratelimited` / `rate_limited`.
    RateLimited { retry_after: Option<u64> },
    /// HTTP 5xx, or `fatal_error` / `internal_error` / `service_unavailable` / `request_timeout`.
    Server { status: u16, code: Option<String> },
    /// `invalid_cursor`: the cursor expired or is unusable; restart from the checkpoint.
    InvalidCursor,
    /// Any other Slack error code: not retried, the stream stops with advice.
    Api {
        status: u16,
        code: String,
        needed: Option<String>,
        provided: Option<String>,
    },
    /// A status or body Slack does not send: an HTML error page, truncated JSON, a wrong type.
    Malformed { status: u16, detail: String },
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    needed: Option<String>,
    #[serde(default)]
    provided: Option<String>,
}

/// The longest wait a `Retry-After` is read as: a day. A wait longer than what a pass has left
/// ends the pass anyway (the next one resumes), and the cap keeps every sum over it far from
/// overflow, whatever number a server or a proxy in front of it sends.
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;

/// Parses a `Retry-After` value (RFC 9110 §10.2.3) as seconds to wait: delta-seconds, or an
/// HTTP-date taken relative to `now` (unix seconds: the answer's own `Date` when it has one, so
/// the two clocks cancel, else ours). A date in the past is 0; any longer wait, however many
/// digits, is [`MAX_RETRY_AFTER_SECS`]. Anything else gives `None`, and the caller waits its
/// default.
pub fn parse_retry_after(value: &str, now: i64) -> Option<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: a failed parse can only be an overflow, which is over the cap too.
        return Some(
            v.parse::<u64>()
                .map_or(MAX_RETRY_AFTER_SECS, |s| s.min(MAX_RETRY_AFTER_SECS)),
        );
    }
    let at = crate::env::parse_http_date(v)?;
    let wait = at.saturating_sub(now).max(0).unsigned_abs();
    Some(wait.min(MAX_RETRY_AFTER_SECS))
}

impl SlackError {
    /// Classifies a non-success answer. `body` may be anything; `retry_after` is the answer's
    /// `Retry-After` in seconds, already parsed ([`parse_retry_after`]).
    pub fn from_response(status: u16, retry_after: Option<u64>, body: &[u8]) -> SlackError {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let code = parsed.as_ref().and_then(|b| b.error.clone());
        if status == 429 || matches!(code.as_deref(), Some("ratelimited" | "rate_limited")) {
            return SlackError::RateLimited {
                retry_after: retry_after.map(|s| s.min(MAX_RETRY_AFTER_SECS)),
            };
        }
        if matches!(code.as_deref(), Some("invalid_cursor")) {
            return SlackError::InvalidCursor;
        }
        if status >= 500
            || matches!(
                code.as_deref(),
                Some("fatal_error" | "internal_error" | "service_unavailable" | "request_timeout")
            )
        {
            return SlackError::Server { status, code };
        }
        match parsed {
            Some(ErrorBody {
                error: Some(code),
                needed,
                provided,
                ..
            }) => SlackError::Api {
                status,
                code,
                needed,
                provided,
            },
            Some(ErrorBody {
                ok: Some(false), ..
            }) => SlackError::Api {
                status,
                code: "unknown_error".into(),
                needed: None,
                provided: None,
            },
            _ => SlackError::Malformed {
                status,
                detail: describe_body(body),
            },
        }
    }

    /// Worth trying again after a wait.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SlackError::RateLimited { .. } | SlackError::Server { .. }
        )
    }

    /// The code reported in `error-code`.
    pub fn code(&self) -> String {
        redact_tokens(&self.raw_code()).into_owned()
    }

    fn raw_code(&self) -> String {
        match self {
            SlackError::RateLimited { .. } => "rate_limited".into(),
            SlackError::Server { code, status } => {
                code.clone().unwrap_or_else(|| format!("http_{status}"))
            }
            SlackError::InvalidCursor => "invalid_cursor".into(),
            SlackError::Api { code, .. } => code.clone(),
            SlackError::Malformed { .. } => "malformed_response".into(),
        }
    }
}

/// A short description of a body that is not what we expected, without dumping it (it could be
/// large, and it is not ours to echo in full).
pub fn describe_body(body: &[u8]) -> String {
    let start = String::from_utf8_lossy(&body[..body.len().min(80)]).replace(['\n', '\r'], " ");
    if body.is_empty() {
        "an empty body".into()
    } else if start.trim_start().starts_with('<') {
        format!("an HTML page ({} bytes) instead of JSON", body.len())
    } else {
        format!(
            "{} bytes that are not the expected JSON, starting {:?}",
            body.len(),
            start
        )
    }
}

/// The longest error message, in characters (plus an ellipsis when cut).
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Masks what looks like a Slack token (`xoxp-…`, `xoxb-…`, `xoxe.xoxp-…`) in text that came
/// from a response body: a proxy's error page or a body shaped like an error can echo the token
/// we sent, and error text goes to logs, reports and the stored status. The prefix stays, so the
/// operator still sees that a token was echoed.
pub fn redact_tokens(text: &str) -> std::borrow::Cow<'_, str> {
    let b = text.as_bytes();
    let prefix_at = |i: usize| {
        b.len() >= i + 5
            && &b[i..i + 3] == b"xox"
            && b[i + 3].is_ascii_alphabetic()
            && matches!(b[i + 4], b'-' | b'.')
    };
    if !(0..b.len()).any(prefix_at) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if prefix_at(i) {
            out.push_str(&text[i..i + 5]);
            let mut j = i + 5;
            while j < b.len()
                && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'.' | b'_'))
            {
                j += 1;
            }
            if j > i + 5 {
                out.push_str("[redacted]");
            }
            i = j;
        } else {
            let c = text[i..].chars().next().expect("i is a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    std::borrow::Cow::Owned(out)
}

impl fmt::Display for SlackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Body text (an echoed token among it) reaches the message through `detail` and `code`.
        let mut text = String::new();
        fmt::Write::write_fmt(&mut text, format_args!("{}", Unredacted(self)))?;
        let text = redact_tokens(&text);
        // And it can be any size (serde quotes a wrong value whole): the message goes to a log
        // line and the stored status, so it is cut (tests/fuzz.rs checks the bound).
        match text.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((cut, _)) => write!(f, "{}…", &text[..cut]),
            None => f.write_str(&text),
        }
    }
}

struct Unredacted<'a>(&'a SlackError);

impl fmt::Display for Unredacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SlackError::RateLimited {
                retry_after: Some(s),
            } => write!(f, "Slack rate-limited us (retry after {s} s)"),
            SlackError::RateLimited { retry_after: None } => write!(f, "Slack rate-limited us"),
            SlackError::Server { status, code } => match code {
                Some(c) => write!(
                    f,
                    "Slack server error {c} (HTTP {status}); retried with backoff"
                ),
                None => write!(
                    f,
                    "Slack server error (HTTP {status}); retried with backoff"
                ),
            },
            SlackError::InvalidCursor => write!(f, "Slack rejected the cursor (invalid_cursor)"),
            SlackError::Api {
                code,
                needed,
                provided,
                ..
            } => {
                write!(f, "Slack answered `{code}`: {}", advice(code))?;
                if let Some(n) = needed {
                    write!(f, " (needed scope: {n}")?;
                    if let Some(p) = provided {
                        write!(f, "; the token has: {p}")?;
                    }
                    write!(f, ")")?;
                }
                Ok(())
            }
            SlackError::Malformed { status, detail } => {
                write!(f, "Slack answered HTTP {status} with {detail}")
            }
        }
    }
}

/// What to fix, per Slack error code (research/slack-api.md §1.6, §2.7, §4.7).
pub fn advice(code: &str) -> &'static str {
    match code {
        "missing_authentication" | "not_authed" => "no token reached Slack; set `slack_token` (or `audit_token` for the audit stream)",
        "invalid_authentication" => "the audit token is not valid; it must be a user token (xoxp-) of an Enterprise org Owner, granted auditlogs:read, from an app installed on the org",
        "invalid_auth" => "the token is not valid, or the request came from an IP address Slack does not allow for it; check `slack_token`",
        "user_not_authorized" => "the token's user is not an Owner of the Enterprise org; audit logs need an Owner's token (admins are not enough)",
        "team_not_authorized" => "the app is installed on a workspace; install it on the Enterprise org itself to read audit logs",
        "feature_not_enabled" => "audit logs are only available on Enterprise Grid; remove `audit` from `streams` on other plans",
        "invalid_workspace" => "the workspace is not part of an Enterprise org",
        "method_not_allowed" => "this token may not call this method on this workspace",
        "invalid_action" => "an action in `audit_actions` is not one Slack knows; check the names against Slack's audit action list",
        "invalid_range" => "the time range was refused (before 2018-03-01 or in the future); check `backfill_start_time` and the clock",
        "token_revoked" | "account_inactive" => "the token was revoked or its user deactivated; issue a new token",
        "token_expired" => "the token expired; issue a new one (or turn off token rotation for this app)",
        "missing_scope" => "the token lacks a scope this stream needs; add it to the app and reinstall",
        "not_allowed_token_type" => "this method needs a user token (xoxp-); bot tokens (xoxb-) are refused",
        "paid_only" => "access logs need a paid workspace; remove `access` from `streams` on the free plan",
        "no_permission" => "the token's user lacks permission; an admin or owner must install the app",
        "team_access_not_granted" => "the org token has not been granted access to this workspace; grant it in the org's app settings",
        "invalid_team_id" => "a workspace id in `team_ids` is not valid for this token",
        "org_login_required" | "team_added_to_org" => "the workspace is migrating into an Enterprise org; try again later",
        "ekm_access_denied" | "access_denied" | "accesslimited" => "access is denied from this network or by EKM; check the org's access policies",
        "two_factor_setup_required" => "the token's user must set up two-factor authentication",
        "over_pagination_limit" => "the request asked for more than Slack's page limits",
        _ => "see Slack's documentation for this error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_rate_limits_both_spellings() {
        assert_eq!(
            SlackError::from_response(429, Some(7), b"{\"ok\":false,\"error\":\"rate_limited\"}"),
            SlackError::RateLimited {
                retry_after: Some(7)
            }
        );
        assert_eq!(
            SlackError::from_response(429, None, b""),
            SlackError::RateLimited { retry_after: None }
        );
        assert_eq!(
            SlackError::from_response(429, Some(u64::MAX), b""),
            SlackError::RateLimited {
                retry_after: Some(MAX_RETRY_AFTER_SECS)
            }
        );
        assert!(matches!(
            SlackError::from_response(200, None, b"{\"ok\":false,\"error\":\"ratelimited\"}"),
            SlackError::RateLimited { .. }
        ));
    }

    #[test]
    fn retry_after_takes_seconds_and_dates_and_is_capped() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("7", now), Some(7));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        // Absurd numbers, past u64 too, are the cap: never an overflow further on.
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(MAX_RETRY_AFTER_SECS)
        );
        assert_eq!(
            parse_retry_after(&"9".repeat(400), now),
            Some(MAX_RETRY_AFTER_SECS)
        );
        assert_eq!(parse_retry_after("86401", now), Some(MAX_RETRY_AFTER_SECS));
        // The HTTP-date form, in each of its three spellings, relative to `now`.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(30)
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", now),
            Some(30)
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:50:07 1994", now), Some(30));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(0),
            "past"
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER_SECS)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", i64::MIN),
            Some(MAX_RETRY_AFTER_SECS)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", i64::MAX),
            Some(0)
        );
        for bad in [
            "",
            "soon",
            "-1",
            "+5",
            "1.5",
            "0x10",
            "Sun, 06 Nov 1994 25:50:07 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn classifies_server_and_cursor_errors() {
        assert!(SlackError::from_response(502, None, b"<html>bad gateway</html>").is_retryable());
        assert!(
            SlackError::from_response(200, None, b"{\"ok\":false,\"error\":\"fatal_error\"}")
                .is_retryable()
        );
        assert_eq!(
            SlackError::from_response(400, None, b"{\"ok\":false,\"error\":\"invalid_cursor\"}"),
            SlackError::InvalidCursor
        );
    }

    #[test]
    fn api_errors_carry_advice_and_scopes() {
        let e = SlackError::from_response(
            200,
            None,
            b"{\"ok\":false,\"error\":\"missing_scope\",\"needed\":\"admin\",\"provided\":\"identify\"}",
        );
        assert!(!e.is_retryable());
        let msg = e.to_string();
        assert!(
            msg.contains("missing_scope")
                && msg.contains("needed scope: admin")
                && msg.contains("identify")
        );
        let e = SlackError::from_response(
            403,
            None,
            b"{\"ok\":false,\"error\":\"team_not_authorized\"}",
        );
        assert!(e.to_string().contains("install it on the Enterprise org"));
    }

    #[test]
    fn echoed_tokens_are_redacted() {
        let body = b"denied: Authorization: Bearer xoxp-1-secret-2 (xoxe.xoxb-9-x)";
        let e = SlackError::from_response(403, None, body);
        let msg = e.to_string();
        assert!(!msg.contains("secret") && !msg.contains("9-x"), "{msg}");
        assert!(msg.contains("Bearer xoxp-[redacted]"), "{msg}");
        let e = SlackError::from_response(200, None, b"{\"ok\":false,\"error\":\"xoxp-1-secret\"}");
        assert_eq!(e.code(), "xoxp-[redacted]");
        assert!(!e.to_string().contains("secret"));
        // Advice that names a token kind is left alone.
        assert_eq!(
            redact_tokens("a user token (xoxp-) of an Owner"),
            "a user token (xoxp-) of an Owner"
        );
        assert_eq!(redact_tokens("é xoxb-ü"), "é xoxb-ü");
    }

    #[test]
    fn messages_are_bounded() {
        let body = format!("{{\"ok\":false,\"error\":\"{}\"}}", "x".repeat(100_000));
        let msg = SlackError::from_response(200, None, body.as_bytes()).to_string();
        assert_eq!(msg.chars().count(), MAX_MESSAGE_CHARS + 1, "{msg}");
        assert!(msg.ends_with('…'));
    }

    #[test]
    fn html_page_is_malformed_not_a_panic() {
        let e = SlackError::from_response(403, None, b"<!DOCTYPE html><p>blocked</p>");
        assert!(matches!(e, SlackError::Malformed { .. }));
        assert!(e.to_string().contains("HTML page"));
    }
}
