//! The OAuth install flow end to end: the built component in `slack-logs serve`, configured with
//! the app's client id and secret and no `slack_token`, against the simulator's authorize page,
//! `oauth.v2.access` and `auth.revoke`. A browser is played by a raw HTTP client that follows
//! each redirect by hand, so every hop is checked.

mod common;

use common::*;
use slack_sim::{OAuthConsent, SimConfig, Simulator};

const KEY: &str = "e2e-token-encryption-key-0123456789abcdef";
const SECRET: &str = "let-me-in";

fn param(url: &str, name: &str) -> Option<String> {
    slack_logs_core::synthetic::parse_query(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Replaces the value of `name` in a URL's query.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, q) = url.split_once('?').expect("a query");
    let q: Vec<String> = q
        .split('&')
        .map(|p| {
            if p.starts_with(&format!("{name}=")) {
                format!("{name}={value}")
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{base}?{}", q.join("&"))
}

struct Setup {
    sim: Simulator,
    dir: Scratch,
    port: u16,
    _server: KillOnDrop,
    start: i64,
}

impl Setup {
    fn host_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `/oauth/start` → Slack's authorize page → back: the URL the browser would open next,
    /// on the collector's callback.
    fn go_to_slack_and_back(&self) -> String {
        let to_slack = request("GET", &self.host_url("/oauth/start"), None).location();
        let back = request("GET", &to_slack, None).location();
        assert!(
            back.starts_with(&self.host_url("/oauth/callback?")),
            "{back}"
        );
        back
    }

    fn collect(&self) -> (u16, serde_json::Value) {
        let r = request(
            "POST",
            &self.host_url("/collect"),
            Some(&format!("Bearer {SECRET}")),
        );
        let v = serde_json::from_str(&r.body).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(self.dir.path("serve.log")).unwrap_or_default();
            panic!("{e}: {}\nhost log:\n{log}", r.body)
        });
        (r.status, v)
    }

    fn exchanges(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.path == "/api/oauth.v2.access")
            .count()
    }

    /// Every byte the host keeps on disk for its state (the database and its journal files).
    fn state_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&self.dir.0).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("state.db") {
                all.extend(std::fs::read(entry.path()).unwrap_or_default());
            }
        }
        all
    }
}

fn setup(name: &str) -> Setup {
    let sim = Simulator::start(SimConfig {
        seed: 41,
        ..SimConfig::default()
    })
    .unwrap();
    let start = now() - 3 * 3600;
    let dir = Scratch::new(name);
    let port = free_port();
    let mut settings: Vec<(&str, String)> = audit_settings(&sim, start)
        .into_iter()
        .filter(|(k, _)| *k != "slack_token" && *k != "streams")
        .collect();
    settings.extend([
        ("streams", "audit,integration".to_string()),
        ("integration_page_size", "50".into()),
        ("web_requests_per_minute", "0".into()),
        ("collect_secret", SECRET.into()),
        ("slack_oauth_base", sim.base_url()),
        ("slack_client_id", sim.config().oauth_client_id.clone()),
        (
            "slack_client_secret",
            sim.config().oauth_client_secret.clone(),
        ),
        (
            "oauth_redirect_url",
            format!("http://127.0.0.1:{port}/oauth/callback"),
        ),
        ("token_encryption_key", KEY.into()),
    ]);
    let log = std::fs::File::create(dir.path("serve.log")).unwrap();
    let server = serve_on(host(&dir, &settings), port, log);
    Setup {
        sim,
        dir,
        port,
        _server: server,
        start,
    }
}

