//! The OAuth install flow, so an admin can install the Slack app from a browser instead of
//! pasting a token: the authorize URL with a single-use `state`, the `oauth.v2.access` exchange,
//! the check of the granted scopes against the configured streams, and the user token sealed
//! (ChaCha20-Poly1305, key derived from `token_encryption_key` with HKDF-SHA256) in the
//! key-value store, where later passes find it.
//!
//! Everything from outside comes in through the [`crate::env`] traits and arguments — the clock
//! as `now`, randomness as byte arrays — so the flow is tested natively; the component only
//! supplies `wasi:random` bytes and turns the results into HTTP answers.

use std::fmt;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::env::{KvStore, Transport, TransportError};
use crate::url::with_query;
use crate::Stream;

/// Where the sealed token lives. Its name is also the AEAD's associated data, so a sealed value
/// copied under another key does not open.
pub const TOKEN_KEY: &str = crate::keys::OAUTH_TOKEN;
/// The `state` values issued by `/oauth/start` and not used yet (their hashes, with expiry).
pub const PENDING_KEY: &str = crate::keys::OAUTH_PENDING;
/// How long an admin has between `/oauth/start` and coming back to `/oauth/callback`.
pub const STATE_TTL_SECONDS: i64 = 600;
/// Pending states kept at once: a few abandoned tabs are fine, an unbounded list (one key write
/// per unauthenticated `/oauth/start`) is not.
const MAX_PENDING: usize = 8;
/// Random bytes in a `state` (hex-encoded in the URL).
pub const STATE_BYTES: usize = 32;
/// Random bytes in a ChaCha20-Poly1305 nonce.
pub const NONCE_BYTES: usize = 12;

/// The user scope the audit stream needs.
pub const SCOPE_AUDIT: &str = "auditlogs:read";
/// The user scope `team.accessLogs` and `team.integrationLogs` need.
pub const SCOPE_ADMIN: &str = "admin";

const SEAL_ALG: &str = "chacha20poly1305+hkdf-sha256";
const HKDF_SALT: &[u8] = b"slack-logs";
const HKDF_INFO: &[u8] = b"oauth token v1";

/// Why a step of the install flow (or reading its token) failed. The messages are for the admin
/// on the page they land on and for the operator's log: they say what to do, never show a token
/// or a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OAuthError {
    /// `slack_client_id` / `slack_client_secret` / `oauth_redirect_url` are not set.
    NotConfigured,
    /// `token_encryption_key` is not set: the token would have to be stored in clear.
    NoEncryptionKey,
    /// A token from an earlier install is stored; replacing it silently would let anyone who can
    /// reach `/oauth/start` swap the collector's identity.
    AlreadyInstalled,
    /// The callback carried `?error=…` (the admin pressed Cancel: `access_denied`).
    Denied { error: String },
    /// The callback lacks `code` or `state`.
    MissingParameter(&'static str),
    /// `state` was never issued here, was used already, or belongs to another browser.
    UnknownState,
    /// `state` was issued more than [`STATE_TTL_SECONDS`] ago.
    ExpiredState,
    /// `oauth.v2.access` answered `ok: false`.
    Exchange { error: String },
    /// `auth.revoke` answered `ok: false` for a token it still knows; the token is kept.
    RevokeRefused { error: String },
    /// Slack could not be reached.
    Network(String),
    /// Slack's answer was not the expected JSON.
    Malformed(String),
    /// The answer holds no user token: the app asked for bot scopes only.
    NoUserToken,
    /// The admin granted fewer scopes than the configured streams need.
    MissingScopes {
        missing: Vec<String>,
        granted: Vec<String>,
    },
    /// Audit is configured but the app was installed on a workspace, not the org.
    NotOrgInstall,
    /// The key-value store failed.
    Store(String),
    /// A stored token exists but cannot be opened (no key, another key, corrupt value).
    Unreadable(String),
    /// OAuth is configured and no token has been installed yet (or it was revoked).
    NoTokenYet,
}

