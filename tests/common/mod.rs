//! Shared helpers of the end-to-end tests: where the built host and component are, how to run
//! the host against a simulator, and how to read what it delivered.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `target/<profile>/` of this test binary (`target/release/deps/e2e-…` → `target/release`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The host binary, built by `cargo test` alongside this test.
pub fn host_bin() -> PathBuf {
    let p = profile_dir().join("slack-logs");
    assert!(
        p.exists(),
        "{} is missing: run the suite with `cargo xtask test`",
        p.display()
    );
    p
}

/// The collector component, built by `cargo xtask test` before the suite.
pub fn component() -> PathBuf {
    let p = profile_dir()
        .parent()
        .expect("target/")
        .join("wasm32-wasip2/release/slack_logs_collector.wasm");
    assert!(
        p.exists(),
        "{} is missing: run the suite with `cargo xtask test`, which builds it first",
        p.display()
    );
    p
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "slack-logs-test-{name}-{}-{}",
            std::process::id(),
            now()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        // One compiled-component cache (`cache/` beside the state file) for every test, so the
        // component is compiled to native code once per build, not once per test. The host
        // writes it by rename, so concurrent tests never read half a file.
        let shared = host_bin().parent().expect("target/release").join("e2e-cache");
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink(&shared, p.join("cache")).unwrap();
        Scratch(p)
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The host, configured through `SLACK_LOGS_*` variables only (nothing inherited from the
/// developer's environment), with its state and output in `dir`.
pub fn host(dir: &Scratch, settings: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(host_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACK_LOGS_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--component").arg(component());
    cmd.arg("--state").arg(dir.path("state.db"));
    cmd.arg("--sink")
        .arg(format!("file:{}", dir.path("out.ndjson").display()));
    for (k, v) in settings {
        cmd.env(format!("SLACK_LOGS_{}", k.to_uppercase()), v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The settings that point the component at the simulator for the audit stream.
pub fn audit_settings(sim: &slack_sim::Simulator, backfill: i64) -> Vec<(&'static str, String)> {
    vec![
        ("slack_token", slack_sim::ORG_OWNER_TOKEN.to_string()),
        ("slack_api_base", sim.api_base()),
        ("slack_audit_base", sim.audit_base()),
        ("streams", "audit".into()),
        ("backfill_start_time", backfill.to_string()),
        ("audit_lag_seconds", "2".into()),
        ("audit_window_seconds", "1800".into()),
        ("audit_page_size", "5".into()),
        ("max_run_seconds", "120".into()),
        // The simulator does not rate-limit unless asked; pacing would only slow the tests.
        ("audit_requests_per_minute", "0".into()),
    ]
}

/// The settings that point the component at the simulator for the integration stream.
pub fn integration_settings(
    sim: &slack_sim::Simulator,
    backfill: i64,
) -> Vec<(&'static str, String)> {
    vec![
        ("slack_token", slack_sim::ORG_OWNER_TOKEN.to_string()),
        ("slack_api_base", sim.api_base()),
        ("slack_audit_base", sim.audit_base()),
        ("streams", "integration".into()),
        ("backfill_start_time", backfill.to_string()),
        ("integration_page_size", "7".into()),
        ("max_run_seconds", "120".into()),
        ("web_requests_per_minute", "0".into()),
    ]
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.arg("run").arg("--once").output().expect("start host");
    assert!(
        out.status.success(),
        "host failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every record id in the NDJSON file, in order (repeats kept).
pub fn delivered_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}"));
            v["id"].as_str().expect("record id").to_string()
        })
        .collect()
}

pub fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

pub fn truth(sim: &slack_sim::Simulator, oldest: i64, latest: i64) -> BTreeSet<String> {
    sim.audit_truth(oldest, latest)
        .into_iter()
        .map(|t| t.id)
        .collect()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP answer as the tests read it.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Where a redirect points; fails the test when the answer is not one.
    pub fn location(&self) -> String {
        assert_eq!(self.status, 302, "a redirect: {}", self.body);
        self.header("location").expect("Location").to_string()
    }
}

/// One HTTP/1.1 request to `http://host:port/path?query` with `Connection: close`, redirects
/// not followed.
pub fn request(method: &str, url: &str, auth: Option<&str>) -> Reply {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(authority).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: 0\r\n");
    if let Some(a) = auth {
        req += &format!("Authorization: {a}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut reply = Reply { status, headers, body: String::new() };
    let chunked = reply.header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    reply.body = if chunked { dechunk(body) } else { body.to_string() };
    reply
}

/// One request to the host on `127.0.0.1:port`; returns status and body.
pub fn http(port: u16, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let r = request(method, &format!("http://127.0.0.1:{port}{path}"), auth);
    (r.status, r.body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Waits until `f` holds, up to `secs`.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Kills a child if the test panics before it does.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A component's own imports and exports by name (not those of the modules and components nested
/// in it), read from the binary as Spin and our host see it.
pub fn component_world(bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (BTreeSet::new(), BTreeSet::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("valid component") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(s) if depth == 0 => {
                for i in s {
                    imports.insert(i.expect("import").name.name.to_string());
                }
            }
            Payload::ComponentExportSection(s) if depth == 0 => {
                for e in s {
                    exports.insert(e.expect("export").name.name.to_string());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

/// A `redis-server` child on a free loopback port (no persistence), killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// `None`, with a notice, when `redis-server` is not installed and `CI` is not set; with `CI`
    /// set a missing `redis-server` fails the test, so CI cannot skip the Redis tests unnoticed.
    pub fn start() -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(std::env::var_os("CI").is_none(), "redis-server is not installed, and CI is set: install it (apt-get install redis-server)");
            eprintln!("NOTICE: redis-server is not installed; skipping this Redis test");
            return None;
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer { child, port };
        assert!(
            wait_for(20, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "redis-server did not listen on {port}"
        );
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One command on a fresh connection; the reply's first line (enough for `+OK` and `:n`).
    pub fn command(&self, args: &[&[u8]]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).unwrap();
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            s.read_exact(&mut byte).expect("a reply from redis-server");
            reply.push(byte[0]);
        }
        String::from_utf8_lossy(&reply).trim_end().to_string()
    }
}

/// The host with its state in `state` (a path or a `redis://` URL), records appended to
/// `dir/<sink_file>`, run from `dir` (so a compiled-component cache kept beside the default state
/// goes there, shared by every host of the test), configured through `SLACK_LOGS_*` only.
pub fn host_with_state(
    dir: &Scratch,
    state: &str,
    sink_file: &str,
    settings: &[(&str, String)],
) -> Command {
    let mut cmd = Command::new(host_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACK_LOGS_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(&dir.0);
    cmd.arg("--component").arg(component());
    cmd.arg("--state").arg(state);
    cmd.arg("--sink")
        .arg(format!("file:{}", dir.path(sink_file).display()));
    for (k, v) in settings {
        cmd.env(format!("SLACK_LOGS_{}", k.to_uppercase()), v);
    }
    cmd.stdin(Stdio::null());
    cmd
}
