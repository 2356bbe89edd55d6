//! The endpoints of Go's net/http/pprof, with its paths and query parameters, answering from
//! this process's profilers with symbolized profiles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rprof_core::{codec, edit, Profile};

use super::text;
use super::wire::{Request, Response};
use crate::pprof::{self, ProfileError};
use crate::{maps, raw, thread_stacks, threads};

/// What the endpoints share: limits and the one-CPU-profile-at-a-time flag.
pub(crate) struct Endpoints {
    /// The largest `seconds` accepted.
    pub max_seconds: u64,
    /// The CPU sampling rate of `profile` requests, in Hz.
    pub cpu_hz: u32,
    /// The token requests must carry, if any (kept in the index page's links).
    pub token: Option<String>,
    cpu_busy: AtomicBool,
}

/// `profile`'s `seconds` when none is given (Go's default).
const DEFAULT_CPU_SECONDS: u64 = 30;

const PROFILES: &[(&str, &str)] = &[
    ("allocs", "A sampling of all past memory allocations (default sample type alloc_space)."),
    ("block", "Stack traces that led to blocking on synchronization primitives."),
    ("cmdline", "The command line of this program, arguments separated by NUL bytes."),
    ("goroutine", "The same as threads, under the name Go's tools and profile scrapers (Pyroscope, Parca) ask for."),
    ("heap", "A sampling of the memory allocations of live objects (default sample type inuse_space)."),
    ("mutex", "Stack traces of holders of contended locks."),
    ("profile", "CPU profile. Its length is given by the seconds parameter (default 30)."),
    ("symbol", "Function names of program counters: POST or GET addresses joined by '+'."),
    ("threadcreate", "Stack traces that led to the creation of new threads."),
    ("threads", "The current stack of every thread (Go's goroutine profile); debug=2 lists each thread by name."),
];

impl Endpoints {
    pub(crate) fn new(max_seconds: u64, cpu_hz: u32, token: Option<String>) -> Self {
        Endpoints {
            max_seconds,
            cpu_hz,
            token,
            cpu_busy: AtomicBool::new(false),
        }
    }

    /// Answer `req`.
    pub(crate) fn handle(&self, req: &Request) -> Response {
        let Some(name) = req
            .path
            .strip_prefix("/debug/pprof")
            .map(|p| p.trim_start_matches('/'))
        else {
            return Response::error(
                404,
                format!(
                    "no such path {}: profiles are under /debug/pprof/",
                    req.path
                ),
            );
        };
        let method_ok = match name {
            "symbol" => req.method == "GET" || req.method == "POST",
            _ => req.method == "GET",
        };
        if !method_ok {
            return Response::error(405, format!("method {} is not allowed here", req.method));
        }
        match self.route(name, req) {
            Ok(r) | Err(r) => r,
        }
    }

    fn route(&self, name: &str, req: &Request) -> Result<Response, Response> {
        let debug = match req.param("debug") {
            None | Some("") => 0,
            Some(v) => v.parse::<u32>().map_err(|_| {
                Response::error(400, format!("bad debug value {v:?}: use 0, 1 or 2"))
            })?,
        };
        let seconds = match req.param("seconds") {
            None | Some("") => None,
            Some(v) => {
                let s = v.parse::<u64>().map_err(|_| {
                    Response::error(400, format!("bad seconds value {v:?}: use a whole number"))
                })?;
                if s == 0 || s > self.max_seconds {
                    return Err(Response::error(
                        400,
                        format!("seconds must be between 1 and {}", self.max_seconds),
                    ));
                }
                Some(s)
            }
        };
        match name {
            "" => Ok(self.index()),
            "cmdline" => Ok(cmdline()),
            "symbol" => Ok(symbol(req)),
            "profile" => self.cpu(seconds.unwrap_or(DEFAULT_CPU_SECONDS.min(self.max_seconds))),
            "heap" | "allocs" | "block" | "mutex" => {
                let fetch = || fetch(name);
                let profile = match seconds {
                    Some(_) if debug > 0 => {
                        return Err(Response::error(
                            400,
                            "seconds and debug cannot be used together",
                        ))
                    }
                    Some(s) => delta(fetch, s)?,
                    None => fetch()?,
                };
                Ok(match (name, debug) {
                    (_, 0) => pprof_response(name, &profile),
                    ("heap" | "allocs", _) => plain(text::heap(&profile)),
                    _ => plain(text::contention(&profile)),
                })
            }
            "threadcreate" | "threads" | "goroutine" => {
                if seconds.is_some() {
                    return Err(Response::error(
                        400,
                        format!("seconds is not supported for the {name} profile"),
                    ));
                }
                if name == "threadcreate" {
                    let profile = threadcreate()?;
                    Ok(match debug {
                        0 => pprof_response(name, &profile),
                        _ => plain(text::counts(&profile, "threadcreate", None)),
                    })
                } else {
                    threads(name, debug)
                }
            }
            other => Err(Response::error(
                404,
                format!("unknown profile {other:?}: see /debug/pprof/ for the list"),
            )),
        }
    }

    fn index(&self) -> Response {
        let query = self
            .token
            .as_ref()
            .map(|t| format!("?token={t}"))
            .unwrap_or_default();
        let mut html = String::from(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>/debug/pprof/</title>\
             <style>body{font-family:sans-serif}td{padding:2px 12px}</style></head><body>\
             <h1>/debug/pprof/</h1><p>Profiles of this process, served by rprof. \
             Read them with <code>cargo rprof top URL</code> or <code>go tool pprof URL</code>.</p><table>",
        );
        for (name, what) in PROFILES {
            html.push_str(&format!(
                "<tr><td><a href=\"{name}{query}\">{name}</a></td><td>{what}</td></tr>"
            ));
        }
        html.push_str("</table></body></html>\n");
        Response::ok("text/html; charset=utf-8", html.into_bytes())
    }

