//! HTTP/1.1 as the endpoints need it: one bounded request per connection, one response, close.
//!
//! Every read is bounded (head [`MAX_HEAD`], body [`MAX_BODY`]) and timed out by the socket's
//! read timeout, so a slow or hostile client costs one worker a bounded time and memory.

use std::io::{Read, Write};

/// The most bytes of request line and headers read.
pub const MAX_HEAD: usize = 16 << 10;
/// The most bytes of request body read (the `symbol` endpoint's addresses).
pub const MAX_BODY: usize = 64 << 10;

/// A parsed request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The raw query string (after `?`), as sent.
    pub raw_query: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 with `body` of `content_type`.
    pub fn ok(content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// An error `status` with a one-line plain-text reason.
    pub fn error(status: u16, reason: impl Into<String>) -> Self {
        let mut body = reason.into().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body,
        }
    }
}

/// Why a request could not be read: the status to answer with and a one-line reason, or
/// nothing to answer (the client closed or timed out before sending a request).
#[derive(Debug)]
pub enum ReadError {
    /// Answer with this status and reason.
    Bad(u16, String),
    /// Close without answering.
    Gone,
}

/// Read one request from `stream`.
pub fn read_request(stream: &mut impl Read) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n").filter(|&end| end <= MAX_HEAD) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(431, "request head too large".into()));
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Gone),
            Ok(0) => return Err(ReadError::Bad(400, "request ended inside its head".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if buf.is_empty()
                    || matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
            {
                return Err(ReadError::Gone)
            }
            Err(_) => return Err(ReadError::Bad(408, "request timed out".into())),
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Bad(400, "request head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed request line".into()));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(505, "only HTTP/1.x is served".into()));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Bad(400, "malformed method".into()));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    if !raw_path.starts_with('/') {
        return Err(ReadError::Bad(
            400,
            "the request target must be a path".into(),
        ));
    }
    let path = percent_decode(raw_path).ok_or_else(|| bad_encoding("path"))?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((
            percent_decode(k).ok_or_else(|| bad_encoding("query"))?,
            percent_decode(v).ok_or_else(|| bad_encoding("query"))?,
        ));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header line".into()));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        path,
        raw_query: raw_query.to_owned(),
        query,
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(
            411,
            "chunked request bodies are not accepted; send Content-Length".into(),
        ));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Bad(400, "malformed Content-Length".into()))?,
    };
    if length > MAX_BODY {
        return Err(ReadError::Bad(
            413,
            format!("request body over {MAX_BODY} bytes"),
        ));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(ReadError::Bad(
                    400,
                    "request body shorter than its length".into(),
                ))
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(ReadError::Bad(408, "request timed out".into())),
        }
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

fn bad_encoding(what: &str) -> ReadError {
    ReadError::Bad(400, format!("malformed percent-encoding in the {what}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decode `%XX` escapes and `+` (as a space, in queries and paths alike, as Go's form values
/// do); `None` when an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The reason phrase of `status`.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Write `response` and close the exchange (`Connection: close`).
pub fn write_response(stream: &mut impl Write, response: &Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Request, ReadError> {
        read_request(&mut raw.as_bytes())
    }

    #[test]
    fn a_get_with_a_query_is_parsed() {
        let r =
            parse("GET /debug/pprof/heap?debug=1&seconds=5&x=a%20b HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/debug/pprof/heap");
        assert_eq!(r.param("debug"), Some("1"));
        assert_eq!(r.param("seconds"), Some("5"));
        assert_eq!(r.param("x"), Some("a b"));
        assert_eq!(r.header("host"), Some("h"));
    }

    #[test]
    fn a_post_body_is_read_to_its_length() {
        let r = parse("POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 5\r\n\r\n0x10+extra")
            .unwrap();
        assert_eq!(r.body, b"0x10+");
    }

    #[test]
    fn malformed_requests_get_their_status() {
        let status = |raw: &str| match parse(raw) {
            Err(ReadError::Bad(s, _)) => s,
            other => panic!("{:?}: {other:?}", &raw[..raw.len().min(60)]),
        };
        assert_eq!(status("GARBAGE\r\n\r\n"), 400);
        assert_eq!(status("GET /x HTTP/2\r\n\r\n"), 505);
        assert_eq!(status("GET x HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /x%zz HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET /x HTTP/1.1\r\nno colon\r\n\r\n"), 400);
        assert_eq!(
            status("POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            413
        );
        assert_eq!(
            status("GET /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"),
            400
        );
        assert_eq!(status("GET /x HTTP/1.1\r\nHost: a"), 400);
        let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD + 10));
        assert_eq!(status(&huge), 431);
        assert!(matches!(parse(""), Err(ReadError::Gone)));
    }

    #[test]
    fn responses_carry_length_and_close() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::error(409, "busy")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 409 Conflict\r\n"), "{text}");
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nbusy\n"), "{text}");
    }
}
