//! Where things live in the key-value store: the one home of the key layout. The component
//! writes under these keys; the host's `status` and `reset` read and delete them through the
//! same functions, so the two cannot drift apart. `v1` is the layout's version.
//!
//! Each walk (a stream, for one workspace or the org) keeps its state under
//! `slack-logs/v1/<stream>/<team id, or org>/<leaf>` ([`WalkLeaf`]); the audit stream's look-back
//! ledger adds parts under `…/audit/org/ledger/`, an access walk inside a large tie parts under
//! `…/access/<team>/tie/`; a few keys belong to no walk.

use crate::Stream;

/// The prefix of every key.
pub const ROOT: &str = "slack-logs/v1/";
/// The team segment of a walk that is not per workspace (audit), or runs without `team_ids`.
pub const ORG: &str = "org";
/// The audit stream's checkpoint: [`walk_key`]`(Audit, None, Checkpoint)`, as a constant.
pub const AUDIT_CHECKPOINT: &str = "slack-logs/v1/audit/org/checkpoint";
/// The last `team_ids = all` listing, so `/status` can show those walks.
pub const WORKSPACES: &str = "slack-logs/v1/workspaces";
/// The token an OAuth install stored (encrypted).
pub const OAUTH_TOKEN: &str = "slack-logs/v1/oauth/token";
/// The pending OAuth `state` values.
pub const OAUTH_PENDING: &str = "slack-logs/v1/oauth/pending";

/// What a walk keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkLeaf {
    /// Where delivery got ([`crate::checkpoint::Checkpoint`]).
    Checkpoint,
    /// Counters and the last error ([`crate::status::StoredStatus`]).
    Status,
    /// Which pass runs the walk ([`crate::lease::LeaseRecord`]).
    Lease,
    /// The walk's batch series ([`crate::lease::new_batch_series`]).
    Batches,
}

impl WalkLeaf {
    pub const ALL: [WalkLeaf; 4] = [
        WalkLeaf::Checkpoint,
        WalkLeaf::Status,
        WalkLeaf::Lease,
        WalkLeaf::Batches,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WalkLeaf::Checkpoint => "checkpoint",
            WalkLeaf::Status => "status",
            WalkLeaf::Lease => "lease",
            WalkLeaf::Batches => "batches",
        }
    }
}

/// `slack-logs/v1/<stream>/<team id, or org>/<leaf>`.
pub fn walk_key(stream: Stream, team_id: Option<&str>, leaf: WalkLeaf) -> String {
    format!(
        "{ROOT}{}/{}/{}",
        stream.name(),
        team_id.unwrap_or(ORG),
        leaf.name()
    )
}

/// A walk's checkpoint key.
pub fn checkpoint_key(stream: Stream, team_id: Option<&str>) -> String {
    walk_key(stream, team_id, WalkLeaf::Checkpoint)
}

/// The stream, team segment (`org` or a workspace id) and leaf of a walk's key; `None` for any
/// other key.
pub fn parse_walk_key(key: &str) -> Option<(Stream, &str, WalkLeaf)> {
    let mut parts = key.strip_prefix(ROOT)?.split('/');
    let (stream, team, leaf) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || team.is_empty() {
        return None;
    }
    let stream = Stream::parse(stream)?;
    let leaf = WalkLeaf::ALL.into_iter().find(|l| l.name() == leaf)?;
    Some((stream, team, leaf))
}

/// One part of the audit look-back ledger: `slack-logs/v1/audit/org/ledger/<bucket>/<part>`.
pub fn ledger_part_key(bucket: i64, part: usize) -> String {
    format!("{ROOT}audit/{ORG}/ledger/{bucket}/{part}")
}

/// One part of the keys of an access walk's tie ([`crate::access::tie`]):
/// `slack-logs/v1/access/<team id, or org>/tie/<field>/<part>`.
pub fn access_tie_part_key(team_id: Option<&str>, field: &str, part: usize) -> String {
    format!("{ROOT}access/{}/tie/{field}/{part}", team_id.unwrap_or(ORG))
}

/// The walk (stream, team segment) a part key belongs to — an audit ledger part or an access tie
/// part — so that `reset` removes them with the walk's checkpoint; `None` for any other key.
pub fn part_owner(key: &str) -> Option<(Stream, &str)> {
    let rest = key.strip_prefix(ROOT)?;
    let (stream, rest) = rest.split_once('/')?;
    let (team, rest) = rest.split_once('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    let owned = match (stream, segments.as_slice()) {
        ("audit", ["ledger", bucket, part]) => team == ORG && numeric(bucket) && numeric(part),
        ("access", ["tie", "date_first" | "date_last", part]) => numeric(part),
        _ => false,
    };
    if !owned || team.is_empty() {
        return None;
    }
    Some((Stream::parse(stream)?, team))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_keys_read_back_and_nothing_else_does() {
        assert_eq!(
            checkpoint_key(Stream::Audit, None),
            AUDIT_CHECKPOINT,
            "the constant is the function's"
        );
        for stream in Stream::ALL {
            for team in [None, Some("T0123ABC")] {
                for leaf in WalkLeaf::ALL {
                    let key = walk_key(stream, team, leaf);
                    assert_eq!(
                        parse_walk_key(&key),
                        Some((stream, team.unwrap_or(ORG), leaf)),
                        "{key}"
                    );
                }
            }
        }
        for other in [
            WORKSPACES,
            OAUTH_TOKEN,
            OAUTH_PENDING,
            "slack-logs/v1/audit/org/ledger/5/0",
            "slack-logs/v1/access/T1/tie/date_first/0",
            "slack-logs/v1/auditx/org/checkpoint",
            "slack-logs/v1/audit//checkpoint",
            "slack-logs/v1/audit/a/b/checkpoint",
            "slack-logs/v1/audit/org/nope",
            "slack-logs/v2/audit/org/checkpoint",
        ] {
            assert_eq!(parse_walk_key(other), None, "{other}");
        }
        assert_eq!(
            access_tie_part_key(Some("T1"), "date_last", 2),
            "slack-logs/v1/access/T1/tie/date_last/2"
        );
        assert_eq!(
            part_owner(&access_tie_part_key(Some("T1"), "date_first", 0)),
            Some((Stream::Access, "T1"))
        );
        assert_eq!(
            part_owner(&access_tie_part_key(None, "date_last", 12)),
            Some((Stream::Access, ORG))
        );
        assert_eq!(
            part_owner(&ledger_part_key(1_700_000_000, 3)),
            Some((Stream::Audit, ORG))
        );
        for other in [
            AUDIT_CHECKPOINT,
            "slack-logs/v1/access/T1/checkpoint",
            "slack-logs/v1/access/T1/tie/date_seen/0",
            "slack-logs/v1/access/T1/tie/date_first/x",
            "slack-logs/v1/access//tie/date_first/0",
            "slack-logs/v1/integration/T1/tie/date_first/0",
            "slack-logs/v1/audit/T1/ledger/5/0",
        ] {
            assert_eq!(part_owner(other), None, "{other}");
        }
        assert_eq!(
            ledger_part_key(1_700_000_000, 3),
            "slack-logs/v1/audit/org/ledger/1700000000/3"
        );
    }
}
