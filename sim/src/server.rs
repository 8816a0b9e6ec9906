//! The HTTP server: one accept thread, one thread per connection, keep-alive.
//! Every request goes through `dispatch`, which applies faults and delays, routes,
//! turns a panic into a 500, and records the request.

use std::io::{BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::faults::Fault;
use crate::http::{self, ReadError, Request, Response};
use crate::respond::error_body;
use crate::state::{RecordedRequest, Sim};
use crate::{audit, lock, oauth, web_api};

/// Which API family a path belongs to: decides error spellings and statuses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Audit,
    Web,
}

impl Api {
    fn of(path: &str) -> Api {
        if path.starts_with("/audit/") {
            Api::Audit
        } else {
            Api::Web
        }
    }
}

pub(crate) enum Outcome {
    Respond(Response),
    Hang(Duration),
}

pub(crate) fn accept_loop(listener: TcpListener, sim: Arc<Sim>) {
    for conn in listener.incoming() {
        if sim.shutdown.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                let sim = Arc::clone(&sim);
                let spawned = std::thread::Builder::new()
                    .name("slack-sim-conn".into())
                    .spawn(move || {
                        // A panic here must never take the server down; the connection just ends.
                        let _ = catch_unwind(AssertUnwindSafe(|| serve_connection(stream, &sim)));
                    });
                if spawned.is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_connection(stream: TcpStream, sim: &Sim) {
    let id = sim.next_connection.fetch_add(1, Ordering::SeqCst);
    if let Ok(clone) = stream.try_clone() {
        lock(&sim.connections).insert(id, clone);
    }
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(300)));
    if let Ok(read_half) = stream.try_clone() {
        let mut reader = BufReader::new(read_half);
        let mut writer = BufWriter::with_capacity(64 * 1024, stream);
        serve_requests(&mut reader, &mut writer, sim);
    }
    lock(&sim.connections).remove(&id);
}

fn serve_requests(reader: &mut BufReader<TcpStream>, writer: &mut BufWriter<TcpStream>, sim: &Sim) {
    loop {
        if sim.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let mut req = match http::read_head(reader) {
            Ok(r) => r,
            Err(ReadError::Bad(why)) => return bad_request(writer, why),
            Err(ReadError::Closed | ReadError::Io) => return,
        };
        let expects_continue = req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects_continue
            && writer
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|_| writer.flush())
                .is_err()
        {
            return;
        }
        match http::read_body(reader, &mut req) {
            Ok(()) => {}
            Err(ReadError::Bad(why)) => return bad_request(writer, why),
            Err(_) => return,
        }
        let keep_alive = req.keep_alive();
        match dispatch(sim, &req) {
            Outcome::Respond(mut resp) => {
                // Slack's clock, as every answer of Slack's carries it (RFC 9110 §6.6.1).
                if !resp
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("date"))
                {
                    let at =
                        UNIX_EPOCH + Duration::from_secs(u64::try_from(sim.now()).unwrap_or(0));
                    resp.headers
                        .push(("Date".into(), httpdate::fmt_http_date(at)));
                }
                if http::write_response(writer, &resp, req.method == "HEAD", keep_alive).is_err()
                    || !keep_alive
                {
                    return;
                }
            }
            Outcome::Hang(d) => {
                sim.sleep(d);
                return;
            }
        }
    }
}

fn bad_request(writer: &mut impl Write, why: &str) {
    let resp = Response::json(400, error_body(&format!("bad_request: {why}")));
    let _ = http::write_response(writer, &resp, false, false);
}

fn redact(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            if k == "token" || k == "client_secret" {
                (k, "<redacted>".to_string())
            } else {
                (k, v)
            }
        })
        .collect()
}

pub(crate) fn dispatch(sim: &Sim, req: &Request) -> Outcome {
    let n = sim.request_count.fetch_add(1, Ordering::SeqCst) + 1;
    let fault = lock(&sim.faults).take(n);
    let delay = *lock(&sim.response_delay);
    if !delay.is_zero() {
        sim.sleep(delay);
    }
    let api = Api::of(&req.path);
    let outcome = match &fault {
        Some(Fault::Hang(d)) => Outcome::Hang(*d),
        Some(f) => Outcome::Respond(fault_response(sim, api, f)),
        None => Outcome::Respond(
            catch_unwind(AssertUnwindSafe(|| route(sim, req))).unwrap_or_else(|_| {
                let code = if api == Api::Audit {
                    "fatal_error"
                } else {
                    "internal_error"
                };
                Response::json(500, error_body(code))
            }),
        ),
    };
    let is_form = req.header("content-type").is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    lock(&sim.log).push(RecordedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        query: redact(http::parse_pairs(&req.query)),
        form: if is_form {
            redact(http::parse_pairs(&String::from_utf8_lossy(&req.body)))
        } else {
            Vec::new()
        },
        status: match &outcome {
            Outcome::Respond(r) => r.status,
            Outcome::Hang(_) => 0,
        },
        has_authorization: req.header("authorization").is_some(),
        fault,
    });
    outcome
}

fn route(sim: &Sim, req: &Request) -> Response {
    if let Some(endpoint) = req.path.strip_prefix("/audit/v1/") {
        return audit::handle(sim, req, endpoint);
    }
    if req.path.trim_end_matches('/') == "/oauth/v2/authorize" {
        return oauth::authorize(sim, req);
    }
    if let Some(method) = req.path.strip_prefix("/api/") {
        return web_api::handle(sim, req, method);
    }
    #[cfg(test)]
    if req.path == "/__panic" {
        panic!("deliberate test panic");
    }
    if req.path.starts_with("/audit/") {
        return Response::json(404, error_body("bad_endpoint"));
    }
    Response::json(404, error_body("unknown_method"))
}

fn fault_response(sim: &Sim, api: Api, fault: &Fault) -> Response {
    let web = api == Api::Web;
    match fault {
        Fault::RateLimited { retry_after } => {
            let resp = Response::json(429, error_body(if web { "ratelimited" } else { "rate_limited" }));
            match retry_after {
                Some(v) => resp.with_header("Retry-After", v),
                None => resp,
            }
        }
        Fault::ServerError(status) => {
            let code = if *status == 503 { "service_unavailable" } else { "internal_error" };
            Response::json(*status, error_body(code))
        }
        Fault::FatalError => Response::json(if web { sim.config.web_fatal_error_status } else { 500 }, error_body("fatal_error")),
        Fault::InvalidCursor => Response::json(if web { 200 } else { 400 }, error_body("invalid_cursor")),
        Fault::MalformedBody => {
            let body = if web { "{\"ok\":true,\"logins\":[{\"user_id\":\"W0" } else { "{\"entries\":[{\"id\":\"0123a45b-6c7d" };
            Response::json(200, body.to_string())
        }
        Fault::HtmlErrorPage => Response {
            status: 502,
            content_type: "text/html".to_string(),
            headers: Vec::new(),
            body: b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n".to_vec(),
        },
        Fault::Raw { status, content_type, headers, body } => Response {
            status: *status,
            content_type: content_type.clone().unwrap_or_else(|| http::JSON.to_string()),
            headers: headers.clone(),
            body: body.clone().into_bytes(),
        },
        Fault::Hang(_) => Response::json(500, error_body("internal_error")),
    }
}
