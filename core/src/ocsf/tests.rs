use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::validate::validate;
use super::*;

const COLLECTED_AT: i64 = 1_700_000_999;

/// Maps, parses and validates; panics with the errors and the event.
fn mapped(stream: &str, id: &str, team: Option<&str>, time: i64, event: &str) -> Value {
    let text = map_record(stream, id, team, time, COLLECTED_AT, event)
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    let v: Value = serde_json::from_str(&text).expect("output is JSON");
    if let Err(errs) = validate(&v) {
        panic!("{id}: not valid OCSF {OCSF_VERSION}: {errs:#?}\n{v:#}");
    }
    assert_eq!(v["metadata"]["uid"], id, "metadata.uid is the record id");
    assert_eq!(v["metadata"]["version"], OCSF_VERSION);
    assert_eq!(v["metadata"]["product"]["name"], "Slack");
    assert_eq!(v["metadata"]["log_name"], stream);
    assert_eq!(v["metadata"]["logged_time"], COLLECTED_AT * 1000);
    assert_eq!(v["time"], time * 1000, "time in milliseconds");
    v
}

fn audit(id: &str, time: i64, event: Value) -> Value {
    mapped("audit", id, None, time, &event.to_string())
}

// ---------------------------------------------------------------------------------------------
// Fixtures: Slack's documented examples (research notes §2.3, §3.3, §4.3) and one per class.

/// Audit entry 1 of §4.3: the docs' `user_login` example.
const DOC_USER_LOGIN: &str = r#"{
  "id": "0123a45b-6c7d-8900-e12f-3456789gh0i1",
  "date_create": 1521214343,
  "action": "user_login",
  "actor": { "type": "user", "user": { "id": "W123AB456", "name": "Charlie Parker", "email": "bird@slack.com" } },
  "entity": { "type": "user", "user": { "id": "W123AB456", "name": "Charlie Parker", "email": "bird@slack.com" } },
  "context": {
    "location": { "type": "enterprise", "id": "E1701NCCA", "name": "Birdland", "domain": "birdland" },
    "ua": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/64.0.3282.186 Safari/537.36",
    "session_id": "847288190092",
    "ip_address": "1.23.45.678"
  }
}"#;

/// Audit entry 2 of §4.3: app-triggered `public_channel_created`, `session_id: null`.
const DOC_CHANNEL_CREATED: &str = r#"{
  "id": "0123a45b-6c7d-8900-e12f-3456789gh0i2",
  "date_create": 1650415188,
  "action": "public_channel_created",
  "actor": { "type": "user", "user": { "id": "W123ABC456", "name": "Channel Spinner", "email": "botuser-T123AB456-AT123AB456@slack-bots.com", "team": "T123AB456" } },
  "entity": { "type": "channel", "channel": { "id": "C123ABC456", "privacy": "public", "name": "REDACTED", "is_shared": false, "is_org_shared": false } },
  "context": {
    "location": { "type": "workspace", "id": "T123ABC456", "name": "birdland", "domain": "birdland" },
    "ua": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/64.0.3282.186 Safari/537.36",
    "ip_address": "1.23.45.678",
    "session_id": null,
    "app": { "id": "AT123AB456", "name": "Channel Spinner App", "scopes": [], "scopes_bot": ["channels:manage", "groups:write", "im:write", "mpim:write"], "creator": "W123ABC456", "team": "T123ABC456" }
  }
}"#;

/// Audit entry 3 of §4.3: `file_downloaded`, integer `session_id`.
const DOC_FILE_DOWNLOADED: &str = r#"{
  "id": "2db28060-1659-4b27-ad55-fdba12e3a7b1",
  "date_create": 1683836275,
  "action": "file_downloaded",
  "actor": { "type": "user", "user": { "id": "W0AB12CD3", "name": "User McUser", "email": "user.mcuser@example.com", "team": "T0AB12CD3" } },
  "entity": { "type": "file", "file": { "id": "F0AB12CD3", "name": "image.png", "filetype": "image/png", "title": "image.png" } },
  "context": {
    "location": { "type": "workspace", "id": "T0AB12CD3", "name": "The Place", "domain": "theplace" },
    "ua": "com.tinyspeck.chatlyio/23.04.40 (iPhone; iOS 1.4.1; Scale/3.00)",
    "ip_address": "81.2.69.144",
    "session_id": 913888259765
  },
  "details": { "url_private": "https://files.slack.com/files-pri/T0AB12CD3-F0AB12CD3/image.png" }
}"#;

/// Audit entry 4 of §4.3: `anomaly`, `details.reason` an array.
const DOC_ANOMALY: &str = r#"{
  "id": "16f5fb41-c67c-4cf5-a5c4-d90cb58dd5f9",
  "date_create": 1673631531,
  "action": "anomaly",
  "actor": { "type": "user", "user": { "id": "W0AB12CD4", "name": "roy", "email": "roy@example.com" } },
  "entity": { "type": "user", "user": { "id": "W0AB12CD5", "name": "Joe Bob", "email": "jbob@example.com", "team": "T0AB12CD3" } },
  "context": {
    "location": { "type": "workspace", "id": "T0AB12CD3", "name": "Docker", "domain": "docker" },
    "ua": "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:23.0) Gecko/20131011 Firefox/23.0",
    "ip_address": "81.2.69.143"
  },
  "details": { "action_timestamp": 1673631621862, "location": "England, GB", "previous_ip_address": "175.16.199.64", "previous_ua": "", "reason": ["asn", "ip_address"] }
}"#;

/// §2.3 classic-mode rows and the §2.4 cursor-mode row.
const DOC_ACCESS_ALICE: &str = r#"{"user_id": "U45678", "username": "alice", "date_first": 1422922864, "date_last": 1422922864, "count": 1, "ip": "127.0.0.1", "user_agent": "SlackWeb Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_2) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/41.0.2272.35 Safari/537.36", "isp": "BigCo ISP", "country": "US", "region": "CA"}"#;
const DOC_ACCESS_RABBIT: &str = r#"{"user_id": "U12345", "username": "white_rabbit", "date_first": 1422922493, "date_last": 1422922493, "count": 1, "ip": "127.0.0.1", "user_agent": "SlackWeb Mozilla/5.0 (iPhone; CPU iPhone OS 8_1_3 like Mac OS X) AppleWebKit/600.1.4 (KHTML, like Gecko) Version/8.0 Mobile/12B466 Safari/600.1.4", "isp": "BigCo ISP", "country": "US", "region": "CA"}"#;
const DOC_ACCESS_CURSOR: &str = r#"{"user_id": "W0123ABCD", "username": "jdoe", "date_first": 1700000000, "date_last": 1700003600, "count": 7, "ip": "203.0.113.10", "user_agent": "ApiApp/1234", "isp": null, "country": null, "region": null}"#;

