//! `slack-logs reset STREAM [--team TEAM_ID] [--yes]`: deletes a stream's checkpoint(s) in the
//! configured state store, so that its next pass starts over.
//!
//! The collector never resets a checkpoint by itself (a checkpoint that does not parse, or comes
//! from a newer version, stops its stream): starting over re-delivers or skips records, so it is
//! the operator's decision, made here with the consequence spelled out.
//!
//! Only `…/checkpoint` keys are deleted, with the parts they count (audit ledger parts, access
//! tie parts: [`keys::part_owner`]). The `…/status` key beside each (total records, last
//! success, last error) is history rather than a position: it is kept, and the next pass updates
//! it. With a SQLite state file, reset holds the file's lock as a pass does ([`pass_lock`]): a
//! live pass on it makes the reset refuse, and with the lock held every lease is a dead pass's
//! and is deleted with `--yes`. With Redis, a lease that is still live means a pass (on any host)
//! is walking the stream right now and would write its checkpoint back, so the reset refuses.

use std::process::ExitCode;

use slack_logs_core::keys::{self, WalkLeaf};
use slack_logs_core::lease::{is_lease_key, LeaseRecord};
use slack_logs_core::Stream;

use crate::kv::{self, KvStore, StateSpec};
use crate::pass_lock::{self, LockError};
use crate::{config, rfc3339, Global};

/// What to reset, as given on the command line (already checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRequest {
    pub stream: &'static str,
    /// `None`: every checkpoint of the stream.
    pub team: Option<String>,
    /// Without it nothing is deleted.
    pub yes: bool,
}

impl ResetRequest {
    /// Checks the stream name and team id; the error is a usage message.
    pub fn new(stream: &str, team: Option<String>, yes: bool) -> Result<ResetRequest, String> {
        let Some(stream) = Stream::parse(stream).map(Stream::name) else {
            return Err(format!(
                "reset: unknown stream `{stream}`; expected audit, access or integration"
            ));
        };
        if let Some(t) = &team {
            // Slack ids are letters and digits; anything with '/' would address another key.
            let plausible = !t.is_empty()
                && t.len() <= 64
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !plausible {
                return Err(format!(
                    "--team `{t}`: expected a workspace id such as T0123ABCD, or `org` for the walk without team_ids"
                ));
            }
            if stream == "audit" && t != keys::ORG {
                return Err("the audit stream has one org-wide checkpoint; drop --team".to_owned());
            }
        }
        Ok(ResetRequest { stream, team, yes })
    }

    fn target(&self) -> String {
        match &self.team {
            Some(t) => format!("{} [{t}]", self.stream),
            None => self.stream.to_owned(),
        }
    }
}

/// A walk's key under `stream` (a name [`ResetRequest::new`] checked) for team segment `team`.
fn walk_key(stream: &str, team: &str, leaf: WalkLeaf) -> String {
    let stream = Stream::parse(stream).unwrap_or(Stream::Audit);
    keys::walk_key(stream, Some(team), leaf)
}

/// The team segment of `key` when it is a checkpoint of `stream`.
fn checkpoint_team<'k>(stream: &str, key: &'k str) -> Option<&'k str> {
    keys::parse_walk_key(key)
        .filter(|(s, _, leaf)| s.name() == stream && *leaf == WalkLeaf::Checkpoint)
        .map(|(_, team, _)| team)
}

/// The watermark in a stored checkpoint of `stream`: as the component reads it, or, from a
/// checkpoint it cannot read (corrupt in part, or from a newer release: what reset is for), its
/// `watermark` field as long as that still parses. Only used to word the consequence.
fn stored_watermark(stream: &str, bytes: &[u8]) -> Option<i64> {
    Stream::parse(stream)
        .and_then(|s| slack_logs_core::pass::stored_watermark(s, bytes))
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()?
                .get("watermark")?
                .as_i64()
        })
}

/// The owner and expiry of a live lease in `bytes`, or `None` when it is released, expired or
/// unreadable: then no pass holds the walk.
fn live_lease(bytes: &[u8], now: i64) -> Option<(String, i64)> {
    let lease: LeaseRecord = serde_json::from_slice(bytes).ok()?;
    (lease.expires > now).then_some((lease.owner, lease.expires))
}

