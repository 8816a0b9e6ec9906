//! The Redis backend of the key-value store (`--state redis://HOST:PORT[/DB]`), so that several
//! hosts can share one set of checkpoints, as Spin's runtime config allows.
//!
//! A small RESP2 client over `std::net::TcpStream` rather than the `redis` crate: the host needs
//! six commands (AUTH, SELECT, PING, GET, SET, DEL, EXISTS, SCAN), all blocking like the SQLite
//! backend, and the crate would add minutes of compile time on a small machine for none of its
//! pooling, async or cluster support.
//!
//! Keys are `slack-logs:<bucket>:<key>`, so a bucket's keys can be listed with one SCAN pattern
//! and other applications' keys in the same database are never touched. Values are bulk strings:
//! binary-safe. Durability is the Redis server's own (`appendonly yes` with
//! `appendfsync always` for checkpoints that survive a Redis crash).

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

/// Default Redis port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read or write may stall. Checkpoint values are small, so a healthy server
/// answers in milliseconds; this only bounds a hung server.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of every key the host writes.
const KEY_PREFIX: &str = "slack-logs:";
/// Keys asked for per SCAN round trip (a hint to the server).
const SCAN_COUNT: &str = "1000";

/// Limits on what a reply may claim, so a garbled or hostile stream cannot make the host
/// allocate without bound. Checkpoints are ≤ 400 KB; SCAN pages are ~1000 keys.
const MAX_BULK_LEN: usize = 64 * 1024 * 1024;
const MAX_ARRAY_LEN: usize = 1_000_000;
const MAX_LINE_LEN: usize = 64 * 1024;
const MAX_DEPTH: usize = 4;

// ---------------------------------------------------------------------------------------------
// URL

/// Where the Redis store is: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
///
/// `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    password: Option<String>,
}

