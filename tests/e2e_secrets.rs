//! Secrets never leak: the Slack tokens, the `collect_secret` and the sink token must not appear
//! in any byte the host writes — stdout, stderr, records, HTTP answers, the sink's error
//! messages, `status`, and the state file — in any failure mode we can reach: invalid, revoked,
//! expired and under-scoped tokens, a workspace token on the org-only audit API, Slack 5xx and
//! 429 storms, malformed and HTML bodies, a body that echoes the request's token, a refusing
//! sink that echoes its token, bad config values (in the environment and in a TOML file), and a
//! checkpoint that does not parse; plus `serve`'s `/status`, `/healthz` and `/collect`; and the
//! password of a Redis state over TLS (`rediss://`), when it works and when it is wrong, the
//! server's certificate is not trusted or the server is gone.
//!
//! Every secret carries the same mark and a unique tail, and every output goes through one check
//! (`assert_no_secret`), which looks for the mark case-insensitively (a cut or case-folded token
//! still carries it) and for each tail. `the_leak_check_catches_planted_secrets` proves that check
//! fails on a planted token, so the tests below can fail.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use slack_sim::{Fault, InstallLevel, Plan, Role, SimConfig, Simulator, TokenKind, TokenSpec};

/// In every secret, so a partial leak (a token cut at some length) is still found.
const MARK: &str = "LeakCanary";
const VALID: &str = "xoxp-1-LeakCanary-valid-Kq7Zw2Rf";
const REVOKED: &str = "xoxp-1-LeakCanary-revoked-Vb3Xn8Tm";
const EXPIRED: &str = "xoxp-1-LeakCanary-expired-Hd5Jp1Yc";
const NO_SCOPE: &str = "xoxp-1-LeakCanary-noscope-Wg4Ls9Qe";
/// A workspace-level admin install: fine for team.*, refused by the org-only audit API.
const WORKSPACE: &str = "xoxp-1-LeakCanary-workspace-Pn6Dk2Ua";
/// Known to nobody.
const UNKNOWN: &str = "xoxp-1-LeakCanary-unknown-Mz8Fr4Ei";
const COLLECT_SECRET: &str = "LeakCanary-collect-Tc2Wq7Ob";
const SINK_TOKEN: &str = "LeakCanary-sink-Yx5Gv3Nh";
/// The Redis ACL user's password in a `rediss://` state URL, and a wrong one.
const REDIS_PASSWORD: &str = "LeakCanary-redis-Qp4Zt8Vm";
const WRONG_REDIS_PASSWORD: &str = "LeakCanary-redis-wrong-Hx7Lm2Bq";
/// The S3 sink's secret access key and session token (`AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`; `s3_secret_access_key`, `s3_session_token`), with the characters AWS's
/// keys and tokens have (`/`, `+`, `=`), so that a URL-encoded echo is tried too.
const S3_SECRET_KEY: &str = "LeakCanary-s3secret/Jm4Rt+Ws9Pq";
const S3_SESSION_TOKEN: &str = "LeakCanary-s3token/Fz8Lk+Dh2==";

const SECRETS: &[&str] = &[
    VALID,
    REVOKED,
    EXPIRED,
    NO_SCOPE,
    WORKSPACE,
    UNKNOWN,
    COLLECT_SECRET,
    SINK_TOKEN,
    REDIS_PASSWORD,
    WRONG_REDIS_PASSWORD,
    S3_SECRET_KEY,
    S3_SESSION_TOKEN,
];

/// The one check every output goes through. `what` says where the bytes came from.
#[track_caller]
fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    // ASCII case folding keeps byte offsets, so the context below is cut from the original text.
    let lower = text.to_ascii_lowercase();
    let mut needles: Vec<(String, &str)> = vec![(MARK.to_ascii_lowercase(), "the secrets' mark")];
    // The unique tail of each secret, in case only the end of one is shown.
    for s in SECRETS {
        let tail = s.rsplit('-').next().unwrap();
        needles.push((tail.to_ascii_lowercase(), s));
    }
    for (needle, which) in &needles {
        if let Some(at) = lower.find(needle.as_str()) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(80)
                .map_or(0, |(i, _)| i);
            let to = text[at..]
                .char_indices()
                .nth(120)
                .map_or(text.len(), |(i, _)| at + i);
            panic!(
                "a secret ({which}) leaked into {what}:\n…{}…",
                &text[from..to]
            );
        }
    }
}

