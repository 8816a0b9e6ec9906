use super::*;
use crate::env::HttpResponse;
use crate::testutil::{MemStore, ScriptedTransport};

const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";
const TOKEN: &str = "xoxp-oauth-user-token-1";
const NOW: i64 = 1_700_000_000;

fn config(extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("slack_client_id", "111.222"),
        ("slack_client_secret", "client-secret-value"),
        (
            "oauth_redirect_url",
            "https://collector.example.com/slack-logs/oauth/callback",
        ),
        ("token_encryption_key", KEY),
        ("slack_api_base", "http://127.0.0.1:9/api"),
    ];
    pairs.extend_from_slice(extra);
    Config::from_pairs(&pairs).unwrap()
}

fn ok(body: serde_json::Value) -> Result<HttpResponse, crate::env::TransportError> {
    Ok(HttpResponse {
        status: 200,
        retry_after: None,
        date: None,
        body: body.to_string().into_bytes(),
    })
}

fn access_answer(scope: &str, org: bool) -> serde_json::Value {
    serde_json::json!({
        "ok": true,
        "app_id": "A0SIM",
        "authed_user": {"id": "U0OWNER", "scope": scope, "access_token": TOKEN, "token_type": "user"},
        "team": if org { serde_json::Value::Null } else { serde_json::json!({"id": "T0WS", "name": "ws"}) },
        "enterprise": {"id": "E0ORG", "name": "org"},
        "is_enterprise_install": org,
    })
}

/// The `state` inside an authorize URL.
fn state_of(url: &str) -> String {
    crate::synthetic::parse_query(url)
        .into_iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v)
        .expect("state in the URL")
}

fn installed(store: &mut MemStore, config: &Config) -> Installation {
    let url = start(config, store, NOW, [7; STATE_BYTES]).unwrap();
    let state = state_of(&url);
    let mut t = ScriptedTransport::new(vec![ok(access_answer("admin,auditlogs:read", true))]);
    callback(
        config,
        store,
        &mut t,
        &format!("/oauth/callback?code=c1&state={state}"),
        NOW + 5,
        [1; NONCE_BYTES],
    )
    .unwrap()
}

#[test]
fn scopes_follow_the_streams() {
    assert_eq!(
        required_scopes(&Stream::ALL),
        vec!["admin", "auditlogs:read"]
    );
    assert_eq!(required_scopes(&[Stream::Audit]), vec!["auditlogs:read"]);
    assert_eq!(
        required_scopes(&[Stream::Access, Stream::Integration]),
        vec!["admin"]
    );
}

#[test]
fn authorize_url_carries_client_scopes_redirect_and_state() {
    let url = authorize_url(
        "https://slack.com",
        "111.222",
        "https://x.example/oauth/callback",
        &Stream::ALL,
        "abc",
    );
    assert_eq!(
        url,
        "https://slack.com/oauth/v2/authorize?client_id=111.222&user_scope=admin%2Cauditlogs%3Aread\
         &redirect_uri=https%3A%2F%2Fx.example%2Foauth%2Fcallback&state=abc"
    );
}

#[test]
fn states_are_random_hex_and_single_use() {
    assert_eq!(new_state([0xab; STATE_BYTES]), "ab".repeat(STATE_BYTES));
    assert_ne!(new_state([1; STATE_BYTES]), new_state([2; STATE_BYTES]));
    let mut p = PendingStates::default();
    p.issue("s1", NOW);
    p.issue("s2", NOW);
    assert_eq!(p.consume("nope", NOW), Err(OAuthError::UnknownState));
    assert_eq!(p.consume("s1", NOW + 10), Ok(()));
    assert_eq!(
        p.consume("s1", NOW + 10),
        Err(OAuthError::UnknownState),
        "used once only"
    );
    // Expired: refused, and gone afterwards.
    assert_eq!(
        p.consume("s2", NOW + STATE_TTL_SECONDS + 1),
        Err(OAuthError::ExpiredState)
    );
    assert_eq!(p.consume("s2", NOW), Err(OAuthError::UnknownState));
    // The stored form holds hashes, not the values.
    p.issue("visible-state", NOW);
    assert!(!String::from_utf8(p.encode())
        .unwrap()
        .contains("visible-state"));
}

