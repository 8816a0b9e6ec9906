//! The collector's configuration: flat string keys, the same names as Spin variables.
//!
//! The component reads every key through `wasi:config/store` `get-all` and parses them here, so it
//! rejects unknown keys and bad values the same way under Spin and in our host. Errors name the key
//! and never echo a secret's value.

use std::fmt;

use crate::Stream;

/// Slack has no audit data before 2018-03-01; an earlier `oldest` gets `invalid_range` (Q11).
pub const AUDIT_EPOCH: i64 = 1_519_862_400;

/// Every key the collector reads, with what it means. The README's config table and Spin's
/// variables follow this list.
pub const KEYS: &[(&str, &str)] = &[
    ("slack_token", "User token (xoxp-) used for every stream unless a stream has its own. Secret."),
    ("audit_token", "Token for the audit stream (org Owner, auditlogs:read). Defaults to slack_token. Secret."),
    ("streams", "Comma-separated streams to collect: audit, access, integration. Default: all three."),
    ("slack_api_base", "Web API base URL. Default https://slack.com/api"),
    ("slack_audit_base", "Audit Logs API base URL. Default https://api.slack.com/audit/v1"),
    ("backfill_start_time", "Where a stream with no checkpoint starts: RFC 3339 or unix seconds. Unset: from now, no history."),
    ("team_ids", "Comma-separated workspace ids for an org token, or `all` (every workspace the org-wide app is approved for)."),
    ("audit_actions", "Comma-separated audit action names to collect; more than 30 are walked in groups of 30. Default: all."),
    ("audit_actor", "Only audit events by this user id."),
    ("audit_entity", "Only audit events about this entity id."),
    ("access_mode", "`activity` (default) or `new-only`."),
    ("access_sort_key", "How team.accessLogs sorts: `auto` (default: detected from the data), `date_first` or `date_last`."),
    ("access_page_size", "`limit` per team.accessLogs request in cursor mode, 1 to 999. Default 999."),
    ("integration_page_size", "`count` per team.integrationLogs request, 2 to 1000 (the order check needs two entries a page). Default 1000."),
    ("audit_requests_per_minute", "Pacing of audit requests (Tier 3 is org-wide, shared with other consumers). 0 = no pacing. Default 40."),
    ("web_requests_per_minute", "Pacing of team.accessLogs / team.integrationLogs requests, each (Tier 2). 0 = no pacing. Default 20."),
    ("audit_lag_seconds", "How far behind now (by Slack's clock, taken from its answers' Date header, when that is behind ours) the audit stream stays, for events Slack publishes late. 2 to 86400 (0 or 1 would lose events of the second not yet over). Default 60."),
    ("audit_lookback_seconds", "How late Slack may index an audit event and it is still collected: each second is read again when it is 5 minutes old and when it is this old, and the events Slack indexed late are delivered (ids not delivered before; counted as slack_logs_late_events_total). 0 disables it. Default 3600."),
    ("access_lag_seconds", "How far behind now an access walk's bound `before` stays, for activity Slack records a little late or a clock slightly ahead of Slack's. 1 to 86400. Default 60."),
    ("audit_window_seconds", "Length of one audit collection window. Default 86400."),
    ("audit_page_size", "`limit` sent to the audit API, 1 to 9999. Default 1000."),
    ("max_run_seconds", "Time budget of one pass; a pass stops cleanly and the next resumes. Default 25."),
    ("request_timeout_seconds", "Timeout of one HTTP request to Slack; below max_run_seconds. Default 20, or less when max_run_seconds is under 25 (max_run_seconds − 5, at least half of it)."),
    ("max_silence", "Silence alert for every stream: when a stream delivers no record and no pass of it ends well for this long (`24h`, `90m`, `3600`), /status marks it unhealthy, /healthz fails and a `stream_silent` log line is written. `off` (default) disables it."),
    ("audit_max_silence", "max_silence for the audit stream only; overrides max_silence (`off` disables it for this stream)."),
    ("access_max_silence", "max_silence for the access stream only; overrides max_silence."),
    ("integration_max_silence", "max_silence for the integration stream only; overrides max_silence."),
    ("lease_seconds", "How long a stream's lease lasts after its last renewal (renewed once a third of it has passed: at each batch, checkpoint and wait) before another pass may take the stream over, e.g. after a crash. 0 (default): request_timeout_seconds + 10, at least 30."),
    ("lease_settle_ms", "How long a pass waits between writing a stream's lease and reading it back, so two passes starting at once cannot both win (README: Guarantees and limits). 0 to 10000. Default 250."),
    ("output_format", "`raw` (default): Slack's objects as received, in our record envelope; `ocsf`: OCSF 1.3.0 events."),
    ("collect_secret", "When set, POST /collect needs `Authorization: Bearer <collect_secret>`. Secret."),
    ("synthetic_data", "`true`: make realistic synthetic records for every stream (audit, access, integration) without calling Slack, marked `\"synthetic\": true`. Default false."),
    // The OAuth install flow (routes /oauth/start, /oauth/callback, /oauth/revoke; src/oauth.rs).
    ("slack_client_id", "OAuth install flow: the Slack app's Client ID (app settings, Basic Information). Enables /oauth/start."),
    ("slack_client_secret", "OAuth install flow: the Slack app's Client Secret, for the code exchange (oauth.v2.access). Secret."),
    ("oauth_redirect_url", "OAuth install flow: this collector's public URL of /oauth/callback, exactly as listed under Redirect URLs in the app's settings."),
    ("token_encryption_key", "OAuth install flow: encrypts the token obtained through /oauth/start in the key-value store; at least 32 characters (e.g. `openssl rand -hex 32`). Without it no token is stored. Secret."),
    ("slack_oauth_base", "Base URL of Slack's authorize page (/oauth/v2/authorize). Default https://slack.com"),
    // Read by the HTTP sink component, not the collector: under Spin a dependency that inherits
    // the app's configuration sees the same variables, so the collector must accept them.
    ("sink_url", "HTTP sink component: where batches are POSTed (NDJSON). Used by sinks/http only."),
    ("sink_token", "HTTP sink component: bearer token for sink_url (Splunk HEC: the HEC token). Secret."),
    ("sink_preset", "HTTP sink component: `webhook` (default) or `splunk-hec`."),
    // Read by the S3 sink component (sinks/s3), for the same reason.
    ("s3_bucket", "S3 sink component: the bucket the records go to. Used by sinks/s3 only."),
    ("s3_prefix", "S3 sink component: the key prefix, e.g. `security/slack`; objects go to PREFIX/stream=STREAM/date=YYYY-MM-DD/BATCH_KEY.ndjson.gz."),
    ("s3_endpoint_url", "S3 sink component: http(s)://HOST[:PORT] of the store (MinIO, R2, other S3-compatible stores). Default https://s3.<s3_region>.amazonaws.com"),
    ("s3_region", "S3 sink component: the bucket's region. Default us-east-1."),
    ("s3_access_key_id", "S3 sink component: the access key id of a user or role that may s3:PutObject into the bucket."),
    ("s3_secret_access_key", "S3 sink component: the secret access key of s3_access_key_id. Secret."),
    ("s3_session_token", "S3 sink component: the session token of temporary credentials. Secret."),
    ("s3_path_style", "S3 sink component: `true` for path-style requests (HOST/BUCKET/KEY), `false` for virtual-host style (BUCKET.HOST/KEY). Default: path style on an IP address or localhost, else virtual-host style."),
];

