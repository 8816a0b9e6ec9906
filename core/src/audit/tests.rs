use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::env::KvStore as _;
use crate::env::{Env, HttpResponse, Transport, TransportError};
use crate::pass::{run_pass, Outcome, PassReport, RunOptions};
use crate::synthetic::{parse_query, AuditApiModel, EventList, ModelEvent};
use crate::testutil::{MemStore, TestClock, VecSink};

const T0: i64 = 1_700_000_000;

fn event(id: &str, t: i64) -> ModelEvent {
    ModelEvent {
        id: id.into(),
        date_create: t,
        action: "user_login".into(),
        json: format!(
            r#"{{"id":"{id}","date_create":{t},"action":"user_login","extra":{{"k":[1,2]}}}}"#
        ),
    }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut all = vec![
        ("slack_token", "xoxp-test"),
        ("streams", "audit"),
        ("slack_audit_base", "https://audit.test/audit/v1"),
        ("backfill_start_time", "1699990000"),
        ("audit_lag_seconds", "60"),
        ("audit_window_seconds", "3600"),
    ];
    for (k, v) in pairs {
        all.retain(|(ak, _)| ak != k);
        all.push((k, v));
    }
    Config::from_pairs(&all).unwrap()
}

/// The model plus injected faults, counted per request.
struct Faulty {
    model: AuditApiModel<EventList>,
    n: usize,
    invalid_cursor_at: HashSet<usize>,
    server_error_at: HashSet<usize>,
    rate_limit_at: HashSet<usize>,
}

impl Faulty {
    fn new(events: Vec<ModelEvent>) -> Self {
        Faulty {
            model: AuditApiModel::new(EventList(events)),
            n: 0,
            invalid_cursor_at: HashSet::new(),
            server_error_at: HashSet::new(),
            rate_limit_at: HashSet::new(),
        }
    }
}

impl Transport for Faulty {
    fn get(
        &mut self,
        url: &str,
        bearer: &str,
        t: Duration,
    ) -> Result<HttpResponse, TransportError> {
        self.n += 1;
        let has_cursor = url.contains("cursor=");
        if self.invalid_cursor_at.contains(&self.n) && has_cursor {
            return Ok(HttpResponse {
                status: 400,
                retry_after: None,
                date: None,
                body: br#"{"ok":false,"error":"invalid_cursor"}"#.to_vec(),
            });
        }
        if self.server_error_at.contains(&self.n) {
            return Ok(HttpResponse {
                status: 503,
                retry_after: None,
                date: None,
                body: b"<html>busy</html>".to_vec(),
            });
        }
        if self.rate_limit_at.contains(&self.n) {
            return Ok(HttpResponse {
                status: 429,
                retry_after: Some("2".into()),
                date: None,
                body: br#"{"ok":false,"error":"rate_limited"}"#.to_vec(),
            });
        }
        self.model.get(url, bearer, t)
    }
}

fn pass(
    cfg: &Config,
    t: &mut dyn Transport,
    store: &mut MemStore,
    sink: &mut VecSink,
    clock: &TestClock,
) -> PassReport {
    let mut env = Env {
        transport: t,
        store,
        sink,
        clock,
        log: &|_| {},
        random: &crate::testutil::test_random,
    };
    run_pass(cfg, &mut env, &RunOptions::default())
}

fn truth(events: &[ModelEvent], upto: i64) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e.date_create <= upto && e.date_create >= 1_699_990_000)
        .map(|e| e.id.clone())
        .collect()
}

#[test]
fn plan_window_respects_lag_and_length() {
    assert_eq!(
        plan_window(100, 200, 60, 30).map(|w| (w.oldest, w.latest)),
        Some((101, 130))
    );
    assert_eq!(
        plan_window(100, 200, 60, 3600).map(|w| (w.oldest, w.latest)),
        Some((101, 140))
    );
    assert!(plan_window(140, 200, 60, 3600).is_none());
}

#[test]
fn first_run_without_backfill_starts_from_now_and_anchors_it() {
    let cfg = config(&[("backfill_start_time", "")]);
    let events = vec![event("old", T0 - 500), event("new", T0 + 30)];
    let mut t = Faulty::new(events);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp);
    assert!(sink.ids.is_empty());
    assert!(
        store.map.contains_key(CHECKPOINT_KEY),
        "the start is anchored"
    );
    clock.now.set(T0 + 200);
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(sink.ids, vec!["new"]);
}

#[test]
fn bursts_across_page_edges_arrive_once_with_oldest_on_every_page() {
    let mut events = vec![];
    for i in 0..7 {
        events.push(event(&format!("burst-{i}"), T0 - 1000));
    }
    for i in 0..20 {
        events.push(event(&format!("e{i}"), T0 - 3000 + i * 97));
    }
    // No pacing: the look-back re-scan reads the last hour again in the same pass (and must
    // deliver nothing of it twice).
    let cfg = config(&[("audit_page_size", "2"), ("audit_requests_per_minute", "0")]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    assert!(
        t.model
            .requests
            .iter()
            .filter(|u| !u.contains("cursor="))
            .count()
            >= 2,
        "a forward window and a re-scan: {:?}",
        t.model.requests
    );
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats");
    assert_eq!(got, truth(&events, T0 - 60));
    for url in &t.model.requests {
        let q = parse_query(url);
        for k in ["oldest", "latest", "limit"] {
            assert!(q.iter().any(|(n, _)| n == k), "{k} missing in {url}");
        }
    }
    assert!(
        t.model.requests.iter().any(|u| u.contains("cursor=")),
        "paged with a cursor"
    );
}

#[test]
fn invalid_cursor_resumes_from_the_checkpoint_without_loss_or_repeat() {
    let events: Vec<_> = (0..30)
        .map(|i| event(&format!("e{i}"), T0 - 2000 + (i / 3) * 10))
        .collect();
    let cfg = config(&[("audit_page_size", "4")]);
    let mut t = Faulty::new(events.clone());
    t.invalid_cursor_at = [3, 4, 7].into_iter().collect();
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len());
    assert_eq!(got, truth(&events, T0));
}

