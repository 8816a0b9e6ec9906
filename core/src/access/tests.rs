use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::env::{HttpResponse, RecordSink, SinkBatch, SinkError, Transport, TransportError};
use crate::fetch::{Deadline, FetchStats};
use crate::record::content_id;
use crate::synthetic::parse_query;
use crate::testutil::{MemStore, ScriptedTransport, TestClock, VecSink};

const T0: i64 = 1_700_000_000;
const TOKEN: &str = "xoxp-secret-token";

// ---------------------------------------------------------------------------------------------
// An in-memory team.accessLogs (research/slack-api.md §2, §7.2).

#[derive(Clone, Debug)]
struct Row {
    id: u64,
    user: String,
    ip: Option<String>,
    ua: String,
    df: i64,
    dl: i64,
    count: u64,
}

impl Row {
    /// The record id from its definition, computed here rather than by the code under test.
    fn state_id(&self) -> String {
        content_id(&[
            self.user.as_bytes(),
            self.ip.as_deref().unwrap_or("").as_bytes(),
            self.ua.as_bytes(),
            self.df.to_string().as_bytes(),
            self.dl.to_string().as_bytes(),
        ])
    }

    /// Spaced JSON with fields the collector does not read, to check bytes travel unchanged.
    fn json(&self) -> String {
        let ip = match &self.ip {
            Some(ip) => format!("\"{ip}\""),
            None => "null".into(),
        };
        format!(
            r#"{{"user_id": "{}", "username": "user-{}", "date_first": {}, "date_last": {}, "count": {}, "ip": {ip}, "user_agent": "{}", "isp": null, "country": "US", "region": null}}"#,
            self.user, self.id, self.df, self.dl, self.count, self.ua
        )
    }
}

/// How the model orders rows: Slack's two candidates, or neither (to test the refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelSort {
    DateFirst,
    DateLast,
    RowId,
}

struct Model {
    rows: Vec<Row>,
    sort: ModelSort,
    /// The field `before` compares with; `None`: the sort key.
    filter: Option<ModelSort>,
    /// Cursors hold a position number in the listing instead of the last row served.
    offset_cursor: bool,
    next_id: u64,
    /// Time of the mutations the model makes on its own (`touch_at`).
    now: i64,
    /// Every state any row ever had.
    history: Vec<Row>,
    requests: Vec<String>,
    n: usize,
    /// A cursor `limit` above this is `invalid_limit` (0: cursor mode refused).
    max_limit: u32,
    max_count: u32,
    max_page: u32,
    short_pages: bool,
    /// Every request answers `ok:false` with this code.
    error: Option<&'static str>,
    /// Requests (1-based) that answer `invalid_cursor` when they carry a cursor.
    invalid_cursor_at: BTreeSet<usize>,
    /// Requests that answer HTTP 500 `fatal_error`.
    fatal_at: BTreeSet<usize>,
    /// Every classic request fails with `fatal_error`, as HTTP 500 or in a 200 body.
    classic_fatal: Option<u16>,
    /// Before answering request n, touch these rows (indices modulo the row count).
    touch_at: BTreeMap<usize, Vec<usize>>,
    /// A request with a cursor gets that same cursor back as `next_cursor` (a looping API).
    repeat_cursor: bool,
    /// Answers carry a `Date` header with the model's `now` (Slack's clock).
    send_date: bool,
}

/// A small deterministic generator for test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

impl Model {
    fn new(sort: ModelSort) -> Model {
        Model {
            rows: Vec::new(),
            sort,
            filter: None,
            offset_cursor: false,
            next_id: 1,
            now: T0,
            history: Vec::new(),
            requests: Vec::new(),
            n: 0,
            max_limit: 999,
            max_count: 1000,
            max_page: 100,
            short_pages: false,
            error: None,
            invalid_cursor_at: BTreeSet::new(),
            fatal_at: BTreeSet::new(),
            classic_fatal: None,
            touch_at: BTreeMap::new(),
            repeat_cursor: false,
            send_date: false,
        }
    }

    /// `n` rows first seen in `[from, to]`, some used again later, on a coarse grid so seconds
    /// tie; a few repeat an earlier user+IP+UA with another `date_first` (Q24).
    fn generated(sort: ModelSort, seed: u64, n: usize, from: i64, to: i64) -> Model {
        let mut m = Model::new(sort);
        let mut rng = Lcg(seed);
        for _ in 0..n {
            let steps = ((to - from) / 50).max(1) as u64;
            let df = from + 50 * rng.below(steps + 1) as i64;
            let dl = if rng.below(3) == 0 {
                df
            } else {
                df + 50 * rng.below(((to - df) / 50 + 1) as u64) as i64
            };
            m.add_row(&mut rng, df, dl.min(to));
        }
        m
    }

    fn add_row(&mut self, rng: &mut Lcg, df: i64, dl: i64) {
        let id = self.next_id;
        self.next_id += 1;
        let reuse = !self.rows.is_empty() && rng.below(10) == 0;
        let (user, ip, ua) = if reuse {
            let r = &self.rows[rng.below(self.rows.len() as u64) as usize];
            (r.user.clone(), r.ip.clone(), r.ua.clone())
        } else {
            let ip = match rng.below(4) {
                0 => None,
                k => Some(format!("203.0.113.{k}")),
            };
            (
                format!("U{:03}", rng.below(6)),
                ip,
                format!("SlackWeb Mozilla/5.0 build-{id}"),
            )
        };
        // One row per user+IP+UA+date_first, as Slack aggregates.
        let mut df = df;
        while self
            .rows
            .iter()
            .any(|r| r.user == user && r.ip == ip && r.ua == ua && r.df == df)
        {
            df -= 1;
        }
        let row = Row {
            id,
            user,
            ip,
            ua,
            df,
            dl: dl.max(df),
            count: 1,
        };
        self.history.push(row.clone());
        self.rows.push(row);
    }

    /// A new combination first seen at `t`.
    fn add(&mut self, rng: &mut Lcg, t: i64) {
        self.add_row(rng, t, t);
    }

    /// The combination is used again at `t`.
    fn touch(&mut self, i: usize, t: i64) {
        if self.rows.is_empty() {
            return;
        }
        let i = i % self.rows.len();
        let r = &mut self.rows[i];
        r.count += 1;
        r.dl = r.dl.max(t);
        self.history.push(r.clone());
    }

    /// `n` new combinations all first and last seen at `t`: a tie under either order.
    fn add_tie(&mut self, n: usize, t: i64) {
        for k in 0..n {
            let id = self.next_id;
            self.next_id += 1;
            let row = Row {
                id,
                user: format!("U{:03}", k % 7),
                ip: Some(format!("198.51.{}.{}", (k / 250) % 256, k % 250)),
                ua: format!("Slack/4.{k} tie"),
                df: t,
                dl: t,
                count: 1,
            };
            self.history.push(row.clone());
            self.rows.push(row);
        }
    }

    fn key(&self, r: &Row) -> i64 {
        match self.sort {
            ModelSort::DateFirst | ModelSort::RowId => r.df,
            ModelSort::DateLast => r.dl,
        }
    }

    /// The value `before` is compared with.
    fn filtered(&self, r: &Row) -> i64 {
        match self.filter {
            None => self.key(r),
            Some(ModelSort::DateLast) => r.dl,
            Some(_) => r.df,
        }
    }

    /// Rows with `before`'s field `<= before`, newest first by the sort key, ties by row id
    /// (descending).
    fn listing(&self, before: i64) -> Vec<&Row> {
        let mut v: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| self.filtered(r) <= before)
            .collect();
        match self.sort {
            ModelSort::RowId => v.sort_by_key(|r| r.id),
            _ => v.sort_by(|a, b| self.key(b).cmp(&self.key(a)).then(b.id.cmp(&a.id))),
        }
        v
    }

    fn answer(&self, url: &str) -> HttpResponse {
        let q = parse_query(url);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let fail = |code: &str| ok_false(code);
        if let Some(code) = self.error {
            if code == "missing_scope" {
                return HttpResponse {
                    status: 200,
                    retry_after: None,
                    date: None,
                    body: br#"{"ok":false,"error":"missing_scope","needed":"admin","provided":"identify,users:read"}"#.to_vec(),
                };
            }
            return fail(code);
        }
        let before = match get("before") {
            None | Some("now") => self.now,
            Some(s) => match s.parse::<i64>() {
                Ok(b) => b,
                Err(_) => return fail("invalid_arguments"),
            },
        };
        let limit = match get("limit").map(str::parse::<u32>) {
            None => 0,
            Some(Ok(l)) => l,
            Some(Err(_)) => return fail("invalid_limit"),
        };
        let all = self.listing(before);
        if limit > 0 || get("cursor").is_some() {
            if limit >= 1000 || limit > self.max_limit {
                return fail("invalid_limit");
            }
            let limit = if limit == 0 { 100 } else { limit as usize };
            let mut from = 0;
            if let Some(c) = get("cursor") {
                let Some((key, id)) = decode_cursor(c) else {
                    return fail("invalid_cursor");
                };
                from = if self.offset_cursor {
                    usize::try_from(id).unwrap_or(usize::MAX).min(all.len())
                } else {
                    all.iter()
                        .position(|r| (self.key(r), r.id) < (key, id))
                        .unwrap_or(all.len())
                };
            }
            let size = if self.short_pages && all.len() - from > 1 {
                (limit / 2).max(1)
            } else {
                limit
            };
            let to = (from + size).min(all.len());
            let next = if self.repeat_cursor && get("cursor").is_some() {
                get("cursor").unwrap_or_default().to_string()
            } else if to < all.len() && to > from && self.offset_cursor {
                encode_cursor(-1, to as u64)
            } else if to < all.len() && to > from {
                encode_cursor(self.key(all[to - 1]), all[to - 1].id)
            } else {
                String::new()
            };
            let body = format!(
                r#"{{"ok":true,"logins":[{}],"response_metadata":{{"next_cursor":"{next}"}}}}"#,
                all[from..to]
                    .iter()
                    .map(|r| r.json())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            return HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: body.into_bytes(),
            };
        }
        if let Some(status) = self.classic_fatal {
            return HttpResponse {
                status,
                retry_after: None,
                date: None,
                body: br#"{"ok":false,"error":"fatal_error"}"#.to_vec(),
            };
        }
        let (count, page) = match (
            get("count").map(str::parse::<usize>),
            get("page").map(str::parse::<usize>),
        ) {
            (Some(Err(_)), _) | (_, Some(Err(_))) => return fail("invalid_arguments"),
            (c, p) => (
                c.and_then(Result::ok).unwrap_or(100),
                p.and_then(Result::ok).unwrap_or(1),
            ),
        };
        if count > self.max_count as usize || page > self.max_page as usize {
            return fail("over_pagination_limit");
        }
        if count == 0 || page == 0 {
            return fail("invalid_arguments");
        }
        let from = ((page - 1) * count).min(all.len());
        let to = (from + count).min(all.len());
        let body = format!(
            r#"{{"ok":true,"logins":[{}],"paging":{{"count":{count},"total":{},"page":{page},"pages":{}}}}}"#,
            all[from..to]
                .iter()
                .map(|r| r.json())
                .collect::<Vec<_>>()
                .join(","),
            all.len(),
            all.len().div_ceil(count)
        );
        HttpResponse {
            status: 200,
            retry_after: None,
            date: None,
            body: body.into_bytes(),
        }
    }
}

