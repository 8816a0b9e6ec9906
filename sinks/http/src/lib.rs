//! `sink-http`: a sink component for the slack-logs collector that POSTs each batch to an HTTP
//! endpoint as NDJSON.
//!
//! It exports `slack-logs:collector/sink@0.1.0` and is plugged into the collector's `sink` import,
//! as Spin does with `[component.collector.dependencies]`. It reads `sink_url`, `sink_token` and
//! `sink_preset` through `wasi:config/store` (under Spin: the component's variables, which a
//! dependency sees only with `dependencies_inherit_configuration = true`) and sends through
//! `wasi:http/outgoing-handler` (under Spin: only to hosts in `allowed_outbound_hosts`).
//!
//! Presets: `webhook` (default) POSTs to `sink_url` with `Content-Type: application/x-ndjson` and
//! `Authorization: Bearer <sink_token>` when a token is set; `splunk-hec` POSTs to the HEC raw
//! endpoint (`/services/collector/raw`) with `Authorization: Splunk <sink_token>`.
//!
//! A batch is acknowledged only on a 2xx answer. 408, 429, 5xx and network errors are retried a
//! bounded number of times with backoff, then reported `unavailable`; other 4xx are `rejected` at
//! once. Either way the collector keeps its checkpoint and offers the batch again on the next
//! pass, so the endpoint should drop repeats by the record `id`.
//!
//! It is not a queue: it holds nothing between calls and never spills to disk. The request
//! planning, status classification and retry schedule are plain Rust below, tested natively; the
//! WASI glue in `component` only exists when built for wasm32.

use std::fmt;
use std::time::Duration;

#[cfg(target_arch = "wasm32")]
mod component;

/// Attempts per batch, the first included.
pub const TRIES: u32 = 4;
/// Upper bound on one attempt: connect, send the body, read the answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff before the second attempt; doubles up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between attempts, `Retry-After` included. With [`TRIES`] and
/// [`ATTEMPT_TIMEOUT`] this keeps a dead endpoint to about 26 s per batch, inside the pass budget
/// a hosted platform's 30 s request limit allows; an endpoint asking for a longer wait gets the
/// batch on the next pass instead.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// Where Splunk's HTTP Event Collector takes raw (line-broken) events.
pub const HEC_RAW_PATH: &str = "/services/collector/raw";

const USER_AGENT: &str = concat!("slack-logs-sink-http/", env!("CARGO_PKG_VERSION"));

/// `sink_preset`: the shape of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// POST to `sink_url` as given, bearer token.
    Webhook,
    /// Splunk HEC raw endpoint, `Authorization: Splunk <token>`.
    SplunkHec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A configuration the sink cannot work with. It names the variable and never shows the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem(pub String);

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sink-http: {}", self.0)
    }
}

impl std::error::Error for ConfigProblem {}

/// Why a batch was not accepted; maps onto the WIT `sink-error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The endpoint may take it later (network, 5xx, 429, misconfiguration).
    Unavailable(String),
    /// The endpoint refuses this batch as such (a 4xx other than 408/429).
    Rejected(String),
}

/// Where and how batches are sent, from `sink_url`, `sink_token` and `sink_preset`.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub authority: String,
    pub path_with_query: String,
    pub preset: Preset,
    token: Option<String>,
}

// The token stays out of every Debug print.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.display())
            .field("preset", &self.preset)
            .field(
                "token",
                &if self.token.is_some() {
                    "<set>"
                } else {
                    "<unset>"
                },
            )
            .finish()
    }
}

