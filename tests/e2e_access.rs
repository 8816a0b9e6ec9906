//! The built component in the host against the simulator: the access stream end to end, in both
//! modes, under both sort keys, with cursor and classic paging, over passes with rows changing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use slack_sim::{AccessRowTruth, AccessSortKey, SimConfig, Simulator};

fn id(r: &AccessRowTruth) -> String {
    slack_logs_core::access::record_id(&r.user_id, Some(&r.ip), &r.user_agent, r.date_first, r.date_last)
}

#[derive(Clone, Copy, Debug)]
enum Paging {
    /// Cursor mode with 10 rows a page: more than 100 pages a walk.
    Cursor,
    /// The simulator refuses every `limit` (`invalid_limit`), so the collector falls back to
    /// classic `count`/`page` paging.
    Classic,
}

fn scenario(mode: &str, sort_key: AccessSortKey, paging: Paging) {
    let rows = match paging {
        Paging::Cursor => 1_200,
        Paging::Classic => 3_000,
    };
    let sim = Simulator::start(SimConfig {
        seed: 31,
        access_rows: rows,
        access_sort_key: sort_key,
        access_max_limit: if matches!(paging, Paging::Classic) { 5 } else { 999 },
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new(&format!("access-{mode}-{sort_key:?}-{paging:?}"));
    let settings = vec![
        ("slack_token", slack_sim::ORG_OWNER_TOKEN.to_string()),
        ("slack_api_base", sim.api_base()),
        ("slack_audit_base", sim.audit_base()),
        ("streams", "access".into()),
        ("access_mode", mode.into()),
        ("backfill_start_time", start.to_string()),
        ("access_page_size", if matches!(paging, Paging::Cursor) { "10" } else { "999" }.into()),
        ("max_run_seconds", "300".into()),
        ("request_timeout_seconds", "30".into()),
        ("web_requests_per_minute", "0".into()),
    ];

    // Pass 1: every combination in the history is new, and every one was active since the start.
    let out = run_ok(&mut host(&dir, &settings));
    let first = delivered_ids(&dir.path("out.ndjson"));
    let truth1 = sim.access_truth();
    assert_eq!(first.len(), set(&first).len(), "no record repeated");
    assert_eq!(set(&first), truth1.iter().map(id).collect::<BTreeSet<_>>(), "pass 1");
    let pages = sim.requests().iter().filter(|r| r.path.ends_with("team.accessLogs") && r.status == 200).count();
    if matches!(paging, Paging::Cursor) {
        assert!(pages > 100, "more than 100 pages: {pages}");
    } else {
        assert!(sim.requests().iter().any(|r| r.query.iter().any(|(k, _)| k == "page")), "classic paging used");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("invalid_limit"), "the fallback is reported: {stderr}");
    }

    // Between passes: known combinations are used again, new ones appear.
    let t = now();
    sim.touch_access_rows(25, t);
    sim.add_access_rows(7, t, t);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(dir.path("out.ndjson")).unwrap();
    run_ok(&mut host(&dir, &settings));
    let second = delivered_ids(&dir.path("out.ndjson"));
    let truth2 = sim.access_truth();
    let expected: BTreeSet<String> = match mode {
        // A row is emitted again whenever its date_last passed the watermark.
        "activity" => truth2.iter().filter(|r| r.date_last >= t).map(id).collect(),
        // Only combinations first seen after the watermark.
        _ => truth2.iter().filter(|r| r.date_first >= t).map(id).collect(),
    };
    assert_eq!(second.len(), set(&second).len(), "no record repeated");
    assert_eq!(set(&second), expected, "pass 2");
    assert!(set(&first).is_disjoint(&set(&second)), "nothing delivered twice across passes");
}

#[test]
fn activity_date_first_cursor() {
    scenario("activity", AccessSortKey::DateFirst, Paging::Cursor);
}

#[test]
fn activity_date_last_cursor() {
    scenario("activity", AccessSortKey::DateLast, Paging::Cursor);
}

#[test]
fn activity_date_first_classic() {
    scenario("activity", AccessSortKey::DateFirst, Paging::Classic);
}

#[test]
fn activity_date_last_classic() {
    scenario("activity", AccessSortKey::DateLast, Paging::Classic);
}

#[test]
fn new_only_date_first_cursor() {
    scenario("new-only", AccessSortKey::DateFirst, Paging::Cursor);
}

#[test]
fn new_only_date_last_cursor() {
    scenario("new-only", AccessSortKey::DateLast, Paging::Cursor);
}

#[test]
fn new_only_date_first_classic() {
    scenario("new-only", AccessSortKey::DateFirst, Paging::Classic);
}

#[test]
fn new_only_date_last_classic() {
    scenario("new-only", AccessSortKey::DateLast, Paging::Classic);
}

#[test]
fn paid_only_and_bot_tokens_fail_with_advice() {
    let sim = Simulator::start(SimConfig { seed: 2, access_rows: 10, ..SimConfig::default() }).unwrap();
    for (token, code, advice) in [
        (slack_sim::FREE_PLAN_TOKEN, "paid_only", "paid workspace"),
        (slack_sim::BOT_TOKEN, "not_allowed_token_type", "user token"),
        (slack_sim::NO_SCOPE_TOKEN, "missing_scope", "needed scope: admin"),
    ] {
        let dir = Scratch::new(&format!("access-{code}"));
        let settings = vec![
            ("slack_token", token.to_string()),
            ("slack_api_base", sim.api_base()),
            ("streams", "access".to_string()),
            ("web_requests_per_minute", "0".to_string()),
        ];
        let out = host(&dir, &settings).arg("run").arg("--once").output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(code) && stderr.contains(advice), "{code}: {stderr}");
        assert!(!stderr.contains(token), "the token never appears");
    }
}
