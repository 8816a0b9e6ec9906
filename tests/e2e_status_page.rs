//! The status page (`GET /`) end to end, in a real browser: the built component in the host
//! against the simulator, passes that leave real status behind (audit delivered, access failing
//! on a revoked token and silent, an integration workspace failing with an error code full of
//! HTML), then `slack-logs serve` and headless Chromium (Debian's `chromium`): the rendered DOM
//! must show, row for row, the words `slack-logs status` prints, show the hostile text as text,
//! and a screenshot must come out.
//!
//! `SLACK_LOGS_STATUS_PAGE_PNG=$PWD/docs/status-page.png cargo test --release --workspace --test
//! e2e_status_page` keeps the screenshot (that is how the README's picture is made).

mod common;

use std::time::Duration;

use common::*;
use slack_sim::{Fault, SimConfig, Simulator};

/// An error code no Slack sends, made to break out of HTML if the page did not escape it.
const HOSTILE_CODE: &str = "<img src=x onerror=alert(1)><script>alert('x')</script>";

/// The body rows of the page's table, each the text of its `<td>`s as a browser shows it.
fn dom_rows(dom: &str) -> Vec<Vec<String>> {
    let body = dom
        .split("<tbody>")
        .nth(1)
        .and_then(|b| b.split("</tbody>").next())
        .unwrap_or_else(|| panic!("no table body in the DOM:\n{dom}"));
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
                        .replace("&nbsp;", "\u{a0}")
                        .replace("&amp;", "&")
                })
                .collect()
        })
        .collect()
}

/// `slack-logs status`'s table, cut into cells at the columns its heading line starts.
fn table_rows(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let header: Vec<char> = lines.next().expect("a heading line").chars().collect();
    let starts: Vec<usize> = slack_logs_core::status::STATUS_COLUMNS
        .iter()
        .map(|column| {
            let column: Vec<char> = column.chars().collect();
            header
                .windows(column.len())
                .position(|w| w == column.as_slice())
                .unwrap_or_else(|| panic!("column {column:?} in {table}"))
        })
        .collect();
    lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            starts
                .iter()
                .enumerate()
                .map(|(i, &start)| {
                    let end = starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(chars.len())
                        .min(chars.len());
                    chars[start.min(end)..end]
                        .iter()
                        .collect::<String>()
                        .trim_end()
                        .to_string()
                })
                .collect()
        })
        .collect()
}

