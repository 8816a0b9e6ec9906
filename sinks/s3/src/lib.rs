//! `sink-s3`: writes each batch of records as one gzip NDJSON object to S3 or an S3-compatible
//! store (MinIO, Cloudflare R2, Ceph, …), so that a batch offered again after a crash overwrites
//! its own object instead of adding a second copy.
//!
//! Two users share this crate, so both write exactly the same objects:
//! - the sink component (`component`, wasm32 only), plugged into the collector's `sink` import as
//!   Spin does with a component dependency; it reads the `s3_*` variables through
//!   `wasi:config/store` and sends through `wasi:http/outgoing-handler`;
//! - the host's `--sink s3://BUCKET/PREFIX` (host/src/sink.rs), configured like AWS's tools
//!   (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …), sending with its own client.
//!
//! **Layout.** A batch's records go to
//! `PREFIX/stream=STREAM/date=YYYY-MM-DD/BATCH_KEY.ndjson.gz`, where `BATCH_KEY` is the key the
//! collector gives the batch (derived from the checkpoint the batch resumes from, so the same
//! when the batch is offered again) and `date` is the UTC day of each record's `time`: a batch
//! whose records span midnight becomes one object per day, each holding exactly that day's
//! records. A retried batch holds the same records or more (README "Guarantees and limits"), so
//! for every day of the first copy it writes that day's object again, under the same name, with
//! those records or more: the first copy is overwritten, never joined by a second one.
//!
//! **Acknowledgement.** `ok` only after S3 answered 2xx to every object's PUT: S3 stores an
//! object whole or not at all, and checks it against the `Content-MD5` we send. Then the
//! collector moves its checkpoint.
//!
//! The planning (object names, gzip, signing with rusty-s3) and the reading of S3's answers are
//! plain Rust below, tested natively; the WASI glue in `component` only exists for wasm32.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::time::Duration;

use base64::Engine;
use md5::{Digest, Md5};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

#[cfg(target_arch = "wasm32")]
mod component;

/// Attempts per object, the first included; the same schedule as the HTTP sinks.
pub const TRIES: u32 = 4;
/// Upper bound on one attempt: connect, send the object, read the answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff before the second attempt; doubles up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between attempts: a dead endpoint costs a batch about 26 s, inside the 30 s a
/// hosted platform gives a request.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// How long a signed request stays valid. Signed afresh for every attempt, so it only has to
/// outlast one attempt plus the clock difference S3 tolerates.
pub const SIGNATURE_TTL: Duration = Duration::from_secs(300);
/// The region when none is configured, as in AWS's tools.
pub const DEFAULT_REGION: &str = "us-east-1";
/// How much of an error answer is read, for the message; the rest is never read.
pub const MAX_ERROR_BODY: usize = 4096;
/// Where records without a usable `time` go (our records always have one; a foreign line must
/// still land somewhere deterministic rather than stop the stream).
pub const UNDATED: &str = "undated";

const USER_AGENT: &str = concat!("slack-logs-sink-s3/", env!("CARGO_PKG_VERSION"));
/// S3 refuses longer object keys.
const MAX_OBJECT_KEY: usize = 1024;

/// Where the settings come from, so that every message names the setting the operator changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The host: `--sink s3://BUCKET/PREFIX` and AWS's environment variables.
    HostEnv,
    /// The sink component: the `s3_*` configuration keys (Spin variables).
    Variables,
}

struct Names {
    bucket: &'static str,
    prefix: &'static str,
    endpoint: &'static str,
    region: &'static str,
    access_key_id: &'static str,
    secret_access_key: &'static str,
    session_token: &'static str,
    path_style: &'static str,
}

