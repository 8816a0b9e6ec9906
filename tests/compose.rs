//! The collector composed with a sink component the way Spin composes a
//! `[component.collector.dependencies]` entry (spin-compose, on wac-graph): the sink's export
//! plugs the collector's `sink` import, the collector's exports are re-exported, and the result is
//! one component. Each composition is run in our host with `--sink none` against the simulator and
//! must deliver the same records as the uncomposed collector; and its imports must be ones Spin's
//! platform provides. The Spin CLI itself is not available to the test suite.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use slack_sim::{SimConfig, Simulator};
use wac_graph::types::{Package, SubtypeChecker};
use wac_graph::{CompositionGraph, EncodeOptions};

/// The dependency key in spin.toml: Spin matches it against import names without the version.
const SINK_IMPORT: &str = "slack-logs:collector/sink";

fn sink_wasm(file: &str) -> PathBuf {
    let p = component().with_file_name(file);
    assert!(
        p.exists(),
        "{} is missing: `cargo xtask build` builds the sink components with the collector",
        p.display()
    );
    p
}

/// What Spin does with `"slack-logs:collector/sink" = { path = "<sink>" }`: register both
/// packages, instantiate them, pass the sink's export of the import's name as the collector's
/// instantiation argument (after the same subtype check), export every collector export, encode.
fn compose(sink: &Path) -> Vec<u8> {
    let mut graph = CompositionGraph::new();
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    // Spin names the main package after the component id and a dependency after its package.
    let collector = Package::from_bytes("collector", None, read(&component()), graph.types_mut())
        .expect("collector package");
    let collector_world = collector.ty();
    let collector = graph
        .register_package(collector)
        .expect("register the collector");
    let dependency =
        Package::from_bytes("slack-logs:collector", None, read(sink), graph.types_mut())
            .expect("sink package");
    let sink_world = dependency.ty();
    let dependency = graph
        .register_package(dependency)
        .expect("register the sink");
    let main = graph.instantiate(collector);
    let plug = graph.instantiate(dependency);

    let matching: Vec<String> = graph.types()[collector_world]
        .imports
        .keys()
        .filter(|name| name.split('@').next() == Some(SINK_IMPORT))
        .cloned()
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "the collector imports {SINK_IMPORT} once"
    );
    let mut cache = Default::default();
    for name in matching {
        let import_ty = graph.types()[collector_world].imports[&name];
        let export_ty = *graph.types()[sink_world]
            .exports
            .get(&name)
            .unwrap_or_else(|| panic!("{} does not export {name}", sink.display()));
        SubtypeChecker::new(&mut cache)
            .is_subtype(export_ty, graph.types(), import_ty, graph.types())
            .unwrap_or_else(|e| panic!("{} exports an incompatible {name}: {e:#}", sink.display()));
        let export = graph
            .alias_instance_export(plug, &name)
            .expect("alias the sink export");
        graph
            .set_instantiation_argument(main, &name, export)
            .expect("plug the sink import");
    }
    let exports: Vec<String> = graph.types()[collector_world]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in exports {
        let export = graph
            .alias_instance_export(main, &name)
            .expect("alias a collector export");
        graph.export(export, &name).expect("re-export");
    }
    // Encoding validates the result, as Spin's does.
    graph
        .encode(EncodeOptions::default())
        .expect("encode the composition")
}

fn compose_to(sink: &str, dir: &Scratch) -> PathBuf {
    let path = dir.path(&format!("collector+{sink}"));
    std::fs::write(&path, compose(&sink_wasm(sink))).expect("write the composed component");
    path
}

fn world(bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    component_world(bytes)
}

fn v02(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|v| v.starts_with("0.2."))
}

