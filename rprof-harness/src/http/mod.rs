//! Live profiles over HTTP: the endpoints of Go's net/http/pprof (`/debug/pprof/heap`,
//! `profile?seconds=30`, ...) served from inside the profiled process, so that
//! `go tool pprof http://127.0.0.1:6060/debug/pprof/heap` and `cargo rprof top URL` read a
//! running program's profiles as they read files.
//!
//! `cargo rprof run --http ADDR` starts this server in any program with no code change. A
//! program that links rprof-harness starts it itself:
//!
//! ```no_run
//! let server = rprof_harness::http::serve("127.0.0.1:6060")?;
//! eprintln!("profiles at {}", server.url());
//! # Ok::<(), rprof_harness::http::ServeError>(())
//! ```
//!
//! Safe by default: it listens on loopback addresses only; [`Builder::allow_remote`] is needed
//! for any other, and then every request must carry a random token (`?token=` or
//! `Authorization: Bearer`). `seconds` is capped ([`DEFAULT_MAX_SECONDS`]), one CPU profile
//! runs at a time (a second request gets 409), bad requests get a 4xx with a one-line reason,
//! and a fixed number of workers with bounded reads and timeouts serve them.
//!
//! The server's threads are harness threads: their CPU time, allocations and waits never
//! appear in the profiles they serve.

mod endpoints;
mod text;
pub mod wire;

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use endpoints::Endpoints;
use wire::{ReadError, Response};

/// The largest `seconds` a request may ask for unless [`Builder::max_seconds`] says otherwise.
pub const DEFAULT_MAX_SECONDS: u64 = 300;
/// Worker threads serving requests.
const WORKERS: usize = 4;
/// Accepted connections waiting for a worker; beyond this a connection gets 503.
const BACKLOG: usize = 64;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The address does not parse or resolve.
    Address(String),
    /// A non-loopback address without [`Builder::allow_remote`].
    NotLoopback(SocketAddr),
    /// Binding the address failed.
    Bind(SocketAddr, std::io::Error),
    /// A server thread could not be started.
    Thread(std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Address(a) => {
                write!(f, "bad address {a:?}: use HOST:PORT, e.g. 127.0.0.1:6060")
            }
            ServeError::NotLoopback(a) => write!(
                f,
                "{a} is not a loopback address: profiles are served beyond this machine only when \
                 remote access is allowed (--http-allow-remote), and then with a token"
            ),
            ServeError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            ServeError::Thread(e) => write!(f, "cannot start the server's threads: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// How to serve: address, remote access, limits.
#[derive(Debug, Clone)]
pub struct Builder {
    addr: String,
    allow_remote: bool,
    token: Option<String>,
    max_seconds: u64,
    cpu_hz: u32,
}

/// Start serving on `addr` (a loopback `HOST:PORT`; port 0 picks a free one) with the defaults.
pub fn serve(addr: &str) -> Result<Server, ServeError> {
    Builder::new(addr).start()
}

impl Builder {
    /// Serve on `addr` (`HOST:PORT`).
    pub fn new(addr: &str) -> Self {
        Builder {
            addr: addr.to_owned(),
            allow_remote: false,
            token: None,
            max_seconds: DEFAULT_MAX_SECONDS,
            cpu_hz: 100,
        }
    }

    /// Allow a non-loopback address. Every request must then carry the token: `token`, or a
    /// random one when `None` (see [`Server::token`]).
    pub fn allow_remote(mut self, token: Option<String>) -> Self {
        self.allow_remote = true;
        self.token = Some(token.unwrap_or_else(random_token));
        self
    }

    /// The largest `seconds` a request may ask for (default [`DEFAULT_MAX_SECONDS`]).
    pub fn max_seconds(mut self, seconds: u64) -> Self {
        self.max_seconds = seconds.max(1);
        self
    }

    /// The sampling rate of `profile` requests (default 100 Hz), unless a CPU profile already
    /// runs in the process (its rate is used then).
    pub fn cpu_rate(mut self, hz: u32) -> Self {
        self.cpu_hz = hz.clamp(1, 1_000_000);
        self
    }

    /// Bind and start serving on harness threads; the server runs until the process ends.
    pub fn start(self) -> Result<Server, ServeError> {
        let addr = self
            .addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ServeError::Address(self.addr.clone()))?;
        if !self.allow_remote && !addr.ip().is_loopback() {
            return Err(ServeError::NotLoopback(addr));
        }
        crate::modules::start();
        let listener = TcpListener::bind(addr).map_err(|e| ServeError::Bind(addr, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(addr, e))?;
        let endpoints = Arc::new(Endpoints::new(
            self.max_seconds,
            self.cpu_hz,
            self.token.clone(),
        ));
        let (tx, rx) = sync_channel::<TcpStream>(BACKLOG);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            let (rx, endpoints) = (rx.clone(), endpoints.clone());
            crate::thread::spawn_harness_thread(c"rprof-http-work", move || work(&rx, &endpoints))
                .map_err(ServeError::Thread)?;
        }
        crate::thread::spawn_harness_thread(c"rprof-http", move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Err(TrySendError::Full(mut stream)) = tx.try_send(stream) {
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let busy = Response::error(503, "the profile server is busy; try again");
                    let _ = wire::write_response(&mut stream, &busy);
                }
            }
        })
        .map_err(ServeError::Thread)?;
        Ok(Server {
            addr: local,
            token: self.token,
        })
    }
}

