//! The built component in the host against the simulator: the integration stream end to end.

mod common;

use std::collections::BTreeSet;

use common::*;
use slack_sim::{SimConfig, Simulator};

/// Record ids the collector must produce for the simulator's entries, for one workspace (each
/// identical copy its own).
fn expected(sim: &Simulator, team: Option<&str>, from: i64) -> BTreeSet<String> {
    let entries: Vec<String> = sim
        .integration_truth()
        .iter()
        .map(|e| e.to_string())
        .collect();
    slack_logs_core::integration::listing_ids(entries.iter().map(String::as_str), team)
        .expect("simulator entries parse")
        .into_iter()
        .filter(|(date, _)| *date >= from)
        .map(|(_, id)| id)
        .collect()
}

#[test]
fn mixed_entries_over_two_passes_match_ground_truth() {
    let now = now();
    let sim = Simulator::start(SimConfig {
        seed: 21,
        integration_entries: 90,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new("integration");
    let settings = integration_settings(&sim, start);

    run_ok(&mut host(&dir, &settings));
    let first = delivered_ids(&dir.path("out.ndjson"));
    assert_eq!(first.len(), set(&first).len(), "no record repeated");
    assert_eq!(set(&first), expected(&sim, None, start));
    // The simulator mixes integer and string service ids and sends `date` as a string; the
    // records keep the entries as sent.
    let text = std::fs::read_to_string(dir.path("out.ndjson")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.iter().any(|r| r["event"]["service_id"].is_number()));
    assert!(records.iter().any(|r| r["event"]["service_id"].is_string()));
    assert!(records
        .iter()
        .all(|r| r["event"]["date"].is_string() && r["stream"] == "integration"));
    assert!(records.iter().any(|r| r["event"]["rss_feed"] == true));

    sim.add_integration_entries(12, now - 60, now);
    std::fs::remove_file(dir.path("out.ndjson")).unwrap();
    run_ok(&mut host(&dir, &settings));
    let second = set(&delivered_ids(&dir.path("out.ndjson")));
    let all = expected(&sim, None, start);
    let new: BTreeSet<String> = all.difference(&set(&first)).cloned().collect();
    assert_eq!(new.len(), 12);
    assert_eq!(second, new, "the second pass delivers only the new entries");
}

/// Slack can log byte-identical entries (an app re-added twice in one second by a script): each
/// is a record, with an id of its own, also when a page boundary falls between copies and when
/// more copies arrive between passes. (Before, identical entries collapsed into one record.)
#[test]
fn identical_entries_are_each_a_record() {
    let now = now();
    let sim = Simulator::start(SimConfig {
        seed: 23,
        integration_entries: 60,
        integration_identical_percent: 40,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let truth = sim.integration_truth();
    let copies = truth.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        copies >= 10,
        "the simulator made identical entries ({copies})"
    );
    let dir = Scratch::new("integration-identical");
    // 7 entries a page: with this many copies, page boundaries fall between some of them.
    let settings = integration_settings(&sim, start);

    run_ok(&mut host(&dir, &settings));
    let first = delivered_ids(&dir.path("out.ndjson"));
    assert_eq!(
        first.len(),
        truth.len(),
        "one record per entry, copies included"
    );
    assert_eq!(
        first.len(),
        set(&first).len(),
        "each copy has an id of its own"
    );
    assert_eq!(set(&first), expected(&sim, None, start));
    // Each record still carries the entry exactly as Slack sent it.
    let text = std::fs::read_to_string(dir.path("out.ndjson")).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect();
    let mut sent = truth.clone();
    sent.sort_by_key(|e| e.to_string());
    let mut got = events;
    got.sort_by_key(|e| e.to_string());
    assert_eq!(got, sent);

    // New entries, copies among them, between passes: exactly those are delivered.
    sim.add_integration_entries(15, now - 60, now);
    run_ok(&mut host(&dir, &settings));
    run_ok(&mut host(&dir, &settings));
    let all = delivered_ids(&dir.path("out.ndjson"));
    assert_eq!(
        all.len(),
        sim.integration_truth().len(),
        "nothing lost, nothing repeated"
    );
    assert_eq!(set(&all), expected(&sim, None, start));
}

#[test]
fn org_token_collects_granted_workspaces_and_reports_the_refused_one() {
    let sim = Simulator::start(SimConfig {
        seed: 5,
        integration_entries: 30,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new("integration-teams");
    let mut settings = integration_settings(&sim, start);
    settings.push(("team_ids", slack_sim::WORKSPACE_IDS.join(",")));
    let out = host(&dir, &settings)
        .arg("run")
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "one workspace failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(slack_sim::UNGRANTED_WORKSPACE_ID) && stderr.contains("invalid_auth"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(dir.path("out.ndjson")).unwrap();
    let mut by_team: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        by_team
            .entry(r["team_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(r["id"].as_str().unwrap().into());
    }
    let granted: BTreeSet<&str> = slack_sim::WORKSPACE_IDS
        .iter()
        .copied()
        .filter(|t| *t != slack_sim::UNGRANTED_WORKSPACE_ID)
        .collect();
    assert_eq!(
        by_team.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        granted
    );
    for team in granted {
        assert_eq!(by_team[team], expected(&sim, Some(team), start), "{team}");
    }
}

#[test]
fn team_ids_all_lists_the_org_workspaces_and_walks_each() {
    let sim = Simulator::start(SimConfig {
        seed: 8,
        integration_entries: 20,
        access_rows: 30,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new("integration-all");
    let mut settings = integration_settings(&sim, start);
    settings.retain(|(k, _)| *k != "streams");
    settings.push(("streams", "access,integration".into()));
    settings.push(("team_ids", "all".into()));
    let out = run_ok(&mut host(&dir, &settings));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("team_ids = all: 2 workspaces"), "{stderr}");
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.path.ends_with("auth.teams.list")));
    let text = std::fs::read_to_string(dir.path("out.ndjson")).unwrap();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        seen.insert((
            r["stream"].as_str().unwrap().into(),
            r["team_id"].as_str().unwrap().into(),
        ));
    }
    let granted: Vec<&str> = slack_sim::WORKSPACE_IDS
        .iter()
        .copied()
        .filter(|t| *t != slack_sim::UNGRANTED_WORKSPACE_ID)
        .collect();
    for stream in ["access", "integration"] {
        for team in &granted {
            assert!(
                seen.contains(&(stream.to_string(), team.to_string())),
                "{stream} {team}: {seen:?}"
            );
        }
    }
    // /status shows every listed walk.
    let status = host(&dir, &settings)
        .arg("status")
        .arg("--json")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    for team in &granted {
        assert!(text.contains(team), "{text}");
    }
}
