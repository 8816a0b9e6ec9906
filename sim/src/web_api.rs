//! The Web API methods `team.accessLogs` and `team.integrationLogs` (reference §1–3, §7.2–7.3).
//! Errors are HTTP 200 `{"ok":false,"error":…}`, except `ratelimited` (429).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{
    EndForm, IntegrationOrder, IntegrationPagingCount, OrgWithoutTeamId, UnknownChangeType,
};
use crate::cursor::AccessPosition;
use crate::data::access::AccessRow;
use crate::http::{parse_pairs, Request, Response};
use crate::json::{push_str, Obj};
use crate::respond::{bearer, error_body};
use crate::state::Sim;
use crate::tokens::{InstallLevel, Plan, TokenKind, WORKSPACE_IDS};
use crate::{lock, read, write};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    AccessLogs,
    IntegrationLogs,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::AccessLogs => "team.accessLogs",
            Method::IntegrationLogs => "team.integrationLogs",
        }
    }
}

fn fail(code: &str) -> Response {
    Response::json(200, error_body(code))
}

/// Arguments merged from a form or JSON body (first) and the query string.
struct Args {
    body: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl Args {
    fn get(&self, k: &str) -> Option<&str> {
        self.body
            .iter()
            .chain(self.query.iter())
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

fn parse_args(sim: &Sim, req: &Request, method: Method) -> Result<Args, Response> {
    let query = parse_pairs(&req.query);
    let mut body = Vec::new();
    if !req.body.is_empty() {
        let ct = req
            .header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("application/x-www-form-urlencoded") {
            body = parse_pairs(&String::from_utf8_lossy(&req.body));
        } else if ct.starts_with("application/json") {
            if method == Method::IntegrationLogs && sim.config.integration_rejects_json {
                return Err(fail("invalid_post_type"));
            }
            let v: Value = serde_json::from_slice(&req.body).map_err(|_| fail("invalid_json"))?;
            let obj = v.as_object().ok_or_else(|| fail("json_not_object"))?;
            for (k, v) in obj {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                body.push((k.clone(), s));
            }
        } else if ct.is_empty() {
            return Err(fail("missing_post_type"));
        } else {
            return Err(fail("invalid_post_type"));
        }
    }
    Ok(Args { body, query })
}

fn parse_int(v: Option<&str>, default: i64, code: &str) -> Result<i64, Response> {
    match v {
        None => Ok(default),
        Some(s) => s.trim().parse::<i64>().map_err(|_| fail(code)),
    }
}

pub(crate) fn handle(sim: &Sim, req: &Request, method: &str) -> Response {
    match method.trim_end_matches('/') {
        "auth.teams.list" => return auth_teams_list(sim, req),
        "oauth.v2.access" => return crate::oauth::access(sim, req),
        "auth.revoke" => return crate::oauth::revoke(sim, req),
        _ => {}
    }
    let method = match method.trim_end_matches('/') {
        "team.accessLogs" => Method::AccessLogs,
        "team.integrationLogs" => Method::IntegrationLogs,
        _ => return Response::json(404, error_body("unknown_method")),
    };
    if !matches!(req.method.as_str(), "GET" | "POST" | "HEAD") {
        return Response::json(405, error_body("method_not_allowed"));
    }
    let result = parse_args(sim, req, method).and_then(|args| {
        authorize(sim, req, method, &args)?;
        match method {
            Method::AccessLogs => access_logs(sim, &args),
            Method::IntegrationLogs => integration_logs(sim, &args),
        }
    });
    result.unwrap_or_else(|e| e)
}

/// Token, scope, plan, team and rate-limit checks. Returns the workspace (or org) the
/// request is about (it keys the Tier 2 bucket).
fn authorize(sim: &Sim, req: &Request, method: Method, args: &Args) -> Result<String, Response> {
    let cfg = &sim.config;
    let header = req.header("authorization").and_then(bearer);
    let body_token = args
        .body
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    let query_token = args
        .query
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    let token = match (header, body_token, query_token) {
        (Some(t), _, _) | (None, Some(t), _) => t,
        (None, None, Some(_)) if cfg.reject_query_token => return Err(fail("invalid_auth")),
        (None, None, Some(t)) => t,
        (None, None, None) => return Err(fail("not_authed")),
    };
    let spec = read(&sim.tokens)
        .get(token)
        .cloned()
        .ok_or_else(|| fail("invalid_auth"))?;
    if spec.revoked {
        return Err(fail("token_revoked"));
    }
    if spec.expired {
        return Err(fail("token_expired"));
    }
    if spec.kind == TokenKind::Bot {
        return Err(fail("not_allowed_token_type"));
    }
    if !spec.has_scope("admin") {
        let mut body = String::from(
            "{\"ok\":false,\"error\":\"missing_scope\",\"needed\":\"admin\",\"provided\":",
        );
        push_str(&mut body, &spec.scopes.join(","));
        body.push('}');
        return Err(Response::json(200, body));
    }
    let paid_only = match method {
        Method::AccessLogs => true,
        Method::IntegrationLogs => cfg.integration_paid_only,
    };
    if paid_only && spec.plan == Plan::Free {
        return Err(fail("paid_only"));
    }
    let team = match (spec.level, args.get("team_id")) {
        (InstallLevel::Workspace, _) => spec.team_id.clone(),
        (InstallLevel::Org, None)
            if cfg.org_without_team_id == OrgWithoutTeamId::MissingArgument =>
        {
            return Err(fail("missing_argument"))
        }
        (InstallLevel::Org, None) => spec.team_id.clone(),
        (InstallLevel::Org, Some(t)) if spec.granted_teams.iter().any(|g| g == t) => t.to_string(),
        (InstallLevel::Org, Some(t)) => {
            return Err(fail(match method {
                Method::IntegrationLogs => "invalid_auth",
                Method::AccessLogs if WORKSPACE_IDS.contains(&t) => "team_access_not_granted",
                Method::AccessLogs => "invalid_team_id",
            }))
        }
    };
    let busy = lock(&sim.team_delays).get(&team).copied();
    if let Some(d) = busy {
        sim.sleep(d);
    }
    if cfg.rate_limit {
        let key = format!("{}:{team}", method.name());
        if let Err(wait) = lock(&sim.limiter).take(&key, cfg.tier2_per_minute, cfg.tier2_burst) {
            return Err(Response::json(429, error_body("ratelimited"))
                .with_header("Retry-After", &wait.to_string()));
        }
    }
    Ok(team)
}

/// Classic `count`/`page`, with Slack's caps.
fn classic_paging(sim: &Sim, args: &Args, caps: bool) -> Result<(usize, usize), Response> {
    let mut count = parse_int(args.get("count"), 100, "invalid_arguments")?;
    let mut page = parse_int(args.get("page"), 1, "invalid_arguments")?;
    if count < 1 {
        count = 100;
    }
    if page < 1 {
        page = 1;
    }
    if caps
        && (count > sim.config.classic_max_count as i64
            || page > sim.config.classic_max_page as i64)
    {
        return Err(fail("over_pagination_limit"));
    }
    Ok((count as usize, page as usize))
}

fn write_paging(o: &mut Obj<'_>, count: usize, total: usize, page: usize, page_size: usize) {
    let pages = total.div_ceil(page_size).max(1);
    o.obj("paging", |o| {
        o.int("count", count as i64)
            .int("total", total as i64)
            .int("page", page as i64)
            .int("pages", pages as i64);
    });
}

fn write_next_cursor(o: &mut Obj<'_>, next: Option<String>, end_form: EndForm) {
    match (next, end_form) {
        (Some(c), _) => {
            o.obj("response_metadata", |o| {
                o.str("next_cursor", &c);
            });
        }
        (None, EndForm::EmptyString) => {
            o.obj("response_metadata", |o| {
                o.str("next_cursor", "");
            });
        }
        (None, EndForm::Absent) => {}
    }
}

/// `[row, row, …]` for the given positions of the access index.
fn logins_array(sim: &Sim, rows: &[AccessRow], positions: &[usize]) -> String {
    let mut out = String::from("[");
    for (k, &i) in positions.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        let row = &rows[i];
        let user = &sim.world.users[row.user];
        let mut o = Obj::new(&mut out);
        o.str("user_id", &user.id)
            .str("username", &user.handle)
            .int("date_first", row.date_first)
            .int("date_last", row.date_last)
            .int("count", row.count as i64)
            .str("ip", &row.ip)
            .str("user_agent", &row.user_agent)
            .opt_str("isp", row.isp.as_deref())
            .opt_str("country", row.country.as_deref())
            .opt_str("region", row.region.as_deref());
        o.end();
    }
    out.push(']');
    out
}

/// The position an offset cursor holds (`SimConfig::access_offset_cursor`): how many rows of
/// the listing were served, whatever has changed in it since.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessOffset {
    offset: usize,
    issued: u64,
}

fn access_logs(sim: &Sim, args: &Args) -> Result<Response, Response> {
    let cfg = &sim.config;
    let before = match args.get("before") {
        None | Some("now") => sim.now(),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| fail("invalid_arguments"))?,
    };
    let limit = parse_int(args.get("limit"), 0, "invalid_limit")?;
    if limit < 0 || limit > cfg.access_max_limit as i64 {
        return Err(fail("invalid_limit"));
    }
    let cursor = args.get("cursor");
    if cfg.access_touch_every > 0 {
        // Rows used again while a walk pages through them.
        let mut store = write(&sim.access);
        store.served += 1;
        if store.served.is_multiple_of(cfg.access_touch_every) {
            store.touch(cfg.access_touch_rows, sim.now());
        }
    }
    let store = read(&sim.access);
    let filter = cfg.access_filter_key.unwrap_or(cfg.access_sort_key);
    let listing = store.listing(before, filter);
    let len = listing.len();
    let mut body = String::new();
    let mut o = Obj::new(&mut body);
    o.bool("ok", true);

