//! Fuzz targets for everything that parses bytes we do not control: the three page parsers
//! (Slack, or a proxy in front of it, can send anything), the response headers the fetcher acts
//! on (`Retry-After` in both its forms, `Date`, and the fetcher itself driven by any answers),
//! the checkpoint decoders (a store can hold anything, including what an older or newer
//! slack-logs wrote) and the config parser (operators type anything).
//!
//! The engine is proptest rather than cargo-fuzz, which needs a nightly toolchain the project does
//! not pin. Each target gets (a) arbitrary bytes and JSON-ish token soup, and (b) structure-aware
//! inputs: valid pages, checkpoints and configs built by generators, then mutated — fields
//! removed, every field replaced by wrong JSON types and absurd numbers, keys duplicated, values
//! nested past serde_json's depth limit, the text truncated, bytes (invalid UTF-8 among them)
//! spliced in. The properties: no panic; `Ok` or a typed error whose message is printable; what
//! an `Ok` carries agrees with the bytes; a checkpoint round-trips through encode/decode.
//!
//! Cases per target come from `PROPTEST_CASES` (proptest's own variable; 256 when unset, so CI
//! stays brief). A long run: `cargo xtask fuzz [CASES]` (default 100000).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, UNIX_EPOCH};

use proptest::collection::{btree_map, btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};

use slack_logs_core::access::tie::Spill;
use slack_logs_core::access::{
    AccessCheckpoint, AccessWalk, KeyWindow, Listing, Position, SortOrder, WalkMode,
};
use slack_logs_core::audit::{AuditCheckpoint, AuditWindow};
use slack_logs_core::checkpoint::{Checkpoint, CheckpointError};
use slack_logs_core::config::{format_rfc3339, parse_time, Config, KEYS};
use slack_logs_core::env::{parse_http_date, Clock, HttpResponse, Transport, TransportError};
use slack_logs_core::fetch::{
    Deadline, FetchError, FetchStats, Fetcher, Pacer, MIN_REQUEST_BUDGET,
};
use slack_logs_core::integration::{IntegrationCheckpoint, WalkProgress};
use slack_logs_core::slack_error::{
    parse_retry_after, SlackError, MAX_MESSAGE_CHARS, MAX_RETRY_AFTER_SECS,
};
use slack_logs_core::{access, audit, integration};

/// Cases from `PROPTEST_CASES` (`ProptestConfig::default()` reads it); failures are saved beside
/// this file (`fuzz.proptest-regressions`) and replayed first on the next run.
fn config() -> ProptestConfig {
    ProptestConfig {
        max_shrink_iters: 2048,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------ mutation engine

/// Bytes under test, shown as a byte-string literal in failures, so a failing input can be pasted
/// into a regression test as it is.
#[derive(Clone)]
struct Body(Vec<u8>);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self
            .0
            .iter()
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect();
        write!(f, "b\"{text}\"")
    }
}

/// A value of the wrong type (or an absurd one of the right type) for a field we read. `Raw` is
/// JSON text that `serde_json::Value` cannot hold (out-of-range numbers) or that is not JSON.
#[derive(Clone, Debug)]
enum Wrong {
    Json(Value),
    Raw(&'static str),
}

fn wrong() -> impl Strategy<Value = Wrong> {
    let json_values = prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(false)),
        Just(json!("")),
        Just(json!("x")),
        Just(json!("-1")),
        Just(json!(" 1700000000 ")),
        Just(json!("１７００")), // full-width digits
        Just(json!("1700000000.5")),
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(253_402_300_800_i64)),   // year 10000
        Just(json!(4_102_444_800_000_i64)), // 2100 in milliseconds
        Just(json!(1.5)),
        Just(json!(-0.0)),
        Just(json!(1e300)),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "2", null])),
        Just(json!({"a": {"b": [null]}})),
        "\\PC{0,40}".prop_map(Value::String),
        (1usize..20_000).prop_map(|n| Value::String("9".repeat(n))),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ];
    let raw = prop_oneof![
        Just("1e400"),
        Just("-1e400"),
        Just("123456789012345678901234567890"),
        Just("-9223372036854775809"),
        Just("18446744073709551616"),
        Just("-0"),
        Just("1E3"),
        Just("NaN"),
        Just("Infinity"),
        Just("tru"),
        Just("01"),
        Just("\"\\ud800\""), // a lone surrogate
        Just("\"\\u0000\""),
        Just("\"unterminated"),
        Just(""),
    ];
    prop_oneof![4 => json_values.prop_map(Wrong::Json), 1 => raw.prop_map(Wrong::Raw)]
}

/// One structural edit; the `usize` picks a node of the document (modulo the number of nodes).
#[derive(Clone, Debug)]
enum Edit {
    /// Remove the field or array element.
    Remove(usize),
    /// Replace the value.
    Replace(usize, Wrong),
    /// In an object, emit one of its keys a second time with this value.
    Duplicate(usize, usize, Wrong),
    /// Turn an object into the array of its values: serde fills a struct from an array by
    /// position, so a parser must check that an entry is an object.
    Arrayify(usize),
    /// Wrap the value in this many arrays/objects (serde_json stops at depth 128). Thousands of
    /// levels are left to `junk`, as text: a `Value` that deep would overflow the test's stack.
    Nest(usize, usize, bool),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => any::<usize>().prop_map(Edit::Remove),
        5 => (any::<usize>(), wrong()).prop_map(|(i, w)| Edit::Replace(i, w)),
        2 => (any::<usize>(), any::<usize>(), wrong()).prop_map(|(i, k, w)| Edit::Duplicate(i, k, w)),
        1 => any::<usize>().prop_map(Edit::Arrayify),
        1 => (any::<usize>(), prop_oneof![1usize..8, 125usize..135], any::<bool>())
            .prop_map(|(i, d, o)| Edit::Nest(i, d, o)),
    ]
}

