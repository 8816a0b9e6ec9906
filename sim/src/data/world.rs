//! The simulated organization: workspaces, people, bots, channels, files, apps and
//! the other objects audit entries point at. Built once from the seed; the three
//! log datasets all draw on it so that ids line up across APIs.

use std::collections::{HashMap, HashSet};

use crate::catalog::EntityKind;
use crate::rng::Rng;
use crate::tokens::{ENTERPRISE_ID, WORKSPACE_IDS};

pub(crate) const SLACK_SECURITY: usize = 0;
pub(crate) const SLACK_USER: usize = 1;

const FIRST: &[&str] = &[
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Jia", "Kofi",
    "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma",
    "Viktor", "Wen", "Ximena", "Yusuf", "Zoe", "Charlie", "Billie", "Joey", "Ines", "Ravi", "Mei",
];
const LAST: &[&str] = &[
    "Parker",
    "Okafor",
    "Nakamura",
    "Schmidt",
    "Haddad",
    "Lindqvist",
    "Moreau",
    "Kowalski",
    "Rossi",
    "Singh",
    "Garcia",
    "Novak",
    "O'Brien",
    "Dubois",
    "Kim",
    "Mensah",
    "Petrov",
    "Silva",
    "Tanaka",
    "Weber",
    "Yilmaz",
    "Costa",
    "Fischer",
    "Ahmed",
];
const WORKSPACE_NAMES: [(&str, &str); 3] = [
    ("Birdland HQ", "birdland-hq"),
    ("Birdland Engineering", "birdland-eng"),
    ("Birdland Sales", "birdland-sales"),
];
const APP_NAMES: &[&str] = &[
    "Google Drive",
    "Jira Cloud",
    "GitHub",
    "Zoom",
    "PagerDuty",
    "Salesforce",
    "Polly",
    "Donut",
    "Trello",
    "Asana",
    "Loom",
    "Figma",
    "Datadog",
    "Sentry",
    "Workday",
    "Okta",
    "Box",
    "Dropbox",
    "Confluence Cloud",
    "Channel Spinner App",
    "Geekbot",
    "Simple Poll",
    "Lucidchart",
    "Notion",
    "Security Bot",
];
const CHANNEL_WORDS: &[&str] = &[
    "general",
    "random",
    "eng",
    "sales",
    "support",
    "incident",
    "release",
    "design",
    "security",
    "ops",
    "marketing",
    "finance",
    "hr",
    "data",
    "mobile",
    "web",
    "infra",
    "oncall",
    "legal",
    "social",
];
const CHANNEL_SUFFIX: &[&str] = &[
    "",
    "-alerts",
    "-team",
    "-chat",
    "-announce",
    "-emea",
    "-us",
    "-private",
    "-2024",
    "-help",
];
const FILE_STEMS: &[&str] = &[
    "Q3 forecast",
    "roadmap",
    "image",
    "screenshot",
    "contract",
    "invoice",
    "board deck",
    "incident report",
    "design review",
    "payroll",
    "customer list",
    "architecture",
    "notes",
];
const FILE_TYPES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("pdf", "application/pdf"),
    ("xlsx", "xlsx"),
    ("docx", "docx"),
    ("csv", "csv"),
    ("key", "keynote"),
    ("txt", "text"),
    ("zip", "zip"),
    ("mp4", "mp4"),
];
pub(crate) const USER_SCOPES: &[&str] = &[
    "identify",
    "channels:history",
    "files:read",
    "users:read",
    "search:read",
];
pub(crate) const BOT_SCOPES: &[&str] = &[
    "channels:manage",
    "channels:read",
    "chat:write",
    "commands",
    "files:write",
    "groups:write",
    "im:write",
    "mpim:write",
    "users:read",
    "incoming-webhook",
    "reactions:write",
];
const ROLE_NAMES: &[(&str, &str)] = &[
    ("Channels Admin", "channels_admin"),
    ("Users Admin", "users_admin"),
    ("Roles Admin", "roles_admin"),
    ("Conversation Admin", "conversation_admin"),
    ("Analytics Admin", "analytics_admin"),
    ("Workflow Admin", "workflow_admin"),
    ("Security Admin", "security_admin"),
    ("Audit Viewer", "audit_viewer"),
];
const ACCOUNT_TYPE_ROLES: &[&str] = &["Owner", "Admin", "Member", "Multi-Channel Guest"];