#[test]
fn sink_failure_keeps_the_checkpoint_and_the_next_pass_delivers() {
    let events: Vec<_> = (0..12)
        .map(|i| event(&format!("e{i}"), T0 - 2000 + i * 10))
        .collect();
    let cfg = config(&[("audit_page_size", "3")]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) = (
        MemStore::default(),
        VecSink {
            fail_at: Some(2),
            ..Default::default()
        },
        TestClock::new(T0),
    );
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::Failed);
    assert_eq!(r.streams[0].error_code.as_deref(), Some("sink_unavailable"));
    assert_eq!(sink.ids.len(), 3);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp);
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len());
    assert_eq!(got, truth(&events, T0));
}

#[test]
fn budget_stops_cleanly_and_the_next_pass_resumes() {
    let events: Vec<_> = (0..40)
        .map(|i| event(&format!("e{i}"), T0 - 9000 + i * 200))
        .collect();
    let cfg = config(&[
        ("audit_page_size", "3"),
        ("max_run_seconds", "10"),
        ("request_timeout_seconds", "5"),
    ]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    clock.tick.set(Duration::from_millis(700));
    let mut passes = 0;
    loop {
        passes += 1;
        let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
        match r.streams[0].outcome {
            Outcome::CaughtUp => break,
            Outcome::BudgetExhausted => assert!(r.streams[0]
                .message
                .as_deref()
                .unwrap_or("")
                .contains("budget")),
            o => panic!("{o:?} {r:?}"),
        }
        assert!(passes < 50);
    }
    assert!(passes > 1, "the budget should have cut at least one pass");
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len());
    assert_eq!(got, truth(&events, T0));
}

#[test]
fn auth_error_fails_with_advice_and_moves_nothing() {
    struct Denied;
    impl Transport for Denied {
        fn get(&mut self, _: &str, _: &str, _: Duration) -> Result<HttpResponse, TransportError> {
            Ok(HttpResponse {
                status: 403,
                retry_after: None,
                date: None,
                body: br#"{"ok":false,"error":"team_not_authorized"}"#.to_vec(),
            })
        }
    }
    let cfg = config(&[]);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut Denied, &mut store, &mut sink, &clock);
    let s = &r.streams[0];
    assert_eq!(s.outcome, Outcome::Failed);
    assert_eq!(s.error_code.as_deref(), Some("team_not_authorized"));
    assert!(s.message.as_deref().unwrap().contains("Enterprise org"));
    assert!(!s.message.as_deref().unwrap().contains("xoxp-test"));
    let cp = AuditCheckpoint::decode(&store.map[CHECKPOINT_KEY]).unwrap();
    assert_eq!(cp.watermark, 1_699_989_999);
}

#[test]
fn corrupt_and_newer_checkpoints_stop_the_stream_without_overwriting() {
    let cfg = config(&[]);
    for bad in [&b"{not json"[..], br#"{"v":99,"watermark":5}"#] {
        let mut store = MemStore::default();
        store.map.insert(CHECKPOINT_KEY.into(), bad.to_vec());
        let (mut sink, clock) = (VecSink::default(), TestClock::new(T0));
        let r = pass(
            &cfg,
            &mut Faulty::new(vec![]),
            &mut store,
            &mut sink,
            &clock,
        );
        assert_eq!(
            r.streams[0].error_code.as_deref(),
            Some("checkpoint_unreadable")
        );
        let message = r.streams[0].message.as_deref().unwrap_or_default();
        assert!(
            message.contains("`slack-logs reset audit --yes`"),
            "the message names the way out: {message}"
        );
        assert_eq!(store.map[CHECKPOINT_KEY], bad.to_vec());
    }
}

#[test]
fn malformed_page_fails_without_moving_the_checkpoint() {
    struct Html;
    impl Transport for Html {
        fn get(&mut self, _: &str, _: &str, _: Duration) -> Result<HttpResponse, TransportError> {
            Ok(HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: b"<html>maintenance</html>".to_vec(),
            })
        }
    }
    let cfg = config(&[]);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut Html, &mut store, &mut sink, &clock);
    assert_eq!(
        r.streams[0].error_code.as_deref(),
        Some("malformed_response")
    );
    assert_eq!(
        AuditCheckpoint::decode(&store.map[CHECKPOINT_KEY])
            .unwrap()
            .window,
        None
    );
}

