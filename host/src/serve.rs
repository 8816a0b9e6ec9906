//! `slack-logs serve`: the component's `wasi:http/incoming-handler` over
//! HTTP/1.1, one fresh instance per request, as Spin's HTTP trigger runs it.
//! Routing, auth and responses are the component's; the host only carries
//! the full request (method, path and query, headers, body) in and the
//! response out.

use crate::pass_lock::{Busy, LockError, PassLock};
use crate::runtime::{wt, Runtime};
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use slack_logs_collector::routes::Route;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

/// What a listener lets through to the component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// Every route (`slack-logs serve`).
    All,
    /// `GET /metrics`, `/status`, `/healthz` and the status page `/` only (`run --every
    /// --listen`): passes run on the schedule, not on request.
    ReadOnly,
}

impl Routes {
    /// By the component's own routing, so this listener and the component agree on what a path is
    /// (the status page is any path ending in `/`, under any prefix).
    fn allows(self, method: &hyper::Method, path: &str) -> bool {
        self == Routes::All
            || matches!(
                slack_logs_collector::routes::route(method.as_str(), path),
                Route::Metrics | Route::Status | Route::Health | Route::StatusPage
            )
    }
}

pub async fn serve(rt: Arc<Runtime>, addr: SocketAddr, routes: Routes) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr}; is another process using it? choose one with --listen ADDR"
        )
    })?;
    let local = listener.local_addr()?;
    if routes == Routes::All {
        crate::log_info!(
            "listening on http://{local}  (GET / status page, POST /collect, GET /status, GET /metrics, GET /healthz, GET /oauth/start; Ctrl-C stops)"
        );
        crate::log_info!("records go to {}", rt.sink().describe());
    } else {
        crate::log_info!("listening on http://{local}  (GET / status page, GET /metrics, GET /status, GET /healthz)");
    }
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (client, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // E.g. out of file descriptors: keep serving the open connections.
                    crate::log_warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let rt = rt.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let rt = rt.clone();
                async move { Ok::<_, Infallible>(handle(rt, req, routes).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(client), service)
                .await
            {
                crate::log_debug!("connection from {peer}: {e}");
            }
        });
    }
    crate::log_info!("stopped");
    Ok(())
}

async fn handle(
    rt: Arc<Runtime>,
    req: hyper::Request<hyper::body::Incoming>,
    routes: Routes,
) -> hyper::Response<HyperOutgoingBody> {
    let started = Instant::now();
    // Path only: a query string may carry a secret.
    let line = format!("{} {}", req.method(), req.uri().path());
    if !routes.allows(req.method(), req.uri().path()) {
        return text_response(
            404,
            "this listener (run --every --listen) serves GET / (the status page), /metrics, /status and /healthz; passes run on the schedule\n",
        );
    }
    // A request that runs a pass holds the pass guard for as long as the component handles it
    // (with a SQLite state: the state file's lock; see pass_lock.rs).
    let guard = if runs_a_pass(req.method(), req.uri()) {
        match rt.guard_pass() {
            Ok(guard) => guard,
            Err(LockError::Busy(busy)) => {
                crate::log_info!("{line} -> 503: {busy}");
                return busy_response(&busy);
            }
            Err(e) => {
                crate::log_warn!("{line}: {e}");
                return text_response(500, "internal error in the collector host; see its log\n");
            }
        }
    } else {
        None
    };
    let resp = match call_component(rt, req, guard).await {
        Ok(resp) => resp,
        Err(e) => {
            crate::log_warn!("{line}: {e:#}");
            text_response(500, "internal error in the collector host; see its log\n")
        }
    };
    crate::log_info!(
        "{line} -> {} ({} ms)",
        resp.status().as_u16(),
        started.elapsed().as_millis()
    );
    resp
}

/// Whether the component runs a pass for this request (`/collect`), by its own routing.
fn runs_a_pass(method: &hyper::Method, uri: &hyper::Uri) -> bool {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    slack_logs_collector::routes::route(method.as_str(), path) == Route::Collect
}

/// Seconds a caller is asked to wait before trying `/collect` again while another pass runs.
const BUSY_RETRY_AFTER_SECONDS: u32 = 10;

/// `503` with `Retry-After`, in the JSON shape of the component's `/collect` answer.
fn busy_response(busy: &Busy) -> hyper::Response<HyperOutgoingBody> {
    let body = serde_json::json!({
        "ok": false,
        "error": format!("{busy}; this request ran no pass (that one collects the same streams)"),
    });
    let body = Full::new(Bytes::from(body.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    headers.insert(hyper::header::RETRY_AFTER, BUSY_RETRY_AFTER_SECONDS.into());
    resp
}

async fn call_component(
    rt: Arc<Runtime>,
    req: hyper::Request<hyper::body::Incoming>,
    guard: Option<PassLock>,
) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
    let mut store = rt.new_store();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .map_err(wt)?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(wt)?;
    let pre = rt.pre().clone();
    // A task of its own: the guest may keep streaming the body after it has
    // set the response head.
    let task = tokio::spawn(async move {
        // Released when the guest is done, not when the response head is out.
        let _guard = guard;
        let instance = pre.instantiate_async(&mut store).await?;
        instance
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
    });
    match receiver.await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(code)) => anyhow::bail!("the component answered with error code {code:?}"),
        // The sender is dropped with the store: the guest returned or trapped
        // without setting a response.
        Err(_) => match task.await {
            Ok(Ok(())) => anyhow::bail!("the component returned without setting a response"),
            Ok(Err(e)) => Err(wt(e).context("the component trapped while handling the request")),
            Err(e) => Err(anyhow::Error::from(e).context("the request task failed")),
        },
    }
}

fn text_response(status: u16, text: &'static str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_only_listener_serves_the_status_page_and_runs_no_pass() {
        let get = hyper::Method::GET;
        for path in ["/", "/slack-logs/", "/status", "/metrics", "/healthz/"] {
            assert!(Routes::ReadOnly.allows(&get, path), "{path}");
        }
        assert!(Routes::ReadOnly.allows(&hyper::Method::HEAD, "/"));
        assert!(!Routes::ReadOnly.allows(&hyper::Method::POST, "/"));
        assert!(!Routes::ReadOnly.allows(&hyper::Method::POST, "/status"));
        for path in ["/collect", "/oauth/start", "/oauth/callback", "/statusx"] {
            assert!(!Routes::ReadOnly.allows(&get, path), "{path}");
        }
        assert!(Routes::All.allows(&hyper::Method::POST, "/collect"));
    }
}