fn check_output(what: &str, out: &Output) {
    assert_no_secret(&format!("{what}: stdout"), &out.stdout);
    assert_no_secret(&format!("{what}: stderr"), &out.stderr);
}

/// The state file (SQLite, with its WAL) holds checkpoints and the status of each stream: none
/// of it may hold a secret configured through the environment. `status` and `status --json`
/// show the stored status values.
fn check_state(what: &str, dir: &Scratch, settings: &[(&str, String)]) {
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        if let Ok(bytes) = std::fs::read(dir.path(f)) {
            assert_no_secret(&format!("{what}: {f}"), &bytes);
        }
    }
    if let Ok(bytes) = std::fs::read(dir.path("out.ndjson")) {
        assert_no_secret(&format!("{what}: the records file"), &bytes);
    }
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = host(dir, settings).args(args).output().expect("status");
        check_output(&format!("{what}: slack-logs {}", args.join(" ")), &out);
        assert!(
            out.status.success(),
            "{what}: status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One pass; every byte it printed is checked. Returns stderr, to check the failure was reached.
fn pass(what: &str, cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.args(["run", "--once"]).output().expect("start host");
    check_output(what, &out);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The token spec of the simulator's org owner, for canary tokens.
fn org_owner() -> TokenSpec {
    TokenSpec {
        kind: TokenKind::User,
        scopes: vec!["auditlogs:read".into(), "admin".into()],
        level: InstallLevel::Org,
        team_id: slack_sim::ENTERPRISE_ID.into(),
        plan: Plan::Enterprise,
        role: Role::Owner,
        granted_teams: slack_sim::WORKSPACE_IDS[..2]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        revoked: false,
        expired: false,
    }
}

/// A simulator that knows the canary tokens (everything but UNKNOWN).
fn sim() -> (Simulator, i64) {
    let now = now();
    let start = now - 2 * 3600;
    let sim = Simulator::start(SimConfig {
        seed: 5,
        audit_events: 30,
        access_rows: 20,
        integration_entries: 10,
        history_start: start,
        history_end: now - 300,
        ..SimConfig::default()
    })
    .expect("start simulator");
    sim.add_token(VALID, org_owner());
    sim.add_token(
        REVOKED,
        TokenSpec {
            revoked: true,
            ..org_owner()
        },
    );
    sim.add_token(
        EXPIRED,
        TokenSpec {
            expired: true,
            ..org_owner()
        },
    );
    sim.add_token(
        NO_SCOPE,
        TokenSpec {
            scopes: vec!["users:read".into()],
            ..org_owner()
        },
    );
    sim.add_token(
        WORKSPACE,
        TokenSpec {
            scopes: vec!["admin".into()],
            level: InstallLevel::Workspace,
            team_id: slack_sim::WORKSPACE_IDS[0].into(),
            role: Role::Admin,
            granted_teams: vec![slack_sim::WORKSPACE_IDS[0].into()],
            ..org_owner()
        },
    );
    (sim, start)
}

/// All three streams against the simulator, with `token`, the collect secret and the sink token.
fn settings(sim: &Simulator, start: i64, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("slack_token", token.to_string()),
        ("slack_api_base", sim.api_base()),
        ("slack_audit_base", sim.audit_base()),
        ("streams", "audit,access,integration".into()),
        ("backfill_start_time", start.to_string()),
        ("audit_lag_seconds", "2".into()),
        ("audit_page_size", "10".into()),
        ("access_page_size", "10".into()),
        ("integration_page_size", "5".into()),
        ("audit_requests_per_minute", "0".into()),
        ("web_requests_per_minute", "0".into()),
        // Short, so that a storm ends the pass at its budget rather than after every backoff.
        ("max_run_seconds", "4".into()),
        ("request_timeout_seconds", "2".into()),
        ("collect_secret", COLLECT_SECRET.into()),
        ("sink_token", SINK_TOKEN.into()),
    ]
}

// ------------------------------------------------------------------ the check itself

/// The check must fail on a leak, or every test below would pass however much leaked: a token
/// in full, cut short, case-folded, only its tail, and inside JSON.
#[test]
fn the_leak_check_catches_planted_secrets() {
    let planted = [
        format!("error: Slack answered for token {VALID}"),
        format!("…Bearer {}", &SINK_TOKEN[..14]),
        COLLECT_SECRET.to_uppercase(),
        format!("key ends {}", UNKNOWN.rsplit('-').next().unwrap()),
        serde_json::json!({ "last_error": format!("bad {REVOKED}") }).to_string(),
    ];
    for p in &planted {
        let caught = std::panic::catch_unwind(|| assert_no_secret("a planted line", p.as_bytes()));
        assert!(
            caught.is_err(),
            "the check missed a planted secret in {p:?}"
        );
    }
    // And it does not cry wolf on ordinary output.
    assert_no_secret(
        "clean output",
        b"audit caught-up records=12 error=invalid_auth xoxp-\xff",
    );
}

// ------------------------------------------------------------------ tokens Slack refuses

#[test]
fn refused_tokens_stay_out_of_logs_status_and_state() {
    let (sim, start) = sim();
    // (token, what Slack answers for it, which the report must show, so we know we got there)
    let cases = [
        (UNKNOWN, "invalid_auth"),
        (REVOKED, "token_revoked"),
        (EXPIRED, "token_expired"),
        (NO_SCOPE, "missing_scope"),
        (WORKSPACE, "team_not_authorized"),
    ];
    for (token, code) in cases {
        let dir = Scratch::new(&format!("secrets-{code}"));
        let s = settings(&sim, start, token);
        let (status, stderr) = pass(code, &mut host(&dir, &s));
        assert_eq!(
            status,
            Some(2),
            "{code}: a refused token fails the pass:\n{stderr}"
        );
        assert!(
            stderr.contains(code),
            "{code}: the failure was reached:\n{stderr}"
        );
        check_state(code, &dir, &s);
    }
}

// ------------------------------------------------------------------ Slack misbehaving

#[test]
fn slack_storms_and_bad_bodies_do_not_leak_tokens() {
    let (sim, start) = sim();
    let echo = format!("request refused by proxy: Authorization: Bearer {VALID}");
    let cases: Vec<(&str, Fault, &str)> = vec![
        ("5xx storm", Fault::ServerError(503), "service_unavailable"),
        (
            "429 storm",
            Fault::RateLimited {
                retry_after: Some("1".into()),
            },
            "rate",
        ),
        ("truncated JSON", Fault::MalformedBody, "malformed_response"),
        ("HTML page", Fault::HtmlErrorPage, "502"),
        (
            // A proxy that echoes the request's token in a plain-text error page.
            "echoed token, 403",
            Fault::Raw {
                status: 403,
                content_type: Some("text/plain".into()),
                headers: Vec::new(),
                body: echo.clone(),
            },
            "malformed_response",
        ),
        (
            "echoed token, 200",
            Fault::Raw {
                status: 200,
                content_type: Some("text/plain".into()),
                headers: Vec::new(),
                body: echo.clone(),
            },
            "malformed_response",
        ),
        (
            "echoed token as the error code",
            Fault::Raw {
                status: 200,
                content_type: None,
                headers: Vec::new(),
                body: format!(r#"{{"ok":false,"error":"{VALID}"}}"#),
            },
            "error=",
        ),
    ];
    for (what, fault, expect) in cases {
        let dir = Scratch::new("secrets-slack");
        let s = settings(&sim, start, VALID);
        sim.fail_every(1, fault);
        let (_, stderr) = pass(what, &mut host(&dir, &s));
        sim.clear_faults();
        assert!(
            stderr.contains(expect),
            "{what}: the failure was reached ({expect}):\n{stderr}"
        );
        check_state(what, &dir, &s);
    }
}

#[test]
fn a_good_pass_and_its_records_hold_no_secret() {
    let (sim, start) = sim();
    let dir = Scratch::new("secrets-good");
    let mut s = settings(&sim, start, VALID);
    s.retain(|(k, _)| *k != "max_run_seconds" && *k != "request_timeout_seconds");
    let (status, stderr) = pass("a good pass", host(&dir, &s).arg("-v"));
    assert_eq!(status, Some(0), "{stderr}");
    let records = std::fs::read(dir.path("out.ndjson")).unwrap();
    assert!(records.len() > 100, "the pass delivered records");
    check_state("a good pass", &dir, &s);
}

// ------------------------------------------------------------------ the sink

/// A sink endpoint that answers 401 and echoes the Authorization header it got, as some do.
fn echoing_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/ingest",
        listener.local_addr().unwrap().port()
    );
    let auth = Arc::new(Mutex::new(Vec::new()));
    let seen = auth.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut len, mut authorization) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    authorization = line["authorization:".len()..].trim().to_string();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let text = format!("invalid credentials: {authorization}");
            seen.lock().unwrap().push(authorization);
            let _ = conn.write_all(
                format!("HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len()).as_bytes(),
            );
        }
    });
    (url, auth)
}

