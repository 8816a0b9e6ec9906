//! The OAuth install flow: authorize redirects, the single-use code exchange, revocation, and
//! issued tokens working on the log APIs.

use super::client::{enc, get, post_form, send};
use super::{config, start};
use crate::{OAuthConsent, Simulator};

const REDIRECT: &str = "http://127.0.0.1:3000/x/oauth/callback";

fn authorize(sim: &Simulator, scopes: &str, state: &str) -> super::client::Reply {
    let target = format!(
        "/oauth/v2/authorize?client_id={}&user_scope={}&redirect_uri={}&state={state}",
        enc(&sim.config().oauth_client_id),
        enc(scopes),
        enc(REDIRECT)
    );
    get(sim, &target, None)
}

/// The query pairs of the redirect's Location.
fn redirected(reply: &super::client::Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, 302);
    let location = reply.header("location").expect("Location");
    let (base, query) = location.split_once('?').expect("a query");
    assert_eq!(base, REDIRECT);
    crate::http::parse_pairs(query)
}

fn code_of(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.clone())
        .expect("code")
}

fn exchange(sim: &Simulator, code: &str, secret: &str, redirect: &str) -> serde_json::Value {
    let form = format!(
        "client_id={}&client_secret={}&code={}&redirect_uri={}",
        enc(&sim.config().oauth_client_id),
        enc(secret),
        enc(code),
        enc(redirect)
    );
    post_form(sim, "/api/oauth.v2.access", &form).json()
}

#[test]
fn approved_install_gives_a_working_org_token_once() {
    let sim = start(config());
    let pairs = redirected(&authorize(&sim, "admin,auditlogs:read", "st4te"));
    assert!(
        pairs.contains(&("state".into(), "st4te".into())),
        "{pairs:?}"
    );
    let code = code_of(&pairs);
    let secret = sim.config().oauth_client_secret.clone();

    let v = exchange(&sim, &code, &secret, REDIRECT);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["is_enterprise_install"], true);
    assert!(v["team"].is_null());
    assert_eq!(v["enterprise"]["id"], crate::ENTERPRISE_ID);
    assert_eq!(v["authed_user"]["scope"], "admin,auditlogs:read");
    assert_eq!(v["authed_user"]["token_type"], "user");
    let token = v["authed_user"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with("xoxp-"));
    assert_eq!(sim.oauth_tokens(), vec![token.clone()]);

    // The token works on audit and team.* like the built-in org owner's.
    assert_eq!(
        get(&sim, "/audit/v1/logs?limit=1", Some(&token)).status,
        200
    );
    assert_eq!(
        get(&sim, "/api/team.accessLogs?limit=1", Some(&token)).json()["ok"],
        true
    );

    // Codes are single use; the secret is checked; the client secret is not logged.
    assert_eq!(
        exchange(&sim, &code, &secret, REDIRECT)["error"],
        "invalid_code"
    );
    let log = sim.requests();
    let logged = log
        .iter()
        .find(|r| r.path == "/api/oauth.v2.access")
        .unwrap();
    assert!(
        logged
            .form
            .contains(&("client_secret".into(), "<redacted>".into())),
        "{:?}",
        logged.form
    );
}

#[test]
fn exchange_checks_client_redirect_and_code() {
    let sim = start(config());
    let secret = sim.config().oauth_client_secret.clone();
    let code = code_of(&redirected(&authorize(&sim, "admin", "s")));
    assert_eq!(
        exchange(&sim, &code, "wrong", REDIRECT)["error"],
        "bad_client_secret"
    );
    assert_eq!(
        exchange(&sim, &code, &secret, "http://127.0.0.1:3000/other")["error"],
        "bad_redirect_uri"
    );
    assert_eq!(
        exchange(&sim, "made-up", &secret, REDIRECT)["error"],
        "invalid_code"
    );
    let wrong_client = get(
        &sim,
        &format!(
            "/oauth/v2/authorize?client_id=nope&user_scope=admin&redirect_uri={}",
            enc(REDIRECT)
        ),
        None,
    );
    assert_eq!(wrong_client.status, 400);
    assert_eq!(wrong_client.error(), "invalid_client_id");
    // HTTP Basic credentials, as Slack recommends, work too.
    let code = code_of(&redirected(&authorize(&sim, "admin", "s")));
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{secret}", sim.config().oauth_client_id).as_bytes(),
    );
    let auth = format!("Basic {basic}");
    let form = format!("code={}&redirect_uri={}", enc(&code), enc(REDIRECT));
    let v = send(
        &sim,
        "POST",
        "/api/oauth.v2.access",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    )
    .json();
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn consent_can_deny_narrow_or_install_on_a_workspace() {
    let sim = start(config());
    let secret = sim.config().oauth_client_secret.clone();
    sim.set_oauth_consent(OAuthConsent::deny());
    let pairs = redirected(&authorize(&sim, "admin,auditlogs:read", "s1"));
    assert!(
        pairs.contains(&("error".into(), "access_denied".into())),
        "{pairs:?}"
    );
    assert!(pairs.contains(&("state".into(), "s1".into())));

    sim.set_oauth_consent(OAuthConsent::granting(&["admin"]));
    let v = exchange(
        &sim,
        &code_of(&redirected(&authorize(&sim, "admin,auditlogs:read", "s2"))),
        &secret,
        REDIRECT,
    );
    assert_eq!(v["authed_user"]["scope"], "admin");
    let narrow = v["authed_user"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&sim, "/audit/v1/logs?limit=1", Some(&narrow)).status,
        403,
        "no auditlogs:read"
    );

    sim.set_oauth_consent(OAuthConsent::workspace_install());
    let v = exchange(
        &sim,
        &code_of(&redirected(&authorize(&sim, "admin,auditlogs:read", "s3"))),
        &secret,
        REDIRECT,
    );
    assert_eq!(v["is_enterprise_install"], false);
    assert_eq!(v["team"]["id"], crate::WORKSPACE_IDS[0]);
    let ws = v["authed_user"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let audit = get(&sim, "/audit/v1/logs?limit=1", Some(&ws));
    assert_eq!(
        (audit.status, audit.error()),
        (403, "team_not_authorized".to_string())
    );
}

#[test]
fn revoked_tokens_stop_working() {
    let sim = start(config());
    let secret = sim.config().oauth_client_secret.clone();
    let v = exchange(
        &sim,
        &code_of(&redirected(&authorize(&sim, "admin,auditlogs:read", "s"))),
        &secret,
        REDIRECT,
    );
    let token = v["authed_user"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = format!("Bearer {token}");
    let revoke = |test: &str| {
        send(
            &sim,
            "POST",
            &format!("/api/auth.revoke{test}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"",
        )
        .json()
    };
    assert_eq!(revoke("?test=1")["revoked"], false);
    assert_eq!(sim.token_active(&token), Some(true));
    let r = revoke("");
    assert_eq!(
        (r["ok"].clone(), r["revoked"].clone()),
        (true.into(), true.into()),
        "{r}"
    );
    assert_eq!(sim.token_active(&token), Some(false));
    assert_eq!(revoke("")["error"], "token_revoked");
    assert_eq!(
        get(&sim, "/api/team.integrationLogs", Some(&token)).error(),
        "token_revoked"
    );
    assert_eq!(get(&sim, "/audit/v1/logs", Some(&token)).status, 401);
    assert_eq!(sim.token_active("xoxp-never-issued"), None);
}