#[test]
fn entries_with_wrong_types_are_errors_not_panics() {
    for body in [
        &br#"{"entries":[{"id":5,"date_create":1}]}"#[..],
        br#"{"entries":[{"id":"a","date_create":"yesterday"}]}"#,
        br#"{"entries":{"id":"a"}}"#,
        br#"{"entries":[{"id":"a","date_create":1}"#,
        br#"{"ok":false,"error":"invalid_authentication"}"#,
    ] {
        assert!(
            parse_page(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let p = parse_page(br#"{"entries":[{"id":"a","date_create":1}]}"#).unwrap();
    assert_eq!(
        p.next_cursor, None,
        "absent response_metadata ends the walk"
    );
    let p = parse_page(br#"{"entries":[],"response_metadata":{"next_cursor":""}}"#).unwrap();
    assert_eq!(p.next_cursor, None);
}

#[test]
fn absorb_skips_what_the_ledger_or_the_order_says_was_delivered() {
    let w = AuditWindow {
        oldest: 10,
        latest: 100,
        boundary: Some(50),
        boundary_ids: BTreeSet::new(),
        since: None,
    };
    let mut ledger = ledger::Ledger::default();
    ledger.insert(50, ledger::digest("a"));
    let raw = serde_json::value::RawValue::from_string("{}".into()).unwrap();
    let e = |id: &'static str, t: i64| AuditEntry {
        id: id.into(),
        date_create: t,
        raw: &raw,
    };
    let page = [
        e("late", 60),
        e("a", 50),
        e("b", 50),
        e("c", 40),
        e("d", 40),
        e("d", 40),
        e("x", 5),
    ];
    let emitted = |a: &Absorbed| a.emit.iter().map(|&(i, _)| i).collect::<Vec<_>>();
    // The whole window is within the look-back span: the ledger decides, so an event above the
    // boundary that it does not hold (indexed after the walk passed its second) is delivered,
    // and so is one Slack sent outside the range. A repeat on the page is delivered once.
    let got = w.absorb(&page, &ledger, 0);
    assert_eq!(emitted(&got), vec![0, 2, 3, 4, 6]);
    assert_eq!(got.duplicates, 2);
    assert_eq!(got.out_of_window, 1);
    assert_eq!(got.next.boundary, Some(40));
    // Below the span the ledger keeps (`record_from`), above the boundary is delivered by order.
    let got = w.absorb(&page, &ledger, 100);
    assert_eq!(emitted(&got), vec![2, 3, 4, 6]);
    // The window itself is unchanged until the caller commits.
    assert_eq!(w.boundary, Some(50));
}

/// A store whose `set` fails at a given call counts as a crash between "sink accepted" and
/// "checkpoint written": that batch may repeat, nothing may be lost.
#[derive(Debug, Clone)]
struct Schedule {
    events: Vec<(u16, u8)>,
    page_size: u32,
    faults: Vec<(u8, usize)>,
    late: Vec<(u16, u8)>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop::collection::vec((0u16..5000, 1u8..6), 1..60),
        1u32..8,
        prop::collection::vec((0u8..5, 1usize..40), 0..8),
        prop::collection::vec((0u16..400, 1u8..4), 0..10),
    )
        .prop_map(|(events, page_size, faults, late)| Schedule {
            events,
            page_size,
            faults,
            late,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_faults_lose_nothing_and_repeat_only_interrupted_batches(s in schedule()) {
        let base = T0 - 6000;
        let mut events = Vec::new();
        for (i, (off, n)) in s.events.iter().enumerate() {
            for j in 0..*n {
                events.push(event(&format!("e{i}-{j}"), base + i64::from(*off)));
            }
        }
        let page = s.page_size.to_string();
        let cfg = config(&[("audit_page_size", page.as_str()), ("backfill_start_time", &(base - 10).to_string()), ("audit_window_seconds", "1500"), ("lease_seconds", "60")]);
        let mut t = Faulty::new(events.clone());
        let mut store = MemStore::default();
        let mut sink = VecSink::default();
        let clock = TestClock::new(T0);
        let mut interrupted = 0usize;
        for (kind, at) in &s.faults {
            match kind {
                0 => { t.invalid_cursor_at.insert(*at); }
                1 => { t.server_error_at.insert(*at); }
                2 => { t.rate_limit_at.insert(*at); }
                3 => { sink.fail_at = Some(*at); }
                _ => { store.fail_set_at = Some(*at); }
            }
        }
        // One pass; a failed checkpoint write after an accepted batch may repeat that batch.
        fn counted(cfg: &Config, t: &mut Faulty, store: &mut MemStore, sink: &mut VecSink, clock: &TestClock, interrupted: &mut usize) -> PassReport {
            let (before, sets_before) = (sink.ids.len(), store.sets);
            let r = pass(cfg, t, store, sink, clock);
            if r.streams[0].error_code.as_deref() == Some("store_error") && store.fail_set_at.is_some_and(|f| f > sets_before) {
                *interrupted += sink.ids.len() - before;
                store.fail_set_at = None;
            }
            r
        }
        // Passes until caught up, with late events arriving (inside the lag) between passes.
        let mut late = s.late.iter();
        let mut now = T0;
        for round in 0..40 {
            let r = counted(&cfg, &mut t, &mut store, &mut sink, &clock, &mut interrupted);
            if let Some((off, n)) = late.next() {
                // Late, but within the lag of `now`: the next window still covers it.
                let at = now - 59 + i64::from(*off % 50);
                for j in 0..*n {
                    let e = event(&format!("late{round}-{j}"), at);
                    t.model.source.0.push(e.clone());
                    events.push(e);
                }
            }
            now += 90;
            clock.now.set(now);
            if r.streams[0].outcome == Outcome::CaughtUp && late.len() == 0 && round > 2 { break; }
        }
        // A fault scheduled late may fire in these passes; the next pass after it recovers.
        let mut r = counted(&cfg, &mut t, &mut store, &mut sink, &clock, &mut interrupted);
        for _ in 0..3 {
            if r.streams[0].outcome == Outcome::CaughtUp { break; }
            // A store failure while releasing the lease leaves it until it expires.
            clock.now.set(clock.now.get() + 61);
            r = counted(&cfg, &mut t, &mut store, &mut sink, &clock, &mut interrupted);
        }
        prop_assert_eq!(r.streams[0].outcome, Outcome::CaughtUp);
        let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
        let watermark = r.streams[0].watermark.unwrap();
        prop_assert_eq!(&got, &truth(&events, watermark).into_iter().collect::<BTreeSet<_>>());
        let repeats = sink.ids.len() - got.len();
        prop_assert!(repeats <= interrupted, "repeats {} > interrupted {}", repeats, interrupted);
    }
}

#[test]
fn a_first_pass_with_nothing_due_still_checks_the_token() {
    struct Revoked(usize);
    impl Transport for Revoked {
        fn get(&mut self, url: &str, _: &str, _: Duration) -> Result<HttpResponse, TransportError> {
            self.0 += 1;
            assert!(url.contains("limit=1"), "a minimal probe: {url}");
            Ok(HttpResponse {
                status: 401,
                retry_after: None,
                date: None,
                body: br#"{"ok":false,"error":"invalid_authentication"}"#.to_vec(),
            })
        }
    }
    let cfg = config(&[("backfill_start_time", "")]);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let mut t = Revoked(0);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(t.0, 1);
    assert_eq!(r.streams[0].outcome, Outcome::Failed);
    assert_eq!(
        r.streams[0].error_code.as_deref(),
        Some("invalid_authentication")
    );
}

#[test]
fn more_than_30_actions_walk_each_window_in_groups_and_resume_between_them() {
    let actions: Vec<String> = (0..45).map(|i| format!("action_{i}")).collect();
    let mut events = Vec::new();
    for i in 0..60i64 {
        let mut e = event(&format!("e{i}"), T0 - 3000 + i * 40);
        // Every third event has an action outside the filter.
        e.action = if i % 3 == 0 {
            "not_wanted".into()
        } else {
            actions[(i as usize * 7) % 45].clone()
        };
        events.push(e);
    }
    let list = actions.join(",");
    let cfg = config(&[
        ("audit_actions", &list),
        ("audit_page_size", "4"),
        ("max_run_seconds", "8"),
        ("request_timeout_seconds", "3"),
    ]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    clock.tick.set(Duration::from_millis(400));
    let mut passes = 0;
    while pass(&cfg, &mut t, &mut store, &mut sink, &clock).streams[0].outcome != Outcome::CaughtUp
    {
        passes += 1;
        assert!(passes < 60);
    }
    assert!(
        passes > 1,
        "the budget cut the walk, some of it between groups"
    );
    let want: BTreeSet<String> = events
        .iter()
        .filter(|e| e.action != "not_wanted")
        .map(|e| e.id.clone())
        .collect();
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats");
    assert_eq!(got, want);
    for url in &t.model.requests {
        let n = parse_query(url)
            .iter()
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.split(',').count());
        assert!(matches!(n, Some(30) | Some(15)), "{url}");
    }
    assert_eq!(action_groups(&cfg).len(), 2);
}

#[test]
fn a_cursor_that_comes_back_stops_the_walk_without_losing_what_was_delivered() {
    struct Loop(usize);
    impl Transport for Loop {
        fn get(&mut self, _: &str, _: &str, _: Duration) -> Result<HttpResponse, TransportError> {
            self.0 += 1;
            // Page n holds one event and always points to the same cursor.
            // Inside the first window, [backfill, backfill + 3600).
            let t = 1_699_993_000 - self.0 as i64;
            let body = format!(
                r#"{{"entries":[{{"id":"e{}","date_create":{t}}}],"response_metadata":{{"next_cursor":"same="}}}}"#,
                self.0
            );
            Ok(HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: body.into_bytes(),
            })
        }
    }
    let cfg = config(&[]);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut Loop(0), &mut store, &mut sink, &clock);
    assert_eq!(
        r.streams[0].error_code.as_deref(),
        Some("cursor_loop"),
        "{r:?}"
    );
    assert_eq!(
        sink.ids,
        vec!["e1", "e2"],
        "the first page, then the page the repeated cursor led to"
    );
    let cp = AuditCheckpoint::decode(&store.map[CHECKPOINT_KEY]).unwrap();
    assert_eq!(
        cp.window.and_then(|w| w.boundary),
        Some(1_699_993_000 - 2),
        "the checkpoint holds both pages"
    );
}

/// A store where another pass takes the audit lease once `after_sets` pages were checkpointed.
struct TakenOver {
    inner: MemStore,
    after_sets: usize,
    checkpoint_sets: usize,
    struck: bool,
}

impl crate::env::KvStore for TakenOver {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, crate::env::StoreError> {
        self.inner.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), crate::env::StoreError> {
        self.inner.set(key, value)?;
        // Checkpoints written after a delivered page carry that page's boundary second.
        let text = String::from_utf8_lossy(value);
        let after_a_page = key == CHECKPOINT_KEY
            && text
                .split("\"boundary\":")
                .nth(1)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        self.checkpoint_sets += usize::from(after_a_page);
        // The rival claims once our lease was extended after that page (a claim landing between
        // our confirm and our extension is overwritten by it and loses at its own read-back).
        let our_extension = key
            == crate::keys::walk_key(crate::Stream::Audit, None, crate::keys::WalkLeaf::Lease)
            && self.checkpoint_sets == self.after_sets
            && !self.struck;
        if our_extension {
            self.struck = true;
            let rival = crate::lease::LeaseRecord {
                owner: "rival".into(),
                expires: T0 + 999,
            };
            let key =
                crate::keys::walk_key(crate::Stream::Audit, None, crate::keys::WalkLeaf::Lease);
            self.inner
                .map
                .insert(key, serde_json::to_vec(&rival).unwrap());
        }
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), crate::env::StoreError> {
        self.inner.delete(key)
    }
}

#[test]
fn a_lease_held_by_another_pass_leaves_the_stream_to_it() {
    let events: Vec<_> = (0..6)
        .map(|i| event(&format!("e{i}"), T0 - 2000 + i * 10))
        .collect();
    let cfg = config(&[("audit_page_size", "2")]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let key = crate::keys::walk_key(crate::Stream::Audit, None, crate::keys::WalkLeaf::Lease);
    let rival = crate::lease::LeaseRecord {
        owner: "rival".into(),
        expires: T0 + 100,
    };
    store
        .set(&key, &serde_json::to_vec(&rival).unwrap())
        .unwrap();
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::HeldElsewhere, "{r:?}");
    assert!(r.streams[0]
        .message
        .as_deref()
        .unwrap_or("")
        .contains("rival"));
    assert!(!r.any_failed());
    assert!(sink.ids.is_empty() && t.model.requests.is_empty());
    assert!(
        !store.map.contains_key(CHECKPOINT_KEY),
        "no checkpoint touched"
    );
    // Once it expires, the stream is ours again, and our lease is released at the end.
    clock.now.set(T0 + 101);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    assert_eq!(sink.ids.len(), 6);
    let left: crate::lease::LeaseRecord = serde_json::from_slice(&store.map[&key]).unwrap();
    assert_eq!(left.expires, 0, "released");
}

#[test]
fn a_lease_taken_over_mid_walk_stops_before_the_next_sink_write() {
    let events: Vec<_> = (0..12)
        .map(|i| event(&format!("e{i}"), T0 - 2000 + i * 10))
        .collect();
    let cfg = config(&[("audit_page_size", "3")]);
    let mut t = Faulty::new(events.clone());
    let mut store = TakenOver {
        inner: MemStore::default(),
        after_sets: 1,
        checkpoint_sets: 0,
        struck: false,
    };
    let (mut sink, clock) = (VecSink::default(), TestClock::new(T0));
    let mut env = Env {
        transport: &mut t,
        store: &mut store,
        sink: &mut sink,
        clock: &clock,
        log: &|_| {},
        random: &crate::testutil::test_random,
    };
    let r = run_pass(&cfg, &mut env, &RunOptions::default());
    assert_eq!(r.streams[0].outcome, Outcome::HeldElsewhere, "{r:?}");
    assert_eq!(r.streams[0].records, 3, "one page, then the rival's: {r:?}");
    assert_eq!(sink.ids.len(), 3);
    // The rival resumes from our checkpoint: together, everything once.
    store.after_sets = usize::MAX;
    let key = crate::keys::walk_key(crate::Stream::Audit, None, crate::keys::WalkLeaf::Lease);
    store.inner.map.remove(&key);
    let r = pass(&cfg, &mut t, &mut store.inner, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats");
    assert_eq!(got, truth(&events, T0));
}

#[test]
fn a_walk_that_cannot_start_is_counted_and_raises_the_silence_alert() {
    let cfg = config(&[("slack_token", ""), ("max_silence", "100")]);
    let mut t = Faulty::new(vec![]);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let lines = std::cell::RefCell::new(Vec::<String>::new());
    let log = |l: &str| lines.borrow_mut().push(l.to_string());
    let mut run = |store: &mut MemStore, sink: &mut VecSink| {
        let mut env = Env {
            transport: &mut t,
            store,
            sink,
            clock: &clock,
            log: &log,
            random: &crate::testutil::test_random,
        };
        run_pass(&cfg, &mut env, &RunOptions::default())
    };
    let r = run(&mut store, &mut sink);
    assert_eq!(r.streams[0].error_code.as_deref(), Some("no_token"));
    clock.now.set(T0 + 101);
    run(&mut store, &mut sink);
    let stored = crate::status::load(&mut store, crate::Stream::Audit, None);
    assert_eq!(
        (stored.passes, stored.errors.get("no_token").copied()),
        (2, Some(2))
    );
    assert!(
        lines
            .borrow()
            .iter()
            .any(|l| l.contains("\"event\":\"stream_silent\"")),
        "{:?}",
        lines.borrow()
    );
}

#[test]
fn a_budget_spent_waiting_is_not_a_successful_pass() {
    let cfg = config(&[("max_run_seconds", "5"), ("request_timeout_seconds", "2")]);
    let mut t = Faulty::new(vec![event("e1", T0 - 2000)]);
    // Every request is rate limited for longer than the budget.
    t.rate_limit_at = (1..50).collect();
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::BudgetExhausted, "{r:?}");
    let stored = crate::status::load(&mut store, crate::Stream::Audit, None);
    assert_eq!(
        stored.last_success, None,
        "no page read, no progress: {stored:?}"
    );
}

#[test]
fn a_page_that_repeats_the_previous_one_delivers_nothing_twice() {
    let events: Vec<_> = (0..20)
        .map(|i| event(&format!("e{i}"), T0 - 2000 + i * 10))
        .collect();
    // One window, so the repeated answer is a cursor page of the same query (an empty window's
    // answer repeated for another window cannot be told from "no events there").
    let cfg = config(&[("audit_page_size", "3"), ("audit_window_seconds", "86400")]);
    let mut model = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    for at in [3, 5] {
        let mut t = crate::testutil::RepeatPrevious::new(&mut model, at);
        let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
        assert!(t.fired, "request {at} was served twice");
        // The repeated cursor comes back with the page: the walk stops rather than loop.
        assert_eq!(
            r.streams[0].error_code.as_deref(),
            Some("cursor_loop"),
            "{r:?}"
        );
    }
    let r = pass(&cfg, &mut model, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats");
    assert_eq!(got, truth(&events, T0));
}

/// A Slack-like audit id (36 characters, as Slack's are).
fn uuid_like(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919)
}

#[test]
fn the_look_back_re_scan_delivers_events_slack_indexed_late_once() {
    let mut events: Vec<_> = (0..10)
        .map(|i| event(&format!("e{i}"), T0 - 3000 + i * 100))
        .collect();
    let cfg = config(&[("audit_requests_per_minute", "0")]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    assert_eq!(r.streams[0].watermark, Some(T0 - 60));
    assert_eq!(r.streams[0].late_events, 0);
    // Slack indexes three events late. The first pass read T0 - 200 when it was 200 s old, so
    // the 5-minute re-read finds it; it read T0 - 1000 when it was older than that, so the
    // one-hour re-read does; T0 - 7260 is beyond the look-back (the documented limit).
    let soon = event("late-200s", T0 - 200);
    let later = event("late-1000s", T0 - 1000);
    let too_late = event("late-beyond-lookback", T0 - 7260);
    for e in [&soon, &later, &too_late] {
        t.model.source.0.push(e.clone());
    }
    clock.now.set(T0 + 150);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    assert_eq!(r.streams[0].late_events, 1, "{r:?}");
    assert!(
        r.streams[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("indexed late"),
        "{r:?}"
    );
    assert_eq!(sink.ids.last().map(String::as_str), Some("late-200s"));
    events.push(soon);
    // Once T0 - 1000 is an hour old, the second re-read reaches it.
    clock.now.set(T0 + 2700);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].late_events, 1, "{r:?}");
    events.push(later);
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats: {:?}", sink.ids);
    assert_eq!(got, truth(&events, T0 + 2640));
    let stored = crate::status::load(&mut store, crate::Stream::Audit, None);
    assert_eq!(stored.total_late_events, 2);
    // Later passes read again only what reached an age since: one request per re-read tier and
    // one forward, and nothing twice.
    clock.now.set(T0 + 2760);
    let (before, requests) = (sink.ids.len(), t.model.requests.len());
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!((r.streams[0].records, sink.ids.len()), (0, before), "{r:?}");
    assert_eq!(
        t.model.requests.len() - requests,
        3,
        "{:?}",
        &t.model.requests[requests..]
    );
}

#[test]
fn the_look_back_costs_each_pass_what_is_new_not_the_whole_hour() {
    // A busy hour: an event every 6 s, 100 to a page. Re-reading the whole hour would take
    // six pages or more every pass; each second read again at 5 min and at 1 h takes a page each.
    let mut events: Vec<_> = (0..1200)
        .map(|i| event(&format!("e{i}"), T0 - 7200 + i * 6))
        .collect();
    let cfg = config(&[
        ("audit_requests_per_minute", "0"),
        ("audit_page_size", "100"),
        ("backfill_start_time", &(T0 - 7200).to_string()),
    ]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    for i in 1..=30i64 {
        let now = T0 + i * 60;
        for j in 0..10 {
            let e = event(&format!("n{i}-{j}"), now - 60 + j * 6);
            t.model.source.0.push(e.clone());
            events.push(e);
        }
        clock.now.set(now);
        let requests = t.model.requests.len();
        let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
        assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
        assert!(
            t.model.requests.len() - requests <= 3,
            "pass {i}: {:?}",
            &t.model.requests[requests..]
        );
    }
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats");
    assert_eq!(got, truth(&events, T0 + 30 * 60 - 60));
}

#[test]
fn no_look_back_with_audit_lookback_seconds_0() {
    let cfg = config(&[
        ("audit_requests_per_minute", "0"),
        ("audit_lookback_seconds", "0"),
    ]);
    let mut t = Faulty::new(vec![event("a", T0 - 3000)]);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    t.model.source.0.push(event("late", T0 - 600));
    clock.now.set(T0 + 30);
    let requests = t.model.requests.len();
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(sink.ids, vec!["a"]);
    assert_eq!(
        t.model.requests.len(),
        requests + 1,
        "one forward window, no re-scan"
    );
}

#[test]
fn a_25000_event_burst_in_one_second_fits_a_store_with_400_kb_values() {
    // Bulk deprovisioning: 25,000 events in one second, between ordinary ones. Format 1 kept
    // every id of the boundary second in the checkpoint (about 1 MB here): the save failed and
    // every pass delivered the burst again.
    let burst_at = T0 - 2000;
    let mut events: Vec<_> = (0..25_000)
        .map(|i| event(&uuid_like(i), burst_at))
        .collect();
    events.extend((0..5).map(|i| event(&format!("before-{i}"), burst_at - 10 - i)));
    events.extend((0..5).map(|i| event(&format!("after-{i}"), burst_at + 10 + i)));
    let cfg = config(&[
        ("audit_requests_per_minute", "0"),
        ("audit_page_size", "1000"),
    ]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    for (k, v) in &store.map {
        assert!(
            v.len() <= crate::env::MAX_VALUE_BYTES,
            "{k}: {} bytes",
            v.len()
        );
    }
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats");
    assert_eq!(got, truth(&events, T0 - 60));
    let cp = AuditCheckpoint::decode(&store.map[CHECKPOINT_KEY]).unwrap();
    assert!(
        store.map[CHECKPOINT_KEY].len() < 4096,
        "the checkpoint stays small: {cp:?}"
    );
    // Passes later, nothing of the burst comes again.
    clock.now.set(T0 + 60);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].records, 0, "{r:?}");
}

#[test]
fn a_resume_inside_a_big_burst_after_a_crash_repeats_at_most_that_batch() {
    // The pass is cut (a store failure = a crash) right after the burst page reached the sink;
    // the next pass resumes from the checkpoint before it and may deliver that batch again, but
    // nothing else, and loses nothing.
    let burst_at = T0 - 2000;
    let mut events: Vec<_> = (0..12_000)
        .map(|i| event(&uuid_like(i), burst_at))
        .collect();
    events.extend((0..30).map(|i| event(&format!("o{i}"), burst_at - 300 + i * 20)));
    let cfg = config(&[("audit_requests_per_minute", "0"), ("audit_page_size", "7")]);
    for fail_at in 2..8 {
        let mut t = Faulty::new(events.clone());
        let (mut store, mut sink, clock) =
            (MemStore::default(), VecSink::default(), TestClock::new(T0));
        store.fail_set_at = Some(fail_at);
        pass(&cfg, &mut t, &mut store, &mut sink, &clock);
        store.fail_set_at = None;
        let first = sink.ids.len();
        clock.now.set(T0 + 1);
        let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
        assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
        let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
        assert_eq!(got, truth(&events, T0 - 59), "fail at set {fail_at}");
        let repeats = sink.ids.len() - got.len();
        assert!(
            repeats <= 12_007,
            "fail at set {fail_at}: {repeats} repeats after {first} delivered"
        );
    }
}

#[test]
fn a_host_clock_ahead_of_slack_neither_stalls_nor_loses() {
    // Our clock runs 300 s ahead of Slack's. Slack refuses a `latest` in its future
    // (invalid_range): planning from our clock alone failed every pass.
    let slack_now = T0 - 300;
    let mut events: Vec<_> = (0..10)
        .map(|i| event(&format!("e{i}"), slack_now - 3000 + i * 250))
        .collect();
    let cfg = config(&[("audit_requests_per_minute", "0")]);
    let mut t = Faulty::new(events.clone());
    t.model.now = Some(slack_now);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    // Slack's now minus the lag (less the second a Date header's rounding may hide).
    assert_eq!(
        r.streams[0].watermark,
        Some(slack_now - 59),
        "Slack's now minus the lag"
    );
    // An event Slack writes at its now − 30 s (after our first pass): our clock would have
    // called that second settled long ago; Slack's does not, so it is still collected.
    let e = event("just-in", slack_now - 30);
    t.model.source.0.push(e.clone());
    events.push(e);
    t.model.now = Some(slack_now + 100);
    clock.now.set(T0 + 100);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    let got: BTreeSet<String> = sink.ids.iter().cloned().collect();
    assert_eq!(got.len(), sink.ids.len(), "no repeats");
    assert_eq!(got, truth(&events, slack_now + 40));
    for url in &t.model.requests {
        let latest: i64 = parse_query(url)
            .into_iter()
            .find(|(k, _)| k == "latest")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!(
            latest <= slack_now + 100,
            "never past Slack's clock after the first answer: {url}"
        );
    }
}

#[test]
fn the_look_back_reads_ages_by_slacks_clock() {
    // Our clock runs 2 h ahead of Slack's, and the first pass's first window reaches Slack's
    // present. Counting its age from our clock, the 5-minute re-read would have taken every
    // second of it as read at 2 h, and never read again a second Slack indexes late (from the
    // first answer on). Then, between passes, Slack's clock moves on 5 minutes and ours either
    // as much or only a second (an NTP step here, a pause there): with ours still, the offset the
    // last pass saw is stale, and the re-read planned from it would wait a pass for the late
    // event; the one planned again from this pass's answers reads it.
    for ours_moves in [300, 1] {
        let slack_now = T0 - 7200;
        let cfg = config(&[
            ("audit_requests_per_minute", "0"),
            ("backfill_start_time", &(slack_now - 600).to_string()),
        ]);
        let mut t = Faulty::new(vec![event("a", slack_now - 500)]);
        t.model.now = Some(slack_now);
        let (mut store, mut sink, clock) =
            (MemStore::default(), VecSink::default(), TestClock::new(T0));
        let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
        assert_eq!(r.streams[0].watermark, Some(slack_now - 59), "{r:?}");
        t.model.source.0.push(event("late", slack_now - 100));
        t.model.now = Some(slack_now + 300);
        clock.now.set(T0 + ours_moves);
        let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
        assert_eq!(
            r.streams[0].late_events, 1,
            "ours moved {ours_moves}: {r:?}"
        );
        assert_eq!(sink.ids, vec!["a", "late"], "ours moved {ours_moves}");
    }
}

#[test]
fn a_clock_ahead_of_a_slack_that_accepts_the_future_still_loses_nothing() {
    // The same, with a Slack that answers a future `latest` (its Date header tells the skew).
    struct Accepting(AuditApiModel<EventList>, i64);
    impl Transport for Accepting {
        fn get(&mut self, url: &str, b: &str, t: Duration) -> Result<HttpResponse, TransportError> {
            self.0.now = None;
            let mut r = self.0.get(url, b, t)?;
            r.date = Some(httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(self.1 as u64),
            ));
            Ok(r)
        }
    }
    let slack_now = T0 - 300;
    let cfg = config(&[("audit_requests_per_minute", "0")]);
    let mut t = Accepting(
        AuditApiModel::new(EventList(vec![event("a", slack_now - 1000)])),
        slack_now,
    );
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].watermark, Some(slack_now - 59), "{r:?}");
    t.0.source.0.push(event("b", slack_now - 30));
    t.1 = slack_now + 100;
    clock.now.set(T0 + 100);
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(sink.ids, vec!["a", "b"]);
}