fn serve(dir: &Scratch, settings: &[(&str, String)], port: u16) -> KillOnDrop {
    let child = host(dir, settings)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start host");
    let host = KillOnDrop(child);
    assert!(
        wait_for(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "host listens"
    );
    host
}

/// Width and height from a PNG's IHDR chunk; fails the test when `bytes` is not a PNG.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn the_status_page_shows_what_slack_logs_status_says_in_a_browser() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let sim = Simulator::start(SimConfig {
        seed: 41,
        audit_events: 30,
        access_rows: 20,
        integration_entries: 20,
        ..SimConfig::default()
    })
    .unwrap();
    let start = sim.config().history_start;
    let dir = Scratch::new("status-page");
    let teams = slack_sim::WORKSPACE_IDS[..2].join(",");
    let mut settings = audit_settings(&sim, start);
    settings.retain(|(k, _)| *k != "streams");
    settings.push(("audit_token", slack_sim::ORG_OWNER_TOKEN.into()));
    settings.push(("team_ids", teams));
    settings.push(("web_requests_per_minute", "0".into()));
    settings.push(("access_max_silence", "1s".into()));
    let with = |extra: &[(&'static str, &str)]| {
        let mut s = settings.clone();
        for (k, v) in extra {
            s.retain(|(key, _)| key != k);
            s.push((k, v.to_string()));
        }
        s
    };

    // Pass 1, integration only: the first request answers an error code made of HTML, so one
    // workspace's walk fails with it and the other delivers.
    sim.fail_request(
        1,
        Fault::Raw {
            status: 200,
            content_type: Some("application/json; charset=utf-8".into()),
            headers: vec![],
            body: serde_json::json!({"ok": false, "error": HOSTILE_CODE}).to_string(),
        },
    );
    let out = host(&dir, &with(&[("streams", "integration")]))
        .args(["run", "--once"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "one workspace fails:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pass 2, audit and access: audit delivers; access fails on a revoked token.
    let failing = with(&[
        ("streams", "audit,access"),
        ("slack_token", slack_sim::REVOKED_TOKEN),
    ]);
    let out = host(&dir, &failing)
        .args(["run", "--once"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "access fails:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // access_max_silence is 1 s: let the access walks go silent.
    std::thread::sleep(Duration::from_millis(2100));

    let all = with(&[
        ("streams", "audit,access,integration"),
        ("slack_token", slack_sim::REVOKED_TOKEN),
    ]);
    let port = free_port();
    let _host = serve(&dir, &all, port);
    let url = format!("http://127.0.0.1:{port}/");

    // The answer itself: HTML, never cached, a CSP that allows no script.
    let reply = request("GET", &url, None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/html")));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let csp = reply.header("content-security-policy").expect("a CSP");
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script"),
        "{csp}"
    );
    assert!(
        !reply.body.contains("<script") && !reply.body.contains("<img"),
        "{}",
        reply.body
    );
    // Under a route prefix too (Spin's `/slack-logs/...`); the read-only routes are still JSON.
    assert_eq!(
        request("GET", &format!("{url}slack-logs/"), None).status,
        200
    );

    let table = String::from_utf8(host(&dir, &all).arg("status").output().unwrap().stdout).unwrap();
    let dom = chromium.dump_dom(&url);
    assert!(
        !dom.contains("<img") && !dom.contains("<script"),
        "the hostile code stays text:\n{dom}"
    );
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(dom.contains("<title>slack-logs: 2 silent</title>"), "{dom}");

    let page = dom_rows(&dom);
    let printed = table_rows(&table);
    let key = |r: &Vec<String>| (r[0].clone(), r[1].clone());
    assert_eq!(
        page.iter().map(key).collect::<Vec<_>>(),
        printed.iter().map(key).collect::<Vec<_>>(),
        "{dom}\n{table}"
    );
    let (hq, eng) = (slack_sim::WORKSPACE_IDS[0], slack_sim::WORKSPACE_IDS[1]);
    let expected_walks = [
        ("audit", "-"),
        ("access", hq),
        ("access", eng),
        ("integration", hq),
        ("integration", eng),
    ];
    let mut walks: Vec<(&str, &str)> = page
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    walks.sort();
    let mut expected = expected_walks.to_vec();
    expected.sort();
    assert_eq!(walks, expected, "one row per stream × workspace");
    for (row, line) in page.iter().zip(&printed) {
        assert_eq!(row.len(), 8, "{row:?}");
        for (i, (cell, words)) in row.iter().zip(line).enumerate() {
            match slack_logs_core::status::STATUS_COLUMNS[i] {
                // Read a moment apart: the lag and the silence grow between the two.
                "LAG" => {}
                "HEALTH" => assert_eq!(
                    cell.split(' ').next(),
                    words.split(' ').next(),
                    "{row:?} / {line:?}"
                ),
                column => assert_eq!(cell, words, "{column} of {row:?}"),
            }
        }
    }

    let row = |stream: &str, team: &str| {
        page.iter()
            .find(|r| r[0] == stream && r[1] == team)
            .unwrap()
    };
    let audit = row("audit", "-");
    let delivered = std::fs::read_to_string(dir.path("out.ndjson")).unwrap();
    let audit_records = delivered
        .lines()
        .filter(|l| l.contains("\"stream\":\"audit\""))
        .count();
    assert!(audit_records > 0);
    assert_eq!(
        (audit[5].clone(), audit[6].as_str(), audit[7].as_str()),
        (audit_records.to_string(), "ok", "-")
    );
    for team in [hq, eng] {
        let access = row("access", team);
        assert!(access[6].starts_with("SILENT "), "{access:?}");
        assert!(access[7].contains("token_revoked"), "{access:?}");
        let advice = slack_logs_core::slack_error::advice("token_revoked");
        assert!(
            access[7].contains(advice),
            "the advice is on the page: {access:?}"
        );
    }
    let integration: Vec<&Vec<String>> = page.iter().filter(|r| r[0] == "integration").collect();
    assert_eq!(
        integration
            .iter()
            .filter(|r| r[7].contains(HOSTILE_CODE))
            .count(),
        1,
        "one workspace shows the code, as text: {integration:?}"
    );
    assert!(
        integration.iter().any(|r| r[7] == "-" && r[5] != "0"),
        "the other delivered: {integration:?}"
    );

    // A picture a person would see.
    let png = dir.path("status-page.png");
    chromium.screenshot(&url, &png, 1280, 560);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&bytes), (1280, 560));
    // A blank page of that size compresses to a few KB; text and colour take far more.
    assert!(
        bytes.len() > 15_000,
        "the screenshot is nearly empty: {} bytes",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("SLACK_LOGS_STATUS_PAGE_PNG") {
        std::fs::copy(&png, &keep).expect("copy the screenshot to SLACK_LOGS_STATUS_PAGE_PNG");
    }
}

#[test]
fn the_read_only_listener_serves_the_status_page() {
    let sim = Simulator::start(SimConfig {
        seed: 42,
        audit_events: 5,
        ..SimConfig::default()
    })
    .unwrap();
    let dir = Scratch::new("status-page-listen");
    let port = free_port();
    let child = host(&dir, &audit_settings(&sim, sim.config().history_start))
        .args([
            "run",
            "--every",
            "1h",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start host");
    let _host = KillOnDrop(child);
    assert!(
        wait_for(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "host listens"
    );
    let reply = request("GET", &format!("http://127.0.0.1:{port}/"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "{:?}",
        reply.headers
    );
    assert!(
        reply.body.contains("<th scope=\"col\">LAST ERROR</th>")
            && reply.body.contains("<td>audit</td>"),
        "{}",
        reply.body
    );
    // Passes run on the schedule only.
    assert_eq!(http(port, "POST", "/collect", None).0, 404);
}