impl OAuthError {
    /// A stable code, for JSON answers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::NotConfigured => "oauth_not_configured",
            OAuthError::NoEncryptionKey => "no_encryption_key",
            OAuthError::AlreadyInstalled => "already_installed",
            OAuthError::Denied { .. } => "access_denied",
            OAuthError::MissingParameter(_) => "missing_parameter",
            OAuthError::UnknownState => "invalid_state",
            OAuthError::ExpiredState => "expired_state",
            OAuthError::Exchange { .. } => "exchange_failed",
            OAuthError::RevokeRefused { .. } => "revoke_failed",
            OAuthError::Network(_) => "network_error",
            OAuthError::Malformed(_) => "malformed_response",
            OAuthError::NoUserToken => "no_user_token",
            OAuthError::MissingScopes { .. } => "missing_scope",
            OAuthError::NotOrgInstall => "not_org_install",
            OAuthError::Store(_) => "store_error",
            OAuthError::Unreadable(_) => "token_unreadable",
            OAuthError::NoTokenYet => "no_token",
        }
    }

    /// The HTTP status of the page that explains it.
    pub fn http_status(&self) -> u16 {
        match self {
            OAuthError::NotConfigured | OAuthError::NoEncryptionKey => 503,
            OAuthError::AlreadyInstalled => 409,
            OAuthError::NoTokenYet => 404,
            OAuthError::Exchange { .. }
            | OAuthError::RevokeRefused { .. }
            | OAuthError::Network(_)
            | OAuthError::Malformed(_) => 502,
            OAuthError::Store(_) | OAuthError::Unreadable(_) => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OAuthError::NotConfigured => write!(
                f,
                "the OAuth install flow is not configured: set slack_client_id, slack_client_secret and \
                 oauth_redirect_url (from the Slack app's settings), or set slack_token instead"
            ),
            OAuthError::NoEncryptionKey => write!(
                f,
                "token_encryption_key is not set, so the token cannot be stored encrypted and none is stored; \
                 set it to a random secret of at least 32 characters (e.g. `openssl rand -hex 32`) and start again"
            ),
            OAuthError::AlreadyInstalled => write!(
                f,
                "a token from an earlier install is stored; revoke it first (POST /oauth/revoke) to install again"
            ),
            OAuthError::Denied { error } if error == "access_denied" => write!(
                f,
                "the installation was cancelled in Slack (access_denied); nothing was stored. Start again and \
                 press Allow to install the app"
            ),
            OAuthError::Denied { error } => write!(
                f,
                "Slack did not install the app ({error}); nothing was stored"
            ),
            OAuthError::MissingParameter(p) => write!(
                f,
                "the callback has no `{p}`; open /oauth/start to begin the installation rather than this page"
            ),
            OAuthError::UnknownState => write!(
                f,
                "the `state` of this callback is not one this collector issued, or it was used already; \
                 nothing was stored. Start again from /oauth/start in the same browser"
            ),
            OAuthError::ExpiredState => write!(
                f,
                "the installation took longer than {} minutes and its `state` expired; nothing was stored. \
                 Start again from /oauth/start",
                STATE_TTL_SECONDS / 60
            ),
            OAuthError::Exchange { error } => {
                let advice = match error.as_str() {
                    "invalid_code" | "code_already_used" | "code_expired" => {
                        "the authorization code is invalid, used or expired; start again from /oauth/start"
                    }
                    "bad_client_secret" => "slack_client_secret does not match the app's Client Secret",
                    "invalid_client_id" => "slack_client_id does not match the app's Client ID",
                    "bad_redirect_uri" | "oauth_authorization_url_mismatch" => {
                        "oauth_redirect_url is not one of the app's Redirect URLs (or differs from the one \
                         used to start); make them match exactly"
                    }
                    "cannot_install_an_org_installed_app" => {
                        "the app is installed on the org already; install it at the org level"
                    }
                    _ => "see Slack's oauth.v2.access documentation for this code",
                };
                write!(f, "Slack refused the code exchange ({error}): {advice}")
            }
            OAuthError::RevokeRefused { error } => write!(
                f,
                "Slack refused auth.revoke ({error}); the stored token was kept, so try again"
            ),
            OAuthError::Network(m) => write!(
                f,
                "could not reach Slack ({m}); try again (under Spin: is slack_api_host in \
                 allowed_outbound_hosts?)"
            ),
            OAuthError::Malformed(m) => write!(f, "Slack's answer was not understood: {m}"),
            OAuthError::NoUserToken => write!(
                f,
                "Slack returned no user token: the app must request user scopes (admin, auditlogs:read), not \
                 bot scopes; create it from slack-app-manifest.yaml"
            ),
            OAuthError::MissingScopes { missing, granted } => write!(
                f,
                "the installation did not grant {} (granted: {}), which the configured streams need; \
                 nothing was stored. Add the scopes to the app's User Token Scopes and install again, \
                 or remove the streams that need them from `streams`",
                missing.join(", "),
                if granted.is_empty() {
                    "none".to_string()
                } else {
                    granted.join(", ")
                }
            ),
            OAuthError::NotOrgInstall => write!(
                f,
                "the app was installed on a single workspace, but the audit stream needs an org-wide install \
                 (is_enterprise_install was false); nothing was stored. An Org Owner must install it on the \
                 Enterprise Grid organization (choose the org, not a workspace, at the top of Slack's \
                 install page), or remove `audit` from `streams`"
            ),
            OAuthError::Store(m) => write!(f, "key-value store: {m}"),
            OAuthError::Unreadable(m) => write!(f, "the stored OAuth token cannot be used: {m}"),
            OAuthError::NoTokenYet => write!(
                f,
                "no Slack token yet: open /oauth/start in a browser to install the Slack app (or set slack_token)"
            ),
        }
    }
}