/// What the next pass of a reset stream will do, from the settings the component will see.
fn next_pass_text(g: &Global, target: &str, old_watermark: Option<i64>) -> String {
    let since = match old_watermark {
        Some(w) => format!("the old watermark ({})", rfc3339(w)),
        None => "where the stream stopped (its checkpoint did not say)".to_owned(),
    };
    let settings = match config::load(g.config.as_deref()) {
        Ok(map) => map,
        Err(e) => {
            return format!(
                "next pass: cannot read the settings ({e}); {target} starts from \
                 backfill_start_time if it is set, else from the time of that pass"
            )
        }
    };
    let setting = |k: &str| settings.get(k).filter(|v| !v.trim().is_empty());
    match setting("backfill_start_time") {
        Some(start) => {
            let shown = match start.trim().parse::<i64>() {
                Ok(secs) => format!("{start} ({})", rfc3339(secs)),
                Err(_) => start.clone(),
            };
            format!(
                "next pass: {target} starts again from backfill_start_time = {shown}; records \
                 from then up to {since} are delivered again (with the same ids, so a sink that \
                 drops repeated ids drops them)"
            )
        }
        None if setting("synthetic_data").is_some_and(|v| v.trim() == "true") => format!(
            "next pass: backfill_start_time is not set and synthetic_data is on, so {target} \
             starts one hour before that pass"
        ),
        None => {
            let hint = match old_watermark {
                Some(w) => format!(
                    "; to collect them instead, set backfill_start_time = {} before the next pass",
                    rfc3339(w)
                ),
                None => "; to collect them instead, set backfill_start_time before the next pass"
                    .to_owned(),
            };
            format!(
                "next pass: backfill_start_time is not set, so {target} starts from the time of \
                 that pass; records between {since} and then are skipped (never collected){hint}"
            )
        }
    }
}

