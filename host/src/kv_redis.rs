//! The Redis backend of the key-value store (`--state redis://…` or `rediss://…` for TLS), so that
//! several hosts can share one set of checkpoints, as Spin's runtime config allows.
//!
//! The wire protocol and TLS are the `redis` crate's (sync connections, TLS through rustls with
//! the system's CA store, or the CAs `SSL_CERT_FILE` / `SSL_CERT_DIR` name). The host itself
//! sends `AUTH`, `SELECT` and `PING` on every new connection, so each failure gets its own
//! operator message, and the password lives only in [`RedisUrl`], whose `Debug` and `Display`
//! never show it.
//!
//! Keys are `slack-logs:<bucket>:<key>`, so a bucket's keys can be listed with one SCAN pattern
//! and other applications' keys in the same database are never touched. Values are bulk strings:
//! binary-safe. Durability is the Redis server's own (`appendonly yes` with
//! `appendfsync always` for checkpoints that survive a Redis crash).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::sync::Mutex;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionLike, IntoConnectionInfo, RedisConnectionInfo, Value};

/// Default Redis port when the URL names none (TLS or not: Redis serves TLS on whichever port
/// `tls-port` says, and managed services differ, so the URL should name it).
pub const DEFAULT_PORT: u16 = 6379;
/// How long one connection attempt may take (TCP connect; the TLS handshake runs under
/// [`IO_TIMEOUT`] with the first command).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read or write may stall. Checkpoint values are small, so a healthy server
/// answers in milliseconds; this only bounds a hung server.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of every key the host writes.
const KEY_PREFIX: &str = "slack-logs:";
/// Keys asked for per SCAN round trip (a hint to the server).
const SCAN_COUNT: &str = "1000";

// ---------------------------------------------------------------------------------------------
// URL

/// Where the Redis store is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://…` for
/// TLS.
///
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    /// `rediss://`: TLS, with the server's certificate checked against the trusted CAs and the
    /// host name.
    pub tls: bool,
    password: Option<String>,
}

const URL_FORM: &str = "redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]";

impl RedisUrl {
    /// Parses a state URL. Errors describe what is wrong without repeating the text, which may
    /// hold a password.
    pub fn parse(text: &str) -> Result<RedisUrl, RedisError> {
        let bad = |m: &str| Err(RedisError::Url(m.to_owned()));
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad(&format!("expected {URL_FORM}"));
        };
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis" => false,
            "rediss" => true,
            _ => return bad("the scheme must be redis:// or rediss:// (TLS)"),
        };
        if rest.contains(['?', '#']) {
            return bad(&format!(
                "query parameters and fragments are not supported; use {URL_FORM} (CAs for \
                 rediss:// come from SSL_CERT_FILE / SSL_CERT_DIR)"
            ));
        }
        // The user info may contain '/' or '@' only percent-encoded; split it off at the last '@'
        // before the path so a password with an encoded '@' still works.
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let user = percent_decode(user).ok_or_else(|| {
                    RedisError::Url("the user name is not valid percent-encoded UTF-8".into())
                })?;
                let pass = match pass {
                    Some(p) => Some(percent_decode(p).ok_or_else(|| {
                        RedisError::Url("the password is not valid percent-encoded UTF-8".into())
                    })?),
                    None => None,
                };
                match (user.is_empty(), pass.filter(|p| !p.is_empty())) {
                    (true, None) => (None, None),
                    (true, Some(p)) => (None, Some(p)),
                    (false, Some(p)) => (Some(user), Some(p)),
                    (false, None) => return bad(
                        "a user name needs a password: redis[s]://USER:PASSWORD@HOST[:PORT][/DB]",
                    ),
                }
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return bad("an IPv6 host must be in brackets: redis://[::1]:6379");
            };
            match after {
                "" => (host, None),
                p if p.starts_with(':') => (host, Some(&p[1..])),
                _ => return bad("expected :PORT after the bracketed IPv6 host"),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return bad("an IPv6 host must be in brackets: redis://[::1]:6379")
                }
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return bad("the host is missing: redis[s]://HOST[:PORT][/DB]");
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return bad("the port must be a number from 1 to 65535"),
            },
        };
        let db = match path {
            "" => 0,
            p => match p.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    return bad("the path must be the database number, e.g. redis://HOST:6379/0")
                }
            },
        };
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            db,
            username,
            tls,
            password,
        })
    }

    /// `HOST:PORT` as it goes into messages (IPv6 in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(u), _) => write!(f, "{u}:***@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.addr(), self.db)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// A URL's user or password with its `%XX` escapes decoded (RFC 3986 userinfo: `+` is itself);
