//! The command line, with clap (derive): the flags, their help text, `help <command>`,
//! suggestions for a mistyped flag or command, and shell completions. It only parses: what each
//! command does is in main.rs and the modules it calls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::reset::ResetRequest;

/// Where `serve` listens unless told.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

const AFTER_HELP: &str = "\
Settings come from the --config file, overridden by environment variables
SLACK_LOGS_<KEY> (e.g. SLACK_LOGS_SLACK_TOKEN=xoxp-... sets `slack_token`).
Tokens are never taken from the command line. The HTTP sink sends
SLACK_LOGS_SINK_TOKEN as a bearer token when it is set; with --sink none it
is handed to the component as `sink_token`, for its own sink. The S3 sink
reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION
(or AWS_DEFAULT_REGION), AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) and
AWS_S3_FORCE_PATH_STYLE, as AWS's tools do.

Exit status: 0 all streams fine, 2 a stream failed (or the config was refused),
1 host error or a wrong command line.";

/// slack-logs: collect Slack audit, access and integration logs with the slack-logs component
#[derive(Debug, Parser)]
#[command(name = "slack-logs", version, after_help = AFTER_HELP, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// Options every command takes.
#[derive(Debug, Default, Clone, Args)]
pub struct Global {
    /// The collector .wasm [default: next to this binary's target dir, else
    /// ./slack_logs_collector.wasm]
    #[arg(long, global = true, value_name = "PATH", env = "SLACK_LOGS_COMPONENT")]
    pub component: Option<PathBuf>,
    /// A TOML file of flat `key = value` settings
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where checkpoints live: a SQLite file PATH, or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
    /// to share them between hosts (rediss://... for TLS; a private CA through SSL_CERT_FILE or
    /// SSL_CERT_DIR) [default: SLACK_LOGS_STATE, which keeps a password off the command line,
    /// else .slack-logs/state.db; `demo` ignores SLACK_LOGS_STATE]
    #[arg(long, global = true, value_name = "STATE")]
    pub state: Option<PathBuf>,
    /// Where records go: stdout | file:PATH | http:URL | s3://BUCKET/PREFIX, or none: the
    /// component was composed with its own sink (as Spin does); its stdout passes through to
    /// ours [default: stdout]
    #[arg(long, global = true, value_name = "SPEC")]
    pub sink: Option<String>,
    /// Also print debug lines
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run collection passes (once, or every DURATION)
    ///
    /// After each pass, one line per stream goes to stderr; records go to the sink. With a
    /// state file, a pass that finds another process running one on the same file is skipped
    /// (exit 0).
    Run {
        /// One pass, then exit [default]
        #[arg(long, conflicts_with = "every")]
        once: bool,
        /// A pass every DURATION (e.g. 30s, 5m, 1h, 1h30m) until Ctrl-C; Ctrl-C lets the current
        /// pass finish, a second one aborts
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        every: Option<Duration>,
        /// With --every: also serve GET /metrics (Prometheus), /status and /healthz on ADDR,
        /// e.g. 127.0.0.1:9464
        #[arg(
            long,
            value_name = "ADDR",
            requires = "every",
            conflicts_with = "once",
            value_parser = parse_listen
        )]
        listen: Option<SocketAddr>,
    },
    /// Serve the component's HTTP routes (GET / status page, POST /collect, GET /status, ...)
    ///
    /// The component's wasi:http/incoming-handler over HTTP/1.1, a fresh instance per request,
    /// as Spin's HTTP trigger does. Routes and authentication are the component's.
    Serve {
        /// Address to listen on
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
        listen: SocketAddr,
    },
    /// Show each stream's watermark, lag, last success and last error
    Status {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Delete a stream's checkpoint so it starts over (reset STREAM --yes)
    ///
    /// Its next pass starts over: from backfill_start_time when that is set, which delivers
    /// records again, else from now, which skips what happened since the stream's watermark.
    /// Use it when a stream stops with checkpoint_unreadable. Stop running collectors that share
    /// the state first: a pass in progress would write its checkpoint back (reset refuses while
    /// a pass runs on the state file, or, with Redis, holds the stream's lease). Status keys
    /// (totals, last error) are kept; the next pass updates them.
    Reset {
        /// audit, access or integration
        #[arg(value_name = "STREAM")]
        stream: String,
        /// Only this workspace's checkpoint (access, integration); `org` is the walk without
        /// team_ids [default: every checkpoint of STREAM]
        #[arg(long, value_name = "TEAM_ID")]
        team: Option<String>,
        /// Delete; without it, only show what would be deleted
        #[arg(long)]
        yes: bool,
    },
    /// Try it out against a local Slack simulator (no token needed)
    ///
    /// Starts a local Slack simulator, points the collector at it and runs three passes, with
    /// new data arriving between them. Records go to the sink (stdout by default), progress to
    /// stderr. Uses a throwaway state file unless --state is given; any --config file and
    /// SLACK_LOGS_* variables still apply, below the demo's own settings.
    Demo,
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell)
    ///
    /// E.g. `slack-logs completions bash > /etc/bash_completion.d/slack-logs`.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// What to do, once the command line is read.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `listen`: with `every`, where `/metrics`, `/status` and `/healthz` are served.
    Run {
        every: Option<Duration>,
        listen: Option<SocketAddr>,
    },
    Serve {
        listen: SocketAddr,
    },
    Status {
        json: bool,
    },
    Reset(ResetRequest),
    Demo,
    Completions(clap_complete::Shell),
    /// No command: the help text.
    Help,
}

