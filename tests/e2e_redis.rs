//! Several hosts, one store: the host's key-value store on Redis (`--state redis://…`), shared
//! by host processes collecting the same streams. Needs `redis-server` (skipped with a notice
//! when it is missing, unless `CI` is set).

mod common;

use std::collections::BTreeSet;
use std::process::Output;

use std::time::Duration;

use common::*;
use slack_sim::{SimConfig, Simulator};

/// A simulator with enough of each stream that a pass takes many pages, and settings that walk
/// all three with small pages.
fn scenario(seed: u64) -> (Simulator, i64, Vec<(&'static str, String)>) {
    let now = now();
    let start = now - 4 * 3600;
    let sim = Simulator::start(SimConfig {
        seed,
        audit_events: 400,
        access_rows: 150,
        integration_entries: 80,
        history_start: start,
        history_end: now - 300,
        ..SimConfig::default()
    })
    .expect("start simulator");
    sim.add_audit_burst(start + 3600, 9);
    let settings = vec![
        ("slack_token", slack_sim::ORG_OWNER_TOKEN.to_string()),
        ("slack_api_base", sim.api_base()),
        ("slack_audit_base", sim.audit_base()),
        ("streams", "audit,access,integration".into()),
        ("backfill_start_time", start.to_string()),
        ("audit_lag_seconds", "2".into()),
        ("audit_window_seconds", "1800".into()),
        ("audit_page_size", "5".into()),
        // Round 2 adds access rows seconds before it runs (the default lag is 60 s).
        ("access_lag_seconds", "2".into()),
        ("access_page_size", "10".into()),
        ("integration_page_size", "7".into()),
        ("max_run_seconds", "120".into()),
        ("request_timeout_seconds", "30".into()),
        ("audit_requests_per_minute", "0".into()),
        ("web_requests_per_minute", "0".into()),
    ];
    (sim, start, settings)
}

/// Every record id the simulator's data calls for, all three streams.
fn ground_truth(sim: &Simulator, start: i64) -> BTreeSet<String> {
    let mut ids = truth(sim, start, now());
    ids.extend(sim.access_truth().iter().map(access_id));
    ids.extend(
        sim.integration_truth()
            .iter()
            .map(|e| {
                slack_logs_core::integration::canonical(&e.to_string(), None)
                    .expect("simulator entries parse")
            })
            .filter(|(date, _)| *date >= start)
            .map(|(_, id)| id),
    );
    ids
}

fn succeeded(out: &Output, who: &str) {
    assert!(
        out.status.success(),
        "{who} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles the component into the scratch directory's cache once, so the hosts started next
/// start their passes together rather than one compile apart; and shows `status` works on Redis.
fn warm_up(dir: &Scratch, state: &str, settings: &[(&str, String)]) {
    let out = host_with_state(dir, state, "status.ndjson", settings)
        .arg("status")
        .output()
        .unwrap();
    succeeded(&out, "status");
}

#[test]
fn hosts_one_after_the_other_share_checkpoints_status_and_reset_in_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (sim, start, settings) = scenario(41);
    let dir = Scratch::new("redis-sequential");
    let state = redis.url();
    warm_up(&dir, &state, &settings);

    succeeded(
        &host_with_state(&dir, &state, "a.ndjson", &settings)
            .args(["run", "--once"])
            .output()
            .unwrap(),
        "host A",
    );
    let a = delivered_ids(&dir.path("a.ndjson"));
    assert_eq!(a.len(), set(&a).len(), "no record repeated");
    assert_eq!(
        set(&a),
        ground_truth(&sim, start),
        "host A delivers the ground truth"
    );
    // The checkpoints are in Redis, namespaced: nothing went to a state file.
    assert_eq!(
        redis.command(&[
            b"EXISTS",
            b"slack-logs:default:slack-logs/v1/audit/org/checkpoint"
        ]),
        ":1"
    );
    assert!(!dir.path(".slack-logs/state.db").exists());

    // Host B, another process with its own sink, finds A's checkpoints: nothing is due.
    succeeded(
        &host_with_state(&dir, &state, "b.ndjson", &settings)
            .args(["run", "--once"])
            .output()
            .unwrap(),
        "host B",
    );
    assert!(
        delivered_ids(&dir.path("b.ndjson")).is_empty(),
        "host B repeats nothing host A delivered"
    );

    let out = host_with_state(&dir, &state, "x.ndjson", &settings)
        .args(["status", "--json"])
        .output()
        .unwrap();
    succeeded(&out, "status");
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let streams: BTreeSet<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["watermark"].is_i64())
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(
        streams,
        BTreeSet::from(["audit", "access", "integration"]),
        "{status}"
    );

    // A corrupt checkpoint stops the stream, naming the reset; reset on Redis; the stream restarts
    // from backfill_start_time and delivers the audit history again.
    assert_eq!(
        redis.command(&[
            b"SET",
            b"slack-logs:default:slack-logs/v1/audit/org/checkpoint",
            b"{\"v\":1,"
        ]),
        "+OK"
    );
    let out = host_with_state(&dir, &state, "c.ndjson", &settings)
        .args(["run", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("checkpoint_unreadable") && stderr.contains("slack-logs reset audit --yes"),
        "{stderr}"
    );
    let out = host_with_state(&dir, &state, "c.ndjson", &settings)
        .args(["reset", "audit", "--yes"])
        .output()
        .unwrap();
    succeeded(&out, "reset");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deleted slack-logs/v1/audit/org/checkpoint")
            && stdout.contains("delivered again"),
        "{stdout}"
    );
    assert_eq!(
        redis.command(&[
            b"EXISTS",
            b"slack-logs:default:slack-logs/v1/audit/org/checkpoint"
        ]),
        ":0"
    );
    assert_eq!(
        redis.command(&[
            b"EXISTS",
            b"slack-logs:default:slack-logs/v1/access/org/checkpoint"
        ]),
        ":1",
        "other streams untouched"
    );
    succeeded(
        &host_with_state(&dir, &state, "d.ndjson", &settings)
            .args(["run", "--once"])
            .output()
            .unwrap(),
        "host after reset",
    );
    let d = set(&delivered_ids(&dir.path("d.ndjson")));
    assert_eq!(
        d,
        truth(&sim, start, now()),
        "after the reset, audit starts again from backfill_start_time"
    );
}

/// Two hosts run the same streams at the same time against one Redis. Every record must reach
/// exactly one of the two sinks: this needs the per-stream lease in the store (core/src/lease.rs),
/// without which both hosts walk every stream and both deliver it.
#[test]
fn two_hosts_at_once_on_one_redis_deliver_every_record_exactly_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (sim, start, settings) = scenario(43);
    let dir = Scratch::new("redis-concurrent");
    let state = redis.url();
    warm_up(&dir, &state, &settings);
    // Slow answers, so the two passes overlap for seconds rather than milliseconds.
    sim.set_response_delay(Duration::from_millis(15));

    let both = |round: &str| -> (Vec<String>, Vec<String>) {
        let spawn = |who: &str| {
            let log = std::fs::File::create(dir.path(&format!("{round}-{who}.log"))).unwrap();
            let sink = format!("{round}-{who}.ndjson");
            KillOnDrop(
                host_with_state(&dir, &state, &sink, &settings)
                    .args(["run", "--once"])
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            )
        };
        // Both started before either is waited for: the passes overlap.
        let mut hosts = [("a", spawn("a")), ("b", spawn("b"))];
        for (who, child) in &mut hosts {
            let status = child.0.wait().unwrap();
            let log = std::fs::read_to_string(dir.path(&format!("{round}-{who}.log")))
                .unwrap_or_default();
            assert!(
                status.success(),
                "{round}: host {who} failed ({status}):\n{log}"
            );
        }
        (
            delivered_ids(&dir.path(&format!("{round}-a.ndjson"))),
            delivered_ids(&dir.path(&format!("{round}-b.ndjson"))),
        )
    };
    let check = |round: &str, a: &[String], b: &[String], expected: &BTreeSet<String>| {
        let (sa, sb) = (set(a), set(b));
        // Loss first: a gap would be a plumbing bug whatever the lease does.
        let union: BTreeSet<String> = sa.union(&sb).cloned().collect();
        assert_eq!(
            &union, expected,
            "{round}: the two hosts together deliver the ground truth"
        );
        assert_eq!(a.len(), sa.len(), "{round}: host A repeated a record");
        assert_eq!(b.len(), sb.len(), "{round}: host B repeated a record");
        let twice: Vec<&String> = sa.intersection(&sb).collect();
        assert!(
            twice.is_empty(),
            "{round}: {} of {} records delivered by both hosts (is the per-stream lease in?), e.g. {:?}",
            twice.len(),
            union.len(),
            twice.iter().take(3).collect::<Vec<_>>()
        );
    };

    let (a1, b1) = both("round1");
    let truth1 = ground_truth(&sim, start);
    check("round 1", &a1, &b1, &truth1);

    // New data in every stream, then both hosts again: only the new records, each once.
    let t = now();
    sim.add_audit_events(30, t, t + 1);
    sim.add_integration_entries(10, t - 60, t);
    sim.add_access_rows(8, t, t);
    std::thread::sleep(Duration::from_secs(4));
    let (a2, b2) = both("round2");
    let truth2: BTreeSet<String> = ground_truth(&sim, start)
        .difference(&truth1)
        .cloned()
        .collect();
    assert!(
        truth2.len() >= 48,
        "the new data is in the truth: {}",
        truth2.len()
    );
    check("round 2", &a2, &b2, &truth2);
}

