//! Just enough HTTP/1.1 for a strict client (hyper): request parsing with
//! Content-Length or chunked bodies, keep-alive, and complete, well-formed responses.

use std::io::{self, BufRead, Read, Write};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;

pub(crate) struct Request {
    pub method: String,
    pub path: String,
    /// Raw query string (after `?`, not decoded).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub http10: bool,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection should stay open after the answer.
    pub(crate) fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(|v| v.to_ascii_lowercase());
        match conn.as_deref() {
            Some(v) if v.split(',').any(|t| t.trim() == "close") => false,
            Some(v) if v.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => !self.http10,
        }
    }
}

pub(crate) struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub(crate) const JSON: &str = "application/json; charset=utf-8";

impl Response {
    pub(crate) fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: JSON.to_string(),
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

pub(crate) enum ReadError {
    /// The peer closed the connection before a new request started.
    Closed,
    /// Unparseable or oversized request: answer 400 and close.
    Bad(&'static str),
    Io,
}

fn read_line(r: &mut impl BufRead, budget: &mut usize) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|_| ReadError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(ReadError::Bad("request head too large"));
    }
    *budget -= n;
    if buf.last() != Some(&b'\n') {
        return Err(ReadError::Bad("truncated line"));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Bad("non-UTF-8 request head"))
}

/// Reads the request line and headers (not the body).
pub(crate) fn read_head(r: &mut impl BufRead) -> Result<Request, ReadError> {
    let mut budget = MAX_HEAD;
    let mut line = String::new();
    // Tolerate stray empty lines between requests (RFC 9112 §2.2).
    while line.is_empty() {
        line = match read_line(r, &mut budget)? {
            Some(l) => l,
            None => return Err(ReadError::Closed),
        };
    }
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err(ReadError::Bad("bad request line")),
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad("unsupported HTTP version")),
    };
    // Absolute-form targets (proxies) carry scheme and authority: drop them.
    let target = match target.find("://") {
        Some(i) => target[i + 3..]
            .find('/')
            .map(|j| &target[i + 3 + j..])
            .unwrap_or("/"),
        None => target,
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let mut headers = Vec::new();
    loop {
        let line =
            read_line(r, &mut budget)?.ok_or(ReadError::Bad("connection closed in headers"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ReadError::Bad("bad header line"))?;
        if name.is_empty() || name.contains(' ') {
            return Err(ReadError::Bad("bad header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
        http10,
    })
}

/// Reads the body announced by the head (chunked or Content-Length).
pub(crate) fn read_body(r: &mut impl BufRead, req: &mut Request) -> Result<(), ReadError> {
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut budget = MAX_HEAD;
        loop {
            let line =
                read_line(r, &mut budget)?.ok_or(ReadError::Bad("closed in chunked body"))?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| ReadError::Bad("bad chunk size"))?;
            if size == 0 {
                // trailers, up to the empty line
                while !read_line(r, &mut budget)?
                    .ok_or(ReadError::Bad("closed in trailers"))?
                    .is_empty()
                {}
                return Ok(());
            }
            if req.body.len() + size > MAX_BODY {
                return Err(ReadError::Bad("body too large"));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..])
                .map_err(|_| ReadError::Io)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).map_err(|_| ReadError::Io)?;
            if &crlf != b"\r\n" {
                return Err(ReadError::Bad("bad chunk terminator"));
            }
        }
    }
    let len = match req.header("content-length") {
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ReadError::Bad("bad content-length"))?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(ReadError::Bad("body too large"));
    }
    req.body.resize(len, 0);
    r.read_exact(&mut req.body).map_err(|_| ReadError::Io)
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

pub(crate) fn write_response(
    w: &mut impl Write,
    resp: &Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in &resp.headers {
        // Header values come from tests; never let one break the framing.
        let clean: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{k}: {clean}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if !head_only {
        w.write_all(&resp.body)?;
    }
    w.flush()
}

/// Parses `a=1&b=2` pairs (query strings and form bodies) as a browser encodes them: `+` is a
/// space, a broken escape stays as written.
pub(crate) fn parse_pairs(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let p = parse_pairs("cursor=eyJh%3D%3D&x=a+b&flag&e=%zz&t=%41");
        assert_eq!(p[0], ("cursor".into(), "eyJh==".into()));
        assert_eq!(p[1], ("x".into(), "a b".into()));
        assert_eq!(p[2], ("flag".into(), "".into()));
        assert_eq!(p[3], ("e".into(), "%zz".into()));
        assert_eq!(p[4], ("t".into(), "A".into()));
        assert_eq!(parse_pairs("a=%4"), vec![("a".into(), "%4".into())]);
    }

    #[test]
    fn parses_chunked_request() {
        let raw = b"POST /api/x?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut r = io::BufReader::new(&raw[..]);
        let mut req = read_head(&mut r).ok().unwrap();
        read_body(&mut r, &mut req).ok().unwrap();
        assert_eq!(req.body, b"hello");
        assert_eq!(req.path, "/api/x");
        assert_eq!(req.query, "a=1");
        let next = read_head(&mut r).ok().unwrap();
        assert_eq!(next.method, "GET");
    }
}
