use super::*;
use std::io::Read;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzE+token/with=chars";

fn settings() -> Settings {
    Settings {
        bucket: Some("slack-logs".into()),
        prefix: Some("/security/slack/".into()),
        endpoint_url: Some("http://127.0.0.1:9000".into()),
        region: Some("eu-west-1".into()),
        access_key_id: Some("AKIAIOSFODNN7EXAMPLE".into()),
        secret_access_key: Some(SECRET.into()),
        session_token: None,
        path_style: None,
    }
}

fn target(s: &Settings) -> Target {
    Target::from_settings(s, Origin::Variables).unwrap()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn record(id: &str, time: i64) -> String {
    format!("{{\"id\":\"{id}\",\"stream\":\"audit\",\"source\":\"audit/v1/logs\",\"time\":{time},\"collected_at\":1,\"event\":{{\"id\":\"{id}\"}}}}\n")
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn utc_days() {
    assert_eq!(utc_day(0).as_deref(), Some("1970-01-01"));
    assert_eq!(utc_day(951_782_400).as_deref(), Some("2000-02-29"));
    assert_eq!(utc_day(1_700_000_000).as_deref(), Some("2023-11-14"));
    assert_eq!(utc_day(1_704_067_199).as_deref(), Some("2023-12-31"));
    assert_eq!(utc_day(1_704_067_200).as_deref(), Some("2024-01-01"));
    assert_eq!(utc_day(253_402_300_799).as_deref(), Some("9999-12-31"));
    assert_eq!(utc_day(-1), None);
    assert_eq!(utc_day(253_402_300_800), None);
    assert_eq!(utc_day(i64::MAX), None);
}

#[test]
fn a_record_is_dated_by_its_time_in_seconds_or_ocsf_milliseconds() {
    assert_eq!(
        record_day(record("a", 1_700_000_000).trim().as_bytes()).as_deref(),
        Some("2023-11-14")
    );
    // OCSF events carry `time` in milliseconds.
    assert_eq!(
        record_day(br#"{"class_uid":3002,"time":1700000000123,"metadata":{}}"#).as_deref(),
        Some("2023-11-14")
    );
    for undated in [
        &br#"{"id":"x"}"#[..],
        br#"{"time":"1700000000"}"#,
        br#"{"time":1.7e9}"#,
        b"not json",
        br#"{"time":-5}"#,
        br#"{"time":99999999999999999999}"#,
    ] {
        assert_eq!(
            record_day(undated),
            None,
            "{}",
            String::from_utf8_lossy(undated)
        );
    }
}

#[test]
fn a_batch_becomes_one_object_per_day_named_by_its_key() {
    let t = target(&settings());
    let day1 = 1_704_067_199; // 2023-12-31T23:59:59Z
    let day2 = 1_704_067_200; // 2024-01-01T00:00:00Z
    let batch = [
        record("c", day2 + 5),
        record("b", day2),
        record("a", day1),
        record("z", day1 - 3),
    ]
    .concat();
    let objects = t.plan("audit", KEY, batch.as_bytes()).unwrap();
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("security/slack/stream=audit/date=2023-12-31/{KEY}.ndjson.gz"),
            format!("security/slack/stream=audit/date=2024-01-01/{KEY}.ndjson.gz"),
        ]
    );
    // Each day's records, in batch order, whole lines; together exactly the batch.
    assert_eq!(
        gunzip(&objects[0].body),
        [record("a", day1), record("z", day1 - 3)]
            .concat()
            .as_bytes()
    );
    assert_eq!(
        gunzip(&objects[1].body),
        [record("c", day2 + 5), record("b", day2)]
            .concat()
            .as_bytes()
    );
    assert_eq!((objects[0].records, objects[1].records), (2, 2));
    for o in &objects {
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&o.body));
        assert_eq!(o.content_md5, md5);
    }
    // Without a prefix the layout starts at the bucket's root.
    let mut s = settings();
    s.prefix = None;
    let objects = target(&s)
        .plan("access", KEY, record("a", day1).as_bytes())
        .unwrap();
    assert_eq!(
        objects[0].key,
        format!("stream=access/date=2023-12-31/{KEY}.ndjson.gz")
    );
}

