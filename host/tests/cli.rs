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
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for command in ["run", "serve", "status", "demo"] {
        assert!(text.contains(command), "{command} missing from --help: {text}");
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
        .args(["--state", &dir.join("state.db").display().to_string(), "--component", "/nonexistent/collector.wasm", "run", "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a host error exits 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/collector.wasm") && stderr.contains("cargo xtask build"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let out = slack_logs().arg("collect-everything").output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