const SECRET_KEYS: &[&str] = &[
    "slack_token",
    "audit_token",
    "collect_secret",
    "sink_token",
    "s3_secret_access_key",
    "s3_session_token",
    "slack_client_secret",
    "token_encryption_key",
];

/// `token_encryption_key`'s minimum length: the key is stretched with HKDF, not a password hash,
/// so it must carry its own entropy (`openssl rand -hex 32` gives 64 characters).
pub const MIN_ENCRYPTION_KEY_LEN: usize = 32;

/// `access_mode`: what an access-log row must have changed to be emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    /// Emit a row whenever its `date_last` passed the watermark.
    Activity,
    /// Emit only user+IP+UA combinations first seen after the watermark.
    NewOnly,
}

/// `access_sort_key`: which field Slack sorts access logs by (undocumented, Q23).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessSortKey {
    /// Detected from the data; until it is known, no early stop that would be unsafe.
    Auto,
    DateFirst,
    DateLast,
}

/// `output_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Raw,
    Ocsf,
}

/// A parsed, validated configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub slack_token: Option<String>,
    pub audit_token: Option<String>,
    pub streams: Vec<Stream>,
    pub slack_api_base: String,
    pub slack_audit_base: String,
    pub backfill_start_time: Option<i64>,
    pub team_ids: Vec<String>,
    pub audit_actions: Vec<String>,
    pub audit_actor: Option<String>,
    pub audit_entity: Option<String>,
    pub access_mode: AccessMode,
    pub access_sort_key: AccessSortKey,
    pub access_page_size: u32,
    pub integration_page_size: u32,
    pub audit_requests_per_minute: u32,
    pub web_requests_per_minute: u32,
    pub audit_lag_seconds: i64,
    /// `audit_lookback_seconds`; 0: no look-back re-scan.
    pub audit_lookback_seconds: i64,
    pub access_lag_seconds: i64,
    pub audit_window_seconds: i64,
    pub audit_page_size: u32,
    pub max_run_seconds: u32,
    /// The timeout in effect: the operator's, or derived from `max_run_seconds`.
    pub request_timeout_seconds: u32,
    /// Whether the operator set `request_timeout_seconds` (only then is a conflict an error).
    pub request_timeout_set: bool,
    /// Wait between claiming the walks' leases and confirming them (see `lease`).
    pub lease_settle_ms: u32,
    /// `lease_seconds`; 0 derives it from the time budget.
    pub lease_seconds: u32,
    /// `max_silence` in seconds (`None`: off).
    pub max_silence: Option<i64>,
    /// Per-stream `<stream>_max_silence`, in `Stream::ALL` order; `Some(None)` turns it off.
    pub stream_max_silence: [Option<Option<i64>>; 3],
    pub output_format: OutputFormat,
    pub collect_secret: Option<String>,
    pub synthetic_data: bool,
    pub slack_client_id: Option<String>,
    pub slack_client_secret: Option<String>,
    pub oauth_redirect_url: Option<String>,
    pub token_encryption_key: Option<String>,
    pub slack_oauth_base: String,
}

