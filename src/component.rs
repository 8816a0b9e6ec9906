//! The component's exports: `collector` and `wasi:http/incoming-handler`.

use slack_logs_core::{
    oauth, run_pass, stream_statuses, Config, Env, Outcome, PassReport, RunOptions, StreamStatus,
};

use crate::routes::{self, Answer, Route};
use crate::wasi_env::{random_bytes, random_id, WasiClock, WasiKv, WasiSink, WasiTransport};

pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "collector-component",
        generate_all,
    });
}

use bindings::exports::slack_logs::collector::collector as wit;
use bindings::exports::wasi::http::incoming_handler;
use bindings::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Component;

bindings::export!(Component with_types_in bindings);

/// Config from `wasi:config/store`, parsed and validated.
fn config_pairs() -> Result<Vec<(String, String)>, String> {
    bindings::wasi::config::store::get_all()
        .map_err(|e| format!("could not read the configuration from the host: {e:?}"))
}

fn load_config() -> Result<Config, String> {
    Config::from_pairs(&config_pairs()?).map_err(|e| e.to_string())
}

/// Whether a request may use a route `collect_secret` guards. Fails closed: when the host
/// cannot give the configuration, nobody may; a mistake in another key does not open it.
fn may_use_guarded_route(auth: Option<&[u8]>, path: &str) -> bool {
    match config_pairs() {
        Ok(pairs) => routes::authorized(Config::collect_secret_of(&pairs).as_deref(), auth, path),
        Err(_) => false,
    }
}

fn log(line: &str) {
    eprintln!("slack-logs: {line}");
}

fn run_once(options: RunOptions) -> PassReport {
    let clock = WasiClock;
    let now = slack_logs_core::Clock::now_unix(&clock);
    let config = match load_config() {
        Ok(c) => c,
        Err(e) => return PassReport::not_started(&options, now, "config_error", &e),
    };
    let mut store = match WasiKv::open() {
        Ok(s) => s,
        Err(e) => return PassReport::not_started(&options, now, "store_error", &e.to_string()),
    };
    let mut env = Env {
        transport: &mut WasiTransport,
        store: &mut store,
        sink: &mut WasiSink,
        clock: &clock,
        log: &log,
        random: &random_id,
    };
    run_pass(&config, &mut env, &options)
}

fn statuses() -> Result<Vec<StreamStatus>, String> {
    let config = load_config()?;
    let mut store = WasiKv::open().map_err(|e| e.to_string())?;
    Ok(stream_statuses(
        &config,
        &mut store,
        slack_logs_core::Clock::now_unix(&WasiClock),
    ))
}

impl wit::Guest for Component {
    fn run(options: wit::RunOptions) -> wit::PassReport {
        let report = run_once(RunOptions {
            streams: options.streams,
            max_run_seconds: options.max_run_seconds,
        });
        wit::PassReport {
            started_at: report.started_at,
            duration_ms: report.duration_ms,
            streams: report
                .streams
                .into_iter()
                .map(|s| wit::StreamReport {
                    stream: s.stream,
                    team_id: s.team_id,
                    outcome: match s.outcome {
                        Outcome::CaughtUp => wit::Outcome::CaughtUp,
                        Outcome::BudgetExhausted => wit::Outcome::BudgetExhausted,
                        Outcome::Failed => wit::Outcome::Failed,
                        Outcome::NotAvailable => wit::Outcome::NotAvailable,
                        Outcome::HeldElsewhere => wit::Outcome::HeldElsewhere,
                    },
                    records: s.records,
                    pages: s.pages,
                    requests: s.requests,
                    retries: s.retries,
                    watermark: s.watermark,
                    lag_seconds: s.lag_seconds,
                    message: s.message,
                    error_code: s.error_code,
                })
                .collect(),
        }
    }

    fn status() -> Vec<wit::StreamStatus> {
        match statuses() {
            Ok(list) => list
                .into_iter()
                .map(|s| wit::StreamStatus {
                    healthy: s.healthy(),
                    stream: s.stream,
                    team_id: s.team_id,
                    watermark: s.watermark,
                    lag_seconds: s.lag_seconds,
                    last_success: s.last_success,
                    last_error_at: s.last_error_at,
                    last_error: s.last_error,
                    total_records: s.total_records,
                    late_events: s.stored.total_late_events,
                    silent_for_seconds: s.silent_for,
                })
                .collect(),
            Err(e) => vec![wit::StreamStatus {
                stream: "config".into(),
                team_id: None,
                watermark: None,
                lag_seconds: None,
                last_success: None,
                last_error_at: None,
                last_error: Some(e),
                total_records: 0,
                late_events: 0,
                healthy: false,
                silent_for_seconds: None,
            }],
        }
    }
}

