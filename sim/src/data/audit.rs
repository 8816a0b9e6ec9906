//! Audit events: compact storage, generation and rendering.
//!
//! An event is stored as a 40-byte blueprint (time, sequence number, a render seed,
//! action, actor, entity). Its JSON is rendered on demand from the blueprint, always
//! identically, so a million events cost ~40 MB and are generated in well under a second
//! (release build), while a 9999-entry page renders in milliseconds.
//! Events are kept sorted newest first (ties by sequence number), so a page is a
//! binary search plus a linear walk: nothing is re-sorted per request.

use std::cmp::Ordering;
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::Instant;

use crate::catalog::{catalog, EntityKind};
use crate::data::world::{EntityRef, User, UserKind, World, SLACK_SECURITY, SLACK_USER};
use crate::json::{push_str, Obj};
use crate::rng::{mix64, Rng};

#[derive(Clone, Copy, Debug)]
pub(crate) struct AuditEvent {
    pub date_create: i64,
    pub seq: u64,
    /// Drives every rendered detail that is not stored here.
    pub seed: u64,
    pub action: u16,
    pub actor: u32,
    pub entity: EntityRef,
}

fn newest_first(a: &AuditEvent, b: &AuditEvent) -> Ordering {
    b.date_create.cmp(&a.date_create).then(a.seq.cmp(&b.seq))
}

/// What a `/logs` request selects, already validated.
pub(crate) struct Selection {
    pub oldest: i64,
    /// min(latest, cursor's before_ts)
    pub upper: i64,
    pub limit: usize,
    pub actions: Option<Vec<u16>>,
    /// `Some(None)`: an actor id that exists nowhere, so nothing matches.
    pub actor: Option<Option<u32>>,
    pub entity: Option<Option<EntityRef>>,
}

impl Selection {
    fn matches(&self, ev: &AuditEvent) -> bool {
        if let Some(actions) = &self.actions {
            if !actions.contains(&ev.action) {
                return false;
            }
        }
        if let Some(actor) = self.actor {
            if actor != Some(ev.actor) {
                return false;
            }
        }
        if let Some(entity) = self.entity {
            if entity != Some(ev.entity)
                || matches!(ev.entity.kind, EntityKind::Message | EntityKind::Huddle)
            {
                return false;
            }
        }
        true
    }
}

pub(crate) struct Page {
    /// Indices into `AuditStore::events`, newest first.
    pub indices: Vec<usize>,
    /// `Some(last_date_create - 1)` when more matching entries remain.
    pub next_before: Option<i64>,
}

pub(crate) struct AuditStore {
    /// Visible events, newest first.
    pub events: Vec<AuditEvent>,
    /// Late events and the moment they become visible (Q12).
    pending: Vec<(Instant, AuditEvent)>,
    next_seq: u64,
    rng: Rng,
}

/// Cumulative action weights: action `i` is chosen for draws in `[cum[i-1], cum[i])`.
fn action_weights() -> &'static [u64] {
    static WEIGHTS: OnceLock<Vec<u64>> = OnceLock::new();
    WEIGHTS.get_or_init(|| {
        let common: &[(&str, u32)] = &[
            ("user_login", 400),
            ("user_logout", 150),
            ("file_downloaded", 250),
            ("user_channel_join", 100),
            ("user_channel_leave", 30),
            ("file_uploaded", 100),
            ("file_shared", 50),
            ("user_login_failed", 50),
            ("public_channel_created", 25),
            ("private_channel_created", 15),
            ("app_installed", 10),
            ("app_approved", 8),
            ("app_scopes_expanded", 6),
            ("role_change_to_admin", 6),
            ("anomaly", 25),
            ("user_session_invalidated", 10),
            ("emoji_added", 15),
            ("channel_renamed", 8),
            ("canvas_edited", 10),
            ("huddle_started", 10),
            ("file_downloaded_blocked", 8),
        ];
        let cat = catalog();
        let mut w = vec![2u64; cat.actions.len()];
        for (name, extra) in common {
            if let Some(i) = cat.index_of(name) {
                w[i as usize] += *extra as u64;
            }
        }
        w.iter()
            .scan(0u64, |sum, x| {
                *sum += x;
                Some(*sum)
            })
            .collect()
    })
}

