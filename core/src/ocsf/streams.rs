//! Access rows (`team.accessLogs`) and integration entries (`team.integrationLogs`) to OCSF.

use serde_json::{json, Map, Value};

use super::{
    Base, Ctx, Mapped, Outcome, Src, AUTHENTICATION, ENTITY_MANAGEMENT, OTHER, USER_ACCESS,
};

fn base(ctx: &Ctx, event_code: Option<String>, message: String) -> Outcome {
    Outcome::Base(Base {
        activity_name: event_code.clone(),
        severity_id: 1,
        status_id: None,
        event_code,
        tenant_uid: ctx.team_id.map(str::to_string),
        message,
    })
}

/// One access row: Authentication 3002, Logon, aggregated over `count` accesses from
/// `date_first` to `date_last` by one user from one IP and user agent.
pub(super) fn map_access(ev: &Value, ctx: &Ctx) -> Outcome {
    if !ev.is_object() {
        return base(ctx, None, "access row is not a JSON object".into());
    }
    let mut src = Src::new(ev);
    let mut user = Map::new();
    if let Some(id) = src.take_str(&["user_id"]) {
        user.insert("uid".into(), json!(id));
    }
    if let Some(name) = src.take_str(&["username"]) {
        user.insert("name".into(), json!(name));
    }
    if user.is_empty() {
        return base(ctx, None, "access row without user_id or username".into());
    }
    let mut a = Map::new();
    a.insert("user".into(), Value::Object(user.clone()));
    a.insert("actor".into(), json!({ "user": user }));
    a.insert("service".into(), json!({ "name": "Slack" }));
    // The geolocation guesses are often null; a null carries nothing.
    for k in ["country", "region", "isp"] {
        if src.peek(&[k]).is_some_and(Value::is_null) {
            src.mark(&[k]);
        }
    }
    if let Some(ip) = src.take_ip(&["ip"]) {
        let mut endpoint = Map::new();
        endpoint.insert("ip".into(), json!(ip));
        if let Some(loc) = location(&mut src) {
            endpoint.insert("location".into(), Value::Object(loc));
        }
        a.insert("src_endpoint".into(), Value::Object(endpoint));
    }
    if let Some(ua) = src.take_str(&["user_agent"]) {
        a.insert("http_request".into(), json!({ "user_agent": ua }));
    }
    if let Some(n) = src.take_i64(&["count"]) {
        a.insert("count".into(), json!(n));
    }
    if let Some(t) = src.take_i64(&["date_first"]) {
        a.insert("start_time".into(), json!(t.saturating_mul(1000)));
    }
    if let Some(t) = src.take_i64(&["date_last"]) {
        a.insert("end_time".into(), json!(t.saturating_mul(1000)));
    }
    Outcome::Mapped(
        Mapped {
            class_uid: AUTHENTICATION,
            activity_id: 1,
            source_activity: None,
            severity_id: 1,
            // Slack lists accesses that happened: each is a successful logon.
            status_id: Some(1),
            attrs: a,
            event_code: None,
            tenant_uid: ctx.team_id.map(str::to_string),
        },
        src.into_used(),
    )
}

/// `country` (ISO 3166-1 alpha-2), `region` and `isp` as an OCSF location, when Slack guessed a
/// country or region (OCSF wants one of them). A country that is not two letters stays unmapped.
fn location(src: &mut Src) -> Option<Map<String, Value>> {
    let country = src
        .str_at(&["country"])
        .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()));
    let region = src.str_at(&["region"]);
    if country.is_none() && region.is_none() {
        return None;
    }
    let mut loc = Map::new();
    if let Some(c) = country {
        src.mark(&["country"]);
        loc.insert("country".into(), json!(c.to_ascii_uppercase()));
    }
    if let Some(r) = src.take_str(&["region"]) {
        loc.insert("region".into(), json!(r));
    }
    if let Some(isp) = src.take_str(&["isp"]) {
        loc.insert("isp".into(), json!(isp));
    }
    Some(loc)
}

/// One integration entry, by `change_type`: an app or service `added`, `expanded` or `removed`
/// changes its privileges (User Access Management 3005, the scopes as privileges); a service
/// `enabled` or `disabled`, or an integration `updated`, changes the integration itself (Entity
/// Management 3004). `service_id` is an integer or a string; both become a string uid.
pub(super) fn map_integration(ev: &Value, ctx: &Ctx) -> Outcome {
    if !ev.is_object() {
        return base(ctx, None, "integration entry is not a JSON object".into());
    }
    let mut src = Src::new(ev);
    let change = src.str_at(&["change_type"]);
    let (class_uid, activity_id) = match change.as_deref() {
        Some("added" | "expanded") => (USER_ACCESS, 1),
        Some("removed") => (USER_ACCESS, 2),
        Some("enabled") => (ENTITY_MANAGEMENT, 8),
        Some("disabled") => (ENTITY_MANAGEMENT, 9),
        Some("updated") => (ENTITY_MANAGEMENT, 3),
        Some(other) => {
            return base(
                ctx,
                Some(other.to_string()),
                format!("integration change_type `{other}` is not mapped"),
            )
        }
        None => return base(ctx, None, "integration entry without a change_type".into()),
    };
    src.mark(&["change_type"]);
    // `date` (a string of unix seconds) is the record's time; anything else stays unmapped.
    let date = src.peek(&["date"]).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    });
    if date == Some(ctx.time) {
        src.mark(&["date"]);
    }
    let (kind, id_key, name_key) =
        if src.peek(&["app_id"]).is_some() || src.peek(&["app_type"]).is_some() {
            ("App", "app_id", "app_type")
        } else {
            ("Service", "service_id", "service_type")
        };
    let id = src.take_str(&[id_key]);
    let name = src.take_str(&[name_key]);
    if id.is_none() && name.is_none() {
        return base(
            ctx,
            change.clone(),
            "integration entry names neither an app nor a service".into(),
        );
    }
    let mut principal = Map::new();
    if let Some(id) = id {
        principal.insert("uid".into(), json!(id));
    }
    if let Some(name) = name {
        principal.insert("name".into(), json!(name));
    }
    principal.insert("type_id".into(), json!(OTHER));
    principal.insert("type".into(), json!(kind));

    let mut a = Map::new();
    let mut actor_user = Map::new();
    if let Some(id) = src.take_str(&["user_id"]) {
        actor_user.insert("uid".into(), json!(id));
    }
    if let Some(name) = src.take_str(&["user_name"]) {
        actor_user.insert("name".into(), json!(name));
    }
    if !actor_user.is_empty() {
        a.insert("actor".into(), json!({ "user": actor_user }));
    }
    if class_uid == USER_ACCESS {
        let scopes: Vec<String> = src
            .str_at(&["scope"])
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if scopes.is_empty() {
            return base(
                ctx,
                change.clone(),
                "integration entry kept as a Base Event: no scope, so no privileges named".into(),
            );
        }
        src.mark(&["scope"]);
        a.insert("user".into(), Value::Object(principal));
        a.insert("privileges".into(), json!(scopes));
        if let Some(channel) = src.take_str(&["channel"]) {
            a.insert(
                "resource".into(),
                json!({ "uid": channel, "type": "channel" }),
            );
        }
    } else {
        a.insert("entity".into(), Value::Object(principal));
    }
    Outcome::Mapped(
        Mapped {
            class_uid,
            activity_id,
            source_activity: None,
            severity_id: 1,
            status_id: Some(1),
            attrs: a,
            event_code: change,
            tenant_uid: ctx.team_id.map(str::to_string),
        },
        src.into_used(),
    )
}
