use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::client::{enc, get, Reply};
use super::{config, start, NOW};
use crate::{
    EndForm, Fault, SimConfig, Simulator, BOT_TOKEN, EXPIRED_TOKEN, FREE_PLAN_TOKEN,
    NO_SCOPE_TOKEN, ORG_ADMIN_TOKEN, ORG_OWNER_TOKEN, REVOKED_TOKEN, WORKSPACE_ADMIN_TOKEN,
};

const OWNER: Option<&str> = Some(ORG_OWNER_TOKEN);

fn logs(sim: &Simulator, query: &str) -> Reply {
    get(sim, &format!("/audit/v1/logs?{query}"), OWNER)
}

fn next_cursor(v: &Value) -> Option<String> {
    v.get("response_metadata")
        .and_then(|m| m["next_cursor"].as_str())
        .filter(|c| !c.is_empty())
        .map(String::from)
}

/// Walks `/logs`, sending `first` on the first request and `each` plus the cursor on
/// the following ones. Returns the pages' entries.
fn walk(sim: &Simulator, first: &str, each: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut reply = logs(sim, first);
    loop {
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let v = reply.json();
        pages.push(v["entries"].as_array().expect("entries").clone());
        match next_cursor(&v) {
            Some(c) => reply = logs(sim, &format!("{each}cursor={}", enc(&c))),
            None => return pages,
        }
        assert!(pages.len() < 10_000, "runaway walk");
    }
}

fn ids(pages: &[Vec<Value>]) -> Vec<String> {
    pages
        .iter()
        .flatten()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn burst_across_a_page_edge_extends_the_page_and_nothing_is_lost() {
    let sim = start(SimConfig {
        audit_events: 40,
        history_start: NOW - 7200,
        history_end: NOW - 600,
        ..config()
    });
    let burst_at = NOW - 3000;
    let burst = sim.add_audit_burst(burst_at, 5);
    let oldest = NOW - 7200;
    let q = format!("oldest={oldest}&latest={NOW}&limit=2&");
    let pages = walk(&sim, &q, &q);

    let got = ids(&pages);
    let truth: Vec<String> = sim
        .audit_truth(oldest, NOW)
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        got, truth,
        "paging returns exactly the ground truth, in order"
    );
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "no duplicates"
    );
    assert_eq!(truth.len(), 45);

    let mut saw_long_page = false;
    for page in &pages[..pages.len() - 1] {
        assert!(page.len() >= 2);
        // Everything past `limit` shares the second of the limit-th entry.
        let edge = &page[1]["date_create"];
        assert!(page[2..].iter().all(|e| &e["date_create"] == edge));
        saw_long_page |= page.len() > 2;
    }
    assert!(
        saw_long_page,
        "the 5-event burst made a page longer than limit"
    );
    let burst_page = pages
        .iter()
        .find(|p| p.iter().any(|e| e["id"] == burst[0]))
        .expect("burst served");
    assert!(
        burst
            .iter()
            .all(|id| burst_page.iter().any(|e| e["id"] == *id)),
        "a burst never straddles pages"
    );
}

#[test]
fn a_cursor_without_oldest_pages_through_all_older_data() {
    let sim = start(SimConfig {
        audit_events: 60,
        ..config()
    });
    let oldest = NOW - 86_400;
    let pages = walk(&sim, &format!("oldest={oldest}&limit=10"), "limit=10&");
    let got = ids(&pages);
    let everything: Vec<String> = sim
        .audit_truth(i64::MIN, NOW)
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(got, everything, "the cursor does not remember oldest (Q3)");
    assert!(sim.audit_truth(oldest, NOW).len() < everything.len());

    // Repeating oldest stops where it should.
    let q = format!("oldest={oldest}&limit=10&");
    let bounded = ids(&walk(&sim, &q, &q));
    let want: Vec<String> = sim
        .audit_truth(oldest, NOW)
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(bounded, want);
}

#[test]
fn end_of_data_as_empty_string_or_absent() {
    let sim = start(config());
    let v = logs(&sim, "limit=9999").json();
    assert_eq!(v["response_metadata"]["next_cursor"], "");
    assert!(v.get("ok").is_none(), "no ok field on success (Q19)");
    assert_eq!(v["entries"].as_array().unwrap().len(), 500);

    let sim = start(SimConfig {
        audit_end_form: EndForm::Absent,
        audit_success_has_ok: true,
        ..config()
    });
    let v = logs(&sim, "limit=9999").json();
    assert!(v.get("response_metadata").is_none());
    assert_eq!(v["ok"], true);
    // A middle page still carries a cursor: padded base64.
    let v = logs(&sim, "limit=10").json();
    let c = next_cursor(&v).expect("cursor");
    assert_eq!(c.len() % 4, 0);
}

