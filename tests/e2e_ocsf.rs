//! `output_format = ocsf` end to end: the built component in the host against the simulator,
//! every emitted event validated against the OCSF schema facts kept in core.

mod common;

use std::collections::BTreeSet;

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
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Err(problems) = slack_logs_core::ocsf::validate::validate(&event) {
            panic!("invalid OCSF event {problems:?}: {line}");
        }
        assert_eq!(event["metadata"]["product"]["name"], "Slack", "{line}");
        classes.insert(event["class_uid"].as_u64().unwrap());
        assert!(uids.insert(event["metadata"]["uid"].as_str().unwrap().to_string()), "repeated record");
    }
    // The same records as raw output: audit ids, access and integration ids from the truth.
    let mut expected: BTreeSet<String> = truth(&sim, start, now);
    expected.extend(sim.access_truth().iter().map(|r| {
        slack_logs_core::access::record_id(&r.user_id, Some(&r.ip), &r.user_agent, r.date_first, r.date_last)
    }));
    expected.extend(
        sim.integration_truth()
            .iter()
            .map(|e| slack_logs_core::integration::canonical(&e.to_string(), None).unwrap())
            .filter(|(date, _)| *date >= start)
            .map(|(_, id)| id),
    );
    assert_eq!(uids, expected);
    // Logins, changes and files all occur in the simulated history.
    for class in [3002, 3004, 6006] {
        assert!(classes.contains(&class), "class {class} missing from {classes:?}");
    }
}