#[test]
fn a_first_pass_from_now_anchors_at_slacks_now_when_our_clock_is_ahead() {
    // No backfill: the stream starts "from now". Our clock is 5 minutes ahead of Slack's, so our
    // now is Slack's future; anchored there, events Slack writes in the next 5 minutes would lie
    // below the watermark for ever.
    struct Dated(AuditApiModel<EventList>, i64);
    impl Transport for Dated {
        fn get(&mut self, url: &str, b: &str, t: Duration) -> Result<HttpResponse, TransportError> {
            self.0.now = Some(self.1);
            let mut r = self.0.get(url, b, t)?;
            r.date = Some(httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(self.1 as u64),
            ));
            Ok(r)
        }
    }
    let slack_now = T0 - 300;
    let cfg = config(&[
        ("audit_requests_per_minute", "0"),
        ("backfill_start_time", ""),
    ]);
    let mut t = Dated(
        AuditApiModel::new(EventList(vec![event("old", slack_now - 1000)])),
        slack_now,
    );
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].watermark, Some(slack_now + 1 - 60), "{r:?}");
    assert!(sink.ids.is_empty(), "no history");
    t.0.source.0.push(event("fresh", slack_now + 10));
    t.1 = slack_now + 100;
    clock.now.set(T0 + 100);
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(sink.ids, vec!["fresh"]);
}

