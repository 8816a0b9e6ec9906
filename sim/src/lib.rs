//! `slack-sim`: a local, faithful fake of Slack's three security-log APIs — the Audit
//! Logs API (`/audit/v1/logs`, `/schemas`, `/actions`), `team.accessLogs` and
//! `team.integrationLogs` (under `/api/`) — served over real HTTP/1.1 on loopback.
//!
//! It exists so the slack-logs collector can be tested end to end, demonstrated and
//! benchmarked without a Slack tenant. It reproduces Slack's documented behaviour and
//! quirks (reference `slack-api.md` §7): timestamp-only audit cursors that forget
//! `oldest`, pages longer than `limit` on same-second bursts, both end-of-data forms,
//! Slack's error codes and statuses, classic paging caps, mixed-type fields, late events,
//! rate limits, plus injectable faults and a request log for assertions. It also plays Slack's
//! OAuth v2 install flow (`/oauth/v2/authorize`, `oauth.v2.access`, `auth.revoke`), so the
//! collector's install routes are tested end to end, and the tokens it issues work on the APIs.
//!
//! It is not a Slack client, not a general Web API emulator (only these three log APIs),
//! not TLS, and not meant to be exposed beyond localhost. Where Slack's real behaviour is
//! unknown, the choice is a [`SimConfig`] field.
//!
//! ```no_run
//! let sim = slack_sim::Simulator::start(slack_sim::SimConfig::default()).unwrap();
//! println!("{} {}", sim.audit_base(), slack_sim::ORG_OWNER_TOKEN);
//! ```

mod audit;
mod catalog;
mod config;
mod cursor;
mod data;
mod faults;
mod http;
mod json;
mod oauth;
mod oauth_state;
mod ratelimit;
mod respond;
mod rng;
mod server;
mod state;
mod tokens;
mod web_api;

#[cfg(test)]
mod tests;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use config::{
    AccessSortKey, EndForm, IntegrationOrder, IntegrationPagingCount, OrgWithoutTeamId, SimConfig,
    UnknownChangeType, AUDIT_EARLIEST,
};
pub use faults::Fault;
pub use oauth::{OAuthConsent, APP_ID as OAUTH_APP_ID};
pub use state::RecordedRequest;
pub use tokens::{
    InstallLevel, Plan, Role, TokenKind, TokenSpec, BOT_TOKEN, ENTERPRISE_ID, EXPIRED_TOKEN,
    FREE_PLAN_TOKEN, FREE_WORKSPACE_ID, NO_SCOPE_TOKEN, ORG_ADMIN_TOKEN, ORG_OWNER_TOKEN,
    REVOKED_TOKEN, UNGRANTED_WORKSPACE_ID, WORKSPACE_ADMIN_TOKEN, WORKSPACE_IDS,
};

use state::Sim;

// Poison-tolerant locking: a panic in one request must not wedge the others.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Ground truth for one visible audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditTruth {
    pub id: String,
    pub date_create: i64,
    pub action: String,
}

/// Ground truth for one access-log row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRowTruth {
    pub user_id: String,
    pub username: String,
    pub ip: String,
    pub user_agent: String,
    pub date_first: i64,
    pub date_last: i64,
    pub count: u64,
    pub isp: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
}