// Tokens and secrets stay out of every Debug print.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("slack_token", &redact(&self.slack_token))
            .field("audit_token", &redact(&self.audit_token))
            .field("streams", &self.streams)
            .field("slack_api_base", &self.slack_api_base)
            .field("slack_audit_base", &self.slack_audit_base)
            .field("backfill_start_time", &self.backfill_start_time)
            .field("audit_lag_seconds", &self.audit_lag_seconds)
            .field("audit_lookback_seconds", &self.audit_lookback_seconds)
            .field("access_lag_seconds", &self.access_lag_seconds)
            .field("max_run_seconds", &self.max_run_seconds)
            .field("collect_secret", &redact(&self.collect_secret))
            .field("synthetic_data", &self.synthetic_data)
            .field("slack_client_id", &self.slack_client_id)
            .field("slack_client_secret", &redact(&self.slack_client_secret))
            .field("oauth_redirect_url", &self.oauth_redirect_url)
            .field("token_encryption_key", &redact(&self.token_encryption_key))
            .field("slack_oauth_base", &self.slack_oauth_base)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            slack_token: None,
            audit_token: None,
            streams: Stream::ALL.to_vec(),
            slack_api_base: "https://slack.com/api".into(),
            slack_audit_base: "https://api.slack.com/audit/v1".into(),
            backfill_start_time: None,
            team_ids: Vec::new(),
            audit_actions: Vec::new(),
            audit_actor: None,
            audit_entity: None,
            access_mode: AccessMode::Activity,
            access_sort_key: AccessSortKey::Auto,
            access_page_size: 999,
            integration_page_size: 1000,
            audit_requests_per_minute: 40,
            web_requests_per_minute: 20,
            audit_lag_seconds: 60,
            audit_lookback_seconds: 3600,
            access_lag_seconds: 60,
            audit_window_seconds: 86_400,
            audit_page_size: 1000,
            max_run_seconds: 25,
            request_timeout_seconds: 20,
            request_timeout_set: false,
            lease_settle_ms: 250,
            lease_seconds: 0,
            max_silence: None,
            stream_max_silence: [None; 3],
            output_format: OutputFormat::Raw,
            collect_secret: None,
            synthetic_data: false,
            slack_client_id: None,
            slack_client_secret: None,
            oauth_redirect_url: None,
            token_encryption_key: None,
            slack_oauth_base: "https://slack.com".into(),
        }
    }
}

/// A key that is unknown or has a bad value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key `{}`: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// Shows a bad value in an error, unless the key holds a secret.
fn shown(key: &str, value: &str) -> String {
    if SECRET_KEYS.contains(&key) {
        "(value hidden)".into()
    } else {
        format!("{value:?}")
    }
}

impl Config {
    /// `collect_secret` as configured, read on its own: the routes it guards stay closed when
    /// another key is wrong (a typo must not turn `POST /collect` into an open route). The same
    /// trimming and "empty is unset" rule as [`Config::from_pairs`].
    pub fn collect_secret_of<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Option<String> {
        pairs
            .iter()
            .filter(|(k, _)| k.as_ref() == "collect_secret")
            .map(|(_, v)| v.as_ref().trim())
            .rfind(|v| !v.is_empty())
            .map(String::from)
    }

