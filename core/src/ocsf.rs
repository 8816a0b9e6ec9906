//! The OCSF mapping of records (`output_format = ocsf`): each record's Slack object becomes one
//! OCSF 1.3.0 event of the class that fits it.
//!
//! - audit: by action, through the table in `ocsf/actions.tsv` (every action of Slack's published
//!   catalogue, grouped by its sections, plus the few extra names the simulator knows). Classes:
//!   Authentication 3002, Account Change 3001, User Access Management 3005, Group Management 3006,
//!   Entity Management 3004, File Hosting Activity 6006, Detection Finding 2004 (`anomaly`), and
//!   Base Event 0.
//! - access: Authentication 3002, Logon, one event per user + IP + user-agent row.
//! - integration: User Access Management 3005 (`added`, `expanded`, `removed`) or Entity Management
//!   3004 (`enabled`, `disabled`, `updated`) by `change_type`.
//!
//! **Files.** Slack's file actions (`file_downloaded`, `file_uploaded`, `file_shared`, public
//! links, and the canvas and list actions that act on the hosted document) map to **File Hosting
//! Activity 6006** (Application Activity). OCSF defines it for "file sharing servers like
//! Sharepoint and services such as Box, MS OneDrive, or Google Drive", which is what Slack is for
//! its files, and its activities are Slack's: Upload, Download, Share, Unshare, Delete, Open,
//! Restore. File System Activity 1001 describes a process acting on a file of a device's file
//! system (System Activity, with a device); Web Resources Activity 6001 has no Upload, Download
//! or Unshare and would hide the file behind a generic web resource; Datastore Activity 6005 is
//! for databases and buckets.
//!
//! **Security detections.** Slack's `anomaly` entries (its security detections, one reason code
//! or more in `details.reason`) map to **Detection Finding 2004** (Findings), activity Create:
//! `finding_info.uid` is the record id, `title` and `types` come from the reasons,
//! `first_seen_time` / `last_seen_time` from `date_create` and `details.action_timestamp`
//! (13-digit milliseconds; 10 digits are read as seconds), the actor with its session is
//! `actor`, and the flagged and the previous address and user agent are the `evidences`
//! (`ocsf/finding.rs`). The severity is the highest of the reasons' in this table
//! (`ANOMALY_REASONS`; a test keeps this copy and README's equal to it):
//!
//! | Reason | Title | Severity | Why |
//! |---|---|---|---|
//! | `tor` | Access from a Tor exit node | High (4) | anonymised access; Slack's anomaly response ends such sessions by default |
//! | `session_fingerprint` | Unexpected session fingerprint | High (4) | a stale or unexpected session cookie: a sign of a stolen session |
//! | `unexpected_scraping` | Data scraping | High (4) | bulk collection of data; Slack's anomaly response ends such sessions by default |
//! | `excessive_malware_uploads` | Excessive malware uploads | High (4) | malware spread through files |
//! | `excessive_downloads` | Excessive downloads | Medium (3) | possible exfiltration; bulk work looks the same |
//! | `excessive_file_shares` | Excessive file shares | Medium (3) | possible exfiltration; bulk work looks the same |
//! | `unexpected_admin_action` | Unexpected admin action | Medium (3) | unusual use of admin rights |
//! | `asn` | Suspicious ASN | Medium (3) | network on Slack's list of suspicious ASNs (always comes with `ip_address`) |
//! | `ua` | Unexpected user agent | Medium (3) | an unexpected or spoofed client |
//! | `user_agent` | Unexpected user agent | Medium (3) | an unexpected or spoofed client |
//! | `unexpected_user_agent` | Unexpected user agent | Medium (3) | an unexpected or spoofed client |
//! | `unexpected_client` | Unexpected client | Medium (3) | an unexpected or spoofed client |
//! | `ip_address` | Unusual IP address | Low (2) | an address unusual for the token; travel and VPNs cause it too |
//! | any other, or none | the code itself | Medium (3) | a detection we cannot grade is worth a look |
//!
//! **Never a dropped record.** Unknown actions, unknown streams, and entries whose shape lacks what
//! the class requires (no file entity for a file action, no user for a login, …) become a Base
//! Event 0 with the whole Slack object in `unmapped` and the reason in `message`. For mapped
//! events, the Slack fields that found an OCSF home are taken out and everything else stays in
//! `unmapped`, with its original nesting, so nothing Slack sent is lost.
//!
//! The schema facts (`ocsf/schema.json`) give the captions at run time; the tests validate every
//! mapped event against them (see `ocsf/validate.rs`). Nothing is fetched at run time.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

