//! Profiles read from a live endpoint: `cargo rprof top http://host:6060/debug/pprof/heap`, as
//! `go tool pprof URL` reads them. A minimal HTTP/1.1 GET over [`TcpStream`] (http only), the
//! `seconds=N` query pprof adds, and a copy of every fetched profile saved under `$RPROF_DIR`
//! (else `./pprof/`) with the name `go tool pprof` gives it:
//! `pprof.<binary>.<sample types>.<NNN>.pb.gz`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rprof_core::{codec, Profile};

use crate::CliError;

/// The largest profile rprof reads from a server.
pub(crate) const MAX_BODY: usize = 256 << 20;
/// How much of an error response's body is read (only its first line is shown).
const MAX_ERROR_BODY: usize = 64 << 10;
/// The longest status or header line, and the most header lines, accepted.
const MAX_LINE: usize = 16 << 10;
const MAX_HEADERS: usize = 200;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past the requested profiling time the server may stay silent.
const READ_SLACK: Duration = Duration::from_secs(30);
/// What a Go server profiles the CPU for when the URL asks for no duration.
const SERVER_DEFAULT_CPU_SECONDS: u64 = 30;

/// The URL an input names (`http://...` or `https://...`, any case), or `None` for a file.
pub(crate) fn url_of(input: &Path) -> Option<&str> {
    input.to_str().filter(|s| {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    })
}

/// An `http://` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// The host as written (an IPv6 address keeps its brackets).
    host: String,
    port: u16,
    /// From the first `/`; `/` when the URL has no path.
    path: String,
    /// The query's `key=value` parts, in order, as written (without the `?`).
    query: Vec<String>,
}