/// What Spin's platform world serves to a WASIp2 component.
fn spin_provides(import: &str) -> bool {
    import == "wasi:keyvalue/store@0.2.0-draft2"
        || import == "wasi:config/store@0.2.0-draft-2024-09-27"
        || v02(import, "wasi:http/outgoing-handler@")
        || v02(import, "wasi:http/types@")
        || [
            "wasi:cli/",
            "wasi:io/",
            "wasi:clocks/",
            "wasi:random/",
            "wasi:filesystem/",
        ]
        .iter()
        .any(|p| {
            import.starts_with(p)
                && import
                    .split('@')
                    .nth(1)
                    .is_some_and(|v| v.starts_with("0.2."))
        })
}

#[test]
fn sink_components_export_only_the_sink() {
    for (file, needs) in [
        ("sink_stdout.wasm", &["wasi:cli/stdout@"][..]),
        (
            "sink_http.wasm",
            &["wasi:http/outgoing-handler@", "wasi:config/store@"][..],
        ),
        // The S3 sink signs with the wall clock's time.
        (
            "sink_s3.wasm",
            &[
                "wasi:http/outgoing-handler@",
                "wasi:config/store@",
                "wasi:clocks/wall-clock@",
            ][..],
        ),
    ] {
        let (imports, exports) = world(&std::fs::read(sink_wasm(file)).expect("sink"));
        eprintln!("{file}: imports {imports:?}, exports {exports:?}");
        assert_eq!(
            exports,
            BTreeSet::from([format!("{SINK_IMPORT}@0.1.0")]),
            "{file}"
        );
        for i in &imports {
            assert!(spin_provides(i), "{file}: unexpected import {i}");
        }
        for n in needs {
            assert!(
                imports.iter().any(|i| i.starts_with(n)),
                "{file} should import {n}*: {imports:?}"
            );
        }
        // The stdout sink must not be able to reach the network or the configuration (the Slack
        // token): Spin gives it neither, and it should not even ask.
        if file == "sink_stdout.wasm" {
            assert!(
                !imports.iter().any(|i| i.starts_with("wasi:http/")
                    || i.starts_with("wasi:config/")
                    || i.starts_with("wasi:keyvalue/")),
                "{imports:?}"
            );
        }
    }
}

#[test]
fn composed_components_import_only_what_spin_provides() {
    let (plain_imports, _) = world(&std::fs::read(component()).expect("collector"));
    for sink in ["sink_stdout.wasm", "sink_http.wasm", "sink_s3.wasm"] {
        let bytes = compose(&sink_wasm(sink));
        let (imports, exports) = world(&bytes);
        eprintln!("collector+{sink}: imports {imports:?}\nexports {exports:?}");
        assert!(
            !imports.iter().any(|i| i.starts_with(SINK_IMPORT)),
            "{sink}: the sink import is plugged: {imports:?}"
        );
        for i in &imports {
            assert!(spin_provides(i), "{sink}: unexpected import {i}");
            assert!(
                !i.starts_with("wasi:keyvalue/atomics") && !i.starts_with("wasi:keyvalue/batch"),
                "{i}"
            );
        }
        // Everything the collector needed from the host is still imported.
        for i in plain_imports.iter().filter(|i| !i.starts_with(SINK_IMPORT)) {
            assert!(imports.contains(i), "{sink}: lost the import {i}");
        }
        let handlers: Vec<_> = exports
            .iter()
            .filter(|e| v02(e, "wasi:http/incoming-handler@"))
            .collect();
        assert_eq!(
            handlers.len(),
            1,
            "{sink}: exactly one HTTP handler: {exports:?}"
        );
        assert!(
            !exports
                .iter()
                .any(|e| e.starts_with("wasi:http/handler@0.3")),
            "{sink}: no p3 handler next to the p2 one"
        );
        assert!(
            exports.contains("slack-logs:collector/collector@0.1.0"),
            "{sink}: {exports:?}"
        );
        assert_eq!(exports.len(), 2, "{sink}: {exports:?}");
    }
}

// ---- running the compositions ----