pub(crate) struct Place {
    pub id: String,
    pub name: String,
    pub domain: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserKind {
    Human,
    Bot { app: usize },
    SlackSecurity,
    SlackUser,
}

/// A person or bot. The first 8 humans are the org's admins.
pub(crate) struct User {
    pub id: String,
    pub name: String,
    /// The `username` handle used by team.accessLogs / integrationLogs.
    pub handle: String,
    pub email: String,
    /// Index into `World::workspaces`.
    pub team: usize,
    pub kind: UserKind,
}

pub(crate) struct Channel {
    pub id: String,
    pub name: String,
    pub private: bool,
    pub is_shared: bool,
    pub is_org_shared: bool,
    pub team: usize,
}

pub(crate) struct File {
    pub id: String,
    pub name: String,
    pub filetype: &'static str,
    pub title: String,
    pub team: usize,
}

pub(crate) struct App {
    pub id: String,
    pub name: String,
    pub is_distributed: bool,
    pub is_directory_approved: bool,
    pub is_workflow_app: bool,
    pub scopes: Vec<&'static str>,
    pub scopes_bot: Vec<&'static str>,
    pub creator: usize,
    pub team: usize,
    pub bot_user: usize,
}

/// A plain `{id, name}` object (workflows, user groups, account-type roles, canvases).
pub(crate) struct Named {
    pub id: String,
    pub name: String,
}

pub(crate) struct Role {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
}

pub(crate) struct Barrier {
    pub id: String,
    pub primary: usize,
    pub barriered_from: Vec<usize>,
}

pub(crate) struct WorkflowV2 {
    pub id: String,
    pub app: usize,
    pub callback_id: String,
    pub name: String,
    pub updated_by: usize,
}

/// A reference to an entity object in the world (`idx` into the matching pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct EntityRef {
    pub kind: EntityKind,
    pub idx: u32,
}

pub(crate) struct World {
    /// Salt mixed into event ids so that different seeds give different ids.
    pub salt: u64,
    pub enterprise: Place,
    pub workspaces: Vec<Place>,
    /// 0 = USLACKSECURITY, 1 = USLACKUSER, then humans, then one bot per app.
    pub users: Vec<User>,
    pub humans: Vec<usize>,
    pub channels: Vec<Channel>,
    pub files: Vec<File>,
    pub apps: Vec<App>,
    pub workflows: Vec<Named>,
    pub workflows_v2: Vec<WorkflowV2>,
    pub usergroups: Vec<Named>,
    pub barriers: Vec<Barrier>,
    pub roles: Vec<Role>,
    pub account_type_roles: Vec<Named>,
    pub canvases: Vec<Named>,
    pub user_by_id: HashMap<String, u32>,
    pub entity_by_id: HashMap<String, EntityRef>,
}

const ID_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

struct Ids {
    seen: HashSet<String>,
}

impl Ids {
    fn make(&mut self, rng: &mut Rng, prefix: &str, len: usize) -> String {
        loop {
            let mut s = String::from(prefix);
            for _ in 0..len {
                s.push(ID_CHARS[rng.index(ID_CHARS.len())] as char);
            }
            if self.seen.insert(s.clone()) {
                return s;
            }
        }
    }
}