/// A running simulator on a loopback port. Dropping it stops the server and closes
/// every open connection.
pub struct Simulator {
    sim: Arc<Sim>,
    addr: SocketAddr,
    accept_thread: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Generates the data and serves on `127.0.0.1` with an OS-chosen port.
    pub fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_on("127.0.0.1:0", config)
    }

    pub fn start_on(addr: &str, config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let sim = Arc::new(Sim::new(config));
        let serving = Arc::clone(&sim);
        let accept_thread = std::thread::Builder::new()
            .name("slack-sim-accept".into())
            .spawn(move || server::accept_loop(listener, serving))?;
        Ok(Simulator {
            sim,
            addr,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url() + "/api"`: prefix of the Web API methods.
    pub fn api_base(&self) -> String {
        format!("{}/api", self.base_url())
    }

    /// `base_url() + "/audit/v1"`
    pub fn audit_base(&self) -> String {
        format!("{}/audit/v1", self.base_url())
    }

    pub fn config(&self) -> &SimConfig {
        &self.sim.config
    }

    /// The simulator's "now" (fixed or wall clock).
    pub fn now(&self) -> i64 {
        self.sim.now()
    }

    /// Fixes "now" (`Some`) or returns to the wall clock (`None`).
    pub fn set_now(&self, now: Option<i64>) {
        self.sim.set_now(now);
    }

    /// Runs Slack's clock `seconds` off the wall clock (negative: behind it), as seen in every
    /// answer's `Date` header and in what counts as "the future" (`invalid_range`). Stands in for
    /// a collector host whose clock is off.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.sim.set_clock_offset(seconds);
    }

    /// What the simulated admin does on the next visits to `/oauth/v2/authorize`.
    pub fn set_oauth_consent(&self, consent: OAuthConsent) {
        lock(&self.sim.oauth).consent = consent;
    }

    /// Every user token `oauth.v2.access` issued so far, oldest first.
    pub fn oauth_tokens(&self) -> Vec<String> {
        lock(&self.sim.oauth).issued.clone()
    }

    /// `Some(true)` while `token` works, `Some(false)` once revoked or expired, `None` if the
    /// simulator never knew it.
    pub fn token_active(&self, token: &str) -> Option<bool> {
        oauth::token_active(&self.sim, token)
    }

    /// Registers (or replaces) a token.
    pub fn add_token(&self, token: &str, spec: TokenSpec) {
        write(&self.sim.tokens).insert(token.to_string(), spec);
    }

    // ------------------------------------------------------------ growing data

    /// Adds `n` realistic events with `date_create` in `[from, to]` (including some
    /// same-second bursts); returns their ids.
    pub fn add_audit_events(&self, n: usize, from: i64, to: i64) -> Vec<String> {
        let mut store = write(&self.sim.audit);
        let events = store.generate(&self.sim.world, n, from, to.max(from));
        let ids = events
            .iter()
            .map(|e| data::audit::event_id(&self.sim.world, e))
            .collect();
        store.insert(events);
        ids
    }

    /// Adds `n` events all at second `at`; returns their ids.
    pub fn add_audit_burst(&self, at: i64, n: usize) -> Vec<String> {
        let mut store = write(&self.sim.audit);
        let events = store.burst(&self.sim.world, at, n);
        let ids = events
            .iter()
            .map(|e| data::audit::event_id(&self.sim.world, e))
            .collect();
        store.insert(events);
        ids
    }

    /// Adds `n` events with `date_create = at` that are only served (and only in the
    /// ground truth) once `visible_after` has passed (Q12).
    pub fn add_late_audit_events(&self, n: usize, at: i64, visible_after: Duration) -> Vec<String> {
        let mut store = write(&self.sim.audit);
        let events = store.burst(&self.sim.world, at, n);
        let ids = events
            .iter()
            .map(|e| data::audit::event_id(&self.sim.world, e))
            .collect();
        store.insert_late(events, Instant::now() + visible_after);
        ids
    }

    /// Bumps `count` and sets `date_last = at` on `n` distinct existing rows.
    pub fn touch_access_rows(&self, n: usize, at: i64) {
        write(&self.sim.access).touch(n, at);
    }

    /// Adds `n` rows whose `date_first` lies in `[from, to]`.
    pub fn add_access_rows(&self, n: usize, from: i64, to: i64) {
        write(&self.sim.access).add(&self.sim.world, n, from, to.max(from));
    }

    /// Adds `n` new combinations, each one row with exactly `date_first` and `date_last`: a tie
    /// of `n` rows under either sort key.
    pub fn add_access_tie(&self, n: usize, date_first: i64, date_last: i64) {
        write(&self.sim.access).add_tie(&self.sim.world, n, date_first, date_last);
    }

    /// Adds `n` entries whose `date` lies in `[from, to]`.
    pub fn add_integration_entries(&self, n: usize, from: i64, to: i64) {
        write(&self.sim.integration).add(&self.sim.world, n, from, to.max(from));
    }

    // ------------------------------------------------------------ ground truth

    /// Visible events with `oldest <= date_create <= min(latest, now)`, newest first, in
    /// the order `/logs` serves them (late events only once their delay has passed).
    pub fn audit_truth(&self, oldest: i64, latest: i64) -> Vec<AuditTruth> {
        let latest = latest.min(self.sim.now());
        let store = self.sim.audit_visible();
        let start = store.first_at_or_before(latest);
        let catalog = catalog::catalog();
        store.events[start..]
            .iter()
            .take_while(|e| e.date_create >= oldest)
            .map(|e| AuditTruth {
                id: data::audit::event_id(&self.sim.world, e),
                date_create: e.date_create,
                action: catalog.actions[e.action as usize].name.to_string(),
            })
            .collect()
    }

    /// Number of visible audit events.
    pub fn audit_len(&self) -> usize {
        self.sim.audit_visible().events.len()
    }

    /// Every access row, in serving order (newest first by the sort key).
    pub fn access_truth(&self) -> Vec<AccessRowTruth> {
        let store = read(&self.sim.access);
        store
            .order
            .iter()
            .map(|&i| store.truth(&self.sim.world, &store.rows[i]))
            .collect()
    }

    /// Every state any access row has had (as added, then after each use), oldest first.
    pub fn access_history(&self) -> Vec<AccessRowTruth> {
        let store = read(&self.sim.access);
        store
            .history
            .iter()
            .map(|r| store.truth(&self.sim.world, r))
            .collect()
    }

    /// Every integration entry exactly as served, in serving order.
    pub fn integration_truth(&self) -> Vec<serde_json::Value> {
        let store = read(&self.sim.integration);
        let values = store.entries.iter().map(|e| e.value.clone());
        match self.sim.config.integration_order {
            IntegrationOrder::NewestFirst => values.collect(),
            IntegrationOrder::OldestFirst => values.rev().collect(),
        }
    }

    // ------------------------------------------------------------ faults

    /// The `nth` request from now on (1 = the next one) gets `fault`.
    pub fn fail_request(&self, nth: usize, fault: Fault) {
        let base = self.sim.request_count.load(Ordering::SeqCst);
        lock(&self.sim.faults).schedule(base + nth.max(1), fault);
    }

    /// Every `every`th request from now on gets `fault` (0 turns this off).
    pub fn fail_every(&self, every: usize, fault: Fault) {
        let base = self.sim.request_count.load(Ordering::SeqCst);
        lock(&self.sim.faults).set_every(every, base, fault);
    }

    /// Drops every scheduled and periodic fault.
    pub fn clear_faults(&self) {
        *lock(&self.sim.faults) = faults::FaultPlan::default();
    }

    /// Every cursor issued so far answers `invalid_cursor` from now on.
    pub fn expire_cursors(&self) {
        self.sim.cursors.expire_all();
    }

    /// Sleep this long before answering each request (zero turns it off).
    pub fn set_response_delay(&self, d: Duration) {
        *lock(&self.sim.response_delay) = d;
    }

    /// Adds `n` workspaces to the org (ids `T0SIMW0001`, …): org-level tokens are granted them and
    /// `auth.teams.list` lists them. Their logs are the org's shared data, with their own ids.
    pub fn add_workspaces(&self, n: usize) -> Vec<String> {
        let mut tokens = write(&self.sim.tokens);
        let start = tokens
            .values()
            .map(|t| t.granted_teams.len())
            .max()
            .unwrap_or(0);
        let ids: Vec<String> = (start..start + n)
            .map(|i| format!("T0SIMW{i:04}"))
            .collect();
        for spec in tokens.values_mut() {
            if spec.level == InstallLevel::Org {
                spec.granted_teams.extend(ids.iter().cloned());
            }
        }
        ids
    }

    /// `team.*` answers for workspace `team_id` take `d` longer (a busy workspace).
    pub fn set_team_delay(&self, team_id: &str, d: Duration) {
        lock(&self.sim.team_delays).insert(team_id.to_string(), d);
    }

    /// Every request served so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.sim.log).clone()
    }

    pub fn request_count(&self) -> usize {
        self.sim.request_count.load(Ordering::SeqCst)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.sim.shutdown.store(true, Ordering::SeqCst);
        // Wake the accept loop with a throwaway connection.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        for (_, conn) in lock(&self.sim.connections).drain() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}