fn pick_action(rng: &mut Rng) -> u16 {
    let cum = action_weights();
    let total = cum.last().copied().unwrap_or(1);
    let r = rng.below(total);
    cum.partition_point(|&c| c <= r) as u16
}

/// Actions whose entity is the acting user.
fn acts_on_self(name: &str) -> bool {
    matches!(
        name,
        "user_login"
            | "user_logout"
            | "user_login_failed"
            | "user_session_invalidated"
            | "user_session_settings_changed"
            | "user_logout_compromised"
            | "user_session_reset_by_admin"
            | "custom_tos_accepted"
            | "user_email_updated"
            | "user_username_updated"
            | "user_logout_non_compliant_mobile_app_version"
            | "user_force_upgrade_non_compliant_mobile_app_version"
    )
}

impl AuditStore {
    pub(crate) fn new(seed: u64) -> AuditStore {
        AuditStore {
            events: Vec::new(),
            pending: Vec::new(),
            next_seq: 1,
            rng: Rng::stream(seed, 2),
        }
    }

    fn blueprint(
        &mut self,
        world: &World,
        date_create: i64,
        like: Option<(u16, u32)>,
    ) -> AuditEvent {
        let cat = catalog();
        let rng = &mut self.rng;
        let (action, actor) = match like {
            Some(l) => l,
            None => {
                let action = pick_action(rng);
                let a = &cat.actions[action as usize];
                let actor = match a.name {
                    "user_session_invalidated" | "user_logout_compromised" if rng.percent(60) => {
                        SLACK_SECURITY
                    }
                    n if acts_on_self(n) || n == "anomaly" => world.random_human(rng),
                    _ if matches!(a.category, "workspace_or_org" | "channel" | "user")
                        && rng.percent(3) =>
                    {
                        SLACK_USER
                    }
                    _ if matches!(a.category, "channel" | "file" | "message" | "canvas")
                        && rng.percent(8) =>
                    {
                        world.apps[rng.index(world.apps.len())].bot_user
                    }
                    _ if matches!(
                        a.category,
                        "workspace_or_org" | "app" | "role" | "barrier" | "account_type_role"
                    ) =>
                    {
                        world.random_admin(rng)
                    }
                    _ => world.random_human(rng),
                };
                (action, actor as u32)
            }
        };
        let a = &cat.actions[action as usize];
        let idx = match a.entity {
            EntityKind::User => {
                let actor_is_human = world.users[actor as usize].kind == UserKind::Human;
                if actor_is_human
                    && (acts_on_self(a.name) || (a.name == "anomaly" && rng.percent(50)))
                {
                    actor as usize
                } else {
                    world.random_human(rng)
                }
            }
            kind => match world.pool_len(kind) {
                0 => 0,
                len => rng.index(len),
            },
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        AuditEvent {
            date_create,
            seq,
            seed: rng.next_u64(),
            action,
            actor,
            entity: EntityRef {
                kind: a.entity,
                idx: idx as u32,
            },
        }
    }

    /// `n` events with times uniform in `[from, to]`, ~4% of them starting a
    /// same-second burst of 2–6 events (mostly the same actor doing the same thing).
    pub(crate) fn generate(
        &mut self,
        world: &World,
        n: usize,
        from: i64,
        to: i64,
    ) -> Vec<AuditEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let t = self.rng.range(from, to);
            let burst = if self.rng.percent(4) {
                self.rng.range(2, 6) as usize
            } else {
                1
            };
            let room = n - out.len();
            self.push_burst(world, &mut out, t, burst.min(room));
        }
        out
    }

    fn push_burst(&mut self, world: &World, out: &mut Vec<AuditEvent>, t: i64, n: usize) {
        if n == 0 {
            return;
        }
        let first = self.blueprint(world, t, None);
        out.push(first);
        for _ in 1..n {
            let like = if self.rng.percent(70) {
                Some((first.action, first.actor))
            } else {
                None
            };
            let ev = self.blueprint(world, t, like);
            out.push(ev);
        }
    }

    pub(crate) fn burst(&mut self, world: &World, at: i64, n: usize) -> Vec<AuditEvent> {
        let mut out = Vec::with_capacity(n);
        self.push_burst(world, &mut out, at, n);
        out
    }

    /// Makes events visible, keeping the newest-first order.
    pub(crate) fn insert(&mut self, mut batch: Vec<AuditEvent>) {
        batch.sort_by(newest_first);
        if self.events.is_empty() {
            self.events = batch;
        } else {
            // Two sorted runs: the stable sort merges them in linear time.
            self.events.extend(batch);
            self.events.sort_by(newest_first);
        }
    }

    pub(crate) fn insert_late(&mut self, batch: Vec<AuditEvent>, visible_at: Instant) {
        self.pending
            .extend(batch.into_iter().map(|e| (visible_at, e)));
    }

    pub(crate) fn has_due(&self, now: Instant) -> bool {
        self.pending.iter().any(|(at, _)| *at <= now)
    }

    pub(crate) fn promote_due(&mut self, now: Instant) {
        let (due, waiting): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(at, _)| *at <= now);
        self.pending = waiting;
        if !due.is_empty() {
            self.insert(due.into_iter().map(|(_, e)| e).collect());
        }
    }

    /// Index of the first event with `date_create <= ts`.
    pub(crate) fn first_at_or_before(&self, ts: i64) -> usize {
        self.events.partition_point(|e| e.date_create > ts)
    }

    /// One page: `limit` matching entries from `upper` down to `oldest`, extended by
    /// every further match in the same second as the last one taken.
    pub(crate) fn page(&self, sel: &Selection) -> Page {
        let mut indices = Vec::new();
        if sel.upper < sel.oldest || sel.limit == 0 {
            return Page {
                indices,
                next_before: None,
            };
        }
        let mut i = self.first_at_or_before(sel.upper);
        let mut closing_second: Option<i64> = None;
        while let Some(ev) = self.events.get(i) {
            if ev.date_create < sel.oldest || closing_second.is_some_and(|s| ev.date_create != s) {
                break;
            }
            if sel.matches(ev) {
                indices.push(i);
                if closing_second.is_none() && indices.len() >= sel.limit {
                    closing_second = Some(ev.date_create);
                }
            }
            i += 1;
        }
        let next_before = match closing_second {
            Some(s)
                if self.events[i.min(self.events.len())..]
                    .iter()
                    .take_while(|e| e.date_create >= sel.oldest)
                    .any(|e| sel.matches(e)) =>
            {
                Some(s - 1)
            }
            _ => None,
        };
        Page {
            indices,
            next_before,
        }
    }
}

