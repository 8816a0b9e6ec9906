//! The token registry: who each token is, and what Slack would say about it.

use std::collections::HashMap;

/// The simulated Enterprise organization.
pub const ENTERPRISE_ID: &str = "E0SIMORG01";
/// Workspaces of the org. The org owner token is granted access to the first two.
pub const WORKSPACE_IDS: [&str; 3] = ["T0SIMHQ001", "T0SIMENG02", "T0SIMSLS03"];
/// A workspace of the org that org-level tokens are not granted
/// (`team_access_not_granted` / integrationLogs `invalid_auth`).
pub const UNGRANTED_WORKSPACE_ID: &str = "T0SIMSLS03";
/// The workspace of the stand-alone (non-Enterprise) free workspace token.
pub const FREE_WORKSPACE_ID: &str = "T0SIMFREE9";

/// xoxp, org-level, Enterprise plan, role owner, scopes `auditlogs:read` + `admin`.
pub const ORG_OWNER_TOKEN: &str = "xoxp-sim-org-owner-1001";
/// xoxp, workspace-level install in the Enterprise org, role admin, scope `admin`:
/// team.* work; audit answers 403 `team_not_authorized`.
pub const WORKSPACE_ADMIN_TOKEN: &str = "xoxp-sim-workspace-admin-1002";
/// xoxp, org-level, role admin (not owner), `auditlogs:read` + `admin`: team.* work;
/// audit answers 403 `user_not_authorized` ("administrator tokens are not supported").
pub const ORG_ADMIN_TOKEN: &str = "xoxp-sim-org-admin-1003";
/// xoxb: `not_allowed_token_type` on team.*, 401 `invalid_authentication` on audit.
pub const BOT_TOKEN: &str = "xoxb-sim-bot-1004";
/// `token_revoked` on team.*, 401 `invalid_authentication` on audit.
pub const REVOKED_TOKEN: &str = "xoxp-sim-revoked-1005";
/// `token_expired` on team.*, 401 `invalid_authentication` on audit.
pub const EXPIRED_TOKEN: &str = "xoxp-sim-expired-1006";
/// xoxp org owner without `admin`/`auditlogs:read`: `missing_scope` (needed/provided)
/// on team.*, 403 `user_not_authorized` on audit.
pub const NO_SCOPE_TOKEN: &str = "xoxp-sim-no-scope-1007";
/// xoxp owner of a free workspace with every scope: `paid_only` on accessLogs,
/// 403 `feature_not_enabled` on audit; integrationLogs works.
pub const FREE_PLAN_TOKEN: &str = "xoxp-sim-free-plan-1008";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// xoxp
    User,
    /// xoxb
    Bot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Free,
    Paid,
    Enterprise,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

/// What the app carrying this token is installed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallLevel {
    Workspace,
    Org,
}

#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub kind: TokenKind,
    pub scopes: Vec<String>,
    pub level: InstallLevel,
    /// Workspace id for workspace installs, enterprise id for org installs.
    pub team_id: String,
    pub plan: Plan,
    pub role: Role,
    /// Workspaces an org-level token may name in `team_id`.
    pub granted_teams: Vec<String>,
    pub revoked: bool,
    pub expired: bool,
}

impl TokenSpec {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

fn spec(
    kind: TokenKind,
    scopes: &[&str],
    level: InstallLevel,
    plan: Plan,
    role: Role,
) -> TokenSpec {
    let team_id = match (level, plan) {
        (InstallLevel::Org, _) => ENTERPRISE_ID,
        (InstallLevel::Workspace, Plan::Enterprise) => WORKSPACE_IDS[0],
        (InstallLevel::Workspace, _) => FREE_WORKSPACE_ID,
    };
    TokenSpec {
        kind,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        level,
        team_id: team_id.to_string(),
        plan,
        role,
        granted_teams: match level {
            InstallLevel::Org => WORKSPACE_IDS[..2].iter().map(|s| s.to_string()).collect(),
            InstallLevel::Workspace => vec![team_id.to_string()],
        },
        revoked: false,
        expired: false,
    }
}

pub(crate) fn default_tokens() -> HashMap<String, TokenSpec> {
    use InstallLevel::*;
    use Plan::*;
    use Role::*;
    use TokenKind::*;
    let all = ["auditlogs:read", "admin"];
    let mut m = HashMap::new();
    m.insert(
        ORG_OWNER_TOKEN.into(),
        spec(User, &all, Org, Enterprise, Owner),
    );
    m.insert(
        WORKSPACE_ADMIN_TOKEN.into(),
        spec(User, &["admin"], Workspace, Enterprise, Admin),
    );
    m.insert(
        ORG_ADMIN_TOKEN.into(),
        spec(User, &all, Org, Enterprise, Admin),
    );
    m.insert(
        BOT_TOKEN.into(),
        spec(
            Bot,
            &["channels:read", "chat:write"],
            Org,
            Enterprise,
            Member,
        ),
    );
    let mut revoked = spec(User, &all, Org, Enterprise, Owner);
    revoked.revoked = true;
    m.insert(REVOKED_TOKEN.into(), revoked);
    let mut expired = spec(User, &all, Org, Enterprise, Owner);
    expired.expired = true;
    m.insert(EXPIRED_TOKEN.into(), expired);
    m.insert(
        NO_SCOPE_TOKEN.into(),
        spec(
            User,
            &["channels:read", "users:read"],
            Org,
            Enterprise,
            Owner,
        ),
    );
    m.insert(
        FREE_PLAN_TOKEN.into(),
        spec(User, &all, Workspace, Free, Owner),
    );
    m
}
