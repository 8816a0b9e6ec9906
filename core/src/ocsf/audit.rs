//! Audit Logs entries (`{id, date_create, action, actor, entity, context, details}`) to OCSF.
//!
//! The class and activity come from the action table; the shape decides the attributes:
//! `actor.user` → `actor.user`, `context.session_id` (string, integer or null) →
//! `actor.session.uid`, `context.app` → `actor.app_uid`/`actor.app_name`, a valid
//! `context.ip_address` → `src_endpoint.ip`, `context.ua` → `http_request.user_agent` (IAM
//! classes), and the entity (keyed by its type) → the class's target (`user`, `group`, `entity`,
//! `file`, …). `context.location` gives `metadata.tenant_uid` and stays in `unmapped`, with
//! `details` and every other field without an OCSF home. The `anomaly` action (Slack's security
//! detections) becomes a Detection Finding, built in `finding.rs`.

use serde_json::{json, Map, Value};

use super::{
    action_row, scalar_string, ActionRow, Base, Ctx, Mapped, Outcome, Src, ACCOUNT_CHANGE,
    AUTHENTICATION, BASE_EVENT, DETECTION_FINDING, ENTITY_MANAGEMENT, FILE_HOSTING,
    GROUP_MANAGEMENT, OTHER, USER_ACCESS,
};

/// Membership actions whose actor is the member (Slack: "the actor parameter describes the user
/// who joined the channel").
const SELF_MEMBERSHIP: &[&str] = &[
    "user_channel_join",
    "user_channel_leave",
    "guest_channel_join",
    "guest_channel_leave",
    "user_joined_workspace",
    "guest_joined_workspace",
];

/// Entity types whose object is a document Slack hosts (file ids start with `F`).
const FILE_TYPES: &[&str] = &["file", "canvas", "list"];

pub(super) fn map(ev: &Value, ctx: &Ctx) -> Outcome {
    let tenant_uid = ctx
        .team_id
        .map(str::to_string)
        .or_else(|| ev.pointer("/context/location/id").and_then(scalar_string));
    let action = ev
        .get("action")
        .and_then(Value::as_str)
        .filter(|a| !a.trim().is_empty());
    let Some(action) = action else {
        return Outcome::Base(Base {
            activity_name: None,
            severity_id: 1,
            status_id: None,
            event_code: None,
            tenant_uid,
            message: "Slack audit entry without an action".into(),
        });
    };
    let row = action_row(action);
    let base = |message: String| {
        Outcome::Base(Base {
            activity_name: Some(action.to_string()),
            severity_id: row.map_or(1, |r| r.severity_id),
            status_id: row.and_then(|r| known(r.status_id)),
            event_code: Some(action.to_string()),
            tenant_uid: tenant_uid.clone(),
            message,
        })
    };
    let Some(row) = row else {
        return base(format!(
            "Slack audit action `{action}` is not in the action table"
        ));
    };
    if row.class_uid == BASE_EVENT {
        return base(format!(
            "no OCSF {} class fits Slack audit action `{action}`",
            super::OCSF_VERSION
        ));
    }

    let mut src = Src::new(ev);
    src.mark(&["action"]);
    if src.str_at(&["id"]).as_deref() == Some(ctx.record_id) {
        src.mark(&["id"]);
    }
    if src.peek(&["date_create"]).and_then(Value::as_i64) == Some(ctx.time) {
        src.mark(&["date_create"]);
    }
    if row.class_uid == DETECTION_FINDING {
        // A finding has its own attributes (no src_endpoint or http_request) and its severity
        // comes from Slack's reasons, not from the action.
        let (attrs, severity_id) = super::finding::anomaly(&mut src, ctx);
        return Outcome::Mapped(
            Mapped {
                class_uid: row.class_uid,
                activity_id: row.activity_id,
                source_activity: (row.activity_id == OTHER).then(|| action.to_string()),
                severity_id,
                status_id: None,
                attrs,
                event_code: Some(action.to_string()),
                tenant_uid,
            },
            src.into_used(),
        );
    }
    let built = match row.class_uid {
        AUTHENTICATION => authentication(&mut src),
        ACCOUNT_CHANGE => account_change(&mut src),
        USER_ACCESS => user_access(&mut src),
        GROUP_MANAGEMENT => group_management(&mut src, action),
        ENTITY_MANAGEMENT => entity_management(&mut src, row),
        FILE_HOSTING => file_hosting(&mut src),
        other => Err(format!("class {other} has no builder")),
    };
    let mut attrs = match built {
        Ok(a) => a,
        Err(reason) => {
            return base(format!(
                "Slack audit action `{action}` is kept as a Base Event: {reason}"
            ))
        }
    };
    common(&mut src, row.class_uid, &mut attrs);
    if row.class_uid == FILE_HOSTING && !attrs.contains_key("actor") {
        return base(format!(
            "Slack audit action `{action}` is kept as a Base Event: no actor"
        ));
    }
    Outcome::Mapped(
        Mapped {
            class_uid: row.class_uid,
            activity_id: row.activity_id,
            source_activity: (row.activity_id == OTHER).then(|| action.to_string()),
            severity_id: row.severity_id,
            status_id: known(row.status_id),
            attrs,
            event_code: Some(action.to_string()),
            tenant_uid,
        },
        src.into_used(),
    )
}

