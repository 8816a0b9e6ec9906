//! `GET /`: the status page, for a person in a browser. One row per stream × workspace with the
//! words `slack-logs status` prints (both take them from
//! [`StreamStatus::display_cells`](slack_logs_core::StreamStatus::display_cells)): watermark,
//! lag, last success, records, `SILENT …` health, and the last error with its advice.
//!
//! Public, like `/status` and `/metrics`: it shows exactly the fields `/status` already answers
//! (no token, no config value) and nothing more, so guarding it with `collect_secret` would hide
//! nothing that is not public already. Every piece of text is escaped (`routes::escape_html`):
//! error messages come from Slack and the network and are treated as hostile. The page has no
//! script; it reloads itself with `<meta http-equiv="refresh">`, and its answer carries a CSP that
//! allows only its inline style (`routes::Answer::StatusPage`).

use slack_logs_core::config::format_rfc3339;
use slack_logs_core::status::{NO_STREAM_YET, STATUS_COLUMNS};
use slack_logs_core::StreamStatus;

use crate::routes::escape_html;

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 60;

/// Inline, so the page is one request; allowed by the CSP's `style-src 'unsafe-inline'` (the
/// page has no script, and all text in it is escaped).
const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5rem;color:#1d1c1d;background:#fff}
h1{font-size:1.3rem;margin:0 0 .2rem}
p.summary{margin:0 0 1rem;color:#444}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{font-size:.72rem;letter-spacing:.05em;color:#555;background:#f4f4f4;white-space:nowrap}
td.nowrap{white-space:nowrap;font-variant-numeric:tabular-nums}
td.ok{color:#1a7f37;font-weight:600}
td.silent{color:#fff;background:#cf222e;font-weight:600;white-space:nowrap}
td.error{color:#9a3412;max-width:40rem;overflow-wrap:anywhere}
footer{margin-top:1rem;color:#666;font-size:.85rem}
";

/// The page for these statuses, as of `now` (unix seconds).
pub fn render(statuses: &[StreamStatus], now: i64) -> String {
    let mut page = head(&title(statuses));
    page += "<h1>slack-logs</h1>\n";
    if statuses.is_empty() {
        page += &format!(
            "<p class=\"summary\">{}: a pass (<code>POST /collect</code>, or <code>slack-logs run</code>) starts the configured streams.</p>\n",
            escape_html(NO_STREAM_YET)
        );
    } else {
        page += &format!(
            "<p class=\"summary\">{}</p>\n",
            escape_html(&summary(statuses))
        );
        page += "<table>\n<thead><tr>";
        for column in STATUS_COLUMNS {
            page += &format!("<th scope=\"col\">{}</th>", escape_html(column));
        }
        page += "</tr></thead>\n<tbody>\n";
        for s in statuses {
            page += &row(s);
        }
        page += "</tbody>\n</table>\n";
    }
    page + &foot(now)
}

/// The page when there is no status to show (the config does not load, the store cannot be
/// opened): the reason, as `/status` gives it, with a 503.
pub fn render_error(message: &str, now: i64) -> String {
    let mut page = head("slack-logs: not configured");
    page += "<h1>slack-logs</h1>\n";
    page += &format!(
        "<p class=\"summary\">The status cannot be read: {}</p>\n",
        escape_html(message)
    );
    page + &foot(now)
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        escape_html(title)
    )
}

/// Relative links, so they stay under the app's route prefix (`/slack-logs/` → `/slack-logs/status`).
fn foot(now: i64) -> String {
    format!(
        "<footer>As of {} (UTC); reloads every {REFRESH_SECONDS} s. \
         Also: <a href=\"status\">status</a> (JSON) · <a href=\"metrics\">metrics</a> (Prometheus) · <a href=\"healthz\">healthz</a></footer>\n\
         </body>\n</html>\n",
        format_rfc3339(now)
    )
}

/// `slack-logs: 1 silent`, so a tab says it without being looked at.
fn title(statuses: &[StreamStatus]) -> String {
    match statuses.iter().filter(|s| !s.healthy()).count() {
        0 => "slack-logs status".to_string(),
        n => format!("slack-logs: {n} silent"),
    }
}

/// `3 streams: 1 silent (see HEALTH), 2 with an error in their last pass.`
fn summary(statuses: &[StreamStatus]) -> String {
    let walks = statuses.len();
    let silent = statuses.iter().filter(|s| !s.healthy()).count();
    let failing = statuses.iter().filter(|s| s.last_error.is_some()).count();
    let mut problems = Vec::new();
    if silent > 0 {
        problems.push(format!("{silent} silent (see HEALTH)"));
    }
    match failing {
        0 => {}
        1 => problems.push("1 with an error in its last pass".to_string()),
        n => problems.push(format!("{n} with an error in their last pass")),
    }
    let streams = if walks == 1 {
        "1 stream".to_string()
    } else {
        format!("{walks} streams")
    };
    if problems.is_empty() {
        format!("{streams}: all healthy, no error.")
    } else {
        format!("{streams}: {}.", problems.join(", "))
    }
}

fn row(s: &StreamStatus) -> String {
    let state = if !s.healthy() {
        "silent"
    } else if s.last_error.is_some() {
        "failing"
    } else {
        "ok"
    };
    let mut tr = format!("<tr class=\"{state}\">");
    for (column, cell) in STATUS_COLUMNS.iter().zip(s.display_cells()) {
        let class = match *column {
            "WATERMARK" | "LAG" | "LAST SUCCESS" | "RECORDS" => "nowrap",
            "HEALTH" if s.healthy() => "ok",
            "HEALTH" => "silent",
            "LAST ERROR" if s.last_error.is_some() => "error",
            _ => "",
        };
        if class.is_empty() {
            tr += &format!("<td>{}</td>", escape_html(&cell));
        } else {
            tr += &format!("<td class=\"{class}\">{}</td>", escape_html(&cell));
        }
    }
    tr + "</tr>\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_logs_core::status::StoredStatus;

    const NOW: i64 = 1_709_210_096;

    /// The text of each `<td>` of each body row, unescaped, as a browser would show it.
    fn cells(page: &str) -> Vec<Vec<String>> {
        let body = page
            .split("<tbody>")
            .nth(1)
            .and_then(|b| b.split("</tbody>").next())
            .unwrap_or("");
        body.split("<tr")
            .skip(1)
            .map(|tr| {
                tr.split("<td")
                    .skip(1)
                    .map(|td| {
                        let text = td.split_once('>').map_or("", |(_, t)| t);
                        let text = text.split("</td>").next().unwrap_or("");
                        text.replace("&lt;", "<")
                            .replace("&gt;", ">")
                            .replace("&quot;", "\"")
                            .replace("&#39;", "'")
                            .replace("&amp;", "&")
                    })
                    .collect()
            })
            .collect()
    }

    fn audit_ok() -> StreamStatus {
        StreamStatus {
            stream: "audit".into(),
            watermark: Some(NOW - 75),
            lag_seconds: Some(75),
            last_success: Some(NOW - 10),
            total_records: 42,
            ..Default::default()
        }
    }

    #[test]
    fn a_hostile_error_message_is_shown_as_text() {
        let hostile =
            "Slack answered `<script>alert('x')</script><img src=x onerror=alert(1)>` & \"more\"";
        let s = StreamStatus {
            stream: "integration".into(),
            last_error_at: Some(NOW),
            last_error: Some(hostile.into()),
            ..Default::default()
        };
        let page = render(&[s], NOW);
        assert!(
            !page.contains("<script") && !page.contains("<img"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;` &amp; &quot;more&quot;"), "{page}");
        assert_eq!(
            cells(&page)[0][7],
            format!("{}: {hostile}", format_rfc3339(NOW))
        );
        assert!(page.contains("<tr class=\"failing\">"), "{page}");
        // Hostile names too (a team id comes from the store, which came from Slack).
        let s = StreamStatus {
            stream: "access".into(),
            team_id: Some("T<b>1".into()),
            ..Default::default()
        };
        let page = render(&[s], NOW);
        assert!(
            page.contains("<td>T&lt;b&gt;1</td>") && !page.contains("<b>"),
            "{page}"
        );
        assert!(!render_error("<i>bad</i>", NOW).contains("<i>"));
    }

    #[test]
    fn the_empty_state_says_no_stream_has_run_yet() {
        let page = render(&[], NOW);
        assert!(page.contains(NO_STREAM_YET), "{page}");
        assert!(!page.contains("<table"), "{page}");
        assert!(page.contains("As of 2024-02-29T12:34:56Z"), "{page}");
    }

    #[test]
    fn rows_carry_the_words_of_slack_logs_status() {
        let page = render(&[audit_ok()], NOW);
        assert_eq!(cells(&page), vec![audit_ok().display_cells().to_vec()]);
        assert_eq!(cells(&page)[0][3], "1m15s");
        for column in STATUS_COLUMNS {
            assert!(
                page.contains(&format!("<th scope=\"col\">{column}</th>")),
                "{column} in {page}"
            );
        }
        assert!(page.contains("1 stream: all healthy, no error."), "{page}");
        assert!(page.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
        )));
        assert!(!page.contains("<script"), "no script at all");
    }

    #[test]
    fn a_silent_stream_is_flagged() {
        let silent = StreamStatus {
            stream: "access".into(),
            last_error_at: Some(NOW - 100),
            last_error: Some(
                "Slack answered `token_revoked`: the token was revoked or its user deactivated; issue a new token"
                    .into(),
            ),
            silent_for: Some(3 * 3600),
            stored: StoredStatus { first_pass_at: Some(NOW - 3 * 3600), ..Default::default() },
            ..Default::default()
        };
        let page = render(&[audit_ok(), silent], NOW);
        let rows = cells(&page);
        assert_eq!(rows[1][6], "SILENT 3h0m");
        assert!(
            rows[1][7].ends_with("issue a new token"),
            "the advice is shown: {}",
            rows[1][7]
        );
        assert!(
            page.contains("<tr class=\"silent\">")
                && page.contains("<td class=\"silent\">SILENT 3h0m</td>"),
            "{page}"
        );
        assert!(
            page.contains("<title>slack-logs: 1 silent</title>"),
            "{page}"
        );
        assert!(
            page.contains("2 streams: 1 silent (see HEALTH), 1 with an error in its last pass."),
            "{page}"
        );
    }

    #[test]
    fn a_workspace_walk_has_a_row_per_workspace() {
        let walk = |team: &str, records| StreamStatus {
            stream: "access".into(),
            team_id: Some(team.into()),
            total_records: records,
            ..Default::default()
        };
        let page = render(
            &[audit_ok(), walk("T0SIMHQ001", 7), walk("T0SIMENG02", 0)],
            NOW,
        );
        let rows = cells(&page);
        let teams: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[5].as_str()))
            .collect();
        assert_eq!(
            teams,
            [
                ("audit", "-", "42"),
                ("access", "T0SIMHQ001", "7"),
                ("access", "T0SIMENG02", "0")
            ]
        );
    }
}