#[test]
fn pending_states_stay_bounded_and_survive_garbage() {
    let mut p = PendingStates::decode(Some(b"not json"));
    assert!(p.is_empty());
    for i in 0..20 {
        p.issue(&format!("s{i}"), NOW);
    }
    assert_eq!(p.len(), MAX_PENDING);
    assert_eq!(
        p.consume("s0", NOW),
        Err(OAuthError::UnknownState),
        "the oldest went first"
    );
    assert_eq!(p.consume("s19", NOW), Ok(()));
    // Expired entries are dropped when a new one is issued.
    p.issue("late", NOW + STATE_TTL_SECONDS + 1);
    assert_eq!(p.len(), 1);
    let round = PendingStates::decode(Some(&p.encode()));
    assert_eq!(round, p);
}

#[test]
fn access_answer_in_slacks_shape_is_read() {
    let g = parse_access_response(
        200,
        access_answer("admin, auditlogs:read", true)
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(g.access_token, TOKEN);
    assert_eq!(g.user_id, "U0OWNER");
    assert_eq!(g.scopes, vec!["admin", "auditlogs:read"]);
    assert_eq!(g.team_id, None, "team is null on an org install");
    assert_eq!(g.enterprise_id.as_deref(), Some("E0ORG"));
    assert!(g.is_enterprise_install);
    assert!(!format!("{g:?}").contains(TOKEN), "Debug hides the token");
}

#[test]
fn access_answer_errors_are_classified() {
    let e = parse_access_response(200, br#"{"ok":false,"error":"bad_client_secret"}"#).unwrap_err();
    assert_eq!(
        e,
        OAuthError::Exchange {
            error: "bad_client_secret".into()
        }
    );
    assert!(e.to_string().contains("slack_client_secret"), "{e}");
    let e = parse_access_response(
        200,
        br#"{"ok":true,"access_token":"xoxb-1","token_type":"bot"}"#,
    )
    .unwrap_err();
    assert_eq!(e, OAuthError::NoUserToken);
    let bot_as_user =
        r#"{"ok":true,"authed_user":{"id":"U1","scope":"admin","access_token":"xoxb-9"}}"#;
    assert!(matches!(
        parse_access_response(200, bot_as_user.as_bytes()),
        Err(OAuthError::Malformed(_))
    ));
    let e = parse_access_response(502, b"<html>bad gateway</html>").unwrap_err();
    assert!(
        matches!(e, OAuthError::Malformed(_)) && e.to_string().contains("502"),
        "{e}"
    );
}

#[test]
fn grants_are_checked_against_the_streams() {
    let grant = |scope: &str, org: bool| {
        parse_access_response(200, access_answer(scope, org).to_string().as_bytes()).unwrap()
    };
    assert_eq!(
        check_grant(&grant("admin,auditlogs:read", true), &Stream::ALL),
        Ok(())
    );
    let e = check_grant(&grant("admin", true), &Stream::ALL).unwrap_err();
    assert_eq!(
        e,
        OAuthError::MissingScopes {
            missing: vec!["auditlogs:read".into()],
            granted: vec!["admin".into()]
        }
    );
    assert!(e.to_string().contains("auditlogs:read"), "{e}");
    let e = check_grant(&grant("channels:read", true), &[Stream::Access]).unwrap_err();
    assert!(e.to_string().contains("did not grant admin"), "{e}");
    // Audit needs the org-wide install; the workspace streams do not.
    assert_eq!(
        check_grant(&grant("admin,auditlogs:read", false), &Stream::ALL),
        Err(OAuthError::NotOrgInstall)
    );
    assert_eq!(
        check_grant(
            &grant("admin", false),
            &[Stream::Access, Stream::Integration]
        ),
        Ok(())
    );
}

fn info() -> Installation {
    Installation {
        user_id: "U1".into(),
        scopes: vec!["admin".into()],
        team_id: None,
        enterprise_id: Some("E1".into()),
        is_enterprise_install: true,
        installed_at: NOW,
    }
}

#[test]
fn sealed_tokens_open_only_with_their_key() {
    let sealed = seal(TOKEN, KEY, [9; NONCE_BYTES], info()).unwrap();
    let stored = serde_json::to_string(&sealed).unwrap();
    assert!(
        !stored.contains(TOKEN) && !stored.contains("oauth-user-token"),
        "{stored}"
    );
    assert_eq!(unseal(&sealed, KEY).unwrap(), TOKEN);
    let e = unseal(&sealed, "another-key-of-at-least-32-characters!!").unwrap_err();
    assert!(
        matches!(e, OAuthError::Unreadable(_)) && e.to_string().contains("token_encryption_key"),
        "{e}"
    );
    // A flipped bit in the ciphertext is detected, not decrypted into garbage.
    let mut tampered = sealed.clone();
    let flipped = if tampered.sealed.starts_with('0') {
        "1"
    } else {
        "0"
    };
    tampered.sealed.replace_range(0..1, flipped);
    assert!(unseal(&tampered, KEY).is_err());
    let mut bad_hex = sealed.clone();
    bad_hex.nonce = "zz".into();
    assert!(unseal(&bad_hex, KEY).is_err());
    // Another nonce, another ciphertext.
    assert_ne!(
        seal(TOKEN, KEY, [8; NONCE_BYTES], info()).unwrap().sealed,
        sealed.sealed
    );
}

#[test]
fn the_whole_flow_stores_a_sealed_token_that_passes_use() {
    let c = config(&[]);
    let mut store = MemStore::default();
    let url = start(&c, &mut store, NOW, [7; STATE_BYTES]).unwrap();
    assert!(
        url.starts_with("https://slack.com/oauth/v2/authorize?client_id=111.222&"),
        "{url}"
    );
    let state = state_of(&url);
    assert_eq!(state.len(), 2 * STATE_BYTES);

    let mut t = ScriptedTransport::new(vec![ok(access_answer("admin,auditlogs:read", true))]);
    let got = callback(
        &c,
        &mut store,
        &mut t,
        &format!("/x/oauth/callback?code=the-code&state={state}"),
        NOW + 30,
        [1; NONCE_BYTES],
    )
    .unwrap();
    assert_eq!(got.user_id, "U0OWNER");
    assert!(got.is_enterprise_install);
    let (url, bearer, form) = &t.posts[0];
    assert_eq!(url, "http://127.0.0.1:9/api/oauth.v2.access");
    assert_eq!(bearer, &None);
    assert_eq!(
        form,
        "client_id=111.222&client_secret=client-secret-value&code=the-code\
         &redirect_uri=https%3A%2F%2Fcollector.example.com%2Fslack-logs%2Foauth%2Fcallback"
    );
    let raw = String::from_utf8(store.map[TOKEN_KEY].clone()).unwrap();
    assert!(!raw.contains(TOKEN), "sealed at rest: {raw}");
    assert_eq!(installation(&mut store).unwrap(), Some(got.clone()));

    // A later pass finds it.
    let mut pass_config = c.clone();
    assert_eq!(
        resolve_token(&mut pass_config, &mut store).unwrap(),
        Some(got)
    );
    assert_eq!(pass_config.slack_token.as_deref(), Some(TOKEN));
    assert_eq!(pass_config.audit_token(), Some(TOKEN));

    // The state was single use, and a second install is refused until the first is revoked.
    let mut t = ScriptedTransport::new(vec![]);
    let again = callback(
        &c,
        &mut store,
        &mut t,
        &format!("/oauth/callback?code=c2&state={state}"),
        NOW + 31,
        [2; NONCE_BYTES],
    );
    assert_eq!(again, Err(OAuthError::UnknownState));
    assert_eq!(
        start(&c, &mut store, NOW, [8; STATE_BYTES]),
        Err(OAuthError::AlreadyInstalled)
    );
    assert!(t.posts.is_empty(), "nothing sent to Slack");
}

#[test]
fn a_configured_token_wins() {
    let c = config(&[("slack_token", "xoxp-configured")]);
    let mut store = MemStore::default();
    installed(&mut store, &config(&[]));
    let mut pass_config = c.clone();
    assert_eq!(resolve_token(&mut pass_config, &mut store).unwrap(), None);
    assert_eq!(pass_config.slack_token.as_deref(), Some("xoxp-configured"));
}

#[test]
fn without_a_token_the_pass_says_where_to_get_one() {
    let mut c = config(&[]);
    let e = resolve_token(&mut c, &mut MemStore::default()).unwrap_err();
    assert_eq!(e, OAuthError::NoTokenYet);
    assert!(e.to_string().contains("/oauth/start"), "{e}");
    // Without OAuth the pass's own `no_token` message applies.
    let mut plain = Config::from_pairs::<&str, &str>(&[]).unwrap();
    assert_eq!(
        resolve_token(&mut plain, &mut MemStore::default()),
        Ok(None)
    );
    // Synthetic data needs no token at all.
    let mut synthetic = config(&[("synthetic_data", "true")]);
    assert_eq!(
        resolve_token(&mut synthetic, &mut MemStore::default()),
        Ok(None)
    );
}

#[test]
fn a_stored_token_needs_the_key_to_be_used() {
    let mut store = MemStore::default();
    installed(&mut store, &config(&[]));
    let mut other_key = config(&[(
        "token_encryption_key",
        "a-completely-different-key-32-chars-long",
    )]);
    let e = resolve_token(&mut other_key, &mut store).unwrap_err();
    assert!(matches!(e, OAuthError::Unreadable(_)), "{e}");
    assert_eq!(other_key.slack_token, None);
}

#[test]
fn no_encryption_key_no_install() {
    let mut c = config(&[]);
    c.token_encryption_key = None;
    let mut store = MemStore::default();
    let e = start(&c, &mut store, NOW, [7; STATE_BYTES]).unwrap_err();
    assert_eq!(e, OAuthError::NoEncryptionKey);
    assert!(e.to_string().contains("token_encryption_key"), "{e}");
    assert!(store.map.is_empty(), "no state issued");
    // And a callback (say, from a start made before the key was removed) stores nothing.
    let mut t = ScriptedTransport::new(vec![ok(access_answer("admin,auditlogs:read", true))]);
    let e = callback(
        &c,
        &mut store,
        &mut t,
        "/oauth/callback?code=c&state=s",
        NOW,
        [1; NONCE_BYTES],
    )
    .unwrap_err();
    assert_eq!(e, OAuthError::NoEncryptionKey);
    assert!(t.posts.is_empty() && !store.map.contains_key(TOKEN_KEY));
}

#[test]
fn unconfigured_oauth_is_explained() {
    let c = Config::from_pairs(&[("token_encryption_key", KEY)]).unwrap();
    let e = start(&c, &mut MemStore::default(), NOW, [7; STATE_BYTES]).unwrap_err();
    assert_eq!(e, OAuthError::NotConfigured);
    assert!(e.to_string().contains("slack_client_id"), "{e}");
}

#[test]
fn bad_callbacks_store_nothing() {
    let c = config(&[]);
    let mut store = MemStore::default();
    let state = state_of(&start(&c, &mut store, NOW, [7; STATE_BYTES]).unwrap());
    let mut t = ScriptedTransport::new(vec![]);
    let mut cb = |store: &mut MemStore, q: &str, now: i64| {
        callback(&c, store, &mut t, q, now, [1; NONCE_BYTES])
    };

    assert_eq!(
        cb(&mut store, "/oauth/callback?code=c&state=forged", NOW),
        Err(OAuthError::UnknownState)
    );
    assert_eq!(
        cb(&mut store, "/oauth/callback?code=c", NOW),
        Err(OAuthError::MissingParameter("state"))
    );
    assert_eq!(
        cb(&mut store, &format!("/oauth/callback?state={state}"), NOW),
        Err(OAuthError::MissingParameter("code"))
    );
    let e = cb(
        &mut store,
        &format!("/oauth/callback?error=access_denied&state={state}"),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        e,
        OAuthError::Denied {
            error: "access_denied".into()
        }
    );
    assert!(e.to_string().contains("cancelled"), "{e}");
    // The denied attempt used its state up.
    assert_eq!(
        cb(
            &mut store,
            &format!("/oauth/callback?code=c&state={state}"),
            NOW
        ),
        Err(OAuthError::UnknownState)
    );

    let late = state_of(&start(&c, &mut store, NOW, [8; STATE_BYTES]).unwrap());
    let e = cb(
        &mut store,
        &format!("/oauth/callback?code=c&state={late}"),
        NOW + STATE_TTL_SECONDS + 1,
    )
    .unwrap_err();
    assert_eq!(e, OAuthError::ExpiredState);
    assert!(t.posts.is_empty(), "no exchange without a valid state");
    assert!(!store.map.contains_key(TOKEN_KEY));
}

#[test]
fn refused_grants_are_revoked_and_not_stored() {
    let c = config(&[]);
    let mut store = MemStore::default();
    let state = state_of(&start(&c, &mut store, NOW, [7; STATE_BYTES]).unwrap());
    let mut t = ScriptedTransport::new(vec![
        ok(access_answer("admin", true)),
        ok(serde_json::json!({"ok": true, "revoked": true})),
    ]);
    let e = callback(
        &c,
        &mut store,
        &mut t,
        &format!("/oauth/callback?code=c&state={state}"),
        NOW,
        [1; NONCE_BYTES],
    )
    .unwrap_err();
    assert!(
        matches!(&e, OAuthError::MissingScopes { missing, .. } if missing == &["auditlogs:read"]),
        "{e:?}"
    );
    assert!(!store.map.contains_key(TOKEN_KEY));
    assert_eq!(t.posts[1].0, "http://127.0.0.1:9/api/auth.revoke");
    assert_eq!(t.posts[1].1.as_deref(), Some(TOKEN));

    let state = state_of(&start(&c, &mut store, NOW, [8; STATE_BYTES]).unwrap());
    let mut t = ScriptedTransport::new(vec![ok(access_answer("admin,auditlogs:read", false))]);
    let e = callback(
        &c,
        &mut store,
        &mut t,
        &format!("/oauth/callback?code=c&state={state}"),
        NOW,
        [1; NONCE_BYTES],
    )
    .unwrap_err();
    assert_eq!(e, OAuthError::NotOrgInstall);
    assert!(!store.map.contains_key(TOKEN_KEY));
}

#[test]
fn exchange_failures_store_nothing() {
    let c = config(&[]);
    let mut store = MemStore::default();
    let state = state_of(&start(&c, &mut store, NOW, [7; STATE_BYTES]).unwrap());
    let mut t = ScriptedTransport::new(vec![ok(
        serde_json::json!({"ok": false, "error": "invalid_code"}),
    )]);
    let e = callback(
        &c,
        &mut store,
        &mut t,
        &format!("/oauth/callback?code=c&state={state}"),
        NOW,
        [1; NONCE_BYTES],
    )
    .unwrap_err();
    assert_eq!(
        e,
        OAuthError::Exchange {
            error: "invalid_code".into()
        }
    );
    let state = state_of(&start(&c, &mut store, NOW, [8; STATE_BYTES]).unwrap());
    let mut t = ScriptedTransport::new(vec![Err(crate::env::TransportError::Timeout)]);
    let e = callback(
        &c,
        &mut store,
        &mut t,
        &format!("/oauth/callback?code=c&state={state}"),
        NOW,
        [1; NONCE_BYTES],
    )
    .unwrap_err();
    assert!(matches!(e, OAuthError::Network(_)), "{e:?}");
    assert!(!store.map.contains_key(TOKEN_KEY));
}

#[test]
fn revoking_asks_slack_then_forgets_the_token() {
    let c = config(&[]);
    let mut store = MemStore::default();
    installed(&mut store, &c);
    // Slack unreachable: the token is kept, so it is never forgotten while still valid.
    let mut t = ScriptedTransport::new(vec![Err(crate::env::TransportError::Timeout)]);
    assert!(matches!(
        revoke(&c, &mut store, &mut t),
        Err(OAuthError::Network(_))
    ));
    assert!(store.map.contains_key(TOKEN_KEY));

    let mut t = ScriptedTransport::new(vec![ok(serde_json::json!({"ok": true, "revoked": true}))]);
    assert_eq!(revoke(&c, &mut store, &mut t), Ok(SlackRevoke::Revoked));
    assert_eq!(t.posts[0].0, "http://127.0.0.1:9/api/auth.revoke");
    assert_eq!(
        t.posts[0].1.as_deref(),
        Some(TOKEN),
        "the token goes in the Authorization header"
    );
    assert_eq!(t.posts[0].2, "", "and nowhere else");
    assert!(!store.map.contains_key(TOKEN_KEY));
    assert_eq!(revoke(&c, &mut store, &mut t), Err(OAuthError::NoTokenYet));

    // A token Slack already forgot is removed too; so is one that no longer opens.
    installed(&mut store, &c);
    let mut t = ScriptedTransport::new(vec![ok(
        serde_json::json!({"ok": false, "error": "token_revoked"}),
    )]);
    assert_eq!(
        revoke(&c, &mut store, &mut t),
        Ok(SlackRevoke::AlreadyInvalid("token_revoked".into()))
    );
    installed(&mut store, &c);
    let other = config(&[(
        "token_encryption_key",
        "a-completely-different-key-32-chars-long",
    )]);
    let mut t = ScriptedTransport::new(vec![]);
    assert!(matches!(
        revoke(&other, &mut store, &mut t),
        Ok(SlackRevoke::NotAsked(_))
    ));
    assert!(t.posts.is_empty() && !store.map.contains_key(TOKEN_KEY));
}

#[test]
fn messages_never_show_secrets() {
    let errors = [
        OAuthError::NotConfigured,
        OAuthError::NoEncryptionKey,
        OAuthError::Exchange {
            error: "bad_client_secret".into(),
        },
        OAuthError::MissingScopes {
            missing: vec!["admin".into()],
            granted: vec![],
        },
        OAuthError::NotOrgInstall,
        OAuthError::NoTokenYet,
    ];
    for e in errors {
        let m = e.to_string();
        assert!(
            !m.contains("client-secret-value") && !m.contains(KEY) && !m.contains(TOKEN),
            "{m}"
        );
        assert!(!e.code().is_empty() && e.http_status() >= 400);
    }
}

#[test]
fn rotating_tokens_and_typed_user_tokens() {
    let rotating = r#"{"ok":true,"authed_user":{"id":"U1","scope":"admin","access_token":"xoxe.xoxp-1-abc","token_type":"user","refresh_token":"xoxe-1-r","expires_in":43200}}"#;
    let e = parse_access_response(200, rotating.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("token rotation"), "{e}");
    let typed = r#"{"ok":true,"authed_user":{"id":"U1","scope":"admin","access_token":"xoxp-1-abc","token_type":"user"},"is_enterprise_install":true}"#;
    assert!(parse_access_response(200, typed.as_bytes()).is_ok());
    let e = parse_access_response(429, br#"{"ok":false,"error":"ratelimited"}"#).unwrap_err();
    assert!(matches!(e, OAuthError::Malformed(_)), "{e:?}");
}