impl incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = match request.method() {
            bindings::wasi::http::types::Method::Get => "GET".to_string(),
            bindings::wasi::http::types::Method::Post => "POST".to_string(),
            bindings::wasi::http::types::Method::Head => "HEAD".to_string(),
            bindings::wasi::http::types::Method::Other(m) => m,
            other => format!("{other:?}").to_uppercase(),
        };
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let auth = request.headers().get("authorization").into_iter().next();
        let answer = match routes::route(&method, &path) {
            Route::Health => match statuses() {
                Ok(s) => {
                    let (status, body) = routes::health_json(&s);
                    Answer::Json(status, body)
                }
                Err(e) => Answer::Json(503, serde_json::json!({"ok": false, "error": e})),
            },
            Route::Metrics => match statuses() {
                Ok(s) => Answer::Metrics(slack_logs_core::metrics::render(&s)),
                Err(e) => Answer::Json(503, serde_json::json!({"ok": false, "error": e})),
            },
            Route::StatusPage => {
                let now = slack_logs_core::Clock::now_unix(&WasiClock);
                match statuses() {
                    Ok(s) => Answer::StatusPage(200, crate::status_page::render(&s, now)),
                    Err(e) => Answer::StatusPage(503, crate::status_page::render_error(&e, now)),
                }
            }
            Route::Status => match statuses() {
                Ok(s) => {
                    let mut body = routes::status_json(&s);
                    if let Ok(mut store) = WasiKv::open() {
                        body["oauth"] = routes::oauth_status_json(oauth::installation(&mut store));
                    }
                    Answer::Json(200, body)
                }
                Err(e) => Answer::Json(503, serde_json::json!({"ok": false, "error": e})),
            },
            Route::Collect => {
                if !may_use_guarded_route(auth.as_deref(), &path) {
                    unauthorized()
                } else {
                    let report = run_once(RunOptions::default());
                    let status = if report.any_failed() { 500 } else { 200 };
                    Answer::Json(status, routes::report_json(&report))
                }
            }
            Route::OAuthStart => oauth_start(),
            Route::OAuthCallback => oauth_callback(&path),
            Route::OAuthRevoke => {
                if !may_use_guarded_route(auth.as_deref(), &path) {
                    unauthorized()
                } else {
                    match load_config() {
                        Ok(c) => oauth_revoke(&c),
                        Err(e) => Answer::Json(503, serde_json::json!({"ok": false, "error": e})),
                    }
                }
            }
            Route::WrongMethod(allowed) => Answer::Json(
                405,
                serde_json::json!({"ok": false, "error": format!("use {allowed} for this route")}),
            ),
            Route::NotFound => Answer::Json(
                404,
                serde_json::json!({"ok": false, "error": "not found; routes: GET / (status page), POST /collect, GET /status, GET /metrics, GET /healthz, GET /oauth/start, GET /oauth/callback, POST /oauth/revoke"}),
            ),
        };
        respond(out, &answer);
    }
}

fn unauthorized() -> Answer {
    Answer::Json(
        401,
        serde_json::json!({"ok": false, "error": "missing or wrong `Authorization: Bearer <collect_secret>` (or `?key=<collect_secret>`)"}),
    )
}

/// A config or store failure on a browser route: a page, since a person is looking at it.
fn setup_error_page(message: &str) -> Answer {
    Answer::Html(
        503,
        routes::html_page("Slack app not installed", &[message.to_string()]),
    )
}

/// The config and the store for a browser route, or the page that says why not.
fn browser_setup() -> Result<(Config, WasiKv), Answer> {
    let config = load_config().map_err(|e| setup_error_page(&e))?;
    let store = WasiKv::open().map_err(|e| setup_error_page(&e.to_string()))?;
    Ok((config, store))
}

fn oauth_start() -> Answer {
    let (config, mut store) = match browser_setup() {
        Ok(setup) => setup,
        Err(page) => return page,
    };
    let random = match random_bytes::<{ oauth::STATE_BYTES }>() {
        Ok(r) => r,
        Err(e) => return setup_error_page(&e),
    };
    let now = slack_logs_core::Clock::now_unix(&WasiClock);
    match oauth::start(&config, &mut store, now, random) {
        Ok(url) => Answer::Redirect(url),
        Err(e) => {
            log(&format!("/oauth/start: {e}"));
            routes::oauth_error_page(&e)
        }
    }
}

fn oauth_callback(path: &str) -> Answer {
    let (config, mut store) = match browser_setup() {
        Ok(setup) => setup,
        Err(page) => return page,
    };
    let nonce = match random_bytes::<{ oauth::NONCE_BYTES }>() {
        Ok(r) => r,
        Err(e) => return setup_error_page(&e),
    };
    let now = slack_logs_core::Clock::now_unix(&WasiClock);
    match oauth::callback(&config, &mut store, &mut WasiTransport, path, now, nonce) {
        Ok(installation) => {
            log(&format!(
                "OAuth install by {} with scopes {}: token stored encrypted",
                installation.user_id,
                installation.scopes.join(",")
            ));
            routes::oauth_installed_page(&installation)
        }
        Err(e) => {
            log(&format!("/oauth/callback: {e}"));
            routes::oauth_error_page(&e)
        }
    }
}

fn oauth_revoke(config: &Config) -> Answer {
    let mut store = match WasiKv::open() {
        Ok(s) => s,
        Err(e) => {
            return Answer::Json(
                503,
                serde_json::json!({"ok": false, "error": e.to_string()}),
            )
        }
    };
    let result = oauth::revoke(config, &mut store, &mut WasiTransport);
    match &result {
        Ok(_) => log("OAuth token revoked and removed"),
        Err(e) => log(&format!("/oauth/revoke: {e}")),
    }
    routes::revoke_json(&result)
}

fn respond(out: ResponseOutparam, answer: &Answer) {
    let headers: Vec<(String, Vec<u8>)> = answer
        .headers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_bytes()))
        .collect();
    let headers = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(answer.status());
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    let body = answer.body();
    if let Ok(stream) = outgoing.write() {
        // blocking-write-and-flush takes at most 4096 bytes a call.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
