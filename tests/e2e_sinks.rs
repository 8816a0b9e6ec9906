//! Failing sinks, end to end: the built component in the host against the simulator, with the
//! host's HTTP sink pointed at a loopback receiver this test scripts. The receiver refuses
//! (500, 400), hangs (reads the request and never answers), accepts some batches and then fails,
//! reads half a body and drops the connection, or keeps a batch and drops the connection before
//! answering. Whatever it does, the host must give up within its retry bound, say so naming the
//! sink, keep the checkpoint, and a later pass with a good receiver must complete the set: the
//! union of what was accepted equals the simulator's ground truth, and a record repeats only
//! within the one batch whose answer was lost.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use slack_sim::{SimConfig, Simulator};

/// The host's HTTP sink policy (`RetryPolicy::default()` in host/src/sink.rs): tries per batch,
/// and the time one attempt may take.
const TRIES: usize = 4;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between tries: 0.5 + 1 + 2 s.
const BACKOFF_TOTAL: Duration = Duration::from_millis(3500);

// ------------------------------------------------------------------ the receiver

/// What the receiver does with one POST.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    /// Keep the batch, answer 200.
    Accept,
    /// Keep nothing, answer this status.
    Status(u16),
    /// Read the whole request, keep nothing, never answer (until the client gives up).
    Hang,
    /// Read half of the body, then drop the connection.
    HalfBodyThenDrop,
    /// Keep the batch, then drop the connection without answering: the host cannot know it was
    /// accepted, so it offers the batch again.
    AcceptThenDrop,
}

#[derive(Default)]
struct Seen {
    /// Every POST, in order, with what it was answered.
    attempts: Vec<Answer>,
    /// The record ids of each kept batch.
    batches: Vec<Vec<String>>,
}

/// A scripted NDJSON endpoint on loopback: `script(n)` answers the n-th POST (0-based).
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

impl Receiver {
    fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Script = Arc::new(script);
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (seen, script) = (seen2.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &seen, &*script));
            }
        });
        Receiver {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    fn attempts(&self) -> Vec<Answer> {
        self.seen.lock().unwrap().attempts.clone()
    }

    fn batches(&self) -> Vec<Vec<String>> {
        self.seen.lock().unwrap().batches.clone()
    }

    fn ids(&self) -> Vec<String> {
        self.batches().concat()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Seen>, script: &(dyn Fn(usize) -> Answer + Send + Sync)) {
    // A hung answer waits for the client to give up; this only bounds a test gone wrong.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return, // the wake-up connection of Drop, or a client gone
            Ok(_) => {}
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let answer = {
        let mut s = seen.lock().unwrap();
        let a = script(s.attempts.len());
        s.attempts.push(a);
        a
    };
    if answer == Answer::HalfBodyThenDrop {
        let mut half = vec![0; len / 2];
        let _ = reader.read_exact(&mut half);
        let _ = conn.shutdown(Shutdown::Both);
        return;
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if matches!(answer, Answer::Accept | Answer::AcceptThenDrop) {
        let ids = String::from_utf8(body)
            .expect("the batch is UTF-8")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}"));
                v["id"].as_str().expect("record id").to_string()
            })
            .collect();
        seen.lock().unwrap().batches.push(ids);
    }
    let reply = |conn: &mut TcpStream, status: u16, text: &str| {
        let _ = conn.write_all(
            format!("HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len())
                .as_bytes(),
        );
    };
    match answer {
        Answer::Accept => reply(&mut conn, 200, "ok"),
        Answer::Status(s) => reply(&mut conn, s, "refused by the test receiver"),
        Answer::AcceptThenDrop => {
            let _ = conn.shutdown(Shutdown::Both);
        }
        Answer::Hang => {
            // Hold the connection open without a byte of answer until the host gives up.
            let mut b = [0u8; 64];
            while matches!(reader.read(&mut b), Ok(n) if n > 0) {}
        }
        Answer::HalfBodyThenDrop => unreachable!("handled above"),
    }
}

// ------------------------------------------------------------------ running the host

/// Audit history with bursts that end pages inside a second, as in e2e_audit.
fn history(seed: u64) -> (Simulator, i64) {
    let now = now();
    let start = now - 3 * 3600;
    let sim = Simulator::start(SimConfig {
        seed,
        audit_events: 60,
        history_start: start,
        history_end: now - 300,
        ..SimConfig::default()
    })
    .expect("start simulator");
    sim.add_audit_burst(start + 600, 6);
    sim.add_audit_burst(now - 900, 7);
    (sim, start)
}

/// The host with the HTTP sink at `url` (common::host adds a file sink; the last `--sink` wins).
fn host_to(dir: &Scratch, settings: &[(&str, String)], url: &str) -> Command {
    let mut cmd = host(dir, settings);
    cmd.arg("--sink").arg(format!("http:{url}"));
    cmd
}

