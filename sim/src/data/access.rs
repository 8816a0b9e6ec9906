//! team.accessLogs rows: mutable aggregates per (user, IP, user agent), kept in an
//! index sorted by the configured sort key (newest first, ties by row id).

use std::collections::HashSet;

use crate::config::AccessSortKey;
use crate::data::world::World;
use crate::rng::{mix64, Rng};
use crate::AccessRowTruth;

#[derive(Clone, Debug)]
pub(crate) struct AccessRow {
    pub row_id: u64,
    /// Index into `World::users`.
    pub user: usize,
    pub ip: String,
    pub user_agent: String,
    pub date_first: i64,
    pub date_last: i64,
    pub count: u64,
    pub isp: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
}

pub(crate) struct AccessStore {
    pub rows: Vec<AccessRow>,
    /// Indices into `rows`, in serving order.
    pub order: Vec<usize>,
    /// Every state any row has had, oldest first (ground truth for rows changed mid-walk).
    pub history: Vec<AccessRow>,
    /// team.accessLogs requests answered (drives `SimConfig::access_touch_every`).
    pub served: usize,
    /// (user, ip, user agent, date_first) of every row: Slack aggregates one row per such
    /// combination and first-seen day, so the simulator never makes two.
    combos: HashSet<(usize, String, String, i64)>,
    sort_key: AccessSortKey,
    next_row_id: u64,
    rng: Rng,
}

const USER_AGENTS: &[&str] = &[
    "SlackWeb Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "SlackWeb Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Slack/4.38.115 (Macintosh; Intel Mac OS X 14_4_1) Electron/30.0.1",
    "Slack/4.37.94 (Windows NT 10.0; Win64; x64) Electron/29.1.5",
    "com.tinyspeck.chatlyio/24.04.10 (iPhone; iOS 17.4.1; Scale/3.00)",
    "Slack/24.04.10.0 (samsung SM-S918B; Android 14)",
    "ApiApp/A0123ABCD Python/3.11 slack_sdk/3.27.1",
    "ApiApp/A0456EFGH node/20.12.2 @slack/web-api/7.0.4",
];
const GEO: &[(&str, &str, &str)] = &[
    ("Comcast Cable", "US", "CA"),
    ("Verizon Fios", "US", "NY"),
    ("Deutsche Telekom AG", "DE", "BY"),
    ("British Telecommunications PLC", "GB", "ENG"),
    ("NTT Communications", "JP", "13"),
    ("Amazon.com", "US", "VA"),
    ("Bell Canada", "CA", "ON"),
];

impl AccessStore {
    pub(crate) fn new(seed: u64, sort_key: AccessSortKey) -> AccessStore {
        AccessStore {
            rows: Vec::new(),
            order: Vec::new(),
            history: Vec::new(),
            served: 0,
            combos: HashSet::new(),
            sort_key,
            next_row_id: 1,
            rng: Rng::stream(seed, 3),
        }
    }

    pub(crate) fn key(&self, row: &AccessRow) -> i64 {
        field(row, self.sort_key)
    }

    fn ip_for(&mut self, world: &World, user: usize) -> String {
        let v = if self.rng.percent(65) {
            mix64(user as u64 ^ world.salt)
        } else {
            self.rng.next_u64()
        };
        let first = [81u64, 203, 198, 175, 62, 91, 145, 34][(v % 8) as usize];
        format!(
            "{}.{}.{}.{}",
            first,
            (v >> 8) % 256,
            (v >> 16) % 256,
            1 + (v >> 24) % 254
        )
    }

    /// Adds `n` rows whose first access lies in `[from, to]`.
    pub(crate) fn add(&mut self, world: &World, n: usize, from: i64, to: i64) {
        for _ in 0..n {
            let rng = &mut self.rng;
            let date_first = rng.range(from, to);
            let date_last = if rng.percent(40) {
                date_first
            } else {
                rng.range(date_first, to)
            };
            let count = if date_last == date_first {
                1
            } else {
                let cap = 1 + rng.below(2000);
                1 + rng.below(cap)
            };
            let (isp, country, region) = if rng.percent(35) {
                (None, None, None)
            } else {
                let (i, c, r) = GEO[rng.index(GEO.len())];
                (
                    Some(i.to_string()),
                    Some(c.to_string()),
                    Some(r.to_string()),
                )
            };
            // Some rows repeat an existing (user, ip, ua) with a later date_first (Q24).
            let (user, mut ip, user_agent) = if !self.rows.is_empty() && rng.percent(8) {
                let r = &self.rows[rng.index(self.rows.len())];
                (r.user, r.ip.clone(), r.user_agent.clone())
            } else {
                let user = world.random_human(rng);
                let ua = USER_AGENTS[rng.index(USER_AGENTS.len())].to_string();
                (user, self.ip_for(world, user), ua)
            };
            while self
                .combos
                .contains(&(user, ip.clone(), user_agent.clone(), date_first))
            {
                ip = self.random_ip();
            }
            self.push(AccessRow {
                row_id: 0,
                user,
                ip,
                user_agent,
                date_first,
                date_last,
                count,
                isp,
                country,
                region,
            });
        }
        self.reindex();
    }