/// §3.3 entries: `service_id` an integer in the first, a string in the third.
const DOC_INTEGRATION_CALENDAR: &str = r#"{"service_id": 1234567890, "service_type": "Google Calendar", "user_id": "U1234ABCD", "user_name": "Johnny", "channel": "C1234567890", "date": "1392163200", "change_type": "enabled", "scope": "incoming-webhook"}"#;
const DOC_INTEGRATION_APP: &str = r#"{"app_id": "2345678901", "app_type": "Johnny App", "user_id": "U2345BCDE", "user_name": "Billy", "date": "1392163201", "change_type": "added", "scope": "chat:write:user,channels:read"}"#;
const DOC_INTEGRATION_AIRBRAKE: &str = r#"{"service_id": "3456789012", "service_type": "Airbrake", "user_id": "U3456CDEF", "user_name": "Joey", "channel": "C1234567890", "date": "1392163202", "change_type": "disabled", "reason": "user", "scope": "incoming-webhook"}"#;
const DOC_INTEGRATION_RSS: &str = r#"{"service_id": "4567890123", "service_type": "RSS", "user_id": "U4567DEFG", "user_name": "jane", "channel": "C2345678901", "date": "1392163203", "change_type": "added", "scope": "incoming-webhook", "rss_feed": true, "rss_feed_change_type": "added", "rss_feed_title": "Example feed", "rss_feed_url": "https://example.com/feed.xml"}"#;
const DOC_INTEGRATION_UPDATED: &str = r#"{"app_id": "A0123ABCD", "admin_app_id": "A0123ABCD", "app_type": "Example App", "user_id": "W0123ABCD", "user_name": "admin", "date": "1392163204", "change_type": "updated", "scope": "channels:read", "resolution": "approved"}"#;
const DOC_INTEGRATION_EXPANDED: &str = r#"{"app_id": "A0456EFGH", "app_type": "Other App", "user_id": "U5678EFGH", "user_name": "bob", "date": "1392163205", "change_type": "expanded", "scope": "channels:read,chat:write"}"#;

/// A well-formed audit entry with the given action, entity and details.
fn entry(action: &str, entity: Value, details: Option<Value>) -> Value {
    let mut e = json!({
        "id": format!("ev-{action}"),
        "date_create": 1_700_000_000,
        "action": action,
        "actor": { "type": "user", "user": { "id": "W1", "name": "Ada Admin", "email": "ada@example.com", "team": "T1" } },
        "context": {
            "location": { "type": "enterprise", "id": "E1", "name": "Acme", "domain": "acme" },
            "ua": "Mozilla/5.0",
            "ip_address": "203.0.113.7",
            "session_id": "555"
        }
    });
    if !entity.is_null() {
        e["entity"] = entity;
    }
    if let Some(d) = details {
        e["details"] = d;
    }
    e
}

fn user_entity(id: &str) -> Value {
    json!({ "type": "user", "user": { "id": id, "name": "Bea User", "email": "bea@example.com", "team": "T1" } })
}
fn channel_entity() -> Value {
    json!({ "type": "channel", "channel": { "id": "C1", "name": "general", "privacy": "public", "is_shared": false } })
}
fn app_entity() -> Value {
    json!({ "type": "app", "app": { "id": "A1", "name": "Helper", "is_distributed": false, "scopes": ["users:read"], "scopes_bot": ["chat:write", "channels:read"] } })
}
fn file_entity() -> Value {
    json!({ "type": "file", "file": { "id": "F1", "name": "report.pdf", "filetype": "pdf", "title": "Q3 report" } })
}
fn workspace_entity() -> Value {
    json!({ "type": "workspace", "workspace": { "id": "T1", "name": "Acme", "domain": "acme" } })
}

#[test]
fn fixtures_map_to_their_class_and_validate() {
    struct F {
        name: &'static str,
        stream: &'static str,
        team: Option<&'static str>,
        time: i64,
        event: String,
        class: u32,
        activity: u32,
    }
    let f = |name, stream, time, event: String, class, activity| F {
        name,
        stream,
        team: None,
        time,
        event,
        class,
        activity,
    };
    let e = |v: Value| v.to_string();
    let fixtures = vec![
        // audit: Slack's documented examples
        f(
            "doc user_login",
            "audit",
            1521214343,
            DOC_USER_LOGIN.into(),
            3002,
            1,
        ),
        f(
            "doc public_channel_created",
            "audit",
            1650415188,
            DOC_CHANNEL_CREATED.into(),
            3004,
            1,
        ),
        f(
            "doc file_downloaded",
            "audit",
            1683836275,
            DOC_FILE_DOWNLOADED.into(),
            6006,
            2,
        ),
        f(
            "doc anomaly",
            "audit",
            1673631531,
            DOC_ANOMALY.into(),
            2004,
            1,
        ),
        // audit: one or more per class
        f(
            "user_login_failed",
            "audit",
            1_700_000_000,
            e(entry("user_login_failed", user_entity("W1"), None)),
            3002,
            1,
        ),
        f(
            "user_logout",
            "audit",
            1_700_000_000,
            e(entry("user_logout", user_entity("W1"), None)),
            3002,
            2,
        ),
        f(
            "user_session_reset_by_admin",
            "audit",
            1_700_000_000,
            e(entry(
                "user_session_reset_by_admin",
                user_entity("W2"),
                None,
            )),
            3002,
            2,
        ),
        f(
            "role_change_to_admin",
            "audit",
            1_700_000_000,
            e(entry("role_change_to_admin", user_entity("W2"), None)),
            3001,
            99,
        ),
        f(
            "user_deactivated",
            "audit",
            1_700_000_000,
            e(entry("user_deactivated", user_entity("W2"), None)),
            3001,
            5,
        ),
        f(
            "user_email_updated",
            "audit",
            1_700_000_000,
            e(entry(
                "user_email_updated",
                user_entity("W2"),
                Some(json!({"previous_value": "old@example.com", "new_value": "new@example.com"})),
            )),
            3001,
            99,
        ),
        f(
            "app_installed",
            "audit",
            1_700_000_000,
            e(entry("app_installed", app_entity(), None)),
            3005,
            1,
        ),
        f(
            "app_scopes_expanded",
            "audit",
            1_700_000_000,
            e(entry(
                "app_scopes_expanded",
                app_entity(),
                Some(json!({"new_scopes": ["files:read"], "previous_scopes": ["chat:write"]})),
            )),
            3005,
            1,
        ),
        f(
            "app_restricted",
            "audit",
            1_700_000_000,
            e(entry("app_restricted", app_entity(), None)),
            3005,
            2,
        ),
        f(
            "user_channel_join",
            "audit",
            1_700_000_000,
            e(entry(
                "user_channel_join",
                channel_entity(),
                Some(json!({"inviter": {"id": "W9", "name": "Inviter"}})),
            )),
            3006,
            3,
        ),
        f(
            "guest_channel_leave",
            "audit",
            1_700_000_000,
            e(entry("guest_channel_leave", channel_entity(), None)),
            3006,
            4,
        ),
        f(
            "user_joined_workspace",
            "audit",
            1_700_000_000,
            e(entry("user_joined_workspace", user_entity("W2"), None)),
            3006,
            3,
        ),
        f(
            "pref.sso_setting_changed",
            "audit",
            1_700_000_000,
            e(entry(
                "pref.sso_setting_changed",
                workspace_entity(),
                Some(json!({"previous_value": "optional", "new_value": "required"})),
            )),
            3004,
            3,
        ),
        f(
            "pref without entity",
            "audit",
            1_700_000_000,
            e(entry("pref.two_factor_auth_changed", Value::Null, None)),
            3004,
            3,
        ),
        f(
            "channel_renamed",
            "audit",
            1_700_000_000,
            e(entry("channel_renamed", channel_entity(), None)),
            3004,
            5,
        ),
        f(
            "message_tombstoned",
            "audit",
            1_700_000_000,
            e(entry(
                "message_tombstoned",
                json!({"type": "message", "message": {"team": "T1", "channel": "C1", "timestamp": "1700000000.000100"}}),
                None,
            )),
            3004,
            4,
        ),
        f(
            "file_uploaded",
            "audit",
            1_700_000_000,
            e(entry("file_uploaded", file_entity(), None)),
            6006,
            1,
        ),
        f(
            "file_shared",
            "audit",
            1_700_000_000,
            e(entry(
                "file_shared",
                file_entity(),
                Some(json!({"shared_to": "C1"})),
            )),
            6006,
            12,
        ),
        f(
            "file_public_link_created",
            "audit",
            1_700_000_000,
            e(entry("file_public_link_created", file_entity(), None)),
            6006,
            12,
        ),
        f(
            "file_public_link_revoked",
            "audit",
            1_700_000_000,
            e(entry("file_public_link_revoked", file_entity(), None)),
            6006,
            13,
        ),
        f(
            "canvas_edited",
            "audit",
            1_700_000_000,
            e(entry(
                "canvas_edited",
                json!({"type": "canvas", "canvas": {"id": "F9", "filetype": "quip", "title": "Plan"}}),
                None,
            )),
            6006,
            3,
        ),
        f(
            "unknown action",
            "audit",
            1_700_000_000,
            e(entry("brand_new_action_2031", channel_entity(), None)),
            0,
            99,
        ),
        // access
        f(
            "doc access alice",
            "access",
            1422922864,
            DOC_ACCESS_ALICE.into(),
            3002,
            1,
        ),
        f(
            "doc access white_rabbit",
            "access",
            1422922493,
            DOC_ACCESS_RABBIT.into(),
            3002,
            1,
        ),
        f(
            "doc access cursor mode",
            "access",
            1700003600,
            DOC_ACCESS_CURSOR.into(),
            3002,
            1,
        ),
        // integration
        f(
            "doc integration enabled (int service_id)",
            "integration",
            1392163200,
            DOC_INTEGRATION_CALENDAR.into(),
            3004,
            8,
        ),
        f(
            "doc integration app added",
            "integration",
            1392163201,
            DOC_INTEGRATION_APP.into(),
            3005,
            1,
        ),
        f(
            "doc integration disabled (string service_id)",
            "integration",
            1392163202,
            DOC_INTEGRATION_AIRBRAKE.into(),
            3004,
            9,
        ),
        f(
            "integration RSS added",
            "integration",
            1392163203,
            DOC_INTEGRATION_RSS.into(),
            3005,
            1,
        ),
        f(
            "integration updated",
            "integration",
            1392163204,
            DOC_INTEGRATION_UPDATED.into(),
            3004,
            3,
        ),
        f(
            "integration expanded",
            "integration",
            1392163205,
            DOC_INTEGRATION_EXPANDED.into(),
            3005,
            1,
        ),
    ];
    let mut classes_seen = HashSet::new();
    for mut fx in fixtures {
        if fx.stream != "audit" {
            fx.team = Some("T0TEAM");
        }
        let v = mapped(fx.stream, fx.name, fx.team, fx.time, &fx.event);
        assert_eq!(v["class_uid"], fx.class, "{}: class\n{v:#}", fx.name);
        assert_eq!(
            v["activity_id"], fx.activity,
            "{}: activity\n{v:#}",
            fx.name
        );
        if fx.stream == "audit" && fx.class != 0 {
            assert!(
                v["actor"]["user"]["uid"].is_string(),
                "{}: actor.user",
                fx.name
            );
        }
        if let Some(team) = fx.team {
            assert_eq!(v["metadata"]["tenant_uid"], team);
        }
        classes_seen.insert(fx.class);
    }
    let all: HashSet<u32> = [0, 2004, 3001, 3002, 3004, 3005, 3006, 6006].into();
    assert_eq!(classes_seen, all, "a fixture for every class");
}

