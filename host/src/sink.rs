//! The host side of `slack-logs:collector/sink`: where NDJSON batches go.
//!
//! `ok` means durably accepted; the component moves its checkpoint only after
//! it, so each target returns `ok` only once the bytes are safe: flushed to
//! stdout, `fsync`ed to a file, or answered 2xx by an HTTP endpoint.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Where `--sink` sends records.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    Stdout,
    File(PathBuf),
    Http(http::Uri),
    /// The component brings its own sink (a sink component composed into it, as Spin does with
    /// a dependency): the host provides none and passes the component's stdout through.
    None,
}

#[derive(Debug, PartialEq)]
pub struct SinkSpecError(String);

impl fmt::Display for SinkSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid --sink {}; use `stdout`, `file:PATH`, `http:URL` (e.g. http:https://siem.example.com/ingest) \
             or `none` (for a component composed with its own sink)",
            self.0
        )
    }
}

impl std::error::Error for SinkSpecError {}

impl std::str::FromStr for SinkSpec {
    type Err = SinkSpecError;

    fn from_str(spec: &str) -> Result<SinkSpec, SinkSpecError> {
        let bad = |why: &str| SinkSpecError(format!("`{spec}`: {why}"));
        if spec == "stdout" || spec == "-" {
            return Ok(SinkSpec::Stdout);
        }
        if spec == "none" {
            return Ok(SinkSpec::None);
        }
        if let Some(path) = spec.strip_prefix("file:") {
            if path.is_empty() {
                return Err(bad("the file path is empty"));
            }
            return Ok(SinkSpec::File(PathBuf::from(path)));
        }
        // `http:https://…` as documented; a bare `http://…`/`https://…` URL is accepted too.
        let url = match spec.strip_prefix("http:") {
            Some(rest) if !rest.starts_with("//") => rest,
            _ => spec,
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("unknown kind of sink"));
        }
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad(
                "credentials in the URL are not supported; set SLACK_LOGS_SINK_TOKEN for a bearer token",
            ));
        }
        Ok(SinkSpec::Http(uri))
    }
}

/// Why a batch was not accepted; maps onto the WIT `sink-error`.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkFailure {
    Unavailable(String),
    Rejected(String),
}

impl fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkFailure::Unavailable(m) => write!(f, "sink unavailable: {m}"),
            SinkFailure::Rejected(m) => write!(f, "sink rejected the batch: {m}"),
        }
    }
}

/// What one stream delivered through the sink during this process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
}

pub struct Sink {
    target: Target,
    totals: Mutex<BTreeMap<String, Totals>>,
}

enum Target {
    Stdout,
    File { path: PathBuf, file: Mutex<File> },
    Http(HttpSink),
    None,
}

impl Sink {
    /// Build the sink. A file is opened (created 0600) now, so a bad path fails
    /// before any record is collected.
    pub fn new(spec: &SinkSpec, token: Option<String>) -> anyhow::Result<Sink> {
        let target = match spec {
            SinkSpec::Stdout => Target::Stdout,
            SinkSpec::File(path) => {
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot open sink file {} for appending: {e}",
                            path.display()
                        )
                    })?;
                Target::File {
                    path: path.clone(),
                    file: Mutex::new(file),
                }
            }
            SinkSpec::Http(uri) => {
                Target::Http(HttpSink::new(uri.clone(), token, RetryPolicy::default()))
            }
            SinkSpec::None => Target::None,
        };
        Ok(Sink {
            target,
            totals: Mutex::default(),
        })
    }

    #[cfg(test)]
    fn http_with_policy(uri: http::Uri, token: Option<String>, retry: RetryPolicy) -> Sink {
        Sink {
            target: Target::Http(HttpSink::new(uri, token, retry)),
            totals: Mutex::default(),
        }
    }

    /// A description safe to print (no query string, no token).
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Stdout => "stdout".into(),
            Target::File { path, .. } => format!("file {}", path.display()),
            Target::Http(h) => h.display_url(),
            Target::None => {
                "the component's own sink (--sink none; its stdout passes through)".into()
            }
        }
    }

    pub fn is_stdout(&self) -> bool {
        matches!(self.target, Target::Stdout)
    }

    /// `--sink none`: the component was composed with its own sink.
    pub fn is_none(&self) -> bool {
        matches!(self.target, Target::None)
    }

    pub fn totals(&self) -> BTreeMap<String, Totals> {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub async fn write(
        &self,
        stream: &str,
        count: u32,
        ndjson: Vec<u8>,
    ) -> Result<(), SinkFailure> {
        let len = ndjson.len() as u64;
        match &self.target {
            Target::Stdout => write_stdout(&ndjson)?,
            Target::File { path, file } => {
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                append_durably(&mut file, &ndjson).map_err(|e| {
                    SinkFailure::Unavailable(format!("writing {}: {e}", path.display()))
                })?;
            }
            Target::Http(h) => h.post(Bytes::from(ndjson)).await?,
            // Runtime::new refuses a component that imports the sink under `--sink none`, so
            // this is only reached by a component that was swapped underneath us.
            Target::None => return Err(SinkFailure::Unavailable(
                "the host has no sink (--sink none), but the component called the host's sink; \
                     run it with --sink stdout|file:PATH|http:URL"
                    .into(),
            )),
        }
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let t = totals.entry(stream.to_owned()).or_default();
        t.batches += 1;
        t.records += u64::from(count);
        t.bytes += len;
        Ok(())
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), SinkFailure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| SinkFailure::Unavailable(format!("writing to stdout: {e}")))
}