/// A batch offered again after a crash has the same key and the same records or more: every
/// object of the first copy is written again under its own name, so the first copy is replaced,
/// and no object of the first copy is left beside the retry's.
#[test]
fn a_retried_batch_overwrites_every_object_of_the_first_copy() {
    let t = target(&settings());
    let base = 1_704_067_190;
    let first: Vec<String> = (0..6)
        .map(|i| record(&format!("r{i}"), base + i * 3))
        .collect();
    let mut retry = first.clone();
    retry.insert(2, record("late", base + 4));
    retry.push(record("more", base + 40));
    let a = t.plan("audit", KEY, first.concat().as_bytes()).unwrap();
    let b = t.plan("audit", KEY, retry.concat().as_bytes()).unwrap();
    let b_keys: BTreeMap<&str, &PlannedObject> = b.iter().map(|o| (o.key.as_str(), o)).collect();
    for o in &a {
        let again = b_keys
            .get(o.key.as_str())
            .expect("the retry writes the same object");
        let old = String::from_utf8(gunzip(&o.body)).unwrap();
        let new = String::from_utf8(gunzip(&again.body)).unwrap();
        for line in old.lines() {
            assert!(
                new.lines().any(|l| l == line),
                "{line} is kept by the overwrite"
            );
        }
    }
    // Another key is another object.
    let other = t
        .plan("audit", &KEY.replace('0', "1"), first.concat().as_bytes())
        .unwrap();
    assert!(other.iter().all(|o| !b_keys.contains_key(o.key.as_str())));
}

#[test]
fn records_without_a_time_still_land_deterministically() {
    let t = target(&settings());
    let objects = t
        .plan("audit", KEY, b"{\"id\":\"x\"}\n\n{\"id\":\"y\"}")
        .unwrap();
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0].key.contains("/date=undated/"),
        "{}",
        objects[0].key
    );
    assert_eq!(
        gunzip(&objects[0].body),
        b"{\"id\":\"x\"}\n{\"id\":\"y\"}\n"
    );
    assert_eq!(objects[0].records, 2);
}

