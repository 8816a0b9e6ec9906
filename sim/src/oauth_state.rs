//! What the OAuth flow remembers between requests: the consent the simulated admin gives, the
//! codes handed out and the tokens issued. Plain data, so the simulator's state can hold it
//! without importing the flow's handlers (`oauth`), which import the state.

use std::collections::HashMap;
use std::time::Instant;

use crate::tokens::{InstallLevel, Role};

/// What the simulated admin does on the authorize page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthConsent {
    /// `false`: the admin presses Cancel, the redirect carries `error=access_denied`.
    pub approve: bool,
    /// The user scopes granted; `None` grants exactly what the app asked for.
    pub scopes: Option<Vec<String>>,
    /// Org-wide install (`is_enterprise_install: true`) or a single workspace.
    pub level: InstallLevel,
    /// The installing user's role (audit logs need an Owner).
    pub role: Role,
}

impl Default for OAuthConsent {
    /// An Org Owner installs on the org and approves everything asked.
    fn default() -> OAuthConsent {
        OAuthConsent {
            approve: true,
            scopes: None,
            level: InstallLevel::Org,
            role: Role::Owner,
        }
    }
}

impl OAuthConsent {
    /// The admin cancels.
    pub fn deny() -> OAuthConsent {
        OAuthConsent {
            approve: false,
            ..OAuthConsent::default()
        }
    }

    /// The admin approves, but only `scopes` are granted.
    pub fn granting(scopes: &[&str]) -> OAuthConsent {
        OAuthConsent {
            scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
            ..OAuthConsent::default()
        }
    }

    /// The admin installs on a workspace of the org instead of the org.
    pub fn workspace_install() -> OAuthConsent {
        OAuthConsent {
            level: InstallLevel::Workspace,
            ..OAuthConsent::default()
        }
    }
}

pub(crate) struct IssuedCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub level: InstallLevel,
    pub role: Role,
    pub issued: Instant,
    pub used: bool,
}

/// The flow's state: the consent to apply, the codes handed out, the tokens issued.
#[derive(Default)]
pub(crate) struct OAuthState {
    pub consent: OAuthConsent,
    pub codes: HashMap<String, IssuedCode>,
    /// Every token issued by `oauth.v2.access`, oldest first.
    pub issued: Vec<String>,
    pub counter: u64,
}

/// A value no test can guess, from the clock and a counter (not cryptographic: a simulator).
pub(crate) fn unguessable(state: &mut OAuthState) -> String {
    state.counter += 1;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{}-{:016x}",
        state.counter,
        crate::rng::mix64(nanos ^ state.counter.rotate_left(32))
    )
}