pub fn cmd_reset(g: &Global, request: &ResetRequest) -> anyhow::Result<ExitCode> {
    let spec = crate::state_spec(g)?;
    // Opening a SQLite store creates the file; a mistyped path would then "reset" an empty store
    // and report nothing to do, hiding the mistake.
    if let StateSpec::Sqlite(path) = &spec {
        if !path.exists() {
            anyhow::bail!(
                "the state file {} does not exist, so there is nothing to reset (check --state)",
                path.display()
            );
        }
    }
    let kv = KvStore::open(&spec)?;
    // With a state file, reset holds its lock like a pass: no pass can start meanwhile, and any
    // lease in the file was left by a pass that is gone. With Redis, a live lease is the only
    // sign of a pass in progress (checked below).
    let lock = match &spec {
        StateSpec::Sqlite(path) => match pass_lock::try_lock(path) {
            Ok(lock) => Some(lock),
            Err(LockError::Busy(busy)) => anyhow::bail!(
                "{busy}, which would write its checkpoint back after the reset. Let it end (stop \
                 `run --every` or `serve` using this state), then run reset again; nothing was \
                 deleted"
            ),
            Err(e) => return Err(e.into()),
        },
        StateSpec::Redis(_) => None,
    };
    let target = request.target();
    let keys = pass_lock::all_keys(&kv)?;
    let found: Vec<(String, String)> = keys
        .iter()
        .filter_map(|k| {
            let team = checkpoint_team(request.stream, k)?;
            request
                .team
                .as_deref()
                .is_none_or(|want| want == team)
                .then(|| (k.clone(), team.to_owned()))
        })
        .collect();
    println!("state: {spec}");
    if found.is_empty() {
        let others: Vec<&str> = keys
            .iter()
            .filter_map(|k| checkpoint_team(request.stream, k))
            .collect();
        match (&request.team, others.is_empty()) {
            (Some(t), false) => println!(
                "no checkpoint at {}; {} has checkpoints for: {}. Nothing was deleted.",
                walk_key(request.stream, t, WalkLeaf::Checkpoint),
                request.stream,
                others.join(", ")
            ),
            _ => println!(
                "{target} has no checkpoint in this state store; nothing to reset (its next pass \
                 starts as a first pass would)"
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }

    // A pass walking the stream now would write its checkpoint back after the reset.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for (_, team) in found.iter().filter(|_| lock.is_none()) {
        let key = walk_key(request.stream, team, WalkLeaf::Lease);
        if let Some((owner, expires)) = kv
            .get(kv::DEFAULT_STORE, &key)?
            .and_then(|b| live_lease(&b, now))
        {
            anyhow::bail!(
                "a pass ({owner}) is collecting {} [{team}] now: it holds {key} until {}. \
                 Stop the collectors using this state (run --every, serve, other hosts) and \
                 reset once the pass has ended; nothing was deleted",
                request.stream,
                rfc3339(expires)
            );
        }
    }

    // Read the old positions first, to say what the reset gives up.
    let mut oldest_watermark: Option<i64> = None;
    let mut rows = Vec::new();
    for (key, team) in &found {
        let watermark = kv
            .get(kv::DEFAULT_STORE, key)?
            .as_deref()
            .and_then(|b| stored_watermark(request.stream, b));
        if let Some(w) = watermark {
            oldest_watermark = Some(oldest_watermark.map_or(w, |o: i64| o.min(w)));
        }
        let note = match watermark {
            Some(w) => format!("complete up to {}", rfc3339(w)),
            None => "unreadable, no watermark".to_owned(),
        };
        rows.push((key.clone(), team.clone(), note));
    }
    let next = next_pass_text(g, &target, oldest_watermark);

    // The parts the checkpoints count (audit ledger, access ties) go with them.
    let parts_of = |team: &str| -> Vec<&String> {
        keys.iter()
            .filter(|k| {
                keys::part_owner(k).is_some_and(|(s, t)| s.name() == request.stream && t == team)
            })
            .collect()
    };
    if !request.yes {
        for (key, team, note) in &rows {
            println!("would delete {key} ({note})");
            let parts = parts_of(team).len();
            if parts > 0 {
                println!("would delete {parts} part key(s) that checkpoint counts");
            }
        }
        println!("{next}");
        eprintln!(
            "refusing to reset {target} without --yes: nothing was deleted. Stop any collector \
             using this state (run --every, serve, another host), then run: slack-logs reset {}{} --yes",
            request.stream,
            request
                .team
                .as_deref()
                .map_or(String::new(), |t| format!(" --team {t}")),
        );
        return Ok(ExitCode::from(1));
    }

    if lock.is_some() {
        // Stale, with the lock held: a dead pass's lease must not hold the next pass back.
        for key in keys.iter().filter(|k| is_lease_key(k)) {
            kv.delete(kv::DEFAULT_STORE, key)?;
            println!("deleted {key} (the lease of a pass that ended)");
        }
    }
    for (key, team, note) in &rows {
        kv.delete(kv::DEFAULT_STORE, key)?;
        println!("deleted {key} ({note})");
        // After the checkpoint: a reset cut short leaves parts nothing counts, never the reverse.
        let parts = parts_of(team);
        for part in &parts {
            kv.delete(kv::DEFAULT_STORE, part)?;
        }
        if !parts.is_empty() {
            println!(
                "deleted {} part key(s) that checkpoint counted",
                parts.len()
            );
        }
        let status = walk_key(request.stream, team, WalkLeaf::Status);
        if kv.exists(kv::DEFAULT_STORE, &status)? {
            println!("kept    {status} (totals and last error; the next pass updates it)");
        }
    }
    println!("{next}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let r = ResetRequest::new("access", Some("T0123".into()), true).unwrap();
        assert_eq!(
            (r.stream, r.team.as_deref(), r.yes),
            ("access", Some("T0123"), true)
        );
        assert!(ResetRequest::new("audit", None, false).is_ok());
        assert!(ResetRequest::new("audit", Some("org".into()), false).is_ok());
        for (stream, team) in [
            ("audits", None),
            ("", None),
            ("audit", Some("T1")),
            ("access", Some("")),
            ("access", Some("T1/../x")),
            ("integration", Some("T 1")),
        ] {
            assert!(
                ResetRequest::new(stream, team.map(String::from), true).is_err(),
                "{stream} {team:?}"
            );
        }
    }

    #[test]
    fn only_checkpoint_keys_of_the_stream_match() {
        assert_eq!(
            walk_key("audit", "org", WalkLeaf::Checkpoint),
            "slack-logs/v1/audit/org/checkpoint"
        );
        assert_eq!(
            checkpoint_team("audit", "slack-logs/v1/audit/org/checkpoint"),
            Some("org")
        );
        assert_eq!(
            checkpoint_team("access", "slack-logs/v1/access/T1/checkpoint"),
            Some("T1")
        );
        for other in [
            "slack-logs/v1/audit/org/status",
            "slack-logs/v1/audit/org/lease",
            "slack-logs/v1/access/T1/checkpoint",
            "slack-logs/v1/auditx/org/checkpoint",
            "slack-logs/v1/audit//checkpoint",
            "slack-logs/v1/audit/a/b/checkpoint",
            "slack-logs/v1/workspaces",
            "slack-logs/v2/audit/org/checkpoint",
        ] {
            assert_eq!(checkpoint_team("audit", other), None, "{other}");
        }
    }

    /// A reset takes the parts its checkpoints count (access tie parts, audit ledger parts) with
    /// them, only those of the walks it resets.
    #[test]
    fn reset_deletes_the_parts_its_checkpoints_count() {
        let dir =
            std::env::temp_dir().join(format!("slack-logs-reset-parts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state.db");
        let kv = KvStore::open(&StateSpec::Sqlite(state.clone())).unwrap();
        let set = |k: &str| {
            kv.set(kv::DEFAULT_STORE, k, b"{\"v\":2,\"watermark\":5}")
                .unwrap()
        };
        let t1_part = keys::access_tie_part_key(Some("T1"), "date_first", 0);
        let t2_part = keys::access_tie_part_key(Some("T2"), "date_last", 1);
        set(&walk_key("access", "T1", WalkLeaf::Checkpoint));
        set(&walk_key("access", "T2", WalkLeaf::Checkpoint));
        set(&t1_part);
        set(&t2_part);
        set(&keys::ledger_part_key(600, 0));
        drop(kv);
        let g = Global {
            state: Some(state.clone()),
            config: Some(dir.join("none.toml")),
            ..Global::default()
        };
        std::fs::write(dir.join("none.toml"), "").unwrap();
        let request = ResetRequest::new("access", Some("T1".into()), true).unwrap();
        assert_eq!(cmd_reset(&g, &request).unwrap(), ExitCode::SUCCESS);
        let kv = KvStore::open(&StateSpec::Sqlite(state)).unwrap();
        let has = |k: &str| kv.exists(kv::DEFAULT_STORE, k).unwrap();
        assert!(!has(&walk_key("access", "T1", WalkLeaf::Checkpoint)) && !has(&t1_part));
        assert!(has(&walk_key("access", "T2", WalkLeaf::Checkpoint)) && has(&t2_part));
        assert!(
            has(&keys::ledger_part_key(600, 0)),
            "another stream's parts stay"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_an_unexpired_lease_is_live() {
        let now = 1_700_000_000;
        assert_eq!(
            live_lease(br#"{"owner":"pass-1","expires":1700000060}"#, now),
            Some(("pass-1".to_string(), 1_700_000_060))
        );
        assert_eq!(
            live_lease(br#"{"owner":"pass-1","expires":1699999999}"#, now),
            None
        );
        assert_eq!(live_lease(br#"{"owner":"pass-1","expires":0}"#, now), None);
        assert_eq!(live_lease(b"garbage", now), None);
    }

    #[test]
    fn watermark_is_read_when_the_checkpoint_still_parses() {
        assert_eq!(
            stored_watermark("audit", br#"{"v":1,"watermark":1700000000}"#),
            Some(1_700_000_000)
        );
        assert_eq!(stored_watermark("audit", b"{not json"), None);
        assert_eq!(stored_watermark("audit", br#"{"v":9}"#), None);
        // From a newer release, which the component refuses: the watermark still shows.
        assert_eq!(
            stored_watermark("access", br#"{"v":99,"watermark":1700000000,"new":[1]}"#),
            Some(1_700_000_000)
        );
    }
}
