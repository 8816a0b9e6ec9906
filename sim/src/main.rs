//! `slack-sim`: run the Slack log API simulator in the foreground until Ctrl-C.

use std::process::ExitCode;

use slack_sim::{SimConfig, Simulator};

const USAGE: &str = "usage: slack-sim [--listen 127.0.0.1:8088] [--seed N] [--audit-events N] \
[--access-rows N] [--integration-entries N] [--rate-limit]";

fn parse_args(args: &[String]) -> Result<(String, SimConfig), String> {
    let mut listen = "127.0.0.1:8088".to_string();
    let mut config = SimConfig::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        let number = |v: String, what: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{what}: not a non-negative integer: {v}"))
        };
        match name {
            "--listen" => listen = value(name)?,
            "--seed" => config.seed = number(value(name)?, name)?,
            "--audit-events" => config.audit_events = number(value(name)?, name)? as usize,
            "--access-rows" => config.access_rows = number(value(name)?, name)? as usize,
            "--integration-entries" => {
                config.integration_entries = number(value(name)?, name)? as usize
            }
            "--rate-limit" => config.rate_limit = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok((listen, config))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, config) = match parse_args(&args) {
        Ok(v) => v,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("slack-sim: {msg}");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let sim = match Simulator::start_on(&listen, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("slack-sim: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("web api base:          {}", sim.api_base());
    println!("audit api base:        {}", sim.audit_base());
    println!("org owner token:       {}", slack_sim::ORG_OWNER_TOKEN);
    println!(
        "workspace admin token: {}",
        slack_sim::WORKSPACE_ADMIN_TOKEN
    );
    println!("org admin token:       {}", slack_sim::ORG_ADMIN_TOKEN);
    println!("bot token:             {}", slack_sim::BOT_TOKEN);
    println!("revoked token:         {}", slack_sim::REVOKED_TOKEN);
    println!("no-scope token:        {}", slack_sim::NO_SCOPE_TOKEN);
    println!("free-plan token:       {}", slack_sim::FREE_PLAN_TOKEN);
    println!("oauth client id:       {}", sim.config().oauth_client_id);
    println!(
        "oauth client secret:   {}",
        sim.config().oauth_client_secret
    );
    println!(
        "oauth authorize base:  {}  (slack_oauth_base)",
        sim.base_url()
    );
    println!(
        "export SLACK_LOGS_SLACK_API_BASE={} SLACK_LOGS_SLACK_AUDIT_BASE={} SLACK_LOGS_SLACK_TOKEN={}",
        sim.api_base(),
        sim.audit_base(),
        slack_sim::ORG_OWNER_TOKEN
    );
    println!("serving; press Ctrl-C to stop");
    loop {
        std::thread::park();
    }
}