impl std::error::Error for OAuthError {}

fn store_err(e: crate::env::StoreError) -> OAuthError {
    OAuthError::Store(e.0)
}

/// The user scopes the configured streams need, in a fixed order.
pub fn required_scopes(streams: &[Stream]) -> Vec<&'static str> {
    let mut scopes = Vec::new();
    if streams.iter().any(|s| *s != Stream::Audit) {
        scopes.push(SCOPE_ADMIN);
    }
    if streams.contains(&Stream::Audit) {
        scopes.push(SCOPE_AUDIT);
    }
    scopes
}

/// Slack's authorize page for this app, asking for the user scopes the streams need.
pub fn authorize_url(
    oauth_base: &str,
    client_id: &str,
    redirect_url: &str,
    streams: &[Stream],
    state: &str,
) -> String {
    let user_scope = required_scopes(streams).join(",");
    with_query(
        &format!("{oauth_base}/oauth/v2/authorize"),
        &[
            ("client_id", client_id),
            ("user_scope", &user_scope),
            ("redirect_uri", redirect_url),
            ("state", state),
        ],
    )
}

// ------------------------------------------------------------------ state

/// A fresh `state` from random bytes: what the admin's browser carries to Slack and back.
pub fn new_state(random: [u8; STATE_BYTES]) -> String {
    hex(&random)
}

fn state_hash(state: &str) -> String {
    hex(&Sha256::digest(state.as_bytes()))
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PendingState {
    /// SHA-256 of the state: the store need not hold the value itself.
    sha256: String,
    expires_at: i64,
}

/// The `state` values issued and not used yet: one key, so abandoned attempts cost no keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStates {
    states: Vec<PendingState>,
}

impl PendingStates {
    /// Reads the stored list. An unreadable value is treated as empty: it holds nothing but
    /// short-lived states, and the next `/oauth/start` writes a good one.
    pub fn decode(bytes: Option<&[u8]>) -> PendingStates {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Adds `state`, valid until `now + STATE_TTL_SECONDS`; drops expired ones and, past
    /// [`MAX_PENDING`], the oldest.
    pub fn issue(&mut self, state: &str, now: i64) {
        self.states.retain(|s| s.expires_at >= now);
        self.states.push(PendingState {
            sha256: state_hash(state),
            expires_at: now + STATE_TTL_SECONDS,
        });
        let excess = self.states.len().saturating_sub(MAX_PENDING);
        self.states.drain(..excess);
    }

    /// Uses `state` up: removes it whether it is valid or expired, so it never works twice.
    pub fn consume(&mut self, state: &str, now: i64) -> Result<(), OAuthError> {
        let hash = state_hash(state);
        let Some(i) = self.states.iter().position(|s| s.sha256 == hash) else {
            return Err(OAuthError::UnknownState);
        };
        let entry = self.states.remove(i);
        if entry.expires_at < now {
            return Err(OAuthError::ExpiredState);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

// ------------------------------------------------------------------ the exchange

/// What `oauth.v2.access` granted.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// `authed_user.access_token`: the `xoxp-` user token.
    pub access_token: String,
    pub user_id: String,
    /// `authed_user.scope`, split.
    pub scopes: Vec<String>,
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub is_enterprise_install: bool,
    pub app_id: Option<String>,
}

// The token stays out of every Debug print.
impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &"<hidden>")
            .field("user_id", &self.user_id)
            .field("scopes", &self.scopes)
            .field("team_id", &self.team_id)
            .field("enterprise_id", &self.enterprise_id)
            .field("is_enterprise_install", &self.is_enterprise_install)
            .finish()
    }
}

