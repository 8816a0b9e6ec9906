use std::cell::RefCell;
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
    /// Entries that arrive before request `n`, dated relative to the newest entry listed then:
    /// (entry number, seconds from the newest date, identical copies beyond the first). A
    /// negative offset writes the entry out of order, below entries already listed.
    relative_arrivals: HashMap<usize, Vec<(usize, i64, usize)>>,
    /// Among entries of one date, list the one added last first (as the simulator does);
    /// otherwise the one added first.
    ties_newest_added_first: bool,
    error_at: HashMap<usize, Value>,
    /// List entries newest-added first, whatever their dates (as the simulator does): an entry
    /// written late sits above newer ones.
    listed_as_added: bool,
}

impl Model {
    fn new(entries: Vec<Value>) -> Self {
        let mut m = Model {
            entries: Vec::new(),
            oldest_first: false,
            n: 0,
            arrivals: HashMap::new(),
            relative_arrivals: HashMap::new(),
            ties_newest_added_first: false,
            error_at: HashMap::new(),
            listed_as_added: false,
        };
        m.add(entries);
        m
    }

    fn add(&mut self, new: Vec<Value>) {
        if self.listed_as_added {
            let old = std::mem::replace(&mut self.entries, new);
            self.entries.extend(old);
            return;
        }
        if self.ties_newest_added_first {
            let old = std::mem::replace(&mut self.entries, new);
            self.entries.extend(old);
        } else {
            self.entries.extend(new);
        }
        // Stable: entries of one date keep the order above.
        self.entries.sort_by_key(|e| std::cmp::Reverse(date_of(e)));
    }