mod audit;
mod finding;
mod streams;
#[cfg(test)]
mod tests;
/// Checks an event against the OCSF schema facts in `ocsf/schema.json`; the tests use it, and
/// so can a pipeline that wants to check what it receives.
pub mod validate;

pub use finding::{anomaly_reason_table_markdown, ANOMALY_REASONS};

/// OCSF schema version the mapping targets, e.g. "1.3.0".
pub const OCSF_VERSION: &str = "1.3.0";

/// The OCSF 1.3.0 facts (classes, objects, enums) this mapping emits; data, not code.
const SCHEMA_FACTS: &str = include_str!("ocsf/schema.json");
/// The audit action table: category, action, class_uid, activity_id, severity_id, status_id, source.
const ACTIONS_TSV: &str = include_str!("ocsf/actions.tsv");

pub(crate) const BASE_EVENT: u32 = 0;
pub(crate) const DETECTION_FINDING: u32 = 2004;
pub(crate) const ACCOUNT_CHANGE: u32 = 3001;
pub(crate) const AUTHENTICATION: u32 = 3002;
pub(crate) const ENTITY_MANAGEMENT: u32 = 3004;
pub(crate) const USER_ACCESS: u32 = 3005;
pub(crate) const GROUP_MANAGEMENT: u32 = 3006;
pub(crate) const FILE_HOSTING: u32 = 6006;

/// Activity id "Other": the activity name then carries Slack's own name for it.
pub(crate) const OTHER: u32 = 99;

/// The sections of Slack's published audit-action catalogue, in its order: (key, heading).
pub(crate) const CATEGORIES: &[(&str, &str)] = &[
    ("slack_ai", "AI in Slack"),
    ("app", "App"),
    ("canvas", "Canvas"),
    ("channel", "Channel"),
    ("ekm", "Enterprise Key Management (EKM)"),
    ("huddles", "Huddles"),
    ("file", "File"),
    ("function", "Function"),
    ("legal_holds", "Legal holds"),
    ("list", "List"),
    ("native_dlp", "Native Data Loss Prevention (DLP)"),
    ("sales_elevate", "Salesforce"),
    ("seamless_auth", "Seamless Auth"),
    ("shared_channels", "Shared channels"),
    ("mcp_server", "Slack Model Context Protocol (MCP) Server"),
    ("workflows", "Workflows"),
    ("workflows_v2", "Workflows v2"),
    ("user", "User"),
    ("user_groups", "User groups"),
    ("workspace_org", "Workspace or organization"),
    (
        "workspace_org_preferences",
        "Workspace or organization preferences",
    ),
];

/// Maps one record's parts to an OCSF event as JSON text. Never fails for a parseable Slack object:
/// unknown actions and shapes become Base Event 0 with everything in `unmapped`. Errs only when `event` is not JSON.
pub fn map_record(
    stream: &str,
    record_id: &str,
    team_id: Option<&str>,
    time: i64,
    collected_at: i64,
    event: &str,
) -> Result<String, String> {
    let event: Value =
        serde_json::from_str(event).map_err(|e| format!("event is not JSON: {e}"))?;
    let ctx = Ctx {
        stream,
        record_id,
        team_id,
        time,
        collected_at,
    };
    let outcome = match stream {
        "audit" => audit::map(&event, &ctx),
        "access" => streams::map_access(&event, &ctx),
        "integration" => streams::map_integration(&event, &ctx),
        other => Outcome::Base(Base {
            activity_name: None,
            severity_id: 1,
            status_id: None,
            event_code: None,
            tenant_uid: team_id.map(str::to_string),
            message: format!("record of unknown stream `{other}`"),
        }),
    };
    Ok(finish(outcome, event, &ctx).to_string())
}

/// The audit action table, for the README and tests: (category, action, class_uid, activity_id).
pub fn audit_action_table() -> Vec<(&'static str, &'static str, u32, u32)> {
    action_rows()
        .iter()
        .map(|r| (r.category, r.action, r.class_uid, r.activity_id))
        .collect()
}

