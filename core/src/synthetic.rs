//! `synthetic_data = true`: realistic audit events made up on the spot, served through a
//! [`Transport`] that answers like Slack's `/logs`, so they travel through the same windows,
//! cursors, checkpoints and sink as real ones. A pipeline can be tried end to end before a
//! token exists.
//!
//! The page model here ([`AuditApiModel`]) follows Slack's documented behaviour: newest first,
//! inclusive `oldest`/`latest`, pages extended over same-second ties, and a cursor that holds
//! only a timestamp (it does not remember `oldest`, Q3). The unit tests use it with explicit
//! event lists; it is no substitute for the simulator crate, which models much more.

use std::time::Duration;

use crate::env::{HttpResponse, Transport, TransportError};
use crate::record::fnv1a64;
pub use crate::url::parse_query;

/// One audit event as the model serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelEvent {
    pub id: String,
    pub date_create: i64,
    pub action: String,
    pub json: String,
}

/// Where the model's events come from.
pub trait EventSource {
    /// Every event with `oldest <= date_create <= latest`, newest first (ties in a fixed order).
    fn events_desc(&self, oldest: i64, latest: i64) -> Vec<ModelEvent>;
}

/// A fixed list of events, for tests.
#[derive(Default)]
pub struct EventList(pub Vec<ModelEvent>);

impl EventSource for EventList {
    fn events_desc(&self, oldest: i64, latest: i64) -> Vec<ModelEvent> {
        let mut v: Vec<ModelEvent> = self
            .0
            .iter()
            .filter(|e| e.date_create >= oldest && e.date_create <= latest)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.date_create
                .cmp(&a.date_create)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }
}

/// Made-up events: about one every `mean_gap` seconds, a burst now and then, all derived from
/// the second they happen in, so the same range always gives the same events.
pub struct SyntheticEvents {
    pub mean_gap: u64,
}

impl EventSource for SyntheticEvents {
    fn events_desc(&self, oldest: i64, latest: i64) -> Vec<ModelEvent> {
        let mut out = Vec::new();
        let mut t = latest;
        while t >= oldest {
            let h = fnv1a64(&[b"second", &t.to_le_bytes()]);
            if h.is_multiple_of(self.mean_gap.max(1)) {
                // One event in most seconds that have any; a same-second burst in one of 16.
                let n = if (h >> 20).is_multiple_of(16) {
                    2 + (h >> 24) % 6
                } else {
                    1
                };
                for i in 0..n {
                    out.push(synthetic_event(t, i));
                }
            }
            t -= 1;
        }
        out
    }
}

const USERS: &[(&str, &str, &str)] = &[
    ("W0SYN0001", "Ada Lovelace", "ada@example.com"),
    ("W0SYN0002", "Grace Hopper", "grace@example.com"),
    ("W0SYN0003", "Alan Turing", "alan@example.com"),
    ("W0SYN0004", "Katherine Johnson", "katherine@example.com"),
    ("USLACKSECURITY", "Slack Security", ""),
];
const ACTIONS: &[(&str, &str)] = &[
    ("user_login", "user"),
    ("user_logout", "user"),
    ("user_login_failed", "user"),
    ("file_downloaded", "file"),
    ("file_uploaded", "file"),
    ("public_channel_created", "channel"),
    ("private_channel_created", "channel"),
    ("user_channel_join", "channel"),
    ("role_change_to_admin", "user"),
    ("app_installed", "app"),
    ("pref.sso_setting_changed", "workspace"),
    ("user_session_invalidated", "user"),
];