/// An edit of the serialised bytes.
#[derive(Clone, Debug)]
enum ByteEdit {
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Overwrite(usize, u8),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let junk = prop_oneof![
        Just(vec![0xff]),
        Just(vec![0xc3]),             // a lone UTF-8 lead byte
        Just(vec![0xed, 0xa0, 0x80]), // a UTF-16 surrogate encoded in UTF-8
        Just(vec![0x00]),
        Just(b"\"".to_vec()),
        Just(b"}".to_vec()),
        Just(b",".to_vec()),
        vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), junk).prop_map(|(i, j)| ByteEdit::Insert(i, j)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Overwrite(i, b)),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn paths(v: &Value, at: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(Seg::Key(k.clone()));
                paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(Seg::Index(i));
                paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

/// A document under construction: the JSON value plus the text substitutions (raw JSON, duplicate
/// keys) made after serialising it.
struct Doc {
    value: Value,
    subst: Vec<(String, String)>,
}

impl Doc {
    fn placeholder(&mut self, text: String) -> String {
        let p = format!("@@SUBST{}@@", self.subst.len());
        self.subst.push((format!("\"{p}\""), text));
        p
    }

    fn wrong_value(&mut self, w: &Wrong) -> Value {
        match w {
            Wrong::Json(v) => v.clone(),
            Wrong::Raw(r) => Value::String(self.placeholder(r.to_string())),
        }
    }

    fn apply(&mut self, e: &Edit) {
        let mut all = Vec::new();
        paths(&self.value, &mut Vec::new(), &mut all);
        let pick = |i: usize| all[i % all.len()].clone();
        match e {
            Edit::Remove(i) => {
                let p = pick(*i);
                let Some((last, parent)) = p.split_last() else {
                    return;
                };
                match (node_mut(&mut self.value, parent), last) {
                    (Some(Value::Object(m)), Seg::Key(k)) => {
                        m.remove(k);
                    }
                    (Some(Value::Array(a)), Seg::Index(i)) if *i < a.len() => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
            Edit::Replace(i, w) => {
                let new = self.wrong_value(w);
                if let Some(n) = node_mut(&mut self.value, &pick(*i)) {
                    *n = new;
                }
            }
            Edit::Duplicate(i, k, w) => {
                let new = self.wrong_value(w);
                let p = pick(*i);
                let Some(Value::Object(m)) = node_mut(&mut self.value, &p) else {
                    return;
                };
                let Some(key) = m.keys().nth(k % m.len().max(1)).cloned() else {
                    return;
                };
                // A fresh key that the text substitution renames to `key`.
                let n = self.subst.len();
                let marker = format!("@@DUP{n}@@");
                self.subst.push((
                    format!("\"{marker}\""),
                    serde_json::to_string(&key).unwrap(),
                ));
                let Some(Value::Object(m)) = node_mut(&mut self.value, &p) else {
                    return;
                };
                m.insert(marker, new);
            }
            Edit::Arrayify(i) => {
                if let Some(n) = node_mut(&mut self.value, &pick(*i)) {
                    if let Value::Object(m) = n.take() {
                        *n = Value::Array(m.into_iter().map(|(_, v)| v).collect());
                    }
                }
            }
            Edit::Nest(i, depth, objects) => {
                if let Some(n) = node_mut(&mut self.value, &pick(*i)) {
                    let mut v = n.take();
                    for _ in 0..*depth {
                        v = if *objects {
                            json!({ "k": v })
                        } else {
                            json!([v])
                        };
                    }
                    *n = v;
                }
            }
        }
    }

    fn bytes(self, byte_edits: &[ByteEdit]) -> Vec<u8> {
        let mut text = serde_json::to_string(&self.value).unwrap();
        for (from, to) in &self.subst {
            text = text.replace(from, to);
        }
        let mut b = text.into_bytes();
        for e in byte_edits {
            match e {
                ByteEdit::Truncate(i) => b.truncate(i % (b.len() + 1)),
                ByteEdit::Insert(i, j) => {
                    let at = i % (b.len() + 1);
                    b.splice(at..at, j.iter().copied());
                }
                ByteEdit::Overwrite(i, x) => {
                    if !b.is_empty() {
                        let at = i % b.len();
                        b[at] = *x;
                    }
                }
            }
        }
        b
    }
}

/// A valid document, mutated: up to four structural edits, then up to two byte edits (often
/// none, so that the structural edits are seen by the parser and not hidden by broken JSON).
fn mutated(valid: impl Strategy<Value = Value>) -> impl Strategy<Value = Body> {
    (
        valid,
        vec(edit(), 0..5),
        prop_oneof![3 => Just(Vec::new()), 1 => vec(byte_edit(), 1..3)],
    )
        .prop_map(|(value, edits, byte_edits)| {
            let mut doc = Doc {
                value,
                subst: Vec::new(),
            };
            for e in &edits {
                doc.apply(e);
            }
            Body(doc.bytes(&byte_edits))
        })
}

/// Arbitrary bytes, and JSON-ish token soup, which reaches further into a parser than noise.
fn junk(words: &'static [&'static str]) -> impl Strategy<Value = Body> {
    let tokens = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(","),
        Just(":"),
        Just("\"ok\""),
        Just("true"),
        Just("false"),
        Just("null"),
        Just("1"),
        Just("-1"),
        Just("1e400"),
        Just("\"x\""),
        Just("\"response_metadata\""),
        Just("\"next_cursor\""),
        Just("\"paging\""),
        Just("\"error\""),
        Just("<html>"),
        proptest::sample::select(words),
    ];
    prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(tokens, 0..64).prop_map(|t| t.concat().into_bytes()),
        // Deep nesting with nothing else.
        (1usize..5000, 0..3u8).prop_map(|(n, how)| match how {
            0 => "{\"a\":".repeat(n),
            1 => "[".repeat(n),
            _ => "[".repeat(n) + &"]".repeat(n),
        }
        .into_bytes()),
    ]
    .prop_map(Body)
}

// ------------------------------------------------------------------ generators of valid input

/// Unix seconds: mostly plausible, sometimes the extremes.
fn ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 1_519_862_400_i64..1_900_000_000,
        1 => any::<i64>(),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)],
    ]
}

fn word() -> impl Strategy<Value = String> {
    "[a-z_]{1,12}"
}

fn audit_entry() -> impl Strategy<Value = Value> {
    ("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}", ts(), word(), "U[A-Z0-9]{8}", "\\PC{0,12}").prop_map(|(id, t, action, uid, name)| {
        json!({
            "id": id,
            "date_create": t,
            "action": action,
            "actor": {"type": "user", "user": {"id": uid, "name": name, "email": "a@example.com"}},
            "entity": {"type": "workspace", "workspace": {"id": "T0SIMHQ001", "name": "hq"}},
            "context": {"location": {"type": "enterprise", "id": "E0SIMORG01"}, "ua": "Mozilla/5.0", "ip_address": "192.0.2.1"},
        })
    })
}

fn cursor_meta() -> impl Strategy<Value = Option<Value>> {
    option::of(prop_oneof![
        Just(json!({"next_cursor": ""})),
        Just(json!({})),
        "[A-Za-z0-9=]{1,24}".prop_map(|c| json!({ "next_cursor": c })),
    ])
}

fn audit_page() -> impl Strategy<Value = Value> {
    (vec(audit_entry(), 0..6), cursor_meta(), any::<bool>()).prop_map(|(entries, meta, ok)| {
        let mut page = json!({ "entries": entries });
        if let Some(m) = meta {
            page["response_metadata"] = m;
        }
        if ok {
            page["ok"] = json!(true);
        }
        page
    })
}