    if limit == 0 && cursor.is_none() {
        // classic mode
        let (count, page) = classic_paging(sim, args, true)?;
        if cfg
            .access_classic_fatal_from_page
            .is_some_and(|p| page >= p as usize)
        {
            return Err(Response::json(
                cfg.web_fatal_error_status,
                error_body("fatal_error"),
            ));
        }
        let from = ((page - 1) * count).min(len);
        let to = (from + count).min(len);
        o.raw(
            "logins",
            &logins_array(sim, &store.rows, &listing[from..to]),
        );
        write_paging(&mut o, count, len, page, count);
    } else {
        // cursor mode: keyset on (sort key, row id), or an offset into the listing
        let limit = if limit == 0 { 100 } else { limit as usize };
        let mut from = 0;
        if let Some(c) = cursor {
            let issued = if cfg.access_offset_cursor {
                let pos: AccessOffset =
                    sim.cursors.decode(c).map_err(|_| fail("invalid_cursor"))?;
                from = pos.offset.min(len);
                pos.issued
            } else {
                let pos: AccessPosition =
                    sim.cursors.decode(c).map_err(|_| fail("invalid_cursor"))?;
                from = store.first_after(&listing, pos.before_key, pos.before_row);
                pos.issued
            };
            sim.cursors
                .check(issued, cfg.cursor_ttl)
                .map_err(|_| fail("invalid_cursor"))?;
        }
        let page_size = if cfg.short_pages && from % 3 == 1 {
            (limit / 2).max(1)
        } else {
            limit
        };
        let to = (from + page_size).min(len);
        o.raw(
            "logins",
            &logins_array(sim, &store.rows, &listing[from..to]),
        );
        if cfg.access_cursor_paging {
            write_paging(&mut o, limit, len, 1, limit);
        }
        let next = (to > from && to < len).then(|| {
            let issued = sim.cursors.issue();
            if cfg.access_offset_cursor {
                sim.cursors.encode(&AccessOffset { offset: to, issued })
            } else {
                let last = &store.rows[listing[to - 1]];
                sim.cursors.encode(&AccessPosition {
                    before_key: store.key(last),
                    before_row: last.row_id,
                    issued,
                })
            }
        });
        write_next_cursor(&mut o, next, cfg.web_end_form);
    }
    o.end();
    Ok(Response::json(200, body))
}

