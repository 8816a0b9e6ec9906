//! The WASI glue: `sink.write` over `wasi:config/store`, `wasi:clocks` (the signing time) and
//! `wasi:http/outgoing-handler`.

use std::time::Duration;

use crate::{
    deliver, Attempt, Failure, PlannedObject, Settings, Target, ATTEMPT_TIMEOUT, MAX_ERROR_BODY,
    TRIES,
};

mod bindings {
    // The shared `sink-component` world exports `sink` and imports nothing; this sink also needs
    // HTTP, config and clocks, so it extends that world here, as sinks/http does.
    wit_bindgen::generate!({
        inline: r#"
            package slack-logs:sink-s3@0.1.0;

            world sink-s3 {
                include slack-logs:collector/sink-component@0.1.0;
                import wasi:http/outgoing-handler@0.2.6;
                import wasi:config/store@0.2.0-draft-2024-09-27;
                import wasi:clocks/monotonic-clock@0.2.6;
                import wasi:clocks/wall-clock@0.2.6;
            }
        "#,
        path: "../../wit",
        world: "slack-logs:sink-s3/sink-s3",
        generate_all,
    });
}

use bindings::exports::slack_logs::collector::sink::{Guest, SinkBatch, SinkError};
use bindings::wasi::clocks::{monotonic_clock, wall_clock};
use bindings::wasi::config::store as config;
use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{
    self as http, ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions,
};
use bindings::wasi::io::poll;
use bindings::wasi::io::streams::StreamError;

struct S3Sink;

bindings::export!(S3Sink with_types_in bindings);

impl Guest for S3Sink {
    fn write(batch: SinkBatch) -> Result<(), SinkError> {
        let result = load_target().and_then(|target| {
            let objects = target.plan(&batch.stream, &batch.batch_key, &batch.ndjson)?;
            // Every object of the batch (one per UTC day), each retried on its own; `ok` only
            // when S3 stored them all.
            for object in &objects {
                let tries = |n: u32| {
                    let outcome = attempt(&target, object);
                    // The operator sees a struggling store before the batch finally fails.
                    if let Attempt::Retry { why } = &outcome {
                        eprintln!("sink-s3: {why} (attempt {n} of {TRIES})");
                    }
                    outcome
                };
                deliver(tries, sleep)?;
            }
            Ok(())
        });
        result.map_err(|f| match f {
            Failure::Unavailable(m) => SinkError::Unavailable(m),
            Failure::Rejected(m) => SinkError::Rejected(m),
        })
    }
}

fn get(key: &str) -> Result<Option<String>, Failure> {
    config::get(key).map_err(|e| {
        let why = match e {
            config::Error::Upstream(m) | config::Error::Io(m) => m,
        };
        Failure::Unavailable(format!(
            "S3 sink: could not read `{key}` from the host's configuration: {why}"
        ))
    })
}

/// Read on every batch: config is cheap to read and a fresh instance per request is the norm.
fn load_target() -> Result<Target, Failure> {
    let settings = Settings {
        bucket: get("s3_bucket")?,
        prefix: get("s3_prefix")?,
        endpoint_url: get("s3_endpoint_url")?,
        region: get("s3_region")?,
        access_key_id: get("s3_access_key_id")?,
        secret_access_key: get("s3_secret_access_key")?,
        session_token: get("s3_session_token")?,
        path_style: get("s3_path_style")?,
    };
    Target::from_settings(&settings, crate::Origin::Variables)
        .map_err(|e| Failure::Unavailable(e.to_string()))
}

fn sleep(d: Duration) {
    monotonic_clock::subscribe_duration(nanos(d)).block();
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

fn attempt(target: &Target, object: &PlannedObject) -> Attempt {
    let shown = target.describe_object(&object.key);
    let retry = |why: String| Attempt::Retry {
        why: format!("PUT {shown}: {why}"),
    };
    let give_up =
        |why: String| Attempt::Failed(Failure::Unavailable(format!("S3 sink: PUT {shown}: {why}")));

    // Signed for each attempt, with the wall clock's time (SigV4 dates every request).
    let now = i64::try_from(wall_clock::now().seconds).unwrap_or(i64::MAX);
    let put = match target.sign_put(object, now) {
        Ok(p) => p,
        Err(f) => return Attempt::Failed(f),
    };
    let headers: Vec<(String, Vec<u8>)> = put
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone().into_bytes()))
        .collect();
    let headers = match Fields::from_list(&headers) {
        Ok(h) => h,
        Err(e) => return give_up(format!("a request header was refused ({e:?})")),
    };
    let request = OutgoingRequest::new(headers);
    let scheme = if put.https {
        http::Scheme::Https
    } else {
        http::Scheme::Http
    };
    // The authority is the signed `Host`.
    let set = request.set_method(&Method::Put).is_ok()
        && request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(&put.authority)).is_ok()
        && request
            .set_path_with_query(Some(&put.path_with_query))
            .is_ok();
    if !set {
        return give_up(
            "the host refused the request URL; check `s3_endpoint_url` and `s3_bucket`".into(),
        );
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

    // Send first, then stream the body (the host consumes it while it sends). A failure while
    // sending does not decide the attempt: S3 may have answered already; the answer decides.
    let future = match outgoing_handler::handle(request, Some(options)) {
        Ok(f) => f,
        Err(e) => return network(target, &shown, e),
    };
    let body_problem = match write_body(&outgoing, &object.body, deadline) {
        Ok(()) => OutgoingBody::finish(outgoing, None)
            .err()
            .map(|e| format!("finishing the object: {e:?}")),
        Err(why) => {
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
                Ok(Err(e)) => return network(target, &shown, e),
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
    // Only an error answer's body matters (S3's error document); a 2xx body is not read.
    let error_body = if (200..300).contains(&status) {
        Vec::new()
    } else {
        read_some(&response, deadline)
    };
    drop(response);
    target.answered(&object.key, status, &error_body)
}

/// Writes the whole body, waiting for the stream when it is full, until `deadline`.
fn write_body(outgoing: &OutgoingBody, mut body: &[u8], deadline: u64) -> Result<(), String> {
    let stream = outgoing
        .write()
        .map_err(|()| "no request body stream".to_string())?;
    let failed = |e: StreamError| match e {
        StreamError::LastOperationFailed(e) => {
            format!("sending the object: {}", e.to_debug_string())
        }
        StreamError::Closed => "the connection closed while sending the object".to_string(),
    };
    while !body.is_empty() {
        let permit = stream.check_write().map_err(failed)?;
        if permit == 0 {
            if monotonic_clock::now() >= deadline {
                return Err(format!(
                    "could not send the object within {} s",
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

fn network(target: &Target, shown: &str, e: ErrorCode) -> Attempt {
    match e {
        // Retrying a denied request cannot help: the manifest or the host's policy must change.
        ErrorCode::HttpRequestDenied => Attempt::Failed(Failure::Unavailable(format!(
            "S3 sink: PUT {shown}: the host denied the request (under Spin: add the store's scheme://host to \
             allowed_outbound_hosts, the `s3_host` variable, and set dependencies_inherit_configuration = true)"
        ))),
        ErrorCode::HttpRequestUriInvalid => Attempt::Failed(Failure::Unavailable(format!(
            "S3 sink: PUT {shown}: the host calls the URL invalid; check `s3_endpoint_url` and `s3_bucket`"
        ))),
        other => Attempt::Retry { why: target.redact(&format!("PUT {shown}: {other:?}")) },
    }
}
