//! The host side of `slack-logs:collector/sink`: where NDJSON batches go.
//!
//! `ok` means durably accepted; the component moves its checkpoint only after
//! it, so each target returns `ok` only once the bytes are safe: flushed to
//! stdout, `fsync`ed to a file, answered 2xx by an HTTP endpoint, or stored by
//! S3 (every object of the batch answered 2xx).

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
    /// `s3://BUCKET/PREFIX`: one gzip NDJSON object per batch (and UTC day), named by the batch
    /// key; endpoint, region and credentials from AWS's environment variables (sinks/s3).
    S3 {
        bucket: String,
        prefix: String,
    },
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
            "invalid --sink {}; use `stdout`, `file:PATH`, `http:URL` (e.g. http:https://siem.example.com/ingest), \
             `s3://BUCKET/PREFIX` or `none` (for a component composed with its own sink)",
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
        if let Some(rest) = spec.strip_prefix("s3://") {
            // The names are checked by sinks/s3 when the sink is built, with AWS's settings.
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("the bucket is missing (s3://BUCKET/PREFIX)"));
            }
            return Ok(SinkSpec::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
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
    File {
        path: PathBuf,
        file: Mutex<File>,
    },
    Http(HttpSink),
    // Boxed: its signing settings make it many times larger than the other targets.
    S3(Box<S3Sink>),
    /// A program's own sink ([`crate::embed`]).
    Embedded(Box<dyn BatchSink>),
    None,
}

/// One batch of records, as the component hands it to the sink.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// `audit`, `access` or `integration`.
    pub stream: &'a str,
    pub count: u32,
    /// The records, one JSON object per line.
    pub ndjson: &'a [u8],
    /// Where the batch starts: the same when the batch is offered again after a crash, so a
    /// sink that names what it writes by it overwrites the first copy instead of adding one.
    pub key: &'a str,
}

/// A sink a program embedding the collector brings ([`crate::embed`]); any
/// `Fn(&Batch) -> Result<(), SinkFailure>` is one. The checkpoint moves past a batch only after
/// `write` returned `Ok`, so return only once the records are durable where they go.
/// `Unavailable` is retried by a later pass from the same checkpoint; `Rejected` stops the stream
/// with the message. It is called on the pass's async task: hand long work to a thread.
pub trait BatchSink: Send + Sync {
    fn write(&self, batch: &Batch<'_>) -> Result<(), SinkFailure>;
}

impl<F> BatchSink for F
where
    F: Fn(&Batch<'_>) -> Result<(), SinkFailure> + Send + Sync,
{
    fn write(&self, batch: &Batch<'_>) -> Result<(), SinkFailure> {
        self(batch)
    }
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
            SinkSpec::S3 { bucket, prefix } => {
                let settings = sink_s3::Settings::from_aws_env(bucket, prefix, |name| {
                    std::env::var(name).ok()
                });
                Target::S3(Box::new(S3Sink::new(&settings, RetryPolicy::default())?))
            }
            SinkSpec::None => Target::None,
        };
        Ok(Sink {
            target,
            totals: Mutex::default(),
        })
    }

    /// A program's own sink ([`crate::embed`]).
    pub fn embedded(sink: impl BatchSink + 'static) -> Sink {
        Sink {
            target: Target::Embedded(Box::new(sink)),
            totals: Mutex::default(),
        }
    }