fn ok_false(code: &str) -> HttpResponse {
    HttpResponse {
        status: 200,
        retry_after: None,
        date: None,
        body: format!(r#"{{"ok":false,"error":"{code}"}}"#).into_bytes(),
    }
}

/// A keyset position, hex-encoded and padded with `=` like Slack's base64 cursors.
fn encode_cursor(key: i64, id: u64) -> String {
    let text = format!("{key}:{id}");
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}==")
}

fn decode_cursor(c: &str) -> Option<(i64, u64)> {
    let hex = c.strip_suffix("==")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (k, id) = text.split_once(':')?;
    Some((k.parse().ok()?, id.parse().ok()?))
}

impl Transport for Model {
    fn get(
        &mut self,
        url: &str,
        bearer: &str,
        _: Duration,
    ) -> Result<HttpResponse, TransportError> {
        assert!(!url.contains(bearer), "the token never goes in the URL");
        self.n += 1;
        self.requests.push(url.to_string());
        if let Some(rows) = self.touch_at.get(&self.n).cloned() {
            for i in rows {
                self.touch(i, self.now);
            }
        }
        if self.invalid_cursor_at.contains(&self.n) && url.contains("cursor=") {
            return Ok(ok_false("invalid_cursor"));
        }
        if self.fatal_at.contains(&self.n) {
            return Ok(HttpResponse {
                status: 500,
                retry_after: None,
                date: None,
                body: br#"{"ok":false,"error":"fatal_error"}"#.to_vec(),
            });
        }
        let mut answer = self.answer(url);
        if self.send_date {
            answer.date = Some(httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(self.now as u64),
            ));
        }
        Ok(answer)
    }
}

// ---------------------------------------------------------------------------------------------
// A harness that runs passes of `walk` and keeps the ground truth from the model's history.

fn config(mode: &str, sort_key: &str, page_size: u32, extra: &[(&str, &str)]) -> Config {
    let page = page_size.to_string();
    let backfill = (T0 - 3000).to_string();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("slack_token", "xoxp-test"),
        ("streams", "access"),
        ("slack_api_base", "https://slack.test/api"),
        ("backfill_start_time", &backfill),
        ("access_mode", mode),
        ("access_sort_key", sort_key),
        ("access_page_size", &page),
        ("max_run_seconds", "60"),
        ("request_timeout_seconds", "5"),
        // One second, as the walks of these tests were planned; the lag has its own tests.
        ("access_lag_seconds", "1"),
    ];
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        pairs.push((k, v));
    }
    Config::from_pairs(&pairs).unwrap()
}

struct Run {
    cfg: Config,
    team: Option<&'static str>,
    model: Model,
    store: MemStore,
    sink: VecSink,
    clock: TestClock,
    limits: Limits,
    w_init: i64,
    /// Activity: states a completed walk must have emitted. New-only: rows.
    must: BTreeSet<String>,
    must_rows: BTreeSet<u64>,
    /// Records delivered in passes whose checkpoint write then failed: they may repeat.
    interrupted: usize,
    logs: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
}

impl Run {
    fn new(cfg: Config, model: Model) -> Run {
        let w_init = AccessCheckpoint::initial(&cfg, T0).watermark;
        Run {
            cfg,
            team: None,
            model,
            store: MemStore::default(),
            sink: VecSink::default(),
            clock: TestClock::new(T0),
            limits: Limits::SLACK,
            w_init,
            must: BTreeSet::new(),
            must_rows: BTreeSet::new(),
            interrupted: 0,
            logs: Default::default(),
        }
    }

    fn key(&self) -> String {
        checkpoint_key(self.team)
    }

    fn stored(&self) -> Option<AccessCheckpoint> {
        self.store
            .map
            .get(&self.key())
            .map(|b| AccessCheckpoint::decode(b).unwrap())
    }

    fn set_now(&mut self, t: i64) {
        self.clock.now.set(t);
        self.model.now = t;
    }

    /// One pass: load or anchor the checkpoint (as pass.rs does), walk, book the truth.
    fn pass(&mut self) -> (WalkEnd, WalkStats) {
        let now = self.clock.now.get();
        let mut cp = match self.stored() {
            Some(c) => c,
            None => {
                let c = AccessCheckpoint::initial(&self.cfg, now);
                self.store.map.insert(self.key(), c.encode());
                c
            }
        };
        let (w0, walk_before) = (cp.watermark, cp.walk.as_ref().map(|w| w.before));
        let ids_before = self.sink.ids.len();
        let logs = self.logs.clone();
        let log = move |l: &str| logs.borrow_mut().push(l.to_string());
        let mut fetcher = Fetcher {
            transport: &mut self.model,
            clock: &self.clock,
            deadline: Deadline::after(
                &self.clock,
                Duration::from_secs(u64::from(self.cfg.max_run_seconds)),
            ),
            request_timeout: Duration::from_secs(5),
            stats: FetchStats::default(),
            log: &log,
            pacer: None,
        };
        let mut io = StreamIo {
            store: &mut self.store,
            sink: &mut self.sink,
            collected_at: now,
            log: &log,
            lease: None,
        };
        let mut stats = WalkStats::default();
        let end = walk_with(
            &self.cfg,
            self.team,
            TOKEN,
            &mut fetcher,
            &mut io,
            &mut cp,
            &mut stats,
            self.limits,
        );
        if let WalkEnd::Failed { message, .. } = &end {
            assert!(!message.contains(TOKEN), "{message}");
        }
        if matches!(&end, WalkEnd::Failed { code, .. } if code == "store_error") {
            self.interrupted += self.sink.ids.len() - ids_before;
            self.store.fail_set_at = None;
        }
        let w1 = self.stored().map_or(w0, |c| c.watermark);
        if w1 > w0 {
            self.book(w0, walk_before, w1);
        }
        (end, stats)
    }

    /// Walks completed in this pass: what they had to emit, from the model as it stands now.
    fn book(&mut self, w0: i64, walk_before: Option<i64>, w1: i64) {
        let mut walks = vec![];
        match walk_before {
            Some(b) if b < w1 => walks.extend([(w0, b), (b, w1)]),
            _ => walks.push((w0, w1)),
        }
        let activity = self.cfg.access_mode == AccessMode::Activity;
        for (lo, hi) in walks {
            for r in &self.model.rows {
                if activity && r.dl > lo && r.dl <= hi {
                    // Current at the end of the walk, so current whenever the walk read it.
                    self.must.insert(r.state_id());
                }
                // A new combination used again during its walk may have left a date_last-sorted
                // (and filtered) listing before the walk reached it: it is allowed, not required.
                let visible = self.model.sort != ModelSort::DateLast || r.dl <= hi;
                if !activity && r.df > lo && r.df <= hi && visible {
                    self.must_rows.insert(r.id);
                }
            }
        }
    }

    /// Passes until caught up; panics on anything else.
    fn pass_until_caught_up(&mut self, max: usize) {
        for _ in 0..max {
            match self.pass().0 {
                WalkEnd::CaughtUp => return,
                WalkEnd::Budget(_) => {}
                e => panic!("{e:?}"),
            }
        }
        panic!("not caught up after {max} passes");
    }

    /// Checks the emitted ids against the truth: everything required, nothing that never
    /// existed in range, no repeats beyond interrupted batches. `exact`: required == emitted.
    fn check(&self, exact: bool) {
        let stored = self.stored().unwrap();
        assert!(
            stored.encode().len() < 100_000,
            "checkpoint size {}",
            stored.encode().len()
        );
        // A walk in progress delivers up to its bound.
        let w_final = stored
            .walk
            .as_ref()
            .map_or(stored.watermark, |w| w.before.max(stored.watermark));
        let emitted: BTreeSet<String> = self.sink.ids.iter().cloned().collect();
        let repeats = self.sink.ids.len() - emitted.len();
        assert!(
            repeats <= self.interrupted,
            "{repeats} repeated records, {} interrupted",
            self.interrupted
        );
        if self.cfg.access_mode == AccessMode::Activity {
            // No upper bound: rows used again during a walk are delivered ahead of its `before`.
            let may: BTreeSet<String> = self
                .model
                .history
                .iter()
                .filter(|r| r.dl > self.w_init)
                .map(Row::state_id)
                .collect();
            let missing: Vec<_> = self.must.difference(&emitted).collect();
            assert!(missing.is_empty(), "missing {missing:?}");
            let extra: Vec<_> = emitted.difference(&may).collect();
            assert!(extra.is_empty(), "emitted states never in range: {extra:?}");
            if exact {
                assert_eq!(emitted, self.must);
            }
        } else {
            let by_id: HashMap<String, u64> = self
                .model
                .history
                .iter()
                .map(|r| (r.state_id(), r.id))
                .collect();
            let rows: Vec<u64> = self.sink.ids.iter().map(|id| by_id[id]).collect();
            let distinct: BTreeSet<u64> = rows.iter().copied().collect();
            assert!(
                rows.len() - distinct.len() <= self.interrupted,
                "a combination emitted twice: {rows:?}"
            );
            let may: BTreeSet<u64> = self
                .model
                .history
                .iter()
                .filter(|r| r.df > self.w_init && r.df <= w_final)
                .map(|r| r.id)
                .collect();
            let missing: Vec<_> = self.must_rows.difference(&distinct).collect();
            assert!(missing.is_empty(), "missing rows {missing:?}");
            let extra: Vec<_> = distinct.difference(&may).collect();
            assert!(extra.is_empty(), "emitted rows not new in range: {extra:?}");
            if exact {
                assert_eq!(distinct, self.must_rows);
            }
        }
    }

    fn stats_requests_since(&self, n: usize) -> usize {
        self.model.requests.len() - n
    }
}

fn sort_name(s: ModelSort) -> &'static str {
    match s {
        ModelSort::DateFirst => "date_first",
        ModelSort::DateLast => "date_last",
        ModelSort::RowId => unreachable!("no access_sort_key names this order"),
    }
}

/// Between passes: some combinations used again, some new ones.
fn churn(run: &mut Run, rng: &mut Lcg, touches: usize, adds: usize) {
    let t = run.model.now + 10;
    for _ in 0..touches {
        let i = rng.below(run.model.rows.len().max(1) as u64) as usize;
        run.model.touch(i, t);
    }
    for k in 0..adds {
        run.model.add(rng, t + k as i64);
    }
}

// ---------------------------------------------------------------------------------------------
// Unit tests.