/// The audit action table as Markdown, one section per catalogue category (the content of
/// `core/src/ocsf/ACTIONS.md`, which a unit test keeps equal to it).
pub fn action_table_markdown() -> String {
    use std::fmt::Write;
    let rows = action_rows();
    let mut s = String::new();
    let count = |src: &str| rows.iter().filter(|r| r.source == src).count();
    let _ = writeln!(s, "# Slack audit actions in OCSF {OCSF_VERSION}\n");
    let _ = writeln!(
        s,
        "Generated from `actions.tsv` by `slack_logs_core::ocsf::action_table_markdown()`; a unit test \
         keeps this file equal to it (`UPDATE_OCSF_TABLE=1 cargo test -p slack-logs-core ocsf` rewrites it).\n"
    );
    let _ = writeln!(
        s,
        "{} actions: {} from Slack's published catalogue (docs.slack.dev, \"Audit Logs API methods & \
         actions\", grouped by its sections), {} more from Slack's Java SDK action list and {} that the \
         simulator models on Slack's naming (marked in the Source column). An action not in this \
         table becomes a Base Event (0) with the whole entry in `unmapped`; so does an entry whose shape \
         lacks what its class requires, with the reason in `message`. A Detection Finding (`anomaly`) \
         takes its severity from Slack's reason codes (README, \"Security detections\"); the one shown \
         is for reasons the mapping does not know.\n",
        rows.len(),
        count("docs"),
        count("java_sdk"),
        count("sim"),
    );
    let _ = writeln!(s, "| OCSF class | Actions |\n|---|---|");
    let mut classes: Vec<u32> = rows.iter().map(|r| r.class_uid).collect();
    classes.sort_unstable();
    classes.dedup();
    for c in classes {
        let n = rows.iter().filter(|r| r.class_uid == c).count();
        let _ = writeln!(s, "| {} ({c}) | {n} |", class_caption(c));
    }
    for (key, heading) in CATEGORIES {
        let in_cat: Vec<&ActionRow> = rows.iter().filter(|r| r.category == *key).collect();
        if in_cat.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n## {heading}\n");
        let _ = writeln!(
            s,
            "| Action | OCSF class | Activity | Severity | Status | Source |\n|---|---|---|---|---|---|"
        );
        for r in in_cat {
            let status = if r.status_id == 0 {
                "—".to_string()
            } else {
                format!(
                    "{} ({})",
                    enum_caption("status_id", r.status_id),
                    r.status_id
                )
            };
            let _ = writeln!(
                s,
                "| `{}` | {} ({}) | {} ({}) | {} ({}) | {} | {} |",
                r.action,
                class_caption(r.class_uid),
                r.class_uid,
                activity_caption(r.class_uid, r.activity_id),
                r.activity_id,
                enum_caption("severity_id", r.severity_id),
                r.severity_id,
                status,
                r.source,
            );
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The action table and the schema facts.

/// One row of `actions.tsv`.
#[derive(Debug)]
pub(crate) struct ActionRow {
    pub category: &'static str,
    pub action: &'static str,
    pub class_uid: u32,
    pub activity_id: u32,
    pub severity_id: u32,
    /// 0: not known from the action alone (then no `status_id` is written).
    pub status_id: u32,
    /// `docs`, `java_sdk` or `sim`.
    pub source: &'static str,
}

pub(crate) fn parse_action_rows(text: &'static str) -> Result<Vec<ActionRow>, String> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&'static str> = line.split('\t').collect();
        let num = |i: usize| -> Result<u32, String> {
            f[i].parse()
                .map_err(|_| format!("actions.tsv line {}: `{}` is not a number", n + 1, f[i]))
        };
        if f.len() != 7 {
            return Err(format!(
                "actions.tsv line {}: {} fields, want 7",
                n + 1,
                f.len()
            ));
        }
        rows.push(ActionRow {
            category: f[0],
            action: f[1],
            class_uid: num(2)?,
            activity_id: num(3)?,
            severity_id: num(4)?,
            status_id: num(5)?,
            source: f[6],
        });
    }
    Ok(rows)
}

pub(crate) fn action_rows() -> &'static [ActionRow] {
    static ROWS: OnceLock<Vec<ActionRow>> = OnceLock::new();
    // The file is compiled in and checked by the tests, so a parse error is a build mistake.
    ROWS.get_or_init(|| parse_action_rows(ACTIONS_TSV).expect("ocsf/actions.tsv is well-formed"))
}

pub(crate) fn action_row(action: &str) -> Option<&'static ActionRow> {
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        action_rows()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.action, i))
            .collect()
    });
    index.get(action).map(|&i| &action_rows()[i])
}