#[test]
fn default_limit_and_clamp_to_9999() {
    let sim = start(SimConfig {
        audit_events: 10_050,
        ..config()
    });
    let v = logs(&sim, "").json();
    assert!(v["entries"].as_array().unwrap().len() >= 100);
    let r = logs(&sim, "limit=20000&ignored_param=1&max_date_seen_so_far=3");
    let entries = r.json()["entries"].as_array().unwrap().clone();
    assert!(
        entries.len() >= 9999 && entries.len() < 10_050,
        "{}",
        entries.len()
    );
    assert!(entries[9998..]
        .iter()
        .all(|e| e["date_create"] == entries[9998]["date_create"]));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[test]
fn each_auth_error() {
    let sim = start(config());
    let cases: &[(Option<&str>, u16, &str)] = &[
        (None, 401, "missing_authentication"),
        (Some("xoxp-not-a-real-token"), 401, "invalid_authentication"),
        (Some(REVOKED_TOKEN), 401, "invalid_authentication"),
        (Some(EXPIRED_TOKEN), 401, "invalid_authentication"),
        (Some(BOT_TOKEN), 401, "invalid_authentication"),
        (Some(NO_SCOPE_TOKEN), 403, "user_not_authorized"),
        (Some(ORG_ADMIN_TOKEN), 403, "user_not_authorized"),
        (Some(WORKSPACE_ADMIN_TOKEN), 403, "team_not_authorized"),
        (Some(FREE_PLAN_TOKEN), 403, "feature_not_enabled"),
    ];
    for (token, status, code) in cases {
        let r = get(&sim, "/audit/v1/logs", *token);
        assert_eq!(
            (r.status, r.error().as_str()),
            (*status, *code),
            "token {token:?}"
        );
    }
    let r = super::client::send(
        &sim,
        "GET",
        "/audit/v1/logs",
        &[("Authorization", "Basic Zm9vOmJhcg==")],
        b"",
    );
    assert_eq!(
        (r.status, r.error().as_str()),
        (401, "missing_authentication")
    );
    // A token in the query string is not how the audit API authenticates.
    let r = get(
        &sim,
        &format!("/audit/v1/logs?token={ORG_OWNER_TOKEN}"),
        None,
    );
    assert_eq!(r.status, 401);
    // /schemas and /actions need no auth (Q20).
    assert_eq!(get(&sim, "/audit/v1/schemas", None).status, 200);
    assert_eq!(get(&sim, "/audit/v1/actions", None).status, 200);
    assert_eq!(get(&sim, "/audit/v1/nope", OWNER).error(), "bad_endpoint");
}

#[test]
fn parameter_validation() {
    let sim = start(config());
    let bad = |q: &str| {
        let r = logs(&sim, q);
        (r.status, r.error())
    };
    assert_eq!(bad("oldest=abc"), (400, "invalid_arguments".into()));
    assert_eq!(
        bad("oldest=1.566215192e%2B09"),
        (400, "invalid_arguments".into())
    );
    assert_eq!(bad("limit=ten"), (400, "invalid_arguments".into()));
    assert_eq!(
        bad(&format!("latest={}", NOW + 60)),
        (400, "invalid_range".into())
    );
    assert_eq!(bad("oldest=1500000000"), (400, "invalid_range".into()));
    assert_eq!(
        bad("action=user_login,not_an_action"),
        (400, "invalid_action".into())
    );
    let many = vec!["user_login"; 31].join(",");
    assert_eq!(
        bad(&format!("action={many}")),
        (400, "invalid_action".into())
    );
    assert_eq!(
        logs(&sim, &format!("latest={NOW}&oldest=1519862400")).status,
        200
    );
}

#[test]
fn filters_are_anded_and_actions_cover_every_generated_name() {
    let sim = start(SimConfig {
        audit_events: 3000,
        ..config()
    });
    let all = sim.audit_truth(i64::MIN, NOW);
    let logins = all.iter().filter(|t| t.action == "user_login").count();
    let v = logs(&sim, "action=user_login&limit=9999").json();
    assert_eq!(v["entries"].as_array().unwrap().len(), logins);
    let v = logs(&sim, "action=user_login,user_logout&limit=9999").json();
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] == "user_login" || e["action"] == "user_logout"));

    let page = logs(&sim, "limit=50").json();
    let e = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity"]["type"] == "file")
        .expect("a file event")
        .clone();
    let actor = e["actor"]["user"]["id"].as_str().unwrap();
    let entity = e["entity"]["file"]["id"].as_str().unwrap();
    let v = logs(&sim, &format!("actor={actor}&limit=9999")).json();
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["actor"]["user"]["id"] == actor));
    let v = logs(&sim, &format!("actor={actor}&entity={entity}&limit=9999")).json();
    let both = v["entries"].as_array().unwrap();
    assert!(both.iter().any(|x| x["id"] == e["id"]));
    assert!(both
        .iter()
        .all(|x| x["actor"]["user"]["id"] == actor && x["entity"]["file"]["id"] == entity));
    assert_eq!(
        logs(&sim, "actor=WNOBODY").json()["entries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let actions = get(&sim, "/audit/v1/actions", None).json();
    let known: HashSet<&str> = actions["actions"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|l| l.as_array().unwrap())
        .filter_map(|a| a.as_str())
        .collect();
    assert!(all.iter().all(|t| known.contains(t.action.as_str())));
    let schemas = get(&sim, "/audit/v1/schemas", None).json();
    assert!(schemas["schemas"].as_array().unwrap().len() >= 15);
}

#[test]
fn entries_are_realistic() {
    let sim = start(SimConfig {
        audit_events: 4000,
        ..config()
    });
    let v = logs(&sim, "limit=9999").json();
    let entries = v["entries"].as_array().unwrap();
    let has = |f: &dyn Fn(&Value) -> bool| entries.iter().any(f);
    assert!(has(&|e| e["actor"]["user"]["id"] == "USLACKSECURITY"));
    assert!(has(&|e| e["actor"]["user"]["id"] == "USLACKUSER"));
    assert!(has(&|e| e["context"]["session_id"].is_string()));
    assert!(has(&|e| e["context"]["session_id"].is_i64()));
    assert!(has(
        &|e| e["context"]["session_id"].is_null() && e["context"].get("session_id").is_some()
    ));
    assert!(has(&|e| e["context"]["ip_address"] == ""));
    assert!(has(&|e| e["context"]["app"].is_object()));
    assert!(has(
        &|e| e["context"]["app"].is_null() && e["context"].get("app").is_some()
    ));
    assert!(has(&|e| e["context"].get("app").is_none()));
    assert!(has(&|e| e["details"]["reason"].is_array()
        && e["details"]["action_timestamp"].as_i64().unwrap_or(0)
            > 999_999_999_999));
    assert!(has(&|e| e["id"]
        .as_str()
        .unwrap()
        .chars()
        .any(|c| ('g'..='z').contains(&c))));
    assert!(
        has(&|e| e.get("origin").is_some() || e["context"].get("device").is_some()),
        "unknown future keys"
    );
    let types: HashSet<&str> = entries
        .iter()
        .map(|e| e["entity"]["type"].as_str().unwrap())
        .collect();
    for t in [
        "user",
        "channel",
        "file",
        "app",
        "workspace",
        "enterprise",
        "message",
        "workflow",
        "usergroup",
        "barrier",
        "role",
    ] {
        assert!(types.contains(t), "entity type {t} missing: {types:?}");
    }
    // Same-second bursts exist in the generated history.
    let secs: Vec<i64> = entries
        .iter()
        .map(|e| e["date_create"].as_i64().unwrap())
        .collect();
    assert!(secs.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]));
    assert!(secs.windows(2).all(|w| w[0] >= w[1]), "newest first");
}