fn sim_with_history(seed: u64, events: usize) -> (Simulator, i64) {
    let now = now();
    let start = now - 3 * 3600;
    let sim = Simulator::start(SimConfig {
        seed,
        audit_events: events,
        history_start: start,
        history_end: now - 300,
        ..SimConfig::default()
    })
    .expect("start simulator");
    // Bursts larger than the page size (5), so pages end inside a second.
    for (i, at) in [start + 600, now - 900].into_iter().enumerate() {
        sim.add_audit_burst(at, 7 + i);
    }
    (sim, start)
}

/// The host running `component` with `--sink SINK`, state in `state`, configured only through
/// `SLACK_LOGS_*` (nothing inherited from the developer's environment).
fn host_with(component: &Path, state: &Path, sink: &str, settings: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(host_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACK_LOGS_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--component")
        .arg(component)
        .arg("--state")
        .arg(state)
        .arg("--sink")
        .arg(sink);
    for (k, v) in settings {
        cmd.env(format!("SLACK_LOGS_{}", k.to_uppercase()), v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.arg("run").arg("--once").output().expect("start host")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "host failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ids_of(ndjson: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(ndjson)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not an NDJSON record: {l:?}: {e}"));
            v["id"].as_str().expect("record id").to_string()
        })
        .collect()
}