/// Reads the command line (without the program name's special handling: `args` starts with it).
/// `--help`, `--version` and mistakes come back as clap's error, which prints itself.
pub fn parse<I, T>(args: I) -> Result<(Global, Command), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let command = match cli.command {
        None => Command::Help,
        Some(Cmd::Run { every, listen, .. }) => Command::Run { every, listen },
        Some(Cmd::Serve { listen }) => Command::Serve { listen },
        Some(Cmd::Status { json }) => Command::Status { json },
        Some(Cmd::Reset { stream, team, yes }) => Command::Reset(
            ResetRequest::new(&stream, team, yes)
                .map_err(|e| Cli::command().error(clap::error::ErrorKind::InvalidValue, e))?,
        ),
        Some(Cmd::Demo) => Command::Demo,
        Some(Cmd::Completions { shell }) => Command::Completions(shell),
    };
    Ok((cli.global, command))
}

/// The top-level help, for `slack-logs` without a command.
pub fn help() -> String {
    Cli::command().render_help().to_string()
}

/// Writes the completion script for `shell` to stdout.
pub fn print_completions(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "slack-logs",
        &mut std::io::stdout(),
    );
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("expected IP:PORT, e.g. {DEFAULT_LISTEN}"))
}

/// Parse `30s`, `5m`, `1h`, `1d`, or combinations such as `1h30m`. Hand-written: the duration
/// crates read `1h30m` differently (humantime wants spaces) or pull in far more than this needs.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}`; use e.g. 30s, 5m, 1h or 1h30m");
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
        digits.clear();
        parts += 1;
    }
    if !digits.is_empty() || parts == 0 {
        return Err(bad());
    }
    if total == 0 {
        return Err(format!("duration `{text}` is zero; use at least 1s"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_str(s: &str) -> Result<(Global, Command), clap::Error> {
        parse(std::iter::once("slack-logs").chain(s.split_whitespace()))
    }

    #[test]
    fn the_command_line_is_described_consistently() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in [
            "",
            "30",
            "s",
            "5x",
            "-5m",
            "1.5h",
            "0s",
            "m5",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn args_parse() {
        let (g, c) = parse_str("run --every 5m --state /tmp/s.db --sink=file:/tmp/x").unwrap();
        assert_eq!(
            c,
            Command::Run {
                every: Some(Duration::from_secs(300)),
                listen: None
            }
        );
        assert_eq!(g.state.as_deref(), Some(Path::new("/tmp/s.db")));
        assert_eq!(g.sink.as_deref(), Some("file:/tmp/x"));
        // A flag given twice: the last one counts (scripts add to a base command line).
        let (g, _) = parse_str("--sink stdout run --sink file:/tmp/y").unwrap();
        assert_eq!(g.sink.as_deref(), Some("file:/tmp/y"));
        assert_eq!(
            parse_str("run --every 1m --listen 127.0.0.1:9464")
                .unwrap()
                .1,
            Command::Run {
                every: Some(Duration::from_secs(60)),
                listen: Some("127.0.0.1:9464".parse().unwrap())
            }
        );
        assert_eq!(
            parse_str("run").unwrap().1,
            Command::Run {
                every: None,
                listen: None
            }
        );
        assert_eq!(
            parse_str("--config c.toml run --once").unwrap().1,
            Command::Run {
                every: None,
                listen: None
            }
        );
        assert_eq!(
            parse_str("status --json").unwrap().1,
            Command::Status { json: true }
        );
        assert_eq!(
            parse_str("serve").unwrap().1,
            Command::Serve {
                listen: DEFAULT_LISTEN.parse().unwrap()
            }
        );
        assert_eq!(
            parse_str("serve --listen 0.0.0.0:8080").unwrap().1,
            Command::Serve {
                listen: "0.0.0.0:8080".parse().unwrap()
            }
        );
        assert_eq!(
            parse_str("completions bash").unwrap().1,
            Command::Completions(clap_complete::Shell::Bash)
        );
        assert_eq!(parse_str("").unwrap().1, Command::Help);
        for bad in [
            "reset",
            "reset logs --yes",
            "reset audit access",
            "reset audit --team T1 --yes",
            "reset access --team a/b",
            "reset access --team",
            "run --yes",
            "status --team T1",
            "run --once --listen 127.0.0.1:9464",
            "run --every",
            "run --every 5",
            "run --once --every 5m",
            "status --every 5m",
            "run --json",
            "serve --listen nowhere",
            "frobnicate",
            "run --token xoxp-1",
            "run extra",
            "completions tcsh",
        ] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn help_and_mistakes_say_what_to_do() {
        let e = parse_str("run --help").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(e.to_string().contains("--every"), "{e}");
        let e = parse_str("help reset").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(e.to_string().contains("--yes"), "{e}");
        let e = parse_str("run --evry 5m").unwrap_err();
        assert!(e.to_string().contains("--every"), "suggests the flag: {e}");
        let e = parse_str("stauts").unwrap_err();
        assert!(
            e.to_string().contains("status"),
            "suggests the command: {e}"
        );
        assert!(help().contains("reset") && help().contains("completions"));
    }

    #[test]
    fn reset_args_parse() {
        let reset = |stream: &'static str, team: Option<&str>, yes: bool| {
            Command::Reset(ResetRequest {
                stream,
                team: team.map(String::from),
                yes,
            })
        };
        assert_eq!(
            parse_str("reset audit").unwrap().1,
            reset("audit", None, false)
        );
        assert_eq!(
            parse_str("--state redis://127.0.0.1:6379/2 reset integration --yes")
                .unwrap()
                .1,
            reset("integration", None, true)
        );
        assert_eq!(
            parse_str("reset access --team=T0123ABC --yes").unwrap().1,
            reset("access", Some("T0123ABC"), true)
        );
        assert_eq!(
            parse_str("reset --yes --team org access").unwrap().1,
            reset("access", Some("org"), true)
        );
    }
}