    /// Parses `get-all` pairs. Empty values count as unset, so a Spin variable with an empty
    /// default does not override the built-in default.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: &[(K, V)],
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut unknown = Vec::new();
        for (k, v) in pairs {
            let (key, value) = (k.as_ref(), v.as_ref().trim());
            if !KEYS.iter().any(|(name, _)| *name == key) {
                unknown.push(key.to_string());
                continue;
            }
            if value.is_empty() {
                continue;
            }
            c.set(key, value)?;
        }
        if !unknown.is_empty() {
            unknown.sort();
            return Err(err(
                &unknown.join("`, `"),
                "unknown key. Known keys: ".to_string()
                    + &KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
            ));
        }
        c.check()?;
        Ok(c)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "slack_token" => self.slack_token = Some(parse_token(key, value)?),
            "audit_token" => self.audit_token = Some(parse_token(key, value)?),
            "streams" => self.streams = parse_streams(value)?,
            "slack_api_base" => self.slack_api_base = parse_base_url(key, value)?,
            "slack_audit_base" => self.slack_audit_base = parse_base_url(key, value)?,
            "backfill_start_time" => self.backfill_start_time = Some(parse_time(key, value)?),
            "team_ids" => {
                // Each workspace once: twice would walk it twice a pass under one lease.
                let mut ids = parse_list(value);
                let mut seen = std::collections::BTreeSet::new();
                ids.retain(|t| seen.insert(t.clone()));
                self.team_ids = ids;
            }
            "audit_actions" => self.audit_actions = parse_list(value),
            "audit_actor" => self.audit_actor = Some(value.to_string()),
            "audit_entity" => self.audit_entity = Some(value.to_string()),
            "access_mode" => {
                self.access_mode = match value {
                    "activity" => AccessMode::Activity,
                    "new-only" => AccessMode::NewOnly,
                    _ => {
                        return Err(err(
                            key,
                            format!(
                                "expected `activity` or `new-only`, got {}",
                                shown(key, value)
                            ),
                        ))
                    }
                }
            }
            "access_sort_key" => {
                self.access_sort_key = match value {
                    "auto" => AccessSortKey::Auto,
                    "date_first" => AccessSortKey::DateFirst,
                    "date_last" => AccessSortKey::DateLast,
                    _ => {
                        return Err(err(
                            key,
                            format!(
                                "expected `auto`, `date_first` or `date_last`, got {}",
                                shown(key, value)
                            ),
                        ))
                    }
                }
            }
            "access_page_size" => self.access_page_size = parse_int(key, value, 1, 999)? as u32,
            "integration_page_size" => {
                self.integration_page_size = parse_int(key, value, 2, 1000)? as u32
            }
            "audit_requests_per_minute" => {
                self.audit_requests_per_minute = parse_int(key, value, 0, 6000)? as u32
            }
            "web_requests_per_minute" => {
                self.web_requests_per_minute = parse_int(key, value, 0, 6000)? as u32
            }
            // The current second is not over: a lag under 2 s plans windows that end in it, and
            // events Slack writes later in that second would fall below the watermark.
            "audit_lag_seconds" => self.audit_lag_seconds = parse_int(key, value, 2, 86_400)?,
            "audit_lookback_seconds" => {
                self.audit_lookback_seconds = parse_int(key, value, 0, 7 * 86_400)?
            }
            "access_lag_seconds" => self.access_lag_seconds = parse_int(key, value, 1, 86_400)?,
            "audit_window_seconds" => {
                self.audit_window_seconds = parse_int(key, value, 60, 31 * 86_400)?
            }
            "audit_page_size" => self.audit_page_size = parse_int(key, value, 1, 9999)? as u32,
            "max_run_seconds" => self.max_run_seconds = parse_int(key, value, 1, 86_400)? as u32,
            "max_silence" => self.max_silence = parse_silence(key, value)?,
            "audit_max_silence" => self.stream_max_silence[0] = Some(parse_silence(key, value)?),
            "access_max_silence" => self.stream_max_silence[1] = Some(parse_silence(key, value)?),
            "integration_max_silence" => {
                self.stream_max_silence[2] = Some(parse_silence(key, value)?)
            }
            "lease_seconds" => self.lease_seconds = parse_int(key, value, 0, 86_400)? as u32,
            "lease_settle_ms" => self.lease_settle_ms = parse_int(key, value, 0, 10_000)? as u32,
            "request_timeout_seconds" => {
                self.request_timeout_seconds = parse_int(key, value, 1, 600)? as u32;
                self.request_timeout_set = true;
            }
            "output_format" => {
                self.output_format = match value {
                    "raw" => OutputFormat::Raw,
                    "ocsf" => OutputFormat::Ocsf,
                    _ => {
                        return Err(err(
                            key,
                            format!("expected `raw` or `ocsf`, got {}", shown(key, value)),
                        ))
                    }
                }
            }
            "collect_secret" => self.collect_secret = Some(value.to_string()),
            "slack_client_id" => self.slack_client_id = Some(parse_credential(key, value)?),
            "slack_client_secret" => self.slack_client_secret = Some(parse_credential(key, value)?),
            "oauth_redirect_url" => self.oauth_redirect_url = Some(parse_redirect_url(key, value)?),
            "token_encryption_key" => {
                if value.len() < MIN_ENCRYPTION_KEY_LEN {
                    return Err(err(
                        key,
                        format!(
                            "shorter than {MIN_ENCRYPTION_KEY_LEN} characters; use a random value such as \
                             the output of `openssl rand -hex 32`"
                        ),
                    ));
                }
                self.token_encryption_key = Some(value.to_string())
            }
            "slack_oauth_base" => self.slack_oauth_base = parse_base_url(key, value)?,
            // The sink component's keys: accepted, not used here.
            "sink_url"
            | "sink_token"
            | "sink_preset"
            | "s3_bucket"
            | "s3_prefix"
            | "s3_endpoint_url"
            | "s3_region"
            | "s3_access_key_id"
            | "s3_secret_access_key"
            | "s3_session_token"
            | "s3_path_style" => {}
            "synthetic_data" => {
                self.synthetic_data = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(err(
                            key,
                            format!("expected `true` or `false`, got {}", shown(key, value)),
                        ))
                    }
                }
            }
            _ => unreachable!("every key in KEYS is handled"),
        }
        Ok(())
    }

    /// Checks that span several keys, and derives the defaults that follow others.
    fn check(&mut self) -> Result<(), ConfigError> {
        if !self.request_timeout_set {
            // A default must never make a valid setting invalid: with a short budget (hosted
            // Spin's ~30 s request limit makes 20 s natural) the timeout shrinks with it.
            self.request_timeout_seconds = default_request_timeout(self.max_run_seconds);
        }
        // The install flow needs all three; naming the missing one beats a failed install later.
        let oauth = [
            ("slack_client_id", self.slack_client_id.is_some()),
            ("slack_client_secret", self.slack_client_secret.is_some()),
            ("oauth_redirect_url", self.oauth_redirect_url.is_some()),
        ];
        if let Some((set, _)) = oauth.iter().find(|(_, is_set)| *is_set) {
            if let Some((missing, _)) = oauth.iter().find(|(_, is_set)| !*is_set) {
                return Err(err(
                    missing,
                    format!(
                        "not set, but `{set}` is: the OAuth install flow needs slack_client_id, \
                         slack_client_secret and oauth_redirect_url"
                    ),
                ));
            }
        }
        if self.request_timeout_set
            && self.request_timeout_seconds >= self.max_run_seconds
            && self.max_run_seconds > 1
        {
            // A request may not outlive the pass that sent it.
            return Err(err(
                "request_timeout_seconds",
                format!(
                    "{} s is not shorter than max_run_seconds ({} s); lower it",
                    self.request_timeout_seconds, self.max_run_seconds
                ),
            ));
        }
        Ok(())
    }

    /// Whether the OAuth install flow (`/oauth/start`) is configured.
    pub fn oauth_configured(&self) -> bool {
        self.slack_client_id.is_some()
    }

    /// The silence alert of one stream in seconds, `None` when off.
    pub fn max_silence(&self, stream: Stream) -> Option<i64> {
        let i = Stream::ALL.iter().position(|&s| s == stream).unwrap_or(0);
        self.stream_max_silence[i].unwrap_or(self.max_silence)
    }

    /// The token for the audit stream.
    pub fn audit_token(&self) -> Option<&str> {
        self.audit_token.as_deref().or(self.slack_token.as_deref())
    }

    /// The audit filters as query parameters, in a fixed order.
    pub fn audit_filters(&self) -> Vec<(&'static str, String)> {
        let mut f = Vec::new();
        if !self.audit_actions.is_empty() {
            f.push(("action", self.audit_actions.join(",")));
        }
        if let Some(a) = &self.audit_actor {
            f.push(("actor", a.clone()));
        }
        if let Some(e) = &self.audit_entity {
            f.push(("entity", e.clone()));
        }
        f
    }
}