#[test]
fn a_batch_without_a_usable_key_is_refused() {
    let t = target(&settings());
    for bad in ["", "../../etc", "ABCDEF", "0123/4567", &"a".repeat(65)] {
        match t.plan("audit", bad, record("a", 1).as_bytes()) {
            Err(Failure::Rejected(m)) => assert!(m.contains("batch key"), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(matches!(
        t.plan("../x", KEY, b"{}\n"),
        Err(Failure::Rejected(_))
    ));
}

#[test]
fn settings_are_checked_and_messages_name_the_setting_never_the_secret() {
    /// A change to valid settings, and the name each origin's message must use.
    type Case = (fn(&mut Settings), &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (|s| s.bucket = None, "`s3_bucket`", "the BUCKET of --sink"),
        (
            |s| s.bucket = Some("Bad_Bucket".into()),
            "`s3_bucket`",
            "the BUCKET of --sink",
        ),
        (
            |s| s.bucket = Some("ab".into()),
            "`s3_bucket`",
            "the BUCKET of --sink",
        ),
        (
            |s| s.prefix = Some("a/../b".into()),
            "`s3_prefix`",
            "the PREFIX of --sink",
        ),
        (
            |s| s.prefix = Some("a//b".into()),
            "`s3_prefix`",
            "the PREFIX of --sink",
        ),
        (
            |s| s.endpoint_url = Some("ftp://x".into()),
            "`s3_endpoint_url`",
            "AWS_ENDPOINT_URL",
        ),
        (
            |s| s.endpoint_url = Some("https://minio.example/s3".into()),
            "`s3_endpoint_url`",
            "AWS_ENDPOINT_URL",
        ),
        (
            |s| s.endpoint_url = Some("https://u:p@minio.example".into()),
            "`s3_endpoint_url`",
            "AWS_ENDPOINT_URL",
        ),
        (
            |s| s.endpoint_url = Some("not a url".into()),
            "`s3_endpoint_url`",
            "AWS_ENDPOINT_URL",
        ),
        (
            |s| s.region = Some("eu west".into()),
            "`s3_region`",
            "AWS_REGION",
        ),
        (
            |s| s.access_key_id = None,
            "`s3_access_key_id`",
            "AWS_ACCESS_KEY_ID",
        ),
        (
            |s| s.secret_access_key = Some("  ".into()),
            "`s3_secret_access_key`",
            "AWS_SECRET_ACCESS_KEY",
        ),
        (
            |s| s.path_style = Some("maybe".into()),
            "`s3_path_style`",
            "AWS_S3_FORCE_PATH_STYLE",
        ),
    ];
    for (change, variable, env) in cases {
        let mut s = settings();
        s.session_token = Some(TOKEN.into());
        change(&mut s);
        for (origin, name) in [(Origin::Variables, variable), (Origin::HostEnv, env)] {
            let e = Target::from_settings(&s, origin).unwrap_err().to_string();
            assert!(e.contains(name), "{e} should name {name}");
            assert!(
                !e.contains(SECRET) && !e.contains("EXAMPLEKEY") && !e.contains("token/with"),
                "{e}"
            );
        }
    }
    let mut s = settings();
    s.session_token = Some(TOKEN.into());
    let shown = format!("{s:?} {:?}", target(&s));
    assert!(
        !shown.contains("EXAMPLEKEY") && !shown.contains("token/with"),
        "{shown}"
    );
}

#[test]
fn path_style_on_ip_and_localhost_endpoints_virtual_host_style_on_aws() {
    let style = |endpoint: Option<&str>, bucket: &str, switch: Option<&str>| {
        let mut s = settings();
        s.endpoint_url = endpoint.map(str::to_string);
        s.bucket = Some(bucket.into());
        s.path_style = switch.map(str::to_string);
        target(&s).path_style
    };
    assert!(style(Some("http://127.0.0.1:9000"), "logs", None));
    assert!(style(Some("http://[::1]:9000"), "logs", None));
    assert!(style(Some("http://localhost:9000"), "logs", None));
    assert!(!style(None, "logs", None));
    assert!(!style(
        Some("https://acc.r2.cloudflarestorage.com"),
        "logs",
        None
    ));
    assert!(style(
        Some("https://acc.r2.cloudflarestorage.com"),
        "logs",
        Some("true")
    ));
    let mut s = settings();
    s.path_style = Some("false".into());
    let e = Target::from_settings(&s, Origin::Variables)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`s3_path_style`") && e.contains("IP address"),
        "{e}"
    );
    // A dotted bucket is no valid host name under a wildcard certificate.
    assert!(style(None, "logs.example.com", None));
    // The default endpoint follows the region.
    let mut s = settings();
    s.endpoint_url = None;
    assert!(
        target(&s)
            .describe()
            .contains("https://s3.eu-west-1.amazonaws.com"),
        "{}",
        target(&s).describe()
    );
}

#[test]
fn aws_environment_variables_in_their_order() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let s = Settings::from_aws_env(
        "b",
        "p",
        env(&[
            ("AWS_ENDPOINT_URL", "https://generic.example"),
            ("AWS_ENDPOINT_URL_S3", "https://s3.example"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_SESSION_TOKEN", "ST"),
            ("AWS_S3_FORCE_PATH_STYLE", "true"),
        ]),
    );
    assert_eq!(s.endpoint_url.as_deref(), Some("https://s3.example"));
    assert_eq!(s.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        (
            s.access_key_id.as_deref(),
            s.secret_access_key.as_deref(),
            s.session_token.as_deref()
        ),
        (Some("AK"), Some("SK"), Some("ST"))
    );
    assert_eq!(s.path_style.as_deref(), Some("true"));
    let s = Settings::from_aws_env(
        "b",
        "",
        env(&[
            ("AWS_ENDPOINT_URL", "https://generic.example"),
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", "us-west-2"),
        ]),
    );
    assert_eq!(s.endpoint_url.as_deref(), Some("https://generic.example"));
    assert_eq!(
        s.region.as_deref(),
        Some("us-west-2"),
        "an empty AWS_REGION is unset"
    );
}

#[test]
fn a_signed_put_carries_the_signature_and_the_signed_headers() {
    let mut s = settings();
    s.session_token = Some(TOKEN.into());
    let t = target(&s);
    let o = &t
        .plan("audit", KEY, record("a", 1_700_000_000).as_bytes())
        .unwrap()[0];
    let put = t.sign_put(o, 1_700_000_100).unwrap();
    assert!(!put.https);
    assert_eq!(put.authority, "127.0.0.1:9000");
    let (path, query) = put.path_with_query.split_once('?').unwrap();
    assert_eq!(
        path,
        format!("/slack-logs/security/slack/stream%3Daudit/date%3D2023-11-14/{KEY}.ndjson.gz")
    );
    for needle in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20231114%2Feu-west-1%2Fs3%2Faws4_request",
        "X-Amz-Date=20231114T221500Z",
        "X-Amz-Expires=300",
        "X-Amz-SignedHeaders=content-encoding%3Bcontent-md5%3Bcontent-type%3Bhost",
        "X-Amz-Signature=",
        "X-Amz-Security-Token=",
    ] {
        assert!(query.contains(needle), "{needle} in {query}");
    }
    assert!(
        !query.contains("EXAMPLEKEY"),
        "the secret key is never sent"
    );
    let header = |n: &str| {
        put.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-encoding"), Some("gzip"));
    assert_eq!(header("content-type"), Some("application/x-ndjson"));
    assert_eq!(header("content-md5"), Some(o.content_md5.as_str()));
    assert_eq!(
        header("content-length"),
        Some(o.body.len().to_string().as_str())
    );
    assert!(
        !format!("{put:?}").contains("Signature"),
        "Debug shows no query string"
    );
    // Signed at another second, the signature changes; a virtual-host bucket is in the host.
    let again = t.sign_put(o, 1_700_000_101).unwrap();
    assert_ne!(again.path_with_query, put.path_with_query);
    let mut s = settings();
    s.endpoint_url = None;
    let put = target(&s).sign_put(o, 1_700_000_100).unwrap();
    assert!(put.https);
    assert_eq!(put.authority, "slack-logs.s3.eu-west-1.amazonaws.com");
    assert!(
        put.path_with_query
            .starts_with("/security/slack/stream%3Daudit/"),
        "{}",
        put.path_with_query
    );
}

fn error_xml(code: &str, message: &str) -> Vec<u8> {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>1</RequestId></Error>").into_bytes()
}

#[test]
fn answers_are_read_for_what_to_do() {
    let mut s = settings();
    s.session_token = Some(TOKEN.into());
    let t = target(&s);
    let key = "security/slack/stream=audit/date=2023-11-14/k.ndjson.gz";
    assert_eq!(t.answered(key, 200, b""), Attempt::Accepted);
    for (status, code) in [
        (500, "InternalError"),
        (503, "SlowDown"),
        (400, "RequestTimeout"),
        (400, "BadDigest"),
        (429, ""),
        (409, "OperationAborted"),
    ] {
        assert!(
            matches!(
                t.answered(key, status, &error_xml(code, "x")),
                Attempt::Retry { .. }
            ),
            "{status} {code}"
        );
    }
    let unavailable =
        |status: u16, code: &str| match t.answered(key, status, &error_xml(code, "The message.")) {
            Attempt::Failed(Failure::Unavailable(m)) => m,
            other => panic!("{status} {code}: {other:?}"),
        };
    assert!(unavailable(403, "SignatureDoesNotMatch").contains("`s3_secret_access_key`"));
    assert!(unavailable(403, "InvalidAccessKeyId").contains("`s3_access_key_id`"));
    assert!(unavailable(400, "ExpiredToken").contains("`s3_session_token`"));
    assert!(unavailable(403, "RequestTimeTooSkewed").contains("clock"));
    let m = unavailable(403, "AccessDenied");
    assert!(
        m.contains("s3:PutObject")
            && m.contains("s3://slack-logs/security/slack/*")
            && m.contains("HTTP 403 AccessDenied: The message."),
        "{m}"
    );
    assert!(unavailable(404, "NoSuchBucket").contains("create the bucket"));
    assert!(unavailable(301, "PermanentRedirect").contains("`s3_region`"));
    assert!(unavailable(400, "AuthorizationHeaderMalformed").contains("region"));
    match t.answered(key, 400, &error_xml("EntityTooLarge", "too big")) {
        Attempt::Failed(Failure::Rejected(m)) => {
            assert!(m.contains("EntityTooLarge: too big"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Not XML at all (a proxy's page): the status still decides.
    assert!(matches!(
        t.answered(key, 502, b"<html>bad gateway</html>"),
        Attempt::Retry { .. }
    ));
}

/// A store or proxy that echoes the request (S3 itself echoes the canonical request, query
/// string included, on SignatureDoesNotMatch) must not put the session token in our messages,
/// raw or URL-encoded, cut or whole.
#[test]
fn an_echoed_secret_never_reaches_a_message() {
    let mut s = settings();
    s.session_token = Some(TOKEN.into());
    let t = target(&s);
    let form: String = url::form_urlencoded::byte_serialize(TOKEN.as_bytes()).collect();
    let long = format!("{}{TOKEN}", "x".repeat(190));
    for echoed in [TOKEN.to_string(), form, SECRET.to_string(), long] {
        let body = format!(
            "<Error><Code>SignatureDoesNotMatch</Code><Message>bad {echoed} here</Message><CanonicalRequest>PUT /x X-Amz-Security-Token={echoed}</CanonicalRequest></Error>"
        );
        for status in [403, 503, 400] {
            let text = format!("{:?}", t.answered("k", status, body.as_bytes()));
            assert!(
                !text.contains("token/with")
                    && !text.contains("token%2Fwith")
                    && !text.contains("EXAMPLEKEY")
                    && !text.contains("FwoGZXIv"),
                "{text}"
            );
        }
    }
}

#[test]
fn retries_are_bounded_and_back_off() {
    let mut waits = Vec::new();
    let mut calls = 0;
    let r = deliver(
        |_| {
            calls += 1;
            Attempt::Retry {
                why: "HTTP 503".into(),
            }
        },
        |d| waits.push(d),
    );
    assert_eq!(calls, TRIES);
    assert_eq!(
        waits,
        [
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(2)
        ]
    );
    assert!(matches!(r, Err(Failure::Unavailable(m)) if m.contains("gave up after 4 tries")));
    let worst = ATTEMPT_TIMEOUT * TRIES + waits.iter().sum::<Duration>();
    assert!(
        worst < Duration::from_secs(30),
        "a dead store must not outlast a hosted request: {worst:?}"
    );
    let mut n = 0;
    assert_eq!(
        deliver(
            |i| {
                n = i;
                if i < 2 {
                    Attempt::Retry { why: "x".into() }
                } else {
                    Attempt::Accepted
                }
            },
            |_| {}
        ),
        Ok(())
    );
    assert_eq!(n, 2);
    let r = deliver(
        |_| Attempt::Failed(Failure::Rejected("no".into())),
        |_| panic!("no wait before giving up"),
    );
    assert_eq!(r, Err(Failure::Rejected("no".into())));
}