#[test]
fn oauth_install_collect_and_revoke() {
    let s = setup("oauth");

    // Nothing installed yet: a pass says where to get a token.
    let (status, report) = s.collect();
    assert_eq!(status, 500, "{report}");
    for stream in report["streams"].as_array().unwrap() {
        assert_eq!(stream["error_code"], "no_token", "{report}");
        assert!(
            stream["message"].as_str().unwrap().contains("/oauth/start"),
            "{report}"
        );
    }

    // /oauth/start sends the browser to Slack's authorize page with the app, scopes, redirect
    // and a fresh state.
    let to_slack = request("GET", &s.host_url("/oauth/start"), None).location();
    assert!(
        to_slack.starts_with(&format!("{}/oauth/v2/authorize?", s.sim.base_url())),
        "{to_slack}"
    );
    assert_eq!(
        param(&to_slack, "client_id").as_deref(),
        Some(s.sim.config().oauth_client_id.as_str())
    );
    assert_eq!(
        param(&to_slack, "user_scope").as_deref(),
        Some("admin,auditlogs:read")
    );
    assert_eq!(
        param(&to_slack, "redirect_uri"),
        Some(s.host_url("/oauth/callback"))
    );
    let state = param(&to_slack, "state").expect("state");
    assert_eq!(state.len(), 64, "{state}");
    let other_state = param(
        &request("GET", &s.host_url("/oauth/start"), None).location(),
        "state",
    )
    .unwrap();
    assert_ne!(state, other_state, "every start gets its own state");

    // A callback with a state this collector never issued: explained, nothing exchanged.
    let back = request("GET", &to_slack, None).location();
    assert_eq!(param(&back, "state").as_deref(), Some(state.as_str()));
    let forged = request("GET", &with_param(&back, "state", &"f".repeat(64)), None);
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert!(
        forged.body.contains("not one this collector issued"),
        "{}",
        forged.body
    );
    assert!(
        forged
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{:?}",
        forged.headers
    );
    assert_eq!(s.exchanges(), 0, "no code exchange without a valid state");

    // The admin cancels in Slack.
    s.sim.set_oauth_consent(OAuthConsent::deny());
    let denied_url = s.go_to_slack_and_back();
    assert_eq!(
        param(&denied_url, "error").as_deref(),
        Some("access_denied")
    );
    let denied = request("GET", &denied_url, None);
    assert_eq!(denied.status, 400);
    assert!(denied.body.contains("cancelled"), "{}", denied.body);

    // The admin grants fewer scopes than the streams need: the page names the missing one, the
    // token is not kept, and Slack is told to revoke it.
    s.sim.set_oauth_consent(OAuthConsent::granting(&["admin"]));
    let narrow = request("GET", &s.go_to_slack_and_back(), None);
    assert_eq!(narrow.status, 400, "{}", narrow.body);
    assert!(
        narrow.body.contains("did not grant auditlogs:read"),
        "{}",
        narrow.body
    );
    let narrow_token = s
        .sim
        .oauth_tokens()
        .last()
        .cloned()
        .expect("a token was issued");
    assert_eq!(
        s.sim.token_active(&narrow_token),
        Some(false),
        "the refused grant was revoked at Slack"
    );
    assert!(!narrow.body.contains(&narrow_token));

    // A workspace install cannot read audit logs.
    s.sim.set_oauth_consent(OAuthConsent::workspace_install());
    let ws = request("GET", &s.go_to_slack_and_back(), None);
    assert_eq!(ws.status, 400, "{}", ws.body);
    assert!(ws.body.contains("org-wide install"), "{}", ws.body);
    let (status, report) = s.collect();
    assert_eq!(status, 500, "still nothing installed: {report}");

    // The real thing: an Org Owner approves on the org.
    s.sim.set_oauth_consent(OAuthConsent::default());
    let callback = s.go_to_slack_and_back();
    let done = request("GET", &callback, None);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Slack app installed") && done.body.contains("org-wide install"),
        "{}",
        done.body
    );
    assert_eq!(done.header("cache-control"), Some("no-store"));
    let token = s.sim.oauth_tokens().last().cloned().unwrap();
    assert_ne!(token, narrow_token);
    assert!(
        !done.body.contains(&token),
        "the page never shows the token"
    );

    // The same callback again (browser back button, a leaked URL): the state is used up.
    let replay = request("GET", &callback, None);
    assert_eq!(replay.status, 400, "{}", replay.body);
    // And a second install is refused while this one stands.
    let again = request("GET", &s.host_url("/oauth/start"), None);
    assert_eq!(again.status, 409, "{}", again.body);

    // Passes now collect with the installed token.
    let (status, report) = s.collect();
    assert_eq!(status, 200, "{report}");
    let audit = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stream"] == "audit")
        .unwrap();
    let expected = truth(&s.sim, s.start, now());
    assert_eq!(
        audit["records"].as_u64().unwrap() as usize,
        expected.len(),
        "{report}"
    );
    let delivered = delivered_ids(&s.dir.path("out.ndjson"));
    assert!(expected.is_subset(&set(&delivered)));
    let integration = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stream"] == "integration")
        .unwrap();
    assert!(integration["records"].as_u64().unwrap() > 0, "{report}");
    let used_token = s
        .sim
        .requests()
        .iter()
        .filter(|r| {
            r.path.starts_with("/audit/v1/logs") || r.path.ends_with("team.integrationLogs")
        })
        .all(|r| r.status == 200 && r.has_authorization);
    assert!(
        used_token,
        "every log request carried the token and succeeded"
    );

    // /status shows the install, never the token; the state file holds it only sealed.
    let status = request("GET", &s.host_url("/status"), None);
    assert_eq!(status.status, 200);
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(v["oauth"]["installed"], true, "{v}");
    assert_eq!(v["oauth"]["is_enterprise_install"], true);
    assert!(!status.body.contains(&token), "{}", status.body);
    let bytes = s.state_bytes();
    assert!(!bytes.is_empty());
    let needle = token.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the token is in the state file in clear"
    );
    assert!(
        bytes
            .windows(b"chacha20poly1305".len())
            .any(|w| w == b"chacha20poly1305"),
        "the sealed token is there"
    );

    // Revoking needs the collect secret, revokes at Slack and forgets the token.
    assert_eq!(
        request("POST", &s.host_url("/oauth/revoke"), None).status,
        401
    );
    assert_eq!(s.sim.token_active(&token), Some(true));
    let revoked = request(
        "POST",
        &s.host_url("/oauth/revoke"),
        Some(&format!("Bearer {SECRET}")),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let v: serde_json::Value = serde_json::from_str(&revoked.body).unwrap();
    assert_eq!(v["revoked_at_slack"], true, "{v}");
    assert_eq!(
        s.sim.token_active(&token),
        Some(false),
        "the simulator says revoked"
    );
    assert!(s
        .sim
        .requests()
        .iter()
        .any(|r| r.path == "/api/auth.revoke" && r.status == 200 && r.has_authorization));
    let (status, report) = s.collect();
    assert_eq!(status, 500, "{report}");
    assert!(
        report["streams"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/oauth/start"),
        "{report}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&request("GET", &s.host_url("/status"), None).body).unwrap();
    assert_eq!(v["oauth"]["installed"], false, "{v}");
    let again = request(
        "POST",
        &s.host_url("/oauth/revoke"),
        Some(&format!("Bearer {SECRET}")),
    );
    assert_eq!(again.status, 404, "{}", again.body);

    // Nothing the host logged carries a token or a secret.
    let log = std::fs::read_to_string(s.dir.path("serve.log")).unwrap_or_default();
    for secret in [
        token.as_str(),
        narrow_token.as_str(),
        KEY,
        s.sim.config().oauth_client_secret.as_str(),
    ] {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
}

/// `slack-app-manifest.yaml` asks for the user scopes the collector checks for, no bot scopes,
/// an org-wide install and a redirect URL on the callback route.
#[test]
fn app_manifest_asks_for_what_the_streams_need() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/slack-app-manifest.yaml"
    ))
    .unwrap();
    // The YAML is simple enough to read by its lines; no YAML parser in the test dependencies.
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim_end())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let after = |key: &str| {
        lines
            .iter()
            .position(|l| l.trim() == key)
            .unwrap_or_else(|| panic!("no `{key}` in the manifest"))
    };
    let list = |from: usize| -> Vec<String> {
        lines[from + 1..]
            .iter()
            .take_while(|l| l.trim_start().starts_with("- "))
            .map(|l| l.trim_start()[2..].trim().to_string())
            .collect()
    };
    let user_scopes = list(after("user:"));
    let all = slack_logs_core::oauth::required_scopes(&slack_logs_core::Stream::ALL);
    assert_eq!(user_scopes, all, "user scopes");
    assert!(
        !lines.iter().any(|l| l.trim() == "bot:"),
        "no bot scopes: the log APIs refuse bot tokens"
    );
    let redirects = list(after("redirect_urls:"));
    assert_eq!(redirects.len(), 1);
    assert!(
        redirects[0].starts_with("https://") && redirects[0].ends_with("/oauth/callback"),
        "{redirects:?}"
    );
    assert!(
        lines.iter().any(|l| l.trim() == "org_deploy_enabled: true"),
        "audit logs need the org-wide install"
    );
    assert!(lines
        .iter()
        .any(|l| l.trim() == "token_rotation_enabled: false"));
}
