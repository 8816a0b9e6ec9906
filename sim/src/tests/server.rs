use std::time::{Duration, Instant};

use super::client::{get, raw_exchange, send, Conn};
use super::{config, start, NOW};
use crate::{Fault, SimConfig, ORG_OWNER_TOKEN};

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let sim = start(config());
    let mut conn = Conn::open(sim.local_addr());
    let auth = format!("Bearer {ORG_OWNER_TOKEN}");
    for _ in 0..3 {
        let r = conn
            .send(
                "GET",
                "/audit/v1/logs?limit=3",
                &[("Authorization", &auth)],
                b"",
            )
            .expect("reply");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    let r = conn
        .send(
            "POST",
            "/api/team.accessLogs",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("token={ORG_OWNER_TOKEN}&count=2").as_bytes(),
        )
        .unwrap();
    assert_eq!(r.json()["logins"].as_array().unwrap().len(), 2);
    assert_eq!(sim.request_count(), 4);
}

#[test]
fn requests_are_served_concurrently() {
    let sim = start(config());
    sim.set_response_delay(Duration::from_millis(300));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(get(&sim, "/audit/v1/actions", None).status, 200));
        }
    });
    assert!(
        started.elapsed() < Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_panic_becomes_a_500_and_the_server_lives_on() {
    let sim = start(config());
    let r = get(&sim, "/__panic", None);
    assert_eq!(r.status, 500);
    assert_eq!(
        get(&sim, "/audit/v1/logs?limit=1", Some(ORG_OWNER_TOKEN)).status,
        200
    );
}

#[test]
fn faults_still_give_well_formed_http() {
    let sim = start(config());
    sim.fail_request(1, Fault::MalformedBody);
    sim.fail_request(2, Fault::HtmlErrorPage);
    sim.fail_request(3, Fault::ServerError(503));
    sim.fail_request(4, Fault::RateLimited { retry_after: None });
    sim.fail_request(
        5,
        Fault::Raw {
            status: 429,
            content_type: None,
            headers: vec![("Retry-After".into(), "1e9".into())],
            body: String::new(),
        },
    );
    let r = get(&sim, "/audit/v1/logs", Some(ORG_OWNER_TOKEN));
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
    let r = get(&sim, "/audit/v1/logs", Some(ORG_OWNER_TOKEN));
    assert_eq!(
        (r.status, r.header("content-type")),
        (502, Some("text/html"))
    );
    let r = get(&sim, "/api/team.accessLogs", Some(ORG_OWNER_TOKEN));
    assert_eq!((r.status, r.error().as_str()), (503, "service_unavailable"));
    let r = get(&sim, "/api/team.accessLogs", Some(ORG_OWNER_TOKEN));
    assert_eq!((r.status, r.header("retry-after")), (429, None));
    let r = get(&sim, "/api/team.accessLogs", Some(ORG_OWNER_TOKEN));
    assert_eq!(
        (r.status, r.header("retry-after"), r.body.len()),
        (429, Some("1e9"), 0)
    );

    sim.fail_every(2, Fault::ServerError(500));
    let statuses: Vec<u16> = (0..4)
        .map(|_| get(&sim, "/audit/v1/actions", None).status)
        .collect();
    assert_eq!(statuses, vec![200, 500, 200, 500]);
    sim.fail_every(0, Fault::ServerError(500));
    assert_eq!(get(&sim, "/audit/v1/actions", None).status, 200);
}

#[test]
fn hang_sends_nothing_then_closes() {
    let sim = start(config());
    sim.fail_request(1, Fault::Hang(Duration::from_millis(300)));
    let started = Instant::now();
    let got = raw_exchange(
        sim.local_addr(),
        "GET /audit/v1/actions HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(280));
    assert_eq!(sim.requests().last().unwrap().status, 0);
}

#[test]
fn malformed_http_gets_a_400() {
    let sim = start(config());
    let got = raw_exchange(sim.local_addr(), "NONSENSE\r\n\r\n", Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 400 "));
    let got = raw_exchange(
        sim.local_addr(),
        "GET /audit/v1/actions HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 "),
        "HTTP/1.0 is answered and closed"
    );
}

#[test]
fn requests_are_recorded_without_credentials() {
    let sim = start(config());
    get(
        &sim,
        "/audit/v1/logs?oldest=1700000000&cursor=abc%3D%3D",
        Some(ORG_OWNER_TOKEN),
    );
    send(
        &sim,
        "POST",
        &format!("/api/team.accessLogs?token={ORG_OWNER_TOKEN}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"count=5&token=secret",
    );
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/audit/v1/logs");
    assert_eq!(
        log[0].query,
        vec![
            ("oldest".to_string(), "1700000000".to_string()),
            ("cursor".to_string(), "abc==".to_string())
        ]
    );
    assert_eq!(log[0].status, 400);
    assert!(log[0].has_authorization);
    let dump = format!("{log:?}");
    assert!(!dump.contains(ORG_OWNER_TOKEN) && !dump.contains("secret"));
    assert_eq!(log[1].form[0], ("count".to_string(), "5".to_string()));
}

#[test]
fn dropping_the_simulator_closes_idle_connections() {
    let sim = start(config());
    let mut conn = Conn::open(sim.local_addr());
    assert_eq!(
        conn.send("GET", "/audit/v1/actions", &[], b"")
            .unwrap()
            .status,
        200
    );
    let addr = sim.local_addr();
    drop(sim);
    assert!(conn.send("GET", "/audit/v1/actions", &[], b"").is_err());
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[test]
fn a_million_events_generate_and_serve_quickly() {
    // Debug build: generous bounds; a release build is ~10x faster.
    let started = Instant::now();
    let sim = start(SimConfig {
        audit_events: 1_000_000,
        access_rows: 10,
        integration_entries: 10,
        ..config()
    });
    let generated = started.elapsed();
    let started = Instant::now();
    let r = get(
        &sim,
        &format!("/audit/v1/logs?limit=9999&oldest={}", NOW - 86_400),
        Some(ORG_OWNER_TOKEN),
    );
    let served = started.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.json()["entries"].as_array().unwrap().len() >= 9999);
    eprintln!("1M events: generated in {generated:?}, 9999-entry page in {served:?}");
    assert!(generated < Duration::from_secs(20) && served < Duration::from_secs(5));
}