/// `None` when an escape is malformed or the result is not UTF-8, so a password is never guessed.
fn percent_decode(s: &str) -> Option<String> {
    let malformed = s.match_indices('%').any(|(i, _)| {
        !s.get(i + 1..i + 3)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if malformed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What went wrong with the Redis store, worded for the operator. Never holds the password (the
/// texts inside come from the server's error replies, the OS or rustls, none of which repeats
/// what we sent).
#[derive(Debug)]
pub enum RedisError {
    /// The `--state` URL is not usable.
    Url(String),
    /// The host name does not resolve.
    Resolve { addr: String, source: io::Error },
    /// No connection (refused, timed out, unreachable).
    Connect { addr: String, detail: String },
    /// TLS failed: an untrusted or mismatched certificate, CAs that cannot be loaded, or a server
    /// that does not speak TLS on that port.
    Tls { addr: String, detail: String },
    /// AUTH was refused.
    Auth { addr: String, message: String },
    /// The server wants a password and the URL has none.
    NoAuth { addr: String },
    /// SELECT of the URL's database was refused.
    Select {
        addr: String,
        db: u32,
        message: String,
    },
    /// The connection failed during a command (after one reconnect, where that applies).
    Io {
        addr: String,
        command: &'static str,
        detail: String,
        /// Without TLS, a server that only speaks TLS drops the connection at the first command.
        maybe_tls_port: bool,
    },
    /// The server answered a command with an error.
    Server {
        addr: String,
        command: &'static str,
        message: String,
    },
    /// The server answered with a reply of the wrong type.
    Unexpected {
        addr: String,
        command: &'static str,
        reply: String,
    },
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Url(m) => write!(f, "the Redis state URL is not usable: {m} (check --state)"),
            RedisError::Resolve { addr, source } => write!(
                f,
                "cannot reach Redis at {addr}: the host name does not resolve ({source}) (check --state)"
            ),
            RedisError::Connect { addr, detail } => {
                write!(f, "cannot reach Redis at {addr}: {detail} (check --state)")
            }
            RedisError::Tls { addr, detail } => write!(
                f,
                "TLS with Redis at {addr} failed: {detail}. The server's certificate must be valid \
                 for the host name in --state and signed by a trusted CA: for a private CA, set \
                 SSL_CERT_FILE to its PEM file (or SSL_CERT_DIR to a directory of them); for a \
                 server without TLS, use redis://"
            ),
            RedisError::Auth { addr, message } => write!(
                f,
                "Redis at {addr} refused the credentials: {message} (check the user name and \
                 password in --state)"
            ),
            RedisError::NoAuth { addr } => write!(
                f,
                "Redis at {addr} requires a password: put it in the state URL, \
                 redis[s]://[USER]:PASSWORD@HOST:PORT, preferably through SLACK_LOGS_STATE so it \
                 stays off the command line"
            ),
            RedisError::Select { addr, db, message } => write!(
                f,
                "Redis at {addr} refused database {db}: {message} (check the /DB part of --state)"
            ),
            RedisError::Io {
                addr,
                command,
                detail,
                maybe_tls_port,
            } => {
                write!(f, "lost the connection to Redis at {addr} during {command}: {detail}")?;
                if *maybe_tls_port {
                    f.write_str(" (if that port serves TLS, use rediss://)")?;
                }
                Ok(())
            }
            RedisError::Server {
                addr,
                command,
                message,
            } => write!(f, "Redis at {addr} refused {command}: {message}"),
            RedisError::Unexpected {
                addr,
                command,
                reply,
            } => write!(
                f,
                "Redis at {addr} answered {command} with an unexpected reply ({reply}); is this a Redis server?"
            ),
        }
    }
}

impl std::error::Error for RedisError {}

/// A client-side failure in a few words, lower case, without the OS error number.
fn failure_text(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    let text = e.to_string();
    // "Connection reset by peer (os error 104)" -> "connection reset by peer".
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".into(),
    }
}

/// Whether a failure on a `rediss://` connection is TLS's: the texts are rustls' and
/// rustls-native-certs' (the redis crate keeps their error types private).
fn is_tls_failure(e: &redis::RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "pem",
        "ssl_cert",
        "alert",
        "dns name",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Whether a failed command means the connection itself broke (closed by the server or a proxy
/// while idle), so that one fresh connection may succeed. A timeout is not: the server is there
/// but slow, and retrying would double the wait.
fn is_broken_connection(e: &redis::RedisError) -> bool {
    !e.is_timeout() && e.is_connection_dropped()
}

fn server_text(e: &redis::ServerError) -> String {
    match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Store

/// A Redis-backed key-value store. One connection, behind a mutex like the SQLite one: the host
/// issues one small command at a time.
pub struct RedisStore {
    url: RedisUrl,
    conn: Mutex<Option<redis::Connection>>,
}

impl RedisStore {
    /// Connects (TLS for `rediss://`), authenticates, selects the database and PINGs, so a wrong
    /// address, certificate or password stops the command at once rather than at the first
    /// checkpoint.
    pub fn open(url: RedisUrl) -> Result<RedisStore, RedisError> {
        let conn = connect(&url)?;
        Ok(RedisStore {
            url,
            conn: Mutex::new(Some(conn)),
        })
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Runs one command. A connection that turns out broken is replaced once (Redis closes idle
    /// clients when `timeout` is set, and so do proxies); every command used here is idempotent,
    /// so sending it again is safe. Any other failure drops the connection: after a timeout or a
    /// garbled reply, the next reply on it could belong to the wrong command.
    fn command(&self, name: &'static str, args: &[&[u8]]) -> Result<Value, RedisError> {
        // A panic while holding the lock leaves at worst a desynchronised connection; drop it.
        let mut guard = self.conn.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            *g = None;
            g
        });
        let mut cmd = redis::cmd(name);
        for a in args {
            cmd.arg(*a);
        }
        let mut reused = guard.is_some();
        loop {
            let conn = match &mut *guard {
                Some(c) => c,
                empty => empty.insert(connect(&self.url)?),
            };
            match conn.req_command(&cmd) {
                Ok(Value::ServerError(e)) => {
                    return Err(RedisError::Server {
                        addr: self.url.addr(),
                        command: name,
                        message: server_text(&e),
                    })
                }
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    *guard = None;
                    if reused && is_broken_connection(&e) {
                        crate::log_debug!(
                            "the connection to Redis at {} broke during {name} ({}); reconnecting once",
                            self.url.addr(),
                            failure_text(&e)
                        );
                        reused = false;
                        continue;
                    }
                    return Err(RedisError::Io {
                        addr: self.url.addr(),
                        command: name,
                        detail: failure_text(&e),
                        maybe_tls_port: false,
                    });
                }
            }
        }
    }

    fn unexpected(&self, command: &'static str, reply: &Value) -> RedisError {
        RedisError::Unexpected {
            addr: self.url.addr(),
            command,
            reply: describe_reply(reply),
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.command("GET", &[&full_key(bucket, key)])? {
            Value::BulkString(v) => Ok(Some(v)),
            Value::Nil => Ok(None),
            other => Err(self.unexpected("GET", &other)),
        }
    }

    pub fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), RedisError> {
        match self.command("SET", &[&full_key(bucket, key), value])? {
            Value::Okay => Ok(()),
            Value::SimpleString(s) if s == "OK" => Ok(()),
            other => Err(self.unexpected("SET", &other)),
        }
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), RedisError> {
        match self.command("DEL", &[&full_key(bucket, key)])? {
            Value::Int(_) => Ok(()),
            other => Err(self.unexpected("DEL", &other)),
        }
    }

    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool, RedisError> {
        match self.command("EXISTS", &[&full_key(bucket, key)])? {
            Value::Int(n) => Ok(n > 0),
            other => Err(self.unexpected("EXISTS", &other)),
        }
    }

    /// Keys after `cursor` in key order, at most `limit`, with the same last-key cursor as the
    /// SQLite store. SCAN's own cursor is unordered and may repeat keys, so the bucket's keys are
    /// collected whole, deduplicated and sorted first; a bucket holds a handful of keys (two per
    /// stream and workspace), so this costs little.
    pub fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), RedisError> {
        let prefix = full_key(bucket, "");
        let mut pattern = glob_escape(&prefix);
        pattern.push(b'*');
        let mut keys = BTreeSet::new();
        let mut scan_cursor = b"0".to_vec();
        loop {
            let reply = self.command(
                "SCAN",
                &[
                    &scan_cursor,
                    b"MATCH",
                    &pattern,
                    b"COUNT",
                    SCAN_COUNT.as_bytes(),
                ],
            )?;
            let Value::Array(parts) = &reply else {
                return Err(self.unexpected("SCAN", &reply));
            };
            let [Value::BulkString(next), Value::Array(found)] = parts.as_slice() else {
                return Err(self.unexpected("SCAN", &reply));
            };
            for k in found {
                let Value::BulkString(k) = k else {
                    return Err(self.unexpected("SCAN", &reply));
                };
                // A key under our prefix that is not UTF-8 was not written through this store
                // (WIT keys are strings); it cannot be returned as a key, so it is left alone.
                if let Some(rest) = k.strip_prefix(prefix.as_slice()) {
                    if let Ok(s) = std::str::from_utf8(rest) {
                        keys.insert(s.to_owned());
                    }
                }
            }
            if next.as_slice() == b"0" {
                break;
            }
            scan_cursor = next.clone();
        }
        let mut page: Vec<String> = keys
            .into_iter()
            .filter(|k| cursor.is_none_or(|c| k.as_str() > c))
            .take(limit.saturating_add(1))
            .collect();
        if page.len() > limit {
            page.truncate(limit);
            let next = page.last().cloned();
            Ok((page, next))
        } else {
            Ok((page, None))
        }
    }
}

/// `slack-logs:<bucket>:<key>`. The bucket name comes from the host (only `default` is opened),
/// so the ':' after it is unambiguous.
fn full_key(bucket: &str, key: &str) -> Vec<u8> {
    format!("{KEY_PREFIX}{bucket}:{key}").into_bytes()
}

/// Escapes SCAN's glob characters so the prefix matches literally.
fn glob_escape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    for &b in text {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// A reply in a few words for an error message (never a value's bytes: they may be anything).
fn describe_reply(r: &Value) -> String {
    match r {
        Value::Okay => "status `OK`".into(),
        Value::SimpleString(s) => format!("status `{}`", s.chars().take(40).collect::<String>()),
        Value::ServerError(e) => format!(
            "error `{}`",
            server_text(e).chars().take(80).collect::<String>()
        ),
        Value::Int(n) => format!("integer {n}"),
        Value::BulkString(b) => format!("a {}-byte string", b.len()),
        Value::Nil => "nil".into(),
        Value::Array(a) => format!("an array of {}", a.len()),
        _ => "a RESP3 value".into(),
    }
}

/// A new connection: TCP (and TLS for `rediss://`) with timeouts, then AUTH and SELECT from the
/// URL and a PING. The TLS handshake happens with the first command, so its failure is reported
/// there, as [`RedisError::Tls`].
fn connect(url: &RedisUrl) -> Result<redis::Connection, RedisError> {
    let addr = url.addr();
    let target = if url.tls {
        ConnectionAddr::TcpTls {
            host: url.host.clone(),
            port: url.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(url.host.clone(), url.port)
    };
    let connect_failed = |e: redis::RedisError| {
        if let Err(source) = (url.host.as_str(), url.port).to_socket_addrs() {
            return RedisError::Resolve {
                addr: addr.clone(),
                source,
            };
        }
        if url.tls && is_tls_failure(&e) {
            return RedisError::Tls {
                addr: addr.clone(),
                detail: failure_text(&e),
            };
        }
        RedisError::Connect {
            addr: addr.clone(),
            detail: failure_text(&e),
        }
    };
    let info = target
        .into_connection_info()
        .map_err(connect_failed)?
        // Commands are one small write each; Nagle would only add latency.
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
        // No handshake commands of the crate's own: the host sends AUTH and SELECT itself below,
        // and nothing goes out before AUTH.
        .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
    let client = redis::Client::open(info).map_err(connect_failed)?;
    let mut conn = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(connect_failed)?;
    let timeouts = conn
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(IO_TIMEOUT)));
    timeouts.map_err(connect_failed)?;

    // The first command carries the TLS handshake, so a failure there may be TLS's.
    let mut first = true;
    let mut round_trip = |conn: &mut redis::Connection,
                          command: &'static str,
                          args: &[&[u8]]|
     -> Result<Value, RedisError> {
        let mut cmd = redis::cmd(command);
        for a in args {
            cmd.arg(*a);
        }
        let was_first = std::mem::replace(&mut first, false);
        conn.req_command(&cmd).map_err(|e| {
            if was_first && url.tls && is_tls_failure(&e) {
                RedisError::Tls {
                    addr: addr.clone(),
                    detail: failure_text(&e),
                }
            } else {
                RedisError::Io {
                    addr: addr.clone(),
                    command,
                    detail: failure_text(&e),
                    maybe_tls_port: was_first && !url.tls && is_broken_connection(&e),
                }
            }
        })
    };
    let is_noauth = |e: &redis::ServerError| e.code() == "NOAUTH";
    if let Some(password) = &url.password {
        let reply = match &url.username {
            Some(user) => round_trip(&mut conn, "AUTH", &[user.as_bytes(), password.as_bytes()]),
            None => round_trip(&mut conn, "AUTH", &[password.as_bytes()]),
        }?;
        match reply {
            Value::Okay | Value::SimpleString(_) => {}
            Value::ServerError(e) => {
                return Err(RedisError::Auth {
                    addr: addr.clone(),
                    message: server_text(&e),
                })
            }
            other => {
                return Err(RedisError::Unexpected {
                    addr: addr.clone(),
                    command: "AUTH",
                    reply: describe_reply(&other),
                })
            }
        }
    }
    if url.db != 0 {
        match round_trip(&mut conn, "SELECT", &[url.db.to_string().as_bytes()])? {
            Value::Okay | Value::SimpleString(_) => {}
            Value::ServerError(e) if is_noauth(&e) => return Err(RedisError::NoAuth { addr }),
            Value::ServerError(e) => {
                return Err(RedisError::Select {
                    addr,
                    db: url.db,
                    message: server_text(&e),
                })
            }
            other => {
                return Err(RedisError::Unexpected {
                    addr,
                    command: "SELECT",
                    reply: describe_reply(&other),
                })
            }
        }
    }
    match round_trip(&mut conn, "PING", &[])? {
        Value::SimpleString(s) if s == "PONG" => Ok(conn),
        Value::ServerError(e) if is_noauth(&e) => Err(RedisError::NoAuth { addr }),
        Value::ServerError(e) => Err(RedisError::Server {
            addr,
            command: "PING",
            message: server_text(&e),
        }),
        other => Err(RedisError::Unexpected {
            addr,
            command: "PING",
            reply: describe_reply(&other),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.username.as_deref(), u.tls),
            ("127.0.0.1", 6380, 2, None, false)
        );
        assert_eq!(u.to_string(), "redis://127.0.0.1:6380/2");
        let u = RedisUrl::parse("redis://cache.internal").unwrap();
        assert_eq!((u.port, u.db), (DEFAULT_PORT, 0));
        let u = RedisUrl::parse("redis://:s3cr%40t@h:1/").unwrap();
        assert_eq!(u.password.as_deref(), Some("s3cr@t"));
        assert_eq!(u.to_string(), "redis://:***@h:1/0");
        let u = RedisUrl::parse("redis://alice:pw-xyz@[::1]:7000/3").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 7000, 3));
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.to_string(), "redis://alice:***@[::1]:7000/3");
        assert!(!format!("{u:?}").contains("pw-xyz"));
        // TLS keeps its scheme in messages.
        let u = RedisUrl::parse("rediss://alice:pw-xyz@redis.internal:6380/1").unwrap();
        assert!(u.tls);
        assert_eq!(u.to_string(), "rediss://alice:***@redis.internal:6380/1");
        assert!(!format!("{u:?}").contains("pw-xyz"));
        assert!(RedisUrl::parse("REDISS://h").unwrap().tls);
        // An empty password is no password.
        assert_eq!(RedisUrl::parse("redis://:@h").unwrap().password, None);
        for bad in [
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:port",
            "redis://h/db",
            "redis://h?timeout=1",
            "rediss://h?insecure",
            "redisss://h",
            "http://h",
            "redis://user@h",
            "redis://[::1",
            "redis://:pw%zz@h",
            "127.0.0.1:6379",
        ] {
            let e = RedisUrl::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(matches!(e, RedisError::Url(_)), "{bad}: {e}");
            assert!(e.to_string().contains("--state"), "{bad}: {e}");
        }
        let e = RedisUrl::parse("redis://user@h:1:2").unwrap_err();
        assert!(!e.to_string().contains("user@h"), "{e}");
        let e = RedisUrl::parse("rediss://:topsecret@h?x").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }

    #[test]
    fn scan_patterns_match_the_prefix_literally() {
        assert_eq!(
            glob_escape(b"slack-logs:a*b?[c]\\:"),
            b"slack-logs:a\\*b\\?\\[c\\]\\\\:".to_vec()
        );
    }

    #[test]
    fn connection_refused_is_an_operator_message() {
        // A port that was free a moment ago: nothing listens there.
        let port = free_port();
        for scheme in ["redis", "rediss"] {
            let url = RedisUrl::parse(&format!("{scheme}://:hunter2@127.0.0.1:{port}")).unwrap();
            let e = RedisStore::open(url).err().unwrap();
            let text = e.to_string();
            assert_eq!(
                text,
                format!(
                    "cannot reach Redis at 127.0.0.1:{port}: connection refused (check --state)"
                )
            );
            assert!(!text.contains("hunter2"));
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A `redis-server` child on a free loopback port, killed when dropped.
    pub(crate) struct RedisServer {
        child: Child,
        pub port: u16,
        /// With TLS: the directory with `ca.crt`, removed when dropped.
        pub tls_dir: Option<PathBuf>,
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(d) = &self.tls_dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }

    /// Whether `program` runs (`program version_arg`); false (with a notice) when it does not
    /// and `CI` is not set; with `CI` set a missing program fails the test, so CI cannot skip
    /// these tests unnoticed.
    fn installed(program: &str, version_arg: &str) -> bool {
        let ok = Command::new(program)
            .arg(version_arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{program} is not installed, and CI is set: install it (apt-get install redis-server openssl)"
            );
            eprintln!("NOTICE: {program} is not installed; skipping this Redis test");
        }
        ok
    }

    /// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, made with the
    /// `openssl` command (P-256 keys, valid two days), in `dir`.
    pub(crate) fn make_certificates(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=slack-logs test CA",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat());
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
    }

    impl RedisServer {
        /// Starts `redis-server` with the given extra arguments.
        pub(crate) fn start(extra: &[&str]) -> Option<RedisServer> {
            if !installed("redis-server", "--version") {
                return None;
            }
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            Some(RedisServer::wait(child, port, None))
        }

        /// Starts `redis-server` serving TLS only, with a certificate from a CA made for it
        /// (`tls_dir/ca.crt`), and the given extra arguments.
        pub(crate) fn start_tls(extra: &[&str]) -> Option<RedisServer> {
            if !installed("redis-server", "--version") || !installed("openssl", "version") {
                return None;
            }
            let dir = std::env::temp_dir().join(format!(
                "slack-logs-redis-tls-{}-{}",
                std::process::id(),
                free_port()
            ));
            make_certificates(&dir);
            let port = free_port();
            let path = |f: &str| dir.join(f).display().to_string();
            let child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args([
                    "--tls-cert-file",
                    &path("server.crt"),
                    "--tls-key-file",
                    &path("server.key"),
                ])
                .args([
                    "--tls-ca-cert-file",
                    &path("ca.crt"),
                    "--tls-auth-clients",
                    "no",
                ])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            Some(RedisServer::wait(child, port, Some(dir)))
        }

        fn wait(child: Child, port: u16, tls_dir: Option<PathBuf>) -> RedisServer {
            let server = RedisServer {
                child,
                port,
                tls_dir,
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            server
        }

        pub(crate) fn url(&self, db: u32) -> RedisUrl {
            RedisUrl::parse(&format!("redis://127.0.0.1:{}/{db}", self.port)).unwrap()
        }

        /// A raw command on a fresh connection of its own (e.g. to kill our clients).
        fn admin(&self, args: &[&[u8]]) -> Value {
            let mut conn = connect(&self.url(0)).unwrap();
            let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
            for a in &args[1..] {
                cmd.arg(*a);
            }
            conn.req_command(&cmd).unwrap()
        }
    }

    #[test]
    fn redis_set_get_delete_exists_binary_values() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let kv = RedisStore::open(server.url(1)).unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        assert!(!kv.exists("default", "a").unwrap());
        let binary: Vec<u8> = (0..=255u8).chain(*b"\r\n$-1\r\n").collect();
        kv.set("default", "a", &binary).unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), Some(binary));
        assert!(kv.exists("default", "a").unwrap());
        kv.set("default", "a", b"two").unwrap();
        assert_eq!(
            kv.get("default", "a").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        kv.set("default", "empty", b"").unwrap();
        assert_eq!(kv.get("default", "empty").unwrap(), Some(vec![]));
        assert_eq!(kv.get("other", "a").unwrap(), None, "buckets are separate");
        kv.delete("default", "a").unwrap();
        kv.delete("default", "never-there").unwrap();
        assert_eq!(kv.get("default", "a").unwrap(), None);
        // The key is namespaced, in the URL's database.
        assert_eq!(
            server.admin(&[b"EXISTS", b"slack-logs:default:empty"]),
            Value::Int(0),
            "db 0 is untouched"
        );
        let mut conn = connect(&server.url(1)).unwrap();
        assert_eq!(
            conn.req_command(redis::cmd("EXISTS").arg("slack-logs:default:empty"))
                .unwrap(),
            Value::Int(1)
        );
    }

    #[test]
    fn redis_list_keys_pages_one_bucket_in_key_order() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let kv = RedisStore::open(server.url(0)).unwrap();
        assert_eq!(kv.list_keys("default", None, 2).unwrap(), (vec![], None));
        for k in ["c", "a", "e", "b", "d", "with*glob?"] {
            kv.set("default", k, k.as_bytes()).unwrap();
        }
        kv.set("other", "zz", b"").unwrap();
        kv.set("default*", "x", b"").unwrap();
        // Another application's key in the same database.
        server.admin(&[b"SET", b"someone-else:default:q", b"1"]);
        let (p1, c1) = kv.list_keys("default", None, 2).unwrap();
        assert_eq!(
            (p1, c1.as_deref()),
            (vec!["a".to_string(), "b".into()], Some("b"))
        );
        let (p2, c2) = kv.list_keys("default", c1.as_deref(), 2).unwrap();
        assert_eq!(
            (p2, c2.as_deref()),
            (vec!["c".to_string(), "d".into()], Some("d"))
        );
        let (p3, c3) = kv.list_keys("default", c2.as_deref(), 2).unwrap();
        assert_eq!((p3, c3), (vec!["e".to_string(), "with*glob?".into()], None));
        // More keys than one SCAN round trip returns.
        for i in 0..2500 {
            kv.set("many", &format!("k{i:05}"), b"").unwrap();
        }
        let (all, c) = kv.list_keys("many", None, 10_000).unwrap();
        assert_eq!((all.len(), c), (2500, None));
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    }

    #[test]
    fn redis_reconnects_once_after_the_server_drops_the_connection() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let kv = RedisStore::open(server.url(0)).unwrap();
        kv.set("default", "k", b"v").unwrap();
        // Kill every other client: ours is now a dead connection.
        assert!(
            matches!(server.admin(&[b"CLIENT", b"KILL", b"TYPE", b"normal"]), Value::Int(n) if n >= 1)
        );
        assert_eq!(kv.get("default", "k").unwrap().as_deref(), Some(&b"v"[..]));
        // The server goes away for good: a typed error naming the address, no panic.
        let port = server.port;
        drop(server);
        let e = kv.get("default", "k").unwrap_err();
        assert!(
            matches!(e, RedisError::Connect { .. } | RedisError::Io { .. }),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[test]
    fn redis_password_and_database_come_from_the_url() {
        let Some(server) = RedisServer::start(&["--requirepass", "sesame"]) else {
            return;
        };
        let e = RedisStore::open(server.url(0)).err().unwrap();
        assert!(matches!(e, RedisError::NoAuth { .. }), "{e}");
        let wrong =
            RedisUrl::parse(&format!("redis://:nope-secret@127.0.0.1:{}", server.port)).unwrap();
        let e = RedisStore::open(wrong).err().unwrap();
        assert!(matches!(e, RedisError::Auth { .. }), "{e}");
        assert!(!e.to_string().contains("nope-secret"), "{e}");
        let right =
            RedisUrl::parse(&format!("redis://:sesame@127.0.0.1:{}/5", server.port)).unwrap();
        let kv = RedisStore::open(right.clone()).unwrap();
        kv.set("default", "k", b"v").unwrap();
        assert_eq!(kv.get("default", "k").unwrap().as_deref(), Some(&b"v"[..]));
        let no_db =
            RedisUrl::parse(&format!("redis://:sesame@127.0.0.1:{}/999", server.port)).unwrap();
        let e = RedisStore::open(no_db).err().unwrap();
        assert!(matches!(e, RedisError::Select { db: 999, .. }), "{e}");
    }

    /// `rediss://` against a TLS-only server whose certificate comes from a CA made here, with an
    /// ACL user: refused while the CA is not trusted (the error says how to trust it), works once
    /// `SSL_CERT_FILE` names the CA; a wrong password and a plaintext URL fail with their own
    /// messages, none with the password in it.
    #[test]
    fn redis_over_tls_with_an_acl_user() {
        let Some(server) = RedisServer::start_tls(&[
            "--user",
            "default",
            "off",
            "--user",
            "collector",
            "on",
            ">tls-s3cret-pw",
            "~slack-logs:*",
            "+@all",
        ]) else {
            return;
        };
        let ca = server.tls_dir.as_ref().unwrap().join("ca.crt");
        let url = |auth: &str, host: &str| {
            RedisUrl::parse(&format!("rediss://{auth}@{host}:{}/2", server.port)).unwrap()
        };
        // rustls-native-certs reads SSL_CERT_FILE on every connection; the variable is
        // process-wide, so this test sets it only around its own connections.
        let _env = EnvLock::set("SSL_CERT_FILE", Some(&ca));

        // Trusted CA, right credentials, by IP and by name (both in the certificate).
        for host in ["127.0.0.1", "localhost"] {
            let kv = RedisStore::open(url("collector:tls-s3cret-pw", host)).unwrap();
            kv.set("default", "k", b"over tls").unwrap();
            assert_eq!(
                kv.get("default", "k").unwrap().as_deref(),
                Some(&b"over tls"[..])
            );
            assert_eq!(
                kv.list_keys("default", None, 10).unwrap().0,
                vec!["k".to_string()]
            );
        }
        let e = RedisStore::open(url("collector:wrong-pw-xyz", "127.0.0.1"))
            .err()
            .unwrap();
        assert!(matches!(e, RedisError::Auth { .. }), "{e}");
        assert!(!e.to_string().contains("wrong-pw-xyz"), "{e}");
        let e = RedisStore::open(url("", "127.0.0.1")).err().unwrap();
        assert!(matches!(e, RedisError::NoAuth { .. }), "{e}");
        // Plain text to a TLS port: the server hangs up at the first command.
        let plain = RedisUrl::parse(&format!(
            "redis://collector:tls-s3cret-pw@127.0.0.1:{}",
            server.port
        ))
        .unwrap();
        let e = RedisStore::open(plain).err().unwrap();
        assert!(!e.to_string().contains("tls-s3cret-pw"), "{e}");
        drop(_env);

        // Without the CA the certificate is not trusted: a TLS error that names SSL_CERT_FILE.
        let other =
            std::env::temp_dir().join(format!("slack-logs-other-ca-{}", std::process::id()));
        make_certificates(&other);
        let _env = EnvLock::set("SSL_CERT_FILE", Some(&other.join("ca.crt")));
        let e = RedisStore::open(url("collector:tls-s3cret-pw", "127.0.0.1"))
            .err()
            .unwrap();
        assert!(matches!(e, RedisError::Tls { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("SSL_CERT_FILE") && text.contains("certificate"),
            "{text}"
        );
        assert!(!text.contains("tls-s3cret-pw"), "{text}");
        drop(_env);
        let _ = std::fs::remove_dir_all(other);
    }

    /// Sets an environment variable for the guard's life; one at a time across this crate's
    /// tests, which run in threads of one process.
    pub(crate) struct EnvLock {
        name: &'static str,
        old: Option<std::ffi::OsString>,
        _guard: std::sync::MutexGuard<'static, ()>,
    }

    static ENV: Mutex<()> = Mutex::new(());

    impl EnvLock {
        pub(crate) fn set(name: &'static str, value: Option<&Path>) -> EnvLock {
            let guard = ENV.lock().unwrap_or_else(|p| p.into_inner());
            let old = std::env::var_os(name);
            // SAFETY: every test that touches the environment holds ENV, and nothing else in
            // the test process reads these variables concurrently.
            unsafe {
                match value {
                    Some(v) => std::env::set_var(name, v),
                    None => std::env::remove_var(name),
                }
            }
            EnvLock {
                name,
                old,
                _guard: guard,
            }
        }
    }

    impl Drop for EnvLock {
        fn drop(&mut self) {
            // SAFETY: as in `set`.
            unsafe {
                match &self.old {
                    Some(v) => std::env::set_var(self.name, v),
                    None => std::env::remove_var(self.name),
                }
            }
        }
    }
}