#[test]
fn documented_audit_examples_keep_the_right_fields() {
    let login = audit(
        "0123a45b-6c7d-8900-e12f-3456789gh0i1",
        1521214343,
        serde_json::from_str(DOC_USER_LOGIN).unwrap(),
    );
    assert_eq!(login["user"]["uid"], "W123AB456");
    assert_eq!(login["user"]["email_addr"], "bird@slack.com");
    assert_eq!(login["actor"]["session"]["uid"], "847288190092");
    assert_eq!(login["session"]["uid"], "847288190092");
    assert_eq!(login["service"]["name"], "Slack");
    assert_eq!(login["metadata"]["event_code"], "user_login");
    assert_eq!(login["metadata"]["tenant_uid"], "E1701NCCA");
    assert!(login["http_request"]["user_agent"]
        .as_str()
        .unwrap()
        .starts_with("Mozilla/5.0"));
    // The docs' example address is not an IP address (678 > 255): it stays in unmapped.
    assert!(login.get("src_endpoint").is_none());
    assert_eq!(login["unmapped"]["context"]["ip_address"], "1.23.45.678");
    assert_eq!(login["unmapped"]["context"]["location"]["name"], "Birdland");
    assert!(
        login["unmapped"].get("actor").is_none(),
        "actor fully mapped"
    );
    assert!(login["unmapped"].get("action").is_none());
    assert!(login["unmapped"].get("id").is_none());

    let created = audit(
        "0123a45b-6c7d-8900-e12f-3456789gh0i2",
        1650415188,
        serde_json::from_str(DOC_CHANNEL_CREATED).unwrap(),
    );
    assert_eq!(created["entity"]["uid"], "C123ABC456");
    assert_eq!(created["entity"]["type"], "channel");
    assert_eq!(created["entity"]["data"]["privacy"], "public");
    assert_eq!(created["actor"]["app_uid"], "AT123AB456");
    assert_eq!(created["actor"]["app_name"], "Channel Spinner App");
    assert_eq!(created["actor"]["user"]["org"]["uid"], "T123AB456");
    assert!(created["actor"].get("session").is_none(), "session_id null");
    assert!(created["unmapped"]["context"].get("session_id").is_none());
    assert_eq!(
        created["unmapped"]["context"]["app"]["scopes_bot"][0],
        "channels:manage"
    );
    assert_eq!(created["metadata"]["profiles"], json!(["host"]));
    assert_eq!(created["severity_id"], 1);
    assert_eq!(created["status_id"], 1);

    let file = audit(
        "2db28060-1659-4b27-ad55-fdba12e3a7b1",
        1683836275,
        serde_json::from_str(DOC_FILE_DOWNLOADED).unwrap(),
    );
    assert_eq!(file["file"]["uid"], "F0AB12CD3");
    assert_eq!(file["file"]["name"], "image.png");
    assert_eq!(file["file"]["mime_type"], "image/png");
    assert_eq!(file["src_endpoint"]["ip"], "81.2.69.144");
    assert_eq!(
        file["actor"]["session"]["uid"], "913888259765",
        "integer session_id as a string"
    );
    assert_eq!(
        file["unmapped"]["details"]["url_private"],
        "https://files.slack.com/files-pri/T0AB12CD3-F0AB12CD3/image.png"
    );
    assert!(
        file["unmapped"]["context"]["ua"].is_string(),
        "File Hosting has no http_request: ua stays unmapped"
    );
    assert_eq!(file["unmapped"]["entity"]["file"]["title"], "image.png");

    let anomaly = audit(
        "16f5fb41-c67c-4cf5-a5c4-d90cb58dd5f9",
        1673631531,
        serde_json::from_str(DOC_ANOMALY).unwrap(),
    );
    assert_eq!(
        anomaly,
        readme_anomaly_finding(),
        "README.md's example finding is what the mapping makes of Slack's documented anomaly"
    );
}