// ---------------------------------------------------------------- rendering

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The event's id: UUID-shaped but opaque. The first 16 characters are a bijection
/// of the sequence number (so ids never collide); about a quarter of ids carry
/// non-hex letters in the last part, like Slack's own examples (Q15).
pub(crate) fn event_id(world: &World, ev: &AuditEvent) -> String {
    let hi = mix64(ev.seq ^ world.salt);
    let lo = mix64(ev.seed ^ 0x05EE_D1D5);
    let mut chars = [0u8; 32];
    for i in 0..16 {
        chars[i] = HEX[(hi >> (60 - 4 * i) & 15) as usize];
        chars[16 + i] = HEX[(lo >> (60 - 4 * i) & 15) as usize];
    }
    if lo.is_multiple_of(4) {
        let mut bits = lo >> 8;
        for _ in 0..1 + (bits % 3) {
            bits >>= 2;
            let pos = 16 + (bits % 16) as usize;
            bits >>= 4;
            chars[pos] = b'g' + (bits % 20) as u8;
            bits >>= 5;
        }
    }
    let mut s = String::with_capacity(36);
    for (i, c) in chars.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            s.push('-');
        }
        s.push(*c as char);
    }
    s
}

const BROWSER_UAS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.37.94 Chrome/122.0.6261.156 Electron/29.1.5 Safari/537.36 Sonic Slack_SSB/4.37.94",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.38.115 Chrome/124.0.6367.60 Electron/30.0.1 Safari/537.36 Sonic Slack_SSB/4.38.115",
    "com.tinyspeck.chatlyio/24.04.10 (iPhone; iOS 17.4.1; Scale/3.00)",
    "Slack/24.04.10.0 (samsung SM-S918B; Android 14)",
];
const ANOMALY_REASONS: &[&str] = &[
    "asn",
    "ip_address",
    "user_agent",
    "tor",
    "session_fingerprint",
    "excessive_downloads",
    "unexpected_scraping",
    "unexpected_admin_action",
    "unexpected_client",
];
const LOCATIONS: &[&str] = &[
    "England, GB",
    "California, US",
    "Bavaria, DE",
    "Ontario, CA",
    "Tokyo, JP",
    "Sao Paulo, BR",
    "Moscow, RU",
];