fn paging() -> impl Strategy<Value = Option<Value>> {
    option::of((0u32..1000, 0u64..100_000, 1u32..100, 1u32..100).prop_map(|(count, total, page, pages)| {
        json!({"count": count, "total": total, "page": page, "pages": pages})
    }))
}

fn access_row() -> impl Strategy<Value = Value> {
    (
        "U[A-Z0-9]{8}",
        ts(),
        0_i64..10_000_000,
        option::of("[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}"),
        option::of("\\PC{0,30}"),
        0_u64..100_000,
    )
        .prop_map(|(uid, first, later, ip, ua, count)| {
            let mut row = json!({
                "user_id": uid,
                "username": "someone",
                "date_first": first,
                "date_last": first.saturating_add(later),
                "count": count,
                "isp": "Example ISP",
                "country": "DE",
                "region": "Berlin",
            });
            if let Some(ip) = ip {
                row["ip"] = json!(ip);
            }
            if let Some(ua) = ua {
                row["user_agent"] = json!(ua);
            }
            row
        })
}

fn access_page() -> impl Strategy<Value = Value> {
    (vec(access_row(), 0..6), paging(), cursor_meta()).prop_map(|(rows, paging, meta)| {
        let mut page = json!({ "ok": true, "logins": rows });
        if let Some(p) = paging {
            page["paging"] = p;
        }
        if let Some(m) = meta {
            page["response_metadata"] = m;
        }
        page
    })
}

fn integration_entry() -> impl Strategy<Value = Value> {
    (
        ts(),
        any::<bool>(),
        0_u64..10_000_000_000,
        any::<bool>(),
        word(),
        option::of("A[A-Z0-9]{8}"),
    )
        .prop_map(
            |(date, date_as_string, service_id, id_as_string, change, app_id)| {
                let mut e = json!({
                    "user_id": "U0SIM0001",
                    "user_name": "someone",
                    "date": if date_as_string { json!(date.to_string()) } else { json!(date) },
                    "change_type": change,
                    "scope": "incoming-webhook",
                    "service_type": "Incoming WebHooks",
                    "channel": "general",
                });
                match app_id {
                    Some(a) => {
                        e["app_id"] = json!(a);
                        e["app_type"] = json!("app");
                    }
                    None => {
                        e["service_id"] = if id_as_string {
                            json!(service_id.to_string())
                        } else {
                            json!(service_id)
                        };
                    }
                }
                e
            },
        )
}

fn integration_page() -> impl Strategy<Value = Value> {
    (vec(integration_entry(), 0..6), paging()).prop_map(|(logs, paging)| {
        let mut page = json!({ "ok": true, "logs": logs });
        if let Some(p) = paging {
            page["paging"] = p;
        }
        page
    })
}

fn team_id() -> impl Strategy<Value = Option<String>> {
    option::of("T[A-Z0-9]{8}")
}

// ------------------------------------------------------------------ page properties

/// A typed error must be printable (it becomes a log line and the stored status) and classified.
fn check_error(e: &SlackError) {
    let msg = e.to_string();
    assert!(!msg.is_empty(), "{e:?} prints as nothing");
    // A wrong value can be any size; the message quoting it must not be.
    assert!(
        msg.chars().count() <= MAX_MESSAGE_CHARS + 1,
        "a message of {} characters",
        msg.chars().count()
    );
    assert!(!e.code().is_empty(), "{e:?} has no code");
    let _ = e.is_retryable();
}

/// The top-level fields of an entry's raw bytes, each parsed on its own: the parsers pass an
/// entry's bytes on untouched, so a field we do not read may hold what `Value` refuses (`1e400`),
/// while the raw bytes are still JSON. A duplicated key keeps its last value, as in serde_json.
fn raw_fields(raw: &str) -> BTreeMap<String, Value> {
    let fields: BTreeMap<String, &serde_json::value::RawValue> = serde_json::from_str(raw)
        .unwrap_or_else(|e| {
            panic!("an entry parsed from {raw:?}, which is not a JSON object: {e}")
        });
    fields
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(v.get()).unwrap_or(Value::Null)))
        .collect()
}

/// A JSON number as the integer it denotes: `-0` is 0 (serde_json reads it as the float -0.0).
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        (f.fract() == 0.0 && f.abs() < 9e15).then_some(f as i64)
    })
}

