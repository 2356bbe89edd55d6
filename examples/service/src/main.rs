//! A small HTTP service (std only) with the three things a live profile should find:
//!
//! - `GET /hot?n=N`: a CPU-heavy handler (`count_primes`);
//! - `GET /leak?kb=N`: keeps N KiB per request forever (`remember_request`, the leak);
//! - `GET /shared`: updates state behind one lock held for a while (`update_shared`), so
//!   concurrent requests wait for each other.
//!
//! `service [ADDR]` listens on ADDR (default 127.0.0.1:8080; port 0 picks a free one) and prints
//! `service listening on http://ADDR` once it accepts connections. Eight worker threads, named
//! `worker-0` .. `worker-7`, accept and serve the requests.
//!
//! Profile it live: `cargo rprof run --http 127.0.0.1:6060 -- 127.0.0.1:8080`, then
//! `cargo rprof top http://127.0.0.1:6060/debug/pprof/profile --seconds 10`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// Requests' memory that is never given back: the leak.
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// The state every `/shared` request updates under one lock.
static SHARED: Mutex<u64> = Mutex::new(0);

/// The hot handler's work: how many primes are below `n` (trial division, on purpose slow).
#[inline(never)]
fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// Keep `kb` KiB for as long as the service runs.
#[inline(never)]
fn remember_request(kb: usize) -> usize {
    let block = vec![0x5a_u8; kb * 1024];
    let mut kept = KEPT.lock().unwrap();
    kept.push(block);
    kept.len()
}

/// Update the shared state, holding its lock for about a millisecond.
#[inline(never)]
fn update_shared() -> u64 {
    let mut state = SHARED.lock().unwrap();
    std::thread::sleep(Duration::from_millis(1));
    *state += 1;
    *state
}

/// Answer one request line; returns (status, body).
fn route(target: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match path {
        "/hot" => {
            let n = param("n").unwrap_or(20_000).min(10_000_000);
            (200, format!("{} primes below {n}\n", count_primes(n)))
        }
        "/leak" => {
            let kb = param("kb").unwrap_or(64).min(1 << 20) as usize;
            (200, format!("{} requests kept\n", remember_request(kb)))
        }
        "/shared" => (200, format!("shared state {}\n", update_shared())),
        "/" => (200, "try /hot?n=20000, /leak?kb=64, /shared\n".to_owned()),
        _ => (404, "not found\n".to_owned()),
    }
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let (status, body) = route(target);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Not Found" },
        body.len()
    )?;
    stream.flush()
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("service: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("service listening on http://{}", listener.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    // Each worker accepts for itself: no queue, so no lock but the service's own is contended.
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let listener = listener.try_clone().expect("cannot share the listener");
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    for stream in listener.incoming().flatten() {
                        let _ = serve(stream);
                    }
                })
                .expect("cannot start a worker")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
