//! Slack's security detections (the audit action `anomaly`) to OCSF Detection Finding 2004.
//!
//! Slack writes one `anomaly` entry per detection: `details.reason` names what it detected (an
//! array of reason codes; a single string in some entries), `details.action_timestamp` when the
//! flagged action happened (13-digit milliseconds), `context.ip_address` / `context.ua` the
//! address and user agent of that action, and `details.previous_ip_address` /
//! `details.previous_ua` the ones the token used before. The finding carries:
//!
//! - `finding_info`: `uid` = the record id (the entry's `id`), `title` from the reasons
//!   ([`ANOMALY_REASONS`]), `types` = the reason codes as Slack sent them, `created_time` =
//!   `date_create`, `first_seen_time` / `last_seen_time` = the earlier / later of `date_create`
//!   and `action_timestamp`, and the analytic (Slack's behavioural anomaly detection).
//! - `severity_id`: the highest severity of the reasons in [`ANOMALY_REASONS`]; a reason the
//!   table does not know, or none at all, counts as Medium (3).
//! - `actor`: the user, session and app (host profile).
//! - `evidences`: the flagged observation (`src_endpoint.ip`, the entity user, and
//!   `data.user_agent`) and the previous one (`details.previous_ip_address`, `previous_ua`);
//!   `data.observation` says which is which. OCSF 1.3.0 gives a Detection Finding no
//!   `http_request`, so the user agents go in the evidence's `data`.
//! - `resources`: an entity that is not a user (an app), as `{uid, name, type}`.
//!
//! Everything else (`details.location`, `ip_address_details`, `context.location`, …) stays in
//! `unmapped`.

use serde_json::{json, Map, Value};

use super::audit::{actor, entity, entity_ref, entity_user};
use super::{Ctx, Src};

/// Severity when Slack names no reason the table knows (OCSF Medium): a detection Slack raised
/// is worth a look even when we cannot grade it.
pub(crate) const DEFAULT_SEVERITY: u32 = 3;

/// Slack's anomaly reason codes: (code, title, OCSF severity_id, why that severity). A finding
/// takes the highest severity of its reasons. The codes are those of Slack's "Anomalous events"
/// reference and its anomaly event response settings; `ua`, `user_agent` and
/// `unexpected_user_agent` are the spellings seen for the user-agent detection.
pub const ANOMALY_REASONS: &[(&str, &str, u32, &str)] = &[
    (
        "tor",
        "Access from a Tor exit node",
        4,
        "anonymised access; Slack's anomaly response ends such sessions by default",
    ),
    (
        "session_fingerprint",
        "Unexpected session fingerprint",
        4,
        "a stale or unexpected session cookie: a sign of a stolen session",
    ),
    (
        "unexpected_scraping",
        "Data scraping",
        4,
        "bulk collection of data; Slack's anomaly response ends such sessions by default",
    ),
    (
        "excessive_malware_uploads",
        "Excessive malware uploads",
        4,
        "malware spread through files",
    ),
    (
        "excessive_downloads",
        "Excessive downloads",
        3,
        "possible exfiltration; bulk work looks the same",
    ),
    (
        "excessive_file_shares",
        "Excessive file shares",
        3,
        "possible exfiltration; bulk work looks the same",
    ),
    (
        "unexpected_admin_action",
        "Unexpected admin action",
        3,
        "unusual use of admin rights",
    ),
    (
        "asn",
        "Suspicious ASN",
        3,
        "network on Slack's list of suspicious ASNs (always comes with `ip_address`)",
    ),
    (
        "ua",
        "Unexpected user agent",
        3,
        "an unexpected or spoofed client",
    ),
    (
        "user_agent",
        "Unexpected user agent",
        3,
        "an unexpected or spoofed client",
    ),
    (
        "unexpected_user_agent",
        "Unexpected user agent",
        3,
        "an unexpected or spoofed client",
    ),
    (
        "unexpected_client",
        "Unexpected client",
        3,
        "an unexpected or spoofed client",
    ),
    (
        "ip_address",
        "Unusual IP address",
        2,
        "an address unusual for the token; travel and VPNs cause it too",
    ),
];

/// Milliseconds: above this a timestamp is taken as milliseconds, at or below as seconds
/// (10^11 s is the year 5138; 10^11 ms is 1973).
const MS_THRESHOLD: i64 = 100_000_000_000;
/// 9999-12-31T23:59:59.999Z: a later (or negative) time is not a time.
const MAX_MS: i64 = 253_402_300_799_999;

fn reason_row(code: &str) -> Option<&'static (&'static str, &'static str, u32, &'static str)> {
    ANOMALY_REASONS.iter().find(|r| r.0 == code)
}

/// The severity of a finding with these reasons: the highest of theirs, a reason the table does
/// not know counting as [`DEFAULT_SEVERITY`] (so a new detection is never graded down).
pub(crate) fn severity(reasons: &[String]) -> u32 {
    reasons
        .iter()
        .map(|r| reason_row(r).map_or(DEFAULT_SEVERITY, |row| row.2))
        .max()
        .unwrap_or(DEFAULT_SEVERITY)
}