fn known(status_id: u32) -> Option<u32> {
    (status_id != 0).then_some(status_id)
}

/// The attributes every class gets: actor, src_endpoint, and the user agent where the class has
/// `http_request`.
fn common(src: &mut Src, class_uid: u32, attrs: &mut Map<String, Value>) {
    let actor = actor(src);
    if !actor.is_empty() {
        attrs.insert("actor".into(), Value::Object(actor));
    }
    let ip = src.take_ip(&["context", "ip_address"]);
    if let Some(ip) = ip {
        attrs.insert("src_endpoint".into(), json!({ "ip": ip }));
    } else if class_uid == FILE_HOSTING {
        // Required by File Hosting Activity; Slack sent no usable address.
        attrs.insert("src_endpoint".into(), json!({ "name": "unknown" }));
    }
    if class_uid != FILE_HOSTING {
        if let Some(ua) = src.take_str(&["context", "ua"]) {
            attrs.insert("http_request".into(), json!({ "user_agent": ua }));
        }
    }
}

pub(super) fn actor(src: &mut Src) -> Map<String, Value> {
    let mut a = Map::new();
    if let Some(user) = src.user_at(&["actor", "user"]) {
        if src.peek(&["actor", "type"]).and_then(Value::as_str) == Some("user") {
            src.mark(&["actor", "type"]);
        }
        a.insert("user".into(), Value::Object(user));
    }
    if let Some(session) = src.take_str(&["context", "session_id"]) {
        a.insert("session".into(), json!({ "uid": session }));
    }
    match src.peek(&["context", "app"]) {
        Some(Value::Null) => src.mark(&["context", "app"]),
        Some(Value::Object(_)) => {
            if let Some(id) = src.take_str(&["context", "app", "id"]) {
                a.insert("app_uid".into(), json!(id));
            }
            if let Some(name) = src.take_str(&["context", "app", "name"]) {
                a.insert("app_name".into(), json!(name));
            }
        }
        _ => {}
    }
    a
}

/// The entity's type and object (`{"type": T, T: {…}}`), when well-formed.
pub(super) fn entity<'a>(src: &Src<'a>) -> Option<(&'a str, &'a Map<String, Value>)> {
    let kind = src.peek(&["entity", "type"])?.as_str()?;
    let obj = src.peek(&["entity", kind])?.as_object()?;
    Some((kind, obj))
}

/// The entity as an OCSF user, if it is a user.
pub(super) fn entity_user(src: &mut Src) -> Option<Map<String, Value>> {
    match entity(src) {
        Some(("user", _)) => {
            let u = src.user_at(&["entity", "user"])?;
            src.mark(&["entity", "type"]);
            Some(u)
        }
        _ => None,
    }
}