#[derive(Deserialize)]
struct AccessAnswer {
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    authed_user: Option<AuthedUser>,
    #[serde(default)]
    team: Option<IdOnly>,
    #[serde(default)]
    enterprise: Option<IdOnly>,
    #[serde(default)]
    is_enterprise_install: bool,
}

#[derive(Deserialize)]
struct AuthedUser {
    #[serde(default)]
    id: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    /// Present only when the app has token rotation on.
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// Reads `oauth.v2.access`'s answer (Slack's shape: `authed_user.{id, scope, access_token}`,
/// `team` null on an org install, `enterprise`, `is_enterprise_install`).
pub fn parse_access_response(status: u16, body: &[u8]) -> Result<Grant, OAuthError> {
    // The same envelope rules as every Slack call: `ok:false`, 429, 5xx and HTML pages become
    // typed, length-bounded, token-masked errors.
    let envelope = if (200..300).contains(&status) {
        crate::web_api::parse_envelope(body).map(|_| ())
    } else {
        Err(crate::slack_error::SlackError::from_response(
            status, None, body,
        ))
    };
    if let Err(e) = envelope {
        return Err(match e {
            crate::slack_error::SlackError::Api { code, .. } => {
                OAuthError::Exchange { error: code }
            }
            other => OAuthError::Malformed(format!("oauth.v2.access: {other}")),
        });
    }
    let answer: AccessAnswer = serde_json::from_slice(body).map_err(|e| {
        OAuthError::Malformed(format!(
            "oauth.v2.access: HTTP {status}, not the expected JSON ({e})"
        ))
    })?;
    let user = answer.authed_user.ok_or(OAuthError::NoUserToken)?;
    let token = user
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or(OAuthError::NoUserToken)?;
    if user.refresh_token.is_some() {
        // A rotating token expires in 12 h and needs a refresh flow slack-logs does not run.
        return Err(OAuthError::Malformed(
            "the app has token rotation turned on, so Slack issued an expiring token; slack-logs needs a long-lived user token: \
             create the app from slack-app-manifest.yaml (token_rotation_enabled: false)"
                .into(),
        ));
    }
    // Checked because it decides which APIs work: team.* refuse bot tokens.
    let is_user = match user.token_type.as_deref() {
        Some(t) => t == "user",
        None => token.starts_with("xoxp-"),
    };
    if !is_user {
        return Err(OAuthError::Malformed(
            "authed_user.access_token is not a user token".into(),
        ));
    }
    Ok(Grant {
        access_token: token,
        user_id: user.id,
        scopes: user
            .scope
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        team_id: answer.team.map(|t| t.id),
        enterprise_id: answer.enterprise.map(|e| e.id),
        is_enterprise_install: answer.is_enterprise_install,
        app_id: answer.app_id,
    })
}

/// Whether `grant` can serve `streams`: every needed scope granted, and an org-wide install
/// when audit is among them (the Audit Logs API refuses workspace installs).
pub fn check_grant(grant: &Grant, streams: &[Stream]) -> Result<(), OAuthError> {
    let missing: Vec<String> = required_scopes(streams)
        .into_iter()
        .filter(|needed| !grant.scopes.iter().any(|g| g == needed))
        .map(String::from)
        .collect();
    if !missing.is_empty() {
        return Err(OAuthError::MissingScopes {
            missing,
            granted: grant.scopes.clone(),
        });
    }
    if streams.contains(&Stream::Audit) && !grant.is_enterprise_install {
        return Err(OAuthError::NotOrgInstall);
    }
    Ok(())
}

// ------------------------------------------------------------------ the token at rest

/// What is known about the installed token, shown by `/status`. Not the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub user_id: String,
    pub scopes: Vec<String>,
    pub team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub is_enterprise_install: bool,
    pub installed_at: i64,
}

