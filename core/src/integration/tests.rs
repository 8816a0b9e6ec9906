use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::env::{HttpResponse, Transport, TransportError};
use crate::fetch::{Deadline, FetchStats, Fetcher};
use crate::synthetic::parse_query;
use crate::testutil::{MemStore, TestClock, VecSink};

const T0: i64 = 1_700_000_000;

/// team.integrationLogs in memory: classic paging over a list kept newest first (or oldest
/// first), entries that can arrive between any two requests.
struct Model {
    /// Newest first.
    entries: Vec<Value>,
    oldest_first: bool,
    n: usize,
    arrivals: HashMap<usize, Vec<Value>>,
    error_at: HashMap<usize, Value>,
}

impl Model {
    fn new(entries: Vec<Value>) -> Self {
        let mut m = Model {
            entries: Vec::new(),
            oldest_first: false,
            n: 0,
            arrivals: HashMap::new(),
            error_at: HashMap::new(),
        };
        m.add(entries);
        m
    }

    fn add(&mut self, new: Vec<Value>) {
        self.entries.extend(new);
        self.entries.sort_by_key(|e| std::cmp::Reverse(date_of(e)));
    }
}

fn date_of(e: &Value) -> i64 {
    match &e["date"] {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_i64().unwrap(),
    }
}

impl Transport for Model {
    fn get(&mut self, url: &str, _: &str, _: Duration) -> Result<HttpResponse, TransportError> {
        self.n += 1;
        if let Some(new) = self.arrivals.remove(&self.n) {
            self.add(new);
        }
        if let Some(body) = self.error_at.get(&self.n) {
            return Ok(HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: body.to_string().into_bytes(),
            });
        }
        let q = parse_query(url);
        let get = |k: &str| {
            q.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.parse::<usize>().unwrap())
                .unwrap()
        };
        let (count, page) = (get("count"), get("page"));
        let mut list = self.entries.clone();
        if self.oldest_first {
            list.reverse();
        }
        let total = list.len();
        let slice: Vec<Value> = list
            .into_iter()
            .skip((page - 1) * count)
            .take(count)
            .collect();
        let body = json!({"ok": true, "logs": slice, "paging": {"count": count, "total": total, "page": page, "pages": total.div_ceil(count).max(1)}});
        Ok(HttpResponse {
            status: 200,
            retry_after: None,
            date: None,
            body: body.to_string().into_bytes(),
        })
    }
}

fn entry(i: usize, date: i64) -> Value {
    match i % 4 {
        0 => {
            json!({"service_id": 1000 + i, "service_type": "Google Calendar", "user_id": "U1", "user_name": "jo", "channel": "C1", "date": date.to_string(), "change_type": "enabled", "scope": "incoming-webhook"})
        }
        1 => {
            json!({"app_id": format!("A{i}"), "app_type": "App", "user_id": "U2", "user_name": "bo", "date": date.to_string(), "change_type": "added", "scope": "chat:write"})
        }
        2 => {
            json!({"service_id": (2000 + i).to_string(), "service_type": "RSS", "user_id": "U3", "user_name": "al", "date": date.to_string(), "change_type": "disabled", "reason": "user", "rss_feed": true, "rss_feed_change_type": "added", "rss_feed_title": "t", "rss_feed_url": "https://example.com/f"})
        }
        _ => {
            json!({"app_id": format!("A{i}"), "app_type": "Other", "user_id": "U4", "user_name": "cy", "date": date.to_string(), "change_type": "expanded", "scope": "channels:read"})
        }
    }
}

fn hash_of(e: &Value) -> String {
    canonical(&e.to_string(), None).unwrap().1
}

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut all = vec![
        ("slack_token", "xoxp-t"),
        ("slack_api_base", "https://slack.test/api"),
        ("backfill_start_time", "1699990000"),
        ("integration_page_size", "3"),
    ];
    for (k, v) in pairs {
        all.retain(|(ak, _)| ak != k);
        all.push((k, v));
    }
    Config::from_pairs(&all).unwrap()
}

struct Run {
    store: MemStore,
    sink: VecSink,
    clock: TestClock,
}

impl Run {
    fn new() -> Self {
        Run {
            store: MemStore::default(),
            sink: VecSink::default(),
            clock: TestClock::new(T0),
        }
    }

    fn pass(&mut self, cfg: &Config, model: &mut Model, budget: u64) -> (WalkEnd, WalkStats, u32) {
        let key = checkpoint_key(None);
        let mut cp = match self.store.map.get(&key) {
            Some(b) => IntegrationCheckpoint::decode(b).unwrap(),
            None => IntegrationCheckpoint::initial(cfg, T0),
        };
        let mut fetcher = Fetcher {
            transport: model,
            clock: &self.clock,
            deadline: Deadline::after(&self.clock, Duration::from_secs(budget)),
            request_timeout: Duration::from_secs(1),
            stats: FetchStats::default(),
            log: &|_| {},
            pacer: None,
        };
        let mut io = StreamIo {
            store: &mut self.store,
            sink: &mut self.sink,
            collected_at: T0,
            log: &|_| {},
            lease: None,
        };
        let mut stats = WalkStats::default();
        let end = walk(
            cfg,
            None,
            "xoxp-t",
            &mut fetcher,
            &mut io,
            &mut cp,
            &mut stats,
        );
        let requests = fetcher.stats.requests;
        (end, stats, requests)
    }