#[test]
fn a_forward_window_longer_than_the_look_back_skips_no_second_a_tier_still_owes() {
    // Found by the fault schedules (seed 10218): the look-back tier had re-read only part of the
    // seconds below the watermark when a slow pass planned a forward window longer than the
    // look-back. Keeping no ids below `latest - lookback` of that window moved the ledger's
    // start past the seconds the tier still owed, so they were never read again, and an event
    // Slack indexed late at the watermark's second was lost.
    struct Slow<'c> {
        model: AuditApiModel<EventList>,
        clock: &'c TestClock,
        slow_at: usize,
        n: usize,
    }
    impl Transport for Slow<'_> {
        fn get(&mut self, url: &str, b: &str, t: Duration) -> Result<HttpResponse, TransportError> {
            self.n += 1;
            if self.n == self.slow_at {
                self.clock.now.set(self.clock.now.get() + 9);
            }
            self.model.now = Some(self.clock.now.get());
            self.model.get(url, b, t)
        }
    }
    let cfg = config(&[
        ("audit_requests_per_minute", "0"),
        ("backfill_start_time", &(T0 - 100).to_string()),
        ("audit_lag_seconds", "3"),
        ("audit_lookback_seconds", "10"),
    ]);
    let clock = TestClock::new(T0);
    let mut t = Slow {
        model: AuditApiModel::new(EventList(vec![event("a", T0 - 50)])),
        clock: &clock,
        slow_at: 0,
        n: 0,
    };
    let (mut store, mut sink) = (MemStore::default(), VecSink::default());
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].watermark, Some(T0 - 3), "{r:?}");
    // Indexed late at the watermark's second.
    t.model.source.0.push(event("late", T0 - 3));
    // The next pass's first request (the look-back, due up to T0 - 5) takes 9 s: the forward
    // window after it reaches T0 + 11, 13 s long.
    clock.now.set(T0 + 5);
    t.slow_at = t.n + 1;
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    clock.now.set(T0 + 40);
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(sink.ids, vec!["a", "late"], "{r:?}");
}