#[test]
fn a_refusing_sink_that_echoes_its_token_does_not_leak_it() {
    let (sim, start) = sim();
    let dir = Scratch::new("secrets-sink");
    let s = settings(&sim, start, VALID);
    let (url, auth) = echoing_sink();
    let (status, stderr) = pass(
        "a refusing sink",
        host(&dir, &s).arg("--sink").arg(format!("http:{url}")),
    );
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("sink_rejected") && stderr.contains("401"),
        "the refusal was reached:\n{stderr}"
    );
    assert!(
        auth.lock()
            .unwrap()
            .iter()
            .any(|a| a == &format!("Bearer {SINK_TOKEN}")),
        "the sink got the token, so its echo could have leaked it: {:?}",
        auth.lock().unwrap()
    );
    check_state("a refusing sink", &dir, &s);
}

// ------------------------------------------------------------------ config and state

#[test]
fn bad_config_values_and_files_do_not_echo_secrets() {
    let (sim, start) = sim();
    let base = settings(&sim, start, VALID);
    let with = |key: &'static str, value: String| {
        let mut s = base.clone();
        s.retain(|(k, _)| *k != key);
        s.push((key, value));
        s
    };
    let cases = [
        (
            "a token with a space",
            with("slack_token", format!("{VALID} x")),
            "slack_token",
        ),
        (
            "an audit token with a control character",
            with("audit_token", format!("{REVOKED}\u{7}")),
            "audit_token",
        ),
        (
            "a token that is not a Slack token",
            with("slack_token", format!("Bearer {VALID}")),
            "slack_token",
        ),
        // An unknown key in the same config: the error lists keys, never values.
        (
            "an unknown key beside the secrets",
            with("slack_tokn", VALID.to_string()),
            "slack_tokn",
        ),
    ];
    for (what, s, key) in cases {
        let dir = Scratch::new("secrets-config");
        let (status, stderr) = pass(what, &mut host(&dir, &s));
        assert_eq!(status, Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains(key),
            "{what}: the error names the key:\n{stderr}"
        );
        check_state(what, &dir, &s);
    }

    // TOML files: a parse error or a nested table must not quote the line holding the token.
    let files = [
        (
            "an unterminated string",
            format!("slack_token = \"{VALID}\n"),
        ),
        ("a nested table", format!("[slack]\ntoken = \"{VALID}\"\n")),
        ("an array", format!("slack_token = [\"{VALID}\"]\n")),
        ("a bare value", format!("slack_token = {VALID}\n")),
    ];
    for (what, text) in files {
        let dir = Scratch::new("secrets-toml");
        std::fs::write(dir.path("config.toml"), text).unwrap();
        let out = host(&dir, &[])
            .arg("--config")
            .arg(dir.path("config.toml"))
            .args(["run", "--once"])
            .output()
            .unwrap();
        check_output(&format!("config file with {what}"), &out);
        assert!(!out.status.success(), "{what}: the file is refused");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("config.toml"),
            "{what}: the error names the file"
        );
    }
}

