//! `host/examples/embed.rs`, the documented way to run the collector inside another program, runs
//! against the simulator and delivers every event once (the example checks that itself and exits
//! non-zero otherwise). `cargo test` builds the example beside the host binary.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_embedding_example_runs_against_the_simulator() {
    let example = host_bin().with_file_name("examples").join("embed");
    assert!(
        example.exists(),
        "{} is missing: `cargo test --release --workspace` builds the examples",
        example.display()
    );
    let dir = Scratch::new("embed-example");
    let out = Command::new(&example)
        .arg(component())
        .env("TMPDIR", &dir.0)
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pass 1: audit caught-up") && stdout.contains("pass 2: audit caught-up"),
        "{stdout}"
    );
}