#[test]
fn an_entry_slack_sends_below_a_window_is_kept_for_the_look_back_that_still_owes_its_second() {
    // Passes close together: the look-back tier has not re-read up to the window. Slack's answer
    // for the window reaches 30 s below it and brings an event indexed late there: delivered,
    // it must be in the ledger when the tier re-reads that second, or it goes out twice.
    struct Spill(AuditApiModel<EventList>);
    impl Transport for Spill {
        fn get(&mut self, url: &str, b: &str, t: Duration) -> Result<HttpResponse, TransportError> {
            let q = parse_query(url);
            let oldest: i64 = q
                .iter()
                .find(|(k, _)| k == "oldest")
                .unwrap()
                .1
                .parse()
                .unwrap();
            let url = url.replace(
                &format!("oldest={oldest}"),
                &format!("oldest={}", oldest - 30),
            );
            self.0.get(&url, b, t)
        }
    }
    let cfg = config(&[
        ("audit_requests_per_minute", "0"),
        ("backfill_start_time", &(T0 - 100).to_string()),
        ("audit_lag_seconds", "3"),
        ("audit_lookback_seconds", "10"),
    ]);
    let clock = TestClock::new(T0);
    let mut t = Spill(AuditApiModel::new(EventList(vec![event("a", T0 - 50)])));
    let (mut store, mut sink) = (MemStore::default(), VecSink::default());
    t.0.now = Some(T0);
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    t.0.source.0.push(event("late", T0 - 5));
    for now in [T0 + 2, T0 + 20, T0 + 40] {
        clock.now.set(now);
        t.0.now = Some(now);
        pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    }
    assert_eq!(sink.ids, vec!["a", "late"]);
}