const CHANGE_TYPE_FILTERS: &[&str] = &["added", "removed", "enabled", "disabled", "updated"];

fn integration_logs(sim: &Sim, args: &Args) -> Result<Response, Response> {
    let cfg = &sim.config;
    let mut change_type = args.get("change_type");
    if let Some(ct) = change_type {
        if !CHANGE_TYPE_FILTERS.contains(&ct) {
            match cfg.integration_unknown_change_type {
                UnknownChangeType::Reject => return Err(fail("invalid_arguments")),
                UnknownChangeType::Ignore => change_type = None,
            }
        }
    }
    let app_id = args.get("app_id");
    let service_id = args.get("service_id");
    let user = args.get("user");
    let (count, page) = classic_paging(sim, args, cfg.integration_caps)?;

    let store = read(&sim.integration);
    let matches = |e: &&crate::data::integration::IntegrationEntry| {
        app_id.is_none_or(|a| e.app_id.as_deref() == Some(a))
            && service_id.is_none_or(|s| e.service_id.as_deref() == Some(s))
            && user.is_none_or(|u| e.user_id == u)
            && change_type.is_none_or(|c| e.change_type == c)
    };
    let selected: Vec<_> = match cfg.integration_order {
        IntegrationOrder::NewestFirst => store.entries.iter().filter(matches).collect(),
        IntegrationOrder::OldestFirst => store.entries.iter().rev().filter(matches).collect(),
    };
    let total = selected.len();
    let from = ((page - 1) * count).min(total);
    let to = (from + count).min(total);
    let logs: Vec<&Value> = selected[from..to].iter().map(|e| &e.value).collect();
    let shown = match cfg.integration_paging_count {
        IntegrationPagingCount::Returned => to - from,
        IntegrationPagingCount::PageSize => count,
    };
    let mut body = String::new();
    let mut o = Obj::new(&mut body);
    o.bool("ok", true).raw(
        "logs",
        &serde_json::to_string(&logs).unwrap_or_else(|_| "[]".into()),
    );
    write_paging(&mut o, shown, total, page, count);
    o.end();
    Ok(Response::json(200, body))
}