    #[cfg(test)]
    fn s3_with_policy(settings: &sink_s3::Settings, retry: RetryPolicy) -> Sink {
        Sink {
            target: Target::S3(Box::new(
                S3Sink::new(settings, retry).expect("valid S3 settings"),
            )),
            totals: Mutex::default(),
        }
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
            Target::S3(s) => s.target.describe(),
            Target::Embedded(_) => "the embedding program's sink".into(),
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

    /// `batch_key`: where the batch starts (the same when it is offered again after a crash).
    pub async fn write(
        &self,
        stream: &str,
        count: u32,
        ndjson: Vec<u8>,
        batch_key: &str,
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
            // The object store names each object by the batch key, so a batch offered again
            // overwrites its first copy.
            Target::S3(s) => s.put_batch(stream, batch_key, &ndjson).await?,
            Target::Embedded(sink) => sink.write(&Batch {
                stream,
                count,
                ndjson: &ndjson,
                key: batch_key,
            })?,
            // Runtime::new refuses a component that imports the sink under `--sink none`, so
            // this is only reached by a component that was swapped underneath us.
            Target::None => return Err(SinkFailure::Unavailable(
                "the host has no sink (--sink none), but the component called the host's sink; \
                     run it with --sink stdout|file:PATH|http:URL|s3://BUCKET/PREFIX"
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

impl RetryPolicy {
    /// The wait after failed attempt `n` (from 1): `first_delay`, doubling, at most `max_delay`.
    fn backoff(&self, n: u32) -> Duration {
        let mut d = self.first_delay;
        for _ in 1..n {
            d = (d * 2).min(self.max_delay);
        }
        d.min(self.max_delay)
    }
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
        let req = match req.body(request_body(body)) {
            Ok(r) => r,
            // Only an invalid header value can get here: the token.
            Err(_) => return failed("SLACK_LOGS_SINK_TOKEN is not a valid header value".into()),
        };
        let (status, retry_after, body) = match exchange(req, self.retry.attempt_timeout).await {
            Exchange::Answered {
                status,
                retry_after,
                body,
            } => (status, retry_after, body),
            Exchange::TimedOut => {
                return Attempt::Retry {
                    why: format!("no answer within {}s", self.retry.attempt_timeout.as_secs()),
                    retry_after: None,
                };
            }
            Exchange::Refused(why) => return failed(format!("{}: {why}", self.display_url())),
            Exchange::Failed(why) => {
                return Attempt::Retry {
                    why: format!("request failed: {why}"),
                    retry_after: None,
                }
            }
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

/// `--sink s3://BUCKET/PREFIX`: the object layout, signing and the reading of S3's answers are
/// sinks/s3's (shared with the S3 sink component, so both write the same objects); this sends.
struct S3Sink {
    target: sink_s3::Target,
    retry: RetryPolicy,
}

impl S3Sink {
    fn new(settings: &sink_s3::Settings, retry: RetryPolicy) -> anyhow::Result<S3Sink> {
        let target = sink_s3::Target::from_settings(settings, sink_s3::Origin::HostEnv)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(S3Sink { target, retry })
    }

    /// Every object of the batch (one per UTC day of its records), each PUT retried on its own;
    /// `ok` only when S3 stored them all.
    async fn put_batch(
        &self,
        stream: &str,
        batch_key: &str,
        ndjson: &[u8],
    ) -> Result<(), SinkFailure> {
        let objects = self
            .target
            .plan(stream, batch_key, ndjson)
            .map_err(s3_failure)?;
        for object in &objects {
            self.put(object).await?;
        }
        Ok(())
    }

    async fn put(&self, object: &sink_s3::PlannedObject) -> Result<(), SinkFailure> {
        let shown = self.target.describe_object(&object.key);
        let mut last = String::new();
        let tries = self.retry.tries.max(1);
        for attempt in 1..=tries {
            match self.attempt(object).await {
                sink_s3::Attempt::Accepted => {
                    crate::log_debug!("sink: {shown}: {} records stored", object.records);
                    return Ok(());
                }
                sink_s3::Attempt::Failed(f) => return Err(s3_failure(f)),
                sink_s3::Attempt::Retry { why } => {
                    last = why;
                    if attempt >= tries {
                        break;
                    }
                    let wait = self.retry.backoff(attempt);
                    crate::log_warn!(
                        "sink {shown}: {last}; retrying in {:.1}s (attempt {attempt} of {tries})",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Err(SinkFailure::Unavailable(format!(
            "S3 sink: {last} (gave up after {tries} tries)"
        )))
    }

    async fn attempt(&self, object: &sink_s3::PlannedObject) -> sink_s3::Attempt {
        let failed = |m: String| sink_s3::Attempt::Failed(sink_s3::Failure::Unavailable(m));
        let shown = self.target.describe_object(&object.key);
        // Signed for each attempt: the signature is valid for minutes, a retry may come later.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let put = match self.target.sign_put(object, now) {
            Ok(p) => p,
            Err(f) => return sink_s3::Attempt::Failed(f),
        };
        let scheme = if put.https { "https" } else { "http" };
        let uri: http::Uri =
            match format!("{scheme}://{}{}", put.authority, put.path_with_query).parse() {
                Ok(u) => u,
                Err(_) => {
                    return failed(format!(
                        "S3 sink: PUT {shown}: the signed URL does not parse"
                    ))
                }
            };
        // The Host header is signed: it must be exactly the signed authority.
        let mut req = http::Request::builder()
            .method(http::Method::PUT)
            .uri(uri)
            .header(http::header::HOST, put.authority.as_str());
        for (name, value) in &put.headers {
            req = req.header(*name, value.as_str());
        }
        let req = match req.body(request_body(Bytes::from(object.body.clone()))) {
            Ok(r) => r,
            Err(_) => {
                return failed(format!(
                    "S3 sink: PUT {shown}: a request header was refused"
                ))
            }
        };
        match exchange(req, self.retry.attempt_timeout).await {
            Exchange::Answered { status, body, .. } => {
                self.target.answered(&object.key, status.as_u16(), &body)
            }
            Exchange::TimedOut => sink_s3::Attempt::Retry {
                why: format!(
                    "PUT {shown}: no answer within {}s",
                    self.retry.attempt_timeout.as_secs()
                ),
            },
            // Transport errors name the host and the kind of failure, never the query string;
            // redacted all the same.
            Exchange::Refused(why) => failed(self.target.redact(&format!(
                "S3 sink: PUT {shown}: {why}; check AWS_ENDPOINT_URL"
            ))),
            Exchange::Failed(why) => sink_s3::Attempt::Retry {
                why: self.target.redact(&format!("PUT {shown}: {why}")),
            },
        }
    }
}

fn s3_failure(f: sink_s3::Failure) -> SinkFailure {
    match f {
        sink_s3::Failure::Unavailable(m) => SinkFailure::Unavailable(m),
        sink_s3::Failure::Rejected(m) => SinkFailure::Rejected(m),
    }
}

/// What one HTTP exchange of a sink came to.
enum Exchange {
    Answered {
        status: http::StatusCode,
        retry_after: Option<Duration>,
        /// Empty for a 2xx answer; else the start of the body.
        body: Vec<u8>,
    },
    /// No answer within the attempt's time.
    TimedOut,
    /// A certificate or host-name problem: it will not fix itself in seconds.
    Refused(String),
    /// Connection refused, reset, …: worth another attempt.
    Failed(String),
}

type RequestBody =
    http_body_util::combinators::MapErr<Full<Bytes>, fn(Infallible) -> wasmtime_wasi_http::Error>;

fn request_body(bytes: Bytes) -> RequestBody {
    fn never(e: Infallible) -> wasmtime_wasi_http::Error {
        match e {}
    }
    Full::new(bytes).map_err(never as fn(Infallible) -> wasmtime_wasi_http::Error)
}

/// Sends `req` with the same client (hyper + rustls + webpki roots) the component's own requests
/// use, within `attempt_timeout`. A 2xx answer's body is not read at all; of an error answer only
/// the start is (an endpoint, or whatever answers in its place, may send an endless body).
async fn exchange(req: http::Request<RequestBody>, attempt_timeout: Duration) -> Exchange {
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
        let body = if classify(status) == StatusClass::Accepted {
            Vec::new()
        } else {
            read_prefix(resp.into_body(), MAX_ERROR_BODY).await
        };
        io.abort();
        Ok::<_, wasmtime_wasi_http::Error>((status, retry_after, body))
    };
    match tokio::time::timeout(attempt_timeout, exchange).await {
        Err(_) => Exchange::TimedOut,
        Ok(Err(ref e @ wasmtime_wasi_http::Error::Tls(ref io))) if io.kind() == std::io::ErrorKind::InvalidData => {
            Exchange::Refused(format!("{e}; the endpoint needs a certificate from a public CA (webpki roots) for its host name"))
        }
        Ok(Err(e @ wasmtime_wasi_http::Error::InvalidDnsNameError(_))) => Exchange::Refused(e.to_string()),
        Ok(Err(e)) => Exchange::Failed(e.to_string()),
        Ok(Ok((status, retry_after, body))) => Exchange::Answered { status, retry_after, body },
    }
}

/// How much of an error answer is read, for the message; the rest is never read. The same as
/// the HTTP sink component's (sinks/http).
pub const MAX_ERROR_BODY: usize = 4096;

/// At most `limit` bytes from the start of `body`; stops reading there, and at the first error
/// (the start is only for a message, so a broken body just ends it).
async fn read_prefix<B>(body: B, limit: usize) -> Vec<u8>
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(limit - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    out
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
        assert_eq!(
            "s3://logs/slack/audit".parse::<SinkSpec>().unwrap(),
            SinkSpec::S3 {
                bucket: "logs".into(),
                prefix: "slack/audit".into()
            }
        );
        assert_eq!(
            "s3://logs".parse::<SinkSpec>().unwrap(),
            SinkSpec::S3 {
                bucket: "logs".into(),
                prefix: String::new()
            }
        );
        for bad in [
            "",
            "file:",
            "kafka:x",
            "http:",
            "http:ftp://x",
            "http:https://",
            "http:https://u:p@h/",
            "http:https://a b/",
            "s3://",
            "s3:///prefix",
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
        sink.write("audit", 2, b"{\"a\":1}\n{\"a\":2}\n".to_vec(), "key")
            .await
            .unwrap();
        sink.write("audit", 1, b"{\"a\":3}\n".to_vec(), "key")
            .await
            .unwrap();
        sink.write("access", 1, b"{\"b\":1}\n".to_vec(), "key")
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

    /// A script server's URL, request counter and the last request's head and body.
    type ScriptServer = (String, Arc<AtomicUsize>, Arc<Mutex<(String, Vec<u8>)>>);

    /// A one-thread HTTP/1.1 server answering each request with the next
    /// status of `script`; returns its URL, a request counter and the last
    /// request's head and body.
    fn script_server(script: Vec<u16>) -> ScriptServer {
        script_server_with_bodies(
            script
                .into_iter()
                .map(|s| (s, "nope".to_string()))
                .collect(),
        )
    }

    /// [`script_server`] answering each request with the next status and body of `script`.
    fn script_server_with_bodies(script: Vec<(u16, String)>) -> ScriptServer {
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
                let (status, text) = script.get(n).cloned().unwrap_or((200, String::new()));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
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
        sink.write("audit", 1, b"{\"id\":\"x\"}\n".to_vec(), "key")
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
        sink.write("audit", 1, b"{}\n".to_vec(), "key")
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        let (url, hits, _) = script_server(vec![408, 200]);
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        sink.write("audit", 1, b"{}\n".to_vec(), "key")
            .await
            .unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn http_sink_gives_up_as_unavailable() {
        let (url, hits, _) = script_server(vec![500, 502, 503, 504, 500]);
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        let e = sink
            .write("audit", 1, b"{}\n".to_vec(), "key")
            .await
            .unwrap_err();
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
        let e = sink
            .write("audit", 1, b"{}\n".to_vec(), "key")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SinkFailure::Rejected(m) if m.contains("413")),
            "{e:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    /// A server that answers every request with `status` and a body that never ends (chunks
    /// until the client goes away); returns its URL, a request counter and the body bytes it
    /// managed to send.
    fn endless_body_server(status: u16) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let (h, sent2) = (hits.clone(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                h.fetch_add(1, Ordering::SeqCst);
                let sent = sent2.clone();
                std::thread::spawn(move || {
                    // The request is not read: the answer starts at once.
                    let head = format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n");
                    if conn.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let chunk = format!("10000\r\n{}\r\n", "e".repeat(0x10000));
                    while conn.write_all(chunk.as_bytes()).is_ok() {
                        sent.fetch_add(0x10000, Ordering::SeqCst);
                    }
                });
            }
        });
        (url, hits, sent)
    }

    /// An endless error body: the message comes from its start, at once, and reading stops
    /// there (it used to be read whole, until the attempt timed out, held in memory).
    #[tokio::test]
    async fn http_sink_reads_only_the_start_of_an_error_answer() {
        let (url, hits, sent) = endless_body_server(503);
        let policy = RetryPolicy { tries: 1, ..fast() };
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, policy);
        let started = std::time::Instant::now();
        let e = sink
            .write("audit", 1, b"{}\n".to_vec(), "key")
            .await
            .unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("HTTP 503") && message.contains("eeee"),
            "{message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}: {message}",
            started.elapsed()
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        std::thread::sleep(Duration::from_millis(300));
        let sent = sent.load(Ordering::SeqCst);
        assert!(
            sent < 32 << 20,
            "the server could send {sent} bytes: the body was read on"
        );
    }

    /// A 2xx answer is an acknowledgement whatever its body: accepted at once, not retried (an
    /// endless body used to time the attempt out, and the batch was sent again).
    #[tokio::test]
    async fn http_sink_does_not_read_the_body_of_a_2xx_answer() {
        let (url, hits, _) = endless_body_server(200);
        let sink = Sink::http_with_policy(url.parse().unwrap(), None, fast());
        let started = std::time::Instant::now();
        sink.write("audit", 1, b"{}\n".to_vec(), "key")
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1, "sent once");
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
        let e = sink
            .write("audit", 1, b"{}\n".to_vec(), "key")
            .await
            .unwrap_err();
        assert!(matches!(e, SinkFailure::Unavailable(_)), "{e:?}");
    }

    const S3_SECRET: &str = "s3-secret/key+Kq7Zw2Rf";
    const S3_TOKEN: &str = "s3-session/token+Vb3Xn8Tm==";
    const BATCH_KEY: &str = "0123456789abcdef0123456789abcdef";

    fn s3_settings(endpoint: &str) -> sink_s3::Settings {
        sink_s3::Settings::from_aws_env("logs", "slack", |name| match name {
            "AWS_ENDPOINT_URL" => Some(endpoint.to_string()),
            "AWS_REGION" => Some("eu-west-1".into()),
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".into()),
            "AWS_SECRET_ACCESS_KEY" => Some(S3_SECRET.into()),
            "AWS_SESSION_TOKEN" => Some(S3_TOKEN.into()),
            _ => None,
        })
    }

    fn endpoint_of(url: &str) -> String {
        url.trim_end_matches("/ingest").to_string()
    }

    #[tokio::test]
    async fn s3_sink_puts_a_signed_gzip_object_named_by_the_batch_key() {
        let (url, hits, last) = script_server(vec![503, 200]);
        let sink = Sink::s3_with_policy(&s3_settings(&endpoint_of(&url)), fast());
        let ndjson =
            b"{\"id\":\"a\",\"time\":1700000000}\n{\"id\":\"b\",\"time\":1700000001}\n".to_vec();
        sink.write("audit", 2, ndjson, BATCH_KEY).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2, "the 503 was retried");
        let (head, body) = last.lock().unwrap().clone();
        let lower = head.to_ascii_lowercase();
        let path = format!("put /logs/slack/stream%3daudit/date%3d2023-11-14/{BATCH_KEY}.ndjson.gz?x-amz-algorithm=aws4-hmac-sha256");
        assert!(lower.starts_with(&path), "{head}");
        for h in [
            "content-encoding: gzip",
            "content-type: application/x-ndjson",
            "content-md5: ",
            "host: 127.0.0.1:",
            "x-amz-security-token=",
        ] {
            assert!(lower.contains(h), "{h} in {head}");
        }
        assert!(!head.contains("Kq7Zw2Rf"), "the secret key is never sent");
        assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip body");
        assert!(
            lower.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert_eq!(sink.totals()["audit"].records, 2);
        assert!(
            sink.describe()
                .starts_with("s3://logs/slack/ at http://127.0.0.1:"),
            "{}",
            sink.describe()
        );
    }

    #[tokio::test]
    async fn s3_sink_says_what_to_fix_and_never_shows_a_secret() {
        let echo = format!(
            "<Error><Code>SignatureDoesNotMatch</Code><Message>expected {S3_TOKEN} {S3_SECRET}</Message>\
             <CanonicalRequest>X-Amz-Security-Token={}</CanonicalRequest></Error>",
            url_encoded(S3_TOKEN)
        );
        let (url, hits, _) = script_server_with_bodies(vec![(403, echo.clone()), (503, echo)]);
        let sink = Sink::s3_with_policy(&s3_settings(&endpoint_of(&url)), fast());
        let e = sink
            .write("audit", 1, b"{\"time\":1}\n".to_vec(), BATCH_KEY)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SinkFailure::Unavailable(m) if m.contains("AWS_SECRET_ACCESS_KEY")),
            "{e:?}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a signature problem is not retried"
        );
        let shown = e.to_string();
        for piece in ["Kq7Zw2Rf", "Vb3Xn8Tm"] {
            assert!(!shown.contains(piece), "{shown}");
        }
        // A batch without a key (a collector older than the sink) cannot name its object.
        let e = sink
            .write("audit", 1, b"{}\n".to_vec(), "")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SinkFailure::Rejected(m) if m.contains("batch key")),
            "{e:?}"
        );
        // Missing credentials stop the host before anything is collected.
        let mut settings = s3_settings("http://127.0.0.1:9");
        settings.secret_access_key = None;
        let e = S3Sink::new(&settings, fast()).err().unwrap().to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    }

    fn url_encoded(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    #[test]
    fn retry_backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let waits: Vec<Duration> = (1..=4).map(|n| p.backoff(n)).collect();
        assert_eq!(
            waits,
            [
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(2)
            ]
        );
    }
}
