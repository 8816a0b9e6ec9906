//! The S3 sink end to end: the built component in the host with `--sink s3://BUCKET/PREFIX`
//! against the simulator, writing into a real S3 server on loopback (`s3s-fs`, which checks every
//! request's SigV4 signature and `Content-MD5` and stores each object whole as a file).
//!
//! - Every record lands in exactly one object, under `PREFIX/stream=audit/date=YYYY-MM-DD/`, in
//!   the object of its own UTC day (a batch spanning midnight becomes one object per day), and
//!   the union is the simulator's ground truth; a later pass adds objects for new records only.
//! - Credentials the server refuses fail the pass with what to fix and move no checkpoint.
//! - The host is killed after S3 stored an object but before the host heard the answer (so before
//!   the checkpoint): the rerun offers that batch again under the same key, its PUT overwrites
//!   the stored object, and after recovery no record is in two objects and none is missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use slack_sim::{SimConfig, Simulator};

const BUCKET: &str = "slack-logs";
const PREFIX: &str = "security/slack";

/// `YYYY-MM-DD` of unix seconds, counted day by day from 1970 (not the sink's formula).
fn utc_day(secs: i64) -> String {
    let mut days = secs.div_euclid(86_400);
    let mut year = 1970;
    loop {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let len = if leap { 366 } else { 365 };
        if days < len {
            let months = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let mut month = 0;
            while days >= months[month] {
                days -= months[month];
                month += 1;
            }
            return format!("{year:04}-{:02}-{:02}", month + 1, days + 1);
        }
        days -= len;
        year += 1;
    }
}

/// What the bucket holds: object key → the record ids in it, in order. Fails the test on an
/// object outside the layout, a line that is not a record, or a record under another day.
fn stored(server: &S3Server) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (key, records) in s3_records(server, BUCKET) {
        let rest = key
            .strip_prefix(&format!("{PREFIX}/stream=audit/date="))
            .unwrap_or_else(|| panic!("{key}: not under {PREFIX}/stream=audit/date=…/"));
        let (date, file) = rest
            .split_once('/')
            .unwrap_or_else(|| panic!("{key}: no date folder"));
        let batch_key = file
            .strip_suffix(".ndjson.gz")
            .unwrap_or_else(|| panic!("{key}: not .ndjson.gz"));
        assert!(
            batch_key.len() == 32 && batch_key.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}: named by the batch key"
        );
        let mut ids = Vec::new();
        for v in records {
            let time = v["time"].as_i64().expect("time");
            assert_eq!(
                utc_day(time),
                date,
                "{key}: a record of {} in the folder of {date}",
                utc_day(time)
            );
            assert_eq!(v["stream"], "audit");
            ids.push(v["id"].as_str().expect("id").to_string());
        }
        out.insert(key, ids);
    }
    out
}

/// Every id of `objects`, and the ids found in more than one object (or twice in one).
fn union_and_repeats(objects: &BTreeMap<String, Vec<String>>) -> (BTreeSet<String>, Vec<String>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for ids in objects.values() {
        for id in ids {
            *seen.entry(id).or_default() += 1;
        }
    }
    let repeats = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.to_string())
        .collect();
    (seen.keys().map(|s| s.to_string()).collect(), repeats)
}

/// A simulator whose history spans the most recent UTC midnight at least two hours back. The
/// collection starts so that an audit window (1800 s) ends one second after midnight: its first
/// page (limit 5) holds the 1 + 2 events of 00:00:01 and 00:00:00, then all 7 of 23:59:59 (Slack
/// completes a page's last second), so that batch holds records of both days.
fn sim_across_midnight(seed: u64) -> (Simulator, i64, i64) {
    let now = now();
    let midnight = (now - 7200).div_euclid(86_400) * 86_400;
    let start = midnight + 1 - 2 * 1800;
    let sim = Simulator::start(SimConfig {
        seed,
        audit_events: 90,
        history_start: start,
        history_end: midnight + 3600,
        ..SimConfig::default()
    })
    .expect("start simulator");
    sim.add_audit_burst(midnight - 1, 7);
    sim.add_audit_burst(midnight, 2);
    sim.add_audit_burst(midnight + 1, 1);
    (sim, start, midnight)
}

/// The host with `--sink s3://BUCKET/PREFIX`, AWS's variables pointing at `endpoint`.
fn s3_host(dir: &Scratch, settings: &[(&str, String)], endpoint: &str, secret: &str) -> Command {
    let mut cmd = host(dir, settings);
    cmd.arg("--sink").arg(format!("s3://{BUCKET}/{PREFIX}/"));
    aws_env(&mut cmd, endpoint, secret);
    cmd.args(["run", "--once"]);
    cmd
}