/// The example finding in README's OCSF section: DOC_ANOMALY mapped (collected at COLLECTED_AT).
fn readme_anomaly_finding() -> Value {
    let readme = include_str!("../../../README.md");
    let section = readme
        .find("### Security detections: Detection Finding 2004")
        .expect("README.md has the Detection Finding section");
    let block = &readme[section..];
    let open = block
        .find("```json\n")
        .expect("a JSON example in that section")
        + 8;
    let close = block[open..].find("\n```").expect("the JSON example ends") + open;
    serde_json::from_str(&block[open..close]).expect("README's example finding is JSON")
}

/// An `anomaly` entry like the simulator's, with the given details.
fn anomaly_entry(details: Option<Value>) -> Value {
    entry("anomaly", user_entity("W2"), details)
}

#[test]
fn anomaly_reasons_give_title_types_and_severity() {
    struct Case {
        reason: Value,
        severity: u32,
        title: &'static str,
        types: Value,
    }
    let cases = [
        Case {
            reason: json!(["tor"]),
            severity: 4,
            title: "Slack anomaly: Access from a Tor exit node",
            types: json!(["tor"]),
        },
        Case {
            reason: json!(["ip_address"]),
            severity: 2,
            title: "Slack anomaly: Unusual IP address",
            types: json!(["ip_address"]),
        },
        Case {
            reason: json!(["asn", "ip_address"]),
            severity: 3,
            title: "Slack anomaly: Suspicious ASN, Unusual IP address",
            types: json!(["asn", "ip_address"]),
        },
        Case {
            reason: json!(["ip_address", "session_fingerprint", "excessive_downloads"]),
            severity: 4,
            title: "Slack anomaly: Unusual IP address, Unexpected session fingerprint, Excessive downloads",
            types: json!(["ip_address", "session_fingerprint", "excessive_downloads"]),
        },
        // Two spellings of one detection give one title.
        Case {
            reason: json!(["ua", "user_agent"]),
            severity: 3,
            title: "Slack anomaly: Unexpected user agent",
            types: json!(["ua", "user_agent"]),
        },
        // A reason the table does not know: its code as the title, the default severity, and
        // it is not graded down by a known Low one.
        Case {
            reason: json!(["brand_new_detection_2031"]),
            severity: 3,
            title: "Slack anomaly: brand_new_detection_2031",
            types: json!(["brand_new_detection_2031"]),
        },
        Case {
            reason: json!(["ip_address", "brand_new_detection_2031"]),
            severity: 3,
            title: "Slack anomaly: Unusual IP address, brand_new_detection_2031",
            types: json!(["ip_address", "brand_new_detection_2031"]),
        },
        // `reason` as one string, and as a comma-separated string.
        Case {
            reason: json!("tor"),
            severity: 4,
            title: "Slack anomaly: Access from a Tor exit node",
            types: json!(["tor"]),
        },
        Case {
            reason: json!("asn, ip_address"),
            severity: 3,
            title: "Slack anomaly: Suspicious ASN, Unusual IP address",
            types: json!(["asn", "ip_address"]),
        },
    ];
    for c in cases {
        let id = format!("an-{}", c.reason);
        let v = audit(
            &id,
            1_700_000_000,
            anomaly_entry(Some(json!({"reason": c.reason.clone()}))),
        );
        assert_eq!(v["class_uid"], 2004, "{}\n{v:#}", c.reason);
        assert_eq!(v["activity_id"], 1);
        assert_eq!(v["severity_id"], c.severity, "{}", c.reason);
        assert_eq!(v["finding_info"]["uid"], id.as_str());
        assert_eq!(v["finding_info"]["title"], c.title);
        assert_eq!(v["finding_info"]["types"], c.types);
        assert!(
            v.get("unmapped").and_then(|u| u.get("details")).is_none(),
            "{}: the reason has its home\n{v:#}",
            c.reason
        );
        assert_eq!(v["actor"]["user"]["uid"], "W1");
        assert_eq!(v["actor"]["session"]["uid"], "555");
        assert_eq!(v["metadata"]["profiles"], json!(["host"]));
        assert_eq!(v["metadata"]["event_code"], "anomaly");
        assert!(
            v.get("status_id").is_none(),
            "a Finding's status is the consumer's"
        );
    }
}

#[test]
fn anomaly_without_details_or_with_odd_ones_is_still_a_finding() {
    // No details at all: the default severity, a plain title, seen when Slack logged it.
    let v = audit("an-1", 1_700_000_000, anomaly_entry(None));
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["severity_id"], finding::DEFAULT_SEVERITY);
    assert_eq!(v["finding_info"]["title"], "Slack anomaly");
    assert!(v["finding_info"].get("types").is_none());
    for k in ["created_time", "first_seen_time", "last_seen_time"] {
        assert_eq!(v["finding_info"][k], 1_700_000_000_000_i64, "{k}");
    }
    assert_eq!(v["evidences"][0]["src_endpoint"]["ip"], "203.0.113.7");
    assert_eq!(v["evidences"][0]["user"]["uid"], "W2");
    assert_eq!(
        v["evidences"][0]["data"],
        json!({"observation": "current", "user_agent": "Mozilla/5.0"})
    );
    assert_eq!(
        v["evidences"].as_array().map(Vec::len),
        Some(1),
        "no previous"
    );

    // Reasons of other types: the strings count, the field stays in unmapped.
    let v = audit(
        "an-2",
        1_700_000_000,
        anomaly_entry(Some(json!({"reason": [7, "tor", null]}))),
    );
    assert_eq!(v["finding_info"]["types"], json!(["tor"]));
    assert_eq!(v["severity_id"], 4);
    assert_eq!(v["unmapped"]["details"]["reason"], json!([7, "tor", null]));
    for reason in [
        json!(42),
        json!({"code": "tor"}),
        json!([]),
        json!(""),
        Value::Null,
    ] {
        let v = audit(
            "an-3",
            1_700_000_000,
            anomaly_entry(Some(json!({"reason": reason.clone()}))),
        );
        assert_eq!(v["class_uid"], 2004, "{reason}");
        assert_eq!(v["severity_id"], finding::DEFAULT_SEVERITY, "{reason}");
        assert_eq!(v["finding_info"]["title"], "Slack anomaly", "{reason}");
    }

    // Nothing but the action: still a valid finding, no evidence to show.
    let v = audit("an-4", 1_700_000_000, json!({"action": "anomaly"}));
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["finding_info"]["uid"], "an-4");
    assert!(v.get("evidences").is_none());
    assert!(v.get("actor").is_none());
    assert!(v.get("metadata").unwrap().get("profiles").is_none());

    // An app as the entity is the affected resource; an address that is no IP stays unmapped.
    let mut e = entry(
        "anomaly",
        app_entity(),
        Some(
            json!({"reason": ["unexpected_scraping"], "previous_ip_address": "1.23.45.678", "previous_ua": "curl/8.0"}),
        ),
    );
    e["context"]["ip_address"] = json!("");
    e["context"].as_object_mut().unwrap().remove("ua");
    let v = audit("an-5", 1_700_000_000, e);
    assert_eq!(
        v["resources"],
        json!([{"uid": "A1", "name": "Helper", "type": "app"}])
    );
    assert_eq!(
        v["evidences"],
        json!([{"data": {"observation": "previous", "user_agent": "curl/8.0"}}]),
        "no current observation; the previous user agent without a valid address"
    );
    assert_eq!(
        v["unmapped"]["details"]["previous_ip_address"],
        "1.23.45.678"
    );
    assert_eq!(v["severity_id"], 4);
}