#[test]
fn invalid_cursor_after_expiry_garbage_or_ttl() {
    let sim = start(config());
    let c = next_cursor(&logs(&sim, "limit=5").json()).unwrap();
    assert_eq!(
        logs(&sim, &format!("limit=5&cursor={}", enc(&c))).status,
        200
    );
    sim.expire_cursors();
    let r = logs(&sim, &format!("limit=5&cursor={}", enc(&c)));
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_cursor"));
    let fresh = next_cursor(&logs(&sim, "limit=5").json()).unwrap();
    assert_eq!(
        logs(&sim, &format!("limit=5&cursor={}", enc(&fresh))).status,
        200,
        "new cursors work again"
    );
    assert_eq!(logs(&sim, "cursor=not%20base64!").error(), "invalid_cursor");
    assert_eq!(
        logs(&sim, &format!("cursor={}", enc("eyJmb28iOjF9"))).error(),
        "invalid_cursor"
    );

    let sim = start(SimConfig {
        cursor_ttl: Duration::from_millis(50),
        ..config()
    });
    let c = next_cursor(&logs(&sim, "limit=5").json()).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(
        logs(&sim, &format!("limit=5&cursor={}", enc(&c))).error(),
        "invalid_cursor"
    );
}

#[test]
fn injected_429_and_rate_limit() {
    let sim = start(config());
    sim.fail_request(
        1,
        Fault::RateLimited {
            retry_after: Some("2".into()),
        },
    );
    let r = logs(&sim, "limit=5");
    assert_eq!(
        (r.status, r.header("retry-after"), r.error().as_str()),
        (429, Some("2"), "rate_limited")
    );
    assert_eq!(logs(&sim, "limit=5").status, 200);

    sim.fail_request(2, Fault::InvalidCursor);
    assert_eq!(logs(&sim, "limit=5").status, 200);
    assert_eq!(logs(&sim, "limit=5").error(), "invalid_cursor");

    let sim = start(SimConfig {
        rate_limit: true,
        tier3_burst: 2,
        ..config()
    });
    assert_eq!(logs(&sim, "limit=1").status, 200);
    assert_eq!(logs(&sim, "limit=1").status, 200);
    let r = logs(&sim, "limit=1");
    assert_eq!((r.status, r.error().as_str()), (429, "rate_limited"));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait));
}