#[test]
fn every_record_lands_once_in_the_object_of_its_day() {
    let dir = Scratch::new("s3-layout");
    let Some(server) = S3Server::start(&dir.path("s3"), BUCKET) else {
        return;
    };
    let (sim, start, midnight) = sim_across_midnight(41);
    let first_now = midnight + 1800;
    sim.set_now(Some(first_now));
    let settings = audit_settings(&sim, start);

    // Credentials the server does not accept: the pass fails, says what to fix, stores nothing.
    let out = s3_host(&dir, &settings, &server.endpoint(), "not-the-secret")
        .output()
        .expect("host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sink_unavailable")
            && stderr.contains("SignatureDoesNotMatch")
            && stderr.contains("AWS_SECRET_ACCESS_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
    assert!(server.objects(BUCKET).is_empty());

    // The right ones: everything up to the simulator's now (less the lag), once.
    let out = s3_host(
        &dir,
        &settings,
        &server.endpoint(),
        S3Server::SECRET_ACCESS_KEY,
    )
    .output()
    .expect("host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("s3://{BUCKET}/{PREFIX}/")),
        "the summary names the bucket: {stderr}"
    );
    assert!(out.stdout.is_empty(), "records go to S3 only");
    let objects = stored(&server);
    let (ids, repeats) = union_and_repeats(&objects);
    assert!(repeats.is_empty(), "records in two objects: {repeats:?}");
    let expected = truth(&sim, start, first_now - 2);
    assert_eq!(
        ids, expected,
        "the union of the objects is the ground truth"
    );
    assert!(
        objects.len() > 10,
        "one object per batch of 5: {}",
        objects.len()
    );
    // The batch that reached over midnight became one object per day, under one key.
    let mut days_of_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for key in objects.keys() {
        let (folder, file) = key.rsplit_once('/').unwrap();
        days_of_key
            .entry(file)
            .or_default()
            .insert(folder.rsplit('/').next().unwrap());
    }
    assert!(
        days_of_key.values().any(|days| days.len() == 2),
        "some batch spans midnight: {days_of_key:?}"
    );
    assert!(objects
        .keys()
        .any(|k| k.contains(&format!("/date={}/", utc_day(midnight - 1)))));
    assert!(objects
        .keys()
        .any(|k| k.contains(&format!("/date={}/", utc_day(midnight)))));

    // Later passes write new objects for new records (here events Slack indexed late, a minute
    // below the watermark, which the look-back's 5-minute re-read finds once Slack's clock is 5
    // minutes on), and leave the stored ones alone.
    let mut slack_now = first_now;
    for round in 0..2 {
        let before = server.objects(BUCKET);
        let late = sim.add_audit_events(4, slack_now - 70, slack_now - 60);
        slack_now += 300;
        sim.set_now(Some(slack_now));
        let out = s3_host(
            &dir,
            &settings,
            &server.endpoint(),
            S3Server::SECRET_ACCESS_KEY,
        )
        .output()
        .expect("host");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let after = server.objects(BUCKET);
        for (key, bytes) in &before {
            assert_eq!(
                after.get(key),
                Some(bytes),
                "round {round}: {key} was rewritten:\n{stderr}"
            );
        }
        assert!(
            after.len() > before.len(),
            "round {round}: the late events went to new objects:\n{stderr}"
        );
        let objects = stored(&server);
        let (ids, repeats) = union_and_repeats(&objects);
        assert!(repeats.is_empty(), "records in two objects: {repeats:?}");
        assert!(
            late.iter().all(|id| ids.contains(id)),
            "round {round}: the late events are stored"
        );
        assert_eq!(
            ids,
            truth(&sim, start, slack_now - 2),
            "round {round}: nothing lost"
        );
    }

    // `slack-logs reset` starts the stream again from backfill_start_time, from the same
    // checkpoint its first start began with: the records come again, into objects of their own,
    // and every object of the first start stays as it was (each start has its own batch series;
    // without it the first batches would take the old names and overwrite them).
    let before = server.objects(BUCKET);
    let out = host(&dir, &settings)
        .args(["reset", "audit", "--yes"])
        .output()
        .expect("reset");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s3_host(
        &dir,
        &settings,
        &server.endpoint(),
        S3Server::SECRET_ACCESS_KEY,
    )
    .output()
    .expect("host");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = server.objects(BUCKET);
    for (key, bytes) in &before {
        assert_eq!(
            after.get(key),
            Some(bytes),
            "after a reset, {key} was overwritten"
        );
    }
    assert!(
        after.len() > before.len(),
        "the re-delivered records went to new objects: {} then {}",
        before.len(),
        after.len()
    );
}

// ------------------------------------------------------------------ a proxy that holds an answer

/// Between the host and S3: forwards every request and its answer, except that it holds the
/// answer to one PUT that S3 stored (the `hold`-th PUT from when it was armed) and tells the test
/// to kill the host, which then never learns that the batch was stored.
struct HoldingProxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    /// The path of every PUT S3 answered 2xx, in order (held ones included).
    stored: Vec<String>,
    armed: Option<usize>,
    puts: usize,
    /// The PUT whose answer is held: the host must be killed now.
    held: Option<String>,
}