    /// Adds entry `i` (and `copies` identical copies) dated `offset` seconds from the newest
    /// entry listed.
    fn add_relative(&mut self, i: usize, offset: i64, copies: usize) {
        let newest = self.entries.iter().map(date_of).max().unwrap_or(T0);
        let e = entry(i, newest + offset);
        self.add(std::iter::repeat_n(e, 1 + copies).collect());
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
        for (i, offset, copies) in self.relative_arrivals.remove(&self.n).unwrap_or_default() {
            self.add_relative(i, offset, copies);
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

/// The record ids of entries as the collector numbers them (copies counted), with dates.
fn ids_of(entries: &[Value]) -> Vec<(i64, String)> {
    let texts: Vec<String> = entries.iter().map(Value::to_string).collect();
    listing_ids(texts.iter().map(String::as_str), None).unwrap()
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
    logs: RefCell<Vec<String>>,
}

impl Run {
    fn new() -> Self {
        Run {
            store: MemStore::default(),
            sink: VecSink::default(),
            clock: TestClock::new(T0),
            logs: RefCell::new(Vec::new()),
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
        let logs = &self.logs;
        let log = |line: &str| logs.borrow_mut().push(line.to_string());
        let mut io = StreamIo {
            store: &mut self.store,
            sink: &mut self.sink,
            collected_at: T0,
            log: &log,
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
    ids_of(entries)
        .into_iter()
        .filter(|(date, _)| *date >= from)
        .map(|(_, id)| id)
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
    // A 128-bit SHA-256 content id (format 2), not the 16-digit FNV-1a of format 1.
    let (_, id) = canonical(&a.to_string(), None).unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(
        id,
        crate::record::content_id(&[b"", br#"{"date":"100","service_id":"12","user_id":"U"}"#])
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
    assert_eq!(
        run.ids(),
        truth(&first, 1_699_990_000),
        "the future entry is delivered too"
    );
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    assert!(
        cp.watermark <= T0,
        "watermark {} stayed at real data",
        cp.watermark
    );
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
fn copies_have_ids_of_their_own() {
    let a = entry(1, T0).to_string();
    let b = entry(2, T0).to_string();
    let ids = listing_ids([a.as_str(), b.as_str(), a.as_str(), a.as_str()], None).unwrap();
    let first = canonical(&a, None).unwrap().1;
    assert_eq!(ids[0].1, first);
    assert_eq!(ids[2].1, copy_id(&first, 1));
    assert_eq!(ids[3].1, copy_id(&first, 2));
    let distinct: BTreeSet<&String> = ids.iter().map(|(_, id)| id).collect();
    assert_eq!(distinct.len(), 4);
    assert!(ids.iter().all(|(d, id)| *d == T0 && id.len() == 32));
}

#[test]
fn identical_entries_in_one_page_are_each_a_record() {
    let cfg = config(&[("integration_page_size", "10")]);
    let twice = entry(7, T0 - 100);
    let first = vec![twice.clone(), twice.clone(), entry(8, T0 - 200)];
    let mut model = Model::new(first.clone());
    let mut run = Run::new();
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(
        run.sink.ids.len(),
        3,
        "two identical entries are two records"
    );
    assert_eq!(run.ids(), truth(&first, 1_699_990_000));
    // Read again (the next walk sees the same listing): nothing more.
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.sink.ids.len(), 3);
}

#[test]
fn identical_entries_split_by_a_page_boundary_are_each_a_record() {
    // Pages of 3: the copies are entries 3 and 4, on pages 1 and 2.
    let cfg = config(&[]);
    let twice = entry(7, T0 - 300);
    let first = vec![
        entry(1, T0 - 100),
        entry(2, T0 - 200),
        twice.clone(),
        twice.clone(),
        entry(3, T0 - 400),
        entry(4, T0 - 500),
    ];
    let mut model = Model::new(first.clone());
    let mut run = Run::new();
    let (end, _, requests) = run.pass(&cfg, &mut model, 60);
    assert_eq!(end, WalkEnd::CaughtUp);
    assert_eq!(
        requests, 2,
        "an unchanged total tells the second copy is not the first shown again"
    );
    assert_eq!(run.ids(), truth(&first, 1_699_990_000));
    assert_eq!(run.sink.ids.len(), 6);
}

#[test]
fn copies_at_a_page_boundary_while_entries_arrive_are_counted_exactly() {
    // Page 1 ends with the first copy. Before page 2 is read, two new entries arrive at the top,
    // so page 2 starts with page 1's last two entries again, then the second copy: the walk
    // reads page 1 once more to see how far it moved, and delivers the second copy only.
    let cfg = config(&[]);
    let twice = entry(7, T0 - 300);
    let first = vec![
        entry(1, T0 - 100),
        entry(2, T0 - 200),
        twice.clone(),
        twice.clone(),
        entry(3, T0 - 400),
        entry(4, T0 - 500),
        entry(5, T0 - 600),
    ];
    let mut model = Model::new(first.clone());
    let arrivals = vec![entry(50, T0 - 10), entry(51, T0 - 20)];
    model.arrivals.insert(2, arrivals.clone());
    let mut run = Run::new();
    let (end, _, requests) = run.pass(&cfg, &mut model, 60);
    assert_eq!(end, WalkEnd::CaughtUp);
    assert_eq!(
        run.ids(),
        truth(&first, 1_699_990_000),
        "each copy once, the arrivals left to the next walk"
    );
    assert!(requests >= 4, "page 1 was read again: {requests} requests");
    run.until_caught_up(&cfg, &mut model, 60);
    let mut all = first;
    all.extend(arrivals);
    assert_eq!(run.ids(), truth(&all, 1_699_990_000));
}

#[test]
fn copies_a_walk_cannot_count_for_sure_are_counted_by_the_next() {
    // Oldest first, pages of 2: page 1 ends with the first copy, page 2 starts with the second.
    // Between the two reads Slack adds more entries than a page (at the end, but the walk cannot
    // know where), so no re-read can tell a copy from an entry shown again: the walk delivers
    // one copy, notes the entry as unsure, and the next walk, which reads down to it although it
    // is far below the watermark's overlap, delivers the other.
    let cfg = config(&[("integration_page_size", "2")]);
    let twice = entry(7, T0 - 2000);
    let first = vec![
        entry(1, T0 - 3000),
        twice.clone(),
        twice.clone(),
        entry(2, T0 - 1000),
    ];
    let mut model = Model::new(first.clone());
    model.oldest_first = true;
    let arrivals: Vec<Value> = (50..53).map(|i| entry(i, T0 - 100 + i as i64)).collect();
    model.arrivals.insert(2, arrivals.clone());
    let mut run = Run::new();
    assert_eq!(run.pass(&cfg, &mut model, 60).0, WalkEnd::CaughtUp);
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    assert_eq!(
        count(
            &cp.unsure_copies,
            T0 - 2000,
            &canonical(&twice.to_string(), None).unwrap().1[..16]
        ),
        1
    );
    assert!(
        cp.watermark - OVERLAP > T0 - 2000,
        "the unsure entry is below the overlap"
    );
    let mut all = first;
    all.extend(arrivals);
    assert_eq!(
        run.sink.ids.len(),
        all.len() - 1,
        "one copy short, nothing else"
    );
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.ids(), truth(&all, 1_699_990_000));
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    assert!(
        cp.unsure_copies.is_empty(),
        "settled: {:?}",
        cp.unsure_copies
    );
}

#[test]
fn a_walk_that_delivered_two_copies_and_later_sees_three_delivers_the_third() {
    let cfg = config(&[("integration_page_size", "10")]);
    let copy = entry(7, T0 - 100);
    let mut model = Model::new(vec![copy.clone(), copy.clone(), entry(8, T0 - 200)]);
    let mut run = Run::new();
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.sink.ids.len(), 3);
    // Slack writes a third copy of the same second a little late.
    model.add(vec![copy.clone()]);
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.sink.ids.len(), 4, "exactly the third copy");
    let third = copy_id(&canonical(&copy.to_string(), None).unwrap().1, 2);
    assert_eq!(run.sink.ids.last(), Some(&third));
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.sink.ids.len(), 4);
}

#[test]
fn a_format_1_checkpoint_is_taken_over_and_says_what_repeats() {
    let cfg = config(&[]);
    let listing = vec![entry(1, T0 - 100), entry(2, T0 - 150), entry(3, T0 - 900)];
    let mut model = Model::new(listing.clone());
    let mut run = Run::new();
    // Written by the previous version: everything up to T0 - 100 delivered under FNV-1a ids.
    let v1 = json!({"v": 1, "watermark": T0 - 100, "start": T0 - 1000,
        "recent": {(T0 - 100).to_string(): ["0123456789abcdef"], (T0 - 150).to_string(): ["fedcba9876543210"]},
        "unsorted": false, "walk": null});
    run.store
        .map
        .insert(checkpoint_key(None), v1.to_string().into_bytes());
    run.until_caught_up(&cfg, &mut model, 60);
    // The two entries inside the overlap come again, under their new ids; the older one does not.
    assert_eq!(run.ids(), truth(&listing[..2], T0 - 1000));
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    assert_eq!(cp.v, 2);
    run.until_caught_up(&cfg, &mut model, 60);
    assert_eq!(run.sink.ids.len(), 2);
    let notes: Vec<String> = run
        .logs
        .borrow()
        .iter()
        .filter(|l| l.contains("format 1"))
        .cloned()
        .collect();
    assert_eq!(notes.len(), 1, "said once: {notes:?}");
    assert!(
        notes[0].contains("delivered once more") && notes[0].contains("README"),
        "{}",
        notes[0]
    );
}

#[test]
fn a_walk_too_large_for_a_checkpoint_stops_before_delivering() {
    // Oldest first (so every count is kept) and more distinct entries than 400 KB can count.
    let cfg = config(&[
        ("integration_page_size", "1000"),
        ("backfill_start_time", &(T0 - 30_000).to_string()),
    ]);
    let many: Vec<Value> = (0..14_000)
        .map(|i| entry(i, T0 - 20_000 + i as i64))
        .collect();
    let mut model = Model::new(many);
    model.oldest_first = true;
    let mut run = Run::new();
    let (end, _, _) = run.pass(&cfg, &mut model, 600);
    match end {
        WalkEnd::Failed { code, message } => {
            assert_eq!(code, "integration_walk_too_large");
            assert!(message.contains("nothing was lost"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // What was delivered is exactly what the last saved checkpoint covers.
    let cp = IntegrationCheckpoint::decode(&run.store.map[&checkpoint_key(None)]).unwrap();
    let seen: usize = cp
        .walk
        .as_ref()
        .unwrap()
        .seen
        .values()
        .map(BTreeMap::len)
        .sum();
    assert_eq!(seen, run.sink.ids.len());
    assert!(run.store.map[&checkpoint_key(None)].len() <= crate::env::MAX_VALUE_BYTES);
}

#[test]
fn shifts_are_measured_only_when_one_fits() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let last = s(&["a", "b", "c", "d"]);
    // Unchanged: no shift; the next page starts fresh.
    assert_eq!(
        measure_shift(&last, &["a", "b", "c", "d"], &["e", "f"], 3),
        Some(0)
    );
    // Two entries came in above: the page moved down by two, the next starts with c, d again.
    assert_eq!(
        measure_shift(&last, &["y", "z", "a", "b"], &["c", "d", "e"], 2),
        Some(2)
    );
    assert_eq!(
        measure_shift(&last, &["y", "z", "a", "b"], &["c", "d", "e"], 3),
        Some(2)
    );
    // Something arrived inside the page: no shift explains it.
    assert_eq!(
        measure_shift(&last, &["a", "n", "b", "c"], &["d", "e"], 3),
        None
    );
    // All copies: any shift fits, so none is chosen.
    let same = s(&["a", "a", "a", "a"]);
    assert_eq!(
        measure_shift(&same, &["a", "a", "a", "a"], &["a", "b"], 3),
        None
    );
    // The listing grew by a page or more: a shift of a whole page would show nothing in common.
    let pair = s(&["a", "a"]);
    assert_eq!(measure_shift(&pair, &["x", "a"], &["a", "a"], 2), None);
    assert_eq!(measure_shift(&pair, &["x", "a"], &["a", "a"], 1), Some(1));
    assert_eq!(measure_shift(&[], &["a"], &["b"], 0), None);
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

/// One random schedule: entries (some with identical copies), arrivals between requests (some
/// of them copies of each other), a failing sink write and a failing checkpoint write.
fn schedule_loses_nothing(
    dates: &[i64],
    copies: &[usize],
    count: u32,
    oldest_first: bool,
    arrivals: &[(usize, i64, usize, bool)],
    sink_fail: Option<usize>,
    store_fail: Option<usize>,
) -> Result<(), TestCaseError> {
    let count = count.to_string();
    let cfg = config(&[
        ("integration_page_size", &count),
        ("backfill_start_time", &(T0 - 500).to_string()),
    ]);
    let first: Vec<Value> = dates
        .iter()
        .enumerate()
        .flat_map(|(i, d)| std::iter::repeat_n(entry(i, T0 - 450 + d), 1 + copies[i]))
        .collect();
    let mut model = Model::new(first.clone());
    model.oldest_first = oldest_first;
    let mut all = first;
    for (k, (at, d, n, identical)) in arrivals.iter().enumerate() {
        let new: Vec<Value> = (0..*n)
            .map(|j| entry(1000 + k * 10 + if *identical { 0 } else { j }, T0 + d))
            .collect();
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
        if matches!(&end, WalkEnd::Failed { code, .. } if code == "store_error")
            && run.store.fail_set_at.is_some_and(|f| f > sets)
        {
            interrupted += run.sink.ids.len() - before;
        }
        if model.arrivals.is_empty()
            && end == WalkEnd::CaughtUp
            && run.store.fail_set_at.is_none_or(|f| f <= run.store.sets)
            && run.sink.fail_at.is_none_or(|f| f <= run.sink.batches)
        {
            break;
        }
    }
    // One more walk picks up whatever arrived during the last one.
    run.until_caught_up(&cfg, &mut model, 60);
    let got: BTreeSet<String> = run.sink.ids.iter().cloned().collect();
    prop_assert_eq!(&got, &truth(&all, T0 - 500));
    prop_assert!(run.sink.ids.len() - got.len() <= interrupted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_lose_nothing(
        dates in prop::collection::vec(0i64..400, 1..50),
        // Identical copies beyond the first, per entry: mostly none.
        copies in prop::collection::vec(prop_oneof![6 => Just(0usize), 2 => Just(1), 1 => Just(2)], 50),
        count in 2u32..6,
        oldest_first in any::<bool>(),
        // (request number, date, how many, whether they are copies of one entry)
        arrivals in prop::collection::vec((1usize..30, 0i64..40, 1usize..4, any::<bool>()), 0..6),
        sink_fail in prop::option::of(1usize..20),
        store_fail in prop::option::of(1usize..20),
    ) {
        schedule_loses_nothing(&dates, &copies, count, oldest_first, &arrivals, sink_fail, store_fail)?;
    }
}

/// One random schedule of out-of-order writes: entries dated up to 280 s below the newest one
/// listed (inside the overlap, so none may be lost), written between passes and between the
/// requests of a walk, with identical copies, ties listed newest-added first or last, and short
/// budgets that end walks part-way so that the next pass resumes from the checkpoint. No fault
/// puts a batch at risk, so every record must arrive exactly once.
#[allow(clippy::too_many_arguments)] // one parameter per dimension the property test draws
fn out_of_order_schedule_repeats_nothing(
    dates: &[i64],
    copies: &[usize],
    count: u32,
    ties_newest_added_first: bool,
    tick_ms: u64,
    budget: u64,
    between: &[(usize, i64, usize)],
    during: &[(usize, i64, usize)],
    sink_fail: Option<usize>,
) -> Result<(), TestCaseError> {
    let count = count.to_string();
    let start = T0 - 2000;
    let cfg = config(&[
        ("integration_page_size", &count),
        ("backfill_start_time", &start.to_string()),
    ]);
    let mut model = Model::new(Vec::new());
    model.ties_newest_added_first = ties_newest_added_first;
    for (i, d) in dates.iter().enumerate() {
        model.add(std::iter::repeat_n(entry(i, T0 - 50 - d), 1 + copies[i]).collect());
    }
    for (k, (at, offset, n)) in during.iter().enumerate() {
        model
            .relative_arrivals
            .entry(*at)
            .or_default()
            .push((2000 + k, *offset, *n));
    }
    let mut run = Run::new();
    // A refused batch is not at risk: nothing of it was delivered.
    run.sink.fail_at = sink_fail;
    run.clock.tick.set(Duration::from_millis(tick_ms));
    let passes = between
        .iter()
        .map(|(p, _, _)| p + 1)
        .max()
        .unwrap_or(0)
        .max(6);
    for p in 0..passes {
        for (k, (_, offset, n)) in between.iter().enumerate().filter(|(_, b)| b.0 == p) {
            model.add_relative(1000 + k, *offset, *n);
        }
        run.pass(&cfg, &mut model, budget);
    }
    // The listing holds still from here: the walk in progress ends, and the next ones count for
    // sure whatever an earlier walk could not.
    model.relative_arrivals.clear();
    run.clock.tick.set(Duration::ZERO);
    for _ in 0..3 {
        run.until_caught_up(&cfg, &mut model, 60);
    }
    let got: BTreeSet<String> = run.sink.ids.iter().cloned().collect();
    prop_assert_eq!(&got, &truth(&model.entries, start), "nothing lost");
    let mut repeated: Vec<&String> = Vec::new();
    let mut once = BTreeSet::new();
    for id in &run.sink.ids {
        if !once.insert(id) {
            repeated.push(id);
        }
    }
    prop_assert!(
        repeated.is_empty(),
        "repeated with the same id: {:?}",
        repeated
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20000, ..ProptestConfig::default() })]

    #[test]
    fn out_of_order_writes_and_cut_walks_repeat_nothing(
        // Seconds below T0 - 50: some entries older than the start (T0 - 2000).
        dates in prop::collection::vec(prop_oneof![3 => 0i64..400, 1 => 0i64..3000], 1..40),
        copies in prop::collection::vec(prop_oneof![6 => Just(0usize), 2 => Just(1), 1 => Just(2)], 40),
        count in 2u32..7,
        ties_newest_added_first in any::<bool>(),
        // Each request reads the clock twice: a 1 s tick and a budget of 6–16 s end a walk
        // after a few pages.
        tick_ms in prop_oneof![1 => Just(0u64), 3 => Just(1000u64)],
        budget in 6u64..16,
        // (before pass, seconds from the newest date, copies beyond the first)
        between in prop::collection::vec((0usize..10, -280i64..20, prop_oneof![4 => Just(0usize), 1 => Just(1)]), 0..16),
        // (request number, seconds from the newest date, copies beyond the first)
        during in prop::collection::vec((1usize..60, -280i64..20, prop_oneof![4 => Just(0usize), 1 => Just(1)]), 0..10),
        sink_fail in prop::option::of(1usize..20),
    ) {
        out_of_order_schedule_repeats_nothing(&dates, &copies, count, ties_newest_added_first, tick_ms, budget, &between, &during, sink_fail)?;
    }
}

/// One round of a schedule: entries added (date, copies), and where the sink fails, if it does.
type Round = (Vec<(i64, usize)>, Option<usize>);

/// Rounds as the end-to-end fault schedules run them (tests/e2e_faults.rs): a history of hours
/// ending 120 s before the first pass, from a start inside it or at its beginning; before each
/// pass, entries written within the 200 s before "now" (out of order with the newest ones
/// listed), some with identical copies, ties listed newest-added first; each pass ends at a
/// random request (an error Slack answers, or the time budget) or runs to the end. The listing
/// holds still during a pass. No batch is at risk, so every record arrives exactly once.
fn rounds_repeat_nothing(
    history: &[(i64, usize)],
    span: i64,
    start_at: i64,
    count: u32,
    rounds: &[Round],
) -> Result<(), TestCaseError> {
    let count = count.to_string();
    let start = T0 - 120 - span + span * start_at / 100;
    let cfg = config(&[
        ("integration_page_size", &count),
        ("backfill_start_time", &start.to_string()),
    ]);
    let mut model = Model::new(Vec::new());
    model.ties_newest_added_first = true;
    for (i, (d, copies)) in history.iter().enumerate() {
        let date = T0 - 120 - span * d / 10_000;
        model.add(std::iter::repeat_n(entry(i, date), 1 + copies).collect());
    }
    let mut run = Run::new();
    let mut next = 1000;
    for (r, (added, stop_after)) in rounds.iter().enumerate() {
        let now = T0 + 15 * r as i64;
        if r > 0 {
            for (back, copies) in added {
                model.add(std::iter::repeat_n(entry(next, now - back), 1 + copies).collect());
                next += 1;
            }
        }
        if let Some(k) = stop_after {
            model
                .error_at
                .insert(model.n + k, json!({"ok": false, "error": "invalid_auth"}));
        }
        run.pass(&cfg, &mut model, 60);
        model.error_at.clear();
    }
    for _ in 0..3 {
        run.until_caught_up(&cfg, &mut model, 60);
    }
    let got: BTreeSet<String> = run.sink.ids.iter().cloned().collect();
    prop_assert_eq!(&got, &truth(&model.entries, start), "nothing lost");
    let mut once = BTreeSet::new();
    let repeated: Vec<&String> = run.sink.ids.iter().filter(|id| !once.insert(*id)).collect();
    prop_assert!(
        repeated.is_empty(),
        "repeated with the same id: {:?}",
        repeated
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20000, ..ProptestConfig::default() })]

    #[test]
    fn rounds_of_out_of_order_writes_repeat_nothing(
        // (position in the span, in ten-thousandths from its newest end; copies beyond the first)
        history in prop::collection::vec((0i64..10_000, prop_oneof![8 => Just(0usize), 1 => Just(1), 1 => Just(2)]), 20..150),
        span in 7_200i64..21_600,
        start_at in prop_oneof![Just(0i64), 10i64..60],
        count in 3u32..10,
        rounds in prop::collection::vec((
            prop::collection::vec((0i64..200, prop_oneof![8 => Just(0usize), 1 => Just(1), 1 => Just(2)]), 0..15),
            prop::option::of(1usize..40),
        ), 3..6),
    ) {
        rounds_repeat_nothing(&history, span, start_at, count, &rounds)?;
    }
}

/// Seed 423 of the end-to-end fault schedules, reduced: a Slack that lists entries as they were
/// added (so one written late sits above newer ones). A sorted walk delivers two pages and drops
/// the counts of the dates between its oldest and the overlap below its newest; a later page then
/// shows dates rising, and entries pushed down onto it are shown again while the listing grows
/// between the two reads that could tell. They were delivered by date, and must stay so.
#[test]
fn a_listing_found_unsorted_mid_walk_repeats_nothing_the_sorted_part_delivered() {
    let start = T0 - 2000;
    let cfg = config(&[("backfill_start_time", &start.to_string())]);
    let mut model = Model::new(Vec::new());
    model.listed_as_added = true;
    // Page 2's last entry and page 3's first are out of order: G was written late.
    model.entries = [
        (1, 100),
        (2, 110),
        (3, 600),
        (4, 700),
        (5, 800),
        (6, 900),
        (7, 650),
        (8, 1000),
    ]
    .into_iter()
    .map(|(i, back)| entry(i, T0 - back))
    .collect();
    // Pass 1 reads pages 1 and 2 and is cut at the third request.
    model
        .error_at
        .insert(3, json!({"ok": false, "error": "invalid_auth"}));
    let mut run = Run::new();
    run.pass(&cfg, &mut model, 60);
    model.error_at.clear();
    assert_eq!(run.sink.ids.len(), 6);
    // Two entries arrive before pass 2 (page 3 now starts with two entries of page 2), and one
    // more between its read of page 3 and its re-read of page 2, so the shift cannot be measured.
    model.add(vec![entry(50, T0 - 50)]);
    model.add(vec![entry(51, T0 - 40)]);
    model.arrivals.insert(model.n + 2, vec![entry(52, T0 - 30)]);
    for _ in 0..3 {
        run.until_caught_up(&cfg, &mut model, 60);
    }
    assert_eq!(
        run.ids(),
        truth(&model.entries, start),
        "each entry exactly once"
    );
}