/// An empty value counts as unset, as in the collector: a Spin variable with an empty default.
fn set(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

impl Target {
    pub fn from_config(
        url: Option<&str>,
        token: Option<&str>,
        preset: Option<&str>,
    ) -> Result<Target, ConfigProblem> {
        let preset = match set(preset) {
            None | Some("webhook") => Preset::Webhook,
            Some("splunk-hec") => Preset::SplunkHec,
            Some(other) => {
                return Err(ConfigProblem(format!(
                    "`sink_preset` is {other:?}; use `webhook` or `splunk-hec`"
                )))
            }
        };
        let Some(url) = set(url) else {
            return Err(ConfigProblem(
                "`sink_url` is not set; set it to the endpoint that takes the records (under Spin: the `sink_url` variable)".into(),
            ));
        };
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            return Err(ConfigProblem(format!(
                "`sink_url` {url:?} must start with https:// or http://"
            )));
        };
        // A fragment never goes on the wire.
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.is_empty() {
            return Err(ConfigProblem(format!("`sink_url` {url:?} has no host")));
        }
        if authority.contains('@') {
            // Credentials in the URL would end up in logs and error messages.
            return Err(ConfigProblem(
                "`sink_url` must not carry credentials; put the token in `sink_token`".into(),
            ));
        }
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        let token = set(token).map(str::to_string);
        let path = match preset {
            Preset::Webhook => {
                if path.is_empty() {
                    "/".to_string()
                } else {
                    path.to_string()
                }
            }
            Preset::SplunkHec => {
                if token.is_none() {
                    return Err(ConfigProblem(
                        "`sink_preset` is `splunk-hec` but `sink_token` (the HEC token) is not set"
                            .into(),
                    ));
                }
                let trimmed = path.trim_end_matches('/');
                if trimmed.is_empty() {
                    HEC_RAW_PATH.to_string()
                } else if trimmed.ends_with(HEC_RAW_PATH) {
                    trimmed.to_string()
                } else {
                    // Other HEC endpoints (`/services/collector/event`) want a JSON envelope per
                    // event, not NDJSON lines; guessing would send records Splunk rejects.
                    return Err(ConfigProblem(format!(
                        "with `sink_preset` = `splunk-hec`, `sink_url` is the HEC base URL (https://splunk.example.com:8088) \
                         or its {HEC_RAW_PATH} endpoint; its path is {path:?}"
                    )));
                }
            }
        };
        let path_with_query = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        Ok(Target {
            scheme,
            authority: authority.to_string(),
            path_with_query,
            preset,
            token,
        })
    }

    /// The URL without its query string, safe to print.
    pub fn display(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let path = self.path_with_query.split('?').next().unwrap_or("/");
        format!("{scheme}://{}{path}", self.authority)
    }

    /// The request headers for a body of `len` bytes. Content-Length is set so that endpoints
    /// that refuse chunked uploads (several SIEM collectors do) take the batch.
    pub fn headers(&self, len: usize) -> Vec<(String, Vec<u8>)> {
        let mut h = vec![
            ("content-type".to_string(), b"application/x-ndjson".to_vec()),
            ("content-length".to_string(), len.to_string().into_bytes()),
            ("user-agent".to_string(), USER_AGENT.as_bytes().to_vec()),
        ];
        if let Some(t) = &self.token {
            let value = match self.preset {
                Preset::Webhook => format!("Bearer {t}"),
                Preset::SplunkHec => format!("Splunk {t}"),
            };
            h.push(("authorization".to_string(), value.into_bytes()));
        }
        h
    }
}

/// How an HTTP status is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Accepted,
    /// 408, 429, 5xx: the endpoint may take it later.
    Retry,
    /// Other 4xx: the endpoint refuses this batch; retrying will not help.
    Reject,
    /// 1xx, 3xx: a misconfigured URL (a redirect is not followed with a body); not retried.
    Unexpected,
}

pub fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Accepted,
        408 | 429 | 500..=599 => Class::Retry,
        400..=499 => Class::Reject,
        _ => Class::Unexpected,
    }
}

/// `Retry-After` in delta-seconds. An HTTP-date gives `None`: the own backoff applies then.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The start of an error answer, for the operator: one line, at most 200 characters, with the
/// sink token replaced before the cut (a receiver that echoes it must not put it in our logs).
pub fn snippet(body: &[u8], token: Option<&str>) -> String {
    let mut text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).into_owned();
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        text = text.replace(t, "[sink token]");
    }
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    Failed(Failure),
}