fn synthetic_event(t: i64, i: u64) -> ModelEvent {
    let h = fnv1a64(&[b"event", &t.to_le_bytes(), &i.to_le_bytes()]);
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-s{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 4) & 0xfff,
        fnv1a64(&[&h.to_le_bytes()]) & 0xffff_ffff_ffff
    );
    let (action, kind) = ACTIONS[(h % ACTIONS.len() as u64) as usize];
    let (uid, name, email) = USERS[((h >> 8) % USERS.len() as u64) as usize];
    let entity = match kind {
        "user" => {
            let (eid, ename, eemail) = USERS[((h >> 12) % 4) as usize];
            serde_json::json!({"type": "user", "user": {"id": eid, "name": ename, "email": eemail, "team": "T0SYNTH01"}})
        }
        "file" => {
            serde_json::json!({"type": "file", "file": {"id": format!("F0{:08X}", h & 0xffff_ffff), "name": "report.pdf", "filetype": "pdf", "title": "Quarterly report"}})
        }
        "channel" => {
            serde_json::json!({"type": "channel", "channel": {"id": format!("C0{:08X}", h & 0xffff_ffff), "name": "incident-response", "privacy": if action.starts_with("private") { "private" } else { "public" }, "is_shared": false, "is_org_shared": false}})
        }
        "app" => {
            serde_json::json!({"type": "app", "app": {"id": "A0SYNTHAPP", "name": "Synthetic App", "is_distributed": false, "is_directory_approved": true, "scopes": ["channels:read"]}})
        }
        _ => {
            serde_json::json!({"type": "workspace", "workspace": {"id": "T0SYNTH01", "name": "Synthetic Co", "domain": "synthetic-co"}})
        }
    };
    let json = serde_json::json!({
        "id": id,
        "date_create": t,
        "action": action,
        "actor": {"type": "user", "user": {"id": uid, "name": name, "email": email}},
        "entity": entity,
        "context": {
            "location": {"type": "workspace", "id": "T0SYNTH01", "name": "Synthetic Co", "domain": "synthetic-co"},
            "ua": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "ip_address": format!("198.51.100.{}", h % 250 + 1),
            "session_id": format!("{}", h % 1_000_000_000_000),
        },
        "synthetic": true,
    })
    .to_string();
    ModelEvent {
        id,
        date_create: t,
        action: action.to_string(),
        json,
    }
}

/// Answers `GET …/logs?oldest&latest&limit&cursor` the way Slack does.
pub struct AuditApiModel<S: EventSource> {
    pub source: S,
    /// Every URL asked for, for tests that check what was sent.
    pub requests: Vec<String>,
    /// `latest` values after this are refused with `invalid_range`, as Slack refuses the future.
    pub now: Option<i64>,
}

impl<S: EventSource> AuditApiModel<S> {
    pub fn new(source: S) -> Self {
        AuditApiModel {
            source,
            requests: Vec::new(),
            now: None,
        }
    }

    /// The body Slack would send for this query.
    pub fn answer(&self, url: &str) -> HttpResponse {
        let q = parse_query(url);
        let get = |k: &str| {
            q.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        };
        let int = |k: &str| get(k).map(|v| v.parse::<i64>());
        let error = |status: u16, code: &str| HttpResponse {
            status,
            retry_after: None,
            date: self.date_header(),
            body: format!("{{\"ok\":false,\"error\":\"{code}\"}}").into_bytes(),
        };
        let (oldest, latest, limit) = match (int("oldest"), int("latest"), int("limit")) {
            (Some(Err(_)), _, _) | (_, Some(Err(_)), _) | (_, _, Some(Err(_))) => {
                return error(400, "invalid_arguments")
            }
            (o, l, n) => (
                o.and_then(Result::ok).unwrap_or(0),
                l.and_then(Result::ok).unwrap_or(i64::MAX),
                n.and_then(Result::ok).unwrap_or(100).clamp(1, 9999) as usize,
            ),
        };
        if self
            .now
            .is_some_and(|now| latest != i64::MAX && latest > now)
        {
            return error(400, "invalid_range");
        }
        // The cursor holds only where to continue; `oldest` must come with every request.
        let mut top = latest;
        if let Some(c) = get("cursor") {
            match c.strip_prefix("ts:").and_then(|t| t.parse::<i64>().ok()) {
                Some(t) => top = top.min(t),
                None => return error(400, "invalid_cursor"),
            }
        }
        let mut events = self.source.events_desc(oldest, top);
        if let Some(actions) = get("action") {
            let wanted: Vec<&str> = actions.split(',').collect();
            if wanted.len() > 30 {
                return error(400, "invalid_action");
            }
            events.retain(|e| wanted.contains(&e.action.as_str()));
        }
        let mut end = limit.min(events.len());
        while end < events.len()
            && end > 0
            && events[end].date_create == events[end - 1].date_create
        {
            end += 1;
        }
        let mut body = String::from("{\"entries\":[");
        for (i, e) in events[..end].iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&e.json);
        }
        body.push_str("],\"response_metadata\":{\"next_cursor\":\"");
        if end < events.len() {
            body.push_str(&format!("ts:{}", events[end - 1].date_create - 1));
        }
        body.push_str("\"}}");
        HttpResponse {
            status: 200,
            retry_after: None,
            date: self.date_header(),
            body: body.into_bytes(),
        }
    }

    /// Slack's `Date` header: the model's clock, when it has one.
    fn date_header(&self) -> Option<String> {
        let now = u64::try_from(self.now?).ok()?;
        Some(httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + Duration::from_secs(now),
        ))
    }
}

