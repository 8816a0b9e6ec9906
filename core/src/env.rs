//! The outside world as the collector sees it: four small traits the component implements with
//! WASI imports and tests implement in memory.

use std::fmt;
use std::time::Duration;

/// One HTTP answer, already read (the body is capped by the transport).
#[derive(Clone, Debug, Default)]
pub struct HttpResponse {
    pub status: u16,
    /// The raw `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The raw `Date` header, if any: Slack's clock, which the audit stream plans against.
    pub date: Option<String>,
    pub body: Vec<u8>,
}

/// Why a request got no HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No complete answer within the request timeout.
    Timeout,
    /// The body was larger than the cap; nothing of it is used.
    TooLarge { limit: usize },
    /// DNS, connection refused, TLS, a broken stream.
    Network(String),
}

impl HttpResponse {
    /// The `Date` header as unix seconds (RFC 9110 IMF-fixdate, or the two obsolete forms it
    /// still requires a recipient to accept); `None` when absent or unparsable.
    pub fn date_unix(&self) -> Option<i64> {
        parse_http_date(self.date.as_deref()?)
    }
}

/// An HTTP-date (RFC 9110 §5.6.7, all three forms) as unix seconds; `None` when unparsable. For
/// `Date`, and for `Retry-After` in its date form.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(text.trim()).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Timeout => write!(f, "no answer within the request timeout"),
            TransportError::TooLarge { limit } => {
                write!(f, "response body larger than {limit} bytes")
            }
            TransportError::Network(m) => write!(f, "network error: {m}"),
        }
    }
}

/// Sends requests to Slack. The token goes in an `Authorization: Bearer` header, never in the URL.
pub trait Transport {
    fn get(
        &mut self,
        url: &str,
        bearer: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError>;

    /// POSTs `form` (already `application/x-www-form-urlencoded`) — `oauth.v2.access` and
    /// `auth.revoke`, the only calls that are not GETs. `bearer` is sent when given.
    ///
    /// The default refuses: only the OAuth routes POST, and transports that never serve them
    /// (the streams' test models, the benchmark) need not implement it.
    fn post_form(
        &mut self,
        url: &str,
        bearer: Option<&str>,
        form: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let _ = (bearer, form, timeout);
        Err(TransportError::Network(format!(
            "this transport cannot POST (to {url})"
        )))
    }
}

/// The largest key and value every supported store takes (Fermyon Cloud, Akamai Functions,
/// DynamoDB-backed Spin: 400 KB items; keys of at most 255 bytes). Everything the collector
/// writes stays under these, and the hosts in this repository refuse more, so what works here
/// works on the smallest platform.
pub const MAX_KEY_BYTES: usize = 255;
pub const MAX_VALUE_BYTES: usize = 400_000;

/// Checks a write against [`MAX_KEY_BYTES`] and [`MAX_VALUE_BYTES`]; the error names the key.
pub fn check_portable(key: &str, value: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError(format!(
            "key {key:?} is {} bytes, over the portable limit of {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError(format!(
            "the value for {key} is {} bytes, over the portable limit of {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// Why the key-value store failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key-value store: {}", self.0)
    }
}

/// The host's key-value store, where checkpoints and status live.
pub trait KvStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key` (absent is fine). The default refuses, so a store that cannot delete never
    /// claims a key (say, a revoked OAuth token) is gone while it is not.
    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        Err(StoreError(format!("this store cannot delete keys ({key})")))
    }
}

/// One batch of NDJSON records from one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkBatch {
    pub stream: &'static str,
    pub count: u32,
    pub ndjson: Vec<u8>,
    /// Where the batch starts (the WIT `batch-key`): the same for a batch offered again after a
    /// crash, since it comes from the checkpoint the batch resumes from (see `walk::StreamIo`).
    pub key: String,
}

/// Why the sink did not accept a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkError {
    Unavailable(String),
    Rejected(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Unavailable(m) => write!(f, "sink unavailable: {m}"),
            SinkError::Rejected(m) => write!(f, "sink rejected the batch: {m}"),
        }
    }
}

/// Where records go. `Ok` means durably accepted.
pub trait RecordSink {
    fn write(&mut self, batch: SinkBatch) -> Result<(), SinkError>;
}

/// Time, so tests can run a pass in simulated time.
pub trait Clock {
    /// Wall-clock unix seconds.
    fn now_unix(&self) -> i64;
    /// Monotonic time since an arbitrary origin, for budgets.
    fn monotonic(&self) -> Duration;
    fn sleep(&self, d: Duration);
}

/// Everything a pass needs from outside.
pub struct Env<'a> {
    pub transport: &'a mut dyn Transport,
    pub store: &'a mut dyn KvStore,
    pub sink: &'a mut dyn RecordSink,
    pub clock: &'a dyn Clock,
    /// Progress lines for the operator (stderr in the component).
    pub log: &'a dyn Fn(&str),
    /// 16 unpredictable bytes per call (`wasi:random` in the component): a pass's lease owner id.
    pub random: &'a dyn Fn() -> [u8; 16],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_header_forms_parse_and_garbage_does_not() {
        let r = |d: &str| HttpResponse {
            date: Some(d.into()),
            ..HttpResponse::default()
        };
        assert_eq!(
            r("Sun, 06 Nov 1994 08:49:37 GMT").date_unix(),
            Some(784_111_777)
        );
        assert_eq!(
            r("Sunday, 06-Nov-94 08:49:37 GMT").date_unix(),
            Some(784_111_777)
        );
        assert_eq!(r("Sun Nov  6 08:49:37 1994").date_unix(), Some(784_111_777));
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "18446744073709551615",
        ] {
            assert_eq!(r(bad).date_unix(), None, "{bad:?}");
        }
        assert_eq!(HttpResponse::default().date_unix(), None);
    }

    #[test]
    fn portable_limits_name_the_key() {
        assert!(check_portable("k", &[0; MAX_VALUE_BYTES]).is_ok());
        let e = check_portable("k", &[0; MAX_VALUE_BYTES + 1]).unwrap_err();
        assert!(e.0.contains("the value for k"), "{e}");
        assert!(check_portable(&"x".repeat(MAX_KEY_BYTES + 1), b"").is_err());
    }
}