    fn until_caught_up(&mut self, cfg: &Config, model: &mut Model, budget: u64) {
        for _ in 0..200 {
            if self.pass(cfg, model, budget).0 == WalkEnd::CaughtUp {
                return;
            }
        }
        panic!("never caught up");
    }

    fn ids(&self) -> BTreeSet<String> {
        let set: BTreeSet<String> = self.sink.ids.iter().cloned().collect();
        assert_eq!(set.len(), self.sink.ids.len(), "no repeats");
        set
    }
}

fn truth(entries: &[Value], from: i64) -> BTreeSet<String> {
    entries
        .iter()
        .filter(|e| date_of(e) >= from)
        .map(hash_of)
        .collect()
}

#[test]
fn canonical_form_normalises_types() {
    let a = json!({"service_id": 12, "date": "100", "user_id": "U"});
    let b = json!({"user_id": "U", "date": 100, "service_id": "12"});
    assert_eq!(
        canonical(&a.to_string(), None).unwrap(),
        canonical(&b.to_string(), None).unwrap()
    );
    assert_eq!(canonical(&a.to_string(), None).unwrap().0, 100);
    assert_ne!(
        canonical(&a.to_string(), Some("T1")).unwrap(),
        canonical(&a.to_string(), Some("T2")).unwrap()
    );
    assert!(canonical(r#"{"date":"soon"}"#, None).is_err());
    assert!(canonical(r#"{"user_id":"U"}"#, None).is_err());
    assert!(canonical("[1]", None).is_err());
}

#[test]
fn mixed_entries_over_several_passes_arrive_once() {
    let cfg = config(&[]);
    let first: Vec<Value> = (0..17)
        .map(|i| entry(i, T0 - 9000 + (i as i64 / 2) * 100))
        .collect();
    let mut model = Model::new(first.clone());
    let mut run = Run::new();
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.ids(), truth(&first, 1_699_990_000));
    // Records keep the raw entry and carry its date as time.
    let later: Vec<Value> = (17..24)
        .map(|i| entry(i, T0 + 50 + (i as i64 % 3)))
        .collect();
    model.add(later.clone());
    run.until_caught_up(&cfg, &mut model, 60);
    let mut all = first.clone();
    all.extend(later);
    assert_eq!(run.ids(), truth(&all, 1_699_990_000));
}

#[test]
fn a_far_future_entry_cannot_push_the_watermark_past_real_entries() {
    let cfg = config(&[]);
    let future = entry(900, T0 + 10 * 365 * 86_400);
    let first = vec![future.clone(), entry(1, T0 - 500), entry(2, T0 - 400)];
    let mut model = Model::new(first.clone());
    let mut run = Run::new();
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.ids(), truth(&first, 1_699_990_000), "the future entry is delivered too");
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    assert!(cp.watermark <= T0, "watermark {} stayed at real data", cp.watermark);
    // Real entries after it are still collected, and the future one is not repeated.
    let later = vec![entry(3, T0 + 30), entry(4, T0 + 40)];
    model.add(later.clone());
    run.until_caught_up(&cfg, &mut model, 60);
    let mut all = first;
    all.extend(later);
    assert_eq!(run.ids(), truth(&all, 1_699_990_000));
}

#[test]
fn sorted_walk_stops_early_at_old_pages() {
    let cfg = config(&[]);
    let old: Vec<Value> = (0..60)
        .map(|i| entry(i, T0 - 8000 + i as i64 * 100))
        .collect();
    let mut model = Model::new(old);
    let mut run = Run::new();
    run.until_caught_up(&cfg, &mut model, 60);
    model.add(vec![entry(100, T0 + 10), entry(101, T0 + 11)]);
    let (end, _, requests) = run.pass(&cfg, &mut model, 60);
    assert_eq!(end, WalkEnd::CaughtUp);
    // Page 1: the new entries; page 2: within the overlap; page 3: older than it, so the end.
    assert!(
        requests <= 3,
        "stopped at the first page older than the watermark's overlap, read {requests}"
    );
    assert_eq!(run.sink.ids.len(), 62);
}

#[test]
fn entries_arriving_mid_walk_shift_pages_without_loss_or_repeat() {
    let cfg = config(&[]);
    let first: Vec<Value> = (0..20)
        .map(|i| entry(i, T0 - 3000 + i as i64 * 10))
        .collect();
    let mut model = Model::new(first.clone());
    let arrivals: Vec<Value> = (50..56).map(|i| entry(i, T0 - 100 + i as i64)).collect();
    model.arrivals.insert(3, arrivals[..3].to_vec());
    model.arrivals.insert(5, arrivals[3..].to_vec());
    let mut run = Run::new();
    run.until_caught_up(&cfg, &mut model, 60);
    run.until_caught_up(&cfg, &mut model, 60);
    let mut all = first;
    all.extend(arrivals);
    assert_eq!(run.ids(), truth(&all, 1_699_990_000));
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    assert!(!cp.unsorted, "shifted pages are not disorder");
}

#[test]
fn budget_cut_resumes_at_the_next_page() {
    let cfg = config(&[]);
    let first: Vec<Value> = (0..40)
        .map(|i| entry(i, T0 - 3000 + i as i64 * 10))
        .collect();
    let mut model = Model::new(first.clone());
    let mut run = Run::new();
    run.clock.tick.set(Duration::from_millis(900));
    let mut passes = 0;
    while run.pass(&cfg, &mut model, 6).0 != WalkEnd::CaughtUp {
        passes += 1;
        assert!(passes < 100);
    }
    assert!(passes > 0, "the budget cut at least one pass");
    assert_eq!(run.ids(), truth(&first, 1_699_990_000));
}

#[test]
fn oldest_first_order_is_detected_and_every_page_read() {
    let cfg = config(&[]);
    let first: Vec<Value> = (0..20)
        .map(|i| entry(i, T0 - 3000 + i as i64 * 10))
        .collect();
    let mut model = Model::new(first.clone());
    model.oldest_first = true;
    let mut run = Run::new();
    run.until_caught_up(&cfg, &mut model, 60);
    let later: Vec<Value> = (30..34).map(|i| entry(i, T0 + i as i64)).collect();
    model.add(later.clone());
    run.until_caught_up(&cfg, &mut model, 60);
    let mut all = first;
    all.extend(later);
    assert_eq!(run.ids(), truth(&all, 1_699_990_000));
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    assert!(cp.unsorted);
}

#[test]
fn slack_errors_fail_with_advice_and_keep_the_checkpoint() {
    let cfg = config(&[]);
    let mut model = Model::new((0..5).map(|i| entry(i, T0 - 100 + i as i64)).collect());
    model.error_at.insert(
        1,
        json!({"ok": false, "error": "missing_scope", "needed": "admin", "provided": "identify"}),
    );
    let mut run = Run::new();
    let (end, _, _) = run.pass(&cfg, &mut model, 60);
    match end {
        WalkEnd::Failed { code, message } => {
            assert_eq!(code, "missing_scope");
            assert!(message.contains("needed scope: admin"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(run.store.map.is_empty());
    assert!(run.sink.ids.is_empty());
}

#[test]
fn malformed_entries_are_errors() {
    for body in [
        &br#"{"ok":true,"logs":[{"date":"x"}]}"#[..],
        br#"{"ok":true,"logs":{"a":1}}"#,
        br#"{"ok":true}"#,
        br#"{"ok":true,"logs":[{"date":"5"}"#,
    ] {
        assert!(
            parse_page(body, None).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_lose_nothing(
        dates in prop::collection::vec(0i64..400, 1..50),
        count in 2u32..6,
        oldest_first in any::<bool>(),
        arrivals in prop::collection::vec((1usize..30, 0i64..40, 1usize..4), 0..6),
        sink_fail in prop::option::of(1usize..20),
        store_fail in prop::option::of(1usize..20),
    ) {
        let count = count.to_string();
        let cfg = config(&[("integration_page_size", &count), ("backfill_start_time", &(T0 - 500).to_string())]);
        let first: Vec<Value> = dates.iter().enumerate().map(|(i, d)| entry(i, T0 - 450 + d)).collect();
        let mut model = Model::new(first.clone());
        model.oldest_first = oldest_first;
        let mut all = first;
        for (k, (at, d, n)) in arrivals.iter().enumerate() {
            let new: Vec<Value> = (0..*n).map(|j| entry(1000 + k * 10 + j, T0 + d)).collect();
            all.extend(new.clone());
            model.arrivals.entry(*at).or_default().extend(new);
        }
        let mut run = Run::new();
        run.sink.fail_at = sink_fail;
        run.store.fail_set_at = store_fail;
        let mut interrupted = 0;
        for _ in 0..80 {
            let (before, sets) = (run.sink.ids.len(), run.store.sets);
            let (end, _, _) = run.pass(&cfg, &mut model, 60);
            if matches!(&end, WalkEnd::Failed { code, .. } if code == "store_error") && run.store.fail_set_at.is_some_and(|f| f > sets) {
                interrupted += run.sink.ids.len() - before;
            }
            if model.arrivals.is_empty() && end == WalkEnd::CaughtUp && run.store.fail_set_at.is_none_or(|f| f <= run.store.sets) && run.sink.fail_at.is_none_or(|f| f <= run.sink.batches) {
                break;
            }
        }
        // One more walk picks up whatever arrived during the last one.
        run.until_caught_up(&cfg, &mut model, 60);
        let got: BTreeSet<String> = run.sink.ids.iter().cloned().collect();
        prop_assert_eq!(&got, &truth(&all, T0 - 500));
        prop_assert!(run.sink.ids.len() - got.len() <= interrupted);
    }
}