impl Origin {
    fn names(self) -> Names {
        match self {
            Origin::HostEnv => Names {
                bucket: "the BUCKET of --sink s3://BUCKET/PREFIX",
                prefix: "the PREFIX of --sink s3://BUCKET/PREFIX",
                endpoint: "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL",
                region: "AWS_REGION (or AWS_DEFAULT_REGION)",
                access_key_id: "AWS_ACCESS_KEY_ID",
                secret_access_key: "AWS_SECRET_ACCESS_KEY",
                session_token: "AWS_SESSION_TOKEN",
                path_style: "AWS_S3_FORCE_PATH_STYLE",
            },
            Origin::Variables => Names {
                bucket: "`s3_bucket`",
                prefix: "`s3_prefix`",
                endpoint: "`s3_endpoint_url`",
                region: "`s3_region`",
                access_key_id: "`s3_access_key_id`",
                secret_access_key: "`s3_secret_access_key`",
                session_token: "`s3_session_token`",
                path_style: "`s3_path_style`",
            },
        }
    }
}

/// The settings as given; `None` or an empty value is unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub path_style: Option<String>,
}

// The secret key and the session token stay out of every Debug print.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| {
            if value(v).is_some() {
                "<set>"
            } else {
                "<unset>"
            }
        };
        f.debug_struct("Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &set(&self.secret_access_key))
            .field("session_token", &set(&self.session_token))
            .field("path_style", &self.path_style)
            .finish()
    }
}

impl Settings {
    /// The host's settings: bucket and prefix from `--sink s3://BUCKET/PREFIX`, the rest from
    /// the variables AWS's tools read (`var` looks one up). `AWS_ENDPOINT_URL_S3` wins over
    /// `AWS_ENDPOINT_URL` and `AWS_REGION` over `AWS_DEFAULT_REGION`, as in AWS's SDKs.
    pub fn from_aws_env(
        bucket: &str,
        prefix: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Settings {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| var(n).filter(|v| !v.trim().is_empty()))
        };
        Settings {
            bucket: Some(bucket.to_string()),
            prefix: Some(prefix.to_string()),
            endpoint_url: first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
            region: first(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: first(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: first(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: first(&["AWS_SESSION_TOKEN"]),
            path_style: first(&["AWS_S3_FORCE_PATH_STYLE"]),
        }
    }
}

fn value(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A configuration the sink cannot work with. It names the setting and never shows a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem(pub String);

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3 sink: {}", self.0)
    }
}

impl std::error::Error for ConfigProblem {}

/// Why a batch was not accepted; maps onto the WIT `sink-error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The store may take it later, or once a setting is fixed (network, 5xx, credentials).
    Unavailable(String),
    /// The store refuses this batch as such; retrying it unchanged will not help.
    Rejected(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unavailable(m) | Failure::Rejected(m) => f.write_str(m),
        }
    }
}

/// One object of a batch: its key and its gzip body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedObject {
    /// The object key (`PREFIX/stream=…/date=…/KEY.ndjson.gz`), not URL-encoded.
    pub key: String,
    /// The records of that day, gzip-compressed NDJSON.
    pub body: Vec<u8>,
    /// Base64 of the body's MD5, for `Content-MD5`.
    pub content_md5: String,
    /// How many records it holds.
    pub records: u32,
}

/// A signed PUT, ready for any HTTP client. The query string carries the signature (and the
/// session token, when there is one): never print it; [`Target::describe_object`] is safe.
pub struct SignedPut {
    pub https: bool,
    /// `host[:port]`, exactly as signed (the `Host` header must be this).
    pub authority: String,
    pub path_with_query: String,
    /// Every header to send, the signed ones included, lower-case names.
    pub headers: Vec<(&'static str, String)>,
}

impl fmt::Debug for SignedPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path_with_query.split('?').next().unwrap_or_default();
        f.debug_struct("SignedPut")
            .field("authority", &self.authority)
            .field("path", &path)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    Retry { why: String },
    Failed(Failure),
}