fn push_ip(out: &mut String, rng: &mut Rng, home: Option<u64>) {
    let v = match home {
        Some(h) if rng.percent(70) => h,
        _ => rng.next_u64(),
    };
    if v % 20 == 0 {
        let _ = write!(
            out,
            "2001:db8:{:x}:{:x}::{:x}",
            (v >> 16) & 0xffff,
            (v >> 32) & 0xffff,
            (v >> 48) & 0xffff
        );
    } else {
        let first = [81u64, 203, 198, 175, 62, 91, 145, 34][(v % 8) as usize];
        let _ = write!(
            out,
            "{}.{}.{}.{}",
            first,
            (v >> 8) % 256,
            (v >> 16) % 256,
            1 + (v >> 24) % 254
        );
    }
}

fn ip_string(rng: &mut Rng, home: Option<u64>) -> String {
    let mut s = String::new();
    push_ip(&mut s, rng, home);
    s
}

fn user_object(o: &mut Obj<'_>, world: &World, user: &User, with_team: bool) {
    o.str("id", &user.id)
        .str("name", &user.name)
        .str("email", &user.email);
    if with_team && matches!(user.kind, UserKind::Human | UserKind::Bot { .. }) {
        o.str("team", &world.workspaces[user.team].id);
    }
}

fn app_object(o: &mut Obj<'_>, world: &World, app_idx: usize) {
    let app = &world.apps[app_idx];
    o.str("id", &app.id)
        .str("name", &app.name)
        .bool("is_distributed", app.is_distributed)
        .bool("is_directory_approved", app.is_directory_approved)
        .bool("is_workflow_app", app.is_workflow_app)
        .str_array("scopes", &app.scopes)
        .str_array("scopes_bot", &app.scopes_bot)
        .str("creator", &world.users[app.creator].id)
        .str("team", &world.workspaces[app.team].id);
}