#[test]
fn anomaly_action_timestamp_in_milliseconds_or_seconds() {
    let created = 1_673_631_531_i64;
    let seen = |ts: Value| -> (Value, Value, Value) {
        let mut e: Value = serde_json::from_str(DOC_ANOMALY).unwrap();
        e["details"]["action_timestamp"] = ts;
        let v = audit("16f5fb41-c67c-4cf5-a5c4-d90cb58dd5f9", created, e);
        let fi = &v["finding_info"];
        let left = v
            .get("unmapped")
            .and_then(|u| u.pointer("/details/action_timestamp"))
            .cloned()
            .unwrap_or(Value::Null);
        (
            fi["first_seen_time"].clone(),
            fi["last_seen_time"].clone(),
            left,
        )
    };
    let ms = created * 1000;
    // 13 digits, after date_create (the documented example): first = created, last = action.
    assert_eq!(
        seen(json!(1_673_631_621_862_i64)),
        (json!(ms), json!(1_673_631_621_862_i64), Value::Null)
    );
    // 13 digits before date_create: the earlier one is first.
    assert_eq!(
        seen(json!(1_673_631_500_123_i64)),
        (json!(1_673_631_500_123_i64), json!(ms), Value::Null)
    );
    // 10 digits are seconds.
    assert_eq!(
        seen(json!(1_673_631_600)),
        (json!(ms), json!(1_673_631_600_000_i64), Value::Null)
    );
    // A string of digits.
    assert_eq!(
        seen(json!("1673631621862")),
        (json!(ms), json!(1_673_631_621_862_i64), Value::Null)
    );
    // Negative, absurd or not a number: not a time; it stays in unmapped.
    for bad in [
        json!(-5),
        json!(i64::MAX),
        json!(99_999_999_999_999_999_i64),
        json!("soon"),
        json!(1.5),
    ] {
        assert_eq!(
            seen(bad.clone()),
            (json!(ms), json!(ms), bad.clone()),
            "{bad}"
        );
    }
    assert_eq!(
        finding::timestamp_ms(1_673_631_621_862),
        Some(1_673_631_621_862)
    );
    assert_eq!(
        finding::timestamp_ms(1_673_631_621),
        Some(1_673_631_621_000)
    );
    assert_eq!(finding::timestamp_ms(i64::MIN), None);
}

/// The reason table is shown in the README and the module doc exactly as the code has it.
#[test]
fn anomaly_reason_table_is_documented() {
    let table = anomaly_reason_table_markdown();
    assert!(table.contains("| `tor` | Access from a Tor exit node | High (4) |"));
    let readme = include_str!("../../../README.md");
    assert!(
        readme.contains(&table),
        "README.md's OCSF section must show the anomaly reason table as \
         slack_logs_core::ocsf::anomaly_reason_table_markdown() gives it:\n{table}"
    );
    let module_doc: String = include_str!("../ocsf.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! ").or_else(|| l.strip_prefix("//!")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        module_doc.contains(&table),
        "core/src/ocsf.rs's module doc must show the anomaly reason table:\n{table}"
    );
}

