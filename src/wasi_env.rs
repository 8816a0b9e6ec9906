//! The core's traits implemented with the component's WASI imports.

use std::time::Duration;

use slack_logs_core::{
    Clock, HttpResponse, KvStore, RecordSink, SinkBatch, SinkError, StoreError, Transport,
    TransportError,
};

use crate::component::bindings::slack_logs::collector::sink;
use crate::component::bindings::wasi::clocks::monotonic_clock;
use crate::component::bindings::wasi::http::outgoing_handler;
use crate::component::bindings::wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::component::bindings::wasi::io::streams::StreamError;
use crate::component::bindings::wasi::keyvalue::store as kv;

/// Larger bodies are refused: a full audit page of 9999 events is ~15 MB.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Slack over `wasi:http/outgoing-handler`.
pub struct WasiTransport;

impl Transport for WasiTransport {
    fn get(
        &mut self,
        url: &str,
        bearer: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        send(Method::Get, url, Some(bearer), None, timeout)
    }

    fn post_form(
        &mut self,
        url: &str,
        bearer: Option<&str>,
        form: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        send(Method::Post, url, bearer, Some(form.as_bytes()), timeout)
    }
}

/// One request; `body` (form-encoded) only for POST. The whole exchange, body included, must
/// finish within `timeout`.
fn send(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse, TransportError> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        return Err(TransportError::Network(format!(
            "unsupported URL scheme in {url}"
        )));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut header_list = Vec::new();
    if let Some(bearer) = bearer {
        header_list.push((
            "authorization".to_string(),
            format!("Bearer {bearer}").into_bytes(),
        ));
    }
    header_list.push(("accept".to_string(), b"application/json".to_vec()));
    header_list.push((
        "user-agent".to_string(),
        concat!("slack-logs/", env!("CARGO_PKG_VERSION"))
            .as_bytes()
            .to_vec(),
    ));
    if let Some(body) = body {
        header_list.push((
            "content-type".to_string(),
            b"application/x-www-form-urlencoded".to_vec(),
        ));
        header_list.push((
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ));
    }
    let headers = Fields::from_list(&header_list)
        .map_err(|e| TransportError::Network(format!("bad request header: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let set = request.set_method(&method).is_ok()
        && request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(authority)).is_ok()
        && request.set_path_with_query(Some(path)).is_ok();
    if !set {
        return Err(TransportError::Network(format!(
            "the host refused the request URL {url}"
        )));
    }
    // Taken before `handle` consumes the request; written after, as wasi:http expects.
    let outgoing_body = match body {
        Some(_) => Some(
            request
                .body()
                .map_err(|()| TransportError::Network("no request body".into()))?,
        ),
        None => None,
    };
    let nanos = timeout.as_nanos().min(u128::from(u64::MAX)) as u64;
    let options = RequestOptions::new();
    // Not every host supports every timeout; the overall deadline below still holds.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let deadline = monotonic_clock::now().saturating_add(nanos);

    let future = outgoing_handler::handle(request, Some(options)).map_err(network)?;
    if let (Some(outgoing), Some(bytes)) = (outgoing_body, body) {
        let stream = outgoing
            .write()
            .map_err(|()| TransportError::Network("no request body stream".into()))?;
        // blocking-write-and-flush takes at most 4096 bytes a call.
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| match e {
                    StreamError::Closed => {
                        TransportError::Network("the request body stream closed".into())
                    }
                    StreamError::LastOperationFailed(e) => TransportError::Network(format!(
                        "writing the request body: {}",
                        e.to_debug_string()
                    )),
                })?;
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None).map_err(network)?;
    }
    let timer = monotonic_clock::subscribe_instant(deadline);
    let ready = future.subscribe();
    loop {
        if let Some(result) = future.get() {
            let response = match result {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(network(e)),
                Err(()) => return Err(TransportError::Network("response already taken".into())),
            };
            let status = response.status();
            let headers = response.headers();
            let header = |name: &str| {
                headers
                    .get(name)
                    .into_iter()
                    .next()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            };
            let (retry_after, date) = (header("retry-after"), header("date"));
            drop(headers);
            let body = response
                .consume()
                .map_err(|()| TransportError::Network("no response body".into()))?;
            let stream = body
                .stream()
                .map_err(|()| TransportError::Network("no response body stream".into()))?;
            let mut buf = Vec::new();
            loop {
                if monotonic_clock::now() > deadline {
                    return Err(TransportError::Timeout);
                }
                match stream.blocking_read(1 << 20) {
                    Ok(chunk) => {
                        if buf.len() + chunk.len() > MAX_BODY_BYTES {
                            return Err(TransportError::TooLarge {
                                limit: MAX_BODY_BYTES,
                            });
                        }
                        buf.extend_from_slice(&chunk);
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(TransportError::Network(format!(
                            "reading the body: {}",
                            e.to_debug_string()
                        )))
                    }
                }
            }
            drop(stream);
            return Ok(HttpResponse {
                status,
                retry_after,
                date,
                body: buf,
            });
        }
        if monotonic_clock::now() >= deadline {
            return Err(TransportError::Timeout);
        }
        crate::component::bindings::wasi::io::poll::poll(&[&ready, &timer]);
    }
}