fn render_entity(o: &mut Obj<'_>, world: &World, ev: &AuditEvent, rng: &mut Rng) {
    let kind = ev.entity.kind;
    let idx = ev.entity.idx as usize;
    o.str("type", kind.name());
    o.obj(kind.name(), |o| match kind {
        EntityKind::User => user_object(o, world, &world.users[idx], rng.percent(85)),
        EntityKind::Channel => {
            let c = &world.channels[idx];
            o.str("id", &c.id)
                .str("privacy", if c.private { "private" } else { "public" })
                .str("name", &c.name)
                .bool("is_shared", c.is_shared)
                .bool("is_org_shared", c.is_org_shared);
            if c.is_org_shared || c.is_shared {
                let teams: Vec<&str> = world.workspaces.iter().map(|w| w.id.as_str()).collect();
                o.str_array("teams_shared_with", &teams);
            }
        }
        EntityKind::File => {
            let f = &world.files[idx];
            o.str("id", &f.id)
                .str("name", &f.name)
                .str("filetype", f.filetype)
                .str("title", &f.title);
        }
        EntityKind::App => app_object(o, world, idx),
        EntityKind::Workspace => {
            let w = &world.workspaces[idx];
            o.str("id", &w.id)
                .str("name", &w.name)
                .str("domain", &w.domain);
        }
        EntityKind::Enterprise => {
            let e = &world.enterprise;
            o.str("id", &e.id)
                .str("name", &e.name)
                .str("domain", &e.domain);
        }
        EntityKind::Message => {
            let c = &world.channels[rng.index(world.channels.len())];
            o.str("team", &world.workspaces[c.team].id)
                .str("channel", &c.id)
                .str(
                    "timestamp",
                    &format!(
                        "{}.{:06}",
                        ev.date_create - rng.range(0, 86_400),
                        rng.below(1_000_000)
                    ),
                );
        }
        EntityKind::Workflow => {
            let w = &world.workflows[idx];
            o.str("id", &w.id).str("name", &w.name);
        }
        EntityKind::WorkflowV2 => {
            let w = &world.workflows_v2[idx];
            o.str("id", &w.id)
                .str("app_id", &world.apps[w.app].id)
                .int("date_updated", ev.date_create - rng.range(0, 30 * 86_400))
                .str("callback_id", &w.callback_id)
                .str("name", &w.name)
                .str("updated_by", &world.users[w.updated_by].id)
                .raw("step_configuration", "[]");
        }
        EntityKind::Usergroup => {
            let g = &world.usergroups[idx];
            o.str("id", &g.id).str("name", &g.name);
        }
        EntityKind::Barrier => {
            let b = &world.barriers[idx];
            let from: Vec<&str> = b
                .barriered_from
                .iter()
                .map(|&g| world.usergroups[g].id.as_str())
                .collect();
            o.str("id", &b.id)
                .str("primary_usergroup", &world.usergroups[b.primary].id)
                .str_array("barriered_from_usergroups", &from)
                .str_array("restricted_subjects", &["call", "im", "mpim"]);
        }
        EntityKind::Role => {
            let r = &world.roles[idx];
            o.str("id", &r.id).str("name", &r.name).str("type", r.kind);
        }
        EntityKind::AccountTypeRole => {
            let r = &world.account_type_roles[idx];
            o.str("id", &r.id).str("name", &r.name);
        }
        EntityKind::Canvas => {
            let c = &world.canvases[idx];
            o.str("id", &c.id)
                .str("filetype", "quip")
                .str("title", &c.name);
        }
        EntityKind::Huddle => {
            let start = ev.date_create - rng.range(60, 3600);
            let participants: Vec<&str> = (0..rng.range(2, 5))
                .map(|_| world.users[world.random_human(rng)].id.as_str())
                .collect();
            o.str("id", &format!("R0{:09X}", rng.below(1 << 36)))
                .int("date_start", start)
                .int("date_end", ev.date_create)
                .str_array("participants", &participants);
        }
    });
}

