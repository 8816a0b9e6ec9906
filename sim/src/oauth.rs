//! Slack's OAuth v2 install flow, simulated: the authorize page (`GET /oauth/v2/authorize`),
//! where a simulated admin approves or cancels at once and is redirected back, the code exchange
//! (`POST /api/oauth.v2.access`) and token revocation (`POST /api/auth.revoke`).
//!
//! Tokens issued here are registered like the built-in ones, with the scopes and install level
//! the consent gave, so they work (or fail) against the audit and `team.*` endpoints as real ones
//! would. What the simulated admin does is [`OAuthConsent`], set with
//! [`crate::Simulator::set_oauth_consent`].

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;

use crate::http::{parse_pairs, Request, Response};
pub use crate::oauth_state::OAuthConsent;
use crate::oauth_state::{unguessable, IssuedCode};
use crate::respond::{bearer, error_body};
use crate::state::Sim;
use crate::tokens::{InstallLevel, Plan, TokenKind, TokenSpec, ENTERPRISE_ID, WORKSPACE_IDS};
use crate::{lock, write};

/// Slack's authorization codes expire after ten minutes.
const CODE_TTL: Duration = Duration::from_secs(600);
/// The simulated app's id, as `oauth.v2.access` reports it.
pub const APP_ID: &str = "A0SIMAPP01";

fn fail(code: &str) -> Response {
    Response::json(200, error_body(code))
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(value, RESERVED).to_string()
}

/// `GET /oauth/v2/authorize`: the admin's browser arrives here; the simulated admin decides
/// at once and the answer is a 302 back to `redirect_uri` with `code` (or `error`) and `state`.
pub(crate) fn authorize(sim: &Sim, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::json(405, error_body("method_not_allowed"));
    }
    let q = parse_pairs(&req.query);
    // Slack shows an error page (no redirect) for a request it cannot tie to an app.
    if get(&q, "client_id") != Some(sim.config.oauth_client_id.as_str()) {
        return Response::json(400, error_body("invalid_client_id"));
    }
    let Some(redirect_uri) = get(&q, "redirect_uri") else {
        return Response::json(400, error_body("bad_redirect_uri"));
    };
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return Response::json(400, error_body("bad_redirect_uri"));
    }
    let asked: Vec<String> = get(&q, "user_scope")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if asked.is_empty() {
        return Response::json(400, error_body("no_user_scopes"));
    }
    let mut st = lock(&sim.oauth);
    let consent = st.consent.clone();
    let mut params = Vec::new();
    if consent.approve {
        let code = format!("sim-code-{}", unguessable(&mut st));
        st.codes.insert(
            code.clone(),
            IssuedCode {
                client_id: sim.config.oauth_client_id.clone(),
                redirect_uri: redirect_uri.to_string(),
                scopes: consent.scopes.clone().unwrap_or(asked),
                level: consent.level,
                role: consent.role,
                issued: Instant::now(),
                used: false,
            },
        );
        params.push(("code", code));
    } else {
        params.push(("error", "access_denied".to_string()));
    }
    if let Some(state) = get(&q, "state") {
        params.push(("state", state.to_string()));
    }
    let mut location = redirect_uri.to_string();
    for (i, (k, v)) in params.iter().enumerate() {
        let sep = if i == 0 && !redirect_uri.contains('?') {
            '?'
        } else {
            '&'
        };
        location.push(sep);
        location.push_str(k);
        location.push('=');
        location.push_str(&encode(v));
    }
    Response {
        status: 302,
        content_type: "text/html; charset=utf-8".into(),
        headers: vec![("Location".into(), location)],
        body: b"<html><body>Redirecting back to the app.</body></html>".to_vec(),
    }
}

/// Form fields of a POST (the Web API also takes them in the query string).
fn args(req: &Request) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let is_form = req.header("content-type").is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if is_form {
        pairs = parse_pairs(&String::from_utf8_lossy(&req.body));
    }
    pairs.extend(parse_pairs(&req.query));
    pairs
}