impl RedisUrl {
    /// Parses a state URL. Errors describe what is wrong without repeating the text, which may
    /// hold a password.
    pub fn parse(text: &str) -> Result<RedisUrl, RedisError> {
        let bad = |m: &str| Err(RedisError::Url(m.to_owned()));
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad("expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]");
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redis" => {}
            "rediss" => {
                return bad(
                    "TLS (rediss://) is not supported by this host; reach Redis over a trusted \
                     network, or through a TLS tunnel (stunnel, spiped) on loopback with redis://",
                )
            }
            _ => return bad("the scheme must be redis://"),
        }
        if rest.contains(['?', '#']) {
            return bad("query parameters and fragments are not supported; use redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]");
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
                    (false, None) => {
                        return bad(
                            "a user name needs a password: redis://USER:PASSWORD@HOST[:PORT][/DB]",
                        )
                    }
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
            return bad("the host is missing: redis://HOST[:PORT][/DB]");
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
        f.write_str("redis://")?;
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

/// `%XX` escapes to bytes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// RESP2

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR …`: the server refused the command.
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: no value.
    Nil,
    /// `*2\r\n…`
    Array(Vec<Reply>),
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum RespError {
    /// The connection failed or closed (EOF) before a whole reply arrived.
    Io(io::Error),
    /// The bytes are not RESP2.
    Malformed(String),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Io(e) => write!(f, "{}", io_text(e)),
            RespError::Malformed(m) => write!(f, "not a RESP2 reply: {m}"),
        }
    }
}

impl From<io::Error> for RespError {
    fn from(e: io::Error) -> Self {
        RespError::Io(e)
    }
}

/// A command as RESP2 sends it: an array of bulk strings.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply.
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply, RespError> {
    read_reply_at(r, 0)
}

fn read_reply_at(r: &mut impl BufRead, depth: usize) -> Result<Reply, RespError> {
    let line = read_line(r)?;
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| RespError::Malformed("empty line".into()))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Integer(parse_int(rest)?)),
        b'$' => {
            let len = parse_int(rest)?;
            if len == -1 {
                return Ok(Reply::Nil);
            }
            let len = checked_len(len, MAX_BULK_LEN, "bulk string")?;
            // Read through `take` so a lying length cannot make us allocate it all up front.
            let mut data = Vec::new();
            r.by_ref().take(len as u64).read_to_end(&mut data)?;
            if data.len() < len {
                return Err(unexpected_eof());
            }
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(RespError::Malformed(
                    "a bulk string is not followed by CRLF".into(),
                ));
            }
            Ok(Reply::Bulk(data))
        }
        b'*' => {
            let len = parse_int(rest)?;
            if len == -1 {
                return Ok(Reply::Nil);
            }
            let len = checked_len(len, MAX_ARRAY_LEN, "array")?;
            if depth >= MAX_DEPTH {
                return Err(RespError::Malformed("arrays nested too deep".into()));
            }
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_reply_at(r, depth + 1)?);
            }
            Ok(Reply::Array(items))
        }
        other => Err(RespError::Malformed(format!(
            "unknown reply type byte 0x{other:02x}"
        ))),
    }
}

fn unexpected_eof() -> RespError {
    RespError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the connection closed in the middle of a reply",
    ))
}

fn checked_len(len: i64, max: usize, what: &str) -> Result<usize, RespError> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(RespError::Malformed(format!(
            "{what} length {len} is out of range"
        ))),
    }
}

fn parse_int(digits: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            RespError::Malformed(format!(
                "`{}` is not an integer",
                String::from_utf8_lossy(digits)
            ))
        })
}

/// One CRLF-terminated line, without the CRLF.
fn read_line(r: &mut impl BufRead) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LINE_LEN as u64 + 2)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(RespError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection was closed",
        )));
    }
    if !line.ends_with(b"\n") {
        return Err(if line.len() > MAX_LINE_LEN {
            RespError::Malformed("a reply line is too long".into())
        } else {
            unexpected_eof()
        });
    }
    if !line.ends_with(b"\r\n") {
        return Err(RespError::Malformed("a line ends in LF without CR".into()));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// What went wrong with the Redis store, worded for the operator. Never holds the password.
#[derive(Debug)]
pub enum RedisError {
    /// The `--state` URL is not usable.
    Url(String),
    /// The host name does not resolve.
    Resolve { addr: String, source: io::Error },
    /// No TCP connection.
    Connect { addr: String, source: io::Error },
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
        source: RespError,
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
                "cannot reach Redis at {addr}: the host name does not resolve ({}) (check --state)",
                io_text(source)
            ),
            RedisError::Connect { addr, source } => write!(
                f,
                "cannot reach Redis at {addr}: {} (check --state)",
                io_text(source)
            ),
            RedisError::Auth { addr, message } => write!(
                f,
                "Redis at {addr} refused the credentials: {message} (check the user name and \
                 password in --state)"
            ),
            RedisError::NoAuth { addr } => write!(
                f,
                "Redis at {addr} requires a password: put it in the state URL, \
                 redis://:PASSWORD@HOST:PORT, preferably through SLACK_LOGS_STATE so it stays \
                 off the command line"
            ),
            RedisError::Select { addr, db, message } => write!(
                f,
                "Redis at {addr} refused database {db}: {message} (check the /DB part of --state)"
            ),
            RedisError::Io {
                addr,
                command,
                source,
            } => write!(f, "lost the connection to Redis at {addr} during {command}: {source}"),
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

/// An I/O error in a few words, lower case, without the OS error number.
fn io_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by the server".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::BrokenPipe => "the connection was closed (broken pipe)".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::UnexpectedEof => e.to_string(),
        _ => e.to_string(),
    }
}

/// Whether a failed round trip means the connection itself broke (closed by the server or a
/// proxy while idle), so that one fresh connection may succeed. A timeout is not: the server is
/// there but slow, and retrying would double the wait.
fn is_broken_connection(e: &RespError) -> bool {
    matches!(e, RespError::Io(io) if matches!(
        io.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    ))
}

// ---------------------------------------------------------------------------------------------
// Store

struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    fn round_trip(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        self.stream.get_mut().write_all(&encode_command(args))?;
        read_reply(&mut self.stream)
    }
}

/// A Redis-backed key-value store. One connection, behind a mutex like the SQLite one: the host
/// issues one small command at a time.
pub struct RedisStore {
    url: RedisUrl,
    conn: Mutex<Option<Connection>>,
}

impl RedisStore {
    /// Connects, authenticates, selects the database and PINGs, so a wrong address or password
    /// stops the command at once rather than at the first checkpoint.
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
    fn command(&self, name: &'static str, args: &[&[u8]]) -> Result<Reply, RedisError> {
        // A panic while holding the lock leaves at worst a desynchronised connection; drop it.
        let mut guard = self.conn.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            *g = None;
            g
        });
        let mut full: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
        full.push(name.as_bytes());
        full.extend_from_slice(args);
        let mut reused = guard.is_some();
        loop {
            let conn = match &mut *guard {
                Some(c) => c,
                empty => empty.insert(connect(&self.url)?),
            };
            match conn.round_trip(&full) {
                Ok(Reply::Error(message)) => {
                    return Err(RedisError::Server {
                        addr: self.url.addr(),
                        command: name,
                        message,
                    })
                }
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    *guard = None;
                    if reused && is_broken_connection(&e) {
                        crate::log_debug!(
                            "the connection to Redis at {} broke during {name} ({e}); reconnecting once",
                            self.url.addr()
                        );
                        reused = false;
                        continue;
                    }
                    return Err(RedisError::Io {
                        addr: self.url.addr(),
                        command: name,
                        source: e,
                    });
                }
            }
        }
    }

    fn unexpected(&self, command: &'static str, reply: &Reply) -> RedisError {
        RedisError::Unexpected {
            addr: self.url.addr(),
            command,
            reply: describe_reply(reply),
        }
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.command("GET", &[&full_key(bucket, key)])? {
            Reply::Bulk(v) => Ok(Some(v)),
            Reply::Nil => Ok(None),
            other => Err(self.unexpected("GET", &other)),
        }
    }

    pub fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), RedisError> {
        match self.command("SET", &[&full_key(bucket, key), value])? {
            Reply::Simple(s) if s == "OK" => Ok(()),
            other => Err(self.unexpected("SET", &other)),
        }
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), RedisError> {
        match self.command("DEL", &[&full_key(bucket, key)])? {
            Reply::Integer(_) => Ok(()),
            other => Err(self.unexpected("DEL", &other)),
        }
    }

    pub fn exists(&self, bucket: &str, key: &str) -> Result<bool, RedisError> {
        match self.command("EXISTS", &[&full_key(bucket, key)])? {
            Reply::Integer(n) => Ok(n > 0),
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
            let Reply::Array(parts) = &reply else {
                return Err(self.unexpected("SCAN", &reply));
            };
            let [Reply::Bulk(next), Reply::Array(found)] = parts.as_slice() else {
                return Err(self.unexpected("SCAN", &reply));
            };
            for k in found {
                let Reply::Bulk(k) = k else {
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
            .take(limit + 1)
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
fn describe_reply(r: &Reply) -> String {
    match r {
        Reply::Simple(s) => format!("status `{}`", s.chars().take(40).collect::<String>()),
        Reply::Error(e) => format!("error `{}`", e.chars().take(80).collect::<String>()),
        Reply::Integer(n) => format!("integer {n}"),
        Reply::Bulk(b) => format!("a {}-byte string", b.len()),
        Reply::Nil => "nil".into(),
        Reply::Array(a) => format!("an array of {}", a.len()),
    }
}

/// A new connection: TCP with timeouts, AUTH and SELECT from the URL, then PING.
fn connect(url: &RedisUrl) -> Result<Connection, RedisError> {
    let addr = url.addr();
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| RedisError::Resolve {
            addr: addr.clone(),
            source,
        })?
        .collect();
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let Some(stream) = stream else {
        return Err(RedisError::Connect {
            addr,
            source: last_error,
        });
    };
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        // Commands are one small write each; Nagle would only add latency.
        s.set_nodelay(true)
    };
    setup(&stream).map_err(|source| RedisError::Connect {
        addr: addr.clone(),
        source,
    })?;
    let mut conn = Connection {
        stream: BufReader::new(stream),
    };
    let io_err = |command: &'static str| {
        let addr = addr.clone();
        move |source| RedisError::Io {
            addr,
            command,
            source,
        }
    };
    if let Some(password) = &url.password {
        let reply = match &url.username {
            Some(user) => conn.round_trip(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
            None => conn.round_trip(&[b"AUTH", password.as_bytes()]),
        }
        .map_err(io_err("AUTH"))?;
        match reply {
            Reply::Simple(_) => {}
            Reply::Error(message) => {
                return Err(RedisError::Auth {
                    addr: addr.clone(),
                    message,
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
    let is_noauth = |m: &str| m.starts_with("NOAUTH");
    if url.db != 0 {
        match conn
            .round_trip(&[b"SELECT", url.db.to_string().as_bytes()])
            .map_err(io_err("SELECT"))?
        {
            Reply::Simple(_) => {}
            Reply::Error(m) if is_noauth(&m) => return Err(RedisError::NoAuth { addr }),
            Reply::Error(message) => {
                return Err(RedisError::Select {
                    addr,
                    db: url.db,
                    message,
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
    match conn.round_trip(&[b"PING"]).map_err(io_err("PING"))? {
        Reply::Simple(s) if s == "PONG" => Ok(conn),
        Reply::Error(m) if is_noauth(&m) => Err(RedisError::NoAuth { addr }),
        Reply::Error(message) => Err(RedisError::Server {
            addr,
            command: "PING",
            message,
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
    use std::io::Cursor;
    use std::process::{Child, Command, Stdio};

    fn parse(bytes: &[u8]) -> Result<Reply, RespError> {
        read_reply(&mut Cursor::new(bytes.to_vec()))
    }

    #[test]
    fn resp_parses_every_reply_type() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR unknown command\r\n").unwrap(),
            Reply::Error("ERR unknown command".into())
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), Reply::Integer(-42));
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Reply::Bulk(vec![]));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*0\r\n").unwrap(), Reply::Array(vec![]));
        // Binary-safe: CR, LF and NUL inside a bulk string are data.
        assert_eq!(
            parse(b"$5\r\na\r\n\0b\r\n").unwrap(),
            Reply::Bulk(b"a\r\n\0b".to_vec())
        );
        // A SCAN reply: cursor and keys.
        assert_eq!(
            parse(b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n").unwrap(),
            Reply::Array(vec![
                Reply::Bulk(b"0".to_vec()),
                Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Bulk(b"b".to_vec())]),
            ])
        );
    }

    #[test]
    fn resp_reads_consecutive_replies_from_one_stream() {
        let mut r = Cursor::new(b"+PONG\r\n:1\r\n$2\r\nhi\r\n".to_vec());
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Simple("PONG".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Integer(1));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(b"hi".to_vec()));
        assert!(
            matches!(read_reply(&mut r), Err(RespError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
        );
    }

    #[test]
    fn resp_rejects_malformed_and_truncated_input() {
        for bad in [
            &b"!oops\r\n"[..],
            b":12x\r\n",
            b"$abc\r\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b"$3\r\nabcXY",
            b"+OK\n",
            b"\r\n",
            b"$99999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(RespError::Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
        for truncated in [&b""[..], b"+OK", b"$5\r\nab", b"$2\r\nab", b"*2\r\n:1\r\n"] {
            assert!(
                matches!(parse(truncated), Err(ref e) if is_broken_connection(e)),
                "{:?} -> {:?}",
                String::from_utf8_lossy(truncated),
                parse(truncated)
            );
        }
        // A line without end cannot grow without bound.
        let mut long = b"+".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN + 10));
        assert!(matches!(parse(&long), Err(RespError::Malformed(_))));
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        assert_eq!(
            encode_command(&[b"SET", b"k", b"a\r\nb"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n".to_vec()
        );
        assert_eq!(
            encode_command(&[b"GET", b""]),
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.username.as_deref()),
            ("127.0.0.1", 6380, 2, None)
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
        // An empty password is no password.
        assert_eq!(RedisUrl::parse("redis://:@h").unwrap().password, None);
        for bad in [
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:port",
            "redis://h/db",
            "redis://h?timeout=1",
            "rediss://h",
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
        let e = RedisUrl::parse("rediss://:topsecret@h").unwrap_err();
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = RedisUrl::parse(&format!("redis://:hunter2@127.0.0.1:{port}")).unwrap();
        let e = RedisStore::open(url).err().unwrap();
        let text = e.to_string();
        assert_eq!(
            text,
            format!("cannot reach Redis at 127.0.0.1:{port}: connection refused (check --state)")
        );
        assert!(!text.contains("hunter2"));
    }

    /// A `redis-server` child on a free loopback port, killed when dropped.
    pub(crate) struct RedisServer {
        child: Child,
        pub port: u16,
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl RedisServer {
        /// Starts `redis-server` with the given extra arguments. `None` (with a notice) when it is
        /// not installed, unless `CI` is set: CI must run these tests, so there it panics.
        pub(crate) fn start(extra: &[&str]) -> Option<RedisServer> {
            let installed = Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !installed {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server is not installed, and CI is set: install it (apt-get install redis-server)"
                );
                eprintln!("NOTICE: redis-server is not installed; skipping this Redis test");
                return None;
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let server = RedisServer { child, port };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(server)
        }

        pub(crate) fn url(&self, db: u32) -> RedisUrl {
            RedisUrl::parse(&format!("redis://127.0.0.1:{}/{db}", self.port)).unwrap()
        }

        /// A raw command on a fresh connection of its own (e.g. to kill our clients).
        fn admin(&self, args: &[&[u8]]) -> Reply {
            let mut conn = connect(&self.url(0)).unwrap();
            conn.round_trip(args).unwrap()
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
            Reply::Integer(0),
            "db 0 is untouched"
        );
        let mut conn = connect(&server.url(1)).unwrap();
        assert_eq!(
            conn.round_trip(&[b"EXISTS", b"slack-logs:default:empty"])
                .unwrap(),
            Reply::Integer(1)
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
            matches!(server.admin(&[b"CLIENT", b"KILL", b"TYPE", b"normal"]), Reply::Integer(n) if n >= 1)
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
}
