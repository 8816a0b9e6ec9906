use std::collections::HashSet;

use serde_json::Value;

use super::client::{enc, get, post_form, Reply};
use super::{config, start, NOW};
use crate::{
    AccessSortKey, EndForm, Fault, OrgWithoutTeamId, SimConfig, Simulator, BOT_TOKEN,
    EXPIRED_TOKEN, FREE_PLAN_TOKEN, NO_SCOPE_TOKEN, ORG_OWNER_TOKEN, REVOKED_TOKEN,
    UNGRANTED_WORKSPACE_ID, WORKSPACE_ADMIN_TOKEN, WORKSPACE_IDS,
};

fn access(sim: &Simulator, query: &str) -> Reply {
    get(
        sim,
        &format!("/api/team.accessLogs?{query}"),
        Some(ORG_OWNER_TOKEN),
    )
}

fn key(v: &Value) -> (String, String, String, i64) {
    (
        v["user_id"].as_str().unwrap().into(),
        v["ip"].as_str().unwrap().into(),
        v["user_agent"].as_str().unwrap().into(),
        v["date_first"].as_i64().unwrap(),
    )
}

fn truth_keys(sim: &Simulator) -> Vec<(String, String, String, i64)> {
    sim.access_truth()
        .into_iter()
        .map(|r| (r.user_id, r.ip, r.user_agent, r.date_first))
        .collect()
}

