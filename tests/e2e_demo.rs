//! The newcomer's first command, `cargo xtask run` without a token = `slack-logs demo`: all three
//! streams against the built-in simulator, and a summary that checks itself against the
//! simulator's ground truth.

mod common;

use common::*;

#[test]
fn the_demo_collects_all_three_streams_and_checks_its_own_ground_truth() {
    let dir = Scratch::new("demo");
    let mut cmd = std::process::Command::new(host_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACK_LOGS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(&dir.0)
        .arg("--component")
        .arg(component())
        .arg("demo")
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("reading audit · ") && !stderr.contains('\u{1b}'),
        "no progress line and no escape codes when stderr is not a terminal: {stderr}"
    );
    // One table row per stream, each with records.
    let table: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("STREAM"))
        .take(4)
        .collect();
    assert_eq!(table.len(), 4, "{stderr}");
    for (line, stream) in table[1..].iter().zip(["audit", "access", "integration"]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], stream, "{line}");
        assert!(
            cells[1].parse::<u64>().unwrap() > 0,
            "{stream} delivered nothing: {line}"
        );
        assert_eq!(cells[3], "3", "three passes: {line}");
        assert_eq!(cells[4], "stdout", "{line}");
    }
    // The demo's own checks against the simulator passed, and it says what to run next.
    assert!(
        stderr.contains("check: the simulator holds")
            && stderr.contains("were delivered, each pass only what was new"),
        "{stderr}"
    );
    assert!(
        stderr.contains("integration log entries since") && stderr.contains("were delivered once"),
        "{stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("check:") && l.contains(", but ")),
        "a check failed: {stderr}"
    );
    assert!(
        stderr.contains("SLACK_LOGS_SLACK_TOKEN=xoxp-... slack-logs run --every 5m"),
        "{stderr}"
    );
    // The records on stdout are NDJSON of all three streams.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut streams = std::collections::BTreeSet::new();
    for l in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("NDJSON");
        streams.insert(v["stream"].as_str().unwrap().to_string());
    }
    assert_eq!(
        streams.into_iter().collect::<Vec<_>>(),
        vec!["access", "audit", "integration"]
    );
}

#[test]
fn synthetic_data_gives_all_three_streams_without_a_token() {
    let dir = Scratch::new("synthetic");
    let settings = vec![
        ("synthetic_data", "true".to_string()),
        ("lease_settle_ms", "0".to_string()),
    ];
    run_ok(&mut host(&dir, &settings));
    let text = std::fs::read_to_string(dir.path("out.ndjson")).unwrap();
    let mut per_stream = std::collections::BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["event"]["synthetic"], true, "{l}");
        *per_stream
            .entry(v["stream"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_stream.keys().cloned().collect::<Vec<_>>(),
        vec!["access", "audit", "integration"],
        "{per_stream:?}"
    );
    // Through the same checkpoints: a second pass repeats nothing.
    let first = delivered_ids(&dir.path("out.ndjson"));
    run_ok(&mut host(&dir, &settings));
    let all = delivered_ids(&dir.path("out.ndjson"));
    assert_eq!(all.len(), set(&all).len(), "no record repeated");
    assert!(set(&first).is_subset(&set(&all)));
}

/// In a terminal a pass draws a progress line on stderr — the walk it reads, pages, records per
/// stream — with the component's log lines printed above it; piped (cron, CI) it draws none, as
/// the test above checks. The terminal is a pseudo-terminal from util-linux `script`.
#[test]
fn a_pass_in_a_terminal_shows_progress_and_a_pipe_gets_none() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("NOTICE: skipped, /usr/bin/script (util-linux) is not installed");
        return;
    }
    let dir = Scratch::new("demo-tty");
    let host = format!(
        "{} --component {} demo",
        host_bin().display(),
        component().display()
    );
    let mut cmd = std::process::Command::new("/usr/bin/script");
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACK_LOGS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(&dir.0)
        .args(["-qec", &host])
        .arg(dir.path("typescript"))
        .output()
        .expect("run the demo under script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("reading audit · ") && tty.contains(" pages · records: "),
        "a progress line: {tty}"
    );
    // The line is cleared before each log line and the pass report, which stay whole.
    assert!(tty.contains("\u{1b}[2K"), "{tty}");
    assert!(tty.contains("pass 3: 3 streams in"), "{tty}");
    assert!(
        tty.contains("slack-logs: audit: caught-up"),
        "the component's log lines still show: {tty}"
    );

    // Piped, as in the test above: no line (checked there).
}