/// `{uid, name, type}` of the entity (name falls back to title); marks what it used.
pub(super) fn entity_ref(src: &mut Src, kind: &str) -> Option<Map<String, Value>> {
    let mut r = Map::new();
    if let Some(id) = src.take_str(&["entity", kind, "id"]) {
        r.insert("uid".into(), json!(id));
    }
    if let Some(name) = src.take_str(&["entity", kind, "name"]) {
        r.insert("name".into(), json!(name));
    } else if let Some(title) = src.take_str(&["entity", kind, "title"]) {
        r.insert("name".into(), json!(title));
    }
    if r.is_empty() {
        return None;
    }
    src.mark(&["entity", "type"]);
    r.insert("type".into(), json!(kind));
    Some(r)
}

/// A user named by `details.<key>`: an object `{id, name, …}` or a bare id.
fn details_user(src: &mut Src, key: &str) -> Option<Map<String, Value>> {
    match src.peek(&["details", key])? {
        Value::Object(_) => src.user_at(&["details", key]),
        v => {
            let id = scalar_string(v)?;
            src.mark(&["details", key]);
            let mut u = Map::new();
            u.insert("uid".into(), json!(id));
            Some(u)
        }
    }
}

/// An app (`{id, name, …}` at `base`) as the principal of a privilege change.
fn app_principal(src: &mut Src, base: &[&str]) -> Option<Map<String, Value>> {
    let id_path: Vec<&str> = base.iter().copied().chain(["id"]).collect();
    let name_path: Vec<&str> = base.iter().copied().chain(["name"]).collect();
    let id = src.take_str(&id_path);
    let name = src.take_str(&name_path);
    if id.is_none() && name.is_none() {
        return None;
    }
    let mut u = Map::new();
    if let Some(id) = id {
        u.insert("uid".into(), json!(id));
    }
    if let Some(name) = name {
        u.insert("name".into(), json!(name));
    }
    u.insert("type_id".into(), json!(99));
    u.insert("type".into(), json!("App"));
    Some(u)
}

/// Privileges named by the entry: permissions, scopes, a role's name.
fn privileges(src: &mut Src, app_base: Option<&[&str]>) -> Vec<String> {
    let mut p = Vec::new();
    for key in [
        "permissions",
        "changed_permissions",
        "new_scopes",
        "scopes",
        "bot_scopes",
        "scopes_bot",
    ] {
        p.extend(src.take_strings(&["details", key]));
    }
    if p.is_empty() {
        if let Some((kind @ ("role" | "account_type_role"), _)) = entity(src) {
            if let Some(name) = src.take_str(&["entity", kind, "name"]) {
                src.mark(&["entity", "type"]);
                p.push(name);
            }
        }
    }
    if p.is_empty() {
        if let Some(base) = app_base {
            for key in ["scopes", "scopes_bot"] {
                let path: Vec<&str> = base.iter().copied().chain([key]).collect();
                p.extend(src.take_strings(&path));
            }
        }
    }
    p.sort();
    p.dedup();
    p
}

type Built = Result<Map<String, Value>, String>;

/// Authentication 3002: the user who logs in or out is the entity user (a session reset by an
/// admin names the user as entity), or else the actor.
fn authentication(src: &mut Src) -> Built {
    let user = entity_user(src)
        .or_else(|| src.user_at(&["actor", "user"]))
        .ok_or("no user to authenticate")?;
    let mut a = Map::new();
    a.insert("user".into(), Value::Object(user));
    a.insert("service".into(), json!({ "name": "Slack" }));
    if let Some(session) = src.str_at(&["context", "session_id"]) {
        a.insert("session".into(), json!({ "uid": session }));
    }
    Ok(a)
}

/// Account Change 3001: the account changed is the entity user, or else the actor's own.
fn account_change(src: &mut Src) -> Built {
    let user = entity_user(src)
        .or_else(|| src.user_at(&["actor", "user"]))
        .ok_or("no account to change")?;
    let mut a = Map::new();
    a.insert("user".into(), Value::Object(user));
    Ok(a)
}