struct Pass {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

fn pass(dir: &Scratch, settings: &[(&str, String)], url: &str) -> Pass {
    let started = Instant::now();
    let out: Output = host_to(dir, settings, url)
        .args(["run", "--once"])
        .stderr(Stdio::piped())
        .output()
        .expect("start host");
    Pass {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The audit stream's entry of `status --json`.
fn audit_status(dir: &Scratch, settings: &[(&str, String)]) -> serde_json::Value {
    let out = host(dir, settings)
        .args(["status", "--json"])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["stream"] == "audit"))
        .cloned()
        .unwrap_or_else(|| panic!("no audit stream in {all}"))
}

/// A failed pass reports the sink by its URL, what it answered, and how many tries were made.
fn assert_reported(p: &Pass, url: &str, code: &str, tries: usize, why: &str) {
    assert_eq!(p.code, Some(2), "a failed stream exits 2:\n{}", p.stderr);
    assert!(
        p.stderr.contains(&format!("error={code}")),
        "the report names `{code}`:\n{}",
        p.stderr
    );
    assert!(
        p.stderr.contains(url),
        "the message names the sink {url}:\n{}",
        p.stderr
    );
    assert!(
        p.stderr.contains(why),
        "the message says why ({why}):\n{}",
        p.stderr
    );
    if tries > 1 {
        assert!(
            p.stderr.contains(&format!("gave up after {tries} tries")),
            "the report states the tries:\n{}",
            p.stderr
        );
        let warnings = p.stderr.matches("retrying in").count();
        assert_eq!(warnings, tries - 1, "one warning per retry:\n{}", p.stderr);
    }
}

/// Every id of the ground truth arrived, nothing else did, and at most `max_repeats` arrived twice.
fn assert_complete(received: &[String], sim: &Simulator, start: i64, max_repeats: usize) {
    let expected = truth(sim, start, now());
    let got = set(received);
    let missing: Vec<_> = expected.difference(&got).collect();
    let unknown: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    assert!(
        unknown.is_empty(),
        "records that Slack never had: {unknown:?}"
    );
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for id in received {
        *counts.entry(id).or_default() += 1;
    }
    let repeats = received.len() - got.len();
    assert!(
        counts.values().all(|&n| n <= 2),
        "a record arrived more than twice: {counts:?}"
    );
    assert!(
        repeats <= max_repeats,
        "{repeats} repeated records; at most {max_repeats} (one batch in flight) may repeat"
    );
}

// ------------------------------------------------------------------ the tests

/// (a) HTTP 500 every time: retried exactly TRIES times, then the pass fails naming the sink,
/// records nothing and keeps the checkpoint; a good receiver then gets everything once.
#[test]
fn refusing_sink_500_is_retried_a_bounded_number_of_times_and_loses_nothing() {
    let (sim, start) = history(21);
    let dir = Scratch::new("sink-500");
    let settings = audit_settings(&sim, start);
    let bad = Receiver::start(|_| Answer::Status(500));
    let p = pass(&dir, &settings, &bad.url());
    assert_reported(&p, &bad.url(), "sink_unavailable", TRIES, "HTTP 500");
    assert!(p.stderr.contains("records=0"), "{}", p.stderr);
    assert_eq!(
        bad.attempts().len(),
        TRIES,
        "the receiver saw exactly {TRIES} attempts: {:?}",
        bad.attempts()
    );
    assert!(bad.batches().is_empty());
    let status = audit_status(&dir, &settings);
    assert_eq!(
        status["watermark"],
        serde_json::json!(start - 1),
        "the checkpoint did not move: {status}"
    );
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("sink") && e.contains(&bad.url())),
        "{status}"
    );

    let good = Receiver::start(|_| Answer::Accept);
    let p = pass(&dir, &settings, &good.url());
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_complete(&good.ids(), &sim, start, 0);
}

/// (a) HTTP 400: the endpoint refuses this batch, so it is not retried; nothing is lost.
#[test]
fn rejecting_sink_400_is_not_retried_and_loses_nothing() {
    let (sim, start) = history(22);
    let dir = Scratch::new("sink-400");
    let settings = audit_settings(&sim, start);
    let bad = Receiver::start(|_| Answer::Status(400));
    let p = pass(&dir, &settings, &bad.url());
    assert_reported(&p, &bad.url(), "sink_rejected", 1, "HTTP 400");
    assert!(p.stderr.contains("records=0"), "{}", p.stderr);
    assert_eq!(
        bad.attempts().len(),
        1,
        "a 4xx is final: {:?}",
        bad.attempts()
    );
    assert_eq!(
        audit_status(&dir, &settings)["watermark"],
        serde_json::json!(start - 1)
    );

    let good = Receiver::start(|_| Answer::Accept);
    let p = pass(&dir, &settings, &good.url());
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_complete(&good.ids(), &sim, start, 0);
}