/// The request timeout when the operator set none: 20 s, or under a budget shorter than 25 s
/// the budget less 5 s (time to deliver and checkpoint the answer), at least half the budget.
pub fn default_request_timeout(max_run_seconds: u32) -> u32 {
    let derived = max_run_seconds
        .saturating_sub(5)
        .max(max_run_seconds / 2)
        .max(1);
    derived.min(20)
}

fn parse_token(key: &str, value: &str) -> Result<String, ConfigError> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            key,
            "contains whitespace or control characters; paste the token alone",
        ));
    }
    if !value.starts_with("xox") {
        return Err(err(
            key,
            "does not look like a Slack token (expected xoxp-…)",
        ));
    }
    Ok(value.to_string())
}

/// An OAuth client id or secret: pasted from the app's settings, so stray whitespace is a mistake.
fn parse_credential(key: &str, value: &str) -> Result<String, ConfigError> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            key,
            "contains whitespace or control characters; paste the value alone",
        ));
    }
    Ok(value.to_string())
}

/// `oauth_redirect_url`: kept exactly as given (Slack compares it with the app's Redirect URLs),
/// https unless loopback, and ending in `/oauth/callback`, the route that finishes the install.
fn parse_redirect_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let rest = if let Some(r) = value.strip_prefix("https://") {
        r
    } else if let Some(r) = value.strip_prefix("http://") {
        let host = r.split(['/', ':']).next().unwrap_or("");
        if !(host == "localhost" || host.starts_with("127.") || r.starts_with("[::1]")) {
            return Err(err(key, format!("{value:?} uses http; Slack sends the install code there, so it must be https unless the host is a loopback address")));
        }
        r
    } else {
        return Err(err(key, format!("expected an https:// URL, got {value:?}")));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(err(key, format!("{value:?} has no host")));
    }
    if value.contains('?') || value.contains('#') {
        return Err(err(
            key,
            format!("{value:?} must not have a query or fragment"),
        ));
    }
    if !value.trim_end_matches('/').ends_with("/oauth/callback") {
        return Err(err(
            key,
            format!(
                "{value:?} does not end in /oauth/callback, the route that finishes the install"
            ),
        ));
    }
    Ok(value.to_string())
}