/// Where and how objects are written.
pub struct Target {
    bucket: Bucket,
    bucket_name: String,
    prefix: String,
    credentials: Credentials,
    path_style: bool,
    /// `scheme://host[:port]` of the endpoint, for messages.
    endpoint: String,
    region: String,
    /// Values that must never reach a message: the secret key and the session token.
    secrets: Vec<String>,
    origin: Origin,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("at", &self.describe())
            .finish_non_exhaustive()
    }
}

/// S3's rules for bucket names (3 to 63 of `a-z 0-9 . -`, starting and ending with a letter or
/// digit), which MinIO and R2 follow too.
fn valid_bucket(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last())
        && !name.contains("..")
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigProblem> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigProblem(format!(
            "{name} must be `true` or `false`, not {v:?}"
        ))),
    }
}

impl Target {
    pub fn from_settings(s: &Settings, origin: Origin) -> Result<Target, ConfigProblem> {
        let names = origin.names();
        let problem = |m: String| Err(ConfigProblem(m));

        let Some(bucket_name) = value(&s.bucket) else {
            return problem(format!(
                "{} is not set: name the bucket the records go to",
                names.bucket
            ));
        };
        if !valid_bucket(bucket_name) {
            return problem(format!(
                "{} {bucket_name:?} is not a valid bucket name (3 to 63 characters: lower-case letters, digits, `.` and `-`)",
                names.bucket
            ));
        }

        // The prefix: segments without `.`/`..` (a URL would resolve them away) or control
        // characters; slashes at either end are dropped (`logs/` and `/logs` mean `logs`).
        let prefix = value(&s.prefix).unwrap_or_default().trim_matches('/');
        for segment in prefix.split('/').filter(|_| !prefix.is_empty()) {
            if segment.is_empty()
                || segment == "."
                || segment == ".."
                || segment.chars().any(char::is_control)
            {
                return problem(format!(
                    "{} {prefix:?} has an empty, `.` or `..` part or a control character; use plain names such as `slack/logs`",
                    names.prefix
                ));
            }
        }
        if prefix.len() > 512 {
            return problem(format!("{} is longer than 512 bytes", names.prefix));
        }

        let region = value(&s.region).unwrap_or(DEFAULT_REGION);
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return problem(format!(
                "{} {region:?} is not a region name (such as `eu-west-1`)",
                names.region
            ));
        }
        let endpoint_text = value(&s.endpoint_url).map_or_else(
            || format!("https://s3.{region}.amazonaws.com"),
            str::to_string,
        );
        let endpoint: url::Url = match endpoint_text.parse() {
            Ok(u) => u,
            Err(e) => {
                return problem(format!(
                    "{} {endpoint_text:?} is not a URL ({e})",
                    names.endpoint
                ))
            }
        };
        if !matches!(endpoint.scheme(), "http" | "https")
            || endpoint.host_str().is_none_or(str::is_empty)
        {
            return problem(format!(
                "{} must be http(s)://HOST[:PORT], such as https://s3.eu-west-1.amazonaws.com",
                names.endpoint
            ));
        }
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return problem(format!(
                "{} must not carry credentials; set {} and {}",
                names.endpoint, names.access_key_id, names.secret_access_key
            ));
        }
        if endpoint.path() != "/" || endpoint.query().is_some() || endpoint.fragment().is_some() {
            return problem(format!(
                "{} must be only http(s)://HOST[:PORT], without a path (the bucket goes in {})",
                names.endpoint, names.bucket
            ));
        }
        let host = endpoint.host_str().unwrap_or_default().to_string();

        // Path style (`https://HOST/BUCKET/KEY`) where a bucket cannot be a host name: on an IP
        // address or `localhost` (MinIO and friends on their own port), and for a dotted bucket
        // over HTTPS (`a.b.s3.amazonaws.com` matches no wildcard certificate) — what AWS's SDKs
        // do. Virtual-host style (`https://BUCKET.HOST/KEY`) otherwise; the switch overrides.
        let auto = matches!(
            endpoint.host(),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))
        ) || host == "localhost"
            || (bucket_name.contains('.') && endpoint.scheme() == "https");
        let path_style = match value(&s.path_style) {
            Some(v) => parse_bool(names.path_style, v)?,
            None => auto,
        };
        if !path_style
            && matches!(
                endpoint.host(),
                Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))
            )
        {
            return problem(format!(
                "{} is off, but the endpoint is an IP address, where the bucket cannot go in the host name: \
                 set {} to true (or leave it unset)",
                names.path_style, names.path_style
            ));
        }

        let (Some(key_id), Some(secret)) = (value(&s.access_key_id), value(&s.secret_access_key))
        else {
            return problem(format!(
                "{} and {} must both be set (the credentials of a user or role that may s3:PutObject into the bucket)",
                names.access_key_id, names.secret_access_key
            ));
        };
        let token = value(&s.session_token);
        let credentials = match token {
            Some(t) => Credentials::new_with_token(key_id, secret, t),
            None => Credentials::new(key_id, secret),
        };
        let style = if path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = match Bucket::new(
            endpoint.clone(),
            style,
            bucket_name.to_string(),
            region.to_string(),
        ) {
            Ok(b) => b,
            Err(e) => return problem(format!("{} and {}: {e:?}", names.endpoint, names.bucket)),
        };
        let mut secrets = vec![secret.to_string()];
        secrets.extend(token.map(str::to_string));
        let shown = match endpoint.port() {
            Some(p) => format!("{}://{host}:{p}", endpoint.scheme()),
            None => format!("{}://{host}", endpoint.scheme()),
        };
        Ok(Target {
            bucket,
            bucket_name: bucket_name.to_string(),
            prefix: prefix.to_string(),
            credentials,
            path_style,
            endpoint: shown,
            region: region.to_string(),
            secrets,
            origin,
        })
    }

    /// `s3://BUCKET/PREFIX at ENDPOINT (…-style)`: safe to print.
    pub fn describe(&self) -> String {
        let style = if self.path_style {
            "path-style"
        } else {
            "virtual-host-style"
        };
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        format!(
            "s3://{}/{prefix} at {} ({style}, region {})",
            self.bucket_name, self.endpoint, self.region
        )
    }

    /// `s3://BUCKET/KEY`: safe to print.
    pub fn describe_object(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket_name)
    }

    pub fn bucket_name(&self) -> &str {
        &self.bucket_name
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the object holding `stream`'s records of UTC day `date` from batch `batch_key`.
    pub fn object_key(&self, stream: &str, date: &str, batch_key: &str) -> String {
        let tail = format!("stream={stream}/date={date}/{batch_key}.ndjson.gz");
        if self.prefix.is_empty() {
            tail
        } else {
            format!("{}/{tail}", self.prefix)
        }
    }

    /// The objects one batch becomes: one per UTC day of its records' `time`, each with the
    /// day's records in batch order, gzip-compressed.
    pub fn plan(
        &self,
        stream: &str,
        batch_key: &str,
        ndjson: &[u8],
    ) -> Result<Vec<PlannedObject>, Failure> {
        // The key names the object: anything but a plain hex digest could escape the layout.
        if batch_key.is_empty()
            || batch_key.len() > 64
            || !batch_key
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(Failure::Rejected(format!(
                "S3 sink: the batch key {:?} is not a lower-case hex digest; a collector older than this sink sends none: \
                 use the collector and the sink of one release",
                batch_key.chars().take(80).collect::<String>()
            )));
        }
        if stream.is_empty() || !stream.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(Failure::Rejected(format!(
                "S3 sink: {stream:?} is not a stream name"
            )));
        }
        let mut days: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
        for line in ndjson
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        {
            let day = record_day(line).unwrap_or_else(|| UNDATED.to_string());
            let (buf, n) = days.entry(day).or_default();
            buf.extend_from_slice(line);
            buf.push(b'\n');
            *n = n.saturating_add(1);
        }
        let mut out = Vec::with_capacity(days.len());
        for (day, (lines, records)) in days {
            let key = self.object_key(stream, &day, batch_key);
            if key.len() > MAX_OBJECT_KEY {
                return Err(Failure::Rejected(format!(
                    "S3 sink: the object key is longer than S3 allows; shorten {}",
                    self.origin.names().prefix
                )));
            }
            let body = gzip(&lines).map_err(|e| {
                Failure::Unavailable(format!("S3 sink: compressing the batch: {e}"))
            })?;
            let content_md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
            out.push(PlannedObject {
                key,
                body,
                content_md5,
                records,
            });
        }
        Ok(out)
    }

    /// A PUT of `object`, signed (SigV4, in the query string) at `now_unix`.
    pub fn sign_put(&self, object: &PlannedObject, now_unix: i64) -> Result<SignedPut, Failure> {
        let time = jiff::Timestamp::from_second(now_unix).map_err(|e| {
            Failure::Unavailable(format!(
                "S3 sink: the clock reads {now_unix}, no time to sign with: {e}"
            ))
        })?;
        let mut action = self.bucket.put_object(Some(&self.credentials), &object.key);
        // Signed, so that nobody on the way can change how the body is read or swap it.
        let headers = [
            ("content-encoding", "gzip".to_string()),
            ("content-md5", object.content_md5.clone()),
            ("content-type", "application/x-ndjson".to_string()),
        ];
        for (k, v) in &headers {
            action.headers_mut().insert(*k, v.as_str());
        }
        let url = action.sign_with_time(SIGNATURE_TTL, &time);
        let Some(host) = url.host_str() else {
            return Err(Failure::Unavailable(
                "S3 sink: the signed URL has no host".into(),
            ));
        };
        // rusty-s3 signs `host[:port]` with the port only when it is not the scheme's default;
        // `url` leaves a default port out of `port()`, so this is the same text.
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let path_with_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut all: Vec<(&'static str, String)> = headers.into_iter().collect();
        all.push(("content-length", object.body.len().to_string()));
        all.push(("user-agent", USER_AGENT.to_string()));
        Ok(SignedPut {
            https: url.scheme() == "https",
            authority,
            path_with_query,
            headers: all,
        })
    }

    /// The attempt for an answered PUT of `key`: S3's status and the start of its body.
    pub fn answered(&self, key: &str, status: u16, body: &[u8]) -> Attempt {
        let names = self.origin.names();
        let (code, message) = s3_error(body);
        let code = code.unwrap_or_default();
        let what = {
            let mut w = format!("PUT {} answered HTTP {status}", self.describe_object(key));
            if !code.is_empty() {
                w.push_str(&format!(" {code}"));
            }
            if let Some(m) = message {
                // Redacted before the cut, so no piece of a secret can survive it.
                let m: String = self.redact(&m).chars().take(200).collect();
                w.push_str(&format!(": {m}"));
            }
            self.redact(&w)
        };
        let unavailable = |hint: String| {
            Attempt::Failed(Failure::Unavailable(format!("S3 sink: {what}; {hint}")))
        };
        match (status, code.as_str()) {
            (200..=299, _) => Attempt::Accepted,
            (408 | 429 | 500..=599, _) | (400, "RequestTimeout" | "BadDigest" | "IncompleteBody") | (409, "OperationAborted") => {
                Attempt::Retry { why: what }
            }
            (_, "ExpiredToken" | "TokenRefreshRequired") => unavailable(format!(
                "the temporary credentials expired: renew {}, {} and {}",
                names.access_key_id, names.secret_access_key, names.session_token
            )),
            (_, "InvalidAccessKeyId") => unavailable(format!("check {}", names.access_key_id)),
            (_, "SignatureDoesNotMatch") => unavailable(format!(
                "check {} (and {}, {} the bucket's region)",
                names.secret_access_key, names.region, self.region
            )),
            (_, "RequestTimeTooSkewed") => {
                unavailable("this machine's clock is off by more than S3 allows: set it right (NTP)".into())
            }
            (_, "PermanentRedirect" | "TemporaryRedirect" | "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError")
            | (301 | 307, _) => unavailable(format!(
                "the bucket is not at this endpoint or in region {}: set {} to the bucket's region (or {})",
                self.region, names.region, names.endpoint
            )),
            (_, "NoSuchBucket") | (404, _) => unavailable(format!(
                "create the bucket, or check {} and {} ({})",
                names.bucket,
                names.endpoint,
                if self.path_style { "path-style" } else { "virtual-host-style; MinIO and other stores may need path style" }
            )),
            (403, _) => unavailable(format!(
                "the credentials ({}) may not s3:PutObject on {}: check the user's or role's policy and the bucket policy",
                names.access_key_id,
                self.describe_object(&format!("{}*", if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) }))
            )),
            (400..=499, _) => Attempt::Failed(Failure::Rejected(format!("S3 sink: {what}"))),
            _ => unavailable(format!("check {} and {}", names.endpoint, names.path_style)),
        }
    }

    /// `text` without the secret key or session token, raw or URL-encoded (a store or proxy that
    /// echoes the request would show the token from the query string).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            let encoded_forms = [
                secret.clone(),
                url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            ];
            for form in encoded_forms.iter().filter(|f| f.len() >= 4) {
                out = out.replace(form.as_str(), "[secret]");
            }
        }
        out
    }
}