/// The finding's title: "Slack anomaly: " and the reasons' titles (unknown codes as they are).
pub(crate) fn title(reasons: &[String]) -> String {
    let mut titles: Vec<&str> = Vec::new();
    for r in reasons {
        let t = reason_row(r).map_or(r.as_str(), |row| row.1);
        if !titles.contains(&t) {
            titles.push(t);
        }
    }
    if titles.is_empty() {
        "Slack anomaly".into()
    } else {
        format!("Slack anomaly: {}", titles.join(", "))
    }
}

/// The reason codes at `details.reason`: an array of strings, or one string (comma-separated
/// codes allowed). Used (taken out of `unmapped`) only when every item is a string.
fn reasons(src: &mut Src) -> Vec<String> {
    fn push(s: &str, out: &mut Vec<String>) {
        for code in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !out.iter().any(|o| o == code) {
                out.push(code.to_string());
            }
        }
    }
    let path = ["details", "reason"];
    let mut out: Vec<String> = Vec::new();
    let mut all_strings = true;
    match src.peek(&path) {
        Some(Value::String(s)) => push(s, &mut out),
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str() {
                    Some(s) => push(s, &mut out),
                    None => all_strings = false,
                }
            }
        }
        _ => return out,
    }
    if all_strings {
        src.mark(&path);
    }
    out
}

/// A Slack timestamp in milliseconds: 13 digits as they are, 10 digits (seconds) × 1000; None
/// (and left in `unmapped`) for a negative or absurd one.
pub(crate) fn timestamp_ms(n: i64) -> Option<i64> {
    let ms = if n > MS_THRESHOLD {
        n
    } else {
        n.checked_mul(1000)?
    };
    (0..=MAX_MS).contains(&ms).then_some(ms)
}

fn action_time(src: &mut Src) -> Option<i64> {
    let path = ["details", "action_timestamp"];
    let v = src.peek(&path)?;
    let n = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
    let ms = timestamp_ms(n)?;
    src.mark(&path);
    Some(ms)
}

/// The attributes of the finding and its severity.
pub(super) fn anomaly(src: &mut Src, ctx: &Ctx) -> (Map<String, Value>, u32) {
    let reasons = reasons(src);
    let created = ctx.time.saturating_mul(1000);
    let mut info = Map::new();
    info.insert("uid".into(), json!(ctx.record_id));
    info.insert("title".into(), json!(title(&reasons)));
    if !reasons.is_empty() {
        info.insert("types".into(), json!(reasons));
    }
    info.insert("created_time".into(), json!(created));
    let seen = action_time(src).unwrap_or(created);
    info.insert("first_seen_time".into(), json!(created.min(seen)));
    info.insert("last_seen_time".into(), json!(created.max(seen)));
    info.insert(
        "analytic".into(),
        json!({"name": "Slack anomaly events", "type_id": 2, "type": "Behavioral"}),
    );

    let mut a = Map::new();
    a.insert("finding_info".into(), Value::Object(info));
    let actor = actor(src);
    if !actor.is_empty() {
        a.insert("actor".into(), Value::Object(actor));
    }

    let mut current = Map::new();
    if let Some(ip) = src.take_ip(&["context", "ip_address"]) {
        current.insert("src_endpoint".into(), json!({ "ip": ip }));
    }
    let mut resource = None;
    match entity(src) {
        Some(("user", _)) => {
            if let Some(user) = entity_user(src) {
                current.insert("user".into(), Value::Object(user));
            }
        }
        Some((kind, _)) => resource = entity_ref(src, kind),
        None => {}
    }
    let ua = src.take_str(&["context", "ua"]);
    let mut evidences = Vec::new();
    if !current.is_empty() || ua.is_some() {
        current.insert("data".into(), observation("current", ua));
        evidences.push(Value::Object(current));
    }
    let mut previous = Map::new();
    if let Some(ip) = src.take_ip(&["details", "previous_ip_address"]) {
        previous.insert("src_endpoint".into(), json!({ "ip": ip }));
    }
    let previous_ua = src.take_str(&["details", "previous_ua"]);
    if !previous.is_empty() || previous_ua.is_some() {
        previous.insert("data".into(), observation("previous", previous_ua));
        evidences.push(Value::Object(previous));
    }
    if !evidences.is_empty() {
        a.insert("evidences".into(), Value::Array(evidences));
    }
    if let Some(r) = resource {
        a.insert("resources".into(), json!([r]));
    }
    (a, severity(&reasons))
}

fn observation(which: &str, user_agent: Option<String>) -> Value {
    let mut d = Map::new();
    d.insert("observation".into(), json!(which));
    if let Some(ua) = user_agent {
        d.insert("user_agent".into(), json!(ua));
    }
    Value::Object(d)
}

/// The reason table as Markdown rows (README and the module doc show it; a test keeps them equal).
pub fn anomaly_reason_table_markdown() -> String {
    use std::fmt::Write;
    let mut s = String::from("| Reason | Title | Severity | Why |\n|---|---|---|---|\n");
    for (code, title, sev, why) in ANOMALY_REASONS {
        let _ = writeln!(
            s,
            "| `{code}` | {title} | {} ({sev}) | {why} |",
            super::enum_caption("severity_id", *sev)
        );
    }
    let _ = writeln!(
        s,
        "| any other, or none | the code itself | {} ({DEFAULT_SEVERITY}) | a detection we cannot grade is worth a look |",
        super::enum_caption("severity_id", DEFAULT_SEVERITY)
    );
    s
}