/// Like `raw_fields`, but a duplicated key keeps its *first* value: the audit parser reads `id`
/// and `date_create` by a scan that stops once it has both (Slack never repeats them), so a
/// repetition after that point is not looked at.
fn first_fields(raw: &str) -> BTreeMap<String, Value> {
    struct First(BTreeMap<String, Value>);
    impl<'de> serde::Deserialize<'de> for First {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = First;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<First, A::Error> {
                    let mut out = BTreeMap::new();
                    while let Some((k, v)) =
                        m.next_entry::<String, Box<serde_json::value::RawValue>>()?
                    {
                        out.entry(k).or_insert_with(|| {
                            serde_json::from_str(v.get()).unwrap_or(Value::Null)
                        });
                    }
                    Ok(First(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<First>(raw)
        .unwrap_or_else(|e| panic!("an entry parsed from {raw:?}, which is not a JSON object: {e}"))
        .0
}

fn field<'v>(fields: &'v BTreeMap<String, Value>, key: &str) -> &'v Value {
    fields.get(key).unwrap_or(&Value::Null)
}

fn check_audit(body: &[u8]) {
    match audit::parse_page(body) {
        Ok(page) => {
            for e in &page.entries {
                // The id and time we act on are those in the bytes we pass on as the event.
                let raw = first_fields(e.raw.get());
                assert_eq!(
                    field(&raw, "id").as_str(),
                    Some(&*e.id),
                    "id differs from the raw entry"
                );
                assert_eq!(
                    int(field(&raw, "date_create")),
                    Some(e.date_create),
                    "date_create differs from the raw entry"
                );
            }
            assert!(
                page.next_cursor.as_deref() != Some(""),
                "an empty cursor means the end"
            );
        }
        Err(e) => check_error(&e),
    }
}

fn check_access(body: &[u8]) {
    match access::parse_page(body) {
        Ok(page) => {
            for r in &page.rows {
                let raw = raw_fields(r.raw.get());
                assert_eq!(field(&raw, "user_id").as_str(), Some(&*r.user_id));
                assert_eq!(int(field(&raw, "date_first")), Some(r.date_first));
                assert_eq!(int(field(&raw, "date_last")), Some(r.date_last));
                assert_eq!(field(&raw, "ip").as_str(), r.ip.as_deref());
                assert_eq!(
                    field(&raw, "user_agent").as_str().unwrap_or(""),
                    &*r.user_agent
                );
                // The record id is the one computed from the raw fields we pass on.
                let from_raw = access::record_id(
                    field(&raw, "user_id").as_str().unwrap_or(""),
                    field(&raw, "ip").as_str(),
                    field(&raw, "user_agent").as_str().unwrap_or(""),
                    int(field(&raw, "date_first")).unwrap_or(i64::MIN),
                    int(field(&raw, "date_last")).unwrap_or(i64::MIN),
                );
                assert_eq!(r.record_id(), from_raw);
            }
            assert!(
                page.next_cursor.as_deref() != Some(""),
                "an empty cursor means the end"
            );
        }
        Err(e) => check_error(&e),
    }
}

fn check_integration(body: &[u8], team: Option<&str>) {
    match integration::parse_page(body, team) {
        Ok(page) => {
            for e in &page.entries {
                let raw = raw_fields(e.raw.get());
                let date = match field(&raw, "date") {
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    v => v.as_i64(),
                };
                assert_eq!(date, Some(e.date), "date differs from the raw entry");
                assert!(
                    e.id.len() == 32 && e.id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "id {:?}",
                    e.id
                );
                assert_eq!(e.key(), &e.id[..16]);
                // The same entry must give the same id every time.
                assert_eq!(
                    integration::canonical(e.raw.get(), team)
                        .map(|(_, h)| h)
                        .as_deref(),
                    Ok(e.id.as_str())
                );
            }
        }
        Err(e) => check_error(&e),
    }
}

const AUDIT_WORDS: &[&str] = &["\"entries\"", "\"id\"", "\"date_create\"", "\"action\""];
const ACCESS_WORDS: &[&str] = &[
    "\"logins\"",
    "\"user_id\"",
    "\"date_first\"",
    "\"date_last\"",
    "\"ip\"",
    "\"user_agent\"",
];
const INTEGRATION_WORDS: &[&str] = &[
    "\"logs\"",
    "\"date\"",
    "\"service_id\"",
    "\"app_id\"",
    "\"1700000000\"",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn audit_page_arbitrary_bytes(body in junk(AUDIT_WORDS)) {
        check_audit(&body.0);
    }

    #[test]
    fn audit_page_mutated(body in mutated(audit_page())) {
        check_audit(&body.0);
    }

    /// The generators must produce pages the parser takes, or the mutations above test little.
    #[test]
    fn audit_page_valid_parses(page in audit_page()) {
        let body = serde_json::to_vec(&page).unwrap();
        let parsed = audit::parse_page(&body).map_err(|e| e.to_string());
        prop_assert_eq!(parsed.map(|p| p.entries.len()), Ok(page["entries"].as_array().unwrap().len()));
    }

    #[test]
    fn access_page_arbitrary_bytes(body in junk(ACCESS_WORDS)) {
        check_access(&body.0);
    }

    #[test]
    fn access_page_mutated(body in mutated(access_page())) {
        check_access(&body.0);
    }

    #[test]
    fn access_page_valid_parses(page in access_page()) {
        let body = serde_json::to_vec(&page).unwrap();
        let parsed = access::parse_page(&body).map_err(|e| e.to_string());
        prop_assert_eq!(parsed.map(|p| p.rows.len()), Ok(page["logins"].as_array().unwrap().len()));
    }

    #[test]
    fn integration_page_arbitrary_bytes(body in junk(INTEGRATION_WORDS), team in team_id()) {
        check_integration(&body.0, team.as_deref());
    }

    #[test]
    fn integration_page_mutated(body in mutated(integration_page()), team in team_id()) {
        check_integration(&body.0, team.as_deref());
    }

    #[test]
    fn integration_page_valid_parses(page in integration_page(), team in team_id()) {
        let body = serde_json::to_vec(&page).unwrap();
        let parsed = integration::parse_page(&body, team.as_deref()).map_err(|e| e.to_string());
        prop_assert_eq!(parsed.map(|p| p.entries.len()), Ok(page["logs"].as_array().unwrap().len()));
    }
}

// ------------------------------------------------------------------ checkpoints

fn ids() -> impl Strategy<Value = BTreeSet<String>> {
    btree_set("\\PC{0,16}", 0..4)
}

fn audit_window() -> impl Strategy<Value = AuditWindow> {
    (ts(), ts(), option::of(ts()), ids(), option::of(ts())).prop_map(
        |(oldest, latest, boundary, boundary_ids, since)| AuditWindow {
            oldest,
            latest,
            boundary,
            boundary_ids,
            since,
        },
    )
}

fn audit_checkpoint() -> impl Strategy<Value = AuditCheckpoint> {
    let window = audit_window();
    let rescan = (audit_window(), any::<usize>(), ts())
        .prop_map(|(window, group, age)| slack_logs_core::audit::Rescan { window, group, age });
    let tiers = vec(
        (ts(), ts()).prop_map(|(age, done)| slack_logs_core::audit::RescanTier { age, done }),
        0..3,
    );
    let ledger =
        (ts(), btree_map(ts(), any::<u32>(), 0..4)).prop_map(|(complete_from, buckets)| {
            slack_logs_core::audit::ledger::LedgerIndex {
                complete_from,
                buckets,
            }
        });
    (
        (
            0..=<AuditCheckpoint as Checkpoint>::VERSION,
            ts(),
            option::of(window),
            "\\PC{0,40}",
            any::<usize>(),
        ),
        (tiers, option::of(rescan), ledger, option::of(any::<i64>())),
    )
        .prop_map(
            |(
                (v, watermark, window, filters, group),
                (rescanned, rescan, ledger, clock_offset),
            )| AuditCheckpoint {
                v,
                watermark,
                window,
                filters,
                group,
                rescanned,
                rescan,
                ledger,
                clock_offset,
            },
        )
}

fn sort_order() -> impl Strategy<Value = Option<SortOrder>> {
    option::of(prop_oneof![
        Just(SortOrder::DateFirst),
        Just(SortOrder::DateLast)
    ])
}

fn access_checkpoint() -> impl Strategy<Value = AccessCheckpoint> {
    let keys = || btree_set(any::<u64>(), 0..4);
    let window = || prop::collection::vec(any::<u64>(), 0..4).prop_map(KeyWindow::from);
    let position = (
        (option::of(ts()), window(), any::<u64>(), any::<u64>()),
        (option::of(ts()), window(), any::<u64>(), any::<u64>()),
        option::of(ts()),
    )
        .prop_map(
            |(
                (date_first, first_keys, first_spill, first_forgotten),
                (date_last, last_keys, last_spill, last_forgotten),
                witness,
            )| {
                Position {
                    date_first,
                    first_keys,
                    first_spill: Spill::from(first_spill),
                    first_forgotten,
                    date_last,
                    last_keys,
                    last_spill: Spill::from(last_spill),
                    last_forgotten,
                    witness,
                }
            },
        );
    let listing = (
        option::of(ts()),
        any::<u64>(),
        any::<u64>(),
        option::of("\\PC{0,40}"),
        option::of(any::<u32>()),
        option::of(any::<u64>()),
    )
        .prop_map(|(anchor, served, reached, cursor, page, total)| Listing {
            anchor,
            served,
            reached,
            cursor,
            page,
            total,
        });
    let walk = (
        (
            ts(),
            prop_oneof![Just(WalkMode::Activity), Just(WalkMode::NewOnly)],
            sort_order(),
            any::<bool>(),
            option::of(any::<u32>()),
            any::<bool>(),
        ),
        position,
        keys(),
        listing,
        (
            option::of((ts(), ts())),
            option::of((ts(), ts(), any::<u64>())),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (before, mode, order, classic, refused_limit, classic_failed),
                position,
                ahead,
                listing,
                (reread_at, tie_reread, tie_parts),
            )| {
                AccessWalk {
                    before,
                    mode,
                    order,
                    classic,
                    refused_limit,
                    classic_failed,
                    position,
                    ahead,
                    listing,
                    reread_at,
                    tie_reread,
                    tie_parts,
                }
            },
        );
    (
        0..=<AccessCheckpoint as Checkpoint>::VERSION,
        ts(),
        sort_order(),
        any::<bool>(),
        option::of(walk),
        keys(),
    )
        .prop_map(
            |(v, watermark, order, before_spares_date_last, walk, ahead)| AccessCheckpoint {
                v,
                watermark,
                order,
                before_spares_date_last,
                walk,
                ahead,
            },
        )
}

fn by_date() -> impl Strategy<Value = BTreeMap<i64, BTreeSet<String>>> {
    btree_map(ts(), btree_set("[0-9a-f]{16}", 0..3), 0..4)
}

fn copies_by_date() -> impl Strategy<Value = integration::Copies> {
    btree_map(ts(), btree_map("[0-9a-f]{16}", any::<u32>(), 0..3), 0..4)
}

fn integration_checkpoint() -> impl Strategy<Value = IntegrationCheckpoint> {
    let walk = (
        (
            any::<u32>(),
            option::of(ts()),
            option::of(ts()),
            copies_by_date(),
        ),
        (
            vec("[0-9a-f]{16}", 0..4),
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            by_date(),
        ),
    )
        .prop_map(
            |((next_page, newest, oldest, seen), (last_page, last_total, pushed_past, unsure))| {
                WalkProgress {
                    next_page,
                    newest,
                    oldest,
                    seen,
                    last_page,
                    last_total,
                    pushed_past,
                    unsure,
                }
            },
        );
    (
        0..=<IntegrationCheckpoint as Checkpoint>::VERSION,
        ts(),
        ts(),
        copies_by_date(),
        copies_by_date(),
        (any::<bool>(), any::<bool>()),
        option::of(walk),
    )
        .prop_map(
            |(
                v,
                watermark,
                start,
                recent_copies,
                unsure_copies,
                (unsorted, newest_first),
                walk,
            )| {
                IntegrationCheckpoint {
                    v,
                    watermark,
                    start,
                    recent_copies,
                    unsure_copies,
                    unsorted,
                    newest_first,
                    walk,
                }
            },
        )
}

/// Whatever the bytes, decoding gives a checkpoint this build can write back unchanged, or a
/// typed error; never a panic.
fn check_decode<C: Checkpoint + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    match C::decode(bytes) {
        Ok(cp) => {
            let again = C::decode(&cp.encode())
                .expect("a decoded checkpoint re-encodes to one that decodes");
            assert_eq!(
                again, cp,
                "decode(encode(decode(bytes))) changed the checkpoint"
            );
            let _ = cp.watermark();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let CheckpointError::NewerVersion(v) = e {
                assert!(
                    v > C::VERSION,
                    "refused version {v} as newer than {}",
                    C::VERSION
                );
            }
        }
    }
}

fn round_trip<C: Checkpoint + PartialEq + std::fmt::Debug>(cp: &C) -> Result<(), TestCaseError> {
    let bytes = cp.encode();
    prop_assert!(!bytes.is_empty(), "encode produced nothing");
    let decoded = C::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, cp);
    Ok(())
}

