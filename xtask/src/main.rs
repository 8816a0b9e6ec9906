//! Developer commands for slack-logs, so a newcomer needs two commands and no script knowledge:
//!
//! - `cargo xtask run [-- ARGS]`: build the component and the host, then run the collector. With
//!   no Slack token in the environment it runs `slack-logs demo` against the built-in simulator;
//!   with one, `slack-logs run --once`; with ARGS, `slack-logs ARGS`.
//! - `cargo xtask test`: check formatting and lints (clippy, `-D warnings`, native and wasm),
//!   build the component, then run the whole test suite (unit, property and end-to-end tests,
//!   which load the built `.wasm` into the host).
//! - `cargo xtask build`: only build.
//! - `cargo xtask fuzz [CASES]`: the fuzz targets of `core/tests/fuzz.rs` (page parsers, checkpoint
//!   decoders, config parser) with CASES cases each (default 100000; CI runs them with 256).
//!
//! It is not a build system: it runs cargo in a fixed order and nothing else.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r.to_vec()),
        None => ("help", Vec::new()),
    };
    let root = workspace_root();
    env::set_current_dir(&root)
        .unwrap_or_else(|e| die(&format!("cannot enter {}: {e}", root.display())));
    match cmd {
        "build" => build(),
        "run" => {
            build();
            run(rest);
        }
        "test" => test(rest),
        "fuzz" => fuzz(rest),
        _ => {
            eprintln!("usage: cargo xtask build | run [-- ARGS] | test [-- CARGO TEST ARGS] | fuzz [CASES]");
            exit(if cmd == "help" || cmd == "--help" {
                0
            } else {
                2
            });
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn die(msg: &str) -> ! {
    eprintln!("xtask: {msg}");
    exit(1)
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(cmd: &mut Command, what: &str) {
    eprintln!("xtask: {what}");
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => die(&format!("{what} failed ({s})")),
        Err(e) => die(&format!("{what}: could not start: {e}")),
    }
}

/// rust-toolchain.toml names the target, but rustup adds targets only when it installs the
/// toolchain; an already-installed toolchain may lack it.
fn ensure_wasm_target() {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(s) = sysroot {
        if Path::new(&s).join("lib/rustlib").join(WASM_TARGET).exists() {
            return;
        }
    }
    status(
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
        "adding the wasm32-wasip2 target with rustup",
    );
}

/// The sink components Spin plugs into the collector's `sink` import (spin.toml's dependencies).
const SINK_PACKAGES: &[&str] = &["sink-stdout", "sink-http", "sink-s3"];

fn build_component() {
    ensure_wasm_target();
    // One cargo invocation for the collector and the sinks: they share wit-bindgen and std, so a
    // second invocation would only repeat dependency resolution and the lock on target/.
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--package",
        "slack-logs-collector",
    ]);
    for sink in SINK_PACKAGES {
        cmd.args(["--package", sink]);
    }
    status(
        &mut cmd,
        "building the collector and sink components (target/wasm32-wasip2/release/{slack_logs_collector,sink_stdout,sink_http,sink_s3}.wasm)",
    );
}

fn build() {
    build_component();
    status(
        cargo().args(["build", "--release", "--package", "slack-logs-host"]),
        "building the host (target/release/slack-logs)",
    );
}

fn run(args: Vec<String>) {
    let host = Path::new("target/release/slack-logs");
    let args = if !args.is_empty() {
        args
    } else if env::var_os("SLACK_LOGS_SLACK_TOKEN").is_some()
        || env::var_os("SLACK_LOGS_AUDIT_TOKEN").is_some()
    {
        eprintln!("xtask: a Slack token is set in the environment: collecting from Slack (slack-logs run --once)");
        vec!["run".into(), "--once".into()]
    } else {
        eprintln!("xtask: no Slack token set (SLACK_LOGS_SLACK_TOKEN): running against the built-in simulator (slack-logs demo)");
        vec!["demo".into()]
    };
    let code = Command::new(host)
        .args(&args)
        .status()
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or_else(|e| die(&format!("{}: {e}", host.display())));
    exit(code);
}

fn test(extra: Vec<String>) {
    // First, since it takes a second and says exactly what to run: `cargo fmt --all`.
    status(
        cargo().args(["fmt", "--all", "--check"]),
        "checking formatting (cargo fmt --all --check; run `cargo fmt --all` to fix)",
    );
    // Lints next, before the long build: the native crates with their tests, then the
    // components for the target they ship on (their WASI glue compiles only there).
    status(
        cargo().args([
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "linting (cargo clippy --release --workspace --all-targets -- -D warnings)",
    );
    ensure_wasm_target();
    let mut lint_components = cargo();
    lint_components.args(["clippy", "--release", "--target", WASM_TARGET]);
    lint_components.args(["--package", "slack-logs-collector"]);
    for sink in SINK_PACKAGES {
        lint_components.args(["--package", sink]);
    }
    lint_components.args(["--", "-D", "warnings"]);
    status(
        &mut lint_components,
        "linting the components (cargo clippy --release --target wasm32-wasip2 … -- -D warnings)",
    );
    build_component();
    // `cargo test` builds target/release/slack-logs itself, since the host package has integration
    // tests, and it does so with the suite's dependency features. Building the host separately
    // first would resolve features without the dev-dependencies and build wasmtime a second time.
    let mut cmd = cargo();
    cmd.args(["test", "--release", "--workspace"]).args(&extra);
    status(
        &mut cmd,
        "running the test suite (cargo test --release --workspace)",
    );
}

/// Cases per fuzz target when `cargo xtask fuzz` is given no count: a few minutes on two cores.
const FUZZ_CASES: u64 = 100_000;

/// proptest is the engine (cargo-fuzz needs nightly, which the project does not pin); it reads
/// the case count from `PROPTEST_CASES`. A failure is shrunk, printed as a byte string and saved
/// in `core/tests/fuzz.proptest-regressions`, which later runs replay first.
fn fuzz(args: Vec<String>) {
    let cases = match args.as_slice() {
        [] => FUZZ_CASES,
        [n] => n
            .parse()
            .unwrap_or_else(|_| die(&format!("fuzz: CASES must be a number, got `{n}`"))),
        _ => die("usage: cargo xtask fuzz [CASES]"),
    };
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "slack-logs-core",
        "--test",
        "fuzz",
    ])
    .env("PROPTEST_CASES", cases.to_string());
    status(&mut cmd, &format!("fuzzing with {cases} cases per target (cargo test --release -p slack-logs-core --test fuzz)"));
}
