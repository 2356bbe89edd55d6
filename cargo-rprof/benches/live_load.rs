//! What the live endpoints cost a service, and how they hold up under load: the example service
//! (examples/service, compiled optimised with frame pointers, as `cargo rprof run --release`
//! builds it) serves a fixed client load, side by side in one run:
//!
//! - **plain**: no preload;
//! - **live, idle**: under the live preload (`cargo rprof run --http`: memory profiler at the
//!   default rate, block and mutex profilers, thread registry, server) with nobody asking;
//! - **live, loaded**: the same while a second client sends `RPROF_BENCH_REQUESTS` (default
//!   10,000) requests, `heap` and `threads?debug=1` alternately, at concurrency 16.
//!
//! ```text
//! cargo bench -p cargo-rprof --bench live_load
//! RPROF_BENCH_ROUNDS=1 RPROF_BENCH_REQUESTS=1000 cargo bench -p cargo-rprof --bench live_load
//! ```
//!
//! The service load is `RPROF_BENCH_SERVICE` (default 6,000) requests from 8 client threads,
//! `/hot?n=5000` and `/leak?kb=1` in turn (not `/shared`: its lock, held 1 ms, would bound the
//! throughput whatever the profilers cost); its throughput is requests per second of wall time. Configurations run interleaved (`support::round_order`). Printed: throughput per
//! configuration (median) and its ratio to plain, and the endpoint requests' latency
//! percentiles (p50, p90, p99, max) over all rounds. Timing never fails the bench; a request of
//! either client that gets no 200, or a service that dies, does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::{build_workload, env_or, median, round_order};

const PRELOAD_HTTP_SO: &str = env!("RPROF_PRELOAD_HTTP_SO");
const SERVICE: &str = include_str!("../../examples/service/src/main.rs");

/// A running service and, when live, its endpoints' address.
struct Running {
    child: Child,
    app: SocketAddr,
    pprof: Option<SocketAddr>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(exe: &std::path::Path, live: bool) -> Result<Running, String> {
    let mut cmd = Command::new(exe);
    cmd.arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if live {
        cmd.env("LD_PRELOAD", PRELOAD_HTTP_SO)
            .env("RPROF_HTTP", "127.0.0.1:0");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the service: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let app = line
        .trim()
        .strip_prefix("service listening on http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("the service said {line:?}"))?;
    let mut pprof = None;
    if live {
        let mut err = BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        err.read_line(&mut line).map_err(|e| e.to_string())?;
        pprof = Some(
            line.trim()
                .strip_prefix("rprof: serving live profiles at http://")
                .and_then(|u| u.split('/').next()?.parse().ok())
                .ok_or_else(|| format!("the preload said {line:?}"))?,
        );
    }
    Ok(Running { child, app, pprof })
}

/// GET `target`; the status, or why there was none.
fn get(addr: SocketAddr, target: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(s, "GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    std::str::from_utf8(out.get(9..12).ok_or("no status line")?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad status line".to_owned())
}

/// Send `targets(i)` for i in 0..n from `threads` clients; returns each request's latency, or
/// the first failure.
fn load(
    addr: SocketAddr,
    n: usize,
    threads: usize,
    targets: fn(usize) -> &'static str,
) -> Result<Vec<Duration>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(lat);
                    }
                    let t = Instant::now();
                    match get(addr, targets(i))? {
                        200 => lat.push(t.elapsed()),
                        status => return Err(format!("{} answered {status}", targets(i))),
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for c in clients {
        all.extend(c.join().map_err(|_| "a client panicked".to_owned())??);
    }
    Ok(all)
}

fn service_target(i: usize) -> &'static str {
    ["/hot?n=5000", "/leak?kb=1"][i % 2]
}

fn endpoint_target(i: usize) -> &'static str {
    ["/debug/pprof/heap", "/debug/pprof/threads?debug=1"][i % 2]
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("live_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<(), String> {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = env_or("RPROF_BENCH_ROUNDS", if full { 5 } else { 1 })?;
    let requests: usize = env_or("RPROF_BENCH_REQUESTS", if full { 10_000 } else { 200 })?;
    let service_n: usize = env_or("RPROF_BENCH_SERVICE", if full { 6_000 } else { 300 })?;
    let dir = std::env::temp_dir().join(format!("rprof-live-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let exe = build_workload(&dir, SERVICE)?;
    let names = ["plain", "live, idle", "live, loaded"];
    let mut throughput: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut latencies: Vec<Duration> = Vec::new();
    for round in 0..rounds {
        for c in round_order(round, names.len()) {
            let svc = start(&exe, c > 0)?;
            let endpoint_load = match (c, svc.pprof) {
                (2, Some(pp)) => Some(std::thread::spawn(move || {
                    load(pp, requests, 16, endpoint_target)
                })),
                _ => None,
            };
            let t = Instant::now();
            let served = load(svc.app, service_n, 8, service_target)?;
            let wall = t.elapsed().as_secs_f64();
            throughput[c].push(served.len() as f64 / wall);
            if let Some(h) = endpoint_load {
                let lat = h.join().map_err(|_| "the endpoint client panicked")??;
                if lat.len() != requests {
                    return Err(format!(
                        "{} of {requests} endpoint requests answered",
                        lat.len()
                    ));
                }
                latencies.extend(lat);
            }
            if let Some(status) = svc_status(svc) {
                return Err(format!("the service ended by itself: {status}"));
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let plain = median(throughput[0].clone());
    println!("service throughput ({service_n} requests from 8 clients, {rounds} rounds, medians):");
    for (name, t) in names.iter().zip(&throughput) {
        let m = median(t.clone());
        println!(
            "  {name:<13} {m:8.0} req/s   ratio to plain {:.3}",
            m / plain
        );
    }
    latencies.sort_unstable();
    println!(
        "endpoint requests (heap and threads?debug=1, concurrency 16): {} answered, 0 lost",
        latencies.len()
    );
    println!(
        "  latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The service's exit status if it has already ended (it must not, until killed).
fn svc_status(mut svc: Running) -> Option<String> {
    let status = svc.child.try_wait().ok().flatten().map(|s| s.to_string());
    drop(svc);
    status
}