impl World {
    pub(crate) fn generate(seed: u64) -> World {
        let mut rng = Rng::stream(seed, 1);
        let mut ids = Ids {
            seen: HashSet::new(),
        };
        let enterprise = Place {
            id: ENTERPRISE_ID.into(),
            name: "Birdland".into(),
            domain: "birdland".into(),
        };
        let workspaces: Vec<Place> = WORKSPACE_IDS
            .iter()
            .zip(WORKSPACE_NAMES)
            .map(|(id, (name, domain))| Place {
                id: id.to_string(),
                name: name.into(),
                domain: domain.into(),
            })
            .collect();

        let mut users = vec![
            User {
                id: "USLACKSECURITY".into(),
                name: "Slack Security".into(),
                handle: "slack-security".into(),
                email: String::new(),
                team: 0,
                kind: UserKind::SlackSecurity,
            },
            User {
                id: "USLACKUSER".into(),
                name: "Slack".into(),
                handle: "slackuser".into(),
                email: String::new(),
                team: 0,
                kind: UserKind::SlackUser,
            },
        ];
        let mut humans = Vec::new();
        let mut used_handles = HashSet::new();
        for i in 0..160 {
            let first = FIRST[rng.index(FIRST.len())];
            let last = LAST[rng.index(LAST.len())];
            let mut handle = format!(
                "{}.{}",
                first.to_lowercase(),
                last.to_lowercase().replace('\'', "")
            );
            let mut n = 2;
            while !used_handles.insert(handle.clone()) {
                handle = format!(
                    "{}.{}{n}",
                    first.to_lowercase(),
                    last.to_lowercase().replace('\'', "")
                );
                n += 1;
            }
            // Grid users are mostly W…; a few legacy workspace users are U….
            let prefix = if rng.percent(85) { "W0" } else { "U0" };
            humans.push(users.len());
            users.push(User {
                id: ids.make(&mut rng, prefix, 8),
                name: format!("{first} {last}"),
                email: format!("{handle}@birdland.example"),
                handle,
                team: if i < 8 {
                    0
                } else {
                    rng.index(workspaces.len())
                },
                kind: UserKind::Human,
            });
        }

        let mut apps = Vec::new();
        for (i, name) in APP_NAMES.iter().enumerate() {
            let team = rng.index(workspaces.len());
            let id = ids.make(&mut rng, "A0", 9);
            let mut scopes_bot: Vec<&'static str> = BOT_SCOPES
                .iter()
                .copied()
                .filter(|_| rng.percent(40))
                .collect();
            if scopes_bot.is_empty() {
                scopes_bot.push("chat:write");
            }
            let scopes: Vec<&'static str> = USER_SCOPES
                .iter()
                .copied()
                .filter(|_| rng.percent(25))
                .collect();
            let bot_user = users.len();
            users.push(User {
                id: ids.make(&mut rng, "W0", 8),
                name: name.to_string(),
                handle: name.to_lowercase().replace(' ', "_"),
                email: format!("botuser-{}-{}@slack-bots.com", WORKSPACE_IDS[team], id),
                team,
                kind: UserKind::Bot { app: i },
            });
            apps.push(App {
                id,
                name: name.to_string(),
                is_distributed: rng.percent(70),
                is_directory_approved: rng.percent(50),
                is_workflow_app: rng.percent(10),
                scopes,
                scopes_bot,
                creator: humans[rng.index(humans.len())],
                team,
                bot_user,
            });
        }

        let mut channels = Vec::new();
        let mut names = HashSet::new();
        while channels.len() < 120 {
            let name = format!("{}{}", rng.pick(CHANNEL_WORDS), rng.pick(CHANNEL_SUFFIX));
            let name = if names.insert(name.clone()) {
                name
            } else {
                format!("{name}-{}", channels.len())
            };
            names.insert(name.clone());
            let private = rng.percent(25);
            let is_shared = rng.percent(8);
            channels.push(Channel {
                id: ids.make(&mut rng, if private { "G0" } else { "C0" }, 9),
                name,
                private,
                is_shared,
                is_org_shared: !is_shared && rng.percent(15),
                team: rng.index(workspaces.len()),
            });
        }

        let files = (0..3000)
            .map(|_| {
                let (ext, filetype) = *rng.pick(FILE_TYPES);
                let stem = rng.pick(FILE_STEMS);
                let name = if rng.percent(30) {
                    format!("{stem} ({}).{ext}", rng.range(1, 9))
                } else {
                    format!("{stem}.{ext}")
                };
                File {
                    id: ids.make(&mut rng, "F0", 9),
                    title: name.clone(),
                    name: name.replace(' ', "_"),
                    filetype,
                    team: rng.index(workspaces.len()),
                }
            })
            .collect();

        let named =
            |rng: &mut Rng, ids: &mut Ids, prefix: &str, names: &[&str], n: usize| -> Vec<Named> {
                (0..n)
                    .map(|i| Named {
                        id: ids.make(rng, prefix, 9),
                        name: format!(
                            "{}{}",
                            names[i % names.len()],
                            if i >= names.len() {
                                format!(" {}", i / names.len() + 1)
                            } else {
                                String::new()
                            }
                        ),
                    })
                    .collect()
            };
        let workflows = named(
            &mut rng,
            &mut ids,
            "Wf0",
            &[
                "Onboarding",
                "Access request",
                "Incident intake",
                "Time off",
                "Expense report",
                "IT help",
            ],
            30,
        );
        let usergroups = named(
            &mut rng,
            &mut ids,
            "S0",
            &[
                "engineering",
                "sales-team",
                "legal",
                "finance",
                "contractors",
                "admins",
                "oncall",
            ],
            15,
        );
        let account_type_roles = named(
            &mut rng,
            &mut ids,
            "Rl0",
            ACCOUNT_TYPE_ROLES,
            ACCOUNT_TYPE_ROLES.len(),
        );
        let canvases = named(
            &mut rng,
            &mut ids,
            "F0",
            &[
                "Team charter",
                "Runbook",
                "Meeting notes",
                "Launch plan",
                "Weekly update",
            ],
            40,
        );
        let roles = ROLE_NAMES
            .iter()
            .map(|(name, _)| Role {
                id: ids.make(&mut rng, "Rl0", 9),
                name: name.to_string(),
                kind: if rng.percent(70) { "system" } else { "custom" },
            })
            .collect();
        let barriers = (0..5)
            .map(|i| Barrier {
                id: ids.make(&mut rng, "Ba0", 9),
                primary: i % 15,
                barriered_from: vec![(i + 3) % 15, (i + 7) % 15],
            })
            .collect();
        let workflows_v2 = (0..20)
            .map(|i| WorkflowV2 {
                id: ids.make(&mut rng, "Wf0", 9),
                app: rng.index(apps.len()),
                callback_id: format!("workflow_{i}"),
                name: format!(
                    "{} v2",
                    rng.pick(&["Triage", "Standup", "Approvals", "Escalation"])
                ),
                updated_by: humans[rng.index(humans.len())],
            })
            .collect();

        let mut world = World {
            salt: rng.next_u64(),
            enterprise,
            workspaces,
            users,
            humans,
            channels,
            files,
            apps,
            workflows,
            workflows_v2,
            usergroups,
            barriers,
            roles,
            account_type_roles,
            canvases,
            user_by_id: HashMap::new(),
            entity_by_id: HashMap::new(),
        };
        world.index();
        world
    }