fn network(e: ErrorCode) -> TransportError {
    match e {
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout => TransportError::Timeout,
        ErrorCode::HttpResponseTimeout => TransportError::Timeout,
        ErrorCode::HttpRequestDenied => TransportError::Network(
            "the host denied the request (under Spin: add the host to allowed_outbound_hosts)"
                .into(),
        ),
        other => TransportError::Network(format!("{other:?}")),
    }
}

/// Checkpoints in `wasi:keyvalue/store`, bucket `default` (Spin's default store).
pub struct WasiKv {
    bucket: kv::Bucket,
}

impl WasiKv {
    pub fn open() -> Result<WasiKv, StoreError> {
        kv::open("default")
            .map(|bucket| WasiKv { bucket })
            .map_err(store_error)
    }
}

fn store_error(e: kv::Error) -> StoreError {
    StoreError(match e {
        kv::Error::NoSuchStore => "the host has no key-value store named `default` (under Spin: key_value_stores = [\"default\"])".into(),
        kv::Error::AccessDenied => "access to the key-value store `default` was denied".into(),
        kv::Error::Other(m) => m,
    })
}

impl KvStore for WasiKv {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.bucket.get(key).map_err(store_error)
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.bucket.set(key, value).map_err(store_error)
    }
    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.bucket.delete(key).map_err(store_error)
    }
}

/// Records through the `sink` import.
pub struct WasiSink;

impl RecordSink for WasiSink {
    fn write(&mut self, batch: SinkBatch) -> Result<(), SinkError> {
        let wit_batch = sink::SinkBatch {
            stream: batch.stream.to_string(),
            count: batch.count,
            ndjson: batch.ndjson,
            batch_key: batch.key,
        };
        sink::write(&wit_batch).map_err(|e| match e {
            sink::SinkError::Unavailable(m) => SinkError::Unavailable(m),
            sink::SinkError::Rejected(m) => SinkError::Rejected(m),
        })
    }
}

/// `wasi:clocks`.
pub struct WasiClock;

impl Clock for WasiClock {
    fn now_unix(&self) -> i64 {
        // std's clock is wasi:clocks/wall-clock underneath.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(monotonic_clock::now())
    }

    fn sleep(&self, d: Duration) {
        monotonic_clock::subscribe_duration(d.as_nanos().min(u128::from(u64::MAX)) as u64).block();
    }
}

/// 16 random bytes for a pass's lease owner id. `wasi:random` always answers with the length
/// asked for; should a host not, std's randomly seeded hasher (also from the host's randomness)
/// still gives an id no other pass shares.
pub fn random_id() -> [u8; 16] {
    random_bytes::<16>().unwrap_or_else(|_| {
        use std::hash::BuildHasher;
        let a = std::collections::hash_map::RandomState::new().hash_one(0u8);
        let b = std::collections::hash_map::RandomState::new().hash_one(a);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    })
}

/// `wasi:random/random`: the host's cryptographically secure generator, for OAuth `state` values
/// and nonces. A short answer from the host is refused rather than padded.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let bytes = crate::component::bindings::wasi::random::random::get_random_bytes(N as u64);
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("the host gave {} random bytes, not {N}", b.len()))
}