/// The attempt for an answered request.
pub fn answered(target: &Target, status: u16, retry_after: Option<&str>, body: &[u8]) -> Attempt {
    let what = || {
        let s = snippet(body, target.token.as_deref());
        if s.is_empty() {
            format!("POST {} answered HTTP {status}", target.display())
        } else {
            format!("POST {} answered HTTP {status}: {s}", target.display())
        }
    };
    match classify(status) {
        Class::Accepted => Attempt::Accepted,
        Class::Retry => Attempt::Retry {
            why: what(),
            retry_after: retry_after.and_then(parse_retry_after),
        },
        Class::Reject => Attempt::Failed(Failure::Rejected(format!("sink-http: {}", what()))),
        Class::Unexpected => Attempt::Failed(Failure::Unavailable(format!(
            "sink-http: {}; check `sink_url` (redirects are not followed)",
            what()
        ))),
    }
}

/// Runs up to [`TRIES`] attempts with exponential backoff. `attempt` gets the attempt number
/// (from 1); `sleep` waits. Both are parameters so the schedule is tested without a network.
pub fn deliver(
    mut attempt: impl FnMut(u32) -> Attempt,
    mut sleep: impl FnMut(Duration),
) -> Result<(), Failure> {
    let mut delay = FIRST_DELAY;
    let mut last = String::new();
    for n in 1..=TRIES {
        match attempt(n) {
            Attempt::Accepted => return Ok(()),
            Attempt::Failed(f) => return Err(f),
            Attempt::Retry { why, retry_after } => {
                last = why;
                if n == TRIES {
                    break;
                }
                let wait = match retry_after {
                    Some(ra) if ra > MAX_DELAY => {
                        return Err(Failure::Unavailable(format!(
                            "sink-http: {last}; it asks to wait {} s, longer than a pass can; the batch is offered again on the next pass",
                            ra.as_secs()
                        )))
                    }
                    Some(ra) => ra.max(delay),
                    None => delay,
                };
                sleep(wait);
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
    Err(Failure::Unavailable(format!(
        "sink-http: {last} (gave up after {TRIES} tries)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, token: Option<&str>, preset: Option<&str>) -> Target {
        Target::from_config(Some(url), token, preset).unwrap()
    }

    fn header<'a>(h: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }

    #[test]
    fn webhook_urls() {
        let t = target("https://siem.example.com/ingest?src=slack#frag", None, None);
        assert_eq!(t.scheme, Scheme::Https);
        assert_eq!(t.authority, "siem.example.com");
        assert_eq!(t.path_with_query, "/ingest?src=slack");
        assert_eq!(t.display(), "https://siem.example.com/ingest");
        let t = target("http://127.0.0.1:8080", Some(""), Some(""));
        assert_eq!(
            (t.authority.as_str(), t.path_with_query.as_str(), t.preset),
            ("127.0.0.1:8080", "/", Preset::Webhook)
        );
        let h = t.headers(12);
        assert_eq!(
            header(&h, "content-type"),
            Some(&b"application/x-ndjson"[..])
        );
        assert_eq!(header(&h, "content-length"), Some(&b"12"[..]));
        assert_eq!(
            header(&h, "authorization"),
            None,
            "an empty token is no token"
        );
        let h = target("https://x.example/", Some("s3cret"), Some("webhook")).headers(0);
        assert_eq!(header(&h, "authorization"), Some(&b"Bearer s3cret"[..]));
    }

    #[test]
    fn splunk_hec_urls_and_header() {
        for url in [
            "https://splunk.example.com:8088",
            "https://splunk.example.com:8088/",
            "https://splunk.example.com:8088/services/collector/raw",
        ] {
            let t = target(url, Some("hec-token"), Some("splunk-hec"));
            assert_eq!(t.path_with_query, HEC_RAW_PATH, "{url}");
            assert_eq!(
                header(&t.headers(1), "authorization"),
                Some(&b"Splunk hec-token"[..])
            );
        }
        let t = target(
            "https://splunk.example.com:8088/services/collector/raw?channel=abc",
            Some("t"),
            Some("splunk-hec"),
        );
        assert_eq!(t.path_with_query, "/services/collector/raw?channel=abc");
        let e = Target::from_config(
            Some("https://s.example/services/collector/event"),
            Some("t"),
            Some("splunk-hec"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/services/collector/raw"), "{e}");
        let e =
            Target::from_config(Some("https://s.example"), None, Some("splunk-hec")).unwrap_err();
        assert!(e.to_string().contains("sink_token"), "{e}");
    }

    #[test]
    fn bad_config_names_the_variable_and_hides_the_token() {
        for (url, preset, needle) in [
            (None, None, "sink_url"),
            (Some("  "), None, "sink_url"),
            (Some("ftp://x"), None, "https://"),
            (Some("https:///path"), None, "no host"),
            (Some("https://user:pw@x.example/"), None, "credentials"),
            (Some("https://x.example/"), Some("elastic"), "sink_preset"),
        ] {
            let e = Target::from_config(url, Some("tok-123"), preset)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && !e.contains("tok-123"), "{e}");
        }
        let dbg = format!("{:?}", target("https://x.example/", Some("tok-123"), None));
        assert!(!dbg.contains("tok-123"), "{dbg}");
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(200), Class::Accepted);
        assert_eq!(classify(204), Class::Accepted);
        for s in [408, 429, 500, 502, 503, 599] {
            assert_eq!(classify(s), Class::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 413] {
            assert_eq!(classify(s), Class::Reject, "{s}");
        }
        assert_eq!(classify(301), Class::Unexpected);
        let t = target("https://x.example/in", None, None);
        match answered(&t, 400, None, b"{\"text\":\"bad\n data\"}") {
            Attempt::Failed(Failure::Rejected(m)) => {
                assert!(m.contains("HTTP 400") && m.contains("bad data"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answered(&t, 429, Some("1"), b""),
            Attempt::Retry {
                why: "POST https://x.example/in answered HTTP 429".into(),
                retry_after: Some(Duration::from_secs(1))
            }
        );
        assert!(matches!(
            answered(&t, 302, None, b""),
            Attempt::Failed(Failure::Unavailable(_))
        ));
    }

    #[test]
    fn retries_are_bounded_and_back_off() {
        let mut waits = Vec::new();
        let mut calls = 0;
        let r = deliver(
            |_| {
                calls += 1;
                Attempt::Retry {
                    why: "HTTP 503".into(),
                    retry_after: None,
                }
            },
            |d| waits.push(d),
        );
        assert_eq!(calls, TRIES);
        assert_eq!(
            waits,
            [
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
        match r {
            Err(Failure::Unavailable(m)) => assert!(m.contains("gave up after 4 tries"), "{m}"),
            other => panic!("{other:?}"),
        }
        let worst = ATTEMPT_TIMEOUT * TRIES + MAX_DELAY * (TRIES - 1);
        assert!(
            worst < Duration::from_secs(30),
            "a dead endpoint must not outlast a hosted request: {worst:?}"
        );
    }

    #[test]
    fn success_after_retry_and_no_retry_on_reject() {
        let mut n = 0;
        assert_eq!(
            deliver(
                |i| {
                    n = i;
                    if i < 3 {
                        Attempt::Retry {
                            why: "x".into(),
                            retry_after: Some(Duration::from_secs(1)),
                        }
                    } else {
                        Attempt::Accepted
                    }
                },
                |d| assert!(d >= Duration::from_secs(1)),
            ),
            Ok(())
        );
        assert_eq!(n, 3);
        let mut calls = 0;
        let r = deliver(
            |_| {
                calls += 1;
                Attempt::Failed(Failure::Rejected("HTTP 400".into()))
            },
            |_| panic!("no wait before giving up on a rejection"),
        );
        assert_eq!((calls, r), (1, Err(Failure::Rejected("HTTP 400".into()))));
    }

    #[test]
    fn a_long_retry_after_ends_the_batch_at_once() {
        let r = deliver(
            |_| Attempt::Retry {
                why: "HTTP 429".into(),
                retry_after: Some(Duration::from_secs(60)),
            },
            |_| panic!("no wait"),
        );
        assert!(matches!(r, Err(Failure::Unavailable(m)) if m.contains("60 s")));
    }

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet(b"a\r\n  b", None), "a b");
        assert_eq!(
            snippet(b"bad token s3cret, sorry", Some("s3cret")),
            "bad token [sink token], sorry"
        );
        let long = vec![b'x'; 500];
        assert_eq!(snippet(&long, None).chars().count(), 201);
    }
}