#[test]
fn composed_with_the_stdout_sink_delivers_the_same_records_on_stdout() {
    let (sim, start) = sim_with_history(21, 120);
    let dir = Scratch::new("compose-stdout");
    let settings = audit_settings(&sim, start);
    // Separate state directories, so each keeps its own compiled-code cache (the host keeps one
    // artifact per cache directory).

    // Uncomposed, with the host's file sink: the reference.
    ok(run(&mut host_with(
        &component(),
        &dir.path("plain/state.db"),
        &format!("file:{}", dir.path("plain.ndjson").display()),
        &settings,
    )));
    let plain = delivered_ids(&dir.path("plain.ndjson"));

    // Composed with sink-stdout, run as Spin would: the component brings its own sink.
    let composed = compose_to("sink_stdout.wasm", &dir);
    let out = ok(run(&mut host_with(
        &composed,
        &dir.path("composed/state.db"),
        "none",
        &settings,
    )));
    // stdout carries the records and nothing else (the component logs to stderr).
    let delivered = ids_of(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the component's own sink"), "{stderr}");

    let expected = truth(&sim, start, now());
    assert_eq!(
        set(&plain),
        expected,
        "the uncomposed collector delivers the ground truth"
    );
    assert_eq!(delivered.len(), set(&delivered).len(), "no record repeated");
    assert_eq!(
        set(&delivered),
        set(&plain),
        "composed and uncomposed deliver the same record set"
    );

    // The host refuses a mismatch instead of losing records quietly.
    let out = run(&mut host_with(
        &composed,
        &dir.path("composed/x.db"),
        "stdout",
        &settings,
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sink none"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&mut host_with(
        &component(),
        &dir.path("plain/y.db"),
        "none",
        &settings,
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("imports"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One request as the test endpoint saw it.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The status to answer for request number n (from 0); replaceable while the endpoint runs.
type Answer = Arc<Mutex<Box<dyn Fn(usize) -> u16 + Send>>>;

/// A tiny HTTP/1.1 endpoint: answers each request with the status `answer` gives for its number
/// and keeps every request.
struct Endpoint {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
    answer: Answer,
}

impl Endpoint {
    fn start(answer: impl Fn(usize) -> u16 + Send + 'static) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer: Answer = Arc::new(Mutex::new(Box::new(answer)));
        let (s, a) = (seen.clone(), answer.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let n = s.lock().unwrap().len();
                let status = (a.lock().unwrap())(n);
                if let Some(mut req) = serve_one(conn, status) {
                    req.status = status;
                    s.lock().unwrap().push(req);
                }
            }
        });
        Endpoint { port, seen, answer }
    }

    fn set_answer(&self, answer: impl Fn(usize) -> u16 + Send + 'static) {
        *self.answer.lock().unwrap() = Box::new(answer);
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Received> {
        self.seen()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

/// Reads one request: its path, headers and whole body (Content-Length or chunked).
fn read_request(stream: &TcpStream) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Received {
        path,
        headers,
        body: Vec::new(),
        status: 0,
    };
    if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        req.body.resize(len, 0);
        reader.read_exact(&mut req.body).ok()?;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(req)
}

fn serve_one(stream: TcpStream, status: u16) -> Option<Received> {
    let req = read_request(&stream)?;
    let reply = match status {
        200..=299 => String::new(),
        _ => format!("{{\"text\":\"test endpoint says {status}\",\"code\":6}}"),
    };
    let mut out = stream;
    let _ = write!(out, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
    let _ = out.flush();
    Some(req)
}

#[test]
fn composed_with_the_http_sink_posts_the_same_records() {
    let (sim, start) = sim_with_history(23, 120);
    let dir = Scratch::new("compose-http");
    // The first POST meets a 503: the sink retries it, and the retry is what counts.
    let endpoint = Endpoint::start(|n| if n == 0 { 503 } else { 200 });
    let mut settings = audit_settings(&sim, start);
    settings.push((
        "sink_url",
        format!("http://127.0.0.1:{}/ingest?source=slack", endpoint.port),
    ));
    settings.push(("sink_token", "sink-s3cret".into()));

    ok(run(&mut host_with(
        &component(),
        &dir.path("plain/state.db"),
        &format!("file:{}", dir.path("plain.ndjson").display()),
        &settings,
    )));
    let plain = delivered_ids(&dir.path("plain.ndjson"));

    let composed = compose_to("sink_http.wasm", &dir);
    let out = ok(run(&mut host_with(
        &composed,
        &dir.path("composed/state.db"),
        "none",
        &settings,
    )));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "the HTTP sink prints nothing: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("sink-s3cret"),
        "no token in the log"
    );

    let seen = endpoint.seen();
    assert_eq!(seen.first().map(|r| r.status), Some(503));
    assert_eq!(
        seen[0].body, seen[1].body,
        "the batch refused with 503 is sent again"
    );
    let accepted = endpoint.accepted();
    let mut delivered = Vec::new();
    for r in &accepted {
        assert_eq!(r.path, "/ingest?source=slack");
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(r.header("authorization"), Some("Bearer sink-s3cret"));
        assert!(r.body.ends_with(b"\n"), "whole NDJSON lines");
        delivered.extend(ids_of(&r.body));
    }
    assert_eq!(
        set(&plain),
        truth(&sim, start, now()),
        "the uncomposed collector delivers the ground truth"
    );
    assert_eq!(delivered.len(), set(&delivered).len(), "no record repeated");
    assert_eq!(
        set(&delivered),
        set(&plain),
        "composed and uncomposed deliver the same record set"
    );
}

#[test]
fn http_sink_speaks_splunk_hec_and_a_rejection_keeps_the_checkpoint() {
    let (sim, start) = sim_with_history(25, 30);
    let dir = Scratch::new("compose-hec");
    let endpoint = Endpoint::start(|_| 400);
    let mut settings = audit_settings(&sim, start);
    settings.push(("sink_preset", "splunk-hec".into()));
    settings.push(("sink_url", format!("http://127.0.0.1:{}", endpoint.port)));
    let composed = compose_to("sink_http.wasm", &dir);
    let state = dir.path("state.db");
    // The host hands SLACK_LOGS_SINK_TOKEN to a component with its own sink as `sink_token`.
    let hec = |cmd: &mut Command| {
        cmd.env("SLACK_LOGS_SINK_TOKEN", "hec-t0ken");
    };

    let mut cmd = host_with(&composed, &state, "none", &settings);
    hec(&mut cmd);
    let out = run(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a rejected batch fails the stream: {stderr}"
    );
    assert!(
        stderr.contains("sink_rejected") && stderr.contains("HTTP 400"),
        "{stderr}"
    );
    assert!(!stderr.contains("hec-t0ken"), "no token in the log");
    let rejected = endpoint.seen();
    assert_eq!(rejected.len(), 1, "a 4xx is not retried");
    assert_eq!(rejected[0].path, "/services/collector/raw");
    assert_eq!(
        rejected[0].header("authorization"),
        Some("Splunk hec-t0ken")
    );

    // Once the endpoint takes batches, the refused one comes first: its checkpoint never moved.
    endpoint.set_answer(|_| 200);
    let mut cmd = host_with(&composed, &state, "none", &settings);
    hec(&mut cmd);
    ok(run(&mut cmd));
    let accepted = endpoint.accepted();
    assert_eq!(ids_of(&accepted[0].body), ids_of(&rejected[0].body));
    let delivered: Vec<String> = accepted.iter().flat_map(|r| ids_of(&r.body)).collect();
    assert_eq!(set(&delivered), truth(&sim, start, now()));
}

/// The S3 sink component composed in, as `deploy/spin/s3-sink.toml` has Spin do, against a real
/// S3 server (s3s-fs, which checks signatures): configured only through the `s3_*` keys, it
/// refuses nothing the collector accepts, reports credentials the server refuses without moving
/// the checkpoint, and then writes the same records as the uncomposed collector, each once, in
/// the documented layout.
#[test]
fn composed_with_the_s3_sink_writes_the_same_records_to_s3() {
    let dir = Scratch::new("compose-s3");
    let Some(server) = S3Server::start(&dir.path("s3"), "composed") else {
        return;
    };
    let (sim, start) = sim_with_history(27, 120);
    let mut settings = audit_settings(&sim, start);
    settings.extend([
        ("s3_bucket", "composed".to_string()),
        ("s3_prefix", "slack/".to_string()),
        ("s3_endpoint_url", server.endpoint()),
        ("s3_region", "eu-west-1".to_string()),
        ("s3_access_key_id", S3Server::ACCESS_KEY_ID.to_string()),
    ]);
    let with_secret = |secret: &str| {
        let mut s = settings.clone();
        s.push(("s3_secret_access_key", secret.to_string()));
        s
    };

    ok(run(&mut host_with(
        &component(),
        &dir.path("plain/state.db"),
        &format!("file:{}", dir.path("plain.ndjson").display()),
        &settings,
    )));
    let plain = delivered_ids(&dir.path("plain.ndjson"));

    let composed = compose_to("sink_s3.wasm", &dir);
    let state = dir.path("composed/state.db");
    let out = run(&mut host_with(
        &composed,
        &state,
        "none",
        &with_secret("wrong-s3cret"),
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SignatureDoesNotMatch") && stderr.contains("`s3_secret_access_key`"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-s3cret"), "no secret in the log");
    assert!(server.objects("composed").is_empty());
    // Nor in the stored status (the sink's message is the stream's last error) or the state.
    let status = host_with(&composed, &state, "none", &with_secret("wrong-s3cret"))
        .arg("status")
        .output()
        .expect("status");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("SignatureDoesNotMatch") && !shown.contains("wrong-s3cret"),
        "{shown}"
    );
    for f in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(dir.path(&format!("composed/{f}"))).unwrap_or_default();
        assert!(
            !bytes.windows(12).any(|w| w == b"wrong-s3cret"),
            "{f} holds the secret"
        );
    }

    let out = ok(run(&mut host_with(
        &composed,
        &state,
        "none",
        &with_secret(S3Server::SECRET_ACCESS_KEY),
    )));
    assert!(
        out.stdout.is_empty(),
        "the S3 sink prints nothing: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut delivered = Vec::new();
    for (key, records) in s3_records(&server, "composed") {
        assert!(
            key.starts_with("slack/stream=audit/date=") && key.ends_with(".ndjson.gz"),
            "{key}"
        );
        delivered.extend(
            records
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_string()),
        );
    }
    assert_eq!(
        set(&plain),
        truth(&sim, start, now()),
        "the uncomposed collector delivers the ground truth"
    );
    assert_eq!(
        delivered.len(),
        set(&delivered).len(),
        "no record in two objects"
    );
    assert_eq!(
        set(&delivered),
        set(&plain),
        "composed and uncomposed deliver the same record set"
    );
}

/// An endpoint that answers every request with `status` and an endless chunked body of `A`s,
/// stopping at [`ENDLESS_CAP`] bytes; counts requests and the body bytes it got to write.
fn endless_error_endpoint(status: u16) -> (u16, Arc<Mutex<Vec<usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let s = sent.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || {
                if read_request(&conn).is_none() {
                    return;
                }
                let mut out = conn;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = [b'A'; 64 * 1024];
                let mut n = 0;
                while n < ENDLESS_CAP
                    && write!(out, "{:x}\r\n", chunk.len()).is_ok()
                    && out.write_all(&chunk).is_ok()
                    && out.write_all(b"\r\n").is_ok()
                {
                    n += chunk.len();
                }
                s.lock().unwrap().push(n);
            });
        }
    });
    (port, sent)
}