fn parse_streams(value: &str) -> Result<Vec<Stream>, ConfigError> {
    let mut out = Vec::new();
    for name in parse_list(value) {
        let s = Stream::parse(&name).ok_or_else(|| {
            err(
                "streams",
                format!("unknown stream {name:?}; expected audit, access or integration"),
            )
        })?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(err(
            "streams",
            "no stream named; expected audit, access or integration",
        ));
    }
    Ok(out)
}

fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A duration for the silence alert: `45s`, `90m`, `24h`, `7d` or plain seconds; `off` or `0`
/// is no alert.
fn parse_silence(key: &str, value: &str) -> Result<Option<i64>, ConfigError> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("off") || v == "0" {
        return Ok(None);
    }
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "s"),
    };
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|&n| n > 0)
    {
        Some(seconds) => Ok(Some(seconds)),
        None => Err(err(
            key,
            format!("expected a duration such as 24h, 90m, 45s, 7d or off, got {value:?}"),
        )),
    }
}

fn parse_int(key: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) => Err(err(key, format!("{n} is out of range {min}..={max}"))),
        Err(_) => Err(err(
            key,
            format!("expected a whole number, got {}", shown(key, value)),
        )),
    }
}

/// Slack base URLs: https, or http only to a loopback host (the simulator, tests).
fn parse_base_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim_end_matches('/');
    let rest = if let Some(r) = v.strip_prefix("https://") {
        r
    } else if let Some(r) = v.strip_prefix("http://") {
        let host = r.split(['/', ':']).next().unwrap_or("");
        if !(host == "localhost" || host.starts_with("127.") || r.starts_with("[::1]")) {
            return Err(err(key, format!("{v:?} uses http; Slack base URLs must be https unless the host is a loopback address")));
        }
        r
    } else {
        return Err(err(key, format!("expected an https:// URL, got {v:?}")));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(err(key, format!("{v:?} has no host")));
    }
    if v.contains('?') || v.contains('#') {
        return Err(err(key, format!("{v:?} must not have a query or fragment")));
    }
    Ok(v.to_string())
}

/// Unix seconds or RFC 3339 (`2024-05-01T00:00:00Z`, `…+02:00`, fractional seconds ignored),
/// read by the `time` crate: impossible dates (`2024-02-31`) and malformed fields are refused,
/// naming `key`.
pub fn parse_time(key: &str, value: &str) -> Result<i64, ConfigError> {
    if let Ok(n) = value.parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            err(
                key,
                format!(
                    "expected unix seconds or an RFC 3339 time such as 2024-05-01T00:00:00Z, got {value:?} ({e})"
                ),
            )
        })
}