/// The backoff before attempt `n + 1` (after `n` failed): 0.5, 1, 2, 2 … s.
pub fn backoff(n: u32) -> Duration {
    let mut d = FIRST_DELAY;
    for _ in 1..n {
        d = (d * 2).min(MAX_DELAY);
    }
    d.min(MAX_DELAY)
}

/// Runs up to [`TRIES`] attempts of one PUT with [`backoff`]. `attempt` gets the attempt number
/// (from 1); `sleep` waits. Both are parameters so the schedule is tested without a network.
pub fn deliver(
    mut attempt: impl FnMut(u32) -> Attempt,
    mut sleep: impl FnMut(Duration),
) -> Result<(), Failure> {
    let mut last = String::new();
    for n in 1..=TRIES {
        match attempt(n) {
            Attempt::Accepted => return Ok(()),
            Attempt::Failed(f) => return Err(f),
            Attempt::Retry { why } => {
                last = why;
                if n < TRIES {
                    sleep(backoff(n));
                }
            }
        }
    }
    Err(Failure::Unavailable(format!(
        "S3 sink: {last} (gave up after {TRIES} tries)"
    )))
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(bytes)?;
    enc.finish()
}

/// The UTC day (`YYYY-MM-DD`) of a record's top-level `time`: unix seconds in our records,
/// milliseconds in OCSF events (`output_format = ocsf`). A number of 10^11 or more is taken as
/// milliseconds: as seconds it would be after the year 5000.
pub fn record_day(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        time: Option<serde_json::Number>,
    }
    let head: Head = serde_json::from_slice(line).ok()?;
    let t = head.time?.as_i64()?;
    let secs = if t.unsigned_abs() >= 100_000_000_000 {
        t.div_euclid(1000)
    } else {
        t
    };
    utc_day(secs)
}

/// `YYYY-MM-DD` of unix seconds, for 1970 to 9999.
pub fn utc_day(secs: i64) -> Option<String> {
    if !(0..253_402_300_800).contains(&secs) {
        return None;
    }
    // Howard Hinnant's civil_from_days; every value stays far inside i64 for this range.
    let z = secs / 86_400 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// `<Code>` and `<Message>` of an S3 error document (the rest of it, such as the canonical
/// request S3 echoes on `SignatureDoesNotMatch`, is never shown), on one line each.
fn s3_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]);
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find("</")? + start;
        let v: String = text[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Some(v).filter(|v| !v.is_empty())
    };
    let code = element("Code").filter(|c| c.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
    (code, element("Message"))
}

#[cfg(test)]
mod tests;