pub(crate) fn schema_facts() -> &'static Value {
    static FACTS: OnceLock<Value> = OnceLock::new();
    FACTS.get_or_init(|| serde_json::from_str(SCHEMA_FACTS).expect("ocsf/schema.json is JSON"))
}

fn class_facts(class_uid: u32) -> Option<&'static Value> {
    schema_facts()["classes"].get(class_uid.to_string())
}

pub(crate) fn class_caption(class_uid: u32) -> &'static str {
    class_facts(class_uid)
        .and_then(|c| c["caption"].as_str())
        .unwrap_or("Unknown class")
}

fn class_category(class_uid: u32) -> u32 {
    class_facts(class_uid)
        .and_then(|c| c["category_uid"].as_u64())
        .unwrap_or(0) as u32
}

pub(crate) fn activity_caption(class_uid: u32, activity_id: u32) -> &'static str {
    class_facts(class_uid)
        .and_then(|c| c["activities"][activity_id.to_string()].as_str())
        .unwrap_or("Unknown")
}

fn category_caption(category_uid: u32) -> &'static str {
    schema_facts()["categories"][category_uid.to_string()]
        .as_str()
        .unwrap_or("Uncategorized")
}

pub(crate) fn enum_caption(name: &str, id: u32) -> &'static str {
    schema_facts()["enums"][name][id.to_string()]
        .as_str()
        .unwrap_or("Unknown")
}

/// The caption from the class's own enum of that name (a Finding's `status_id`), else from the
/// global one.
fn class_enum_caption(class_uid: u32, name: &str, id: u32) -> &'static str {
    match class_facts(class_uid)
        .and_then(|c| c.get("enums"))
        .and_then(|e| e.get(name))
    {
        Some(values) => values[id.to_string()].as_str().unwrap_or("Unknown"),
        None => enum_caption(name, id),
    }
}

// ---------------------------------------------------------------------------------------------
// What the stream mappers hand back, and the assembly of the final event.

pub(crate) struct Ctx<'a> {
    pub stream: &'a str,
    pub record_id: &'a str,
    pub team_id: Option<&'a str>,
    /// Unix seconds (the record's `time`).
    pub time: i64,
    /// Unix seconds.
    pub collected_at: i64,
}

/// An event of a real class: its class attributes (actor, user, file, …) and the ids.
pub(crate) struct Mapped {
    pub class_uid: u32,
    pub activity_id: u32,
    /// Slack's name for the activity, written as `activity_name` when the id is Other (99).
    pub source_activity: Option<String>,
    pub severity_id: u32,
    pub status_id: Option<u32>,
    pub attrs: Map<String, Value>,
    pub event_code: Option<String>,
    pub tenant_uid: Option<String>,
}

/// A Base Event 0 carrying the whole Slack object in `unmapped`.
pub(crate) struct Base {
    pub activity_name: Option<String>,
    pub severity_id: u32,
    pub status_id: Option<u32>,
    pub event_code: Option<String>,
    pub tenant_uid: Option<String>,
    pub message: String,
}

pub(crate) enum Outcome {
    /// The event, and the paths of the Slack fields it used (taken out of `unmapped`).
    Mapped(Mapped, Vec<Vec<String>>),
    Base(Base),
}

fn millis(seconds: i64) -> i64 {
    seconds.saturating_mul(1000)
}

fn metadata(
    ctx: &Ctx,
    event_code: Option<String>,
    tenant_uid: Option<String>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("version".into(), json!(OCSF_VERSION));
    m.insert(
        "product".into(),
        json!({"name": "Slack", "vendor_name": "Slack"}),
    );
    m.insert("uid".into(), json!(ctx.record_id));
    m.insert("log_name".into(), json!(ctx.stream));
    m.insert("logged_time".into(), json!(millis(ctx.collected_at)));
    if let Some(code) = event_code {
        m.insert("event_code".into(), json!(code));
    }
    if let Some(t) = tenant_uid {
        m.insert("tenant_uid".into(), json!(t));
    }
    m
}