/// Append and `fsync`. On failure, cut the file back so a half-written batch
/// never leaves a broken NDJSON line in front of the retry.
fn append_durably(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    let before = file.metadata()?.len();
    let result = file.write_all(bytes).and_then(|()| file.sync_all());
    if result.is_err() {
        let _ = file.set_len(before);
    }
    result
}

/// Retries for the HTTP sink: bounded, exponential, and the same as the HTTP
/// sink component's (sinks/http): 4 tries, waits of 0.5, 1 and 2 s, 5 s per
/// attempt. So a dead or hung endpoint costs a batch at most ~24 s before it
/// is reported `unavailable`, less than the default `max_run_seconds` (25).
/// (Each attempt had 60 s and there were 5 tries: a hung endpoint held a pass
/// for over 5 minutes; tests/e2e_sinks.rs checks the bound.)
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub tries: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Upper bound on one attempt (connect + send + response).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries: 4,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// How an HTTP status is treated.
#[derive(Debug, PartialEq)]
pub enum StatusClass {
    Accepted,
    /// 408, 429, 5xx: the endpoint may take it later.
    Retry,
    /// Other 4xx: the endpoint refuses this batch; retrying will not help.
    Reject,
    /// 1xx/3xx: a misconfigured URL; report it without retrying.
    Unexpected,
}

pub fn classify(status: http::StatusCode) -> StatusClass {
    match status.as_u16() {
        200..=299 => StatusClass::Accepted,
        408 | 429 | 500..=599 => StatusClass::Retry,
        400..=499 => StatusClass::Reject,
        _ => StatusClass::Unexpected,
    }
}

enum Attempt {
    Accepted,
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    Failed(SinkFailure),
}

struct HttpSink {
    uri: http::Uri,
    token: Option<String>,
    retry: RetryPolicy,
}

impl HttpSink {
    fn new(uri: http::Uri, token: Option<String>, retry: RetryPolicy) -> HttpSink {
        HttpSink { uri, token, retry }
    }

    fn display_url(&self) -> String {
        let scheme = self.uri.scheme_str().unwrap_or("http");
        let auth = self.uri.authority().map(|a| a.as_str()).unwrap_or("");
        format!("{scheme}://{auth}{}", self.uri.path())
    }

    async fn post(&self, body: Bytes) -> Result<(), SinkFailure> {
        let mut delay = self.retry.first_delay;
        let mut last = String::new();
        for attempt in 1..=self.retry.tries.max(1) {
            match self.attempt(body.clone()).await {
                Attempt::Accepted => return Ok(()),
                Attempt::Failed(f) => return Err(f),
                Attempt::Retry { why, retry_after } => {
                    last = why;
                    if attempt >= self.retry.tries {
                        break;
                    }
                    let wait = retry_after
                        .map_or(delay, |ra| ra.max(delay))
                        .min(self.retry.max_delay);
                    crate::log_warn!(
                        "sink {}: {last}; retrying in {:.1}s (attempt {attempt} of {})",
                        self.display_url(),
                        wait.as_secs_f64(),
                        self.retry.tries
                    );
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(self.retry.max_delay);
                }
            }
        }
        Err(SinkFailure::Unavailable(format!(
            "{}: {last} (gave up after {} tries)",
            self.display_url(),
            self.retry.tries
        )))
    }