/// `auth.teams.list`: the workspaces an org-wide app is approved for (a workspace token: its
/// own). Cursor paging with `limit` (default 100); the cursor is the offset.
fn auth_teams_list(sim: &Sim, req: &Request) -> Response {
    let Some(token) = req.header("authorization").and_then(bearer) else {
        return fail("not_authed");
    };
    let Some(spec) = read(&sim.tokens).get(token).cloned() else {
        return fail("invalid_auth");
    };
    if spec.revoked {
        return fail("token_revoked");
    }
    let teams: Vec<String> = match spec.level {
        InstallLevel::Org => spec.granted_teams.clone(),
        InstallLevel::Workspace => vec![spec.team_id.clone()],
    };
    let query = parse_pairs(req.query.as_str());
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100);
    let offset = match get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match c.strip_prefix("off:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return fail("invalid_cursor"),
        },
    };
    let page: Vec<&String> = teams.iter().skip(offset).take(limit).collect();
    let next = if offset + page.len() < teams.len() {
        format!("off:{}", offset + page.len())
    } else {
        String::new()
    };
    let list: Vec<Value> = page
        .iter()
        .map(|id| serde_json::json!({"id": id, "name": format!("Workspace {id}")}))
        .collect();
    let body =
        serde_json::json!({"ok": true, "teams": list, "response_metadata": {"next_cursor": next}});
    Response::json(200, body.to_string())
}
