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
        let shared = host_bin()
            .parent()
            .expect("target/release")
            .join("e2e-cache");
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
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: 0\r\n");
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
    let mut reply = Reply {
        status,
        headers,
        body: String::new(),
    };
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    reply.body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
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

/// The record id of an access row of the simulator's truth, as the collector makes it.
pub fn access_id(r: &slack_sim::AccessRowTruth) -> String {
    slack_logs_core::access::record_id(
        &r.user_id,
        Some(&r.ip),
        &r.user_agent,
        r.date_first,
        r.date_last,
    )
}

/// Starts `host` (a host command, e.g. from [`host`]) as `serve --listen 127.0.0.1:PORT`, its
/// stderr to `stderr`, and waits until it listens.
pub fn serve_on(mut host: Command, port: u16, stderr: impl Into<Stdio>) -> KillOnDrop {
    let server = KillOnDrop(
        host.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stderr(stderr)
            .spawn()
            .expect("start host"),
    );
    assert!(
        wait_for(60, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "serve did not listen"
    );
    server
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
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed, and CI is set: install it (apt-get install redis-server)"
            );
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

/// A `redis-server` serving TLS only, with a certificate for `localhost` and 127.0.0.1 from a CA
/// made for the test by the `openssl` command, and one ACL user (the `default` user disabled).
/// `None`, with a notice, where `redis-server` or `openssl` is missing and `CI` is not set.
pub struct TlsRedis {
    pub server: RedisServer,
    /// Holds `ca.crt`, the CA to trust (`SSL_CERT_FILE`); removed when dropped.
    pub dir: PathBuf,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA (`ca.crt`) and a server certificate for `localhost` and 127.0.0.1 signed by it
/// (`server.crt`, `server.key`), P-256, valid two days, made in `dir` with `openssl`.
pub fn make_test_certificates(dir: &Path, ca_name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let subject = format!("/CN={ca_name}");
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", &subject,
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

impl TlsRedis {
    pub fn start(user: &str, password: &str) -> Option<TlsRedis> {
        let have = |program: &str, arg: &str| {
            Command::new(program)
                .arg(arg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        for (program, arg) in [("redis-server", "--version"), ("openssl", "version")] {
            if !have(program, arg) {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{program} is not installed, and CI is set: install it (apt-get install redis-server openssl)"
                );
                eprintln!("NOTICE: {program} is not installed; skipping this Redis TLS test");
                return None;
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "slack-logs-test-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        make_test_certificates(&dir, "slack-logs test CA");
        let port = free_port();
        let file = |f: &str| dir.join(f).display().to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &file("server.crt"),
                "--tls-key-file",
                &file("server.key"),
            ])
            .args([
                "--tls-ca-cert-file",
                &file("ca.crt"),
                "--tls-auth-clients",
                "no",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .args([
                "--user",
                "default",
                "off",
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
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
        Some(TlsRedis { server, dir })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `rediss://USER:PASSWORD@localhost:PORT/DB` (the host name the certificate is for).
    pub fn url(&self, user: &str, password: &str, db: u32) -> String {
        format!(
            "rediss://{user}:{password}@localhost:{}/{db}",
            self.server.port
        )
    }
}

/// Debian's headless `chromium`, run as the machine notes say (as root: `--no-sandbox`; no
/// background networking, so it never tries to reach Google), with a fresh profile per call.
pub struct Chromium {
    program: PathBuf,
}

impl Chromium {
    /// `None`, with a notice, when `chromium` is not installed and `CI` is not set; with `CI` set a
    /// missing `chromium` fails the test (`.ci/run` installs it), so CI cannot skip it unnoticed.
    pub fn find() -> Option<Chromium> {
        for program in ["chromium", "chromium-browser"] {
            let installed = Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if installed {
                return Some(Chromium {
                    program: program.into(),
                });
            }
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed, and CI is set: install it (apt-get install chromium)"
        );
        eprintln!("NOTICE: chromium is not installed; skipping this browser test (apt-get install chromium)");
        None
    }

    /// Runs chromium headless with `args` and a fresh `--user-data-dir`; its stdout. Killed after
    /// 90 s, so a browser that hangs fails the test instead of stalling the suite.
    pub fn run(&self, args: &[String]) -> String {
        let profile = std::env::temp_dir().join(format!(
            "slack-logs-test-chromium-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut child = Command::new(&self.program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let mut stdout = child.stdout.take().expect("chromium's stdout");
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        });
        let exited = wait_for(90, || child.try_wait().is_ok_and(|s| s.is_some()));
        if !exited {
            let _ = child.kill();
        }
        let status = child.wait().expect("chromium's exit");
        let out = reader.join().unwrap_or_default();
        let _ = std::fs::remove_dir_all(&profile);
        assert!(exited, "chromium did not finish within 90 s: {args:?}");
        assert!(status.success(), "chromium failed ({status}): {args:?}");
        out
    }

    /// The DOM of `url` after it loaded, serialized (`--dump-dom`).
    pub fn dump_dom(&self, url: &str) -> String {
        self.run(&["--dump-dom".into(), url.into()])
    }

    /// A PNG of `url` in a `width`×`height` window, written to `png`.
    pub fn screenshot(&self, url: &str, png: &Path, width: u32, height: u32) {
        self.run(&[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
            url.into(),
        ]);
    }
}

/// An S3 server on a free loopback port: `s3s-fs`, which checks every request's SigV4 signature
/// (header or presigned), checks `Content-MD5`, and stores each object whole (written aside, then
/// renamed) as a file `ROOT/BUCKET/KEY`. Killed when dropped.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    pub const ACCESS_KEY_ID: &'static str = "AKIASLACKLOGSTEST01";
    pub const SECRET_ACCESS_KEY: &'static str = "s3-test/secret+Key0123456789abcdefghijkl";

    /// `None`, with a notice, when `s3s-fs` is not installed and `CI` is not set; with `CI` set a
    /// missing `s3s-fs` fails the test (`.ci/run` installs it: `cargo install s3s-fs`).
    pub fn start(root: &Path, bucket: &str) -> Option<S3Server> {
        Self::start_with_secret(root, bucket, Self::SECRET_ACCESS_KEY)
    }

    /// [`S3Server::start`] with another secret access key for [`S3Server::ACCESS_KEY_ID`].
    pub fn start_with_secret(root: &Path, bucket: &str, secret: &str) -> Option<S3Server> {
        let installed = Command::new("s3s-fs")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "s3s-fs is not installed, and CI is set: install it (cargo install --locked --version 0.14.1 --features binary s3s-fs)"
            );
            eprintln!("NOTICE: s3s-fs is not installed; skipping this S3 test (cargo install --locked --version 0.14.1 --features binary s3s-fs)");
            return None;
        }
        // A bucket of s3s-fs is a directory under its root.
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let port = free_port();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", Self::ACCESS_KEY_ID, "--secret-key", secret])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let server = S3Server {
            child,
            port,
            root: root.to_path_buf(),
        };
        assert!(
            wait_for(20, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "s3s-fs did not listen on {port}"
        );
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every object stored in `bucket`, by key, with its bytes as stored.
    pub fn objects(&self, bucket: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        fn walk(dir: &Path, base: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    let key = path
                        .strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.insert(key, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        walk(&self.root.join(bucket), &self.root.join(bucket), &mut out);
        out
    }
}

/// The host's environment for `--sink s3://…` against `server`: AWS's variables, as AWS's tools
/// read them (and nothing inherited from the developer's environment).
pub fn aws_env(cmd: &mut Command, endpoint: &str, secret: &str) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", secret);
}

/// The records of every object in `bucket` (gzip NDJSON, as the S3 sinks write them), by key.
pub fn s3_records(
    server: &S3Server,
    bucket: &str,
) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    server
        .objects(bucket)
        .into_iter()
        .map(|(key, bytes)| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .unwrap_or_else(|e| panic!("{key}: not gzip of UTF-8 NDJSON: {e}"));
            assert!(text.ends_with('\n'), "{key}: whole NDJSON lines");
            let records = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: {l:?}: {e}")))
                .collect();
            (key, records)
        })
        .collect()
}