#[test]
fn a_format_1_checkpoint_resumes_inside_its_window_without_repeats() {
    // Written by the previous release: inside a window, boundary ids in the checkpoint.
    let events: Vec<_> = (0..6)
        .map(|i| event(&format!("e{i}"), T0 - 3000 + i * 100))
        .collect();
    let v1 = serde_json::json!({
        "v": 1, "watermark": T0 - 3601, "filters": "", "group": 0,
        "window": {"oldest": T0 - 3600, "latest": T0 - 60, "boundary": T0 - 2700, "boundary_ids": ["e3"]}
    });
    let cfg = config(&[("audit_requests_per_minute", "0")]);
    let mut t = Faulty::new(events.clone());
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    store
        .map
        .insert(CHECKPOINT_KEY.into(), serde_json::to_vec(&v1).unwrap());
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    // e4, e5 were delivered before the boundary (e3 at it): only e0..e2 remain, and the look-back
    // does not deliver what format 1 delivered.
    assert_eq!(sink.ids, vec!["e2", "e1", "e0"]);
    let cp = AuditCheckpoint::decode(&store.map[CHECKPOINT_KEY]).unwrap();
    assert_eq!(cp.v, 2);
    assert!(!String::from_utf8_lossy(&store.map[CHECKPOINT_KEY]).contains("boundary_ids"));
}

