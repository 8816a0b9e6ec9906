//! `slack-logs serve`: the component's `wasi:http/incoming-handler` over
//! HTTP/1.1, one fresh instance per request, as Spin's HTTP trigger runs it.
//! Routing, auth and responses are the component's; the host only carries
//! the full request (method, path and query, headers, body) in and the
//! response out.

use crate::runtime::{wt, Runtime};
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
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
    /// `GET /metrics`, `/status` and `/healthz` only (`run --every --listen`): passes run on
    /// the schedule, not on request.
    ReadOnly,
}

impl Routes {
    fn allows(self, method: &hyper::Method, path: &str) -> bool {
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        self == Routes::All
            || ((method == hyper::Method::GET || method == hyper::Method::HEAD)
                && matches!(last, "metrics" | "status" | "healthz"))
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
            "listening on http://{local}  (POST /collect, GET /status, GET /metrics, GET /healthz, GET /oauth/start; Ctrl-C stops)"
        );
        crate::log_info!("records go to {}", rt.sink().describe());
    } else {
        crate::log_info!("listening on http://{local}  (GET /metrics, GET /status, GET /healthz)");
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
            "this listener (run --every --listen) serves GET /metrics, /status and /healthz; passes run on the schedule\n",
        );
    }
    let resp = match call_component(rt, req).await {
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

async fn call_component(
    rt: Arc<Runtime>,
    req: hyper::Request<hyper::body::Incoming>,
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