#[test]
fn late_events_appear_after_their_delay() {
    let sim = start(config());
    let at = NOW - 5000;
    let late = sim.add_late_audit_events(3, at, Duration::from_millis(150));
    let visible = |sim: &Simulator| {
        sim.audit_truth(at, at)
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>()
    };
    assert!(late.iter().all(|id| !visible(&sim).contains(id)));
    let served = ids(&[
        logs(&sim, &format!("oldest={at}&latest={at}")).json()["entries"]
            .as_array()
            .unwrap()
            .clone(),
    ]);
    assert!(late.iter().all(|id| !served.contains(id)));
    std::thread::sleep(Duration::from_millis(200));
    assert!(late.iter().all(|id| visible(&sim).contains(id)));
    let served = ids(&[
        logs(&sim, &format!("oldest={at}&latest={at}")).json()["entries"]
            .as_array()
            .unwrap()
            .clone(),
    ]);
    assert!(late.iter().all(|id| served.contains(id)));
}

#[test]
fn same_seed_same_data_and_ids() {
    let a = start(config());
    let b = start(config());
    let c = start(SimConfig {
        seed: 8,
        ..config()
    });
    // Same entries, byte for byte (cursors differ only by their issue time).
    let entries = |sim: &Simulator| logs(sim, "limit=200").json()["entries"].to_string();
    assert!(
        entries(&a) == entries(&b),
        "same seed, same rendered entries"
    );
    assert_eq!(a.audit_truth(i64::MIN, NOW), b.audit_truth(i64::MIN, NOW));
    assert_eq!(a.access_truth(), b.access_truth());
    assert_eq!(a.integration_truth(), b.integration_truth());
    assert_eq!(
        a.add_audit_events(10, NOW - 100, NOW),
        b.add_audit_events(10, NOW - 100, NOW)
    );
    assert_ne!(
        a.audit_truth(i64::MIN, NOW)[0].id,
        c.audit_truth(i64::MIN, NOW)[0].id
    );
}

#[test]
fn short_pages_still_walk_everything() {
    let sim = start(SimConfig {
        short_pages: true,
        ..config()
    });
    let q = "limit=20&";
    let pages = walk(&sim, q, q);
    assert_eq!(
        ids(&pages),
        sim.audit_truth(i64::MIN, NOW)
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>()
    );
    assert!(
        pages[..pages.len() - 1].iter().any(|p| p.len() < 20),
        "some page is short although more remain"
    );
}
