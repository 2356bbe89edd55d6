//! `cargo rprof web FILE...`: a local browser UI over the report engine.
//!
//! The server is a thin renderer, as the design says: it loads the profiles once, and every
//! JSON request runs the same rprof-core reports the CLI prints (same filters, same numbers),
//! with the options taken from the query string under the CLI's names (`sample_index`,
//! `granularity`, `unit`, `focus`, `ignore`, `hide`, `show`, `show_from`, `prune_from`,
//! `tagfocus`, `tagignore`). The inputs (several files merged, a `--base` or `--diff_base`) are
//! fixed on the command line.
//! The page (HTML, CSS and two hand-written JS modules in `assets/`) is embedded in the binary
//! and keeps its state in the URL's fragment, so a link can be shared and a reload keeps the
//! view.
//!
//! It binds loopback by default, refuses another address unless `--http-allow-remote` is
//! given, checks the `Host` header of every request against the bound loopback address (so a
//! web page elsewhere cannot reach it by DNS rebinding), and serves nothing but the given
//! profiles: there are no file paths in any request.
//!
//! Endpoints (all `GET`):
//! - `/`, `/app.js`, `/flame.js`, `/style.css`: the page;
//! - `/api/meta`: input files, base, sample types, the default one, the starting options;
//! - `/api/top`: `top`'s table (header lines, rows trimmed and sorted as `top` prints them);
//! - `/api/flame`: the flame graph tree; with `f=NAME`, the callers tree of that node; with
//!   `zoom=["a","b"]`, only the frames on that path and the subtree below it, in finer detail;
//! - `/api/peek?f=REGEX`: `peek`'s callers and callees of the matching nodes;
//! - `/api/source?f=REGEX`: `list`'s listings of the matching functions, line by line.

mod json;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use rprof_core::report::list::{RustSrc, SourceSearch};
use rprof_core::report::{self, Granularity, ReportOptions};
use rprof_core::Profile;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::cli::WebArgs;
use crate::CliError;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const FLAME_JS: &str = include_str!("assets/flame.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// A frame narrower than this share of the root is not sent to the browser (its value stays
/// in its parent): 1/20000 is under a tenth of a pixel on a wide screen, so still under a pixel
/// when zoomed in tenfold. Keeps a profile of millions of frames a few megabytes of JSON.
const FLAME_MIN_FRACTION: f64 = 1.0 / 20_000.0;

/// What the server shows: the loaded profile and how it was given.
pub struct Shown {
    /// The input profile: the files merged, the base combined.
    pub profile: Profile,
    /// The input files, as given on the command line.
    pub files: Vec<PathBuf>,
    /// The base profile and its flag (`base` or `diff_base`), if one was given.
    pub base: Option<(PathBuf, &'static str)>,
    /// The options of the command line: the page starts with them.
    pub start: ReportOptions,
    /// Where the source view reads sources (`--source-path`, `--trim-path`, rust-src).
    pub sources: SourceSearch,
}

/// `cargo rprof web`: load, bind, print the URL, open a browser when there is a display, serve
/// until interrupted.
pub fn web(a: &WebArgs) -> Result<(), CliError> {
    let addr = bind_address(&a.http, a.http_allow_remote)?;
    let shown = load(a)?;
    // The starting options must work: the same check as the first page load would make.
    report::top_table(&shown.profile, &shown.start).map_err(|e| match e {
        rprof_core::Error::NoMatch(m) | rprof_core::Error::Filter(m) => CliError::Usage(m),
        e => CliError::Usage(e.to_string()),
    })?;
    let server = Server::http(addr)
        .map_err(|e| CliError::Usage(format!("cannot listen on http://{addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| CliError::Usage("the server has no IP address".into()))?;
    let url = format!("http://{bound}/{}", initial_fragment(&shown.start));
    crate::term::status("Serving", format!("{url} (Ctrl-C to stop)"));
    if !a.no_browser && has_display() {
        open_browser(&url);
    }
    let host_check = (!a.http_allow_remote).then_some(bound);
    for request in server.incoming_requests() {
        let response = answer(&shown, &request, host_check);
        // A client that went away is no reason to stop serving.
        let _ = request.respond(response);
    }
    Ok(())
}

/// The address to bind: `--http` parsed, loopback unless remote access was asked for.
fn bind_address(http: &str, allow_remote: bool) -> Result<SocketAddr, CliError> {
    let addr: SocketAddr = match http.parse() {
        Ok(a) => a,
        // `localhost:8080` and `:8080` as pprof's -http takes them.
        Err(_) => match http.rsplit_once(':') {
            Some(("" | "localhost", port)) => {
                format!("127.0.0.1:{port}").parse().map_err(|_| {
                    CliError::Usage(format!(
                        "--http {http}: not an address (e.g. 127.0.0.1:8080)"
                    ))
                })?
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "--http {http}: not an address (e.g. 127.0.0.1:8080)"
                )))
            }
        },
    };
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(CliError::Usage(format!(
            "--http {http} is not a loopback address: anyone who can reach it would see the profile; add --http-allow-remote to serve it anyway"
        )));
    }
    Ok(addr)
}

fn load(a: &WebArgs) -> Result<Shown, CliError> {
    let r = &a.report;
    let profile = crate::analyze::load_report_input(r)?;
    let base = match (&r.base, &r.diff_base) {
        (Some(b), _) => Some((b.clone(), "base")),
        (None, Some(b)) => Some((b.clone(), "diff_base")),
        (None, None) => None,
    };
    Ok(Shown {
        profile,
        files: r.files.clone(),
        base,
        start: crate::analyze::options(r),
        sources: SourceSearch::new(
            a.sources.source_path.clone(),
            a.sources.trim_path.clone(),
            RustSrc::Toolchain,
        ),
    })
}

/// The page's starting state in the URL fragment: the command line's options.
fn initial_fragment(start: &ReportOptions) -> String {
    let mut parts: Vec<String> = option_pairs(start)
        .into_iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(&v)))
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    parts.sort();
    format!("#{}", parts.join("&"))
}