/// The stored value under [`TOKEN_KEY`]: the sealed token and, in clear, its description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedToken {
    pub alg: String,
    /// Hex.
    pub nonce: String,
    /// Hex: ciphertext and Poly1305 tag.
    pub sealed: String,
    #[serde(flatten)]
    pub installation: Installation,
}

fn cipher(key: &str) -> ChaCha20Poly1305 {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), key.as_bytes());
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    hk.expand(HKDF_INFO, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    ChaCha20Poly1305::new(Key::from_slice(&okm))
}

/// Seals `token` with a key derived from `key` (the `token_encryption_key` secret).
pub fn seal(
    token: &str,
    key: &str,
    nonce: [u8; NONCE_BYTES],
    installation: Installation,
) -> Result<SealedToken, OAuthError> {
    let payload = Payload {
        msg: token.as_bytes(),
        aad: TOKEN_KEY.as_bytes(),
    };
    // Only messages beyond 256 GiB fail; an error here is still never stored as a token.
    let sealed = cipher(key)
        .encrypt(Nonce::from_slice(&nonce), payload)
        .map_err(|_| OAuthError::Store("encrypting the token failed; nothing was stored".into()))?;
    Ok(SealedToken {
        alg: SEAL_ALG.into(),
        nonce: hex(&nonce),
        sealed: hex(&sealed),
        installation,
    })
}

/// Opens a sealed token. Fails on another key or a changed value, without saying more.
pub fn unseal(sealed: &SealedToken, key: &str) -> Result<String, OAuthError> {
    if sealed.alg != SEAL_ALG {
        return Err(OAuthError::Unreadable(format!(
            "it was sealed with `{}`, which this version does not know",
            sealed.alg
        )));
    }
    let bad = || OAuthError::Unreadable("the stored value is corrupt".into());
    let nonce = unhex(&sealed.nonce)
        .filter(|n| n.len() == NONCE_BYTES)
        .ok_or_else(bad)?;
    let ciphertext = unhex(&sealed.sealed).ok_or_else(bad)?;
    let payload = Payload {
        msg: &ciphertext,
        aad: TOKEN_KEY.as_bytes(),
    };
    let plain = cipher(key)
        .decrypt(Nonce::from_slice(&nonce), payload)
        .map_err(|_| {
            OAuthError::Unreadable(
                "it does not decrypt with token_encryption_key (was the key changed?); revoke it \
                 (POST /oauth/revoke) and install again from /oauth/start"
                    .into(),
            )
        })?;
    String::from_utf8(plain).map_err(|_| bad())
}

fn load_sealed(store: &mut dyn KvStore) -> Result<Option<SealedToken>, OAuthError> {
    let Some(bytes) = store.get(TOKEN_KEY).map_err(store_err)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        OAuthError::Unreadable(format!(
            "the value under {TOKEN_KEY} is not a sealed token ({e}); revoke it (POST /oauth/revoke) \
             and install again"
        ))
    })
}

/// What `/status` may show about the installed token, if there is one.
pub fn installation(store: &mut dyn KvStore) -> Result<Option<Installation>, OAuthError> {
    Ok(load_sealed(store)?.map(|s| s.installation))
}

/// Fills `config.slack_token` from the installed token when no token is configured (a
/// configured `slack_token` always wins). With OAuth configured and nothing installed yet, a
/// pass cannot run: the error says to visit `/oauth/start`.
pub fn resolve_token(
    config: &mut Config,
    store: &mut dyn KvStore,
) -> Result<Option<Installation>, OAuthError> {
    let needs_token = !config.synthetic_data
        && config.slack_token.is_none()
        && config
            .streams
            .iter()
            .any(|s| *s != Stream::Audit || config.audit_token.is_none());
    if !needs_token {
        return Ok(None);
    }
    let Some(sealed) = load_sealed(store)? else {
        return if config.oauth_configured() {
            Err(OAuthError::NoTokenYet)
        } else {
            // No OAuth either: the pass reports the missing `slack_token` itself.
            Ok(None)
        };
    };
    let key = config.token_encryption_key.as_deref().ok_or_else(|| {
        OAuthError::Unreadable(
            "a token from the OAuth install is stored, but token_encryption_key is not set".into(),
        )
    })?;
    config.slack_token = Some(unseal(&sealed, key)?);
    Ok(Some(sealed.installation))
}