fn render_context(o: &mut Obj<'_>, world: &World, ev: &AuditEvent, rng: &mut Rng) {
    let cat = catalog();
    let action = &cat.actions[ev.action as usize];
    let actor = &world.users[ev.actor as usize];
    let org_level = ev.entity.kind == EntityKind::Enterprise || rng.percent(10);
    o.obj("location", |o| {
        let (kind, place) = if org_level {
            ("enterprise", &world.enterprise)
        } else {
            ("workspace", &world.workspaces[actor.team])
        };
        o.str("type", kind)
            .str("id", &place.id)
            .str("name", &place.name)
            .str("domain", &place.domain);
    });
    let ua = match actor.kind {
        UserKind::Bot { .. } => "Slack-Apps/1.0 (+https://api.slack.com/robots)",
        _ => BROWSER_UAS[rng.index(BROWSER_UAS.len())],
    };
    o.str("ua", ua);
    match rng.below(100) {
        0..=44 => {
            o.str(
                "session_id",
                &format!("{}", 100_000_000_000 + rng.below(900_000_000_000)),
            );
        }
        45..=79 => {
            o.int(
                "session_id",
                (100_000_000_000 + rng.below(900_000_000_000)) as i64,
            );
        }
        80..=91 => {
            o.null("session_id");
        }
        _ => {}
    }
    if rng.percent(3) {
        o.str("ip_address", "");
    } else {
        let home = mix64(ev.actor as u64 ^ world.salt);
        let out = o.key("ip_address");
        out.push('"');
        push_ip(out, rng, Some(home));
        out.push('"');
    }
    match actor.kind {
        UserKind::Bot { app } => {
            o.obj("app", |o| app_object(o, world, app));
        }
        _ if action.category == "app" && rng.percent(30) => {
            let app = ev.entity.idx as usize % world.apps.len();
            o.obj("app", |o| app_object(o, world, app));
        }
        _ if rng.percent(5) => {
            o.null("app");
        }
        _ => {}
    }
    if rng.per_mille(10) {
        // A key this collector has never seen (Q13).
        o.obj("device", |o| {
            o.str("id", &format!("dev-{:012x}", rng.below(1 << 48)))
                .bool("managed", rng.percent(50))
                .str("platform", "ios");
        });
    }
}

fn pref_value(out: &mut String, rng: &mut Rng) {
    match rng.below(4) {
        0 => push_str(
            out,
            rng.pick_str(&["true", "false", "admins_only", "everyone", "ra", "owners"]),
        ),
        1 => push_str(out, &format!("{}", rng.range(1, 365))),
        2 => crate::json::push_str_array(out, &["admins", "owners"][..rng.index(2) + 1]),
        _ => {
            let mut o = Obj::new(out);
            o.str(
                "type",
                rng.pick_str(&["retain_all", "delete_after", "redact_after"]),
            )
            .int("duration_days", rng.range(0, 400));
            o.end();
        }
    }
}

