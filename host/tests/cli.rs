//! The `slack-logs` command line as an operator meets it: help, version, and the errors that
//! must say what to fix.

use std::process::Command;

fn slack_logs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slack-logs"))
}

#[test]
fn help_lists_the_commands() {
    let out = slack_logs().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for command in ["run", "serve", "status", "demo"] {
        assert!(
            text.contains(command),
            "{command} missing from --help: {text}"
        );
    }
}

#[test]
fn version_is_the_package_version() {
    let out = slack_logs().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_missing_component_says_how_to_build_it() {
    let dir = std::env::temp_dir().join(format!("slack-logs-cli-{}", std::process::id()));
    let out = slack_logs()
        .args([
            "--state",
            &dir.join("state.db").display().to_string(),
            "--component",
            "/nonexistent/collector.wasm",
            "run",
            "--once",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a host error exits 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/collector.wasm") && stderr.contains("cargo xtask build"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let out = slack_logs().arg("collect-everything").output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}

/// The host with a clean `SLACK_LOGS_*` environment, in `dir` (so a compiled-component cache
/// or default state never lands in the checkout).
fn isolated(dir: &std::path::Path) -> Command {
    let mut cmd = slack_logs();
    for (k, _) in std::env::vars() {
        if k.starts_with("SLACK_LOGS_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir);
    cmd
}

fn scratch(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "slack-logs-cli-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A state file as the host writes it, with the given keys in the component's bucket.
fn state_file(path: &std::path::Path, entries: &[(&str, &[u8])]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE IF NOT EXISTS kv (bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (bucket, key))")
        .unwrap();
    for (k, v) in entries {
        conn.execute(
            "INSERT INTO kv (bucket, key, value) VALUES ('default', ?1, ?2) ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value",
            rusqlite::params![k, v],
        )
        .unwrap();
    }
}

fn keys(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT key FROM kv WHERE bucket = 'default' ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

const AUDIT: &str = "slack-logs/v1/audit/org/checkpoint";
const ACCESS_T1: &str = "slack-logs/v1/access/T1/checkpoint";
const ACCESS_T2: &str = "slack-logs/v1/access/T2/checkpoint";

fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let state = dir.join("state.db");
    state_file(
        &state,
        &[
            (AUDIT, br#"{"v":1,"watermark":1700000000}"#),
            ("slack-logs/v1/audit/org/status", b"{}"),
            (ACCESS_T1, b"{corrupt"),
            (ACCESS_T2, br#"{"v":1,"watermark":1700000000}"#),
            ("slack-logs/v1/access/T1/status", b"{}"),
            ("slack-logs/v1/workspaces", b"[]"),
        ],
    );
    state
}

#[test]
fn reset_without_yes_shows_what_it_would_delete_and_deletes_nothing() {
    let dir = scratch("reset-refuse");
    let state = fixture(&dir);
    let before = keys(&state);
    let out = isolated(&dir)
        .args(["--state", &state.display().to_string(), "reset", "access"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a refusal is not a success");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!("would delete {ACCESS_T1}"))
            && stdout.contains(&format!("would delete {ACCESS_T2}")),
        "{stdout}"
    );
    assert!(
        stderr.contains("--yes") && stderr.contains("nothing was deleted"),
        "{stderr}"
    );
    assert_eq!(keys(&state), before);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reset_deletes_only_the_chosen_checkpoints_and_says_what_happens_next() {
    let dir = scratch("reset-yes");
    let state = fixture(&dir);
    let state_arg = state.display().to_string();

    // One workspace of access, with backfill_start_time set: records are delivered again.
    let out = isolated(&dir)
        .env("SLACK_LOGS_BACKFILL_START_TIME", "2024-01-01T00:00:00Z")
        .args([
            "--state", &state_arg, "reset", "access", "--team", "T1", "--yes",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("deleted {ACCESS_T1} (unreadable")),
        "{stdout}"
    );
    assert!(
        stdout.contains("kept    slack-logs/v1/access/T1/status"),
        "{stdout}"
    );
    assert!(
        stdout.contains("backfill_start_time = 2024-01-01T00:00:00Z")
            && stdout.contains("delivered again"),
        "{stdout}"
    );
    let left = keys(&state);
    assert!(
        !left.contains(&ACCESS_T1.to_string())
            && left.contains(&ACCESS_T2.to_string())
            && left.contains(&AUDIT.to_string()),
        "{left:?}"
    );

    // The audit stream without backfill_start_time: records since the watermark are skipped.
    let out = isolated(&dir)
        .args(["--state", &state_arg, "reset", "audit", "--yes"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "deleted {AUDIT} (complete up to 2023-11-14T22:13:20Z)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped")
            && stdout.contains("set backfill_start_time = 2023-11-14T22:13:20Z"),
        "{stdout}"
    );
    let left = keys(&state);
    assert!(!left.contains(&AUDIT.to_string()), "{left:?}");
    assert!(
        left.contains(&"slack-logs/v1/audit/org/status".to_string()),
        "status keys are kept: {left:?}"
    );

    // Nothing left to reset is not an error; an unknown workspace names the ones there are.
    let out = isolated(&dir)
        .args(["--state", &state_arg, "reset", "audit", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to reset"));
    let out = isolated(&dir)
        .args([
            "--state", &state_arg, "reset", "access", "--team", "T9", "--yes",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoints for: T2"));
    assert_eq!(keys(&state).len(), 4, "{:?}", keys(&state));
    let _ = std::fs::remove_dir_all(dir);
}

/// With a state file, "a pass is running" is the state file's lock (`state.db.lock`), held by
/// every pass: reset refuses while another process holds it. A lease without a live holder is
/// a dead pass's and no obstacle: reset deletes it with the checkpoint.
#[test]
fn reset_refuses_while_a_pass_holds_the_state_file_and_clears_a_dead_passs_lease() {
    let dir = scratch("reset-lease");
    let state = fixture(&dir);
    let in_a_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let lease = format!(r#"{{"owner":"pass-abc","expires":{in_a_minute}}}"#);
    state_file(
        &state,
        &[("slack-logs/v1/audit/org/lease", lease.as_bytes())],
    );

    // A live pass: this test process holds the lock, as a running host would.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("state.db.lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = isolated(&dir)
        .args([
            "--state",
            &state.display().to_string(),
            "reset",
            "audit",
            "--yes",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("running a pass on the state file")
            && stderr.contains("nothing was deleted"),
        "{stderr}"
    );
    assert!(keys(&state).contains(&AUDIT.to_string()));
    drop(lock);

    // No live holder: the unexpired lease was left by a pass that died, and goes with the reset.
    let out = isolated(&dir)
        .args([
            "--state",
            &state.display().to_string(),
            "reset",
            "audit",
            "--yes",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deleted slack-logs/v1/audit/org/lease"),
        "{stdout}"
    );
    let left = keys(&state);
    assert!(
        !left.contains(&AUDIT.to_string())
            && !left.contains(&"slack-logs/v1/audit/org/lease".to_string()),
        "{left:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reset_refuses_a_state_file_that_does_not_exist() {
    let dir = scratch("reset-missing");
    let missing = dir.join("typo.db");
    let out = isolated(&dir)
        .args([
            "--state",
            &missing.display().to_string(),
            "reset",
            "audit",
            "--yes",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("--state"),
        "{stderr}"
    );
    assert!(!missing.exists(), "reset does not create a state file");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unreachable_redis_state_is_an_operator_error_without_the_password() {
    let dir = scratch("redis-down");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = isolated(&dir)
        .env(
            "SLACK_LOGS_STATE",
            format!("redis://:hunter2@127.0.0.1:{port}/0"),
        )
        .args(["reset", "audit", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot reach Redis at 127.0.0.1:{port}: connection refused (check --state)"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2") && !String::from_utf8_lossy(&out.stdout).contains("hunter2")
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The way out of `checkpoint_unreadable`, end to end with the built component (synthetic audit
/// events, so no simulator is needed): the failure names the reset command, the reset removes
/// the checkpoint, and the next pass works.
#[test]
fn a_corrupt_checkpoint_stops_the_stream_naming_reset_and_reset_recovers_it() {
    let dir = scratch("reset-e2e");
    let state = dir.join("state.db");
    let state_arg = state.display().to_string();
    let out_file = dir.join("out.ndjson");
    let run = || {
        isolated(&dir)
            .env("SLACK_LOGS_STREAMS", "audit")
            .env("SLACK_LOGS_SYNTHETIC_DATA", "true")
            .args([
                "--state",
                &state_arg,
                "--sink",
                &format!("file:{}", out_file.display()),
                "run",
                "--once",
            ])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        keys(&state).contains(&AUDIT.to_string()),
        "the component writes the checkpoint where reset looks: {:?}",
        keys(&state)
    );

    state_file(&state, &[(AUDIT, b"{\"v\":1,\"watermark\":")]);
    let _ = std::fs::remove_file(&out_file);
    let failed = run();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("checkpoint_unreadable") && stderr.contains("slack-logs reset audit --yes"),
        "{stderr}"
    );
    assert!(
        !out_file.exists() || std::fs::read_to_string(&out_file).unwrap().is_empty(),
        "nothing delivered"
    );

    let reset = isolated(&dir)
        .args(["--state", &state_arg, "reset", "audit", "--yes"])
        .output()
        .unwrap();
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(String::from_utf8_lossy(&reset.stdout).contains(&format!("deleted {AUDIT}")));

    let again = run();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let delivered = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(delivered.lines().count() > 0, "the stream collects again");
    let _ = std::fs::remove_dir_all(dir);
}