impl<S: EventSource> Transport for AuditApiModel<S> {
    fn get(
        &mut self,
        url: &str,
        _bearer: &str,
        _timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        self.requests.push(url.to_string());
        Ok(self.answer(url))
    }
}

/// Answers `team.integrationLogs?count&page` with made-up entries, newest first: about one an
/// hour over the week before `now`, derived from the hour they fall in.
pub struct IntegrationApiModel {
    pub now: i64,
}

impl IntegrationApiModel {
    fn entries(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let last_hour = self.now.div_euclid(3600);
        for hour in (last_hour - 7 * 24..=last_hour).rev() {
            let h = fnv1a64(&[b"integration", &hour.to_le_bytes()]);
            let date = hour * 3600 + (h % 3600) as i64;
            if h.is_multiple_of(3) || date > self.now {
                continue;
            }
            let (uid, name, _) = USERS[(h >> 8) as usize % 4];
            let change = [
                "added", "removed", "enabled", "disabled", "updated", "expanded",
            ][(h >> 16) as usize % 6];
            let mut e = if (h >> 24).is_multiple_of(2) {
                // Slack sends service ids as numbers or strings (Q34); so does this.
                let sid = 1_000_000 + (h >> 32) % 1000;
                serde_json::json!({"service_id": if (h >> 28).is_multiple_of(2) { serde_json::json!(sid) } else { serde_json::json!(sid.to_string()) },
                    "service_type": "Google Calendar", "channel": "C0SYNTH001", "scope": "incoming-webhook"})
            } else {
                serde_json::json!({"app_id": format!("A0SYN{:05}", (h >> 32) % 100_000), "app_type": "Synthetic App", "scope": "chat:write,channels:read"})
            };
            let obj = e.as_object_mut().expect("built as an object");
            obj.insert("user_id".into(), uid.into());
            obj.insert("user_name".into(), name.into());
            obj.insert("date".into(), date.to_string().into());
            obj.insert("change_type".into(), change.into());
            obj.insert("synthetic".into(), true.into());
            if change == "disabled" {
                obj.insert("reason".into(), "user".into());
            }
            out.push(e);
        }
        out
    }
}

impl Transport for IntegrationApiModel {
    fn get(
        &mut self,
        url: &str,
        _bearer: &str,
        _timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let q = parse_query(url);
        let get = |k: &str, d: usize| {
            q.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(d)
        };
        let (count, page) = (get("count", 100).clamp(1, 1000), get("page", 1).max(1));
        let all = self.entries();
        let slice: Vec<_> = all.iter().skip((page - 1) * count).take(count).collect();
        let body = serde_json::json!({"ok": true, "logs": slice,
            "paging": {"count": count, "total": all.len(), "page": page, "pages": all.len().div_ceil(count).max(1)}});
        Ok(HttpResponse {
            status: 200,
            retry_after: None,
            date: None,
            body: body.to_string().into_bytes(),
        })
    }
}

/// Synthetic access-log rows: user + IP + user-agent combinations, each first seen at a fixed
/// time and used again every few minutes for a while, so `date_last` and `count` move between
/// passes and new combinations appear, as in a real workspace. Everything derives from absolute
/// time (not from when a pass runs), so every pass sees the same history up to its `now`.
/// Answers `team.accessLogs` in both of Slack's paging modes (cursor with `limit`, classic
/// `count`/`page`), newest first by `sort_by_date_last` or `date_first`, with `before` inclusive
/// on that field. Rows carry `"synthetic": true`.
pub struct AccessApiModel {
    pub now: i64,
    /// Sort (and filter `before`) on `date_last` instead of `date_first`: Slack does not say which.
    pub sort_by_date_last: bool,
}

/// A new combination appears about this often.
const ACCESS_NEW_EVERY: i64 = 1800;
/// Combinations first seen longer ago than this are not listed (retention).
const ACCESS_RETENTION: i64 = 7 * 86_400;
const USER_AGENTS: &[&str] = &[
    "SlackWeb Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Slack/4.36.140 (Macintosh; Intel Mac OS X 14.2.1) AppleWebKit/537.36 (KHTML, like Gecko) Slack_SSB/4.36.140",
    "com.tinyspeck.chatlyio/23.12.10 (iPhone; iOS 17.2; Scale/3.00)",
    "ApiApp/A0SYNTHAPP",
];