impl HoldingProxy {
    fn start(upstream: u16) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || proxy_one(conn, upstream, &st));
            }
        });
        HoldingProxy { port, state }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Hold the answer to the `nth` PUT (from 0) S3 stores from now on.
    fn hold(&self, nth: Option<usize>) {
        let mut st = self.state.lock().unwrap();
        st.armed = nth;
        st.puts = 0;
        st.held = None;
    }

    fn held(&self) -> Option<String> {
        self.state.lock().unwrap().held.clone()
    }

    fn stored(&self) -> Vec<String> {
        self.state.lock().unwrap().stored.clone()
    }
}

fn proxy_one(client: TcpStream, upstream: u16, state: &Mutex<ProxyState>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut head = request_line.clone();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        // One request per connection, so S3's answer ends where its connection does.
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    head.push_str("connection: close\r\n\r\n");
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(30)));
    if up
        .write_all(head.as_bytes())
        .and_then(|()| up.write_all(&body))
        .is_err()
    {
        return;
    }
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    let status: u16 = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("").to_string();
    let hold = {
        let mut st = state.lock().unwrap();
        if method == "PUT" && (200..300).contains(&status) {
            st.stored.push(path.clone());
            let n = st.puts;
            st.puts += 1;
            if st.armed == Some(n) {
                st.held = Some(path);
                true
            } else {
                false
            }
        } else {
            false
        }
    };
    if hold {
        // S3 has the object; the host never hears so. Wait for the kill to close the socket.
        let mut b = [0u8; 64];
        while matches!(reader.read(&mut b), Ok(n) if n > 0) {}
        return;
    }
    let mut client = client;
    let _ = client.write_all(&answer);
}

/// Runs the host until it exits, or kills it (SIGKILL) as soon as the proxy holds an answer.
/// Returns whether it was killed.
fn run_until_held(mut cmd: Command, proxy: &HoldingProxy, log: &std::path::Path) -> bool {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start host");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if proxy.held().is_some() {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            return true;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(
                status.success(),
                "host failed ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            return false;
        }
        assert!(Instant::now() < deadline, "the host ran for two minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_kill_between_put_and_checkpoint_overwrites_the_object_instead_of_adding_a_copy() {
    let dir = Scratch::new("s3-kill");
    let Some(server) = S3Server::start(&dir.path("s3"), BUCKET) else {
        return;
    };
    let proxy = HoldingProxy::start(server.port);
    let (sim, start, _) = sim_across_midnight(43);
    let settings = audit_settings(&sim, start);

    // Kill while S3 holds the 3rd object of the first run, then the 6th of the next, then let a
    // run finish, and one more catch up.
    let mut held_objects = Vec::new();
    for (round, hold) in [Some(2), Some(5), None, None].into_iter().enumerate() {
        proxy.hold(hold);
        let killed = run_until_held(
            s3_host(
                &dir,
                &settings,
                &proxy.endpoint(),
                S3Server::SECRET_ACCESS_KEY,
            ),
            &proxy,
            &dir.path(&format!("host-{round}.log")),
        );
        assert_eq!(killed, hold.is_some(), "round {round}");
        if let Some(path) = proxy.held() {
            // S3 stored it before the kill: the retry has a copy to overwrite.
            let key = path
                .strip_prefix(&format!("/{BUCKET}/"))
                .unwrap()
                .replace("%3D", "=");
            assert!(
                server.objects(BUCKET).contains_key(&key),
                "{key} was stored before the kill"
            );
            held_objects.push((path, proxy.stored().len()));
        }
    }

    let objects = stored(&server);
    let (ids, repeats) = union_and_repeats(&objects);
    assert!(
        repeats.is_empty(),
        "records in two objects after the kills: {repeats:?}"
    );
    assert_eq!(ids, truth(&sim, start, now()), "nothing lost");
    let stored_puts = proxy.stored();
    for (path, count_at_kill) in &held_objects {
        // The batch went out again after the kill, to the same object: the overwrite happened.
        assert!(
            stored_puts[*count_at_kill..].contains(path),
            "{path} was written again after the kill: {stored_puts:?}"
        );
    }
}
