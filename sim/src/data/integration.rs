//! team.integrationLogs entries: polymorphic (service / app / RSS), with the
//! documented type quirks: `date` is a string and `service_id` is an int or a string.

use serde_json::{json, Map, Value};

use crate::data::world::World;
use crate::rng::Rng;

pub(crate) struct IntegrationEntry {
    pub seq: u64,
    pub date: i64,
    pub value: Value,
    pub user_id: String,
    pub app_id: Option<String>,
    pub service_id: Option<String>,
    pub change_type: &'static str,
}

pub(crate) struct IntegrationStore {
    /// Newest first by `date`, then newest-added first.
    pub entries: Vec<IntegrationEntry>,
    next_seq: u64,
    rng: Rng,
    /// `SimConfig::integration_identical_percent`, drawn from a stream of its own so that the
    /// entries of a seed are the same with copies as without.
    identical_percent: u32,
    copies_rng: Rng,
}

/// (service_type, service_id, channel-bound scope)
const SERVICES: &[(&str, i64, &str)] = &[
    ("Google Calendar", 1_234_567_890, "incoming-webhook"),
    ("Airbrake", 3_456_789_012, "incoming-webhook"),
    ("Incoming WebHooks", 2_211_009_876, "incoming-webhook"),
    ("Outgoing WebHooks", 2_211_009_877, "outgoing-webhook"),
    ("Slash Commands", 2_211_009_878, "commands"),
    ("Jira", 5_566_778_899, "incoming-webhook"),
    ("GitHub", 6_677_889_900, "incoming-webhook"),
    ("Bots", 7_788_990_011, "bot"),
];
const RSS_SERVICE_ID: i64 = 4_567_890_123;
const RSS_FEEDS: &[(&str, &str)] = &[
    ("Slack Engineering", "https://slack.engineering/feed/"),
    ("Example feed", "https://example.com/feed.xml"),
    ("Status updates", "https://status.example.org/history.rss"),
];
const REASONS: &[&str] = &[
    "user",
    "rate_limits",
    "slack",
    "errors",
    "system",
    "admin",
    "api_decline",
    "deauth",
];

impl IntegrationStore {
    pub(crate) fn new(seed: u64, identical_percent: u32) -> IntegrationStore {
        IntegrationStore {
            entries: Vec::new(),
            next_seq: 1,
            rng: Rng::stream(seed, 4),
            identical_percent,
            copies_rng: Rng::stream(seed, 5),
        }
    }

    /// Adds `n` entries, each followed by one or two byte-identical copies with
    /// `identical_percent` chance (the copies are extra).
    pub(crate) fn add(&mut self, world: &World, n: usize, from: i64, to: i64) {
        for _ in 0..n {
            let entry = self.make(world, from, to);
            let copies = if self.identical_percent > 0
                && self.copies_rng.percent(u64::from(self.identical_percent))
            {
                1 + self.copies_rng.below(2)
            } else {
                0
            };
            for _ in 0..copies {
                let copy = IntegrationEntry {
                    seq: self.next_seq,
                    date: entry.date,
                    value: entry.value.clone(),
                    user_id: entry.user_id.clone(),
                    app_id: entry.app_id.clone(),
                    service_id: entry.service_id.clone(),
                    change_type: entry.change_type,
                };
                self.next_seq += 1;
                self.entries.push(copy);
            }
            self.entries.push(entry);
        }
        self.entries
            .sort_by(|a, b| b.date.cmp(&a.date).then(b.seq.cmp(&a.seq)));
    }

    fn make(&mut self, world: &World, from: i64, to: i64) -> IntegrationEntry {
        let rng = &mut self.rng;
        let date = rng.range(from, to);
        let user = &world.users[if rng.percent(60) {
            world.random_admin(rng)
        } else {
            world.random_human(rng)
        }];
        let mut m = Map::new();
        let kind = rng.below(100);
        let mut app_id = None;
        let mut service_id = None;
        let change_type: &'static str;
        let channel = &world.channels[rng.index(world.channels.len())].id;
        if kind < 45 {
            let (service_type, id, scope) = SERVICES[rng.index(SERVICES.len())];
            m.insert(
                "service_id".into(),
                if rng.percent(50) {
                    json!(id)
                } else {
                    json!(id.to_string())
                },
            );
            m.insert("service_type".into(), json!(service_type));
            if scope != "bot" {
                m.insert("channel".into(), json!(channel));
            }
            m.insert("scope".into(), json!(scope));
            change_type = *rng.pick(&["added", "removed", "enabled", "disabled", "updated"]);
            service_id = Some(id.to_string());
        } else if kind < 90 {
            let app = &world.apps[rng.index(world.apps.len())];
            m.insert("app_id".into(), json!(app.id));
            m.insert("app_type".into(), json!(app.name));
            m.insert("scope".into(), json!(app.scopes_bot.join(",")));
            change_type = *rng.pick(&[
                "added", "added", "removed", "enabled", "disabled", "updated", "expanded",
            ]);
            if rng.percent(6) {
                m.insert("admin_app_id".into(), json!(app.id));
            }
            if rng.percent(6) {
                m.insert(
                    "resolution".into(),
                    json!(rng.pick(&["approved", "restricted"])),
                );
            }
            app_id = Some(app.id.clone());
        } else {
            let (title, url) = RSS_FEEDS[rng.index(RSS_FEEDS.len())];
            m.insert(
                "service_id".into(),
                if rng.percent(50) {
                    json!(RSS_SERVICE_ID)
                } else {
                    json!(RSS_SERVICE_ID.to_string())
                },
            );
            m.insert("service_type".into(), json!("RSS"));
            m.insert("channel".into(), json!(channel));
            m.insert("scope".into(), json!("incoming-webhook"));
            m.insert("rss_feed".into(), json!(true));
            m.insert(
                "rss_feed_change_type".into(),
                json!(rng.pick(&["added", "removed", "updated"])),
            );
            m.insert("rss_feed_title".into(), json!(title));
            m.insert("rss_feed_url".into(), json!(url));
            change_type = *rng.pick(&["added", "removed", "updated"]);
            service_id = Some(RSS_SERVICE_ID.to_string());
        }
        if change_type == "disabled" {
            m.insert("reason".into(), json!(REASONS[rng.index(REASONS.len())]));
        }
        m.insert("user_id".into(), json!(user.id));
        m.insert("user_name".into(), json!(user.handle));
        m.insert("date".into(), json!(date.to_string()));
        m.insert("change_type".into(), json!(change_type));
        let seq = self.next_seq;
        self.next_seq += 1;
        IntegrationEntry {
            seq,
            date,
            value: Value::Object(m),
            user_id: user.id.clone(),
            app_id,
            service_id,
            change_type,
        }
    }
}