/// Where the endless endpoint gives up: far more than any bounded read takes.
const ENDLESS_CAP: usize = 512 << 20;

/// Checks a composed sink met an endless error body: the pass fails with the status, the log
/// stays short, and each answer was read only as far as the socket buffers hold (the sink reads
/// at most 4 KiB of an error body), never to the endpoint's cap.
fn assert_read_bounded(what: &str, out: &Output, status: &str, sent: &Mutex<Vec<usize>>) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert!(stderr.contains(status), "{what}: {stderr}");
    assert!(
        stderr.len() < 64 * 1024 && !stderr.contains(&"A".repeat(4097)),
        "{what}: the log quotes at most 4 KiB of the body ({} bytes of log)",
        stderr.len()
    );
    // The endpoint notes a connection when its write fails (the sink closed it) or at the cap.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sent.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = sent.lock().unwrap().clone();
    eprintln!("{what}: body bytes the endpoint got to write, per answer: {sent:?}");
    assert!(!sent.is_empty(), "{what}: the endpoint was asked");
    for n in sent {
        assert!(
            n < 64 << 20,
            "{what}: the sink read {n} bytes of an error body"
        );
    }
}

/// #13 item 4 for the sink components: an endpoint (or whatever answers in its place) that sends
/// an endless error body gets a bounded read from the HTTP and the S3 sink, and the batch is
/// reported as refused, its checkpoint unmoved.
#[test]
fn sink_components_read_a_bounded_start_of_an_endless_error_body() {
    let (sim, start) = sim_with_history(29, 20);
    let dir = Scratch::new("compose-endless");

    let (port, sent) = endless_error_endpoint(400);
    let mut settings = audit_settings(&sim, start);
    settings.push(("sink_url", format!("http://127.0.0.1:{port}/ingest")));
    let composed = compose_to("sink_http.wasm", &dir);
    let out = run(&mut host_with(
        &composed,
        &dir.path("http/state.db"),
        "none",
        &settings,
    ));
    assert_read_bounded("HTTP sink", &out, "HTTP 400", &sent);

    let (port, sent) = endless_error_endpoint(400);
    let mut settings = audit_settings(&sim, start);
    settings.extend([
        ("s3_bucket", "endless".to_string()),
        ("s3_endpoint_url", format!("http://127.0.0.1:{port}")),
        ("s3_region", "eu-west-1".to_string()),
        ("s3_access_key_id", "AKIDEXAMPLE".to_string()),
        ("s3_secret_access_key", "not-a-real-secret".to_string()),
    ]);
    let composed = compose_to("sink_s3.wasm", &dir);
    let state = dir.path("s3/state.db");
    let out = run(&mut host_with(&composed, &state, "none", &settings));
    assert_read_bounded("S3 sink", &out, "400", &sent);
    let status = host_with(&composed, &state, "none", &settings)
        .arg("status")
        .output()
        .expect("status");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("400") && !shown.contains(&"A".repeat(4097)),
        "the stored error is the bounded one: {shown}"
    );
}