#[test]
fn access_and_integration_fields() {
    let alice = mapped("access", "acc-1", Some("T1"), 1422922864, DOC_ACCESS_ALICE);
    assert_eq!(alice["user"], json!({"uid": "U45678", "name": "alice"}));
    assert_eq!(alice["actor"]["user"]["uid"], "U45678");
    assert_eq!(alice["count"], 1);
    assert_eq!(alice["start_time"], 1422922864_i64 * 1000);
    assert_eq!(alice["end_time"], 1422922864_i64 * 1000);
    assert_eq!(alice["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(
        alice["src_endpoint"]["location"],
        json!({"country": "US", "region": "CA", "isp": "BigCo ISP"})
    );
    assert!(alice["http_request"]["user_agent"]
        .as_str()
        .unwrap()
        .starts_with("SlackWeb"));
    assert_eq!(alice["status_id"], 1);
    assert!(
        alice.get("unmapped").is_none(),
        "every documented field has a home"
    );

    let cursor = mapped("access", "acc-2", None, 1700003600, DOC_ACCESS_CURSOR);
    assert_eq!(cursor["count"], 7);
    assert!(
        cursor["src_endpoint"].get("location").is_none(),
        "no guess, no location"
    );
    assert!(cursor.get("unmapped").is_none(), "nulls carry nothing");

    let cal = mapped(
        "integration",
        "int-1",
        Some("T1"),
        1392163200,
        DOC_INTEGRATION_CALENDAR,
    );
    let air = mapped(
        "integration",
        "int-3",
        Some("T1"),
        1392163202,
        DOC_INTEGRATION_AIRBRAKE,
    );
    assert_eq!(cal["entity"]["uid"], "1234567890", "integer service_id");
    assert_eq!(air["entity"]["uid"], "3456789012", "string service_id");
    assert_eq!(cal["entity"]["type"], "Service");
    assert_eq!(air["unmapped"]["reason"], "user");
    assert_eq!(
        cal["actor"]["user"],
        json!({"uid": "U1234ABCD", "name": "Johnny"})
    );
    assert_eq!(cal["metadata"]["event_code"], "enabled");
    assert!(
        cal["unmapped"].get("date").is_none(),
        "date is the record time"
    );

    let app = mapped(
        "integration",
        "int-2",
        None,
        1392163201,
        DOC_INTEGRATION_APP,
    );
    assert_eq!(app["user"]["uid"], "2345678901");
    assert_eq!(app["user"]["type"], "App");
    assert_eq!(
        app["privileges"],
        json!(["chat:write:user", "channels:read"])
    );

    let rss = mapped(
        "integration",
        "int-4",
        None,
        1392163203,
        DOC_INTEGRATION_RSS,
    );
    assert_eq!(rss["resource"]["uid"], "C2345678901");
    assert_eq!(
        rss["unmapped"]["rss_feed_url"],
        "https://example.com/feed.xml"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile shapes: never an error, always a valid event.

#[test]
fn hostile_shapes_map_to_valid_events() {
    let mut login_no_actor = entry("user_login", user_entity("W2"), None);
    login_no_actor.as_object_mut().unwrap().remove("actor");
    let v = audit("h1", 1_700_000_000, login_no_actor);
    assert_eq!(v["class_uid"], 3002, "the entity user still logs in");
    assert!(v.get("actor").is_none_or(|a| a.get("user").is_none()));

    let mut nobody = entry("user_login", Value::Null, None);
    nobody.as_object_mut().unwrap().remove("actor");
    let v = audit("h2", 1_700_000_000, nobody);
    assert_eq!(v["class_uid"], 0);
    assert!(v["message"].as_str().unwrap().contains("no user"));

    let mut file_no_actor = entry("file_downloaded", file_entity(), None);
    file_no_actor.as_object_mut().unwrap().remove("actor");
    file_no_actor["context"]["session_id"] = Value::Null;
    let v = audit("h3", 1_700_000_000, file_no_actor.clone());
    assert_eq!(v["class_uid"], 0, "File Hosting requires an actor");
    assert_eq!(v["unmapped"], file_no_actor);

    for (session, want) in [
        (json!(913888259765_u64), Some("913888259765")),
        (json!("847288190092"), Some("847288190092")),
        (Value::Null, None),
        (json!(""), None),
    ] {
        let mut e = entry("user_logout", user_entity("W1"), None);
        e["context"]["session_id"] = session.clone();
        let v = audit("h4", 1_700_000_000, e);
        assert_eq!(
            v["actor"]["session"]["uid"].as_str(),
            want,
            "session_id {session}"
        );
        assert!(v
            .get("unmapped")
            .and_then(|u| u.get("context"))
            .and_then(|c| c.get("session_id"))
            .is_none());
    }

    let mut e = entry("file_downloaded", file_entity(), None);
    e["context"]["ip_address"] = json!("");
    let v = audit("h5", 1_700_000_000, e);
    assert_eq!(v["class_uid"], 6006);
    assert_eq!(
        v["src_endpoint"],
        json!({"name": "unknown"}),
        "required, Slack sent none"
    );
    let mut e = entry("user_login", user_entity("W1"), None);
    e["context"]["ip_address"] = json!("");
    let v = audit("h6", 1_700_000_000, e);
    assert!(v.get("src_endpoint").is_none());

    let mut e = entry("public_channel_created", channel_entity(), None);
    e["context"]["app"] = Value::Null;
    let v = audit("h7", 1_700_000_000, e);
    assert_eq!(v["class_uid"], 3004);
    assert!(v["actor"].get("app_uid").is_none());
    assert!(v["unmapped"]
        .get("context")
        .and_then(|c| c.get("app"))
        .is_none());

    let e = entry(
        "user_logout_compromised",
        user_entity("W2"),
        Some(json!({"reason": ["asn", "ip_address"]})),
    );
    let v = audit("h8", 1_700_000_000, e);
    assert_eq!(v["class_uid"], 3002);
    assert_eq!(
        v["unmapped"]["details"]["reason"],
        json!(["asn", "ip_address"])
    );
    let e = entry(
        "user_logout_compromised",
        user_entity("W2"),
        Some(json!({"reason": "device"})),
    );
    assert_eq!(
        audit("h9", 1_700_000_000, e)["unmapped"]["details"]["reason"],
        "device"
    );

    // Wrong types and broken shapes.
    let mut e = entry("user_login", user_entity("W1"), None);
    e["actor"]["user"] = json!("W1");
    e["entity"]["user"]["email"] = json!("not-an-email");
    let v = audit("h10", 1_700_000_000, e);
    assert_eq!(v["class_uid"], 3002);
    assert!(v["user"].get("email_addr").is_none());
    assert_eq!(v["unmapped"]["entity"]["user"]["email"], "not-an-email");
    assert_eq!(v["unmapped"]["actor"]["user"], "W1");

    let mut e = entry(
        "public_channel_created",
        json!({"type": "channel", "workspace": {"id": "T1"}}),
        None,
    );
    e["date_create"] = json!("soon");
    let v = audit("h11", 1_700_000_000, e);
    assert_eq!(v["class_uid"], 0, "no usable entity");

    let v = audit("h12", 1_700_000_000, json!({"action": 42}));
    assert_eq!(
        (v["class_uid"].as_u64(), v["activity_id"].as_u64()),
        (Some(0), Some(0))
    );
    let v = audit("h13", 1_700_000_000, json!({}));
    assert_eq!(v["class_uid"], 0);
    assert!(v.get("unmapped").is_none());
    let v = mapped("audit", "h14", None, 1_700_000_000, "[1,2]");
    assert_eq!(v["unmapped"], json!({"event": [1, 2]}));
    let v = mapped("audit", "h15", None, 1_700_000_000, "\"text\"");
    assert_eq!(v["class_uid"], 0);

    let v = mapped("elsewhere", "h16", Some("T1"), 1_700_000_000, r#"{"a":1}"#);
    assert_eq!(v["class_uid"], 0);
    assert_eq!(v["unmapped"], json!({"a": 1}));

    // Access and integration oddities.
    let v = mapped(
        "access",
        "h17",
        None,
        1_700_000_000,
        r#"{"user_id": "U1", "ip": null, "country": "USA", "date_first": "1700000000", "count": "3"}"#,
    );
    assert_eq!(v["class_uid"], 3002);
    assert_eq!(v["start_time"], 1_700_000_000_000_i64);
    assert_eq!(v["count"], 3);
    assert_eq!(v["unmapped"], json!({"country": "USA"}));
    let v = mapped(
        "access",
        "h18",
        None,
        1_700_000_000,
        r#"{"ip": "10.0.0.1"}"#,
    );
    assert_eq!(v["class_uid"], 0, "no user");
    let v = mapped(
        "integration",
        "h19",
        None,
        1_700_000_000,
        r#"{"service_id": 7, "service_type": "X", "change_type": "added"}"#,
    );
    assert_eq!(v["class_uid"], 0, "added without scope names no privileges");
    let v = mapped(
        "integration",
        "h20",
        None,
        1_700_000_000,
        r#"{"service_id": 7, "change_type": "reticulated"}"#,
    );
    assert_eq!(v["class_uid"], 0);
    assert_eq!(v["activity_name"], "reticulated");
    let v = mapped(
        "integration",
        "h21",
        None,
        1_700_000_000,
        r#"{"service_id": 7, "change_type": "disabled", "date": "1"}"#,
    );
    assert_eq!(v["class_uid"], 3004);
    assert_eq!(
        v["unmapped"]["date"], "1",
        "a date that is not the record time stays"
    );
}

#[test]
fn not_json_is_the_only_error() {
    assert!(map_record("audit", "x", None, 0, 0, "{not json").is_err());
    assert!(map_record("audit", "x", None, 0, 0, "").is_err());
    assert!(map_record("access", "x", None, 0, 0, "null").is_ok());
}

// ---------------------------------------------------------------------------------------------
// The action table.

#[test]
fn every_action_in_the_table_has_a_class_and_valid_ids() {
    let facts = schema_facts();
    assert_eq!(facts["ocsf_version"], OCSF_VERSION);
    let rows = action_rows();
    assert_eq!(audit_action_table().len(), rows.len());
    let mut seen = HashSet::new();
    let categories: HashSet<&str> = CATEGORIES.iter().map(|(k, _)| *k).collect();
    for r in rows {
        assert!(seen.insert(r.action), "{} twice in the table", r.action);
        assert!(
            categories.contains(r.category),
            "{}: unknown category {}",
            r.action,
            r.category
        );
        assert!(
            ["docs", "java_sdk", "sim"].contains(&r.source),
            "{}: source {}",
            r.action,
            r.source
        );
        let class = &facts["classes"][r.class_uid.to_string()];
        assert!(
            class.is_object(),
            "{}: class {} has no facts",
            r.action,
            r.class_uid
        );
        assert!(
            class["activities"][r.activity_id.to_string()].is_string(),
            "{}: activity {} is not one of class {}",
            r.action,
            r.activity_id,
            r.class_uid
        );
        assert!(r.activity_id != 0, "{}: activity Unknown", r.action);
        assert!(facts["enums"]["severity_id"][r.severity_id.to_string()].is_string());
        assert!(facts["enums"]["status_id"][r.status_id.to_string()].is_string());
        assert!(action_row(r.action).is_some_and(|x| std::ptr::eq(x, r)));
    }
    // Base Event is only for what no class fits, and those are few.
    let base: Vec<&str> = rows
        .iter()
        .filter(|r| r.class_uid == 0)
        .map(|r| r.action)
        .collect();
    assert_eq!(base, ["native_dlp_rule_action_applied"]);
    assert_eq!(
        action_row("anomaly").map(|r| (r.class_uid, r.severity_id)),
        Some((DETECTION_FINDING, finding::DEFAULT_SEVERITY)),
        "anomaly is a Detection Finding; its table severity is the one for no known reason"
    );
    // The published catalogue as transcribed: 441 distinct actions.
    assert_eq!(rows.iter().filter(|r| r.source == "docs").count(), 441);
    for a in [
        "user_login",
        "user_login_failed",
        "user_logout",
        "role_change_to_admin",
        "user_email_updated",
        "app_installed",
        "file_downloaded",
        "pref.sso_setting_changed",
        "user_channel_join",
    ] {
        assert_eq!(action_row(a).map(|r| r.source), Some("docs"), "{a}");
    }
    assert!(
        action_row("user_role_changed").is_none(),
        "not a Slack action"
    );
}

#[test]
fn malformed_tables_are_rejected() {
    assert!(parse_action_rows("app\tx\t3004\n").is_err());
    assert!(parse_action_rows("app\tx\tclass\t1\t1\t1\tdocs\n").is_err());
    assert_eq!(
        parse_action_rows("# c\n\napp\tx\t3004\t1\t1\t1\tdocs\n")
            .unwrap()
            .len(),
        1
    );
}

/// Every action the simulator emits is in the table (test-only coupling to sim/src/catalog.rs).
#[test]
fn every_simulator_action_is_in_the_table() {
    let src = include_str!("../../../sim/src/catalog.rs");
    let start = src.find("CATEGORIES").expect("CATEGORIES in catalog.rs");
    let end = src[start..]
        .find("/// The kind of object")
        .map_or(src.len(), |e| start + e);
    let block = &src[start..end];
    let mut names = Vec::new();
    let mut rest = block;
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let close = after.find('"').expect("closing quote");
        let name = &after[..close];
        rest = &after[close + 1..];
        // A category name is followed by `, &[`.
        let is_category = rest
            .trim_start()
            .strip_prefix(',')
            .is_some_and(|r| r.trim_start().starts_with("&["));
        if !is_category {
            names.push(name);
        }
    }
    assert!(names.len() > 150, "extracted {} names", names.len());
    let missing: Vec<&&str> = names.iter().filter(|n| action_row(n).is_none()).collect();
    assert!(
        missing.is_empty(),
        "simulator actions missing from the table: {missing:?}"
    );
}

/// A realistic entry of the action's class maps to exactly the table's class and activity.
#[test]
fn every_table_action_maps_to_its_class_and_validates() {
    for r in action_rows() {
        let (entity, details) = match r.class_uid {
            AUTHENTICATION | ACCOUNT_CHANGE => (user_entity("W2"), None),
            USER_ACCESS => (app_entity(), None),
            GROUP_MANAGEMENT => (
                channel_entity(),
                Some(
                    json!({"target_user": {"id": "W3", "name": "Cy"}, "permissions": ["channel_manager"]}),
                ),
            ),
            FILE_HOSTING => (file_entity(), None),
            _ => (channel_entity(), None),
        };
        let v = audit(
            &format!("ev-{}", r.action),
            1_700_000_000,
            entry(r.action, entity, details),
        );
        assert_eq!(
            (v["class_uid"].as_u64(), v["activity_id"].as_u64()),
            (Some(u64::from(r.class_uid)), Some(u64::from(r.activity_id))),
            "{}\n{v:#}",
            r.action
        );
        assert_eq!(v["severity_id"], r.severity_id);
        assert_eq!(v["metadata"]["event_code"], r.action);
        if r.activity_id == OTHER {
            assert_eq!(v["activity_name"], r.action);
        }
        if r.class_uid != 0 {
            assert_eq!(v["actor"]["user"]["uid"], "W1", "{}", r.action);
        }
    }
}

#[test]
fn actions_md_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ocsf/ACTIONS.md");
    let want = action_table_markdown();
    if std::env::var_os("UPDATE_OCSF_TABLE").is_some() {
        std::fs::write(path, &want).expect("write ACTIONS.md");
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "core/src/ocsf/ACTIONS.md is stale: run UPDATE_OCSF_TABLE=1 cargo test -p slack-logs-core ocsf"
    );
    assert!(want.contains("| `role_change_to_admin` | Account Change (3001) | Other (99) |"));
}

// ---------------------------------------------------------------------------------------------
// Property: any shape of entry maps to a valid event.

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!("")),
        "[A-Za-z0-9@._ -]{1,12}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!(["a", "b"])),
        Just(json!([1, {"x": 2}])),
    ]
}