/// A running server.
#[derive(Debug, Clone)]
pub struct Server {
    addr: SocketAddr,
    token: Option<String>,
}

impl Server {
    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token every request must carry, when remote access is allowed.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The index page's URL, with the token when there is one.
    pub fn url(&self) -> String {
        match &self.token {
            Some(t) => format!("http://{}/debug/pprof/?token={t}", self.addr),
            None => format!("http://{}/debug/pprof/", self.addr),
        }
    }
}

/// A worker: serve connections until the acceptor is gone.
fn work(rx: &Mutex<Receiver<TcpStream>>, endpoints: &Endpoints) {
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(mut stream) = next else { return };
        // A request that panics (it should not) costs its connection, not the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            serve_connection(&mut stream, endpoints)
        }));
    }
}

fn serve_connection(stream: &mut TcpStream, endpoints: &Endpoints) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let response = match wire::read_request(stream) {
        Err(ReadError::Gone) => return,
        Err(ReadError::Bad(status, reason)) => Response::error(status, reason),
        Ok(req) => match &endpoints.token {
            Some(token) if !carries_token(&req, token) => Response::error(
                401,
                "this server needs its token: add ?token=TOKEN to the URL (printed when it started)",
            ),
            _ => endpoints.handle(&req),
        },
    };
    let _ = wire::write_response(stream, &response);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Whether `req` carries `token` (as `?token=` or `Authorization: Bearer`), compared in time
