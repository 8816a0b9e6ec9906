//! The WASI glue: `sink.write` over `wasi:config/store` and `wasi:http/outgoing-handler`.

use std::time::Duration;

use crate::{answered, deliver, Attempt, Failure, Scheme, Target, ATTEMPT_TIMEOUT, TRIES};

mod bindings {
    // The shared `sink-component` world exports `sink` and imports nothing; this sink also needs
    // HTTP, config and a clock, so it extends that world here instead of adding a world to the
    // collector's WIT package for one sink's needs.
    wit_bindgen::generate!({
        inline: r#"
            package slack-logs:sink-http@0.1.0;

            world sink-http {
                include slack-logs:collector/sink-component@0.1.0;
                import wasi:http/outgoing-handler@0.2.6;
                import wasi:config/store@0.2.0-draft-2024-09-27;
                import wasi:clocks/monotonic-clock@0.2.6;
            }
        "#,
        path: "../../wit",
        world: "slack-logs:sink-http/sink-http",
        generate_all,
    });
}

use bindings::exports::slack_logs::collector::sink::{Guest, SinkBatch, SinkError};
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::config::store as config;
use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{
    self as http, ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions,
};
use bindings::wasi::io::poll;
use bindings::wasi::io::streams::StreamError;

/// Enough of an error answer to show the operator; the rest is not read.
const MAX_ERROR_BODY: usize = 4096;

struct HttpSink;

bindings::export!(HttpSink with_types_in bindings);

impl Guest for HttpSink {
    fn write(batch: SinkBatch) -> Result<(), SinkError> {
        let target = load_target().map_err(SinkError::Unavailable)?;
        let tries = |n: u32| {
            let outcome = attempt(&target, &batch.ndjson);
            // The operator sees a struggling endpoint before the batch finally fails.
            if let Attempt::Retry { why, .. } = &outcome {
                eprintln!("sink-http: {why} (attempt {n} of {TRIES})");
            }
            outcome
        };
        deliver(tries, sleep).map_err(|f| match f {
            Failure::Unavailable(m) => SinkError::Unavailable(m),
            Failure::Rejected(m) => SinkError::Rejected(m),
        })
    }
}

fn get(key: &str) -> Result<Option<String>, String> {
    config::get(key).map_err(|e| {
        let why = match e {
            config::Error::Upstream(m) | config::Error::Io(m) => m,
        };
        format!("sink-http: could not read `{key}` from the host's configuration: {why}")
    })
}

/// Read on every batch: config is cheap to read and a fresh instance per request is the norm.
fn load_target() -> Result<Target, String> {
    let (url, token, preset) = (get("sink_url")?, get("sink_token")?, get("sink_preset")?);
    Target::from_config(url.as_deref(), token.as_deref(), preset.as_deref())
        .map_err(|e| e.to_string())
}

fn sleep(d: Duration) {
    monotonic_clock::subscribe_duration(nanos(d)).block();
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

fn attempt(target: &Target, body: &[u8]) -> Attempt {
    let retry = |why: String| Attempt::Retry {
        why: format!("POST {}: {why}", target.display()),
        retry_after: None,
    };
    let give_up = |why: String| {
        Attempt::Failed(Failure::Unavailable(format!(
            "sink-http: POST {}: {why}",
            target.display()
        )))
    };

    let headers = match Fields::from_list(&target.headers(body.len())) {
        Ok(h) => h,
        // A token with a newline or similar: a configuration error, not a network one.
        Err(e) => {
            return give_up(format!(
                "a request header was refused ({e:?}); check `sink_token`"
            ))
        }
    };
    let request = OutgoingRequest::new(headers);
    let scheme = match target.scheme {
        Scheme::Http => http::Scheme::Http,
        Scheme::Https => http::Scheme::Https,
    };
    let set = request.set_method(&Method::Post).is_ok()
        && request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(&target.authority)).is_ok()
        && request
            .set_path_with_query(Some(&target.path_with_query))
            .is_ok();
    if !set {
        return give_up("the host refused the request URL; check `sink_url`".into());
    }
    let Ok(outgoing) = request.body() else {
        return give_up("no request body".into());
    };
    let timeout = nanos(ATTEMPT_TIMEOUT);
    let options = RequestOptions::new();
    // Not every host supports every timeout; the deadline below holds regardless.
    let _ = options.set_connect_timeout(Some(timeout));
    let _ = options.set_first_byte_timeout(Some(timeout));
    let _ = options.set_between_bytes_timeout(Some(timeout));
    let deadline = monotonic_clock::now().saturating_add(timeout);

    // Send first, then stream the body: the host consumes the body while it sends, so a body
    // larger than its buffer cannot block a write that nothing reads yet.
    let future = match outgoing_handler::handle(request, Some(options)) {
        Ok(f) => f,
        Err(e) => return network(target, e),
    };
    // A failure while sending the body does not decide the attempt: the endpoint may have read
    // everything, answered and closed before our last flush returned (the host then reports the
    // stream closed), or answered early without reading it all. Treating that as a failure would
    // send an accepted batch again. The answer decides; without one it is a network error.
    let body_problem = match write_body(&outgoing, body, deadline) {
        Ok(()) => OutgoingBody::finish(outgoing, None)
            .err()
            .map(|e| format!("finishing the batch: {e:?}")),
        Err(why) => {
            // Dropped unfinished, so the host abandons the body instead of waiting for more.
            drop(outgoing);
            Some(why)
        }
    };

    let timer = monotonic_clock::subscribe_instant(deadline);
    let ready = future.subscribe();
    let response = loop {
        if let Some(result) = future.get() {
            match result {
                Ok(Ok(r)) => break r,
                Ok(Err(e)) => return network(target, e),
                Err(()) => return give_up("the response was already taken".into()),
            }
        }
        if monotonic_clock::now() >= deadline {
            let why = format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs());
            return retry(match body_problem {
                Some(b) => format!("{b}; {why}"),
                None => why,
            });
        }
        poll::poll(&[&ready, &timer]);
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .into_iter()
        .next()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    // Only an error answer's body matters; a 2xx body is not read at all.
    let error_body = if (200..300).contains(&status) {
        Vec::new()
    } else {
        read_some(&response, deadline)
    };
    drop(response);
    answered(target, status, retry_after.as_deref(), &error_body)
}