#[test]
fn classic_paging_and_caps() {
    let sim = start(config());
    let v = access(&sim, "").json();
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["paging"],
        serde_json::json!({"count": 100, "total": 300, "page": 1, "pages": 3})
    );
    assert_eq!(v["logins"].as_array().unwrap().len(), 100);
    assert!(v.get("response_metadata").is_none());

    let mut rows = Vec::new();
    for page in 1..=3 {
        let v = access(&sim, &format!("count=120&page={page}&before=now")).json();
        assert_eq!(
            v["paging"]["count"], 120,
            "paging.count is the page size, not the item count (Q27)"
        );
        rows.extend(v["logins"].as_array().unwrap().iter().map(key));
    }
    assert_eq!(rows, truth_keys(&sim));
    assert_eq!(
        access(&sim, "count=120&page=4").json()["logins"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    assert_eq!(access(&sim, "count=1001").error(), "over_pagination_limit");
    assert_eq!(access(&sim, "page=101").error(), "over_pagination_limit");
    assert_eq!(access(&sim, "count=1000&page=100").status, 200);
    assert_eq!(access(&sim, "count=lots").error(), "invalid_arguments");

    let first = &access(&sim, "count=1").json()["logins"][0];
    assert!(first["isp"].is_null() || first["isp"].is_string());
}

#[test]
fn before_is_inclusive_on_the_sort_key() {
    let sim = start(config());
    let truth = sim.access_truth();
    let pivot = truth[50].date_first;
    let v = access(&sim, &format!("before={pivot}&count=1000")).json();
    let got = v["logins"].as_array().unwrap();
    assert!(got
        .iter()
        .all(|r| r["date_first"].as_i64().unwrap() <= pivot));
    assert_eq!(got[0]["date_first"].as_i64().unwrap(), pivot);
    assert_eq!(
        v["paging"]["total"].as_u64().unwrap() as usize,
        truth.iter().filter(|r| r.date_first <= pivot).count()
    );
}

#[test]
fn cursor_mode_walks_everything() {
    let sim = start(config());
    let mut rows = Vec::new();
    let mut reply = access(&sim, &format!("limit=70&before={NOW}"));
    loop {
        let v = reply.json();
        assert!(v.get("paging").is_none());
        rows.extend(v["logins"].as_array().unwrap().iter().map(key));
        let c = v["response_metadata"]["next_cursor"]
            .as_str()
            .expect("next_cursor present")
            .to_string();
        if c.is_empty() {
            break;
        }
        reply = access(&sim, &format!("limit=70&before={NOW}&cursor={}", enc(&c)));
    }
    assert_eq!(rows, truth_keys(&sim));
    assert_eq!(rows.iter().collect::<HashSet<_>>().len(), 300);

    let short = start(SimConfig {
        short_pages: true,
        ..config()
    });
    let first = access(&short, "limit=70").json();
    let c = first["response_metadata"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let second = access(&short, &format!("limit=70&cursor={}", enc(&c))).json();
    assert_eq!(first["logins"].as_array().unwrap().len(), 70);
    assert_eq!(
        second["logins"].as_array().unwrap().len(),
        35,
        "a short page with more to come"
    );
    assert_ne!(second["response_metadata"]["next_cursor"], "");

    assert_eq!(access(&sim, "limit=1000").error(), "invalid_limit");
    assert_eq!(access(&sim, "limit=-1").error(), "invalid_limit");
    assert_eq!(access(&sim, "limit=abc").error(), "invalid_limit");
    assert_eq!(access(&sim, "limit=999").status, 200);
    assert_eq!(
        access(&sim, "limit=5&cursor=garbage").error(),
        "invalid_cursor"
    );

    let c = access(&sim, "limit=5").json()["response_metadata"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    sim.expire_cursors();
    assert_eq!(
        access(&sim, &format!("limit=5&cursor={}", enc(&c))).error(),
        "invalid_cursor"
    );

    let sim = start(SimConfig {
        web_end_form: EndForm::Absent,
        access_cursor_paging: true,
        ..config()
    });
    let v = access(&sim, "limit=999").json();
    assert!(v.get("response_metadata").is_none());
    assert_eq!(v["paging"]["total"], 300);
}

#[test]
fn auth_and_plan_errors() {
    let sim = start(config());
    let cases: &[(Option<&str>, &str)] = &[
        (None, "not_authed"),
        (Some("xoxp-unknown"), "invalid_auth"),
        (Some(REVOKED_TOKEN), "token_revoked"),
        (Some(EXPIRED_TOKEN), "token_expired"),
        (Some(BOT_TOKEN), "not_allowed_token_type"),
        (Some(NO_SCOPE_TOKEN), "missing_scope"),
        (Some(FREE_PLAN_TOKEN), "paid_only"),
    ];
    for (token, code) in cases {
        let r = get(&sim, "/api/team.accessLogs", *token);
        assert_eq!((r.status, r.error().as_str()), (200, *code), "{token:?}");
    }
    let v = get(&sim, "/api/team.accessLogs", Some(NO_SCOPE_TOKEN)).json();
    assert_eq!(v["needed"], "admin");
    assert_eq!(v["provided"], "channels:read,users:read");

    // Token as a POST form field, and the workspace admin token.
    let r = post_form(
        &sim,
        "/api/team.accessLogs",
        &format!("token={ORG_OWNER_TOKEN}&count=10"),
    );
    assert_eq!(r.json()["logins"].as_array().unwrap().len(), 10);
    let r = get(
        &sim,
        "/api/team.accessLogs?count=3",
        Some(WORKSPACE_ADMIN_TOKEN),
    );
    assert_eq!(r.json()["ok"], true);
    assert_eq!(
        get(&sim, "/api/team.nothing", Some(ORG_OWNER_TOKEN)).error(),
        "unknown_method"
    );

    // Org token and team_id (Q31).
    assert_eq!(
        access(&sim, &format!("team_id={}", WORKSPACE_IDS[1])).json()["ok"],
        true
    );
    assert_eq!(
        access(&sim, &format!("team_id={UNGRANTED_WORKSPACE_ID}")).error(),
        "team_access_not_granted"
    );
    assert_eq!(
        access(&sim, "team_id=T0FOREIGN1").error(),
        "invalid_team_id"
    );
    let strict = start(SimConfig {
        org_without_team_id: OrgWithoutTeamId::MissingArgument,
        reject_query_token: true,
        ..config()
    });
    assert_eq!(access(&strict, "").error(), "missing_argument");
    assert_eq!(
        access(&strict, &format!("team_id={}", WORKSPACE_IDS[0])).json()["ok"],
        true
    );
    assert_eq!(
        get(
            &strict,
            &format!("/api/team.accessLogs?token={ORG_OWNER_TOKEN}"),
            None
        )
        .error(),
        "invalid_auth"
    );
}

#[test]
fn web_429_fatal_error_and_rate_limit() {
    let sim = start(config());
    sim.fail_request(
        1,
        Fault::RateLimited {
            retry_after: Some("3".into()),
        },
    );
    let r = access(&sim, "");
    assert_eq!(
        (r.status, r.header("retry-after"), r.error().as_str()),
        (429, Some("3"), "ratelimited")
    );
    sim.fail_request(1, Fault::FatalError);
    let r = access(&sim, "");
    assert_eq!((r.status, r.error().as_str()), (500, "fatal_error"));

    let sim = start(SimConfig {
        access_classic_fatal_from_page: Some(2),
        ..config()
    });
    assert_eq!(access(&sim, "page=1").status, 200);
    let r = access(&sim, "page=2");
    assert_eq!((r.status, r.error().as_str()), (500, "fatal_error"));
    assert_eq!(
        access(&sim, "limit=200").status,
        200,
        "cursor mode still works"
    );

    let sim = start(SimConfig {
        rate_limit: true,
        tier2_burst: 1,
        ..config()
    });
    assert_eq!(access(&sim, "").status, 200);
    let r = access(&sim, "");
    assert_eq!((r.status, r.error().as_str()), (429, "ratelimited"));
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Another method has its own bucket.
    assert_eq!(
        get(&sim, "/api/team.integrationLogs", Some(ORG_OWNER_TOKEN)).status,
        200
    );
}

#[test]
fn touched_rows_change_and_move_with_date_last_sort() {
    let sim = start(SimConfig {
        access_sort_key: AccessSortKey::DateLast,
        ..config()
    });
    let before: Vec<_> = sim.access_truth();
    sim.touch_access_rows(4, NOW - 5);
    let after = sim.access_truth();
    assert_eq!(after.len(), before.len());
    let top = &after[..4];
    assert!(top.iter().all(|r| r.date_last == NOW - 5));
    for r in top {
        let old = before
            .iter()
            .find(|b| {
                b.user_id == r.user_id
                    && b.ip == r.ip
                    && b.user_agent == r.user_agent
                    && b.date_first == r.date_first
            })
            .unwrap();
        assert_eq!(r.count, old.count + 1);
    }
    let v = access(&sim, "count=4").json();
    assert!(v["logins"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["date_last"] == NOW - 5));

    sim.add_access_rows(10, NOW - 100, NOW - 50);
    assert_eq!(sim.access_truth().len(), 310);
    assert_eq!(access(&sim, "").json()["paging"]["total"], 310);
}

fn logins(v: &Value) -> Vec<(String, String, String, i64)> {
    v["logins"].as_array().unwrap().iter().map(key).collect()
}

fn next_cursor(v: &Value) -> String {
    v["response_metadata"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn before_can_filter_on_the_field_other_than_the_sort_key() {
    for (sort, filter) in [
        (AccessSortKey::DateFirst, AccessSortKey::DateLast),
        (AccessSortKey::DateLast, AccessSortKey::DateFirst),
    ] {
        let sim = start(SimConfig {
            access_sort_key: sort,
            access_filter_key: Some(filter),
            ..config()
        });
        let truth = sim.access_truth();
        let pivot = truth[120].date_last.min(truth[120].date_first + 3_000);
        let field = |r: &crate::AccessRowTruth, k: AccessSortKey| match k {
            AccessSortKey::DateFirst => r.date_first,
            AccessSortKey::DateLast => r.date_last,
        };
        let expected: Vec<_> = truth
            .iter()
            .filter(|r| field(r, filter) <= pivot)
            .map(|r| {
                (
                    r.user_id.clone(),
                    r.ip.clone(),
                    r.user_agent.clone(),
                    r.date_first,
                )
            })
            .collect();
        assert!(
            expected.len() > 10 && expected.len() < truth.len(),
            "{sort:?}: a real filter"
        );
        let v = access(&sim, &format!("before={pivot}&count=1000")).json();
        assert_eq!(logins(&v), expected, "{sort:?} sorted, {filter:?} filtered");
        assert_eq!(
            v["paging"]["total"].as_u64().unwrap() as usize,
            expected.len()
        );
        // Cursor pages list the same rows.
        let mut rows = Vec::new();
        let mut v = access(&sim, &format!("before={pivot}&limit=33")).json();
        loop {
            rows.extend(logins(&v));
            let c = next_cursor(&v);
            if c.is_empty() {
                break;
            }
            v = access(&sim, &format!("before={pivot}&limit=33&cursor={}", enc(&c))).json();
        }
        assert_eq!(rows, expected);
    }
}

/// With date_last filtering, rows used again leave a listing whose `before` is in the past. A
/// keyset cursor still continues after the last row served; an offset cursor continues at the
/// same position number, so the rows that moved up into the page already served are skipped.
#[test]
fn offset_cursors_shift_when_rows_leave_the_listing_and_keyset_cursors_do_not() {
    for offset in [false, true] {
        let sim = start(SimConfig {
            access_sort_key: AccessSortKey::DateLast,
            access_offset_cursor: offset,
            access_rows: 40,
            ..config()
        });
        let before = NOW - 1;
        let first = access(&sim, &format!("before={before}&limit=10")).json();
        let served = logins(&first);
        let c = next_cursor(&first);
        // Every row is used again but the last ten: 30 rows leave the listing.
        let truth = sim.access_truth();
        let untouched: Vec<_> = truth[30..]
            .iter()
            .map(|r| {
                (
                    r.user_id.clone(),
                    r.ip.clone(),
                    r.user_agent.clone(),
                    r.date_first,
                )
            })
            .collect();
        let mut n = 0;
        while sim
            .access_truth()
            .iter()
            .filter(|r| r.date_last <= before)
            .count()
            > 10
        {
            sim.touch_access_rows(1, NOW);
            n += 1;
            assert!(n < 10_000);
        }
        let left: Vec<_> = sim
            .access_truth()
            .into_iter()
            .filter(|r| r.date_last <= before)
            .map(|r| (r.user_id, r.ip, r.user_agent, r.date_first))
            .collect();
        let second = access(
            &sim,
            &format!("before={before}&limit=10&cursor={}", enc(&c)),
        )
        .json();
        if offset {
            assert!(
                logins(&second).is_empty(),
                "offset 10 of a listing of 10: past its end"
            );
            assert_eq!(next_cursor(&second), "");
        } else {
            let after: Vec<_> = left
                .iter()
                .filter(|r| !served.contains(r))
                .cloned()
                .collect();
            assert_eq!(logins(&second), after, "the rows after the last one served");
        }
        assert!(untouched.len() == 10 && !left.is_empty());
    }
}

#[test]
fn rows_touched_between_requests_and_the_history_of_states() {
    let sim = start(SimConfig {
        access_touch_every: 2,
        access_touch_rows: 3,
        access_rows: 50,
        ..config()
    });
    assert_eq!(sim.access_history().len(), 50);
    for _ in 0..4 {
        assert_eq!(access(&sim, "limit=5").status, 200);
    }
    let history = sim.access_history();
    assert_eq!(
        history.len(),
        50 + 2 * 3,
        "two of four requests touched three rows each"
    );
    let touched = &history[50..];
    assert!(touched.iter().all(|r| r.date_last == NOW));
    assert_eq!(
        sim.access_truth()
            .iter()
            .filter(|r| r.date_last == NOW)
            .count(),
        touched
            .iter()
            .map(|r| (&r.user_id, &r.ip, &r.user_agent))
            .collect::<HashSet<_>>()
            .len()
    );

    // Activity recorded late never moves date_last back.
    let r = sim.access_truth()[0].clone();
    sim.touch_access_rows(50, r.date_last - 10_000);
    let again = sim.access_truth();
    let same = again
        .iter()
        .find(|x| {
            x.user_id == r.user_id
                && x.ip == r.ip
                && x.user_agent == r.user_agent
                && x.date_first == r.date_first
        })
        .unwrap();
    assert_eq!(same.date_last, r.date_last);
    assert_eq!(same.count, r.count + 1);
}

#[test]
fn a_big_tie_is_distinct_combinations_at_one_second() {
    let sim = start(SimConfig {
        access_rows: 10,
        ..config()
    });
    sim.add_access_tie(3_000, NOW - 500, NOW - 500);
    let truth = sim.access_truth();
    let tie: Vec<_> = truth.iter().filter(|r| r.date_first == NOW - 500).collect();
    assert_eq!(tie.len(), 3_000);
    assert!(tie.iter().all(|r| r.date_last == NOW - 500 && r.count == 1));
    let combos: HashSet<_> = tie
        .iter()
        .map(|r| (&r.user_id, &r.ip, &r.user_agent))
        .collect();
    assert_eq!(
        combos.len(),
        3_000,
        "no two rows of one combination and second"
    );
    let v = access(&sim, &format!("before={}&count=1000&page=3", NOW - 500)).json();
    assert_eq!(
        v["paging"]["total"], 3_010,
        "the tie and the ten older rows"
    );
    assert_eq!(v["logins"].as_array().unwrap().len(), 1_000);
    assert!(v["logins"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["date_first"] == NOW - 500));
}