/// Writes the classification attributes, with their captions.
fn classify(
    out: &mut Map<String, Value>,
    class_uid: u32,
    activity_id: u32,
    source_activity: Option<String>,
    severity_id: u32,
    status_id: Option<u32>,
) {
    let category_uid = class_category(class_uid);
    out.insert("class_uid".into(), json!(class_uid));
    out.insert("class_name".into(), json!(class_caption(class_uid)));
    out.insert("category_uid".into(), json!(category_uid));
    out.insert(
        "category_name".into(),
        json!(category_caption(category_uid)),
    );
    out.insert("activity_id".into(), json!(activity_id));
    let caption = activity_caption(class_uid, activity_id);
    let activity_name = match source_activity {
        Some(name) if activity_id == OTHER => name,
        _ => caption.to_string(),
    };
    out.insert("activity_name".into(), json!(activity_name));
    out.insert(
        "type_uid".into(),
        json!(u64::from(class_uid) * 100 + u64::from(activity_id)),
    );
    out.insert(
        "type_name".into(),
        json!(format!("{}: {caption}", class_caption(class_uid))),
    );
    out.insert("severity_id".into(), json!(severity_id));
    out.insert(
        "severity".into(),
        json!(class_enum_caption(class_uid, "severity_id", severity_id)),
    );
    if let Some(s) = status_id {
        out.insert("status_id".into(), json!(s));
        out.insert(
            "status".into(),
            json!(class_enum_caption(class_uid, "status_id", s)),
        );
    }
}

fn finish(outcome: Outcome, mut event: Value, ctx: &Ctx) -> Value {
    let mut out = Map::new();
    out.insert("time".into(), json!(millis(ctx.time)));
    match outcome {
        Outcome::Mapped(m, used) => {
            for path in &used {
                remove_path(&mut event, path);
            }
            classify(
                &mut out,
                m.class_uid,
                m.activity_id,
                m.source_activity,
                m.severity_id,
                m.status_id,
            );
            let mut meta = metadata(ctx, m.event_code, m.tenant_uid);
            // In these classes `actor` comes with the host profile (OCSF 1.3.0).
            if m.attrs.contains_key("actor")
                && matches!(
                    m.class_uid,
                    ENTITY_MANAGEMENT | USER_ACCESS | GROUP_MANAGEMENT | DETECTION_FINDING
                )
            {
                meta.insert("profiles".into(), json!(["host"]));
            }
            out.insert("metadata".into(), Value::Object(meta));
            out.extend(m.attrs);
            if event.as_object().is_some_and(|o| !o.is_empty()) {
                out.insert("unmapped".into(), event);
            }
        }
        Outcome::Base(b) => {
            let activity = if b.activity_name.is_some() { OTHER } else { 0 };
            classify(
                &mut out,
                BASE_EVENT,
                activity,
                b.activity_name,
                b.severity_id,
                b.status_id,
            );
            out.insert(
                "metadata".into(),
                Value::Object(metadata(ctx, b.event_code, b.tenant_uid)),
            );
            out.insert("message".into(), json!(b.message));
            let unmapped = match event {
                Value::Object(o) => o,
                other => {
                    let mut o = Map::new();
                    o.insert("event".into(), other);
                    o
                }
            };
            if !unmapped.is_empty() {
                out.insert("unmapped".into(), Value::Object(unmapped));
            }
        }
    }
    Value::Object(out)
}

/// Removes the field at `path`, and the objects that this leaves empty.
fn remove_path(v: &mut Value, path: &[String]) {
    fn go(v: &mut Value, path: &[String]) -> bool {
        let (Some(map), Some((first, rest))) = (v.as_object_mut(), path.split_first()) else {
            return false;
        };
        if rest.is_empty() {
            if map.remove(first).is_none() {
                return false;
            }
        } else {
            let emptied = map.get_mut(first).is_some_and(|child| go(child, rest));
            if !emptied {
                return false;
            }
            map.remove(first);
        }
        map.is_empty()
    }
    go(v, path);
}