/// One row as the model lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRow {
    pub user_id: &'static str,
    pub username: &'static str,
    pub ip: String,
    pub user_agent: &'static str,
    pub date_first: i64,
    pub date_last: i64,
    pub count: i64,
}

/// The IP address of combination `k`: one of the 762 documentation addresses (RFC 5737), a
/// different one for each of 762 consecutive combinations, more than a week's retention holds,
/// so no user + IP + user agent is listed twice (Slack's rows are one per combination).
fn access_ip(k: i64) -> String {
    const NETS: [&str; 3] = ["192.0.2", "198.51.100", "203.0.113"];
    let n = k.rem_euclid(3 * 254);
    format!("{}.{}", NETS[(n / 254) as usize], n % 254 + 1)
}

impl AccessApiModel {
    /// Every row at `now`, newest first by the sort field (ties by combination).
    pub fn rows(&self) -> Vec<AccessRow> {
        let first_k = (self.now - ACCESS_RETENTION).div_euclid(ACCESS_NEW_EVERY);
        let last_k = self.now.div_euclid(ACCESS_NEW_EVERY);
        let mut rows = Vec::new();
        for k in first_k..=last_k {
            let h = fnv1a64(&[b"access", &k.to_le_bytes()]);
            let first = k * ACCESS_NEW_EVERY + (h % ACCESS_NEW_EVERY as u64) as i64;
            if first > self.now {
                continue;
            }
            // Used every 2 to 30 minutes for 1 to 48 hours.
            let every = 120 + ((h >> 12) % 1680) as i64;
            let lasts = 3600 * (1 + ((h >> 24) % 48) as i64);
            let end = (first + lasts).min(self.now);
            let uses = (end - first) / every;
            let (uid, name, _) = USERS[((h >> 32) % 4) as usize];
            rows.push(AccessRow {
                user_id: uid,
                username: name,
                ip: access_ip(k),
                user_agent: USER_AGENTS[((h >> 48) % USER_AGENTS.len() as u64) as usize],
                date_first: first,
                date_last: first + uses * every,
                count: uses + 1,
            });
        }
        let by_last = self.sort_by_date_last;
        rows.sort_by(|a, b| {
            let key = |r: &AccessRow| if by_last { r.date_last } else { r.date_first };
            key(b).cmp(&key(a)).then_with(|| {
                (a.user_id, &a.ip, a.user_agent).cmp(&(b.user_id, &b.ip, b.user_agent))
            })
        });
        rows
    }

    fn row_json(r: &AccessRow) -> serde_json::Value {
        serde_json::json!({
            "user_id": r.user_id, "username": r.username, "date_first": r.date_first,
            "date_last": r.date_last, "count": r.count, "ip": r.ip, "user_agent": r.user_agent,
            "isp": "Synthetic ISP", "country": "US", "region": "CA", "synthetic": true,
        })
    }
}

