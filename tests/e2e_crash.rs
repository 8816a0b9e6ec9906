//! A crash must not stop collection (issue #12 item 0). With a SQLite state file every pass holds
//! the file's OS lock (`state.db.lock`, host/src/pass_lock.rs); the kernel drops it when the
//! process dies, so the next pass knows the dead pass's leases are stale, clears them and
//! resumes at once instead of reporting `held-elsewhere` until they expire. A pass that finds the
//! lock held by a live pass does not run.
//!
//! `killed_twenty_times_in_a_row_then_rerun_a_second_later_each_time` kills the host with SIGKILL
//! at a random point of the audit walk, 20 times in a row, starting the next pass one second
//! after each kill: every rerun must walk (none may wait for a lease), in the end the delivered
//! ids are the simulator's ground truth, and each run repeats at most the one batch that was in
//! flight at the kill before it. The seed of the random points is printed; `CRASH_TEST_SEED=N`
//! repeats a run.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use slack_sim::{SimConfig, Simulator};

const PAGE_SIZE: usize = 5;
/// The largest same-second burst in the data: a page may run past `audit_page_size` to finish a
/// second, so one batch is at most a page plus such a burst.
const BURST: usize = 8;
const MAX_BATCH: usize = PAGE_SIZE + BURST;

fn sim_with_history(seed: u64, events: usize) -> (Simulator, i64) {
    let now = now();
    let start = now - 4 * 3600;
    let sim = Simulator::start(SimConfig {
        seed,
        audit_events: events,
        history_start: start,
        history_end: now - 300,
        ..SimConfig::default()
    })
    .expect("start simulator");
    for at in [start + 900, start + 7200] {
        sim.add_audit_burst(at, BURST);
    }
    (sim, start)
}

/// xorshift64*: enough randomness for kill points, and repeatable from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn count(ids: &[String]) -> std::collections::BTreeMap<&str, usize> {
    let mut m = std::collections::BTreeMap::new();
    for id in ids {
        *m.entry(id.as_str()).or_insert(0) += 1;
    }
    m
}

#[test]
fn killed_twenty_times_in_a_row_then_rerun_a_second_later_each_time() {
    let seed = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill points from CRASH_TEST_SEED={seed}");
    let mut rng = Rng(seed);

    // Enough history that 20 short runs cannot finish it: 300+ pages of 5.
    let (sim, start) = sim_with_history(23, 1500);
    let dir = Scratch::new("crash");
    // The default lease lifetime: without the lock, a rerun would wait for it (minutes).
    let settings = audit_settings(&sim, start);
    let out = dir.path("out.ndjson");
    // Slow answers, so a kill lands inside the walk rather than between passes.
    sim.set_response_delay(Duration::from_millis(20));

    for kill in 1..=20 {
        let before = delivered_ids(&out);
        let requests_before = sim.request_count();
        let log = dir.path(&format!("run-{kill}.log"));
        let mut child = KillOnDrop(
            host(&dir, &settings)
                .args(["run", "--once"])
                .stderr(std::fs::File::create(&log).unwrap())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // A random point: after 1 to 12 requests of this run, plus up to 30 ms.
        let at = requests_before + 1 + rng.below(12) as usize;
        let jitter = Duration::from_millis(rng.below(30));
        let deadline = Instant::now() + Duration::from_secs(60);
        while sim.request_count() < at {
            if let Some(status) = child.0.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "run {kill} ended ({status}) after {} requests, before its kill point: it did not \
                     walk (waiting on the killed run's lease?):\n{stderr}",
                    sim.request_count() - requests_before
                );
            }
            assert!(
                Instant::now() < deadline,
                "run {kill} made no progress within 60 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(jitter);
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert!(
            status.code().is_none(),
            "run {kill} was killed, not finished: {status}"
        );

        let after = delivered_ids(&out);
        let this_run = &after[before.len()..];
        let seen: BTreeSet<&String> = before.iter().collect();
        let repeats = this_run.iter().filter(|id| seen.contains(id)).count()
            + (this_run.len() - this_run.iter().collect::<BTreeSet<_>>().len());
        assert!(
            repeats <= MAX_BATCH,
            "run {kill} delivered {repeats} records again; at most the batch in flight at the kill \
             before it ({MAX_BATCH}) may repeat"
        );
        // The next pass one second after the kill, as a crash-looping pod or cron would.
        std::thread::sleep(Duration::from_secs(1));
    }

    // One last pass, not killed, at full speed: it resumes at once and finishes the history.
    sim.set_response_delay(Duration::ZERO);
    let before = delivered_ids(&out);
    let run = run_ok(&mut host(&dir, &settings));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("caught-up") && !stderr.contains("held-elsewhere"),
        "{stderr}"
    );
    let all = delivered_ids(&out);
    let seen: BTreeSet<&String> = before.iter().collect();
    let last_repeats = all[before.len()..]
        .iter()
        .filter(|id| seen.contains(id))
        .count();
    assert!(
        last_repeats <= MAX_BATCH,
        "the last pass repeated {last_repeats}"
    );

    let expected = truth(&sim, start, now());
    assert_eq!(set(&all), expected, "every record arrived across 20 kills");
    // Each id at most once, beyond the one batch in flight at each of the 20 kills.
    let beyond: usize = count(&all).values().map(|n| n - 1).sum();
    assert!(beyond <= 20 * MAX_BATCH, "{beyond} repeats over 20 kills");
    assert!(
        count(&all).values().all(|&n| n <= 21),
        "no id repeats more often than there were kills"
    );
}