/// Writes `"details": {…}` for actions that carry details; nothing for the rest.
fn render_details(o: &mut Obj<'_>, world: &World, ev: &AuditEvent, rng: &mut Rng) {
    let name = catalog().actions[ev.action as usize].name;
    match name {
        "anomaly" => {
            o.obj("details", |o| {
                o.int(
                    "action_timestamp",
                    ev.date_create * 1000 + rng.range(0, 999),
                );
                o.str("location", LOCATIONS[rng.index(LOCATIONS.len())]);
                o.str("previous_ip_address", &ip_string(rng, None));
                o.str(
                    "previous_ua",
                    if rng.percent(50) {
                        ""
                    } else {
                        BROWSER_UAS[rng.index(BROWSER_UAS.len())]
                    },
                );
                let first = rng.index(ANOMALY_REASONS.len());
                let n = 1 + rng.index(3);
                let reasons: Vec<&str> = (0..n)
                    .map(|k| ANOMALY_REASONS[(first + k) % ANOMALY_REASONS.len()])
                    .collect();
                o.str_array("reason", &reasons);
            });
        }
        "file_downloaded"
        | "file_uploaded"
        | "file_shared"
        | "file_downloaded_blocked"
        | "file_public_link_created"
            if ev.entity.kind == EntityKind::File && rng.percent(75) =>
        {
            let f = &world.files[ev.entity.idx as usize];
            o.obj("details", |o| {
                let team = &world.workspaces[f.team].id;
                let url = format!(
                    "https://files.slack.com/files-pri/{team}-{}/{}",
                    f.id, f.name
                );
                o.str("url_private", &url);
            });
        }
        "emoji_added" | "emoji_removed" | "emoji_aliased" => {
            o.obj("details", |o| {
                o.str(
                    "name",
                    rng.pick_str(&["partyparrot", "shipit", "this-is-fine", "lgtm", "blobwave"]),
                );
            });
        }
        "emoji_renamed" | "user_email_updated" | "user_username_updated" | "channel_renamed" => {
            o.obj("details", |o| {
                o.str("previous_value", &format!("old-name-{}", rng.below(1000)))
                    .str("new_value", &format!("new-name-{}", rng.below(1000)));
            });
        }
        "channel_retention_changed" => {
            o.obj("details", |o| {
                o.obj("old_retention_policy", |o| {
                    o.str("type", "retain_all").int("duration_days", 0);
                });
                o.obj("new_retention_policy", |o| {
                    o.str("type", "delete_after")
                        .int("duration_days", rng.range(30, 730));
                });
            });
        }
        "channel_posting_permissions_updated" => {
            let u = world.users[world.random_admin(rng)].id.clone();
            o.obj("details", |o| {
                o.obj("who_can_post", |o| {
                    o.str_array("type", &["admin"])
                        .str_array("user", &[u.as_str()]);
                });
                o.obj("can_thread", |o| {
                    o.str_array("type", &["ra"])
                        .str_array("user", &[] as &[&str]);
                });
            });
        }
        "guest_expiration_set" => {
            o.obj("details", |o| {
                o.int(
                    "expires_on",
                    ev.date_create + rng.range(86_400, 90 * 86_400),
                );
            });
        }
        "user_logout" if rng.percent(30) => {
            o.obj("details", |o| {
                o.bool("desktop_app_browser_quit", rng.percent(50));
            });
        }
        "user_session_settings_changed" | "pref.session_duration_changed" => {
            o.obj("details", |o| {
                o.int("duration", rng.range(1, 30) * 86_400);
            });
        }
        "user_channel_join" | "guest_channel_join" if rng.percent(40) => {
            let inviter = &world.users[world.random_human(rng)];
            o.obj("details", |o| {
                o.obj("inviter", |o| user_object(o, world, inviter, true));
            });
        }
        "user_channel_leave" | "guest_channel_leave" if rng.percent(30) => {
            let kicker = &world.users[world.random_admin(rng)];
            o.obj("details", |o| {
                o.obj("kicker", |o| user_object(o, world, kicker, true));
            });
        }
        "app_installed"
        | "app_approved"
        | "app_scopes_expanded"
        | "app_resources_granted"
        | "org_app_installed"
        | "org_app_upgraded_to_org_install" => {
            let app = &world.apps[ev.entity.idx as usize % world.apps.len()];
            o.obj("details", |o| {
                o.bool("is_internal_integration", rng.percent(20))
                    .str("app_owner_id", &world.users[app.creator].id)
                    .str_array("bot_scopes", &app.scopes_bot)
                    .str_array("scopes", &app.scopes)
                    .bool("granular_bot_token", true);
                if name == "app_scopes_expanded" {
                    o.str_array("new_scopes", &app.scopes_bot).str_array(
                        "previous_scopes",
                        &app.scopes_bot[..app.scopes_bot.len() / 2],
                    );
                }
                if name == "app_approved" {
                    o.str("resolution", "approved")
                        .bool("app_previously_resolved", rng.percent(30));
                }
            });
        }
        "barrier_created" | "barrier_updated" | "barrier_deleted" => {
            let b = &world.barriers[ev.entity.idx as usize % world.barriers.len()];
            o.obj("details", |o| {
                let from: Vec<&str> = b
                    .barriered_from
                    .iter()
                    .map(|&g| world.usergroups[g].id.as_str())
                    .collect();
                o.str("barrier_id", &b.id)
                    .str("primary_usergroup_id", &world.usergroups[b.primary].id)
                    .str_array("barriered_from_usergroup_ids", &from)
                    .str_array("restricted_subjects", &["call", "im", "mpim"]);
            });
        }
        "canvas_shared" => {
            let c = &world.channels[rng.index(world.channels.len())];
            o.obj("details", |o| {
                o.obj("shared_with", |o| {
                    o.str("channel_id", &c.id)
                        .str("access_level", rng.pick_str(&["read", "write"]));
                });
            });
        }
        n if n.starts_with("external_shared_channel") || n.starts_with("connect_dm_invite") => {
            o.obj("details", |o| {
                o.str(
                    "external_organization_id",
                    &format!("E0EXT{:05}", rng.below(100_000)),
                )
                .str(
                    "external_organization_name",
                    rng.pick_str(&["Contoso", "Initech", "Globex", "Umbrella"]),
                );
                if rng.percent(50) {
                    o.str("invite_id", &format!("I0{:09X}", rng.below(1 << 36)));
                }
            });
        }
        n if n.contains("export_") => {
            let start = ev.date_create - rng.range(30, 365) * 86_400;
            o.obj("details", |o| {
                o.str(
                    "export_type",
                    rng.pick_str(&["standard", "plus_dm", "full"]),
                )
                .int("export_start_ts", start)
                .int("export_end_ts", ev.date_create - 3600);
            });
        }
        n if n.starts_with("pref.") => {
            o.obj("details", |o| {
                pref_value(o.key("new_value"), rng);
                pref_value(o.key("previous_value"), rng);
                if rng.percent(20) {
                    o.str("name", n.trim_start_matches("pref."));
                }
            });
        }
        _ => {}
    }
}