    async fn attempt(&self, body: Bytes) -> Attempt {
        let failed = |m: String| Attempt::Failed(SinkFailure::Unavailable(m));
        // default_send_request does not add Host; HTTP/1.1 requires it.
        let host = match (self.uri.host(), self.uri.port_u16()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return failed("the sink URL has no host".into()),
        };
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.uri.clone())
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/x-ndjson")
            .header(http::header::CONTENT_LENGTH, body.len())
            .header(
                http::header::USER_AGENT,
                concat!("slack-logs/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = Full::new(body).map_err(|never: Infallible| match never {});
        let req = match req.body(body) {
            Ok(r) => r,
            // Only an invalid header value can get here: the token.
            Err(_) => return failed("SLACK_LOGS_SINK_TOKEN is not a valid header value".into()),
        };
        // The same client (hyper + rustls + webpki roots) the component's own requests use.
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: Some(Duration::from_secs(10)),
            first_byte_timeout: Some(Duration::from_secs(30)),
            between_bytes_timeout: Some(Duration::from_secs(30)),
        };
        let exchange = async {
            let (resp, io) = wasmtime_wasi_http::default_send_request(req, Some(options)).await?;
            // Drive the connection while we read the body.
            let io = tokio::spawn(io);
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            io.abort();
            Ok::<_, wasmtime_wasi_http::Error>((status, retry_after, body.unwrap_or_default()))
        };
        let (status, retry_after, body) = match tokio::time::timeout(
            self.retry.attempt_timeout,
            exchange,
        )
        .await
        {
            Err(_) => {
                return Attempt::Retry {
                    why: format!("no answer within {}s", self.retry.attempt_timeout.as_secs()),
                    retry_after: None,
                };
            }
            // A certificate or host-name problem will not fix itself in seconds.
            Ok(Err(ref e @ wasmtime_wasi_http::Error::Tls(ref io)))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                return failed(format!(
                        "{}: {e}; the endpoint needs a certificate from a public CA (webpki roots) for its host name",
                        self.display_url()
                    ));
            }
            Ok(Err(e @ wasmtime_wasi_http::Error::InvalidDnsNameError(_))) => {
                return failed(format!("{}: {e}", self.display_url()));
            }
            Ok(Err(e)) => {
                return Attempt::Retry {
                    why: format!("request failed: {e}"),
                    retry_after: None,
                }
            }
            Ok(Ok(x)) => x,
        };
        let snippet = snippet(&body, self.token.as_deref());
        match classify(status) {
            StatusClass::Accepted => Attempt::Accepted,
            StatusClass::Retry => Attempt::Retry {
                why: format!("HTTP {status}{snippet}"),
                retry_after,
            },
            StatusClass::Reject => Attempt::Failed(SinkFailure::Rejected(format!(
                "{} answered HTTP {status}{snippet}",
                self.display_url()
            ))),
            StatusClass::Unexpected => failed(format!(
                "{} answered HTTP {status}; point --sink at the endpoint's final URL",
                self.display_url()
            )),
        }
    }
}