/// The same checkpoint stamped with a version from the future must be refused as such (never
/// read as if it were ours, never reset).
fn newer_is_refused<C: Checkpoint>(cp: &C, v: u32) -> Result<(), TestCaseError> {
    let mut value = serde_json::to_value(cp).unwrap();
    value["v"] = json!(v);
    let bytes = serde_json::to_vec(&value).unwrap();
    prop_assert_eq!(
        C::decode(&bytes).err(),
        Some(CheckpointError::NewerVersion(v))
    );
    Ok(())
}

const CHECKPOINT_WORDS: &[&str] = &[
    "\"v\"",
    "\"watermark\"",
    "\"window\"",
    "\"walk\"",
    "\"recent\"",
    "\"recent_copies\"",
    "\"seen\"",
    "\"position\"",
    "\"ahead\"",
    "\"mode\"",
    "\"activity\"",
    "\"date_first\"",
    "4294967296",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn checkpoints_arbitrary_bytes(bytes in junk(CHECKPOINT_WORDS)) {
        check_decode::<AuditCheckpoint>(&bytes.0);
        check_decode::<AccessCheckpoint>(&bytes.0);
        check_decode::<IntegrationCheckpoint>(&bytes.0);
    }

    #[test]
    fn audit_checkpoint_round_trips(cp in audit_checkpoint(), newer in (<AuditCheckpoint as Checkpoint>::VERSION + 1)..=u32::MAX) {
        round_trip(&cp)?;
        newer_is_refused(&cp, newer)?;
    }

    #[test]
    fn audit_checkpoint_mutated(bytes in mutated(audit_checkpoint().prop_map(|c| serde_json::to_value(c).unwrap()))) {
        check_decode::<AuditCheckpoint>(&bytes.0);
    }

    #[test]
    fn access_checkpoint_round_trips(cp in access_checkpoint(), newer in (<AccessCheckpoint as Checkpoint>::VERSION + 1)..=u32::MAX) {
        round_trip(&cp)?;
        newer_is_refused(&cp, newer)?;
    }

    #[test]
    fn access_checkpoint_mutated(bytes in mutated(access_checkpoint().prop_map(|c| serde_json::to_value(c).unwrap()))) {
        check_decode::<AccessCheckpoint>(&bytes.0);
    }

    #[test]
    fn integration_checkpoint_round_trips(cp in integration_checkpoint(), newer in (<IntegrationCheckpoint as Checkpoint>::VERSION + 1)..=u32::MAX) {
        round_trip(&cp)?;
        newer_is_refused(&cp, newer)?;
    }

    #[test]
    fn integration_checkpoint_mutated(bytes in mutated(integration_checkpoint().prop_map(|c| serde_json::to_value(c).unwrap()))) {
        check_decode::<IntegrationCheckpoint>(&bytes.0);
    }
}