/// `Authorization: Basic base64(client_id:client_secret)`, the form Slack recommends.
fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.header("authorization")?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// `POST /api/oauth.v2.access`: exchanges a code for the user token, once.
pub(crate) fn access(sim: &Sim, req: &Request) -> Response {
    if req.method != "POST" {
        return Response::json(405, error_body("method_not_allowed"));
    }
    let a = args(req);
    let (client_id, client_secret) = match basic_credentials(req) {
        Some(pair) => pair,
        None => (
            get(&a, "client_id").unwrap_or("").to_string(),
            get(&a, "client_secret").unwrap_or("").to_string(),
        ),
    };
    if client_id != sim.config.oauth_client_id {
        return fail("invalid_client_id");
    }
    if client_secret != sim.config.oauth_client_secret {
        return fail("bad_client_secret");
    }
    let Some(code) = get(&a, "code") else {
        return fail("invalid_code");
    };
    let mut st = lock(&sim.oauth);
    let Some(issued) = st.codes.get_mut(code) else {
        return fail("invalid_code");
    };
    // Slack: codes are single use and expire after ten minutes; both answer invalid_code.
    if issued.used || issued.issued.elapsed() > CODE_TTL || issued.client_id != client_id {
        issued.used = true;
        return fail("invalid_code");
    }
    issued.used = true;
    if get(&a, "redirect_uri") != Some(issued.redirect_uri.as_str()) {
        return fail("bad_redirect_uri");
    }
    let (scopes, level, role) = (issued.scopes.clone(), issued.level, issued.role);
    let token = format!("xoxp-sim-oauth-{}", unguessable(&mut st));
    st.issued.push(token.clone());
    drop(st);

    let team_id = match level {
        InstallLevel::Org => ENTERPRISE_ID.to_string(),
        InstallLevel::Workspace => WORKSPACE_IDS[0].to_string(),
    };
    let spec = TokenSpec {
        kind: TokenKind::User,
        scopes: scopes.clone(),
        level,
        team_id: team_id.clone(),
        plan: Plan::Enterprise,
        role,
        granted_teams: match level {
            InstallLevel::Org => WORKSPACE_IDS[..2].iter().map(|s| s.to_string()).collect(),
            InstallLevel::Workspace => vec![team_id.clone()],
        },
        revoked: false,
        expired: false,
    };
    write(&sim.tokens).insert(token.clone(), spec);

    // The installing admin: the first human of the generated org.
    let user_id = sim
        .world
        .humans
        .first()
        .map(|&i| sim.world.users[i].id.clone())
        .unwrap_or_else(|| "U0SIMADMIN".into());
    let team = match level {
        InstallLevel::Org => serde_json::Value::Null,
        InstallLevel::Workspace => json!({"id": team_id, "name": "Sim Workspace"}),
    };
    let body = json!({
        "ok": true,
        "app_id": APP_ID,
        "authed_user": {
            "id": user_id,
            "scope": scopes.join(","),
            "access_token": token,
            "token_type": "user",
        },
        "team": team,
        "enterprise": {"id": ENTERPRISE_ID, "name": "Sim Org"},
        "is_enterprise_install": level == InstallLevel::Org,
    });
    Response::json(200, body.to_string())
}

/// `POST /api/auth.revoke`: the calling token stops working (`test=1`: only checks it).
pub(crate) fn revoke(sim: &Sim, req: &Request) -> Response {
    if req.method != "POST" && req.method != "GET" {
        return Response::json(405, error_body("method_not_allowed"));
    }
    let a = args(req);
    let header = req.header("authorization").and_then(bearer);
    let Some(token) = header.or_else(|| get(&a, "token")) else {
        return fail("not_authed");
    };
    let test = matches!(get(&a, "test"), Some("1" | "true"));
    let mut tokens = write(&sim.tokens);
    let Some(spec) = tokens.get_mut(token) else {
        return fail("invalid_auth");
    };
    if spec.revoked {
        return fail("token_revoked");
    }
    if spec.expired {
        return fail("token_expired");
    }
    if !test {
        spec.revoked = true;
    }
    Response::json(200, json!({"ok": true, "revoked": !test}).to_string())
}

/// Whether `token` is issued and still valid: `None` if the simulator does not know it.
pub(crate) fn token_active(sim: &Sim, token: &str) -> Option<bool> {
    crate::read(&sim.tokens)
        .get(token)
        .map(|s| !s.revoked && !s.expired)
}