#[test]
fn entries_slack_sends_outside_the_range_are_delivered_once() {
    // A Slack that adds one event from outside the asked range to its first answer.
    struct Stray(AuditApiModel<EventList>, bool);
    impl Transport for Stray {
        fn get(&mut self, url: &str, b: &str, t: Duration) -> Result<HttpResponse, TransportError> {
            let mut r = self.0.get(url, b, t)?;
            if !self.1 {
                self.1 = true;
                let text = String::from_utf8(r.body).unwrap();
                let stray = event("stray", T0 + 5000).json;
                let sep = if text.starts_with("{\"entries\":[]") {
                    ""
                } else {
                    ","
                };
                r.body = text
                    .replacen("{\"entries\":[", &format!("{{\"entries\":[{stray}{sep}"), 1)
                    .into_bytes();
            }
            Ok(r)
        }
    }
    let cfg = config(&[("audit_requests_per_minute", "0")]);
    let mut t = Stray(
        AuditApiModel::new(EventList(vec![event("a", T0 - 3000)])),
        false,
    );
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert!(
        r.streams[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("outside the requested range"),
        "{r:?}"
    );
    assert_eq!(sink.ids, vec!["stray", "a"]);
    // When its own window comes, the stray is not delivered again.
    t.0.source.0.push(event("stray", T0 + 5000));
    clock.now.set(T0 + 6000);
    pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(sink.ids, vec!["stray", "a"]);
}

/// A store where, right after our first checkpoint after a page, a rival that had stalled past
/// its own lease (so it never saw ours) writes its newer checkpoint.
struct StaleRival {
    inner: MemStore,
    rival: Option<Vec<u8>>,
    /// The ledger parts as they stood when the rival took over.
    parts_at_takeover: Option<BTreeMap<String, Vec<u8>>>,
}

fn ledger_parts(store: &MemStore) -> BTreeMap<String, Vec<u8>> {
    store
        .map
        .iter()
        .filter(|(k, _)| k.starts_with("slack-logs/v1/audit/org/ledger/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl crate::env::KvStore for StaleRival {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, crate::env::StoreError> {
        self.inner.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), crate::env::StoreError> {
        self.inner.set(key, value)?;
        let after_a_page =
            key == CHECKPOINT_KEY && String::from_utf8_lossy(value).contains("\"boundary\":1");
        if after_a_page {
            if let Some(rival) = self.rival.take() {
                self.inner.map.insert(key.to_string(), rival);
                self.parts_at_takeover = Some(ledger_parts(&self.inner));
            }
        }
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), crate::env::StoreError> {
        self.inner.delete(key)
    }
}

#[test]
fn a_pass_never_sets_back_a_checkpoint_another_pass_wrote() {
    let events: Vec<_> = (0..12)
        .map(|i| event(&format!("e{i}"), T0 - 2000 + i * 10))
        .collect();
    let cfg = config(&[("audit_page_size", "3"), ("audit_requests_per_minute", "0")]);
    let mut rival = AuditCheckpoint::initial(&cfg, T0);
    rival.watermark = T0 - 100;
    rival.ledger.complete_from = T0 - 99;
    let rival_bytes = rival.encode();
    let mut t = Faulty::new(events);
    let mut store = StaleRival {
        inner: MemStore::default(),
        rival: Some(rival_bytes.clone()),
        parts_at_takeover: None,
    };
    let (mut sink, clock) = (VecSink::default(), TestClock::new(T0));
    let mut env = Env {
        transport: &mut t,
        store: &mut store,
        sink: &mut sink,
        clock: &clock,
        log: &|_| {},
        random: &crate::testutil::test_random,
    };
    let r = run_pass(&cfg, &mut env, &RunOptions::default());
    assert_eq!(r.streams[0].outcome, Outcome::HeldElsewhere, "{r:?}");
    assert!(
        r.streams[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("another pass wrote this walk's checkpoint"),
        "{r:?}"
    );
    assert_eq!(
        store.inner.map[CHECKPOINT_KEY], rival_bytes,
        "the newer checkpoint stays"
    );
    assert_eq!(
        Some(ledger_parts(&store.inner)),
        store.parts_at_takeover,
        "the ledger parts the newer checkpoint counts stay too"
    );
    // We stopped at the save after our second page: at most that page went out twice.
    assert_eq!(sink.ids.len(), 6, "{:?}", sink.ids);
}

#[test]
fn an_old_clock_offset_is_refreshed_rather_than_trusted_for_ever() {
    // A pass saw Slack's clock 4 h behind ours; later Slack's clock is right again. Planning
    // from the stored offset alone would find nothing due, every pass (with no look-back to
    // make a request that brings a fresh Date).
    let cfg = config(&[
        ("audit_requests_per_minute", "0"),
        ("audit_lookback_seconds", "0"),
    ]);
    let mut t = Faulty::new(vec![event("a", T0 - 3000), event("b", T0 - 100)]);
    t.model.now = Some(T0);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let mut cp = AuditCheckpoint::initial(&cfg, T0);
    cp.clock_offset = Some(-4 * 3600);
    cp.watermark = T0 - 3600;
    cp.ledger.complete_from = T0 - 3599;
    store.map.insert(CHECKPOINT_KEY.into(), cp.encode());
    let r = pass(&cfg, &mut t, &mut store, &mut sink, &clock);
    assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
    assert_eq!(sink.ids, vec!["b", "a"], "{r:?}");
    let cp = AuditCheckpoint::decode(&store.map[CHECKPOINT_KEY]).unwrap();
    assert_eq!(cp.watermark, T0 - 60, "planned by the fresh offset");
    assert!(
        cp.clock_offset.is_some_and(|o| o.abs() <= 1),
        "{:?}",
        cp.clock_offset
    );
}