/// The options that differ from the defaults, under their query names.
fn option_pairs(o: &ReportOptions) -> Vec<(&'static str, String)> {
    let f = &o.filters;
    let mut pairs: Vec<(&'static str, String)> = [
        ("sample_index", &o.sample_index),
        ("unit", &o.unit),
        ("focus", &f.focus),
        ("ignore", &f.ignore),
        ("hide", &f.hide),
        ("show", &f.show),
        ("show_from", &f.show_from),
        ("prune_from", &f.prune_from),
        ("tagfocus", &f.tagfocus),
        ("tagignore", &f.tagignore),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v.clone()?)))
    .collect();
    if o.granularity != Granularity::default() {
        pairs.push(("granularity", o.granularity.name().to_owned()));
    }
    pairs
}

/// Whether a browser could show a window here.
fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

fn open_browser(url: &str) {
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = opened {
        crate::term::warning(format!("cannot start xdg-open ({e}): open {url} yourself"));
    }
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn reply(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    let header =
        Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()).expect("a valid header");
    let no_cache =
        Header::from_bytes(&b"Cache-Control"[..], &b"no-store"[..]).expect("a valid header");
    Response::from_data(body.into())
        .with_status_code(status)
        .with_header(header)
        .with_header(no_cache)
}

/// A 4xx answer: one line saying what is wrong.
fn bad(status: u16, message: impl std::fmt::Display) -> Reply {
    reply(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

fn answer(shown: &Shown, request: &Request, host_check: Option<SocketAddr>) -> Reply {
    if let Some(bound) = host_check {
        let host = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Host"))
            .map(|h| h.value.as_str());
        if !host.is_some_and(|h| host_is_loopback(h, bound)) {
            return bad(
                403,
                "forbidden: this server answers only requests for a loopback host",
            );
        }
    }
    if *request.method() != Method::Get {
        return bad(
            405,
            format!("method {} not allowed: only GET", request.method()),
        );
    }
    let (path, query) = match request.url().split_once('?') {
        Some((p, q)) => (p, q),
        None => (request.url(), ""),
    };
    match path {
        "/" | "/index.html" => reply(200, "text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => reply(200, "text/javascript; charset=utf-8", APP_JS),
        "/flame.js" => reply(200, "text/javascript; charset=utf-8", FLAME_JS),
        "/style.css" => reply(200, "text/css; charset=utf-8", STYLE_CSS),
        "/favicon.ico" => reply(204, "image/x-icon", Vec::new()),
        p if p.starts_with("/api/") => match api(shown, &p[5..], query) {
            Ok(body) => reply(200, "application/json", body),
            Err(ApiError(status, message)) => bad(status, message),
        },
        _ => bad(404, format!("not found: {path}")),
    }
}

/// Whether a `Host` header names the loopback address the server is bound to.
fn host_is_loopback(host: &str, bound: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || n.starts_with('[') => (n, p),
        _ => return false,
    };
    if port.parse() != Ok(bound.port()) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An API failure: HTTP status and one line.
#[derive(Debug)]
struct ApiError(u16, String);

impl From<rprof_core::Error> for ApiError {
    fn from(e: rprof_core::Error) -> Self {
        ApiError(400, e.to_string())
    }
}

/// The query parameters an API call takes, parsed.
struct Query {
    opts: ReportOptions,
    /// `f`: a function name (callers) or regular expression (source, peek).
    function: Option<String>,
    /// `zoom`: the flame graph's zoomed frame, as a JSON array of names from the root.
    zoom: Vec<String>,
}

/// The options of the CLI, under the same names (and `f`, the function or regex of a view,
/// `zoom`, the flame graph's zoomed frame).
const OPTION_NAMES: &[&str] = &[
    "sample_index",
    "granularity",
    "unit",
    "focus",
    "ignore",
    "hide",
    "show",
    "show_from",
    "prune_from",
    "tagfocus",
    "tagignore",
    "f",
    "zoom",
];

fn parse_query(query: &str) -> Result<Query, ApiError> {
    let mut opts = ReportOptions::default();
    let mut function = None;
    let mut zoom = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        let v = (!v.is_empty()).then_some(v);
        let f = &mut opts.filters;
        match k.as_str() {
            "sample_index" => opts.sample_index = v,
            "unit" => opts.unit = v,
            "granularity" => {
                opts.granularity = match v {
                    None => Granularity::default(),
                    Some(name) => Granularity::from_name(&name).ok_or_else(|| {
                        ApiError(
                            400,
                            format!(
                                "unknown granularity {name:?} (functions, filefunctions, files, lines, addresses)"
                            ),
                        )
                    })?,
                }
            }
            "focus" => f.focus = v,
            "ignore" => f.ignore = v,
            "hide" => f.hide = v,
            "show" => f.show = v,
            "show_from" => f.show_from = v,
            "prune_from" => f.prune_from = v,
            "tagfocus" => f.tagfocus = v,
            "tagignore" => f.tagignore = v,
            "f" => function = v,
            "zoom" => {
                zoom = match v {
                    None => Vec::new(),
                    Some(path) => serde_json::from_str(&path).map_err(|_| {
                        ApiError(400, format!("zoom={path:?} is not a JSON array of names"))
                    })?,
                }
            }
            other => {
                return Err(ApiError(
                    400,
                    format!(
                        "unknown parameter {other:?} (known: {})",
                        OPTION_NAMES.join(", ")
                    ),
                ))
            }
        }
    }
    opts.filters.check()?;
    Ok(Query {
        opts,
        function,
        zoom,
    })
}

fn api(shown: &Shown, endpoint: &str, query: &str) -> Result<String, ApiError> {
    let q = parse_query(query)?;
    let p = &shown.profile;
    match endpoint {
        "meta" => Ok(json::meta(shown, &option_pairs(&shown.start))),
        "top" => Ok(json::top(&report::top_table(p, &q.opts)?)),
        "flame" => {
            let index = sample_index(p, &q.opts)?;
            let scope = report::flame::FlameScope {
                zoom: &q.zoom,
                min_fraction: FLAME_MIN_FRACTION,
            };
            let tree = report::flame::flame_scoped(p, &q.opts, q.function.as_deref(), &scope)?;
            Ok(json::flame(p, index, &tree))
        }
        "peek" => {
            let Some(re) = &q.function else {
                return Err(ApiError(400, "peek needs f=REGEX".into()));
            };
            Ok(json::peek(&report::tree_report(p, &q.opts, Some(re))?))
        }
        "source" => {
            let Some(re) = &q.function else {
                return Err(ApiError(400, "source needs f=REGEX".into()));
            };
            let index = sample_index(p, &q.opts)?;
            let listings = report::list::listings(p, &q.opts, re, &shown.sources)?;
            Ok(json::source(p, index, &listings))
        }
        _ => Err(ApiError(404, format!("no such API: /api/{endpoint}"))),
    }
}

/// The sample type index the options select.
fn sample_index(p: &Profile, opts: &ReportOptions) -> Result<usize, ApiError> {
    Ok(match &opts.sample_index {
        Some(name) => p.sample_index(name)?,
        None => p.default_sample_index(),
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; the result must
/// be UTF-8.
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError(400, format!("bad %-escape in {s:?}")))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError(400, format!("{s:?} is not UTF-8")))
}

/// Percent-encode everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_by_default_and_remote_only_when_asked() {
        assert_eq!(
            bind_address("127.0.0.1:0", false).unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            bind_address("localhost:8080", false).unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(bind_address("[::1]:0", false).is_ok());
        let e = bind_address("0.0.0.0:8080", false).unwrap_err().to_string();
        assert!(e.contains("--http-allow-remote"), "{e}");
        assert!(bind_address("0.0.0.0:8080", true).is_ok());
        assert!(bind_address("nonsense", false).is_err());
    }

    #[test]
    fn host_header_must_name_the_bound_loopback() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(host_is_loopback("127.0.0.1:4000", bound));
        assert!(host_is_loopback("localhost:4000", bound));
        assert!(host_is_loopback("[::1]:4000", bound));
        assert!(!host_is_loopback("evil.example:4000", bound));
        assert!(!host_is_loopback("127.0.0.1:4001", bound));
        assert!(!host_is_loopback("127.0.0.1", bound));
    }

    #[test]
    fn query_takes_the_cli_names_and_rejects_others() {
        let q = parse_query("focus=a%7Cb&hide=std%3A%3A&sample_index=cpu&f=x+y").unwrap();
        assert_eq!(q.opts.filters.focus.as_deref(), Some("a|b"));
        assert_eq!(q.opts.filters.hide.as_deref(), Some("std::"));
        assert_eq!(q.opts.sample_index.as_deref(), Some("cpu"));
        assert_eq!(q.function.as_deref(), Some("x y"));
        let ApiError(status, msg) = parse_query("fokus=a").err().unwrap();
        assert_eq!(status, 400);
        assert!(msg.starts_with("unknown parameter \"fokus\""), "{msg}");
        let ApiError(_, msg) = parse_query("granularity=bytes").err().unwrap();
        assert!(msg.starts_with("unknown granularity \"bytes\""), "{msg}");
        let q = parse_query("granularity=lines&prune_from=x").unwrap();
        assert_eq!(q.opts.granularity, Granularity::Lines);
        assert_eq!(q.opts.filters.prune_from.as_deref(), Some("x"));
        let ApiError(_, msg) = parse_query("focus=(").err().unwrap();
        assert_eq!(msg, r#"bad --focus regular expression "(": unclosed group"#);
        assert!(parse_query("focus=%zz").is_err());
        let q = parse_query("zoom=%5B%22a%22%2C%22b%22%5D").unwrap();
        assert_eq!(q.zoom, ["a", "b"]);
        assert!(parse_query("zoom=a").is_err());
        assert_eq!(percent_encode("a|b c"), "a%7Cb%20c");
    }
}