/// (b) A receiver that reads the batch and never answers: each attempt times out, the host gives
/// up within TRIES × ATTEMPT_TIMEOUT plus the backoff, says so, and nothing is lost.
#[test]
fn hung_sink_times_out_within_the_bound_and_loses_nothing() {
    let (sim, start) = history(23);
    let dir = Scratch::new("sink-hang");
    let settings = audit_settings(&sim, start);
    let bad = Receiver::start(|_| Answer::Hang);
    let p = pass(&dir, &settings, &bad.url());
    assert_reported(
        &p,
        &bad.url(),
        "sink_unavailable",
        TRIES,
        "no answer within",
    );
    assert_eq!(bad.attempts().len(), TRIES, "{:?}", bad.attempts());
    let bound = ATTEMPT_TIMEOUT * TRIES as u32 + BACKOFF_TOTAL + Duration::from_secs(8);
    assert!(
        p.took < bound,
        "a hung sink held the pass for {:?}; the bound is {bound:?}",
        p.took
    );
    assert_eq!(
        audit_status(&dir, &settings)["watermark"],
        serde_json::json!(start - 1)
    );

    let good = Receiver::start(|_| Answer::Accept);
    let p = pass(&dir, &settings, &good.url());
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    assert_complete(&good.ids(), &sim, start, 0);
}

/// (c) The receiver takes the first 3 batches, then answers 503: the pass fails after the retry
/// bound with 3 batches delivered; the next pass delivers exactly the rest.
#[test]
fn sink_that_accepts_some_batches_then_fails_gets_the_rest_next_pass() {
    let (sim, start) = history(24);
    let dir = Scratch::new("sink-half");
    let settings = audit_settings(&sim, start);
    let first = Receiver::start(|n| {
        if n < 3 {
            Answer::Accept
        } else {
            Answer::Status(503)
        }
    });
    let p = pass(&dir, &settings, &first.url());
    assert_reported(&p, &first.url(), "sink_unavailable", TRIES, "HTTP 503");
    assert_eq!(first.batches().len(), 3);
    assert_eq!(first.attempts().len(), 3 + TRIES, "{:?}", first.attempts());
    let delivered = first.ids().len();
    assert!(
        p.stderr.contains(&format!("records={delivered}")),
        "the report counts what the sink took:\n{}",
        p.stderr
    );

    let second = Receiver::start(|_| Answer::Accept);
    let p = pass(&dir, &settings, &second.url());
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    let mut all = first.ids();
    all.extend(second.ids());
    // Every failure was a clean refusal the host saw, so nothing may repeat.
    assert_complete(&all, &sim, start, 0);
}

/// (c) The receiver takes 2 batches, then reads half of every body and drops the connection: a
/// torn request is never a delivery; the next pass delivers the rest.
#[test]
fn sink_that_drops_the_connection_mid_body_gets_the_rest_next_pass() {
    let (sim, start) = history(25);
    let dir = Scratch::new("sink-torn");
    let settings = audit_settings(&sim, start);
    let first = Receiver::start(|n| {
        if n < 2 {
            Answer::Accept
        } else {
            Answer::HalfBodyThenDrop
        }
    });
    let p = pass(&dir, &settings, &first.url());
    assert_reported(
        &p,
        &first.url(),
        "sink_unavailable",
        TRIES,
        "request failed",
    );
    assert_eq!(first.attempts().len(), 2 + TRIES, "{:?}", first.attempts());

    let second = Receiver::start(|_| Answer::Accept);
    let p = pass(&dir, &settings, &second.url());
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    let mut all = first.ids();
    all.extend(second.ids());
    assert_complete(&all, &sim, start, 0);
}

/// (c) The receiver keeps the 3rd batch but drops the connection before answering: the host
/// retries it and the retry is accepted. The pass succeeds; that one batch — the one in flight —
/// arrives twice, nothing else repeats, nothing is lost.
#[test]
fn sink_that_keeps_a_batch_but_loses_the_answer_repeats_only_that_batch() {
    let (sim, start) = history(26);
    let dir = Scratch::new("sink-acklost");
    let settings = audit_settings(&sim, start);
    let r = Receiver::start(|n| {
        if n == 2 {
            Answer::AcceptThenDrop
        } else {
            Answer::Accept
        }
    });
    let p = pass(&dir, &settings, &r.url());
    assert_eq!(
        p.code,
        Some(0),
        "the retry was accepted, so the pass succeeds:\n{}",
        p.stderr
    );
    assert!(
        p.stderr.contains("retrying in"),
        "the lost answer is reported:\n{}",
        p.stderr
    );
    let batches = r.batches();
    assert!(batches.len() > 3, "{batches:?}");
    assert_eq!(
        batches[2], batches[3],
        "the batch whose answer was lost is offered again, unchanged"
    );
    assert_complete(&r.ids(), &sim, start, batches[2].len());
    assert_eq!(
        r.ids().len() - set(&r.ids()).len(),
        batches[2].len(),
        "only the batch in flight repeats"
    );
}