/// User Access Management 3005: the principal is the entity user or app (an app's install,
/// approval or restriction changes what the app may do), or the app in `context.app`; the
/// privileges are the permissions, scopes or role named.
fn user_access(src: &mut Src) -> Built {
    let mut app_base: Option<Vec<&str>> = None;
    let mut resource = None;
    let user = match entity(src) {
        Some(("user", _)) => entity_user(src),
        Some(("app", _)) => {
            src.mark(&["entity", "type"]);
            app_base = Some(vec!["entity", "app"]);
            app_principal(src, &["entity", "app"])
        }
        Some((kind, _)) => {
            resource = entity_ref(src, kind);
            None
        }
        None => None,
    };
    let user = match user {
        Some(u) => Some(u),
        None => details_user(src, "target_user").or_else(|| {
            if src.peek(&["context", "app"]).is_some_and(Value::is_object) {
                app_base = Some(vec!["context", "app"]);
                app_principal(src, &["context", "app"])
            } else {
                None
            }
        }),
    };
    let user = user.ok_or("no user or app whose privileges changed")?;
    let privileges = privileges(src, app_base.as_deref());
    if privileges.is_empty() {
        return Err("no privileges named".into());
    }
    let mut a = Map::new();
    a.insert("user".into(), Value::Object(user));
    a.insert("privileges".into(), json!(privileges));
    if let Some(r) = resource {
        a.insert("resource".into(), Value::Object(r));
    }
    Ok(a)
}

/// Group Management 3006: the group is the entity (channel, user group, …) or the workspace the
/// member joined; the member is the entity user, `details.target_user`, or the actor for
/// self-membership actions.
fn group_management(src: &mut Src, action: &str) -> Built {
    let mut member = None;
    let mut group = None;
    match entity(src) {
        Some(("user", _)) => member = entity_user(src),
        Some((kind, _)) => group = entity_ref(src, kind),
        None => {}
    }
    if group.is_none() {
        for key in ["channel", "usergroup", "subteam"] {
            group = match src.peek(&["details", key]) {
                Some(Value::Object(_)) => {
                    let id = src.take_str(&["details", key, "id"]);
                    let name = src.take_str(&["details", key, "name"]);
                    group_ref(id, name, key)
                }
                Some(v) => scalar_string(v).and_then(|id| {
                    src.mark(&["details", key]);
                    group_ref(Some(id), None, key)
                }),
                None => None,
            };
            if group.is_some() {
                break;
            }
        }
    }
    if group.is_none() && action.ends_with("_joined_workspace") {
        // The workspace joined is where the action happened; `location` stays in unmapped.
        let id = src.str_at(&["context", "location", "id"]);
        let name = src.str_at(&["context", "location", "name"]);
        let kind = src
            .str_at(&["context", "location", "type"])
            .unwrap_or_else(|| "workspace".into());
        group = group_ref(id, name, &kind);
    }
    let group = group.ok_or("no group")?;
    if member.is_none() {
        member = details_user(src, "target_user");
    }
    if member.is_none() && SELF_MEMBERSHIP.contains(&action) {
        member = src.user_at(&["actor", "user"]);
    }
    let privileges = privileges(src, None);
    if member.is_none() && privileges.is_empty() {
        return Err("neither a member user nor privileges named".into());
    }
    let mut a = Map::new();
    a.insert("group".into(), Value::Object(group));
    if let Some(u) = member {
        a.insert("user".into(), Value::Object(u));
    }
    if !privileges.is_empty() {
        a.insert("privileges".into(), json!(privileges));
    }
    Ok(a)
}

fn group_ref(id: Option<String>, name: Option<String>, kind: &str) -> Option<Map<String, Value>> {
    if id.is_none() && name.is_none() {
        return None;
    }
    let mut g = Map::new();
    if let Some(id) = id {
        g.insert("uid".into(), json!(id));
    }
    if let Some(name) = name {
        g.insert("name".into(), json!(name));
    }
    g.insert("type".into(), json!(kind));
    Some(g)
}

