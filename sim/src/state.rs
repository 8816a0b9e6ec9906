//! The simulator's shared state: data, clock, tokens, faults and the request log.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::config::{wall_clock, SimConfig};
use crate::cursor::CursorClock;
use crate::data::access::AccessStore;
use crate::data::audit::AuditStore;
use crate::data::integration::IntegrationStore;
use crate::data::world::World;
use crate::faults::{Fault, FaultPlan};
use crate::oauth_state::OAuthState;
use crate::ratelimit::RateLimiter;
use crate::tokens::{default_tokens, TokenSpec};
use crate::{lock, read, write};

/// One request as the simulator saw it. The `Authorization` header is never stored,
/// and a `token` or `client_secret` parameter's value is replaced by `<redacted>`.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Decoded `application/x-www-form-urlencoded` body pairs (POST), in order.
    pub form: Vec<(String, String)>,
    /// HTTP status answered; 0 when nothing was answered (`Fault::Hang`).
    pub status: u16,
    pub has_authorization: bool,
    /// The injected fault, if this request got one.
    pub fault: Option<Fault>,
}

pub(crate) struct Sim {
    pub config: SimConfig,
    pub world: World,
    now_override: Mutex<Option<i64>>,
    /// Seconds Slack's clock is off the wall clock (negative: behind it).
    clock_offset: AtomicI64,
    pub audit: RwLock<AuditStore>,
    pub access: RwLock<AccessStore>,
    pub integration: RwLock<IntegrationStore>,
    pub tokens: RwLock<HashMap<String, TokenSpec>>,
    /// The OAuth install flow: consent, codes, issued tokens.
    pub oauth: Mutex<OAuthState>,
    pub cursors: CursorClock,
    pub faults: Mutex<FaultPlan>,
    pub limiter: Mutex<RateLimiter>,
    pub log: Mutex<Vec<RecordedRequest>>,
    pub request_count: AtomicUsize,
    pub response_delay: Mutex<Duration>,
    /// Extra delay of `team.*` answers for one workspace: a busy workspace whose walks are slow.
    pub team_delays: Mutex<HashMap<String, Duration>>,
    pub shutdown: AtomicBool,
    pub connections: Mutex<HashMap<u64, TcpStream>>,
    pub next_connection: AtomicU64,
}

impl Sim {
    pub(crate) fn new(config: SimConfig) -> Sim {
        let world = World::generate(config.seed);
        let (from, to) = (
            config.history_start,
            config.history_end.max(config.history_start),
        );
        let mut audit = AuditStore::new(config.seed);
        let events = audit.generate(&world, config.audit_events, from, to);
        audit.insert(events);
        let mut access = AccessStore::new(config.seed, config.access_sort_key);
        access.add(&world, config.access_rows, from, to);
        let mut integration =
            IntegrationStore::new(config.seed, config.integration_identical_percent);
        integration.add(&world, config.integration_entries, from, to);
        Sim {
            now_override: Mutex::new(config.now),
            clock_offset: AtomicI64::new(0),
            config,
            world,
            audit: RwLock::new(audit),
            access: RwLock::new(access),
            integration: RwLock::new(integration),
            tokens: RwLock::new(default_tokens()),
            oauth: Mutex::new(OAuthState::default()),
            cursors: CursorClock::new(),
            faults: Mutex::new(FaultPlan::default()),
            limiter: Mutex::new(RateLimiter::default()),
            log: Mutex::new(Vec::new()),
            request_count: AtomicUsize::new(0),
            response_delay: Mutex::new(Duration::ZERO),
            team_delays: Mutex::new(HashMap::new()),
            shutdown: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
        }
    }

    /// The simulated "now" in unix seconds.
    pub(crate) fn now(&self) -> i64 {
        lock(&self.now_override)
            .unwrap_or_else(|| wall_clock() + self.clock_offset.load(Ordering::Relaxed))
    }

    pub(crate) fn set_clock_offset(&self, seconds: i64) {
        self.clock_offset.store(seconds, Ordering::Relaxed);
    }

    pub(crate) fn set_now(&self, now: Option<i64>) {
        *lock(&self.now_override) = now;
    }

    /// The audit store with every late event that is due made visible.
    pub(crate) fn audit_visible(&self) -> RwLockReadGuard<'_, AuditStore> {
        let now = Instant::now();
        if read(&self.audit).has_due(now) {
            write(&self.audit).promote_due(now);
        }
        read(&self.audit)
    }

    /// Sleeps up to `d`, waking early when the simulator shuts down.
    pub(crate) fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            if self.shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}