impl Url {
    /// Parse an `http://host[:port][/path][?query][#fragment]` URL.
    pub(crate) fn parse(text: &str) -> Result<Url, String> {
        let scheme_end = text.find("://").map_or(0, |i| i + 3);
        let scheme = text[..scheme_end].to_ascii_lowercase();
        if scheme == "https://" {
            return Err(format!(
                "{text}: only http:// URLs can be fetched; fetch it with `curl -o profile.pb.gz '{text}'` and pass the file"
            ));
        }
        if scheme != "http://" {
            return Err(format!("{text}: not an http:// URL"));
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err(format!(
                "{text}: a URL cannot contain spaces, control characters or `\\`"
            ));
        }
        let rest = &text[scheme_end..];
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "{text}: user names and passwords in URLs are not supported"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{text}: unclosed `[` in the host"))?;
            match after {
                "" => (format!("[{addr}]"), None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (format!("[{addr}]"), Some(port)),
                    None => return Err(format!("{text}: bad host")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("{text}: no host"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{text}: bad port `{p}`"))?,
        };
        Ok(Url {
            host,
            port,
            path: if path.is_empty() { "/" } else { path }.to_owned(),
            query: query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Whether this is a CPU profile endpoint (`.../profile`), which profiles before answering.
    fn is_cpu(&self) -> bool {
        self.path.trim_end_matches('/').ends_with("/profile")
    }

    /// The value of the query's `seconds`, when it is a number.
    fn seconds(&self) -> Option<u64> {
        self.query
            .iter()
            .find_map(|kv| kv.strip_prefix("seconds="))
            .and_then(|v| v.parse().ok())
    }

    /// The URL asking for `seconds` of profiling: `seconds=N` replaces the query's own or is
    /// added after its other parameters, which stay as they are.
    fn with_seconds(&self, seconds: u64) -> Url {
        let is_seconds = |kv: &str| kv == "seconds" || kv.starts_with("seconds=");
        let value = format!("seconds={seconds}");
        let mut query = Vec::with_capacity(self.query.len() + 1);
        let mut placed = false;
        for kv in &self.query {
            if !is_seconds(kv) {
                query.push(kv.clone());
            } else if !placed {
                query.push(value.clone());
                placed = true;
            }
        }
        if !placed {
            query.push(value);
        }
        Url {
            query,
            ..self.clone()
        }
    }

    /// `host[:port]`, as the `Host` header and the URL carry it (no port when it is 80).
    fn authority(&self) -> String {
        match self.port {
            80 => self.host.clone(),
            port => format!("{}:{port}", self.host),
        }
    }

    /// The request line's target: path and query.
    fn target(&self) -> String {
        match self.query.is_empty() {
            true => self.path.clone(),
            false => format!("{}?{}", self.path, self.query.join("&")),
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target())
    }
}

/// Fetch the profile at `input` (an `http://` URL), asking for `seconds` of profiling when
/// given, save a copy (see the module docs) and return it decoded.
pub(crate) fn load_url(input: &str, seconds: Option<u64>) -> Result<Profile, CliError> {
    let url = Url::parse(input).map_err(CliError::Usage)?;
    let url = match seconds {
        Some(s) => url.with_seconds(s),
        None => url,
    };
    let requested = url
        .seconds()
        .or_else(|| url.is_cpu().then_some(SERVER_DEFAULT_CPU_SECONDS));
    crate::term::status("Fetching", format!("profile over HTTP from {url}"));
    if let Some(s) = requested {
        let whose = match url.seconds() {
            Some(_) => "",
            None => " (the server's default; --seconds N asks for another duration)",
        };
        crate::term::note(format!(
            "the server profiles for {s}s{whose} before it answers: please wait"
        ));
    }
    let read_timeout = Duration::from_secs(requested.unwrap_or(0)) + READ_SLACK;
    let fail = |reason: String| CliError::Fetch {
        url: url.to_string(),
        reason,
    };
    let body = get(&url, read_timeout).map_err(fail)?;
    let profile = codec::decode(&body).map_err(|source| CliError::Profile {
        path: PathBuf::from(url.to_string()),
        source,
    })?;
    let dir = copy_dir();
    match save_copy(&dir, &profile) {
        Ok(path) => crate::term::status("Saved", format!("profile in {}", path.display())),
        Err(e) => crate::term::warning(format!(
            "cannot save a copy of the profile in {}: {e}",
            dir.display()
        )),
    }
    Ok(profile)
}

/// Check an input that is a URL without fetching it, so a bad one fails before a slow fetch of
/// another input.
pub(crate) fn check_url(input: &str) -> Result<(), CliError> {
    Url::parse(input).map(drop).map_err(CliError::Usage)
}

/// Where copies of fetched profiles go: `$RPROF_DIR` when set and not empty, else `./pprof`.
fn copy_dir() -> PathBuf {
    match std::env::var_os("RPROF_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("pprof"),
    }
}

/// `pprof.<binary>.<type>.<type>...`, with a trailing dot: the name of a copy without its
/// counter, as `go tool pprof` builds it.
fn copy_prefix(profile: &Profile) -> String {
    let mut prefix = String::from("pprof.");
    let binary = profile
        .mapping
        .first()
        .map(|m| profile.str(m.filename))
        .and_then(|f| f.rsplit('/').next())
        .unwrap_or("");
    if !binary.is_empty() {
        prefix.push_str(binary);
        prefix.push('.');
    }
    for st in &profile.sample_type {
        prefix.push_str(profile.str(st.r#type));
        prefix.push('.');
    }
    prefix
}

/// Save `profile` in `dir` (created if missing) under its Go-style name with the first free
/// counter from 001; returns the path. The name is claimed with an exclusive create, so two
/// runs at once never write the same file.
fn save_copy(dir: &Path, profile: &Profile) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let prefix = copy_prefix(profile);
    for n in 1..10_000 {
        let path = dir.join(format!("{prefix}{n:03}.pb.gz"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => {
                return codec::write_file(&path, profile)
                    .map(|()| path.clone())
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&path);
                        io::Error::other(e.to_string())
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{prefix}001.pb.gz to {prefix}9999.pb.gz all exist"
    )))
}

/// Why reading a response failed.
#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    /// Not HTTP as expected.
    Bad(String),
    /// The body is longer than the cap.
    TooLarge(usize),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl ReadError {
    fn reason(self, read_timeout: Duration) -> String {
        match self {
            ReadError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                format!(
                    "timed out: the server sent nothing for {}s",
                    read_timeout.as_secs()
                )
            }
            ReadError::Io(e) => format!("reading the response failed: {e}"),
            ReadError::Bad(msg) => format!("bad HTTP response: {msg}"),
            ReadError::TooLarge(cap) => format!(
                "the response is larger than {} MiB, the most rprof reads",
                cap >> 20
            ),
        }
    }
}

/// GET `url`: the body of a 200 response, or why there is none (one line).
fn get(url: &Url, read_timeout: Duration) -> Result<Vec<u8>, String> {
    let stream = connect(url)?;
    stream
        .set_read_timeout(Some(read_timeout))
        .and_then(|()| stream.set_write_timeout(Some(CONNECT_TIMEOUT)))
        .map_err(|e| format!("cannot set up the connection: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cargo-rprof/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target(),
        url.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request failed: {e}"))?;
    let response = read_response(&mut BufReader::new(&stream), MAX_BODY)
        .map_err(|e| e.reason(read_timeout))?;
    match response.status {
        200 => Ok(response.body),
        status => Err(status_error(status, &response)),
    }
}

/// `server said 409 Conflict: <the body's first line>`, and where a redirect points.
fn status_error(status: u16, response: &Response) -> String {
    let mut text = format!("server said {status}");
    if !response.reason.is_empty() {
        text.push(' ');
        text.push_str(&response.reason);
    }
    let body = String::from_utf8_lossy(&response.body);
    if let Some(line) = body.lines().map(str::trim).find(|l| !l.is_empty()) {
        text.push_str(": ");
        text.extend(line.chars().take(300));
    }
    if let Some(to) = response.header("location") {
        text.push_str(&format!(" (redirected to {to}: fetch that URL)"));
    }
    text
}

/// A connected stream to `url`'s host: each of its addresses in turn, 10 s each.
fn connect(url: &Url) -> Result<TcpStream, String> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let addrs = (host, url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {}: {e}", url.host))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    let target = url.authority();
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => format!(
            "cannot connect to {target}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ),
        Some(e) => format!("cannot connect to {target}: {e}"),
        None => format!("cannot resolve host {}: no address", url.host),
    })
}

/// A response: status, reason phrase, headers (names in lower case) and body.
#[derive(Debug)]
struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read a response; a 200's body may have up to `cap` bytes, any other's first 64 KiB are
/// kept (for its message).
fn read_response<R: BufRead>(r: &mut R, cap: usize) -> Result<Response, ReadError> {
    let mut response = loop {
        let status_line = read_line(r)?.ok_or_else(|| {
            ReadError::Bad("the server closed the connection without answering".into())
        })?;
        let mut parts = status_line.splitn(3, ' ');
        let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let status = match (version.starts_with("HTTP/1."), code.parse::<u16>()) {
            (true, Ok(status)) if (100..=999).contains(&status) && code.len() == 3 => status,
            _ => {
                let shown: String = status_line.chars().take(80).collect();
                return Err(ReadError::Bad(format!(
                    "not an HTTP/1.x status line: {shown:?}"
                )));
            }
        };
        let reason = parts.next().unwrap_or("").trim().to_owned();
        let headers = read_headers(r)?;
        // 1xx are interim (100 Continue): the real answer follows.
        if status >= 200 {
            break Response {
                status,
                reason,
                headers,
                body: Vec::new(),
            };
        }
    };
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match response.header("content-length") {
        Some(v) if !chunked => Some(
            v.parse::<u64>()
                .map_err(|_| ReadError::Bad(format!("bad Content-Length {v:?}")))?,
        ),
        _ => None,
    };
    let mut body = Vec::new();
    match response.status {
        204 | 304 => {}
        200 => read_body(r, chunked, length, cap, &mut body)?,
        // An error's message: what fits in the small cap, however the body ends.
        _ => {
            let length = length.map(|n| n.min(MAX_ERROR_BODY as u64));
            drop(read_body(r, chunked, length, MAX_ERROR_BODY, &mut body));
        }
    }
    response.body = body;
    Ok(response)
}

/// Read a body framed as the headers say (chunked, a length, or up to the close) into `out`.
fn read_body<R: BufRead>(
    r: &mut R,
    chunked: bool,
    length: Option<u64>,
    cap: usize,
    out: &mut Vec<u8>,
) -> Result<(), ReadError> {
    if chunked {
        return read_chunked(r, cap, out);
    }
    match length {
        Some(n) => {
            let want = usize::try_from(n)
                .ok()
                .filter(|&n| n <= cap)
                .ok_or(ReadError::TooLarge(cap))?;
            r.take(n).read_to_end(out)?;
            if out.len() < want {
                return Err(ReadError::Bad(format!(
                    "the connection closed after {} of {want} bytes",
                    out.len()
                )));
            }
            Ok(())
        }
        None => {
            r.take(cap as u64 + 1).read_to_end(out)?;
            if out.len() > cap {
                out.truncate(cap);
                return Err(ReadError::TooLarge(cap));
            }
            Ok(())
        }
    }
}

/// Decode a `Transfer-Encoding: chunked` body into `out` (what was decoded stays there on an
/// error), trailers skipped.
fn read_chunked<R: BufRead>(r: &mut R, cap: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
    loop {
        let line = read_line(r)?
            .ok_or_else(|| ReadError::Bad("the connection closed inside a chunked body".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line (or the close).
            read_headers(r)?;
            return Ok(());
        }
        if size > cap - out.len() {
            let room = cap - out.len();
            r.take(room as u64).read_to_end(out)?;
            return Err(ReadError::TooLarge(cap));
        }
        let before = out.len();
        r.take(size as u64).read_to_end(out)?;
        if out.len() - before < size {
            return Err(ReadError::Bad(
                "the connection closed inside a chunk".into(),
            ));
        }
        match read_line(r)? {
            Some(empty) if empty.is_empty() => {}
            _ => return Err(ReadError::Bad("a chunk is not followed by CRLF".into())),
        }
    }
}

/// Header lines up to the empty line; names in lower case. The close ends them too.
fn read_headers<R: BufRead>(r: &mut R) -> Result<Vec<(String, String)>, ReadError> {
    let mut headers = Vec::new();
    while let Some(line) = read_line(r)? {
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ReadError::Bad(format!(
                "more than {MAX_HEADERS} header lines"
            )));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ReadError::Bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(headers)
}

/// One line without its CRLF (or LF); `None` at the end of the stream.
fn read_line<R: BufRead>(r: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(ReadError::Bad(if buf.len() > MAX_LINE {
            format!("a line longer than {MAX_LINE} bytes")
        } else {
            "the connection closed in the middle of a line".into()
        }));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn urls_are_taken_apart() {
        let u = url("http://localhost:6060/debug/pprof/heap");
        assert_eq!((u.host.as_str(), u.port), ("localhost", 6060));
        assert_eq!(
            (u.path.as_str(), u.target().as_str()),
            ("/debug/pprof/heap", "/debug/pprof/heap")
        );
        assert_eq!(u.authority(), "localhost:6060");

        let u = url("HTTP://example.com");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("example.com", 80, "/")
        );
        assert_eq!(u.authority(), "example.com");
        assert_eq!(u.to_string(), "http://example.com/");

        let u = url("http://example.com:/x?token=abc&debug=0#frag");
        assert_eq!(u.port, 80);
        assert_eq!(u.target(), "/x?token=abc&debug=0");

        let u = url("http://[::1]:8080/debug/pprof/profile?seconds=5");
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 8080));
        assert!(u.is_cpu());
        assert_eq!(u.seconds(), Some(5));
        assert_eq!(
            u.to_string(),
            "http://[::1]:8080/debug/pprof/profile?seconds=5"
        );

        let u = url("http://h?x=1");
        assert_eq!((u.path.as_str(), u.target().as_str()), ("/", "/?x=1"));
        assert!(!url("http://h/debug/pprof/heap").is_cpu());
        assert!(url("http://h/debug/pprof/profile/").is_cpu());
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let https = Url::parse("https://h/debug/pprof/heap").unwrap_err();
        assert!(
            https.contains("only http://") && https.contains("curl"),
            "{https}"
        );
        for (bad, why) in [
            ("http://", "no host"),
            ("http://:80/x", "no host"),
            ("http://h:99999/", "bad port"),
            ("http://h:0/", "bad port"),
            ("http://h:x/", "bad port"),
            ("http://u:p@h/", "passwords"),
            ("http://h/a b", "spaces"),
            ("http://[::1/", "unclosed"),
            ("ftp://h/", "not an http"),
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(url_of(Path::new("http://h/x")), Some("http://h/x"));
        assert_eq!(url_of(Path::new("HTTPS://h/x")), Some("HTTPS://h/x"));
        assert_eq!(url_of(Path::new("cpu.prof")), None);
        assert_eq!(url_of(Path::new("http")), None);
    }

    #[test]
    fn seconds_is_added_or_replaced_and_other_parameters_stay() {
        let u = url("http://h:1/debug/pprof/profile").with_seconds(5);
        assert_eq!(u.target(), "/debug/pprof/profile?seconds=5");
        let u = url("http://h/debug/pprof/heap?token=abc").with_seconds(5);
        assert_eq!(u.target(), "/debug/pprof/heap?token=abc&seconds=5");
        assert_eq!(u.seconds(), Some(5));
        let u = url("http://h/p?a=1&seconds=30&b=2&seconds=7").with_seconds(9);
        assert_eq!(u.target(), "/p?a=1&seconds=9&b=2");
        assert_eq!(url("http://h/p?seconds=x").seconds(), None);
    }

    fn response(raw: &[u8], cap: usize) -> Result<Response, ReadError> {
        read_response(&mut Cursor::new(raw.to_vec()), cap)
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let mut out = Vec::new();
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\nnext";
        read_chunked(&mut Cursor::new(&raw[..]), 100, &mut out).unwrap();
        assert_eq!(out, b"hello, world");

        let r = response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nA\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"0123456789!"[..]));

        let mut out = Vec::new();
        let e = read_chunked(
            &mut Cursor::new(&b"10\r\n0123456789abcdef\r\n0\r\n\r\n"[..]),
            8,
            &mut out,
        );
        assert!(matches!(e, Err(ReadError::TooLarge(8))), "{e:?}");
        for bad in [
            &b"zz\r\nab\r\n"[..],
            b"5\r\nab",
            b"2\r\nabXY0\r\n\r\n",
            b"2\r\nab\r\n",
        ] {
            let e = read_chunked(&mut Cursor::new(bad), 100, &mut Vec::new()).unwrap_err();
            assert!(matches!(e, ReadError::Bad(_)), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn bodies_by_length_or_to_the_close_and_capped() {
        let r = response(
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbodyEXTRA",
            100,
        )
        .unwrap();
        assert_eq!(r.body, b"body");
        let r = response(b"HTTP/1.0 200 OK\r\n\r\nall of it", 100).unwrap();
        assert_eq!(r.body, b"all of it");
        let r = response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nx",
            100,
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"x"[..]));
        assert!(matches!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", 100),
            Err(ReadError::TooLarge(100))
        ));
        assert!(matches!(
            response(b"HTTP/1.1 200 OK\r\n\r\n0123456789", 5),
            Err(ReadError::TooLarge(5))
        ));
        assert!(matches!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 100),
            Err(ReadError::Bad(_))
        ));
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(
                matches!(response(bad, 100), Err(ReadError::Bad(_))),
                "{bad:?}"
            );
        }
        let e = ReadError::TooLarge(MAX_BODY).reason(Duration::from_secs(1));
        assert!(e.contains("256 MiB"), "{e}");
    }

    #[test]
    fn an_error_status_shows_the_first_line_of_the_body() {
        let r = response(
            b"HTTP/1.1 409 Conflict\r\nContent-Length: 52\r\n\r\n\na CPU profile is already being collected\nmore\n",
            100,
        )
        .unwrap();
        assert_eq!(
            status_error(r.status, &r),
            "server said 409 Conflict: a CPU profile is already being collected"
        );
        // An error body over the small cap is cut, not an error.
        let mut raw = b"HTTP/1.1 500 Internal Server Error\r\n\r\nboom\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', MAX_ERROR_BODY * 2));
        let r = response(&raw, 10).unwrap();
        assert_eq!(r.body.len(), MAX_ERROR_BODY);
        assert_eq!(
            status_error(r.status, &r),
            "server said 500 Internal Server Error: boom"
        );
        let r = response(
            b"HTTP/1.1 302 Found\r\nLocation: /other\r\nContent-Length: 0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(
            status_error(r.status, &r),
            "server said 302 Found (redirected to /other: fetch that URL)"
        );
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = url(&format!("http://127.0.0.1:{port}/debug/pprof/heap"));
        let holder = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            drop(conn);
        });
        let e = get(&silent, Duration::from_millis(300)).unwrap_err();
        assert!(e.starts_with("timed out"), "{e}");
        holder.join().unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed = url(&format!("http://127.0.0.1:{port}/"));
        let e = get(&closed, Duration::from_secs(1)).unwrap_err();
        assert!(
            e.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{e}"
        );
        let e = get(&url("http://no-such-host.invalid/"), Duration::from_secs(1)).unwrap_err();
        assert!(
            e.starts_with("cannot resolve host no-such-host.invalid"),
            "{e}"
        );
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rprof-fetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn heap_profile(binary: Option<&str>) -> Profile {
        let mut b = rprof_core::ProfileBuilder::new(
            &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ],
            ("space", "bytes"),
            524288,
        );
        let mapping = match binary {
            Some(path) => b.mapping(&rprof_core::builder::MappingInfo {
                memory_start: 0x1000,
                memory_limit: 0x2000,
                file_offset: 0,
                filename: path.into(),
                build_id: String::new(),
                symbolized: true,
            }),
            None => 0,
        };
        let f = b.function("main", "main", "main.rs", 1);
        let l = b.location(mapping, 0x1010, &[(f, 3)]);
        b.add_sample(&[l], &[1, 64, 1, 64]);
        b.build()
    }

    #[test]
    fn copies_get_go_names_and_the_first_free_counter() {
        let dir = scratch_dir("names").join("created");
        let p = heap_profile(Some("/home/me/target/debug/server"));
        let name = |path: &Path| path.file_name().unwrap().to_string_lossy().into_owned();
        let first = save_copy(&dir, &p).unwrap();
        assert_eq!(
            name(&first),
            "pprof.server.alloc_objects.alloc_space.inuse_objects.inuse_space.001.pb.gz"
        );
        assert_eq!(codec::read_file(&first).unwrap(), p);
        let second = save_copy(&dir, &p).unwrap();
        assert!(name(&second).ends_with(".002.pb.gz"), "{}", name(&second));
        // A gap is filled first.
        std::fs::remove_file(&first).unwrap();
        assert_eq!(save_copy(&dir, &p).unwrap(), first);
        assert!(name(&save_copy(&dir, &p).unwrap()).ends_with(".003.pb.gz"));

        let unmapped = save_copy(&dir, &heap_profile(None)).unwrap();
        assert_eq!(
            name(&unmapped),
            "pprof.alloc_objects.alloc_space.inuse_objects.inuse_space.001.pb.gz"
        );
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
}