/// The state in Redis over TLS (`rediss://`), as an ACL user, with the server's certificate from
/// a CA made for the test and trusted through `SSL_CERT_FILE`: a host delivers the ground truth,
/// a second host finds the checkpoints and delivers nothing, `status` and `reset` work. Without
/// the CA the host refuses the server and says how to trust it; plain `redis://` to the TLS port
/// fails too: nothing falls back to clear text.
#[test]
fn hosts_share_checkpoints_in_redis_over_tls_as_an_acl_user() {
    let Some(redis) = TlsRedis::start("collector", "tls-pass-Wk3Rz") else {
        return;
    };
    let (sim, start, settings) = scenario(47);
    let dir = Scratch::new("redis-tls");
    let state = redis.url("collector", "tls-pass-Wk3Rz", 3);
    let trusting = |sink: &str, args: &[&str]| {
        host_with_state(&dir, &state, sink, &settings)
            .env("SSL_CERT_FILE", redis.ca())
            .args(args)
            .output()
            .unwrap()
    };
    succeeded(&trusting("status.ndjson", &["status"]), "status over TLS");
    succeeded(&trusting("a.ndjson", &["run", "--once"]), "host A over TLS");
    let a = delivered_ids(&dir.path("a.ndjson"));
    assert_eq!(a.len(), set(&a).len(), "no record repeated");
    assert_eq!(
        set(&a),
        ground_truth(&sim, start),
        "host A delivers the ground truth"
    );
    succeeded(&trusting("b.ndjson", &["run", "--once"]), "host B over TLS");
    assert!(
        delivered_ids(&dir.path("b.ndjson")).is_empty(),
        "host B finds A's checkpoints in Redis"
    );
    let out = trusting("x.ndjson", &["reset", "audit", "--yes"]);
    succeeded(&out, "reset over TLS");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted slack-logs/v1/audit/org/checkpoint")
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rediss://collector:***@localhost"),
        "the state is named without its password"
    );

    // The CA not trusted: refused, with the way to trust it.
    let out = host_with_state(&dir, &state, "c.ndjson", &settings)
        .env_remove("SSL_CERT_FILE")
        .args(["run", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS")
            && stderr.contains("SSL_CERT_FILE")
            && stderr.contains("certificate"),
        "{stderr}"
    );
    // Clear text to the TLS port does not work either.
    let plain = state.replacen("rediss://", "redis://", 1);
    let out = host_with_state(&dir, &plain, "c.ndjson", &settings)
        .args(["run", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rediss://"),
        "the error suggests TLS: {stderr}"
    );
    assert!(delivered_ids(&dir.path("c.ndjson")).is_empty());
}

/// A pass killed mid-walk on a shared Redis store (where no OS lock can tell that it died)
/// holds its walk back only until its lease expires: by default 30 s after its last renewal,
/// since it renews as it goes (issue #12 item 0). Then the next pass resumes from its checkpoint.
#[test]
fn after_a_killed_pass_on_redis_the_next_resumes_within_30_seconds_by_default() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (sim, start, mut settings) = scenario(41);
    settings.retain(|(k, _)| !["streams", "request_timeout_seconds"].contains(k));
    settings.push(("streams", "audit".into()));
    let dir = Scratch::new("redis-kill");
    let state = redis.url();
    warm_up(&dir, &state, &settings);
    sim.set_response_delay(Duration::from_millis(50));
    let mut child = KillOnDrop(
        host_with_state(&dir, &state, "out.ndjson", &settings)
            .args(["run", "--once"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(60, || sim.request_count() >= 10),
        "the walk did not get going"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let killed = std::time::Instant::now();
    sim.set_response_delay(Duration::ZERO);

    // A second later the walk is still leased to the dead pass: left to it, and says until when.
    std::thread::sleep(Duration::from_secs(1));
    let out = host_with_state(&dir, &state, "out.ndjson", &settings)
        .args(["run", "--once"])
        .output()
        .unwrap();
    succeeded(&out, "the pass right after the kill");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("held-elsewhere"), "{stderr}");

    // Then passes every few seconds, as a tight schedule would run them: one resumes within 30 s.
    let resumed = loop {
        std::thread::sleep(Duration::from_secs(3));
        let out = host_with_state(&dir, &state, "out.ndjson", &settings)
            .args(["run", "--once"])
            .output()
            .unwrap();
        succeeded(&out, "a pass after the kill");
        if !String::from_utf8_lossy(&out.stderr).contains("held-elsewhere") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "still held 40 s after the kill"
        );
    };
    assert!(
        resumed <= Duration::from_secs(34),
        "resumed {resumed:?} after the kill"
    );
    let ids = delivered_ids(&dir.path("out.ndjson"));
    assert_eq!(set(&ids), truth(&sim, start, now()), "everything arrived");
    assert!(
        ids.len() - set(&ids).len() <= 15,
        "at most the batch in flight at the kill repeated"
    );
}

/// Issue #12 item 9: a pass frozen past its lease (a VM paused, a process stopped) must not set
/// back the checkpoint of the pass that took the walk over when it wakes. Host A is stopped
/// (SIGSTOP) mid-walk; once its lease has expired, host B takes the walk over and finishes it;
/// A is woken (SIGCONT) and must stop at its next write without touching the checkpoint. A third
/// pass then finds nothing to deliver: had A written its older checkpoint back, that pass would
/// deliver again everything after it.
#[test]
fn a_pass_frozen_past_its_lease_does_not_set_back_the_checkpoint_when_it_wakes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (sim, start, mut settings) = scenario(47);
    settings.retain(|(k, _)| !["streams", "request_timeout_seconds"].contains(k));
    settings.push(("streams", "audit".into()));
    settings.push(("request_timeout_seconds", "5".into()));
    settings.push(("lease_seconds", "3".into()));
    let dir = Scratch::new("redis-frozen");
    let state = redis.url();
    warm_up(&dir, &state, &settings);
    sim.set_response_delay(Duration::from_millis(40));
    let log_a = std::fs::File::create(dir.path("a.log")).unwrap();
    let mut a = KillOnDrop(
        host_with_state(&dir, &state, "a.ndjson", &settings)
            .args(["run", "--once"])
            .stderr(log_a)
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(60, || sim.request_count() >= 12),
        "host A's walk did not get going"
    );
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &a.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    sim.set_response_delay(Duration::ZERO);
    // Past A's lease (3 s), with a margin for the seconds the lease is counted in.
    std::thread::sleep(Duration::from_secs(5));
    let out = host_with_state(&dir, &state, "b.ndjson", &settings)
        .args(["run", "--once"])
        .output()
        .unwrap();
    succeeded(&out, "host B, taking over from the frozen A");
    let stderr_b = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr_b.contains("caught-up") && !stderr_b.contains("held-elsewhere"),
        "{stderr_b}"
    );

    signal("-CONT");
    let status = a.0.wait().unwrap();
    let log_a = std::fs::read_to_string(dir.path("a.log")).unwrap_or_default();
    assert!(
        log_a.contains("held-elsewhere") || log_a.contains("another pass"),
        "A stops at its next write, saying why ({status}):\n{log_a}"
    );

    let out = host_with_state(&dir, &state, "c.ndjson", &settings)
        .args(["run", "--once"])
        .output()
        .unwrap();
    succeeded(&out, "host C, after A woke");
    let c = delivered_ids(&dir.path("c.ndjson"));
    assert!(
        c.is_empty(),
        "the checkpoint was set back: {} records delivered again",
        c.len()
    );
    let (a, b) = (
        delivered_ids(&dir.path("a.ndjson")),
        delivered_ids(&dir.path("b.ndjson")),
    );
    let union: BTreeSet<String> = set(&a).union(&set(&b)).cloned().collect();
    assert_eq!(union, truth(&sim, start, now()), "everything arrived");
    let both = set(&a).intersection(&set(&b)).count();
    assert!(
        both <= 5,
        "only the batch A had in flight when it froze arrives twice: {both}"
    );
}