/// Writes the whole body, waiting for the stream when it is full, until `deadline`.
fn write_body(outgoing: &OutgoingBody, mut body: &[u8], deadline: u64) -> Result<(), String> {
    let stream = outgoing
        .write()
        .map_err(|()| "no request body stream".to_string())?;
    let failed = |e: StreamError| match e {
        StreamError::LastOperationFailed(e) => {
            format!("sending the batch: {}", e.to_debug_string())
        }
        StreamError::Closed => "the connection closed while sending the batch".to_string(),
    };
    while !body.is_empty() {
        let permit = stream.check_write().map_err(failed)?;
        if permit == 0 {
            if monotonic_clock::now() >= deadline {
                return Err(format!(
                    "could not send the batch within {} s",
                    ATTEMPT_TIMEOUT.as_secs()
                ));
            }
            let timer = monotonic_clock::subscribe_instant(deadline);
            let ready = stream.subscribe();
            poll::poll(&[&ready, &timer]);
            continue;
        }
        let n = usize::try_from(permit)
            .unwrap_or(usize::MAX)
            .min(body.len());
        stream.write(&body[..n]).map_err(failed)?;
        body = &body[n..];
    }
    stream.blocking_flush().map_err(failed)?;
    // The stream is a child of the body and must go before `finish`.
    drop(stream);
    Ok(())
}

/// Up to [`MAX_ERROR_BODY`] bytes of an answer, for the error message; best effort.
fn read_some(response: &http::IncomingResponse, deadline: u64) -> Vec<u8> {
    let Ok(body) = response.consume() else {
        return Vec::new();
    };
    let Ok(stream) = body.stream() else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY && monotonic_clock::now() < deadline {
        match stream.read((MAX_ERROR_BODY - buf.len()) as u64) {
            Ok(chunk) if chunk.is_empty() => {
                let timer = monotonic_clock::subscribe_instant(deadline);
                let ready = stream.subscribe();
                poll::poll(&[&ready, &timer]);
            }
            Ok(chunk) => buf.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    drop(stream);
    drop(body);
    buf
}

fn network(target: &Target, e: ErrorCode) -> Attempt {
    let url = target.display();
    match e {
        // Retrying a denied request cannot help: the manifest or the host's policy must change.
        ErrorCode::HttpRequestDenied => Attempt::Failed(Failure::Unavailable(format!(
            "sink-http: POST {url}: the host denied the request (under Spin: add the sink's host to \
             allowed_outbound_hosts and set dependencies_inherit_configuration = true)"
        ))),
        ErrorCode::HttpRequestUriInvalid => {
            Attempt::Failed(Failure::Unavailable(format!("sink-http: POST {url}: the host calls the URL invalid; check `sink_url`")))
        }
        other => Attempt::Retry { why: format!("POST {url}: {other:?}"), retry_after: None },
    }
}