// ------------------------------------------------------------------ response headers

/// The last second an HTTP-date can name (year 9999).
const LAST_HTTP_DATE: i64 = 253_402_300_799;

fn http_date(t: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(t.unsigned_abs()))
}

/// `Retry-After` values: numbers of any size, HTTP-dates (well-formed or with a character
/// replaced), signs and fractions, anything.
fn retry_after_value() -> impl Strategy<Value = String> {
    let date = (0..=LAST_HTTP_DATE).prop_map(http_date);
    prop_oneof![
        "[0-9]{0,40}",
        any::<u64>().prop_map(|n| n.to_string()),
        date.clone(),
        (date, any::<prop::sample::Index>(), any::<char>()).prop_map(|(d, at, c)| {
            let mut chars: Vec<char> = d.chars().collect();
            let i = at.index(chars.len());
            chars[i] = c;
            chars.into_iter().collect()
        }),
        " {0,3}[0-9+.e -]{0,12} {0,3}",
        any::<String>(),
    ]
}

/// What a `Retry-After` must mean (RFC 9110 §10.2.3), capped at a day.
fn retry_after_oracle(value: &str, now: i64) -> Option<u64> {
    let v = value.trim();
    let cap = i128::from(MAX_RETRY_AFTER_SECS);
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let digits = v.trim_start_matches('0');
        let secs = if digits.len() > 30 {
            cap
        } else {
            digits.parse::<i128>().unwrap_or(0).min(cap)
        };
        return Some(secs as u64);
    }
    let at = i128::from(parse_http_date(v)?);
    Some((at - i128::from(now)).clamp(0, cap) as u64)
}

/// Test time: requests take none, sleeps move it on.
#[derive(Default)]
struct FuzzClock {
    now: Cell<Duration>,
}

impl Clock for FuzzClock {
    fn now_unix(&self) -> i64 {
        1_700_000_000 + self.now.get().as_secs() as i64
    }
    fn monotonic(&self) -> Duration {
        self.now.get()
    }
    fn sleep(&self, d: Duration) {
        self.now.set(self.now.get().saturating_add(d));
    }
}

/// Serves the scripted answers in turn (then timeouts), noting when each request started and the
/// timeout it was given.
struct Answers<'a> {
    script: Vec<Result<HttpResponse, TransportError>>,
    clock: &'a FuzzClock,
    sent: Vec<(Duration, Duration)>,
}

impl Transport for Answers<'_> {
    fn get(&mut self, _: &str, _: &str, timeout: Duration) -> Result<HttpResponse, TransportError> {
        let answer = self
            .script
            .get(self.sent.len())
            .cloned()
            .unwrap_or(Err(TransportError::Timeout));
        self.sent.push((self.clock.monotonic(), timeout));
        answer
    }
}

