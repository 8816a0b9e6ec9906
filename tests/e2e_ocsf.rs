//! `output_format = ocsf` end to end: the built component in the host against the simulator,
//! every emitted event validated against the OCSF schema facts kept in core.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use slack_sim::{SimConfig, Simulator};

#[test]
fn every_stream_emits_valid_ocsf_events_for_exactly_the_ground_truth() {
    let now = now();
    let sim = Simulator::start(SimConfig {
        seed: 41,
        audit_events: 300,
        history_start: now - 4 * 3600,
        history_end: now - 300,
        access_rows: 60,
        integration_entries: 40,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new("ocsf");
    let mut settings = audit_settings(&sim, start);
    settings.retain(|(k, _)| *k != "streams");
    settings.push(("streams", "audit,access,integration".into()));
    settings.push(("output_format", "ocsf".into()));
    settings.push(("web_requests_per_minute", "0".into()));
    run_ok(&mut host(&dir, &settings));

    let text = std::fs::read_to_string(dir.path("out.ndjson")).unwrap();
    let mut uids = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let mut findings: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Err(problems) = slack_logs_core::ocsf::validate::validate(&event) {
            panic!("invalid OCSF event {problems:?}: {line}");
        }
        assert_eq!(event["metadata"]["product"]["name"], "Slack", "{line}");
        classes.insert(event["class_uid"].as_u64().unwrap());
        assert!(
            uids.insert(event["metadata"]["uid"].as_str().unwrap().to_string()),
            "repeated record"
        );
        if event["class_uid"] == 2004 {
            findings.insert(
                event["metadata"]["uid"].as_str().unwrap().to_string(),
                event,
            );
        }
    }
    // The same records as raw output: audit ids, access and integration ids from the truth.
    let mut expected: BTreeSet<String> = truth(&sim, start, now);
    expected.extend(sim.access_truth().iter().map(|r| {
        slack_logs_core::access::record_id(
            &r.user_id,
            Some(&r.ip),
            &r.user_agent,
            r.date_first,
            r.date_last,
        )
    }));
    expected.extend(
        sim.integration_truth()
            .iter()
            .map(|e| slack_logs_core::integration::canonical(&e.to_string(), None).unwrap())
            .filter(|(date, _)| *date >= start)
            .map(|(_, id)| id),
    );
    assert_eq!(uids, expected);
    // Logins, changes, files and security detections all occur in the simulated history.
    for class in [2004, 3002, 3004, 6006] {
        assert!(
            classes.contains(&class),
            "class {class} missing from {classes:?}"
        );
    }
    // Every simulated `anomaly`, and nothing else, is a Detection Finding whose uid is the raw
    // record id, graded by its reasons.
    let anomalies: BTreeSet<String> = sim
        .audit_truth(start, now)
        .into_iter()
        .filter(|t| t.action == "anomaly")
        .map(|t| t.id)
        .collect();
    assert_eq!(findings.keys().cloned().collect::<BTreeSet<_>>(), anomalies);
    for (id, f) in &findings {
        let info = &f["finding_info"];
        assert_eq!(info["uid"], id.as_str(), "{f}");
        assert_eq!(f["metadata"]["event_code"], "anomaly", "{f}");
        assert_eq!(f["activity_id"], 1, "{f}");
        let reasons: Vec<&str> = info["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(
            !reasons.is_empty(),
            "the simulator always names a reason: {f}"
        );
        let severity = reasons
            .iter()
            .map(|r| {
                let row = slack_logs_core::ocsf::ANOMALY_REASONS
                    .iter()
                    .find(|row| row.0 == *r);
                row.map(|row| row.2)
                    .unwrap_or_else(|| panic!("reason {r} not in the table: {f}"))
            })
            .max()
            .unwrap();
        assert_eq!(f["severity_id"], severity, "{f}");
        assert!(
            info["title"]
                .as_str()
                .unwrap()
                .starts_with("Slack anomaly: "),
            "{f}"
        );
        assert!(
            info["first_seen_time"].as_i64() <= info["last_seen_time"].as_i64(),
            "{f}"
        );
        assert!(f["actor"]["user"]["uid"].is_string(), "{f}");
        // The simulator always sends a previous address: the second evidence.
        let evidences = f["evidences"].as_array().unwrap();
        assert_eq!(
            evidences.last().unwrap()["data"]["observation"],
            "previous",
            "{f}"
        );
        assert!(
            f.get("src_endpoint").is_none(),
            "a finding's addresses are evidence: {f}"
        );
    }
}
