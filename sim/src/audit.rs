//! The Audit Logs API: `/audit/v1/logs`, `/schemas`, `/actions` (reference §4, §7.4).

use crate::catalog::{self, catalog};
use crate::cursor::AuditPosition;
use crate::data::audit::{render, Selection};
use crate::http::{parse_pairs, Request, Response};
use crate::json::push_str;
use crate::respond::{bearer, error_body};
use crate::state::Sim;
use crate::tokens::{InstallLevel, Plan, Role, TokenKind, TokenSpec, ENTERPRISE_ID};
use crate::{config::EndForm, lock, read};

const MAX_ACTIONS: usize = 30;

fn error(status: u16, code: &str) -> Response {
    Response::json(status, error_body(code))
}

pub(crate) fn handle(sim: &Sim, req: &Request, endpoint: &str) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return error(405, "method_not_allowed");
    }
    match endpoint.trim_end_matches('/') {
        "logs" => logs(sim, req).unwrap_or_else(|e| e),
        "schemas" => Response::json(200, catalog::schemas_body()),
        "actions" => Response::json(200, catalog::actions_body()),
        _ => error(404, "bad_endpoint"),
    }
}

fn authenticate(sim: &Sim, req: &Request) -> Result<TokenSpec, Response> {
    let token = req
        .header("authorization")
        .and_then(bearer)
        .ok_or_else(|| error(401, "missing_authentication"))?;
    let tokens = read(&sim.tokens);
    let spec = tokens
        .get(token)
        .ok_or_else(|| error(401, "invalid_authentication"))?;
    if spec.revoked || spec.expired || spec.kind == TokenKind::Bot {
        return Err(error(401, "invalid_authentication"));
    }
    if spec.plan != Plan::Enterprise {
        return Err(error(403, "feature_not_enabled"));
    }
    if spec.level == InstallLevel::Workspace {
        return Err(error(403, "team_not_authorized"));
    }
    if !spec.has_scope("auditlogs:read") || spec.role != Role::Owner {
        return Err(error(403, "user_not_authorized"));
    }
    Ok(spec.clone())
}

fn logs(sim: &Sim, req: &Request) -> Result<Response, Response> {
    let cfg = &sim.config;
    authenticate(sim, req)?;
    if cfg.rate_limit {
        let taken = lock(&sim.limiter).take(
            &format!("audit:{ENTERPRISE_ID}"),
            cfg.tier3_per_minute,
            cfg.tier3_burst,
        );
        if let Err(wait) = taken {
            return Err(error(429, "rate_limited").with_header("Retry-After", &wait.to_string()));
        }
    }

    let params = parse_pairs(&req.query);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let int = |k: &str| -> Result<Option<i64>, Response> {
        match get(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| error(400, &cfg.audit_bad_number_error)),
        }
    };
    let now = sim.now();
    let oldest = int("oldest")?;
    let latest = int("latest")?;
    let limit = int("limit")?;
    if oldest.is_some_and(|o| o < cfg.audit_earliest) {
        return Err(error(400, "invalid_range"));
    }
    if let Some(l) = latest {
        if l < cfg.audit_earliest || (cfg.audit_reject_future_latest && l > now) {
            return Err(error(400, "invalid_range"));
        }
    }
    let limit = match limit {
        None | Some(0) => cfg.audit_default_limit as usize,
        Some(n) if n < 0 => return Err(error(400, &cfg.audit_bad_number_error)),
        Some(n) => n.min(cfg.audit_max_limit as i64) as usize,
    };
    let actions = match get("action") {
        None => None,
        Some(list) => {
            let names: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if names.len() > MAX_ACTIONS {
                return Err(error(400, "invalid_action"));
            }
            let mut idx = Vec::with_capacity(names.len());
            for name in names {
                idx.push(
                    catalog()
                        .index_of(name)
                        .ok_or_else(|| error(400, "invalid_action"))?,
                );
            }
            (!idx.is_empty()).then_some(idx)
        }
    };
    let before_ts = match get("cursor") {
        None => None,
        Some(c) => {
            let pos: AuditPosition = sim
                .cursors
                .decode(c)
                .map_err(|_| error(400, "invalid_cursor"))?;
            sim.cursors
                .check(pos.issued, cfg.cursor_ttl)
                .map_err(|_| error(400, "invalid_cursor"))?;
            Some(pos.before_ts)
        }
    };
    let spill = cfg.audit_spill_seconds.max(0);
    // Past `latest` only on a first page: a cursor's position is where the last page ended.
    let upper = match before_ts {
        None => latest.unwrap_or(now).saturating_add(spill),
        Some(b) => latest.unwrap_or(now).min(b),
    };
    // A stateless, deterministic choice of which pages come back short.
    let limit = if cfg.short_pages && upper.rem_euclid(3) == 0 {
        (limit / 2).max(1)
    } else {
        limit
    };
    let world = &sim.world;
    let selection = Selection {
        // The cursor carries no `oldest`: without the parameter, paging runs to the start of data (Q3).
        oldest: oldest.map_or(i64::MIN, |o| o.saturating_sub(spill)),
        upper,
        limit,
        actions,
        actor: get("actor").map(|id| world.user_by_id.get(id).copied()),
        entity: get("entity").map(|id| world.entity_by_id.get(id).copied()),
    };

    let store = sim.audit_visible();
    let page = store.page(&selection);
    let mut body = String::with_capacity(page.indices.len() * 1000 + 128);
    body.push('{');
    if cfg.audit_success_has_ok {
        body.push_str("\"ok\":true,");
    }
    body.push_str("\"entries\":[");
    for (k, &i) in page.indices.iter().enumerate() {
        if k > 0 {
            body.push(',');
        }
        render(world, &store.events[i], &mut body);
    }
    body.push(']');
    drop(store);
    match page.next_before {
        Some(before_ts) => {
            let cursor = sim.cursors.encode(&AuditPosition {
                before_ts,
                issued: sim.cursors.issue(),
            });
            body.push_str(",\"response_metadata\":{\"next_cursor\":");
            push_str(&mut body, &cursor);
            body.push('}');
        }
        None if cfg.audit_end_form == EndForm::EmptyString => {
            body.push_str(",\"response_metadata\":{\"next_cursor\":\"\"}")
        }
        None => {}
    }
    body.push('}');
    Ok(Response::json(200, body))
}