// ------------------------------------------------------------------ the routes' flows

/// The settings `/oauth/start` and `/oauth/callback` need, all present.
struct OAuthSettings<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    redirect_url: &'a str,
    encryption_key: &'a str,
}

fn settings(config: &Config) -> Result<OAuthSettings<'_>, OAuthError> {
    let (Some(client_id), Some(client_secret), Some(redirect_url)) = (
        config.slack_client_id.as_deref(),
        config.slack_client_secret.as_deref(),
        config.oauth_redirect_url.as_deref(),
    ) else {
        return Err(OAuthError::NotConfigured);
    };
    // Checked before the admin is sent to Slack, not after they approved.
    let encryption_key = config
        .token_encryption_key
        .as_deref()
        .ok_or(OAuthError::NoEncryptionKey)?;
    Ok(OAuthSettings {
        client_id,
        client_secret,
        redirect_url,
        encryption_key,
    })
}

/// `GET /oauth/start`: issues a `state` and returns the Slack URL to redirect the admin to.
pub fn start(
    config: &Config,
    store: &mut dyn KvStore,
    now: i64,
    random: [u8; STATE_BYTES],
) -> Result<String, OAuthError> {
    let s = settings(config)?;
    if store.get(TOKEN_KEY).map_err(store_err)?.is_some() {
        return Err(OAuthError::AlreadyInstalled);
    }
    let state = new_state(random);
    let mut pending = PendingStates::decode(store.get(PENDING_KEY).map_err(store_err)?.as_deref());
    pending.issue(&state, now);
    store
        .set(PENDING_KEY, &pending.encode())
        .map_err(store_err)?;
    Ok(authorize_url(
        &config.slack_oauth_base,
        s.client_id,
        s.redirect_url,
        &config.streams,
        &state,
    ))
}

fn consume_state(store: &mut dyn KvStore, state: &str, now: i64) -> Result<(), OAuthError> {
    let mut pending = PendingStates::decode(store.get(PENDING_KEY).map_err(store_err)?.as_deref());
    let result = pending.consume(state, now);
    if result.is_ok() || result == Err(OAuthError::ExpiredState) {
        // Written before the exchange: a state must not survive a failure further on.
        store
            .set(PENDING_KEY, &pending.encode())
            .map_err(store_err)?;
    }
    result
}

/// `GET /oauth/callback?code=…&state=…` (or `?error=…&state=…`): checks the state, exchanges
/// the code, checks the grant against the streams and stores the sealed token. A grant that is
/// refused is revoked at Slack, so no unused token is left behind.
pub fn callback(
    config: &Config,
    store: &mut dyn KvStore,
    transport: &mut dyn Transport,
    path_with_query: &str,
    now: i64,
    nonce: [u8; NONCE_BYTES],
) -> Result<Installation, OAuthError> {
    let params = crate::url::parse_query(path_with_query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(error) = param("error") {
        if let Some(state) = param("state") {
            // The attempt is over either way; its state must not be usable later.
            let _ = consume_state(store, state, now);
        }
        return Err(OAuthError::Denied {
            error: error.to_string(),
        });
    }
    let s = settings(config)?;
    let state = param("state").ok_or(OAuthError::MissingParameter("state"))?;
    let code = param("code").ok_or(OAuthError::MissingParameter("code"))?;
    consume_state(store, state, now)?;
    if store.get(TOKEN_KEY).map_err(store_err)?.is_some() {
        return Err(OAuthError::AlreadyInstalled);
    }

    let form = form_body(&[
        ("client_id", s.client_id),
        ("client_secret", s.client_secret),
        ("code", code),
        ("redirect_uri", s.redirect_url),
    ]);
    let timeout = Duration::from_secs(u64::from(config.request_timeout_seconds));
    let url = format!("{}/oauth.v2.access", config.slack_api_base);
    let response = transport
        .post_form(&url, None, &form, timeout)
        .map_err(|e| OAuthError::Network(e.to_string()))?;
    let grant = parse_access_response(response.status, &response.body)?;
    if let Err(e) = check_grant(&grant, &config.streams) {
        // Best effort: the refusal is what the admin needs to see, whatever auth.revoke says.
        let _ = revoke_at_slack(config, transport, &grant.access_token);
        return Err(e);
    }
    let installation = Installation {
        user_id: grant.user_id.clone(),
        scopes: grant.scopes.clone(),
        team_id: grant.team_id.clone(),
        enterprise_id: grant.enterprise_id.clone(),
        is_enterprise_install: grant.is_enterprise_install,
        installed_at: now,
    };
    let sealed = seal(
        &grant.access_token,
        s.encryption_key,
        nonce,
        installation.clone(),
    )?;
    let bytes = serde_json::to_vec(&sealed)
        .map_err(|e| OAuthError::Store(format!("encoding the sealed token: {e}")))?;
    store.set(TOKEN_KEY, &bytes).map_err(store_err)?;
    Ok(installation)
}

/// What Slack said to `auth.revoke`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlackRevoke {
    /// `{"ok": true, "revoked": true}`.
    Revoked,
    /// Slack no longer knows the token (`invalid_auth`, `token_revoked`, …): it is dead already.
    AlreadyInvalid(String),
    /// The stored token could not be opened, so Slack was not asked.
    NotAsked(String),
}