#[test]
fn record_id_hashes_the_five_fields_and_null_ip_as_empty() {
    let id = record_id("U1", Some("10.0.0.1"), "ua", 5, 7);
    assert_eq!(id.len(), 32);
    assert_eq!(id, content_id(&[b"U1", b"10.0.0.1", b"ua", b"5", b"7"]));
    // Fields are length-prefixed: moving bytes from the user agent into the IP changes the id.
    assert_ne!(id, record_id("U1", Some("10.0.0.1u"), "a", 5, 7));
    assert_eq!(
        record_id("U1", None, "ua", 5, 7),
        record_id("U1", Some(""), "ua", 5, 7)
    );
    assert_ne!(
        record_id("U1", None, "ua", 5, 7),
        record_id("U1", None, "ua", 5, 8),
        "a changed row is a new record"
    );
    let body = br#"{"ok":true,"logins":[{"user_id":"U1","ip":null,"user_agent":"ua","date_first":5,"date_last":7,"count":3}]}"#;
    let page = parse_page(body).unwrap();
    assert_eq!(page.rows[0].record_id(), record_id("U1", None, "ua", 5, 7));
}

#[test]
fn rows_lacking_fields_or_with_wrong_types_are_errors_not_panics() {
    for body in [
        &br#"{"ok":true,"logins":[{"ip":"1.2.3.4","user_agent":"x","date_first":1,"date_last":2}]}"#[..],
        br#"{"ok":true,"logins":[{"user_id":"U1","date_last":2}]}"#,
        br#"{"ok":true,"logins":[{"user_id":"U1","date_first":1}]}"#,
        br#"{"ok":true,"logins":[{"user_id":"U1","date_first":"1","date_last":2}]}"#,
        br#"{"ok":true,"logins":[{"user_id":7,"date_first":1,"date_last":2}]}"#,
        br#"{"ok":true,"logins":[{"user_id":"U1","ip":5,"date_first":1,"date_last":2}]}"#,
        br#"{"ok":true,"logins":[{"user_id":"U1","date_first":1.5,"date_last":2}]}"#,
        br#"{"ok":true,"logins":{"user_id":"U1"}}"#,
        br#"{"ok":true}"#,
        br#"{"ok":true,"logins":[{"user_id":"U1","date_first":1,"date_last":2}"#,
        b"<html>maintenance</html>",
    ] {
        let e = parse_page(body).unwrap_err();
        assert_eq!(e.code(), "malformed_response", "{}", String::from_utf8_lossy(body));
    }
    let e = parse_page(br#"{"ok":false,"error":"paid_only"}"#).unwrap_err();
    assert_eq!(e.code(), "paid_only");
    // A malformed row stops the walk without moving the checkpoint.
    let bad = br#"{"ok":true,"logins":[{"user_id":"U1","date_first":1,"date_last":"yesterday"}]}"#;
    let mut t = ScriptedTransport::new(vec![Ok(HttpResponse {
        status: 200,
        retry_after: None,
        date: None,
        body: bad.to_vec(),
    })]);
    let cfg = config("activity", "auto", 10, &[]);
    let (mut store, mut sink, clock) =
        (MemStore::default(), VecSink::default(), TestClock::new(T0));
    let mut cp = AccessCheckpoint::initial(&cfg, T0);
    let before = cp.clone();
    let end = run_walk(&cfg, &mut t, &mut store, &mut sink, &clock, &mut cp);
    assert!(
        matches!(&end, WalkEnd::Failed { code, message } if code == "malformed_response" && message.contains("date_last")),
        "{end:?}"
    );
    assert_eq!(cp, before);
    assert!(store.map.is_empty() && sink.ids.is_empty());
}

fn run_walk(
    cfg: &Config,
    t: &mut dyn Transport,
    store: &mut MemStore,
    sink: &mut VecSink,
    clock: &TestClock,
    cp: &mut AccessCheckpoint,
) -> WalkEnd {
    let mut fetcher = Fetcher {
        transport: t,
        clock,
        deadline: Deadline::after(clock, Duration::from_secs(60)),
        request_timeout: Duration::from_secs(5),
        stats: FetchStats::default(),
        log: &|_| {},
        pacer: None,
    };
    let mut io = StreamIo {
        store,
        sink,
        collected_at: clock.now.get(),
        log: &|_| {},
        lease: None,
    };
    walk(
        cfg,
        None,
        TOKEN,
        &mut fetcher,
        &mut io,
        cp,
        &mut WalkStats::default(),
    )
}

#[test]
fn checkpoint_round_trips_and_refuses_corrupt_or_newer_formats() {
    assert_eq!(checkpoint_key(None), "slack-logs/v1/access/org/checkpoint");
    assert_eq!(
        checkpoint_key(Some("T0123")),
        "slack-logs/v1/access/T0123/checkpoint"
    );
    let cfg = config("activity", "auto", 10, &[]);
    assert_eq!(
        AccessCheckpoint::initial(&cfg, T0).watermark,
        T0 - 3001,
        "rows from backfill_start_time on"
    );
    let cfg_now = config("activity", "auto", 10, &[("backfill_start_time", "")]);
    assert_eq!(
        AccessCheckpoint::initial(&cfg_now, T0).watermark,
        T0,
        "no history"
    );
    let cp = AccessCheckpoint {
        v: 2,
        watermark: 5,
        order: Some(SortOrder::DateLast),
        before_spares_date_last: true,
        walk: Some(AccessWalk {
            before: 9,
            mode: WalkMode::NewOnly,
            order: None,
            classic: true,
            refused_limit: Some(999),
            classic_failed: true,
            position: Position {
                date_first: Some(7),
                first_keys: [u64::MAX, 3].into_iter().collect(),
                first_spill: tie::Spill::from(9_000),
                first_forgotten: 12,
                date_last: Some(8),
                last_keys: KeyWindow::default(),
                last_spill: tie::Spill::default(),
                last_forgotten: 0,
                witness: Some(7),
            },
            ahead: [4].into(),
            listing: Listing {
                anchor: Some(8),
                served: 2_000,
                reached: 9_000,
                cursor: Some("dXNlcjpVMDYxTkZUVDI=".into()),
                page: Some(3),
                total: Some(40_000),
            },
            reread_at: Some((7, 8)),
            tie_reread: Some((7, 8, 3_000)),
            tie_parts: 2,
        }),
        ahead: [1, 2].into(),
    };
    assert_eq!(AccessCheckpoint::decode(&cp.encode()).unwrap(), cp);
    assert_eq!(
        AccessCheckpoint::decode(br#"{"v":2,"watermark":3}"#)
            .unwrap()
            .walk,
        None
    );
    assert!(matches!(
        AccessCheckpoint::decode(br#"{"v":3,"watermark":3}"#),
        Err(CheckpointError::NewerVersion(3))
    ));
    for bad in [
        &b"{not json"[..],
        br#"{"v":2}"#,
        br#"{"v":2,"watermark":"x"}"#,
        b"",
    ] {
        let e = AccessCheckpoint::decode(bad).unwrap_err();
        assert!(matches!(e, CheckpointError::Corrupt(_)), "{e:?}");
        assert!(e.to_string().contains("does not parse"));
    }
}

#[test]
fn position_covers_exactly_the_rows_read_whatever_the_order() {
    let mut p = Position::default();
    assert!(!p.covers(10, 10, 1), "nothing read yet");
    // Read in date_first order: (df, dl, key, delivered).
    for (f, l, k, d) in [
        (50, 90, 1, true),
        (40, 95, 2, true),
        (40, 60, 3, false),
        (30, 60, 4, true),
    ] {
        p.advance(f, l, k, d);
    }
    for (f, l, k) in [(50, 90, 1), (40, 95, 2), (30, 60, 4)] {
        assert!(p.covers(f, l, k), "delivered ({f},{l}) is covered");
    }
    assert!(
        !p.covers(40, 60, 3),
        "read but not delivered: judged again, not skipped"
    );
    assert!(
        !p.covers(30, 70, 5),
        "the next row at the lowest date_first is not covered"
    );
    assert!(!p.covers(20, 99, 6));
    assert_eq!((p.date_first, p.date_last), (Some(30), Some(60)));
}

// ---------------------------------------------------------------------------------------------
// Collection against the model.

/// Several passes with rows used again and new rows between them, for every mode, sort key and
/// paging mode; classic walks are longer than the (scaled down) page cap.
#[test]
fn every_mode_sort_key_and_paging_collects_exactly_the_truth_over_several_passes() {
    for mode in ["activity", "new-only"] {
        for sort in [ModelSort::DateFirst, ModelSort::DateLast] {
            for classic in [false, true] {
                for sort_key in ["auto", sort_name(sort)] {
                    let label =
                        format!("{mode} {sort:?} classic={classic} access_sort_key={sort_key}");
                    let mut run = Run::new(
                        config(mode, sort_key, 4, &[]),
                        Model::generated(sort, 7, 70, T0 - 4000, T0 - 100),
                    );
                    if classic {
                        run.model.max_limit = 0;
                        run.model.max_count = 5;
                        run.model.max_page = 3;
                        run.limits = Limits {
                            classic_count: 5,
                            classic_max_page: 3,
                        };
                    }
                    let mut rng = Lcg(99);
                    for round in 0..6 {
                        run.set_now(T0 + round * 200);
                        let (end, stats) = run.pass();
                        assert_eq!(end, WalkEnd::CaughtUp, "{label} round {round}");
                        if round == 0 && classic {
                            assert!(
                                stats.pages > 3,
                                "{label}: a first walk longer than the page cap ({} pages)",
                                stats.pages
                            );
                        }
                        churn(&mut run, &mut rng, 4, 2);
                    }
                    run.check(true);
                    assert!(
                        !run.must.is_empty() || !run.must_rows.is_empty(),
                        "{label}: the test collects something"
                    );
                    let reqs = &run.model.requests;
                    if classic {
                        assert!(reqs.iter().any(|u| u.contains("count=5")), "{label}");
                        assert!(
                            reqs.iter().all(|u| !u.contains("page=4")),
                            "{label}: never past the page cap"
                        );
                    } else {
                        assert!(reqs.iter().all(|u| u.contains("limit=4")), "{label}");
                    }
                    if sort_key == "auto" {
                        let proven = run.stored().unwrap().order;
                        assert_eq!(
                            proven,
                            Some(if sort == ModelSort::DateFirst {
                                SortOrder::DateFirst
                            } else {
                                SortOrder::DateLast
                            }),
                            "{label}"
                        );
                    }
                }
            }
        }
    }
}

/// A raw sink, to check record lines.
#[derive(Default)]
struct LineSink(Vec<String>);

impl RecordSink for LineSink {
    fn write(&mut self, batch: SinkBatch) -> Result<(), SinkError> {
        assert_eq!(batch.stream, "access");
        self.0.extend(
            String::from_utf8(batch.ndjson)
                .unwrap()
                .lines()
                .map(String::from),
        );
        Ok(())
    }
}

#[test]
fn requests_carry_the_fixed_before_limit_team_id_and_an_encoded_cursor() {
    let cfg = config("activity", "auto", 3, &[]);
    let mut model = Model::generated(ModelSort::DateFirst, 3, 20, T0 - 2000, T0 - 10);
    model.now = T0;
    let (mut store, mut sink, clock) =
        (MemStore::default(), LineSink::default(), TestClock::new(T0));
    let mut cp = AccessCheckpoint::initial(&cfg, T0);
    let mut fetcher = Fetcher {
        transport: &mut model,
        clock: &clock,
        deadline: Deadline::after(&clock, Duration::from_secs(60)),
        request_timeout: Duration::from_secs(5),
        stats: FetchStats::default(),
        log: &|_| {},
        pacer: None,
    };
    let mut io = StreamIo {
        store: &mut store,
        sink: &mut sink,
        collected_at: T0,
        log: &|_| {},
        lease: None,
    };
    let mut stats = WalkStats::default();
    let end = walk(
        &cfg,
        Some("T0TEAM"),
        TOKEN,
        &mut fetcher,
        &mut io,
        &mut cp,
        &mut stats,
    );
    assert_eq!(end, WalkEnd::CaughtUp);
    assert_eq!(cp.watermark, T0 - 1, "access_lag_seconds = 1 behind now");
    assert!(store
        .map
        .contains_key("slack-logs/v1/access/T0TEAM/checkpoint"));
    assert_eq!(stats.pages as usize, model.requests.len());
    assert!(model.requests.len() >= 7);
    for (i, url) in model.requests.iter().enumerate() {
        assert!(
            url.starts_with("https://slack.test/api/team.accessLogs?"),
            "{url}"
        );
        let q = parse_query(url);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("before"),
            None,
            "no `before`: the listing no row leaves (the walk applies its bound itself): {url}"
        );
        assert_eq!(get("limit").as_deref(), Some("3"));
        assert_eq!(get("team_id").as_deref(), Some("T0TEAM"));
        assert_eq!(get("cursor").is_some(), i > 0);
        if i > 0 {
            assert!(url.contains("%3D%3D"), "cursor padding is encoded: {url}");
        }
    }
    // Records: id, stream, source, team, time = date_last, the row's bytes as received.
    assert_eq!(sink.0.len(), stats.records as usize);
    assert!(!sink.0.is_empty());
    for line in &sink.0 {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["stream"], "access");
        assert_eq!(v["source"], "team.accessLogs");
        assert_eq!(v["team_id"], "T0TEAM");
        let row = model
            .rows
            .iter()
            .find(|r| r.state_id() == v["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(v["time"], row.dl);
        assert!(
            line.contains(&format!(r#""event":{}}}"#, row.json())),
            "raw bytes kept: {line}"
        );
    }
}

#[test]
fn new_only_records_carry_date_first_as_time_and_no_team_for_org_walks() {
    let cfg = config("new-only", "auto", 50, &[]);
    let mut model = Model::generated(ModelSort::DateLast, 5, 30, T0 - 4000, T0 - 10);
    let (mut store, mut sink, clock) =
        (MemStore::default(), LineSink::default(), TestClock::new(T0));
    let mut cp = AccessCheckpoint::initial(&cfg, T0);
    let mut fetcher = Fetcher {
        transport: &mut model,
        clock: &clock,
        deadline: Deadline::after(&clock, Duration::from_secs(60)),
        request_timeout: Duration::from_secs(5),
        stats: FetchStats::default(),
        log: &|_| {},
        pacer: None,
    };
    let mut io = StreamIo {
        store: &mut store,
        sink: &mut sink,
        collected_at: T0,
        log: &|_| {},
        lease: None,
    };
    assert_eq!(
        walk(
            &cfg,
            None,
            TOKEN,
            &mut fetcher,
            &mut io,
            &mut cp,
            &mut WalkStats::default()
        ),
        WalkEnd::CaughtUp
    );
    assert!(!sink.0.is_empty());
    for line in &sink.0 {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v.get("team_id").is_none());
        assert_eq!(v["time"], v["event"]["date_first"]);
        assert!(v["time"].as_i64().unwrap() > T0 - 3001);
    }
}

/// Rows where date_first == date_last fit both orders, so auto can never prove one.
fn unprovable(sort: ModelSort, n: usize) -> Model {
    let mut m = Model::new(sort);
    let mut rng = Lcg(1);
    for i in 0..n as i64 {
        let t = T0 - 2500 + i * 10;
        m.add_row(&mut rng, t, t);
    }
    m
}

#[test]
fn activity_under_date_last_stops_early_once_the_order_is_proven() {
    let mut run = Run::new(
        config("activity", "auto", 5, &[]),
        Model::generated(ModelSort::DateLast, 11, 60, T0 - 2900, T0 - 100),
    );
    run.pass_until_caught_up(1);
    assert_eq!(
        run.stored().unwrap().order,
        Some(SortOrder::DateLast),
        "proven and remembered"
    );
    run.model.touch(3, T0 + 10);
    run.model.touch(40, T0 + 20);
    run.set_now(T0 + 100);
    let n = run.model.requests.len();
    run.pass_until_caught_up(1);
    assert_eq!(
        run.stats_requests_since(n),
        1,
        "the first page ends in rows older than the watermark"
    );
    run.check(true);
}

#[test]
fn activity_walks_to_the_end_while_the_order_is_unknown_and_a_configured_key_is_trusted() {
    for (sort_key, expected_requests) in [("auto", 13), ("date_last", 1)] {
        let mut run = Run::new(
            config("activity", sort_key, 5, &[]),
            unprovable(ModelSort::DateLast, 60),
        );
        run.pass_until_caught_up(1);
        assert_eq!(run.stored().unwrap().order, None, "nothing proven");
        // (Touching an old row would prove the order: it rises in date_last above newer rows.)
        let mut rng = Lcg(2);
        run.model.add(&mut rng, T0 + 10);
        run.set_now(T0 + 100);
        let n = run.model.requests.len();
        run.pass_until_caught_up(1);
        assert_eq!(
            run.stats_requests_since(n),
            expected_requests,
            "access_sort_key={sort_key}"
        );
        run.check(true);
    }
}

#[test]
fn new_only_stops_at_rows_last_seen_before_the_watermark_under_either_order() {
    for sort in [ModelSort::DateFirst, ModelSort::DateLast] {
        let mut run = Run::new(config("new-only", "auto", 5, &[]), unprovable(sort, 60));
        run.pass_until_caught_up(1);
        let mut rng = Lcg(4);
        run.model.add(&mut rng, T0 + 10);
        run.model.touch(5, T0 + 11);
        run.set_now(T0 + 100);
        let n = run.model.requests.len();
        run.pass_until_caught_up(1);
        assert_eq!(run.stats_requests_since(n), 1, "{sort:?}");
        run.check(true);
        assert_eq!(run.must_rows.len(), 61);
    }
}

#[test]
fn activity_under_date_first_reads_to_the_end_for_old_rows_used_again() {
    let mut run = Run::new(
        config("activity", "auto", 5, &[]),
        Model::generated(ModelSort::DateFirst, 2, 60, T0 - 2900, T0 - 100),
    );
    run.pass_until_caught_up(1);
    assert_eq!(run.stored().unwrap().order, Some(SortOrder::DateFirst));
    // The oldest combination, last in date_first order, is used again.
    let oldest = (0..run.model.rows.len())
        .min_by_key(|&i| (run.model.rows[i].df, run.model.rows[i].id))
        .unwrap();
    run.model.touch(oldest, T0 + 10);
    run.set_now(T0 + 100);
    let n = run.model.requests.len();
    run.pass_until_caught_up(1);
    assert_eq!(run.stats_requests_since(n), 12, "every page");
    assert!(run.sink.ids.contains(&run.model.rows[oldest].state_id()));
    run.check(true);
}

#[test]
fn rows_in_neither_order_or_against_the_proven_one_stop_the_stream_with_advice() {
    let mut run = Run::new(
        config("activity", "auto", 5, &[]),
        Model::generated(ModelSort::RowId, 3, 30, T0 - 2900, T0 - 100),
    );
    let (end, _) = run.pass();
    match end {
        WalkEnd::Failed { code, message } => {
            assert_eq!(code, "access_sort_order");
            assert!(
                message.contains("access_sort_key") && message.contains("neither"),
                "{message}"
            );
        }
        e => panic!("{e:?}"),
    }
    assert!(
        run.sink.ids.is_empty(),
        "nothing delivered from a page it cannot place"
    );
    assert_eq!(run.stored().unwrap().walk, None);

    // A remembered date_last order, and Slack now sorts by date_first.
    let mut run = Run::new(
        config("activity", "auto", 50, &[]),
        Model::generated(ModelSort::DateFirst, 3, 30, T0 - 2900, T0 - 100),
    );
    let mut cp = AccessCheckpoint::initial(&run.cfg, T0);
    cp.order = Some(SortOrder::DateLast);
    run.store.map.insert(run.key(), cp.encode());
    let (end, _) = run.pass();
    assert!(
        matches!(&end, WalkEnd::Failed { code, message } if code == "access_sort_order" && message.contains("out of date_last order")),
        "{end:?}"
    );
    assert_eq!(run.stored().unwrap(), cp, "the checkpoint does not move");
}

#[test]
fn rows_updated_during_a_walk_go_to_the_next_walk() {
    for mode in ["activity", "new-only"] {
        for sort in [ModelSort::DateFirst, ModelSort::DateLast] {
            let mut run = Run::new(
                config(mode, "auto", 4, &[]),
                Model::generated(sort, 8, 50, T0 - 2900, T0 - 100),
            );
            // Mid-walk, rows are used again (date_last = now > before) and a new one appears.
            run.model.touch_at = [(2, vec![0, 7, 19]), (4, vec![33, 7]), (6, vec![1])].into();
            run.pass_until_caught_up(1);
            let mut rng = Lcg(5);
            run.model.add(&mut rng, T0 + 3);
            run.set_now(T0 + 100);
            run.pass_until_caught_up(1);
            run.check(false);
            if mode == "activity" {
                for i in [0, 7, 19, 33, 1] {
                    assert!(
                        run.sink.ids.contains(&run.model.rows[i].state_id()),
                        "{mode} {sort:?}: row {i} emitted as updated"
                    );
                }
            }
        }
    }
}

/// Our clock runs 10 minutes ahead of Slack's. A walk's `before` follows Slack's clock (the
/// `Date` of its answers): set by ours, the watermark would lie in Slack's future, and a row used
/// after the walk, at a Slack time below that watermark, would never be read.
#[test]
fn a_clock_ahead_of_slacks_keeps_the_watermark_out_of_slacks_future() {
    for sort in [ModelSort::DateFirst, ModelSort::DateLast] {
        let mut run = Run::new(
            config("activity", "auto", 4, &[("access_lag_seconds", "60")]),
            Model::generated(sort, 3, 30, T0 - 2900, T0 - 100),
        );
        run.model.send_date = true;
        run.clock.now.set(T0 + 600);
        run.pass_until_caught_up(1);
        let w = run.stored().unwrap().watermark;
        assert_eq!(w, T0 - 59, "{sort:?}: Slack's now minus the lag");
        // Used again after that walk, by Slack's clock, before ours said the walk ended.
        run.model.touch(0, T0 + 30);
        run.model.touch(5, T0 + 30);
        run.model.now = T0 + 100;
        run.clock.now.set(T0 + 700);
        run.pass_until_caught_up(1);
        run.check(false);
        for i in [0, 5] {
            assert!(
                run.sink.ids.contains(&run.model.rows[i].state_id()),
                "{sort:?}: row {i}, used again after the first walk, is delivered"
            );
        }
    }
}

/// A combination used before every single request is past `before` whenever a walk reads it;
/// it must still be delivered, each state once, including when walks span passes.
#[test]
fn a_combination_used_during_every_walk_is_still_delivered() {
    for tick in [0, 700] {
        let mut m = Model::generated(ModelSort::DateFirst, 21, 30, T0 - 2900, T0 - 100);
        let hot = (0..m.rows.len())
            .min_by_key(|&i| (m.rows[i].df, m.rows[i].id))
            .unwrap();
        m.touch_at = (1..2000).map(|n| (n, vec![hot])).collect();
        let mut run = Run::new(
            config("activity", "auto", 4, &[("max_run_seconds", "8")]),
            m,
        );
        run.clock.tick.set(Duration::from_millis(tick));
        for pass in 0..25 {
            run.set_now(T0 + pass * 10);
            match run.pass().0 {
                WalkEnd::CaughtUp | WalkEnd::Budget(_) => {}
                e => panic!("{e:?}"),
            }
        }
        run.check(false);
        let hot_states: BTreeSet<String> = run
            .model
            .history
            .iter()
            .filter(|r| r.id == run.model.rows[hot].id)
            .map(Row::state_id)
            .collect();
        let delivered = run
            .sink
            .ids
            .iter()
            .filter(|id| hot_states.contains(*id))
            .count();
        let walks = run
            .logs
            .borrow()
            .iter()
            .filter(|l| l.contains("complete"))
            .count();
        assert!(walks >= 2, "tick {tick}: {walks} walks");
        assert!(
            delivered >= walks - 1,
            "tick {tick}: the hot combination delivered {delivered} times in {walks} walks"
        );
    }
}

/// A pass completes a resumed walk, which delivers a row used during this pass ahead of its
/// `before`, then makes a fresh walk whose `before` (this pass's start) that state is still past:
/// the walk after must not deliver it again.
#[test]
fn a_state_past_two_walks_befores_is_delivered_once() {
    let mut m = Model::generated(ModelSort::DateFirst, 22, 30, T0 - 2900, T0 - 100);
    let oldest = (0..m.rows.len())
        .min_by_key(|&i| (m.rows[i].df, m.rows[i].id))
        .unwrap();
    m.now = T0;
    let mut run = Run::new(
        config("activity", "auto", 4, &[("max_run_seconds", "8")]),
        m,
    );
    run.clock.tick.set(Duration::from_millis(700));
    assert!(
        matches!(run.pass().0, WalkEnd::Budget(_)),
        "the first walk spans passes"
    );
    let resumed = run.stored().unwrap().walk.unwrap().before;
    run.clock.tick.set(Duration::ZERO);
    run.set_now(T0 + 100);
    // Used once, at the start of the pass that resumes the walk.
    run.model
        .touch_at
        .insert(run.model.requests.len() + 1, vec![oldest]);
    run.pass_until_caught_up(1);
    let logs = run.logs.borrow().join("\n");
    assert!(
        logs.contains(&format!("walk up to {} complete", format_rfc3339(resumed))),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("walk up to {} complete", format_rfc3339(T0 + 99))),
        "{logs}"
    );
    drop(logs);
    run.set_now(T0 + 200);
    run.pass_until_caught_up(1);
    let state = run.model.rows[oldest].state_id();
    assert_eq!(run.sink.ids.iter().filter(|id| **id == state).count(), 1);
    run.check(false);
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// A row delivered at the resume point changes before the walk reads there again: new-only must
/// still know the combination, activity must leave the new state to the next walk.
#[test]
fn a_combination_changed_at_the_resume_point_is_not_delivered_twice() {
    for mode in ["new-only", "activity"] {
        let mut m = Model::new(ModelSort::DateFirst);
        let mut rng = Lcg(8);
        m.add_row(&mut rng, T0 - 1000, T0 - 1000);
        for _ in 0..3 {
            m.add_row(&mut rng, T0 - 500, T0 - 400);
        }
        m.add_row(&mut rng, T0 - 200, T0 - 200);
        // Pages of 2: [5, 4], [3, 2]; then the cursor for [1] is refused, and row 4 (index 3),
        // delivered at the lowest date_first, is used again before the walk resumes there.
        m.invalid_cursor_at = [3].into();
        m.touch_at = [(3, vec![3])].into();
        let mut run = Run::new(config(mode, "auto", 2, &[]), m);
        run.pass_until_caught_up(1);
        assert!(!run.model.requests[3].contains("cursor="));
        run.set_now(T0 + 100);
        run.pass_until_caught_up(1);
        run.check(false);
        let distinct: BTreeSet<&String> = run.sink.ids.iter().collect();
        assert_eq!(
            distinct.len(),
            run.sink.ids.len(),
            "{mode}: {:?}",
            run.sink.ids
        );
        assert_eq!(
            run.sink.ids.len(),
            if mode == "activity" { 6 } else { 5 },
            "{mode}"
        );
    }
}

#[test]
fn invalid_cursor_mid_walk_resumes_from_the_position_without_loss_or_repeat() {
    for sort in [ModelSort::DateFirst, ModelSort::DateLast] {
        let mut run = Run::new(
            config("activity", "auto", 4, &[]),
            Model::generated(sort, 12, 60, T0 - 2900, T0 - 100),
        );
        run.model.invalid_cursor_at = [3, 4, 9].into();
        run.pass_until_caught_up(1);
        run.check(true);
        let stored = run.stored().unwrap();
        assert_eq!(stored.walk, None);
        // After a rejected cursor the next request has none: classic page numbers go on in
        // the same listing (3 pages of 4 rows served: page 1 of 1000).
        let after = &run.model.requests[3];
        assert!(!after.contains("cursor="), "{after}");
        assert!(after.contains("count=1000&page=1"), "{after}");
        assert!(run
            .logs
            .borrow()
            .iter()
            .any(|l| l.contains("invalid_cursor")));
    }
}

#[test]
fn sink_failure_keeps_the_checkpoint_and_the_next_pass_delivers() {
    let mut run = Run::new(
        config("activity", "auto", 4, &[]),
        Model::generated(ModelSort::DateFirst, 13, 40, T0 - 2900, T0 - 100),
    );
    run.sink.fail_at = Some(3);
    let (end, _) = run.pass();
    assert!(
        matches!(&end, WalkEnd::Failed { code, .. } if code == "sink_unavailable"),
        "{end:?}"
    );
    let kept = run.stored().unwrap();
    assert!(
        kept.walk.is_some(),
        "the checkpoint holds the position of the last accepted page"
    );
    run.set_now(T0 + 50);
    run.pass_until_caught_up(1);
    let done = format!(
        "walk up to {} complete",
        format_rfc3339(kept.walk.unwrap().before)
    );
    assert!(
        run.logs.borrow().iter().any(|l| l.contains(&done)),
        "the interrupted walk completed first"
    );
    run.check(true);
}

#[test]
fn store_failure_after_an_accepted_batch_repeats_at_most_that_batch() {
    for fail_at in 1..6 {
        let mut run = Run::new(
            config("new-only", "auto", 4, &[]),
            Model::generated(ModelSort::DateLast, 14, 40, T0 - 2900, T0 - 100),
        );
        run.store.fail_set_at = Some(fail_at);
        let (end, _) = run.pass();
        assert!(
            matches!(&end, WalkEnd::Failed { code, .. } if code == "store_error"),
            "{end:?}"
        );
        run.pass_until_caught_up(1);
        let distinct: BTreeSet<&String> = run.sink.ids.iter().collect();
        assert!(
            run.sink.ids.len() - distinct.len() <= 4,
            "at most one page of 4 repeats"
        );
        run.check(true);
    }
}

#[test]
fn budget_exhaustion_resumes_the_same_walk_next_pass_without_loss_or_repeat() {
    for (mode, sort) in [
        ("activity", ModelSort::DateFirst),
        ("activity", ModelSort::DateLast),
        ("new-only", ModelSort::DateFirst),
    ] {
        let cfg = config(mode, "auto", 3, &[("max_run_seconds", "8")]);
        let mut run = Run::new(cfg, Model::generated(sort, 15, 60, T0 - 2900, T0 - 100));
        run.clock.tick.set(Duration::from_millis(700));
        let mut rng = Lcg(6);
        // (watermark, before of the walk in progress) after each pass.
        let mut seen = vec![];
        for pass in 1..=14 {
            run.set_now(T0 + pass * 30);
            match run.pass().0 {
                WalkEnd::Budget(m) => assert!(m.contains("budget"), "{m}"),
                WalkEnd::CaughtUp => {}
                e => panic!("{e:?}"),
            }
            let cp = run.stored().unwrap();
            seen.push((cp.watermark, cp.walk.map(|w| w.before)));
            churn(&mut run, &mut rng, 2, 1);
        }
        let spans = seen
            .windows(2)
            .filter(|w| w[0].0 == w[1].0 && w[0].1.is_some() && w[1].1.is_some())
            .count();
        assert!(spans > 0, "{mode} {sort:?}: a walk spans passes {seen:?}");
        for w in seen.windows(2) {
            if w[0].0 == w[1].0 && w[0].1.is_some() && w[1].1.is_some() {
                assert_eq!(
                    w[0].1, w[1].1,
                    "{mode} {sort:?}: `before` is fixed for the walk"
                );
            }
        }
        assert!(
            seen.last().unwrap().0 > seen[0].0,
            "{mode} {sort:?}: walks complete"
        );
        // Let the last changes settle into a walk, then compare.
        run.clock.tick.set(Duration::ZERO);
        run.set_now(T0 + 10_000);
        run.pass_until_caught_up(1);
        run.check(false);
    }
}

#[test]
fn classic_fallback_and_fatal_error_switch_back_to_cursor_paging() {
    for status in [500, 200] {
        let mut run = Run::new(
            config("activity", "auto", 999, &[]),
            Model::generated(ModelSort::DateLast, 16, 300, T0 - 2900, T0 - 100),
        );
        run.model.max_limit = 200;
        run.model.classic_fatal = Some(status);
        run.pass_until_caught_up(1);
        run.check(true);
        let reqs = &run.model.requests;
        assert!(reqs[0].contains("limit=999"));
        assert!(
            reqs[1].contains("count=1000") && reqs[1].contains("page=1"),
            "{}",
            reqs[1]
        );
        let last = reqs.last().unwrap();
        assert!(last.contains("limit=100"), "{last}");
        let logs = run.logs.borrow();
        assert!(logs.iter().any(|l| l.contains("invalid_limit")), "{logs:?}");
        assert!(
            logs.iter()
                .any(|l| l.contains("switching to cursor paging")),
            "{logs:?}"
        );
    }
    // Cursor paging refused at every limit, classic failing: a clear error.
    let mut run = Run::new(
        config("activity", "auto", 999, &[]),
        Model::generated(ModelSort::DateLast, 16, 30, T0 - 2900, T0 - 100),
    );
    run.model.max_limit = 0;
    run.model.classic_fatal = Some(200);
    let (end, _) = run.pass();
    assert!(
        matches!(&end, WalkEnd::Failed { code, message } if code == "invalid_limit" && message.contains("access_page_size")),
        "{end:?}"
    );
}

/// Classic paging (cursor paging refused) over more rows than the page cap: the walk lowers
/// `before` to its position, goes through a tie larger than a page by page number, and steps back
/// when `paging.total` shows rows left (here a tie row used again, which leaves a listing filtered
/// on date_last).
#[test]
fn classic_walks_past_the_page_cap_and_step_back_in_a_tie_when_rows_leave() {
    let mut m = Model::new(ModelSort::DateLast);
    let mut rng = Lcg(3);
    for i in 0..8 {
        m.add_row(&mut rng, T0 - 2800 + i, T0 - 2800 + i);
    }
    m.add_tie(13, T0 - 500); // ids 9..=21
    for i in 0..8 {
        m.add_row(&mut rng, T0 - 2000 + i, T0 - 200 + i);
    }
    m.max_limit = 0;
    m.max_count = 5;
    m.max_page = 4;
    // Requests: 1 is refused (`limit`); 2..=5 are pages 1..=4 of the listing without `before`
    // (29 rows: past the cap; 8 newer rows and 12 of the tie read); 6 is page 1 of
    // before=T0-500 (tie ids 21..=17, all read); before 7 (its page 2), id 21 is used again: it
    // leaves the listing and the rest shift up, so page 2 as asked would skip id 16.
    m.touch_at = [(7, vec![20])].into();
    let mut run = Run::new(config("activity", "date_last", 10, &[]), m);
    run.limits = Limits {
        classic_count: 5,
        classic_max_page: 4,
    };
    run.pass_until_caught_up(1);
    run.set_now(T0 + 100);
    run.pass_until_caught_up(1);
    run.check(false);
    for r in &run.model.rows {
        let emitted = run.sink.ids.contains(&r.state_id());
        assert!(emitted, "row {} ({}, {}) emitted", r.id, r.df, r.dl);
    }
    let tie = format!("before={}&count=5&page=1", T0 - 500);
    assert_eq!(
        run.model
            .requests
            .iter()
            .filter(|u| u.contains(&tie))
            .count(),
        2,
        "stepped back to page 1 after the shift: {:#?}",
        run.model.requests
    );
    assert!(
        run.model.requests.iter().all(|u| !u.contains("page=5")),
        "never past the cap"
    );

    // More rows in one second than classic paging can reach: a clear failure, not a loop.
    let mut m = Model::new(ModelSort::DateLast);
    m.add_tie(25, T0 - 500);
    m.max_limit = 0;
    m.max_count = 5;
    m.max_page = 4;
    let mut run = Run::new(config("activity", "date_last", 10, &[]), m);
    run.limits = Limits {
        classic_count: 5,
        classic_max_page: 4,
    };
    let (end, _) = run.pass();
    assert!(
        matches!(&end, WalkEnd::Failed { code, message } if code == "over_pagination_limit" && message.contains("cursor paging")),
        "{end:?}"
    );
    assert!(run.model.requests.iter().all(|u| !u.contains("page=5")));
    assert!(run.model.requests.len() < 12, "{:#?}", run.model.requests);
}

#[test]
fn slack_errors_fail_with_the_code_and_what_to_fix_without_moving_the_checkpoint() {
    let cases: &[(&str, &[&str])] = &[
        ("paid_only", &["paid workspace", "streams"]),
        ("missing_scope", &["needed scope: admin", "identify"]),
        ("not_allowed_token_type", &["user token (xoxp-)"]),
        ("over_pagination_limit", &["access_page_size"]),
        ("invalid_team_id", &["team_ids", "T0BAD"]),
        ("team_access_not_granted", &["granted access", "T0BAD"]),
        ("invalid_auth", &["slack_token"]),
        ("missing_argument", &["team_ids"]),
    ];
    for (code, words) in cases {
        let mut run = Run::new(
            config("activity", "auto", 10, &[]),
            Model::generated(ModelSort::DateFirst, 1, 10, T0 - 2900, T0 - 100),
        );
        run.team = Some("T0BAD");
        run.model.error = Some(code);
        let mut cp = AccessCheckpoint::initial(&run.cfg, T0);
        cp.walk = Some(AccessWalk::start(&run.cfg, &cp, T0 - 50));
        run.store.map.insert(run.key(), cp.encode());
        let (end, _) = run.pass();
        match end {
            WalkEnd::Failed { code: c, message } => {
                assert_eq!(&c, code);
                for w in *words {
                    assert!(message.contains(w), "{code}: {message:?} lacks {w:?}");
                }
                assert!(message.contains("team.accessLogs"), "{message}");
            }
            e => panic!("{code}: {e:?}"),
        }
        assert_eq!(
            run.stored().unwrap(),
            cp,
            "{code}: the checkpoint does not move"
        );
        assert!(run.sink.ids.is_empty());
    }
}

#[test]
fn a_fresh_stream_without_backfill_starts_from_now() {
    let cfg = config("activity", "auto", 10, &[("backfill_start_time", "")]);
    let mut run = Run::new(
        cfg,
        Model::generated(ModelSort::DateLast, 1, 20, T0 - 2900, T0 - 100),
    );
    run.w_init = T0;
    let (end, _) = run.pass();
    assert_eq!(end, WalkEnd::CaughtUp);
    assert!(run.model.requests.is_empty(), "nothing to ask for yet");
    run.model.touch(4, T0 + 5);
    run.set_now(T0 + 60);
    run.pass_until_caught_up(1);
    assert_eq!(run.sink.ids, vec![run.model.rows[4].state_id()]);
    run.check(true);
}

// ---------------------------------------------------------------------------------------------
// Random schedules of data, changes and faults.

#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    activity: bool,
    sort_last: bool,
    trust: bool,
    classic: bool,
    short_pages: bool,
    page: u32,
    rows: usize,
    faults: Vec<(u8, usize)>,
    churn: Vec<(u8, u8)>,
    tick_ms: u64,
    /// `before` filters on the field Slack does not sort by.
    filter_other: bool,
    /// Cursors are position numbers.
    offset_cursor: bool,
    /// Rows sharing one second (0: none).
    tie: usize,
    /// Classic paging fails (as an error in a 200 body).
    classic_fails: bool,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        (
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        1u32..7,
        0usize..45,
        prop::collection::vec((0u8..6, 1usize..30), 0..6),
        prop::collection::vec((0u8..4, 0u8..3), 1..5),
        prop_oneof![Just(0u64), Just(600u64), Just(900u64)],
        (
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0usize), 5usize..40, 100usize..400],
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (seed, activity, sort_last, trust, classic, short_pages),
                page,
                rows,
                faults,
                churn,
                tick_ms,
                (filter_other, offset_cursor, tie, classic_fails),
            )| Plan {
                seed,
                activity,
                sort_last,
                trust,
                classic,
                short_pages,
                page,
                rows,
                faults,
                churn,
                tick_ms,
                filter_other,
                offset_cursor,
                tie,
                classic_fails,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_changes_and_faults_lose_nothing_and_repeat_only_interrupted_batches(p in plan()) {
        let sort = if p.sort_last { ModelSort::DateLast } else { ModelSort::DateFirst };
        let mode = if p.activity { "activity" } else { "new-only" };
        let sort_key = if p.trust { sort_name(sort) } else { "auto" };
        let cfg = config(mode, sort_key, p.page, &[("max_run_seconds", "10")]);
        let mut run = Run::new(cfg, Model::generated(sort, p.seed, p.rows, T0 - 3500, T0 - 100));
        run.model.short_pages = p.short_pages;
        if p.filter_other {
            run.model.filter = Some(if p.sort_last { ModelSort::DateFirst } else { ModelSort::DateLast });
        }
        run.model.offset_cursor = p.offset_cursor;
        // Classic paging reaches 4 pages of a listing here: a larger tie could not be passed.
        let tie = if p.classic { p.tie.min(3 * (p.page as usize + 1)) } else { p.tie };
        if tie > 0 {
            run.model.add_tie(tie, T0 - 1000 - (p.seed % 2000) as i64);
        }
        if p.classic_fails && !p.classic {
            run.model.classic_fatal = Some(200);
        }
        if p.classic {
            // Sorted by date_first with `before` on date_last, nothing lets classic paging past
            // its cap (that failure has its own test): no cap then.
            let cap = if p.filter_other && !p.sort_last { 100 } else { 4 };
            run.model.max_limit = 0;
            run.model.max_count = p.page + 1;
            run.model.max_page = cap;
            run.limits = Limits { classic_count: p.page + 1, classic_max_page: cap };
        }
        for (kind, at) in &p.faults {
            match kind {
                0 => { run.model.invalid_cursor_at.insert(*at); }
                1 => { run.model.fatal_at.insert(*at); }
                2 => { run.sink.fail_at = Some(*at); }
                3 => { run.store.fail_set_at = Some(*at); }
                _ => { run.model.touch_at.entry(*at).or_default().push(*at * 7); }
            }
        }
        run.clock.tick.set(Duration::from_millis(p.tick_ms));
        let mut rng = Lcg(p.seed ^ 0x5eed);
        let mut now = T0;
        let mut changes = p.churn.iter();
        let mut waits_for_cursor_paging = false;
        for _ in 0..60 {
            run.set_now(now);
            let (end, _) = run.pass();
            if let WalkEnd::Failed { code, message } = &end {
                if code == "over_pagination_limit" {
                    // Classic paging only (Slack refused cursors), past its cap of 4 tiny pages:
                    // where no lower `before` is proven safe, or the rows at the position fill
                    // the cap, the walk waits rather than risk hiding rows. What completed must
                    // still be right.
                    prop_assert!(p.classic, "{}", message);
                    waits_for_cursor_paging = true;
                    break;
                }
                // Injected faults only (a tie a pass cannot re-read through while classic paging
                // fails and cursors are rejected is one); anything else is a bug.
                let stuck = p.classic_fails && code == "access_tie_stuck";
                prop_assert!(stuck || ["sink_unavailable", "store_error", "invalid_cursor"].contains(&code.as_str()), "{} {}", code, message);
                prop_assert!(!message.contains(TOKEN));
                run.sink.fail_at = None;
            }
            now += 40;
            match changes.next() {
                Some((touches, adds)) => churn(&mut run, &mut rng, usize::from(*touches), usize::from(*adds)),
                None if end == WalkEnd::CaughtUp => break,
                None => {}
            }
        }
        // Settle: one more walk after the last change, without the budget squeeze or injected
        // sink and store failures.
        run.clock.tick.set(Duration::ZERO);
        run.sink.fail_at = None;
        run.store.fail_set_at = None;
        run.set_now(now + 100);
        let (end, _) = run.pass();
        if !waits_for_cursor_paging {
            prop_assert_eq!(end, WalkEnd::CaughtUp);
        }
        run.check(false);
    }
}

#[test]
fn a_cursor_that_comes_back_stops_the_walk_and_the_next_pass_resumes() {
    let mut run = Run::new(
        config("activity", "auto", 4, &[]),
        Model::generated(ModelSort::DateFirst, 14, 30, T0 - 2900, T0 - 100),
    );
    run.model.repeat_cursor = true;
    let (end, _) = run.pass();
    assert!(
        matches!(&end, WalkEnd::Failed { code, .. } if code == "cursor_loop"),
        "{end:?}"
    );
    assert!(
        run.model.requests.len() <= 3,
        "stopped at once: {} requests",
        run.model.requests.len()
    );
    // Slack pages properly again: everything arrives, nothing twice.
    run.model.repeat_cursor = false;
    run.pass_until_caught_up(1);
    run.check(true);
}

// ---------------------------------------------------------------------------------------------
// Listings Slack may page in any of its undocumented ways, big ties, the lag, the old format.

fn model_name(s: ModelSort) -> &'static str {
    match s {
        ModelSort::DateFirst => "date_first",
        ModelSort::DateLast => "date_last",
        ModelSort::RowId => "row id",
    }
}

/// Every combination of the field Slack sorts by and the field `before` filters on, with keyset
/// and offset cursors, rows used again before nearly every request, and cursors rejected (so the
/// walk resumes by page number) or rejected with classic paging failing too (so it resumes by a
/// lowered `before`, where that is safe, or from the start): nothing lost, nothing repeated.
#[test]
fn every_sort_key_filter_field_and_cursor_kind_loses_nothing_while_rows_change() {
    for sort in [ModelSort::DateFirst, ModelSort::DateLast] {
        for filter in [ModelSort::DateFirst, ModelSort::DateLast] {
            for offset in [false, true] {
                for mode in ["activity", "new-only"] {
                    for resume in 0..3 {
                        let label = format!(
                            "sorted by {}, before on {}, {} cursor, {mode}, resume {resume}",
                            model_name(sort),
                            model_name(filter),
                            if offset { "offset" } else { "keyset" }
                        );
                        let mut m = Model::generated(sort, 40 + resume, 80, T0 - 2900, T0 - 100);
                        m.filter = Some(filter);
                        m.offset_cursor = offset;
                        // Rows used again before most requests, at the pass's now (past `before`).
                        m.touch_at = (1..400).map(|n| (n, vec![n * 13 + 5, n * 7])).collect();
                        if resume == 1 {
                            m.invalid_cursor_at = (1..400).filter(|n| n % 11 == 0).collect();
                        }
                        if resume == 2 {
                            // Without classic paging a rejected cursor may mean reading again
                            // from the start: rarer, or no walk could finish.
                            m.invalid_cursor_at = [6, 29, 61, 140].into();
                            m.classic_fatal = Some(200);
                        }
                        let mut run =
                            Run::new(config(mode, "auto", 4, &[("max_run_seconds", "600")]), m);
                        let mut rng = Lcg(7);
                        for round in 0..4 {
                            run.set_now(T0 + round * 300);
                            match run.pass().0 {
                                WalkEnd::CaughtUp => {}
                                e => {
                                    panic!("{label} round {round}: {e:?}\n{:#?}", run.logs.borrow())
                                }
                            }
                            churn(&mut run, &mut rng, 3, 2);
                        }
                        run.model.touch_at.clear();
                        run.set_now(T0 + 2_000);
                        run.pass_until_caught_up(1);
                        run.check(false);
                        assert!(!run.must.is_empty() || !run.must_rows.is_empty(), "{label}");
                        if resume > 0 {
                            assert!(
                                run.logs
                                    .borrow()
                                    .iter()
                                    .any(|l| l.contains("invalid_cursor")),
                                "{label}: cursors were rejected"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The rows of a tie, in the model, by id.
fn tie_ids(run: &Run, t: i64) -> BTreeSet<String> {
    run.model
        .rows
        .iter()
        .filter(|r| r.df == t && r.dl == t)
        .map(Row::state_id)
        .collect()
}

/// Passes until the walk the first pass starts has completed (the watermark reached its bound), at
/// most `max`; returns how many it took. Every checkpoint saved on the way stays small.
fn passes_until_complete(
    run: &mut Run,
    max: usize,
    before_each: impl Fn(&mut Run, usize),
) -> usize {
    let mut target = None;
    for pass in 1..=max {
        before_each(run, pass);
        let n0 = run.model.requests.len();
        let (end, _) = run.pass();
        if std::env::var_os("ACCESS_TRACE").is_some() {
            eprintln!(
                "pass {pass}: {end:?} {} requests, {} records; last {:?}",
                run.model.requests.len() - n0,
                run.sink.ids.len(),
                run.model.requests.last()
            );
        }
        let cp = run.stored().unwrap();
        let size = cp.encode().len();
        assert!(size < 120_000, "pass {pass}: checkpoint of {size} bytes");
        if let Some(w) = &cp.walk {
            assert!(w.position.first_keys.len() <= MAX_TIE_KEYS);
            assert!(w.position.last_keys.len() <= MAX_TIE_KEYS);
            target.get_or_insert(w.before);
        }
        match end {
            WalkEnd::CaughtUp | WalkEnd::Budget(_) => {}
            e => panic!("pass {pass}: {e:?}\n{:#?}", run.logs.borrow()),
        }
        if target.is_none_or(|t| cp.watermark >= t) {
            return pass;
        }
    }
    panic!("the walk did not complete in {max} passes");
}

/// 5,000 rows in one second, more than a checkpoint keeps keys of, read over passes of about ten
/// pages: each pass goes on where the last one stopped, with the saved cursor or (when Slack
/// rejects it) classic page numbers, so the tie is passed in a bounded number of passes, nothing
/// is delivered twice, and every checkpoint stays small.
#[test]
fn a_tie_larger_than_a_pass_is_passed_in_bounded_passes_without_repeats() {
    for sort in [ModelSort::DateFirst, ModelSort::DateLast] {
        for reject_saved_cursor in [false, true] {
            let label = format!("{sort:?} reject_saved_cursor={reject_saved_cursor}");
            let mut m = Model::generated(sort, 5, 30, T0 - 2900, T0 - 1000);
            m.add_tie(5_000, T0 - 600);
            let mut run = Run::new(
                config("activity", "auto", 50, &[("max_run_seconds", "8")]),
                m,
            );
            run.clock.tick.set(Duration::from_millis(400));
            // Classic pages of 200 rows, so resuming by page number also takes several passes.
            run.limits = Limits {
                classic_count: 200,
                classic_max_page: 100,
            };
            let passes = passes_until_complete(&mut run, 60, |run, pass| {
                run.set_now(T0 + pass as i64);
                if reject_saved_cursor {
                    // The first request of a pass carries the saved cursor: Slack rejects it.
                    let next = run.model.n + 1;
                    run.model.invalid_cursor_at.insert(next);
                }
            });
            run.check(false);
            assert_eq!(run.interrupted, 0);
            assert_eq!(
                run.sink.ids.len(),
                run.sink.ids.iter().collect::<BTreeSet<_>>().len(),
                "{label}: no repeat"
            );
            assert!(
                tie_ids(&run, T0 - 600).is_subset(&run.sink.ids.iter().cloned().collect()),
                "{label}"
            );
            // About 100 pages of 50 (fewer of 1000 once classic pages resume), ten a pass.
            assert!(passes <= 16, "{label}: {passes} passes");
            let requests = run.model.requests.len();
            assert!(
                requests <= 5_030 / 50 + 3 * passes + 2,
                "{label}: {requests} requests"
            );
            if reject_saved_cursor {
                let resumed = run
                    .model
                    .requests
                    .iter()
                    .filter(|u| u.contains("count=200&page="))
                    .count();
                assert!(resumed >= 10, "{label}: {resumed} classic pages");
            }
        }
    }
}

/// The keys of tie parts in the store.
fn tie_parts(run: &Run) -> BTreeSet<String> {
    run.store
        .map
        .keys()
        .filter(|k| k.contains("/tie/"))
        .cloned()
        .collect()
}

/// A tie of 5,000 rows, about 3,000 of them delivered over three passes with working cursors
/// (more than the 2,048 keys a checkpoint holds inline: the older ones are in tie parts).
fn tie_with_3000_delivered() -> Run {
    let mut m = Model::generated(ModelSort::DateFirst, 5, 30, T0 - 2900, T0 - 1000);
    m.add_tie(5_000, T0 - 600);
    let mut run = Run::new(
        config("activity", "date_first", 100, &[("max_run_seconds", "8")]),
        m,
    );
    run.clock.tick.set(Duration::from_millis(400));
    for pass in 1..=3 {
        run.set_now(T0 + pass);
        assert!(matches!(run.pass().0, WalkEnd::Budget(_)), "pass {pass}");
    }
    let cp = run.stored().unwrap();
    let p = &cp.walk.as_ref().unwrap().position;
    assert!(p.first_keys.len() <= MAX_TIE_KEYS && p.last_keys.len() <= MAX_TIE_KEYS);
    assert!(
        !p.first_spill.is_empty() && p.forgotten() == 0,
        "the older keys of the tie are stored apart, none forgotten"
    );
    assert!(!tie_parts(&run).is_empty());
    run
}

/// The same tie when Slack gives no way to resume inside it (the saved cursor rejected, classic
/// paging failing): each pass re-reads the tie from its start and skips every row of it
/// delivered (their keys are in the checkpoint or in tie parts), so nothing is offered again at
/// any tie size. A pass that gets no further than the last ends `access_tie_stuck` with advice
/// rather than quietly; once classic paging works the walk finishes, and its parts are deleted.
#[test]
fn a_tie_with_no_way_to_resume_inside_is_re_read_without_repeats_and_a_stall_is_reported() {
    let mut run = tie_with_3000_delivered();
    run.model.classic_fatal = Some(200);
    let mut ends = Vec::new();
    for pass in 4..=6 {
        run.set_now(T0 + pass);
        let next = run.model.n + 1;
        run.model.invalid_cursor_at.insert(next);
        ends.push(run.pass().0);
    }
    assert!(matches!(ends[0], WalkEnd::Budget(_)), "{:?}", ends[0]);
    for end in &ends[1..] {
        match end {
            WalkEnd::Failed { code, message } => {
                assert_eq!(code, "access_tie_stuck");
                assert!(
                    message.contains("max_run_seconds")
                        && message.contains("nothing is offered again"),
                    "{message}"
                );
            }
            e => panic!("a re-read that got no further: {e:?}"),
        }
    }
    let ids = &run.sink.ids;
    assert_eq!(
        ids.len(),
        ids.iter().collect::<BTreeSet<_>>().len(),
        "nothing offered again"
    );
    run.model.classic_fatal = None;
    passes_until_complete(&mut run, 30, |run, pass| {
        run.set_now(T0 + 10 + pass as i64);
        let next = run.model.n + 1;
        run.model.invalid_cursor_at.insert(next);
    });
    run.check(false);
    let ids = &run.sink.ids;
    assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len());
    assert!(
        tie_parts(&run).is_empty(),
        "a completed walk deletes its tie parts: {:?}",
        tie_parts(&run)
    );
}

/// The same tie when the stored keys are lost (a tie part deleted by hand, or a checkpoint of a
/// release that kept only the window): the walk re-reads the tie from its start once, offering
/// again only rows of it whose keys are not known (a bounded repeat, logged); when that pass cannot
/// get through either, the stream stops with advice instead of repeating them again, and goes on
/// once classic paging works.
#[test]
fn a_tie_whose_keys_were_lost_is_re_read_once_then_stops_with_advice() {
    let mut run = tie_with_3000_delivered();
    // From now on Slack rejects every saved cursor and classic paging fails. A first re-read
    // with every key known repeats nothing (and is remembered for telling a stall)...
    run.model.classic_fatal = Some(200);
    run.set_now(T0 + 4);
    let next = run.model.n + 1;
    run.model.invalid_cursor_at.insert(next);
    assert!(matches!(run.pass().0, WalkEnd::Budget(_)));
    let delivered_before = run.sink.ids.len();
    assert_eq!(
        delivered_before,
        run.sink.ids.iter().collect::<BTreeSet<_>>().len()
    );
    // ... then the stored keys are lost: the one re-read that may offer them again still comes.
    for k in tie_parts(&run) {
        run.store.map.remove(&k);
    }
    let mut stuck = None;
    for pass in 5..=7 {
        run.set_now(T0 + pass);
        let next = run.model.n + 1;
        run.model.invalid_cursor_at.insert(next);
        match run.pass().0 {
            WalkEnd::Budget(_) => {}
            WalkEnd::Failed { code, message } => {
                assert_eq!(code, "access_tie_stuck");
                assert!(
                    message.contains("max_run_seconds") && message.contains("Nothing was lost"),
                    "{message}"
                );
                stuck = Some(pass);
                break;
            }
            e => panic!("pass {pass}: {e:?}"),
        }
    }
    assert_eq!(stuck, Some(6), "the second re-read stops the stream");
    let logs = run.logs.borrow().join("\n");
    assert!(
        logs.contains("may be offered again (same ids), once")
            && logs.contains("is missing; the")
            && logs.contains("keys it and the parts after it held are forgotten"),
        "{logs}"
    );
    drop(logs);
    let repeats = run.sink.ids.len() - run.sink.ids.iter().collect::<BTreeSet<_>>().len();
    assert!(
        repeats > 0 && repeats <= delivered_before,
        "{repeats} repeats of {delivered_before}"
    );
    let after_stop = run.sink.ids.len();
    // Classic paging works again: the walk resumes by page number and finishes, repeating nothing
    // more.
    run.model.classic_fatal = None;
    run.interrupted = repeats;
    let passes = passes_until_complete(&mut run, 30, |run, pass| {
        run.set_now(T0 + 10 + pass as i64);
        let next = run.model.n + 1;
        run.model.invalid_cursor_at.insert(next);
    });
    assert!(passes <= 8, "{passes}");
    run.check(false);
    let new: Vec<&String> = run.sink.ids[after_stop..].iter().collect();
    let earlier: BTreeSet<&String> = run.sink.ids[..after_stop].iter().collect();
    assert!(
        new.iter().all(|id| !earlier.contains(id)),
        "nothing offered a second time after the stop"
    );
}

/// Activity Slack records late (here 30 s after it happened, within the 60 s default lag) is
/// collected: the walk's bound stays `access_lag_seconds` behind now. With a one-second lag
/// (the old fixed settle time) the same activity lands behind the watermark and is lost.
#[test]
fn activity_recorded_late_within_the_lag_is_collected() {
    for (lag, collected) in [("60", true), ("1", false)] {
        let mut run = Run::new(
            config("activity", "auto", 10, &[("access_lag_seconds", lag)]),
            Model::generated(ModelSort::DateLast, 9, 40, T0 - 2900, T0 - 1000),
        );
        run.pass_until_caught_up(1);
        let w = run.stored().unwrap().watermark;
        assert_eq!(w, T0 - lag.parse::<i64>().unwrap());
        // Used at T0 - 30, recorded by Slack after the pass at T0.
        run.model.touch(3, T0 - 30);
        let late = run.model.rows[3].state_id();
        run.set_now(T0 + 120);
        run.pass_until_caught_up(1);
        assert_eq!(run.sink.ids.contains(&late), collected, "lag {lag}");
        if collected {
            run.check(true);
        }
    }
}

/// A format-1 checkpoint (FNV-1a keys) in the middle of a walk: the walk goes on from its position,
/// offers the rows at the position again once with their new ids, loses nothing, and says so.
#[test]
fn a_format_1_checkpoint_mid_walk_is_upgraded_and_loses_nothing() {
    let m = Model::generated(ModelSort::DateFirst, 12, 40, T0 - 2900, T0 - 100);
    let mut run = Run::new(config("activity", "date_first", 4, &[]), m);
    // A walk of format 1 that delivered the rows with date_first above a value, keyed by FNV.
    let mut rows: Vec<&Row> = run.model.rows.iter().collect();
    rows.sort_by(|a, b| b.df.cmp(&a.df).then(b.id.cmp(&a.id)));
    let done = &rows[..15];
    let f = done.last().unwrap().df;
    let l = done.iter().map(|r| r.dl).min().unwrap();
    let fnv = |r: &Row| {
        crate::record::fnv1a64(&[
            r.user.as_bytes(),
            r.ip.as_deref().unwrap_or("").as_bytes(),
            r.ua.as_bytes(),
            r.df.to_string().as_bytes(),
            r.dl.to_string().as_bytes(),
        ])
    };
    let first_keys: Vec<u64> = done.iter().filter(|r| r.df == f).map(|r| fnv(r)).collect();
    let last_keys: Vec<u64> = done.iter().filter(|r| r.dl == l).map(|r| fnv(r)).collect();
    let v1 = serde_json::json!({
        "v": 1,
        "watermark": T0 - 3001,
        "order": "date_first",
        "walk": {
            "before": T0 - 1,
            "mode": "activity",
            "order": "date_first",
            "classic": false,
            "position": {"date_first": f, "first_keys": first_keys, "date_last": l, "last_keys": last_keys},
            "ahead": [7, 8]
        },
        "ahead": [1, 2, 3]
    });
    run.store
        .map
        .insert(run.key(), serde_json::to_vec(&v1).unwrap());
    let delivered: BTreeSet<String> = done.iter().map(|r| r.state_id()).collect();
    let again: BTreeSet<String> = done
        .iter()
        .filter(|r| r.df == f || r.dl == l)
        .map(|r| r.state_id())
        .collect();
    run.w_init = T0 - 3001;
    run.pass_until_caught_up(1);
    let logs = run.logs.borrow().join("\n");
    assert!(
        logs.contains("checkpoint format 1 upgraded to 2") && logs.contains("SHA-256"),
        "{logs}"
    );
    drop(logs);
    assert_eq!(run.stored().unwrap().v, 2);
    // Everything not delivered before is delivered now; of what was, only the rows at the
    // position come again.
    let emitted: BTreeSet<String> = run.sink.ids.iter().cloned().collect();
    let expected: BTreeSet<String> = run
        .model
        .rows
        .iter()
        .map(Row::state_id)
        .filter(|id| !delivered.contains(id) || again.contains(id))
        .collect();
    assert_eq!(emitted, expected);
    assert!(!again.is_empty());
}

/// The largest checkpoint the stream can write stays well under the portable 400 KB.
#[test]
fn the_largest_checkpoint_stays_well_under_the_portable_limit() {
    let full = |base: u64| -> KeyWindow {
        (0..MAX_TIE_KEYS as u64 + 50)
            .map(|k| u64::MAX - base - k)
            .collect()
    };
    let cp = AccessCheckpoint {
        v: 2,
        watermark: i64::MAX,
        order: Some(SortOrder::DateLast),
        before_spares_date_last: true,
        walk: Some(AccessWalk {
            before: i64::MAX,
            mode: WalkMode::Activity,
            order: Some(SortOrder::DateLast),
            classic: true,
            refused_limit: Some(u32::MAX),
            classic_failed: true,
            position: Position {
                date_first: Some(i64::MIN),
                first_keys: full(0),
                first_spill: tie::Spill::from(u64::MAX),
                first_forgotten: u64::MAX,
                date_last: Some(i64::MIN),
                last_keys: full(1 << 32),
                last_spill: tie::Spill::from(u64::MAX),
                last_forgotten: u64::MAX,
                witness: Some(i64::MIN),
            },
            ahead: (0..MAX_AHEAD as u64).map(|k| u64::MAX - k).collect(),
            listing: Listing {
                anchor: Some(i64::MIN),
                served: u64::MAX,
                reached: u64::MAX,
                cursor: Some("c".repeat(2_048)),
                page: Some(u32::MAX),
                total: Some(u64::MAX),
            },
            reread_at: Some((i64::MIN, i64::MIN)),
            tie_reread: Some((i64::MIN, i64::MIN, u64::MAX)),
            tie_parts: u64::MAX,
        }),
        ahead: (0..MAX_AHEAD as u64).map(|k| u64::MAX / 2 - k).collect(),
    };
    let size = cp.encode().len();
    assert!(size < 256_000, "{size} bytes");
    assert!(size < crate::env::MAX_VALUE_BYTES);
    assert_eq!(AccessCheckpoint::decode(&cp.encode()).unwrap(), cp);
}

/// Under date_first order, `before` may only be lowered once the data proved it does not filter
/// on date_last: with a date_last filter the probe finds no row used after its `before`, is not
/// used, and the walk re-reads from the start (losing nothing); with a date_first filter the
/// probe proves it and the walk resumes from its position.
#[test]
fn a_lowered_before_is_used_only_once_the_data_proved_it_safe() {
    for filter in [ModelSort::DateLast, ModelSort::DateFirst] {
        let mut m = Model::generated(ModelSort::DateFirst, 31, 60, T0 - 2900, T0 - 100);
        m.filter = Some(filter);
        m.classic_fatal = Some(200);
        m.invalid_cursor_at = [4].into();
        let mut run = Run::new(config("activity", "date_first", 5, &[]), m);
        run.pass_until_caught_up(1);
        run.set_now(T0 + 100);
        run.pass_until_caught_up(1);
        run.check(true);
        let logs = run.logs.borrow().join("\n");
        let proven = run.stored().unwrap().before_spares_date_last;
        match filter {
            ModelSort::DateLast => {
                assert!(!proven);
                assert!(logs.contains("may filter on date_last"), "{logs}");
                assert!(
                    logs.contains("re-reading the walk's listing from its start"),
                    "{logs}"
                );
            }
            _ => {
                assert!(proven, "{logs}");
                assert!(!logs.contains("re-reading"), "{logs}");
            }
        }
    }
}
