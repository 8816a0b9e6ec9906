use serde_json::Value;

use super::client::{get, send, Reply};
use super::{config, start, NOW};
use crate::{
    IntegrationPagingCount, SimConfig, Simulator, BOT_TOKEN, FREE_PLAN_TOKEN, NO_SCOPE_TOKEN,
    ORG_OWNER_TOKEN, UNGRANTED_WORKSPACE_ID,
};

fn integration(sim: &Simulator, query: &str) -> Reply {
    get(
        sim,
        &format!("/api/team.integrationLogs?{query}"),
        Some(ORG_OWNER_TOKEN),
    )
}

#[test]
fn mixed_types_and_polymorphic_entries() {
    let sim = start(SimConfig {
        integration_entries: 400,
        ..config()
    });
    let truth = sim.integration_truth();
    let has = |f: &dyn Fn(&Value) -> bool| truth.iter().any(f);
    assert!(has(&|e| e["service_id"].is_i64()));
    assert!(has(&|e| e["service_id"].is_string()));
    assert!(truth.iter().all(|e| e["date"].is_string()));
    assert!(has(&|e| e["rss_feed"] == true
        && e["rss_feed_title"].is_string()
        && e["rss_feed_url"].is_string()
        && e["rss_feed_change_type"].is_string()));
    assert!(has(&|e| e["change_type"] == "expanded"));
    assert!(truth
        .iter()
        .filter(|e| e["change_type"] == "disabled")
        .all(|e| e["reason"].is_string()));
    assert!(truth
        .iter()
        .filter(|e| e["change_type"] != "disabled")
        .all(|e| e.get("reason").is_none()));
    assert!(has(
        &|e| e.get("app_id").is_some() && e.get("service_id").is_none()
    ));
    let dates: Vec<i64> = truth
        .iter()
        .map(|e| e["date"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Classic walk returns exactly the truth; paging.count is the number returned.
    let mut got = Vec::new();
    for page in 1..=3 {
        let v = integration(&sim, &format!("count=150&page={page}")).json();
        assert_eq!(v["paging"]["pages"], 3);
        assert_eq!(
            v["paging"]["count"].as_u64().unwrap() as usize,
            v["logs"].as_array().unwrap().len()
        );
        got.extend(v["logs"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(got, truth);
    assert_eq!(
        integration(&sim, "count=1001").error(),
        "over_pagination_limit"
    );

    let sim = start(SimConfig {
        integration_paging_count: IntegrationPagingCount::PageSize,
        ..config()
    });
    assert_eq!(
        integration(&sim, "count=1000").json()["paging"]["count"],
        1000
    );
}

#[test]
fn filters_and_errors() {
    let sim = start(config());
    let v = integration(&sim, "change_type=disabled&count=1000").json();
    let logs = v["logs"].as_array().unwrap();
    assert!(!logs.is_empty() && logs.iter().all(|e| e["change_type"] == "disabled"));
    assert_eq!(
        integration(&sim, "change_type=expanded").error(),
        "invalid_arguments"
    );

    let truth = sim.integration_truth();
    let app = truth.iter().find_map(|e| e["app_id"].as_str()).unwrap();
    let v = integration(&sim, &format!("app_id={app}&count=1000")).json();
    assert!(v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["app_id"] == app));
    let svc = truth.iter().find(|e| e["service_id"].is_i64()).unwrap()["service_id"]
        .as_i64()
        .unwrap();
    let v = integration(&sim, &format!("service_id={svc}&count=1000")).json();
    assert!(v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["service_id"].to_string().trim_matches('"') == svc.to_string()));
    let user = truth[0]["user_id"].as_str().unwrap();
    let v = integration(&sim, &format!("user={user}&count=1000")).json();
    assert!(v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["user_id"] == user));

    assert_eq!(
        get(&sim, "/api/team.integrationLogs", Some(BOT_TOKEN)).error(),
        "not_allowed_token_type"
    );
    assert_eq!(
        get(&sim, "/api/team.integrationLogs", Some(NO_SCOPE_TOKEN)).error(),
        "missing_scope"
    );
    assert_eq!(
        get(&sim, "/api/team.integrationLogs", Some(FREE_PLAN_TOKEN)).json()["ok"],
        true,
        "no paid_only by default"
    );
    assert_eq!(
        integration(&sim, &format!("team_id={UNGRANTED_WORKSPACE_ID}")).error(),
        "invalid_auth"
    );
    let auth = format!("Bearer {ORG_OWNER_TOKEN}");
    let r = send(
        &sim,
        "POST",
        "/api/team.integrationLogs",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        b"{\"count\":5}",
    );
    assert_eq!(r.error(), "invalid_post_type");

    sim.add_integration_entries(5, NOW - 10, NOW - 1);
    assert_eq!(integration(&sim, "").json()["paging"]["total"], 125);
}

#[test]
fn identical_copies_are_served_side_by_side() {
    let plain = start(SimConfig {
        integration_entries: 200,
        ..config()
    });
    let sim = start(SimConfig {
        integration_entries: 200,
        integration_identical_percent: 30,
        ..config()
    });
    let truth = sim.integration_truth();
    // The same entries as without copies (the copies come from a stream of their own), plus
    // byte-identical copies right after them.
    let mut distinct = truth.clone();
    distinct.dedup();
    assert_eq!(distinct, plain.integration_truth());
    let copies = truth.len() - distinct.len();
    assert!((30..=130).contains(&copies), "{copies} copies");
    assert!(
        truth.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]),
        "some come twice over"
    );
    // Served as they are: each copy is a log entry of its own.
    let v = integration(&sim, "count=1000").json();
    assert_eq!(v["logs"].as_array().unwrap(), &truth);
    assert_eq!(v["paging"]["total"].as_u64(), Some(truth.len() as u64));
    sim.add_integration_entries(50, NOW - 10, NOW - 1);
    assert!(sim.integration_truth().len() >= truth.len() + 50);
}