    /// Adds `n` new combinations whose one row has exactly `date_first` and `date_last`: a tie
    /// of `n` rows under either sort key (a mass sign-in in one second).
    pub(crate) fn add_tie(&mut self, world: &World, n: usize, date_first: i64, date_last: i64) {
        let date_last = date_last.max(date_first);
        for _ in 0..n {
            let user = world.random_human(&mut self.rng);
            let user_agent = USER_AGENTS[self.rng.index(USER_AGENTS.len())].to_string();
            let mut ip = self.ip_for(world, user);
            while self
                .combos
                .contains(&(user, ip.clone(), user_agent.clone(), date_first))
            {
                ip = self.random_ip();
            }
            let count = if date_last == date_first { 1 } else { 2 };
            self.push(AccessRow {
                row_id: 0,
                user,
                ip,
                user_agent,
                date_first,
                date_last,
                count,
                isp: None,
                country: None,
                region: None,
            });
        }
        self.reindex();
    }

    fn random_ip(&mut self) -> String {
        let v = self.rng.next_u64();
        format!(
            "{}.{}.{}.{}",
            [81u64, 203, 198, 175, 62, 91, 145, 34][(v % 8) as usize],
            (v >> 8) % 256,
            (v >> 16) % 256,
            1 + (v >> 24) % 254
        )
    }

    fn push(&mut self, mut row: AccessRow) {
        row.row_id = self.next_row_id;
        self.next_row_id += 1;
        self.combos.insert((
            row.user,
            row.ip.clone(),
            row.user_agent.clone(),
            row.date_first,
        ));
        self.history.push(row.clone());
        self.rows.push(row);
    }

    /// Bumps `count` and sets `date_last = at` on `n` distinct rows.
    pub(crate) fn touch(&mut self, n: usize, at: i64) {
        let len = self.rows.len();
        let mut picked: Vec<usize> = (0..len).collect();
        for i in 0..n.min(len) {
            let j = i + self.rng.index(len - i);
            picked.swap(i, j);
            let row = &mut self.rows[picked[i]];
            row.count += 1;
            // Activity recorded late (`at` in the past) never moves date_last back.
            row.date_last = row.date_last.max(at);
            self.history.push(row.clone());
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rows[a], &self.rows[b]);
            self.key(rb)
                .cmp(&self.key(ra))
                .then(rb.row_id.cmp(&ra.row_id))
        });
        self.order = order;
    }

    /// The rows a request with `before` lists, as indices into `rows` in serving order: those
    /// whose `filter` field is at most `before`. Filtering on the sort key gives a suffix of
    /// `order`; filtering on the other field picks rows throughout it.
    pub(crate) fn listing(&self, before: i64, filter: AccessSortKey) -> Vec<usize> {
        if filter == self.sort_key {
            let start = self
                .order
                .partition_point(|&i| self.key(&self.rows[i]) > before);
            return self.order[start..].to_vec();
        }
        self.order
            .iter()
            .copied()
            .filter(|&i| field(&self.rows[i], filter) <= before)
            .collect()
    }

    /// Position in `listing` (a subsequence of `order`) of the first row strictly after the
    /// keyset position `(key, row_id)`.
    pub(crate) fn first_after(&self, listing: &[usize], key: i64, row_id: u64) -> usize {
        listing.partition_point(|&i| {
            let r = &self.rows[i];
            (self.key(r), r.row_id) >= (key, row_id)
        })
    }

    /// A row state as the ground truth shows it.
    pub(crate) fn truth(&self, world: &World, r: &AccessRow) -> AccessRowTruth {
        let u = &world.users[r.user];
        AccessRowTruth {
            user_id: u.id.clone(),
            username: u.handle.clone(),
            ip: r.ip.clone(),
            user_agent: r.user_agent.clone(),
            date_first: r.date_first,
            date_last: r.date_last,
            count: r.count,
            isp: r.isp.clone(),
            country: r.country.clone(),
            region: r.region.clone(),
        }
    }
}

fn field(row: &AccessRow, which: AccessSortKey) -> i64 {
    match which {
        AccessSortKey::DateFirst => row.date_first,
        AccessSortKey::DateLast => row.date_last,
    }
}