impl Transport for AccessApiModel {
    fn get(
        &mut self,
        url: &str,
        _bearer: &str,
        _timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let q = parse_query(url);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let int = |k: &str, d: i64| get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
        let before = match get("before") {
            None | Some("now") => self.now,
            Some(v) => v.parse().unwrap_or(self.now),
        };
        let by_last = self.sort_by_date_last;
        let listing: Vec<AccessRow> = self
            .rows()
            .into_iter()
            .filter(|r| (if by_last { r.date_last } else { r.date_first }) <= before)
            .collect();
        let limit = int("limit", 0);
        let body = if limit > 0 {
            // Cursor mode; the cursor is the offset into this listing (the model's `now` is fixed
            // for a pass, so the listing does not shift under it).
            let from = get("cursor")
                .and_then(|c| c.strip_prefix("o:"))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
                .min(listing.len());
            let to = (from + limit.clamp(1, 999) as usize).min(listing.len());
            let next = if to < listing.len() {
                format!("o:{to}")
            } else {
                String::new()
            };
            let logins: Vec<_> = listing[from..to].iter().map(Self::row_json).collect();
            serde_json::json!({"ok": true, "logins": logins, "response_metadata": {"next_cursor": next}})
        } else {
            let count = int("count", 100).clamp(1, 1000) as usize;
            let page = int("page", 1).clamp(1, 100) as usize;
            let logins: Vec<_> = listing
                .iter()
                .skip((page - 1) * count)
                .take(count)
                .map(Self::row_json)
                .collect();
            serde_json::json!({"ok": true, "logins": logins,
                "paging": {"count": count, "total": listing.len(), "page": page, "pages": listing.len().div_ceil(count).max(1)}})
        };
        Ok(HttpResponse {
            status: 200,
            retry_after: None,
            date: None,
            body: body.to_string().into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_events_are_deterministic_and_parse() {
        let s = SyntheticEvents { mean_gap: 5 };
        let a = s.events_desc(1_700_000_000, 1_700_003_600);
        let b = s.events_desc(1_700_000_000, 1_700_003_600);
        assert_eq!(a, b);
        assert!(a.len() > 100, "{}", a.len());
        for e in &a {
            let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
            assert_eq!(v["id"], e.id.as_str());
            assert_eq!(v["date_create"], e.date_create);
        }
        assert!(a.windows(2).all(|w| w[0].date_create >= w[1].date_create));
    }

    #[test]
    fn synthetic_integration_entries_parse_and_page() {
        let mut m = IntegrationApiModel { now: 1_700_000_000 };
        let all = m.entries();
        assert!(all.len() > 50);
        let r = m
            .get("x/team.integrationLogs?count=10&page=2", "", Duration::ZERO)
            .unwrap();
        let page = crate::integration::parse_page(&r.body, None).unwrap();
        assert_eq!(page.entries.len(), 10);
        assert!(page.entries.windows(2).all(|w| w[0].date >= w[1].date));
    }

    #[test]
    fn synthetic_access_rows_move_and_appear_over_time() {
        let at = |now| {
            AccessApiModel {
                now,
                sort_by_date_last: false,
            }
            .rows()
        };
        let t = 1_700_000_000;
        let (a, b) = (at(t), at(t + 7200));
        assert_eq!(a, at(t), "deterministic");
        assert!(a.len() > 200, "{}", a.len());
        // Rows that existed keep their combination and first-seen time; some were used again.
        let moved = a
            .iter()
            .filter(|r| {
                b.iter().any(|s| {
                    s.ip == r.ip
                        && s.user_agent == r.user_agent
                        && s.user_id == r.user_id
                        && s.date_first == r.date_first
                        && s.date_last > r.date_last
                })
            })
            .count();
        assert!(moved > 0, "date_last moves");
        assert!(
            b.iter().any(|r| r.date_first > t),
            "new combinations appear"
        );
        for r in &b {
            assert!(r.date_first <= r.date_last && r.date_last <= t + 7200 && r.count >= 1);
        }
        // One row per user + IP + user agent, as Slack lists them.
        for rows in [&a, &b] {
            let combos: std::collections::BTreeSet<_> = rows
                .iter()
                .map(|r| (r.user_id, r.ip.as_str(), r.user_agent))
                .collect();
            assert_eq!(combos.len(), rows.len(), "a combination listed twice");
        }
        // Newest first by the sort field, in both orders; `before` is inclusive on it.
        assert!(b.windows(2).all(|w| w[0].date_first >= w[1].date_first));
        let by_last = AccessApiModel {
            now: t,
            sort_by_date_last: true,
        }
        .rows();
        assert!(by_last.windows(2).all(|w| w[0].date_last >= w[1].date_last));
    }

    #[test]
    fn synthetic_access_pages_in_both_modes_cover_the_listing_once() {
        let mut m = AccessApiModel {
            now: 1_700_000_000,
            sort_by_date_last: false,
        };
        let total = m.rows().len();
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let url = format!("x/team.accessLogs?before=now&limit=50&cursor={cursor}");
            let r = m.get(&url, "", Duration::ZERO).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            for row in v["logins"].as_array().unwrap() {
                assert_eq!(row["synthetic"], true);
                assert!(seen.insert((
                    row["ip"].to_string(),
                    row["user_agent"].to_string(),
                    row["date_first"].as_i64()
                )));
            }
            cursor = v["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap()
                .to_string();
            if cursor.is_empty() {
                break;
            }
        }
        assert_eq!(seen.len(), total);
        let r = m
            .get("x/team.accessLogs?count=1000&page=1", "", Duration::ZERO)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["logins"].as_array().unwrap().len(), total);
        assert_eq!(v["paging"]["total"], total);
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("http://x/logs?a=1&cursor=ts%3A5&b=x%2Cy"),
            vec![
                ("a".into(), "1".into()),
                ("cursor".into(), "ts:5".into()),
                ("b".into(), "x,y".into())
            ]
        );
        assert_eq!(parse_query("u?c=%41"), vec![("c".into(), "A".into())]);
        assert_eq!(parse_query("u?c=%4"), vec![("c".into(), "%4".into())]);
    }
}