    fn cpu(&self, seconds: u64) -> Result<Response, Response> {
        if self
            .cpu_busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Response::error(
                409,
                "a CPU profile is already being collected; try again when it ends",
            ));
        }
        let result = pprof::profile_cpu_for(Duration::from_secs(seconds), self.cpu_hz);
        self.cpu_busy.store(false, Ordering::Release);
        match result {
            Ok(profile) => Ok(pprof_response("profile", &profile)),
            Err(ProfileError::CpuInUse) => Err(Response::error(
                409,
                "cpu profiling is already in use by the program itself",
            )),
            Err(e) => Err(Response::error(500, format!("cannot profile the CPU: {e}"))),
        }
    }
}

/// The current profile `name` (heap, allocs, block, mutex), symbolized.
fn fetch(name: &str) -> Result<Profile, Response> {
    let result = match name {
        "heap" | "allocs" => pprof::heap_profile().map(|mut p| {
            let default = if name == "heap" {
                "inuse_space"
            } else {
                "alloc_space"
            };
            p.default_sample_type = p.intern(default);
            p
        }),
        "block" => pprof::block_profile(),
        _ => pprof::mutex_profile(),
    };
    result.map_err(|e| match e {
        ProfileError::NotActive(_) => Response::error(404, e.to_string()),
        e => Response::error(500, format!("cannot make the {name} profile: {e}")),
    })
}

/// What changed in a cumulative profile over the next `seconds` (Go's delta profiles).
fn delta(fetch: impl Fn() -> Result<Profile, Response>, seconds: u64) -> Result<Profile, Response> {
    let before = fetch()?;
    std::thread::sleep(Duration::from_secs(seconds));
    let after = fetch()?;
    let mut d = edit::subtract(&after, &before)
        .map_err(|e| Response::error(500, format!("cannot subtract the profiles: {e}")))?;
    d.time_nanos = after.time_nanos;
    d.duration_nanos = Duration::from_secs(seconds).as_nanos() as i64;
    Ok(d)
}

fn threadcreate() -> Result<Profile, Response> {
    let records = threads::snapshot();
    if records.is_empty() {
        return Err(Response::error(
            404,
            "the thread-creation profile needs the thread registry: run under `cargo rprof run --http`",
        ));
    }
    let raw = crate::thread::with_harness_guard(|| {
        raw::threadcreate_profile(&records, &maps::profile_objects())
    });
    Ok(pprof::symbolize(&raw, None))
}

/// The current stack of every thread, served as `name` (`threads`, or Go's `goroutine`).
fn threads(name: &str, debug: u32) -> Result<Response, Response> {
    let dump = thread_stacks::dump().map_err(|e| Response::error(500, e))?;
    let raw = raw::thread_dump_profile(&dump, &maps::profile_objects());
    let profile = pprof::symbolize(&raw, None);
    Ok(match debug {
        0 => pprof_response(name, &profile),
        1 => plain(text::counts(
            &profile,
            name,
            Some(rprof_core::labels::THREAD),
        )),
        _ => {
            let silent: Vec<(i32, String)> = dump
                .iter()
                .filter(|t| t.stack.is_none())
                .map(|t| (t.tid, t.name.clone()))
                .collect();
            plain(text::thread_dump(&profile, &silent))
        }
    })
}

fn cmdline() -> Response {
    use std::os::unix::ffi::OsStrExt;
    let args: Vec<Vec<u8>> = std::env::args_os().map(|a| a.as_bytes().to_vec()).collect();
    Response::ok("text/plain; charset=utf-8", args.join(&0u8))
}

/// Go's symbol endpoint: `num_symbols: 1` for a bare GET; for addresses (a POST body or the
/// query, joined by `+`), one `0xADDR name` line per address some loaded binary knows.
fn symbol(req: &Request) -> Response {
    let input = if req.method == "POST" {
        String::from_utf8_lossy(&req.body).into_owned()
    } else {
        req.raw_query.clone()
    };
    if input.trim().is_empty() {
        return Response::ok("text/plain; charset=utf-8", b"num_symbols: 1\n".to_vec());
    }
    let objects = maps::profile_objects();
    let mappings = maps::mapping_infos(&objects);
    let mut out = String::new();
    for word in input.trim().split('+') {
        let hex = word
            .trim()
            .trim_start_matches("0x")
            .trim_start_matches("0X");
        let Ok(addr) = u64::from_str_radix(hex, 16) else {
            continue;
        };
        let Some(m) = mappings
            .iter()
            .find(|m| m.memory_start <= addr && addr < m.memory_limit)
        else {
            continue;
        };
        let frames = pprof::with_symbolizer(|s, vdso| {
            let path = if m.filename == rprof_core::VDSO_MAPPING {
                vdso.cloned()
            } else {
                Some(m.filename.clone().into())
            };
            path.and_then(|p| s.lookup(&p, m.memory_start, m.file_offset, addr).ok())
        });
        if let Some(f) = frames.and_then(|f| f.into_iter().next()) {
            out.push_str(&format!("{addr:#x} {}\n", f.name));
        }
    }
    Response::ok("text/plain; charset=utf-8", out.into_bytes())
}

fn pprof_response(name: &str, profile: &Profile) -> Response {
    let mut r = Response::ok("application/octet-stream", codec::encode(profile));
    r.headers.push((
        "Content-Disposition",
        format!("attachment; filename=\"{name}\""),
    ));
    r
}

fn plain(text: String) -> Response {
    Response::ok("text/plain; charset=utf-8", text.into_bytes())
}