fn slack_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "id",
            "name",
            "email",
            "team",
            "title",
            "filetype",
            "scopes",
            "scopes_bot",
            "timestamp",
            "type",
        ]),
        scalar(),
        0..6,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn audit_entry() -> impl Strategy<Value = Value> {
    let mut actions: Vec<String> = action_rows()
        .iter()
        .step_by(7)
        .map(|r| r.action.to_string())
        .collect();
    actions.extend(
        [
            "user_login",
            "file_downloaded",
            "user_channel_join",
            "app_installed",
            "role_change_to_owner",
            "pref.allow_calls",
            "anomaly",
            "nope",
        ]
        .map(String::from),
    );
    (
        prop::sample::select(actions),
        prop::option::of(slack_object()),
        prop::option::of((
            prop::sample::select(vec![
                "user",
                "channel",
                "file",
                "app",
                "workspace",
                "usergroup",
                "canvas",
                "role",
                "message",
                "odd",
            ]),
            slack_object(),
        )),
        (
            prop::option::of(prop_oneof![
                Just(json!("")),
                Just(json!("81.2.69.144")),
                Just(json!("::1")),
                Just(json!("1.23.45.678")),
                scalar()
            ]),
            prop::option::of(scalar()),
            prop::option::of(prop_oneof![Just(Value::Null), slack_object()]),
            prop::option::of(scalar()),
        ),
        prop::option::of(prop::collection::btree_map(
            prop::sample::select(vec![
                "reason",
                "new_scopes",
                "permissions",
                "target_user",
                "channel",
                "url_private",
                "action_timestamp",
                "previous_ip_address",
                "previous_ua",
            ]),
            prop_oneof![scalar(), slack_object()],
            0..4,
        )),
    )
        .prop_map(|(action, actor, entity, (ip, session, app, ua), details)| {
            let mut e = json!({"id": "p-1", "date_create": 1_700_000_000, "action": action});
            if let Some(user) = actor {
                e["actor"] = json!({"type": "user", "user": user});
            }
            if let Some((kind, obj)) = entity {
                e["entity"] = json!({"type": kind, kind: obj});
            }
            let mut ctx = serde_json::Map::new();
            for (k, v) in [
                ("ip_address", ip),
                ("session_id", session),
                ("app", app),
                ("ua", ua),
            ] {
                if let Some(v) = v {
                    ctx.insert(k.into(), v);
                }
            }
            e["context"] = Value::Object(ctx);
            if let Some(d) = details {
                e["details"] =
                    Value::Object(d.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            }
            e
        })
}

fn flat_entry(keys: Vec<&'static str>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(keys), scalar(), 0..9)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_audit_entry_maps_to_a_valid_event(e in audit_entry()) {
        let text = map_record("audit", "p-1", None, 1_700_000_000, 1, &e.to_string()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        prop_assert!(validate(&v).is_ok(), "{:#?}\n{e:#}\n{v:#}", validate(&v));
    }

    #[test]
    fn any_anomaly_entry_is_a_valid_detection_finding(e in audit_entry()) {
        let mut e = e;
        e["action"] = json!("anomaly");
        let text = map_record("audit", "p-1", None, 1_700_000_000, 1, &e.to_string()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        prop_assert!(validate(&v).is_ok(), "{:#?}\n{e:#}\n{v:#}", validate(&v));
        prop_assert_eq!(&v["class_uid"], 2004);
        prop_assert_eq!(&v["finding_info"]["uid"], "p-1");
        let first = v["finding_info"]["first_seen_time"].as_i64();
        let last = v["finding_info"]["last_seen_time"].as_i64();
        prop_assert!(first.is_some() && first <= last, "{v:#}");
    }

    #[test]
    fn any_access_or_integration_entry_maps_to_a_valid_event(
        access in flat_entry(vec!["user_id", "username", "ip", "country", "region", "isp", "user_agent", "count", "date_first", "date_last"]),
        integration in flat_entry(vec!["service_id", "service_type", "app_id", "app_type", "user_id", "user_name", "channel", "scope", "reason", "date"]),
        change in prop::sample::select(vec!["added", "removed", "enabled", "disabled", "expanded", "updated", "other"]),
    ) {
        let mut integration = integration;
        integration["change_type"] = json!(change);
        for (stream, e) in [("access", access), ("integration", integration)] {
            let text = map_record(stream, "p-2", Some("T1"), 1_700_000_000, 1, &e.to_string()).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(validate(&v).is_ok(), "{stream}: {:#?}\n{e:#}\n{v:#}", validate(&v));
        }
    }
}

/// The validator catches what it is there to catch.
#[test]
fn validator_rejects_broken_events() {
    let good = audit(
        "v-1",
        1683836275,
        serde_json::from_str(DOC_FILE_DOWNLOADED).unwrap(),
    );
    let created = audit(
        "v-2",
        1650415188,
        serde_json::from_str(DOC_CHANNEL_CREATED).unwrap(),
    );
    // What is broken, the event, and how.
    type Breakage = (&'static str, Value, fn(&mut Value));
    let mut broken: Vec<Breakage> = vec![
        ("type_uid", good.clone(), |v| v["type_uid"] = json!(600601)),
        ("activity out of range", good.clone(), |v| {
            v["activity_id"] = json!(17);
            v["type_uid"] = json!(600617);
        }),
        ("unknown class", good.clone(), |v| {
            v["class_uid"] = json!(9999)
        }),
        ("category", good.clone(), |v| v["category_uid"] = json!(3)),
        ("severity", good.clone(), |v| v["severity_id"] = json!(7)),
        ("severity caption", good.clone(), |v| {
            v["severity"] = json!("High")
        }),
        ("status", good.clone(), |v| v["status_id"] = json!(3)),
        ("required file.name", good.clone(), |v| {
            v["file"].as_object_mut().unwrap().remove("name");
        }),
        ("required src_endpoint", good.clone(), |v| {
            v.as_object_mut().unwrap().remove("src_endpoint");
        }),
        ("required metadata.product.vendor_name", good.clone(), |v| {
            v["metadata"]["product"]
                .as_object_mut()
                .unwrap()
                .remove("vendor_name");
        }),
        ("unknown attribute", good.clone(), |v| {
            v["slack_action"] = json!("x")
        }),
        ("unknown nested attribute", good.clone(), |v| {
            v["file"]["title"] = json!("x")
        }),
        ("invalid ip", good.clone(), |v| {
            v["src_endpoint"]["ip"] = json!("1.23.45.678")
        }),
        ("at least one", good.clone(), |v| {
            v["src_endpoint"] = json!({"port": 1})
        }),
        ("file type_id enum", good.clone(), |v| {
            v["file"]["type_id"] = json!(8)
        }),
        ("integer type", good.clone(), |v| {
            v["time"] = json!("1683836275000")
        }),
        ("email", good.clone(), |v| {
            v["actor"]["user"]["email_addr"] = json!("no-at-sign")
        }),
        ("null", good.clone(), |v| v["status"] = Value::Null),
        ("host profile", created.clone(), |v| {
            v["metadata"].as_object_mut().unwrap().remove("profiles");
        }),
        ("activity name", created.clone(), |v| {
            v["activity_name"] = json!("Delete")
        }),
        ("entity required", created, |v| {
            v.as_object_mut().unwrap().remove("entity");
        }),
    ];
    let finding = audit(
        "v-3",
        1673631531,
        serde_json::from_str(DOC_ANOMALY).unwrap(),
    );
    broken.extend::<Vec<(&str, Value, fn(&mut Value))>>(vec![
        ("finding_info required", finding.clone(), |v| {
            v.as_object_mut().unwrap().remove("finding_info");
        }),
        ("finding_info.title required", finding.clone(), |v| {
            v["finding_info"].as_object_mut().unwrap().remove("title");
        }),
        (
            "finding status from the global enum",
            finding.clone(),
            |v| {
                v["status_id"] = json!(1);
                v["status"] = json!("Success");
            },
        ),
        ("finding status out of its enum", finding.clone(), |v| {
            v["status_id"] = json!(5);
        }),
        ("finding has no src_endpoint", finding.clone(), |v| {
            v["src_endpoint"] = json!({"ip": "81.2.69.143"});
        }),
        ("empty evidence", finding.clone(), |v| {
            v["evidences"] = json!([{}]);
        }),
        ("analytic type_id", finding.clone(), |v| {
            v["finding_info"]["analytic"]["type_id"] = json!(12);
        }),
        (
            "finding actor needs the host profile",
            finding.clone(),
            |v| {
                v["metadata"].as_object_mut().unwrap().remove("profiles");
            },
        ),
        ("finding activity", finding, |v| {
            v["activity_id"] = json!(4);
            v["type_uid"] = json!(200404);
        }),
    ]);
    let mut status_new = audit(
        "v-4",
        1673631531,
        serde_json::from_str(DOC_ANOMALY).unwrap(),
    );
    status_new["status_id"] = json!(1);
    status_new["status"] = json!("New");
    assert_eq!(validate(&status_new), Ok(()), "a Finding's own status enum");
    for (what, mut v, break_it) in broken {
        break_it(&mut v);
        assert!(validate(&v).is_err(), "{what}: not caught");
    }
}