/// The start of an error body, for the operator; bodies can be large. An
/// endpoint may echo the request's `Authorization` in its error page ("invalid
/// token …"): the sink token is replaced before the text is cut to 200
/// characters, so neither it nor a piece of it reaches a log line or the
/// stored status.
fn snippet(body: &[u8], token: Option<&str>) -> String {
    let mut text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).into_owned();
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        text = text.replace(t, "[sink token]");
    }
    let text: String = text.chars().take(200).collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn parse_specs() {
        assert_eq!("stdout".parse::<SinkSpec>().unwrap(), SinkSpec::Stdout);
        assert_eq!(
            "file:/tmp/x.ndjson".parse::<SinkSpec>().unwrap(),
            SinkSpec::File("/tmp/x.ndjson".into())
        );
        for s in [
            "http:https://siem.example.com/in?x=1",
            "https://siem.example.com/in?x=1",
        ] {
            match s.parse::<SinkSpec>().unwrap() {
                SinkSpec::Http(u) => assert_eq!(u.to_string(), "https://siem.example.com/in?x=1"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            "http:http://127.0.0.1:9/x".parse::<SinkSpec>().unwrap(),
            SinkSpec::Http(_)
        ));
        assert_eq!("none".parse::<SinkSpec>().unwrap(), SinkSpec::None);
        for bad in [
            "",
            "file:",
            "kafka:x",
            "http:",
            "http:ftp://x",
            "http:https://",
            "http:https://u:p@h/",
            "http:https://a b/",
        ] {
            let e = bad.parse::<SinkSpec>().unwrap_err();
            assert!(e.to_string().contains("--sink"), "{bad}: {e}");
        }
    }

    #[test]
    fn status_classes() {
        let c = |n| classify(http::StatusCode::from_u16(n).unwrap());
        assert_eq!(c(200), StatusClass::Accepted);
        assert_eq!(c(204), StatusClass::Accepted);
        assert_eq!(c(408), StatusClass::Retry);
        assert_eq!(c(429), StatusClass::Retry);
        assert_eq!(c(500), StatusClass::Retry);
        assert_eq!(c(503), StatusClass::Retry);
        assert_eq!(c(400), StatusClass::Reject);
        assert_eq!(c(401), StatusClass::Reject);
        assert_eq!(c(413), StatusClass::Reject);
        assert_eq!(c(301), StatusClass::Unexpected);
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "slack-logs-sink-test-{name}-{}",
            std::process::id()
        ))
    }

    #[tokio::test]
    async fn file_sink_appends_and_counts() {
        let path = temp_path("append");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, b"{\"old\":1}\n").unwrap();
        let sink = Sink::new(&SinkSpec::File(path.clone()), None).unwrap();
        sink.write("audit", 2, b"{\"a\":1}\n{\"a\":2}\n".to_vec())
            .await
            .unwrap();
        sink.write("audit", 1, b"{\"a\":3}\n".to_vec())
            .await
            .unwrap();
        sink.write("access", 1, b"{\"b\":1}\n".to_vec())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"old\":1}\n{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"b\":1}\n"
        );
        let t = sink.totals();
        assert_eq!(
            t["audit"],
            Totals {
                batches: 2,
                records: 3,
                bytes: 24
            }
        );
        assert_eq!(t["access"].records, 1);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn file_sink_unopenable_path_is_an_error() {
        let e = Sink::new(&SinkSpec::File("/nonexistent-dir/x.ndjson".into()), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent-dir/x.ndjson"), "{e}");
    }

    /// A one-thread HTTP/1.1 server answering each request with the next
    /// status of `script`; returns its URL, a request counter and the last
    /// request's head and body.
    fn script_server(
        script: Vec<u16>,
    ) -> (String, Arc<AtomicUsize>, Arc<Mutex<(String, Vec<u8>)>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new((String::new(), Vec::new())));
        let (h, l) = (hits.clone(), last.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let n = h.fetch_add(1, Ordering::SeqCst);
                *l.lock().unwrap() = (head, body);
                let status = script.get(n).copied().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope"
                );
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        (url, hits, last)
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            tries: 3,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            attempt_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn http_sink_posts_ndjson_with_bearer_token() {
        let (url, hits, last) = script_server(vec![200]);
        let sink = Sink::http_with_policy(url.parse().unwrap(), Some("s3cret".into()), fast());
        sink.write("audit", 1, b"{\"id\":\"x\"}\n".to_vec())
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let (head, body) = last.lock().unwrap().clone();
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("post /ingest http/1.1"), "{head}");
        assert!(
            head.contains("content-type: application/x-ndjson"),
            "{head}"
        );
        assert!(head.contains("authorization: bearer s3cret"), "{head}");
        assert!(head.contains("host: 127.0.0.1:"), "{head}");
        assert_eq!(body, b"{\"id\":\"x\"}\n");
        assert_eq!(sink.totals()["audit"].records, 1);
    }

    #[tokio::test]
    async fn http_sink_retries_5xx_429_408_then_succeeds() {
        let (url, hits, _) = script_server(vec![503, 429, 200]);
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        sink.write("audit", 1, b"{}\n".to_vec()).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        let (url, hits, _) = script_server(vec![408, 200]);
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        sink.write("audit", 1, b"{}\n".to_vec()).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn http_sink_gives_up_as_unavailable() {
        let (url, hits, _) = script_server(vec![500, 502, 503, 504, 500]);
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        let e = sink.write("audit", 1, b"{}\n".to_vec()).await.unwrap_err();
        assert!(
            matches!(&e, SinkFailure::Unavailable(m) if m.contains("3 tries")),
            "{e:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(sink.totals().is_empty());
    }

    #[tokio::test]
    async fn http_sink_rejects_4xx_at_once() {
        let (url, hits, _) = script_server(vec![413, 200]);
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        let e = sink.write("audit", 1, b"{}\n".to_vec()).await.unwrap_err();
        assert!(
            matches!(&e, SinkFailure::Rejected(m) if m.contains("413")),
            "{e:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn snippet_never_shows_the_sink_token() {
        let t = Some("s3cret-token");
        assert_eq!(
            snippet(b"bad token s3cret-token, sorry", t),
            ": bad token [sink token], sorry"
        );
        // Where the 200-character cut goes through the token, none of the token is left.
        let body = format!("{}s3cret-token", "x".repeat(195));
        assert_eq!(
            snippet(body.as_bytes(), t),
            format!(": {}[sink", "x".repeat(195))
        );
        assert_eq!(snippet(b"  plain  ", None), ": plain");
        assert_eq!(snippet(b"", t), "");
    }

    #[tokio::test]
    async fn http_sink_connection_refused_is_unavailable() {
        // Bind then drop to get a port nobody listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x");
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        let e = sink.write("audit", 1, b"{}\n".to_vec()).await.unwrap_err();
        assert!(matches!(e, SinkFailure::Unavailable(_)), "{e:?}");
    }
}