    fn index(&mut self) {
        for (i, u) in self.users.iter().enumerate() {
            self.user_by_id.insert(u.id.clone(), i as u32);
        }
        let mut add = |kind: EntityKind, ids: Vec<&String>| {
            for (i, id) in ids.into_iter().enumerate() {
                self.entity_by_id.entry(id.clone()).or_insert(EntityRef {
                    kind,
                    idx: i as u32,
                });
            }
        };
        add(EntityKind::User, self.users.iter().map(|x| &x.id).collect());
        add(
            EntityKind::Channel,
            self.channels.iter().map(|x| &x.id).collect(),
        );
        add(EntityKind::File, self.files.iter().map(|x| &x.id).collect());
        add(EntityKind::App, self.apps.iter().map(|x| &x.id).collect());
        add(
            EntityKind::Workspace,
            self.workspaces.iter().map(|x| &x.id).collect(),
        );
        add(EntityKind::Enterprise, vec![&self.enterprise.id]);
        add(
            EntityKind::Workflow,
            self.workflows.iter().map(|x| &x.id).collect(),
        );
        add(
            EntityKind::WorkflowV2,
            self.workflows_v2.iter().map(|x| &x.id).collect(),
        );
        add(
            EntityKind::Usergroup,
            self.usergroups.iter().map(|x| &x.id).collect(),
        );
        add(
            EntityKind::Barrier,
            self.barriers.iter().map(|x| &x.id).collect(),
        );
        add(EntityKind::Role, self.roles.iter().map(|x| &x.id).collect());
        add(
            EntityKind::AccountTypeRole,
            self.account_type_roles.iter().map(|x| &x.id).collect(),
        );
        add(
            EntityKind::Canvas,
            self.canvases.iter().map(|x| &x.id).collect(),
        );
    }

    /// Number of objects of a kind that entity references may point at
    /// (0 for kinds rendered per event: messages and huddles).
    pub(crate) fn pool_len(&self, kind: EntityKind) -> usize {
        match kind {
            EntityKind::User => self.users.len(),
            EntityKind::Channel => self.channels.len(),
            EntityKind::File => self.files.len(),
            EntityKind::App => self.apps.len(),
            EntityKind::Workspace => self.workspaces.len(),
            EntityKind::Enterprise => 1,
            EntityKind::Workflow => self.workflows.len(),
            EntityKind::WorkflowV2 => self.workflows_v2.len(),
            EntityKind::Usergroup => self.usergroups.len(),
            EntityKind::Barrier => self.barriers.len(),
            EntityKind::Role => self.roles.len(),
            EntityKind::AccountTypeRole => self.account_type_roles.len(),
            EntityKind::Canvas => self.canvases.len(),
            EntityKind::Message | EntityKind::Huddle => 0,
        }
    }

    pub(crate) fn random_human(&self, rng: &mut Rng) -> usize {
        self.humans[rng.index(self.humans.len())]
    }

    pub(crate) fn random_admin(&self, rng: &mut Rng) -> usize {
        self.humans[rng.index(8)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_is_deterministic_and_ids_are_unique() {
        let a = World::generate(42);
        let b = World::generate(42);
        assert_eq!(
            a.users.iter().map(|u| &u.id).collect::<Vec<_>>(),
            b.users.iter().map(|u| &u.id).collect::<Vec<_>>()
        );
        assert_eq!(a.files[17].id, b.files[17].id);
        assert_eq!(a.user_by_id.len(), a.users.len());
        let c = World::generate(43);
        assert_ne!(a.users[5].id, c.users[5].id);
    }
}