/// Formats unix seconds as RFC 3339 UTC (`2024-05-01T12:00:00Z`), for logs and status. A value
/// outside years 0000..9999 (a corrupt checkpoint) is shown as `unix:<seconds>`.
pub fn format_rfc3339(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(ts) => ts
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| format!("unix:{t}")),
        Err(_) => format!("unix:{t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let c = Config::from_pairs::<&str, &str>(&[]).unwrap();
        assert_eq!(c.streams, Stream::ALL.to_vec());
        assert_eq!(c.audit_lag_seconds, 60);
        assert_eq!(c.max_run_seconds, 25);
        assert_eq!(c.slack_audit_base, "https://api.slack.com/audit/v1");
    }

    /// Under Spin the S3 sink component (a dependency that inherits the configuration) reads its
    /// variables from the same store: the collector must take them, and keep their secrets.
    #[test]
    fn the_s3_sink_components_keys_are_accepted_and_its_secrets_kept_secret() {
        let keys = [
            "s3_bucket",
            "s3_prefix",
            "s3_endpoint_url",
            "s3_region",
            "s3_access_key_id",
            "s3_secret_access_key",
            "s3_session_token",
            "s3_path_style",
        ];
        let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "value")).collect();
        Config::from_pairs(&pairs).unwrap();
        for (key, meaning) in KEYS {
            assert_eq!(
                SECRET_KEYS.contains(key),
                meaning.contains("Secret."),
                "{key}"
            );
        }
        assert!(
            SECRET_KEYS.contains(&"s3_secret_access_key")
                && SECRET_KEYS.contains(&"s3_session_token")
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_pairs(&[("slack_tokn", "x")]).unwrap_err();
        assert_eq!(e.key, "slack_tokn");
        assert!(e.to_string().contains("unknown key"));
    }

    #[test]
    fn bad_value_names_key_and_hides_secrets() {
        let e = Config::from_pairs(&[("audit_lag_seconds", "soon")]).unwrap_err();
        assert_eq!(e.key, "audit_lag_seconds");
        let e = Config::from_pairs(&[("slack_token", "xoxp-abc def")]).unwrap_err();
        assert!(!e.to_string().contains("abc"));
        let e = Config::from_pairs(&[("synthetic_data", "maybe")]).unwrap_err();
        assert!(e.to_string().contains("maybe"));
    }

    #[test]
    fn empty_values_keep_defaults() {
        let c = Config::from_pairs(&[("audit_lag_seconds", ""), ("streams", "audit")]).unwrap();
        assert_eq!(c.audit_lag_seconds, 60);
        assert_eq!(c.streams, vec![Stream::Audit]);
    }

    #[test]
    fn base_urls_need_https_unless_loopback() {
        assert!(Config::from_pairs(&[("slack_api_base", "http://example.com/api")]).is_err());
        let c = Config::from_pairs(&[("slack_api_base", "http://127.0.0.1:9/api/")]).unwrap();
        assert_eq!(c.slack_api_base, "http://127.0.0.1:9/api");
        assert!(Config::from_pairs(&[("slack_audit_base", "ftp://x")]).is_err());
    }

    #[test]
    fn times_parse_both_forms() {
        assert_eq!(parse_time("k", "1700000000").unwrap(), 1_700_000_000);
        assert_eq!(
            parse_time("k", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000
        );
        assert_eq!(
            parse_time("k", "2023-11-15T00:13:20.5+02:00").unwrap(),
            1_700_000_000
        );
        assert!(parse_time("k", "yesterday").is_err());
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(AUDIT_EPOCH), "2018-03-01T00:00:00Z");
        assert_eq!(format_rfc3339(i64::MAX), format!("unix:{}", i64::MAX));
    }

    #[test]
    fn impossible_or_signed_times_are_refused_naming_the_key() {
        for bad in [
            "2024-02-31T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "+2024-05-01T00:00:00Z",
            "2024-+5-01T00:00:00Z",
            "2024-05-01T+1:00:00Z",
            "2024-05-01T00:00:00",
        ] {
            let e = Config::from_pairs(&[("backfill_start_time", bad)])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(e.key, "backfill_start_time", "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(
            parse_time("k", "2024-02-29T00:00:00Z").unwrap(),
            1_709_164_800
        );
    }

    #[test]
    fn max_silence_takes_durations_and_per_stream_overrides() {
        let c = Config::from_pairs(&[
            ("max_silence", "24h"),
            ("access_max_silence", "off"),
            ("integration_max_silence", "90m"),
        ])
        .unwrap();
        assert_eq!(c.max_silence(Stream::Audit), Some(86_400));
        assert_eq!(c.max_silence(Stream::Access), None);
        assert_eq!(c.max_silence(Stream::Integration), Some(5_400));
        assert_eq!(
            Config::from_pairs(&[("max_silence", "3600")])
                .unwrap()
                .max_silence,
            Some(3600)
        );
        assert_eq!(
            Config::from_pairs(&[("max_silence", "2d")])
                .unwrap()
                .max_silence,
            Some(172_800)
        );
        assert_eq!(
            Config::from_pairs::<&str, &str>(&[])
                .unwrap()
                .max_silence(Stream::Audit),
            None
        );
        for bad in ["24x", "h", "-5m", "1.5h", "99999999999999999999d"] {
            let e = Config::from_pairs(&[("max_silence", bad)]).unwrap_err();
            assert!(e.to_string().contains("max_silence"), "{bad}: {e}");
        }
    }

    #[test]
    fn audit_token_falls_back_to_slack_token() {
        let c = Config::from_pairs(&[("slack_token", "xoxp-1")]).unwrap();
        assert_eq!(c.audit_token(), Some("xoxp-1"));
        let c =
            Config::from_pairs(&[("slack_token", "xoxp-1"), ("audit_token", "xoxp-2")]).unwrap();
        assert_eq!(c.audit_token(), Some("xoxp-2"));
    }

    #[test]
    fn oauth_keys_are_checked_together_and_stay_hidden() {
        let e = Config::from_pairs(&[("slack_client_id", "1.2")]).unwrap_err();
        assert_eq!(e.key, "slack_client_secret");
        let base = [
            ("slack_client_id", "1.2"),
            ("slack_client_secret", "sec-ret"),
            ("oauth_redirect_url", "https://c.example/x/oauth/callback"),
        ];
        let c = Config::from_pairs(&base).unwrap();
        assert!(c.oauth_configured());
        assert_eq!(c.slack_oauth_base, "https://slack.com");
        let with = |k: &'static str, v: &'static str| {
            let mut p = base.to_vec();
            p.push((k, v));
            Config::from_pairs(&p)
        };
        assert!(with("oauth_redirect_url", "https://c.example/callback").is_err());
        assert!(with("oauth_redirect_url", "http://c.example/oauth/callback").is_err());
        assert!(with("oauth_redirect_url", "http://127.0.0.1:3000/oauth/callback").is_ok());
        let e = with("token_encryption_key", "short-secret-value").unwrap_err();
        assert!(!e.to_string().contains("short-secret-value"), "{e}");
        let c = with("token_encryption_key", "k-0123456789abcdef0123456789abcdef").unwrap();
        let d = format!("{c:?}");
        assert!(
            !d.contains("sec-ret") && !d.contains("0123456789abcdef"),
            "{d}"
        );
    }

    #[test]
    fn debug_hides_tokens() {
        let c = Config::from_pairs(&[
            ("slack_token", "xoxp-secret-1"),
            ("collect_secret", "s3cr3t"),
        ])
        .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("secret-1") && !d.contains("s3cr3t"));
    }

    #[test]
    fn a_short_budget_alone_scales_the_request_timeout_down() {
        // Hosted Spin's ~30 s request limit makes max_run_seconds = 20 natural; the default
        // timeout (20 s) must not turn that into an error the operator never caused.
        let c = Config::from_pairs(&[("max_run_seconds", "20")]).unwrap();
        assert_eq!(c.request_timeout_seconds, 15);
        assert_eq!(
            Config::from_pairs(&[("max_run_seconds", "10")])
                .unwrap()
                .request_timeout_seconds,
            5
        );
        assert_eq!(
            Config::from_pairs(&[("max_run_seconds", "3")])
                .unwrap()
                .request_timeout_seconds,
            1
        );
        assert_eq!(Config::default().request_timeout_seconds, 20);
        assert_eq!(
            Config::from_pairs::<&str, &str>(&[])
                .unwrap()
                .request_timeout_seconds,
            20
        );
        assert_eq!(
            Config::from_pairs(&[("max_run_seconds", "600")])
                .unwrap()
                .request_timeout_seconds,
            20
        );
        // A timeout the operator set is theirs: kept, and refused only when it conflicts.
        let c = Config::from_pairs(&[("max_run_seconds", "20"), ("request_timeout_seconds", "19")])
            .unwrap();
        assert_eq!(c.request_timeout_seconds, 19);
        let e = Config::from_pairs(&[("max_run_seconds", "20"), ("request_timeout_seconds", "20")])
            .unwrap_err();
        assert_eq!(e.key, "request_timeout_seconds");
        assert!(
            e.problem.contains("not shorter than max_run_seconds"),
            "{e}"
        );
    }
}