/// Overwrites every checkpoint in the state file with bytes that do not parse.
fn corrupt_checkpoints(state: &Path) -> usize {
    let db = rusqlite::Connection::open(state).unwrap();
    db.execute("UPDATE kv SET value = CAST('{\"v\":1,\"watermark\":\"soon\"' AS BLOB) WHERE key LIKE '%/checkpoint'", [])
        .unwrap()
}

#[test]
fn an_unreadable_checkpoint_does_not_leak_tokens() {
    let (sim, start) = sim();
    let dir = Scratch::new("secrets-checkpoint");
    let mut s = settings(&sim, start, VALID);
    s.retain(|(k, _)| *k != "max_run_seconds" && *k != "request_timeout_seconds");
    let (status, stderr) = pass("a first pass", &mut host(&dir, &s));
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        corrupt_checkpoints(&dir.path("state.db")) >= 3,
        "a checkpoint per stream was corrupted"
    );
    let (status, stderr) = pass("unreadable checkpoints", &mut host(&dir, &s));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("checkpoint_unreadable"),
        "the failure was reached:\n{stderr}"
    );
    check_state("unreadable checkpoints", &dir, &s);
}

// ------------------------------------------------------------------ serve

#[test]
fn serve_routes_answer_without_secrets() {
    let (sim, start) = sim();
    let dir = Scratch::new("secrets-serve");
    let s = settings(&sim, start, VALID);
    let port = free_port();
    let mut server = KillOnDrop(
        host(&dir, &s)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(60, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "serve did not listen"
    );
    let bearer = format!("Bearer {COLLECT_SECRET}");
    let requests: [(&str, String, Option<&str>, u16); 7] = [
        ("GET", "/healthz".into(), None, 200),
        ("GET", "/status".into(), None, 200),
        ("POST", "/collect".into(), None, 401),
        ("POST", "/collect".into(), Some("Bearer LeakCanaryNot"), 401),
        ("POST", "/collect".into(), Some(&bearer), 200),
        ("GET", format!("/collect?key={COLLECT_SECRET}"), None, 200),
        ("GET", "/status".into(), None, 200),
    ];
    for (method, path, auth, want) in &requests {
        let (status, body) = http(port, method, path, *auth);
        let what = format!(
            "{method} /{} (the answer body)",
            path.trim_start_matches('/').split('?').next().unwrap()
        );
        // The wrong bearer we sent carries the mark; the answer must not echo it either.
        assert_no_secret(&what, body.as_bytes());
        assert_eq!(status, *want, "{what}: {body}");
    }
    // /healthz with a bad token explains the config error without the token.
    let mut bad = s.clone();
    bad.retain(|(k, _)| *k != "slack_token");
    bad.push(("slack_token", format!("{VALID} x")));
    let port2 = free_port();
    let mut server2 = KillOnDrop(
        host(&dir, &bad)
            .args(["serve", "--listen", &format!("127.0.0.1:{port2}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(60, || TcpStream::connect(("127.0.0.1", port2)).is_ok()),
        "serve did not listen"
    );
    let (status, body) = http(port2, "GET", "/healthz", None);
    assert_no_secret("GET /healthz with a bad token", body.as_bytes());
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("slack_token"),
        "the reason names the key: {body}"
    );

    // Everything the servers printed.
    for (name, child) in [
        ("serve", &mut server.0),
        ("serve with a bad token", &mut server2.0),
    ] {
        child.kill().unwrap();
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        child.stderr.take().unwrap().read_to_end(&mut out).unwrap();
        child.wait().unwrap();
        assert_no_secret(&format!("{name}: its output"), &out);
    }
    check_state("serve", &dir, &s);
}

/// The password of a `rediss://` state (an ACL user, TLS with a CA made for the test) stays out of
/// every output: a pass, `-v` debug lines, `status`, `reset`, and the errors of a wrong password,
/// an untrusted certificate and a server that is gone. (It is never written anywhere: the store
/// holds only what the component writes.)
#[test]
fn the_redis_password_under_tls_stays_out_of_every_output() {
    let Some(redis) = TlsRedis::start("collector", REDIS_PASSWORD) else {
        return;
    };
    let (sim, start) = sim();
    let dir = Scratch::new("secrets-redis-tls");
    let settings = settings(&sim, start, VALID);
    let state = redis.url("collector", REDIS_PASSWORD, 0);
    let ca = redis.ca();
    let run = |what: &str, state: &str, trust: bool, args: &[&str]| -> Output {
        let mut cmd = host_with_state(&dir, state, "out.ndjson", &settings);
        if trust {
            cmd.env("SSL_CERT_FILE", &ca);
        } else {
            cmd.env_remove("SSL_CERT_FILE");
        }
        let out = cmd.args(args).output().expect("start host");
        check_output(what, &out);
        out
    };

    let out = run(
        "a pass on Redis over TLS",
        &state,
        true,
        &["-v", "run", "--once"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rediss://collector:***@"),
        "the -v line names the state masked"
    );
    for args in [
        &["status"][..],
        &["status", "--json"][..],
        &["reset", "audit", "--yes"][..],
    ] {
        let out = run(
            &format!("slack-logs {}", args.join(" ")),
            &state,
            true,
            args,
        );
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Ok(bytes) = std::fs::read(dir.path("out.ndjson")) {
        assert_no_secret("the records file", &bytes);
    }

    let wrong = redis.url("collector", WRONG_REDIS_PASSWORD, 0);
    let out = run("a wrong Redis password", &wrong, true, &["run", "--once"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        "an untrusted Redis certificate",
        &state,
        false,
        &["run", "--once"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SSL_CERT_FILE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        "clear text to the TLS port",
        &state.replacen("rediss://", "redis://", 1),
        true,
        &["run", "--once"],
    );
    assert_eq!(out.status.code(), Some(1));
    let port = redis.server.port;
    drop(redis);
    let out = run("Redis gone", &state, false, &["reset", "audit", "--yes"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("localhost:{port}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------ the S3 sink

/// An S3 store that refuses every PUT (first `SlowDown`, so the retry's warning line is checked
/// too, then `SignatureDoesNotMatch`) and echoes the whole request in its error document: the
/// target with its query string (the signature and `X-Amz-Security-Token`), raw and as S3 would
/// quote it, and every header. Returns its endpoint and the request targets it saw.
fn echoing_s3() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut len, mut head) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let decoded: String = url_decode(&target);
            let n = {
                let mut t = seen.lock().unwrap();
                t.push(target.clone());
                t.len()
            };
            let (status, code) = if n == 1 {
                (503, "SlowDown")
            } else {
                (403, "SignatureDoesNotMatch")
            };
            // The token first, so that the message's cut to 200 characters keeps it.
            let token = target
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("X-Amz-Security-Token="))
                .unwrap_or("");
            let text = format!(
                "<Error><Code>{code}</Code><Message>token {} ({token}) in {decoded} with {}</Message><CanonicalRequest>{target}</CanonicalRequest></Error>",
                url_decode(token),
                head.replace("\r\n", " ")
            );
            let _ = conn.write_all(
                format!("HTTP/1.1 {status} X\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len()).as_bytes(),
            );
        }
    });
    (endpoint, targets)
}

fn url_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The host's `--sink s3://…` with the canary secret key and session token in AWS's variables.
fn s3_host(dir: &Scratch, s: &[(&str, String)], endpoint: &str, secret: &str) -> Command {
    let mut cmd = host(dir, s);
    cmd.arg("--sink").arg("s3://canary-bucket/slack");
    aws_env(&mut cmd, endpoint, secret);
    cmd.env("AWS_SESSION_TOKEN", S3_SESSION_TOKEN);
    cmd
}

/// The S3 sink's secret key and session token stay out of every output: a store that echoes the
/// request (query string and headers) in its errors, retried and refused; a real store (s3s-fs,
/// which checks signatures) refusing a wrong secret key; and a good pass with `-v`.
#[test]
fn s3_credentials_stay_out_of_every_output() {
    let (sim, start) = sim();
    let s = settings(&sim, start, VALID);

    let dir = Scratch::new("secrets-s3-echo");
    let (endpoint, targets) = echoing_s3();
    let (status, stderr) = pass(
        "an S3 store that echoes the request",
        &mut s3_host(&dir, &s, &endpoint, S3_SECRET_KEY),
    );
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("SlowDown")
            && stderr.contains("SignatureDoesNotMatch")
            && stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "the refusal was reached:\n{stderr}"
    );
    let targets = targets.lock().unwrap().clone();
    assert!(
        targets.iter().any(
            |t| t.contains("X-Amz-Security-Token=") && url_decode(t).contains(S3_SESSION_TOKEN)
        ),
        "the store got the session token, so its echo could have leaked it: {targets:?}"
    );
    check_state("an S3 store that echoes the request", &dir, &s);

    let dir = Scratch::new("secrets-s3-real");
    let Some(server) = S3Server::start_with_secret(&dir.path("s3"), "canary-bucket", S3_SECRET_KEY)
    else {
        return;
    };
    let wrong = format!("{S3_SECRET_KEY}-wrong");
    let (status, stderr) = pass(
        "a wrong S3 secret key",
        &mut s3_host(&dir, &s, &server.endpoint(), &wrong),
    );
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    let (status, stderr) = pass(
        "a good pass into S3",
        s3_host(&dir, &s, &server.endpoint(), S3_SECRET_KEY).arg("-v"),
    );
    assert_eq!(status, Some(0), "{stderr}");
    let objects = server.objects("canary-bucket");
    assert!(!objects.is_empty(), "the records were stored");
    for (key, records) in s3_records(&server, "canary-bucket") {
        assert_no_secret(
            &format!("the object {key}"),
            serde_json::to_string(&records).unwrap().as_bytes(),
        );
    }
    check_state("a pass into S3", &dir, &s);
}