/// Two passes on one state file at once: the second does not run (it says why, exits 0 and
/// delivers nothing) and the first delivers everything once; `serve` answers a `/collect` that
/// arrives while another runs with 503 and `Retry-After`.
#[test]
fn a_pass_on_a_state_file_in_use_does_not_run() {
    let (sim, start) = sim_with_history(29, 300);
    let dir = Scratch::new("busy");
    let settings = audit_settings(&sim, start);
    let state = dir.path("state.db").display().to_string();
    sim.set_response_delay(Duration::from_millis(30));

    let mut first = KillOnDrop(
        host_with_state(&dir, &state, "first.ndjson", &settings)
            .args(["run", "--once"])
            .stderr(std::fs::File::create(dir.path("first.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(60, || sim.request_count() >= 3),
        "the first pass did not start walking"
    );
    let started = Instant::now();
    let second = host_with_state(&dir, &state, "second.ndjson", &settings)
        .args(["run", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        second.status.success(),
        "a skipped pass is not a failure: {stderr}"
    );
    assert!(
        stderr.contains("skipped") && stderr.contains("running a pass on the state file"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it does not wait for the other pass"
    );
    assert!(
        delivered_ids(&dir.path("second.ndjson")).is_empty(),
        "the second pass delivered nothing"
    );
    let status = first.0.wait().unwrap();
    let log = std::fs::read_to_string(dir.path("first.log")).unwrap_or_default();
    assert!(status.success(), "{log}");
    let delivered = delivered_ids(&dir.path("first.ndjson"));
    assert_eq!(delivered.len(), set(&delivered).len(), "no repeats");
    assert_eq!(
        set(&delivered),
        truth(&sim, start, now()),
        "the first pass delivered everything"
    );

    // serve: one pass at a time across concurrent requests too.
    let port = free_port();
    let _server = serve_on(
        host_with_state(&dir, &state, "serve.ndjson", &settings),
        port,
        Stdio::null(),
    );
    // Slow enough that the first /collect is still running when the second arrives.
    sim.set_response_delay(Duration::from_millis(1500));
    let url = format!("http://127.0.0.1:{port}/collect");
    let slow = {
        let url = url.clone();
        std::thread::spawn(move || request("POST", &url, None))
    };
    let before = sim.request_count();
    assert!(
        wait_for(30, || sim.request_count() > before),
        "the first /collect did not start its pass"
    );
    let busy = request("POST", &url, None);
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert!(busy.header("retry-after").is_some(), "Retry-After");
    let body: serde_json::Value =
        serde_json::from_str(&busy.body).expect("JSON like /collect's answer");
    assert_eq!(body["ok"], false);
    assert!(
        body["error"].as_str().unwrap().contains("running a pass"),
        "{body}"
    );
    let done = slow.join().unwrap();
    assert_eq!(done.status, 200, "{}", done.body);
    // Once it ended, the next /collect runs.
    sim.set_response_delay(Duration::ZERO);
    assert_eq!(request("POST", &url, None).status, 200);
}