/// Entity Management 3004: the managed entity is Slack's entity, whole in `entity.data`; a
/// preference change without an entity is about the workspace or organization it happened in.
fn entity_management(src: &mut Src, row: &ActionRow) -> Built {
    let managed = match entity(src) {
        Some((kind, obj)) => {
            let m = managed_entity(kind, obj);
            if m.is_some() {
                src.mark(&["entity"]);
            }
            m
        }
        None if row.category == "workspace_org_preferences" => {
            let loc = src
                .peek(&["context", "location"])
                .and_then(Value::as_object);
            let kind = loc
                .and_then(|l| l.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("workspace");
            // The location stays in unmapped too; only its copy goes to the entity.
            loc.and_then(|l| managed_entity(kind, l))
        }
        None => None,
    };
    let managed = managed.ok_or("no entity")?;
    let mut a = Map::new();
    a.insert("entity".into(), Value::Object(managed));
    Ok(a)
}

fn managed_entity(kind: &str, obj: &Map<String, Value>) -> Option<Map<String, Value>> {
    let get = |k: &str| obj.get(k).and_then(scalar_string);
    // A message has no id: its timestamp identifies it within its channel.
    let uid = get("id").or_else(|| get("timestamp"));
    let name = get("name").or_else(|| get("title"));
    if uid.is_none() && name.is_none() {
        return None;
    }
    let mut m = Map::new();
    let mut reference = Map::new();
    if let Some(uid) = &uid {
        m.insert("uid".into(), json!(uid));
        reference.insert("uid".into(), json!(uid));
    }
    if let Some(name) = &name {
        m.insert("name".into(), json!(name));
        reference.insert("name".into(), json!(name));
    }
    let (type_id, attr) = match kind {
        "user" => (2, Some("user")),
        "usergroup" | "subteam" => (3, Some("group")),
        "workspace" | "enterprise" => (4, Some("org")),
        _ => (99, None),
    };
    m.insert("type_id".into(), json!(type_id));
    m.insert("type".into(), json!(kind));
    if let Some(attr) = attr {
        if attr == "user" {
            if let Some(email) = get("email").filter(|e| super::is_ocsf_email(e)) {
                reference.insert("email_addr".into(), json!(email));
            }
        }
        m.insert(attr.into(), Value::Object(reference));
    }
    m.insert("data".into(), Value::Object(obj.clone()));
    Some(m)
}

/// File Hosting Activity 6006: the file is the entity (a file, canvas or list).
fn file_hosting(src: &mut Src) -> Built {
    let (kind, obj) = entity(src).ok_or("no file entity")?;
    let is_file = FILE_TYPES.contains(&kind)
        || obj
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with('F'));
    if !is_file {
        return Err(format!("the entity is a {kind}, not a file"));
    }
    let p = |k: &'static str| -> [&str; 3] { ["entity", kind, k] };
    let uid = src.take_str(&p("id"));
    let name = src
        .take_str(&p("name"))
        .or_else(|| src.take_str(&p("title")))
        .or_else(|| uid.clone())
        .ok_or("the file has neither id nor name")?;
    src.mark(&["entity", "type"]);
    let mut f = Map::new();
    f.insert("name".into(), json!(name));
    f.insert("type_id".into(), json!(1));
    f.insert("type".into(), json!("Regular File"));
    if let Some(uid) = uid {
        f.insert("uid".into(), json!(uid));
    }
    // Slack's `filetype` is sometimes a MIME type ("image/png"), usually a short name ("png");
    // only the former has an OCSF home.
    if let Some(ft) = src.str_at(&p("filetype")).filter(|t| t.contains('/')) {
        src.mark(&p("filetype"));
        f.insert("mime_type".into(), json!(ft));
    }
    let mut a = Map::new();
    a.insert("file".into(), Value::Object(f));
    Ok(a)
}