/// Appends the event's JSON object to `out`. Deterministic in (world, event).
pub(crate) fn render(world: &World, ev: &AuditEvent, out: &mut String) {
    let mut rng = Rng::new(ev.seed);
    let action = &catalog().actions[ev.action as usize];
    let actor = &world.users[ev.actor as usize];
    let mut o = Obj::new(out);
    o.str("id", &event_id(world, ev))
        .int("date_create", ev.date_create)
        .str("action", action.name);
    let actor_team = rng.percent(70);
    o.obj("actor", |o| {
        o.str("type", "user")
            .obj("user", |o| user_object(o, world, actor, actor_team));
    });
    o.obj("entity", |o| render_entity(o, world, ev, &mut rng));
    o.obj("context", |o| render_context(o, world, ev, &mut rng));
    render_details(&mut o, world, ev, &mut rng);
    if action.name == "canvas_edited" && rng.percent(30) {
        let c = &world.channels[rng.index(world.channels.len())];
        o.str("acting_agent", "Slackbot").obj("agent_message", |o| {
            o.str("channel_id", &c.id)
                .str(
                    "message_ts",
                    &format!("{}.{:06}", ev.date_create, rng.below(1_000_000)),
                )
                .str(
                    "thread_ts",
                    &format!("{}.{:06}", ev.date_create - 60, rng.below(1_000_000)),
                );
        });
    }
    if rng.per_mille(15) {
        // An unknown future key (Q13).
        o.obj("origin", |o| {
            o.str("service", "slack")
                .str("region", rng.pick_str(&["us-east-1", "eu-central-1"]))
                .int("schema", 2);
        });
    }
    o.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_opaque_and_rendering_is_valid_json() {
        let world = World::generate(3);
        let mut store = AuditStore::new(3);
        let evs = store.generate(&world, 5000, 1_700_000_000, 1_700_100_000);
        let mut ids = std::collections::HashSet::new();
        let mut non_hex = 0;
        let mut kinds = std::collections::HashSet::new();
        for ev in &evs {
            let mut s = String::new();
            render(&world, ev, &mut s);
            let v: serde_json::Value =
                serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
            let id = v["id"].as_str().unwrap().to_string();
            assert_eq!(id, event_id(&world, ev));
            if id.chars().any(|c| c.is_ascii_alphabetic() && c > 'f') {
                non_hex += 1;
            }
            assert!(ids.insert(id));
            kinds.insert(v["entity"]["type"].as_str().unwrap().to_string());
            let mut again = String::new();
            render(&world, ev, &mut again);
            assert_eq!(s, again);
        }
        assert!(non_hex > 500, "{non_hex}");
        assert!(kinds.len() >= 12, "{kinds:?}");
    }
}