/// independent of where the first difference is.
fn carries_token(req: &wire::Request, token: &str) -> bool {
    let given = req
        .param("token")
        .or_else(|| {
            req.header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
        })
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// 128 random bits from the kernel, in hex.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: `bytes` is valid for writes of its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // No entropy source: still unguessable enough to not be empty, but say so in the token.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (t ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
        (status, out[head_end + 4..].to_vec())
    }

    #[test]
    fn only_loopback_without_remote_access() {
        assert!(matches!(
            Builder::new("0.0.0.0:0").start(),
            Err(ServeError::NotLoopback(_))
        ));
        assert!(matches!(
            Builder::new("nonsense").start(),
            Err(ServeError::Address(_))
        ));
    }

    #[test]
    fn a_token_server_refuses_requests_without_it() {
        let server = Builder::new("127.0.0.1:0")
            .allow_remote(Some("s3cret".into()))
            .start()
            .unwrap();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/debug/pprof/cmdline").0, 401);
        assert_eq!(get(addr, "/debug/pprof/cmdline?token=wrong1").0, 401);
        let (status, body) = get(addr, "/debug/pprof/cmdline?token=s3cret");
        assert_eq!(status, 200);
        assert!(!body.is_empty());
        assert!(server.url().ends_with("?token=s3cret"));
    }

    #[test]
    fn bad_requests_get_a_reason_and_the_server_lives_on() {
        let server = Builder::new("127.0.0.1:0").max_seconds(5).start().unwrap();
        let addr = server.local_addr();
        for (target, status) in [
            ("/debug/pprof/profile?seconds=6", 400),
            ("/debug/pprof/profile?seconds=abc", 400),
            ("/debug/pprof/heap?debug=x", 400),
            ("/debug/pprof/nosuch", 404),
            ("/elsewhere", 404),
            ("/debug/pprof/threads?seconds=1", 400),
        ] {
            let (got, body) = get(addr, target);
            assert_eq!(got, status, "{target}: {}", String::from_utf8_lossy(&body));
            assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        }
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let (status, body) = get(addr, "/debug/pprof/");
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains("href=\"threads\""));
    }

    #[inline(never)]
    fn spin_until(stop: &std::sync::atomic::AtomicBool) -> u64 {
        let mut x = 1u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        x
    }

    #[test]
    fn linked_in_cpu_and_threads_endpoints_see_the_programs_threads() {
        let server = serve("127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("spinner-one".into())
                .spawn(move || spin_until(&stop))
                .unwrap()
        };
        let (status, body) = get(addr, "/debug/pprof/profile?seconds=1");
        let (dump_status, dump) = get(addr, "/debug/pprof/threads?debug=2");
        // Go's name for it, which profile scrapers (Pyroscope, Parca) ask for.
        let (goroutine_status, goroutine) = get(addr, "/debug/pprof/goroutine");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let cpu = rprof_core::codec::decode(&body).unwrap();
        let spun: i64 = cpu
            .sample
            .iter()
            .filter(|s| {
                s.location_id.iter().any(|&id| {
                    cpu.location_by_id(id).is_some_and(|l| {
                        l.line.iter().any(|ln| {
                            cpu.function_by_id(ln.function_id)
                                .is_some_and(|f| cpu.str(f.name).ends_with("spin_until"))
                        })
                    })
                })
            })
            .map(|s| s.value[0])
            .sum();
        // About 100 samples in a second of spinning; the scheduler may give it less.
        assert!(spun >= 30, "{spun} samples in spin_until");
        assert_eq!(dump_status, 200);
        let dump = String::from_utf8(dump).unwrap();
        let at = dump
            .find("\"spinner-one\":\n")
            .expect("the spinner is listed");
        let its_stack = &dump[at..dump[at..].find("\n\n").map_or(dump.len(), |e| at + e)];
        assert!(its_stack.contains("spin_until"), "{its_stack}");
        assert_eq!(goroutine_status, 200);
        let threads = rprof_core::codec::decode(&goroutine).unwrap();
        let spinner_listed = threads.sample.iter().any(|s| {
            s.label.iter().any(|l| {
                threads.str(l.key) == rprof_core::labels::THREAD
                    && threads.str(l.str) == "spinner-one"
            })
        });
        assert!(
            spinner_listed,
            "the goroutine profile lists the spinner thread"
        );
    }

    #[test]
    fn the_symbol_endpoint_names_a_function_of_this_binary() {
        let server = serve("127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/debug/pprof/symbol").1, b"num_symbols: 1\n");
        let f = random_token as *const () as usize as u64;
        let (status, body) = get(addr, &format!("/debug/pprof/symbol?{f:#x}"));
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200);
        assert!(body.starts_with(&format!("{f:#x} ")), "{body}");
        assert!(body.contains("random_token"), "{body}");
    }
}
