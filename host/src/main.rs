//! `slack-logs`: the standalone host for the slack-logs collector component. Everything it does
//! is in the library (`slack_logs_host`), which embedders use too.

fn main() -> std::process::ExitCode {
    slack_logs_host::main_cli()
}