fn revoke_at_slack(
    config: &Config,
    transport: &mut dyn Transport,
    token: &str,
) -> Result<SlackRevoke, OAuthError> {
    let timeout = Duration::from_secs(u64::from(config.request_timeout_seconds));
    let url = format!("{}/auth.revoke", config.slack_api_base);
    let response = transport
        .post_form(&url, Some(token), "", timeout)
        .map_err(|e: TransportError| OAuthError::Network(e.to_string()))?;
    #[derive(Deserialize)]
    struct Answer {
        ok: bool,
        #[serde(default)]
        error: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| {
        OAuthError::Malformed(format!(
            "auth.revoke: HTTP {}, not the expected JSON ({e}); the stored token was kept",
            response.status
        ))
    })?;
    match (answer.ok, answer.error) {
        (true, _) => Ok(SlackRevoke::Revoked),
        (false, Some(e))
            if matches!(
                e.as_str(),
                "invalid_auth" | "token_revoked" | "token_expired" | "account_inactive"
            ) =>
        {
            Ok(SlackRevoke::AlreadyInvalid(e))
        }
        (false, e) => Err(OAuthError::RevokeRefused {
            error: e.unwrap_or_else(|| "unknown_error".into()),
        }),
    }
}

/// `POST /oauth/revoke`: revokes the installed token at Slack (`auth.revoke`) and removes it.
/// If Slack cannot be reached the token stays, so it is never forgotten while still valid.
pub fn revoke(
    config: &Config,
    store: &mut dyn KvStore,
    transport: &mut dyn Transport,
) -> Result<SlackRevoke, OAuthError> {
    let sealed = match load_sealed(store) {
        Ok(Some(s)) => s,
        Ok(None) => return Err(OAuthError::NoTokenYet),
        // A corrupt value cannot be revoked at Slack; removing it is still right.
        Err(OAuthError::Unreadable(m)) => {
            store.delete(TOKEN_KEY).map_err(store_err)?;
            return Ok(SlackRevoke::NotAsked(m));
        }
        Err(e) => return Err(e),
    };
    let opened = match config.token_encryption_key.as_deref() {
        Some(key) => unseal(&sealed, key),
        None => Err(OAuthError::Unreadable(
            "token_encryption_key is not set".into(),
        )),
    };
    let outcome = match opened {
        Ok(token) => revoke_at_slack(config, transport, &token).map_err(|e| match e {
            OAuthError::Network(m) => {
                OAuthError::Network(format!("{m}; the stored token was kept"))
            }
            other => other,
        })?,
        Err(OAuthError::Unreadable(m)) => SlackRevoke::NotAsked(m),
        Err(e) => return Err(e),
    };
    store.delete(TOKEN_KEY).map_err(store_err)?;
    Ok(outcome)
}

// ------------------------------------------------------------------ encoding

/// `application/x-www-form-urlencoded`, every value percent-encoded.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let query = with_query("", pairs);
    query.strip_prefix('?').unwrap_or(&query).to_string()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests;