fn answer() -> impl Strategy<Value = Result<HttpResponse, TransportError>> {
    let status = prop_oneof![Just(200u16), Just(429), Just(500), Just(503), 100u16..600];
    let date = option::of(prop_oneof![
        (0..=LAST_HTTP_DATE).prop_map(http_date),
        any::<String>()
    ]);
    let body = prop_oneof![
        Just(br#"{"ok":true}"#.to_vec()),
        Just(br#"{"ok":false,"error":"ratelimited"}"#.to_vec()),
        Just(br#"{"ok":false,"error":"fatal_error"}"#.to_vec()),
        vec(any::<u8>(), 0..16),
    ];
    prop_oneof![
        8 => (status, option::of(retry_after_value()), date, body).prop_map(|(status, retry_after, date, body)| {
            Ok(HttpResponse { status, retry_after, date, body })
        }),
        1 => Just(Err(TransportError::Timeout)),
        1 => Just(Err(TransportError::Network("connection reset".into()))),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn retry_after_is_capped_and_means_what_it_says(value in retry_after_value(), now in ts()) {
        let got = parse_retry_after(&value, now);
        prop_assert_eq!(got, retry_after_oracle(&value, now), "{:?}", value);
        let e = SlackError::from_response(429, got, b"");
        let as_read = match &e {
            SlackError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        prop_assert_eq!(as_read, Some(got));
        check_error(&e);
    }

    #[test]
    fn http_dates_round_trip_and_anything_else_is_none_or_a_date(t in 0..=LAST_HTTP_DATE, text in any::<String>()) {
        prop_assert_eq!(parse_http_date(&http_date(t)), Some(t));
        let r = HttpResponse { date: Some(format!(" {} ", http_date(t))), ..HttpResponse::default() };
        prop_assert_eq!(r.date_unix(), Some(t));
        if let Some(x) = parse_http_date(&text) {
            prop_assert!((0..=LAST_HTTP_DATE).contains(&x), "{:?} gave {}", text, x);
        }
    }

    /// Any statuses, `Retry-After` and `Date` headers and bodies: no panic, no wait past the
    /// pass's budget, no request started with less than `MIN_REQUEST_BUDGET` left, a success only
    /// for a 2xx answer.
    #[test]
    fn the_fetcher_survives_any_answers(
        script in vec(answer(), 1..12),
        budget in 0u64..200,
        per_minute in prop_oneof![Just(0u32), 1u32..120],
        timeout in 1u64..30,
    ) {
        let clock = FuzzClock::default();
        let mut transport = Answers { script, clock: &clock, sent: Vec::new() };
        let budget = Duration::from_secs(budget);
        let mut f = Fetcher {
            transport: &mut transport,
            clock: &clock,
            deadline: Deadline::after(&clock, budget),
            request_timeout: Duration::from_secs(timeout),
            stats: FetchStats::default(),
            log: &|_| {},
            pacer: Pacer::per_minute(per_minute),
        };
        for _ in 0..3 {
            match f.get("https://slack.test/api/team.integrationLogs", "xoxp-fuzz") {
                Ok(resp) => prop_assert!((200..300).contains(&resp.status)),
                Err(FetchError::Budget(m)) => prop_assert!(!m.is_empty()),
                Err(FetchError::Slack(e)) => check_error(&e),
                Err(FetchError::Transport(e)) => prop_assert!(!e.to_string().is_empty()),
            }
            prop_assert!(clock.monotonic() <= budget, "waited {:?} of a {:?} budget", clock.monotonic(), budget);
        }
        for (at, given) in &transport.sent {
            prop_assert!(*at + MIN_REQUEST_BUDGET <= budget, "a request started at {:?} of {:?}", at, budget);
            prop_assert!(*given <= Duration::from_secs(timeout));
        }
    }
}

// ------------------------------------------------------------------ config

/// Put into every secret value the fuzzer makes, so an echoed secret is found in any message.
const SECRET_MARK: &str = "Zq7SeCrEt";

/// The keys whose values are secret: those `KEYS` documents as "Secret.", so a key added later
/// is covered without touching this file.
fn secret_keys() -> Vec<&'static str> {
    KEYS.iter()
        .filter(|(_, doc)| doc.contains("Secret."))
        .map(|(k, _)| *k)
        .collect()
}

fn is_secret(key: &str) -> bool {
    secret_keys().contains(&key)
}

/// A value that is valid for `key` (or close to valid), as an operator would write it.
fn plausible_value(key: &'static str) -> BoxedStrategy<String> {
    if is_secret(key) {
        // Token-like or not, with the mark somewhere in it (whitespace too: a bad token).
        return prop_oneof![
            "xox[pb]-[a-z0-9-]{0,20}".prop_map(|t| format!("{t}{SECRET_MARK}")),
            ("\\PC{0,10}", "\\PC{0,10}").prop_map(|(a, b)| format!("{a}{SECRET_MARK}{b}")),
            "[ -~]{0,8}".prop_map(|t| format!("xoxp-{t} {SECRET_MARK}")),
        ]
        .boxed();
    }
    match key {
        "streams" => vec(
            prop_oneof![
                Just("audit"),
                Just("access"),
                Just("integration"),
                Just(" "),
                Just("audot")
            ],
            0..4,
        )
        .prop_map(|v| v.join(","))
        .boxed(),
        "slack_api_base" | "slack_audit_base" | "sink_url" => prop_oneof![
            Just("https://slack.com/api".to_string()),
            Just("http://127.0.0.1:8089/api/".to_string()),
            Just("http://[::1]:80".to_string()),
            Just("http://example.com".to_string()),
            Just("https://".to_string()),
            Just("https:///x".to_string()),
            Just("https://h/?q#f".to_string()),
            "(https?://)?\\PC{0,20}",
        ]
        .boxed(),
        "backfill_start_time" => rfc3339_or_unix().boxed(),
        "access_mode" => prop_oneof![
            Just("activity".to_string()),
            Just("new-only".to_string()),
            "\\PC{0,10}"
        ]
        .boxed(),
        "access_sort_key" => prop_oneof![
            Just("auto".to_string()),
            Just("date_first".to_string()),
            Just("date_last".to_string()),
            "\\PC{0,10}"
        ]
        .boxed(),
        "output_format" => prop_oneof![
            Just("raw".to_string()),
            Just("ocsf".to_string()),
            "\\PC{0,10}"
        ]
        .boxed(),
        "synthetic_data" => prop_oneof![
            Just("TRUE".to_string()),
            Just("0".to_string()),
            Just("no".to_string()),
            "\\PC{0,10}"
        ]
        .boxed(),
        "team_ids" | "audit_actions" | "audit_actor" | "audit_entity" | "sink_preset" => {
            "[A-Za-z0-9_, ]{0,40}".boxed()
        }
        // Every other key is a number.
        _ => number_text().boxed(),
    }
}

fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (-10_i64..100_000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999999".to_string()),
        Just("-0".to_string()),
        Just("+5".to_string()),
        Just("1e3".to_string()),
        Just("1.5".to_string()),
        Just(" 25 ".to_string()),
        "\\PC{0,8}",
    ]
}

/// RFC 3339 times (with fractions and offsets) and unix seconds, sometimes with one character
/// replaced, inserted or cut off: the date parser slices the string by byte offsets.
fn rfc3339_or_unix() -> impl Strategy<Value = String> {
    let valid = (
        -62_135_596_800_i64..253_402_300_799, // years 0001 to 9999
        option::of("[0-9]{1,9}"),
        prop_oneof![
            Just("Z".to_string()),
            Just("z".to_string()),
            "[+-][0-2][0-9]:[0-5][0-9]"
        ],
        prop_oneof![Just('T'), Just('t'), Just(' ')],
    )
        .prop_map(|(t, frac, offset, sep)| {
            let s = format_rfc3339(t);
            let mut s = s.replacen('T', &sep.to_string(), 1);
            s.pop(); // the Z
            if let Some(f) = frac {
                s += &format!(".{f}");
            }
            s + &offset
        });
    let edited = (
        valid.clone(),
        any::<usize>(),
        prop_oneof![
            Just('é'),
            Just('€'),
            Just('𝟘'),
            Just(':'),
            Just('-'),
            Just('+'),
            any::<char>()
        ],
        0..3u8,
    )
        .prop_map(|(s, at, c, how)| {
            let mut chars: Vec<char> = s.chars().collect();
            let at = at % (chars.len() + 1);
            match how {
                0 => chars.insert(at, c),
                1 if at < chars.len() => chars[at] = c,
                _ => chars.truncate(at),
            }
            chars.into_iter().collect()
        });
    prop_oneof![3 => valid, 3 => edited, 1 => any::<i64>().prop_map(|n| n.to_string()), 1 => "\\PC{0,30}"]
}

/// A key: mostly one we know, sometimes a near miss or anything at all.
fn config_key() -> impl Strategy<Value = String> {
    let known = proptest::sample::select(KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    prop_oneof![
        8 => known.clone().prop_map(String::from),
        1 => known.prop_map(|k| k.to_uppercase()),
        1 => "\\PC{0,16}",
    ]
}

fn config_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let known = proptest::sample::select(KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    let pair = prop_oneof![
        6 => known.prop_flat_map(|k| plausible_value(k).prop_map(move |v| (k.to_string(), v))),
        1 => (config_key(), "\\PC{0,24}"),
        // Non-UTF-8 arrives as U+FFFD once the host has made it a string.
        1 => (config_key(), vec(any::<u8>(), 0..24).prop_map(|b| String::from_utf8_lossy(&b).into_owned())),
    ];
    vec(pair, 0..10)
}

fn check_config(pairs: &[(String, String)]) -> Result<(), TestCaseError> {
    match Config::from_pairs(pairs) {
        Ok(c) => {
            // Debug must not show secrets either (it is used in debug logs).
            prop_assert!(
                !format!("{c:?}").contains(SECRET_MARK),
                "Debug shows a secret: {:?}",
                c
            );
            prop_assert!(!c.streams.is_empty());
            prop_assert!(c.request_timeout_seconds < c.max_run_seconds || c.max_run_seconds <= 1);
            prop_assert!((1..=999).contains(&c.access_page_size));
            prop_assert!((2..=1000).contains(&c.integration_page_size));
            prop_assert!((1..=9999).contains(&c.audit_page_size));
            for base in [&c.slack_api_base, &c.slack_audit_base] {
                prop_assert!(
                    base.starts_with("https://") || base.starts_with("http://"),
                    "{}",
                    base
                );
            }
        }
        Err(e) => {
            let text = e.to_string();
            prop_assert!(
                !e.key.is_empty() || pairs.iter().any(|(k, _)| k.is_empty()),
                "an error must name the key: {}",
                text
            );
            prop_assert!(
                !text.contains(SECRET_MARK),
                "a config error echoes a secret: {}",
                text
            );
            // The error names keys that were given, or (checks across keys) keys we know.
            for named in e.key.split("`, `") {
                prop_assert!(
                    pairs.iter().any(|(k, _)| k == named) || KEYS.iter().any(|(k, _)| *k == named),
                    "error names key {:?}, which was neither given nor known: {}",
                    named,
                    text
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_from_pairs(pairs in config_pairs()) {
        check_config(&pairs)?;
    }

    /// Every secret key with a bad value: the error names the key and never shows the value.
    #[test]
    fn config_secret_values_are_never_echoed(
        key in proptest::sample::select(secret_keys()),
        value in "\\PC{0,12}",
        pad in prop_oneof![Just(""), Just(" "), Just("\t"), Just("\n"), Just("\u{0}")],
    ) {
        let v = format!("{value}{SECRET_MARK}{pad}{value}");
        check_config(&[(key.to_string(), v)])?;
    }

    /// Times the parser accepts as RFC 3339 read back as the second they name.
    #[test]
    fn config_rfc3339_round_trips(t in -62_135_596_800_i64..253_402_300_799) {
        prop_assert_eq!(parse_time("backfill_start_time", &format_rfc3339(t)).map_err(|e| e.to_string()), Ok(t));
    }

    #[test]
    fn config_times_never_panic(s in rfc3339_or_unix()) {
        if let Err(e) = parse_time("backfill_start_time", &s) {
            prop_assert_eq!(e.key, "backfill_start_time");
        }
    }
}

// ------------------------------------------------------------------ the harness checks itself

/// The mutation engine does what it says: a duplicated key really is in the text twice, raw
/// values really are spliced in. Without this, a broken engine would pass every property above.
#[test]
fn mutation_engine_self_check() {
    let mut doc = Doc {
        value: json!({"entries": [{"id": "a", "date_create": 5}]}),
        subst: Vec::new(),
    };
    // Node 0 is the root, 1 `entries`, 2 the entry, 3 its `date_create`, 4 its `id`.
    doc.apply(&Edit::Replace(3, Wrong::Raw("1e400")));
    doc.apply(&Edit::Duplicate(2, 1, Wrong::Json(json!("x"))));
    let text = String::from_utf8(doc.bytes(&[])).unwrap();
    assert_eq!(text.matches("\"id\"").count(), 2, "{text}");
    assert!(text.contains("1e400"), "{text}");
    assert!(audit::parse_page(text.as_bytes()).is_err(), "{text}");
    let b = Doc {
        value: json!([1]),
        subst: Vec::new(),
    }
    .bytes(&[ByteEdit::Truncate(2)]);
    assert_eq!(b, b"[1");
    assert_eq!(
        format!("{:?}", Body(vec![b'{', 0xff, b'"'])),
        r#"b"{\xff\"""#
    );
}

// ------------------------------------------------------------------ regressions

/// Found by this harness: serde fills a struct from a JSON array by position, so
/// `access::parse_page` took the row `["U1", "192.0.2.1", "ua", 1, 2]` and would have delivered
/// a record whose event is an array. Rows (and entries of the other streams) must be objects.
#[test]
fn regression_entries_that_are_arrays_are_refused() {
    let access_body = br#"{"ok":true,"logins":[["U1","192.0.2.1","ua",1,2]]}"#;
    assert!(
        matches!(
            access::parse_page(access_body),
            Err(SlackError::Malformed { .. })
        ),
        "{:?}",
        access::parse_page(access_body).map(|p| p.rows.len())
    );
    check_access(access_body);
    let audit_body = br#"{"entries":[["a",1]]}"#;
    assert!(matches!(
        audit::parse_page(audit_body),
        Err(SlackError::Malformed { .. })
    ));
    let integration_body = br#"{"ok":true,"logs":[["1700000000"]]}"#;
    assert!(matches!(
        integration::parse_page(integration_body, None),
        Err(SlackError::Malformed { .. })
    ));
}

/// `-0` is the integer 0 (serde_json's `Value` reads it as the float -0.0, which once made the
/// harness's own oracle disagree with the audit parser).
#[test]
fn regression_negative_zero_time() {
    check_audit(br#"{"entries":[{"id":"a","date_create":-0}]}"#);
    check_access(br#"{"ok":true,"logins":[{"user_id":"U1","date_first":-0,"date_last":-0}]}"#);
}

/// Found by this harness: serde quotes a wrong value whole ("invalid type: string \"…\""), so a
/// 100 KB string where a number belongs made a 100 KB error message — a log line and a stored
/// status (portable key-value stores take 400 KB a value). Messages are now cut.
#[test]
fn regression_error_messages_are_bounded() {
    let big = "9".repeat(100_000);
    check_access(
        format!(
            r#"{{"ok":true,"logins":[{{"user_id":"U1","date_first":"{big}","date_last":1}}]}}"#
        )
        .as_bytes(),
    );
    check_integration(
        format!(r#"{{"ok":true,"logs":[{{"date":"x{big}"}}]}}"#).as_bytes(),
        None,
    );
    check_integration(
        format!(r#"{{"ok":false,"error":"{big}"}}"#).as_bytes(),
        None,
    );
    check_audit(format!(r#"{{"entries":[{{"id":"a","date_create":"{big}"}}]}}"#).as_bytes());
}

/// A checkpoint of format 1 (sets of FNV-1a hashes, `recent` and `walk.delivered`) still loads:
/// the sets are ignored, since no SHA-256 id can match them; the watermark and the walk's place
/// stay. The walk says so in its log (`core/src/integration/tests.rs`).
#[test]
fn regression_integration_format_1_checkpoint_loads() {
    let v1 = br#"{"v":1,"watermark":1700000000,"start":1690000000,"recent":{"1700000000":["0123456789abcdef"]},
        "unsorted":false,"walk":{"next_page":3,"newest":1700000500,"oldest":1699990000,"delivered":{"1699990000":["fedcba9876543210"]}}}"#;
    let cp = IntegrationCheckpoint::decode(v1).unwrap();
    assert_eq!(
        (cp.v, cp.watermark, cp.start),
        (1, 1_700_000_000, 1_690_000_000)
    );
    assert!(cp.recent_copies.is_empty() && cp.unsure_copies.is_empty());
    let walk = cp.walk.as_ref().unwrap();
    assert_eq!(
        (walk.next_page, walk.newest, walk.oldest),
        (3, Some(1_700_000_500), Some(1_699_990_000))
    );
    assert!(walk.seen.is_empty() && walk.last_page.is_empty());
    check_decode::<IntegrationCheckpoint>(v1);
}