// ---------------------------------------------------------------------------------------------
// Reading the Slack object and recording what was used.

/// A read-only view of the Slack object that records the paths the mapping used.
pub(crate) struct Src<'a> {
    root: &'a Value,
    used: Vec<Vec<String>>,
}

impl<'a> Src<'a> {
    pub fn new(root: &'a Value) -> Src<'a> {
        Src {
            root,
            used: Vec::new(),
        }
    }

    pub fn into_used(self) -> Vec<Vec<String>> {
        self.used
    }

    pub fn peek(&self, path: &[&str]) -> Option<&'a Value> {
        let mut v = self.root;
        for k in path {
            v = v.as_object()?.get(*k)?;
        }
        Some(v)
    }

    pub fn mark(&mut self, path: &[&str]) {
        self.used.push(path.iter().map(|s| s.to_string()).collect());
    }

    /// The value at `path` as a non-empty string (numbers in decimal), without using it.
    pub fn str_at(&self, path: &[&str]) -> Option<String> {
        self.peek(path).and_then(scalar_string)
    }

    /// Uses the value at `path` as a non-empty string (numbers in decimal). A null or empty
    /// string is used up too (it carries nothing); other shapes are left in place.
    pub fn take_str(&mut self, path: &[&str]) -> Option<String> {
        match self.peek(path)? {
            Value::Null => {
                self.mark(path);
                None
            }
            Value::String(s) if s.trim().is_empty() => {
                self.mark(path);
                None
            }
            v => {
                let s = scalar_string(v)?;
                self.mark(path);
                Some(s)
            }
        }
    }

    /// Uses the value at `path` as an integer (a JSON integer or a string of digits).
    pub fn take_i64(&mut self, path: &[&str]) -> Option<i64> {
        let v = self.peek(path)?;
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
        self.mark(path);
        Some(n)
    }

    /// Uses the array of strings at `path` (all of it, or nothing).
    pub fn take_strings(&mut self, path: &[&str]) -> Vec<String> {
        let Some(Value::Array(items)) = self.peek(path) else {
            return Vec::new();
        };
        let strings: Option<Vec<String>> = items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect();
        match strings {
            Some(s) => {
                self.mark(path);
                s.into_iter().filter(|x| !x.trim().is_empty()).collect()
            }
            None => Vec::new(),
        }
    }

    /// A Slack user object (`{id, name, email, team}`) at `base` as an OCSF user; None (and
    /// nothing used) when it has neither id nor name.
    pub fn user_at(&mut self, base: &[&str]) -> Option<Map<String, Value>> {
        let at = |k: &'static str| -> Vec<&str> {
            let mut p = base.to_vec();
            p.push(k);
            p
        };
        if !self.peek(base)?.is_object() {
            return None;
        }
        if self.str_at(&at("id")).is_none() && self.str_at(&at("name")).is_none() {
            return None;
        }
        let mut u = Map::new();
        if let Some(id) = self.take_str(&at("id")) {
            u.insert("uid".into(), json!(id));
        }
        if let Some(name) = self.take_str(&at("name")) {
            u.insert("name".into(), json!(name));
        }
        if let Some(email) = self.str_at(&at("email")).filter(|e| is_ocsf_email(e)) {
            self.mark(&at("email"));
            u.insert("email_addr".into(), json!(email));
        }
        if let Some(team) = self.take_str(&at("team")) {
            u.insert("org".into(), json!({ "uid": team }));
        }
        Some(u)
    }

    /// The valid IP address at `path` (used); an empty or null one is used up; an invalid one
    /// stays where it is (so it ends in `unmapped`).
    pub fn take_ip(&mut self, path: &[&str]) -> Option<String> {
        let s = self.str_at(path);
        match s {
            Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => {
                self.mark(path);
                Some(ip)
            }
            Some(_) => None,
            None => {
                // Null, empty, or not a scalar: take_str uses up null and empty only.
                self.take_str(path);
                None
            }
        }
    }
}

/// A scalar as a non-empty string: strings as they are (trimmed empty: None), numbers in decimal.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// OCSF `email_t`: `^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$`.
pub(crate) fn is_ocsf_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+,-./=?^_`{|}~".contains(&b));
    let Some((host, rest)) = domain.split_once('.') else {
        return false;
    };
    local_ok
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
