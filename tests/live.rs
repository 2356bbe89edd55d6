//! Live endpoints: the example service under `cargo rprof run --http 127.0.0.1:0`, driven with
//! load from this test, every endpoint fetched and decoded, `go tool pprof` reading the URLs,
//! and the security rules (loopback only, token, limits, malformed requests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rprof::*;
use rprof_core::{codec, Profile};

/// The example service running under `cargo rprof run --http`.
struct Service {
    child: Child,
    /// The service's own address.
    app: SocketAddr,
    /// The live endpoints' base URL (`http://ADDR/debug/pprof`) and token query, if any.
    pprof: SocketAddr,
    token: Option<String>,
    _fixture: Fixture,
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: sending SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Start the example service under `cargo rprof run` with `flags`; waits (bounded) until both
/// the service and the endpoints have said where they listen.
fn start(flags: &[&str]) -> Service {
    let fixture = Fixture::copy("examples/service");
    let mut cmd = fixture.rprof(&["run"]);
    cmd.args(flags)
        .args(["--", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cannot start cargo rprof run");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("[service] {line}");
                let _ = tx.send(line);
            }
        });
    }
    let (mut app, mut pprof, mut token) = (None, None, None);
    while app.is_none() || pprof.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(600))
            .expect("the service did not start within 10 minutes");
        if let Some(a) = line.strip_prefix("service listening on http://") {
            app = Some(a.parse().unwrap());
        }
        if let Some(url) = line.strip_prefix("rprof: serving live profiles at http://") {
            let (addr, rest) = url.split_once('/').unwrap();
            pprof = Some(addr.parse().unwrap());
            token = rest.split_once("?token=").map(|(_, t)| t.to_owned());
        }
        assert!(!line.contains("no live profiles"), "{line}");
    }
    Service {
        child,
        app: app.unwrap(),
        pprof: pprof.unwrap(),
        token,
        _fixture: fixture,
    }
}

/// A plain HTTP/1.1 exchange: (status, body).
fn request(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&out)));
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    (status, out[head_end + 4..].to_vec())
}

fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    request(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

/// GET: (status, head, body).
fn get_with_head(addr: SocketAddr, target: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, out[head_end + 4..].to_vec())
}

/// GET that must answer 200.
fn ok(addr: SocketAddr, target: &str) -> Vec<u8> {
    let (status, body) = get(addr, target);
    assert_eq!(
        status,
        200,
        "{target}: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    body
}

fn profile_at(addr: SocketAddr, target: &str) -> Profile {
    codec::decode(&ok(addr, target)).unwrap_or_else(|e| panic!("{target}: {e}"))
}

/// The service's own load: `n` rounds of each handler from 4 threads.
fn drive(app: SocketAddr, rounds: usize, leak_kb: usize) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    ok(app, "/hot?n=20000");
                    ok(app, &format!("/leak?kb={leak_kb}"));
                    ok(app, "/shared");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn every_endpoint_of_a_live_service() {
    let svc = start(&["--http", "127.0.0.1:0", "--memprofilerate", "1"]);
    let (app, pp) = (svc.app, svc.pprof);
    assert!(pp.ip().is_loopback());
    // 4 threads × 25 rounds: 100 leaks of 16 KiB, every allocation recorded.
    drive(app, 25, 16);

    let index = String::from_utf8(ok(pp, "/debug/pprof/")).unwrap();
    for name in [
        "allocs",
        "block",
        "heap",
        "mutex",
        "profile",
        "threadcreate",
        "threads",
        "goroutine",
    ] {
        assert!(
            index.contains(&format!("href=\"{name}\"")),
            "{name} in {index}"
        );
    }
    let cmdline = ok(pp, "/debug/pprof/cmdline");
    assert!(cmdline.ends_with(b"\x00127.0.0.1:0"), "{cmdline:?}");
    assert_eq!(ok(pp, "/debug/pprof/symbol"), b"num_symbols: 1\n");

    // heap: the leak, exactly, in inuse_space.
    let heap = profile_at(pp, "/debug/pprof/heap");
    assert_eq!(heap.str(heap.default_sample_type), "inuse_space");
    let leaked = function_cum(&heap, "inuse_space", "service::remember_request");
    // The 100 blocks, and the list that keeps them: a Vec<Vec<u8>> grown by doubling to 128
    // entries of 24 bytes.
    assert_eq!(
        leaked,
        100 * 16 * 1024 + 128 * 24,
        "inuse bytes kept by remember_request"
    );
    let allocs = profile_at(pp, "/debug/pprof/allocs");
    assert_eq!(allocs.str(allocs.default_sample_type), "alloc_space");
    let heap_text = String::from_utf8(ok(pp, "/debug/pprof/heap?debug=1")).unwrap();
    assert!(heap_text.starts_with("heap profile: "), "{heap_text:.200}");
    assert!(heap_text.contains("service::remember_request"));

    // The symbol endpoint names a function the heap profile has an address for.
    let addr = heap
        .location
        .iter()
        .find(|l| {
            l.line.iter().any(|ln| {
                heap.function_by_id(ln.function_id)
                    .is_some_and(|f| heap.str(f.name) == "service::remember_request")
            })
        })
        .map(|l| l.address - 1)
        .expect("a location in remember_request");
    let symbols = String::from_utf8(ok(pp, &format!("/debug/pprof/symbol?{addr:#x}"))).unwrap();
    assert!(
        symbols.starts_with(&format!("{addr:#x} ")) && symbols.contains("remember_request"),
        "{symbols}"
    );

    // block and mutex: the shared lock.
    let block = profile_at(pp, "/debug/pprof/block");
    assert!(function_cum(&block, "delay", "service::update_shared") > 0);
    let mutex = profile_at(pp, "/debug/pprof/mutex");
    assert!(function_cum(&mutex, "delay", "service::update_shared") > 0);
    let contention = String::from_utf8(ok(pp, "/debug/pprof/mutex?debug=1")).unwrap();
    assert!(
        contention.starts_with("--- contention:\n"),
        "{contention:.200}"
    );

    // threadcreate: the 8 workers, created in main.
    let tc = profile_at(pp, "/debug/pprof/threadcreate");
    assert_eq!(function_cum(&tc, "threadcreate", "service::main"), 8);

    // threads: every worker by name, each with a stack through the service.
    let threads = profile_at(pp, "/debug/pprof/threads");
    let names: Vec<String> = threads
        .sample
        .iter()
        .flat_map(|s| &s.label)
        .filter(|l| threads.str(l.key) == "thread")
        .map(|l| threads.str(l.str).to_owned())
        .collect();
    for i in 0..8 {
        assert!(
            names.contains(&format!("worker-{i}")),
            "worker-{i} in {names:?}"
        );
    }
    let dump = String::from_utf8(ok(pp, "/debug/pprof/threads?debug=2")).unwrap();
    for i in 0..8 {
        assert!(
            dump.contains(&format!("\"worker-{i}\":\n")),
            "worker-{i} in {dump}"
        );
    }
    assert!(dump.contains("service::main"), "{dump}");
    let grouped = String::from_utf8(ok(pp, "/debug/pprof/threads?debug=1")).unwrap();
    assert!(
        grouped.starts_with("threads profile: total 9\n"),
        "{grouped:.300}"
    );

    // profile: CPU for 3 seconds while the hot handler runs.
    let load = std::thread::spawn(move || drive(app, 40, 1));
    let cpu = profile_at(pp, "/debug/pprof/profile?seconds=3");
    load.join().unwrap();
    assert_eq!(cpu.duration_nanos / 1_000_000_000, 3);
    assert!(function_cum(&cpu, "cpu", "service::count_primes") > 0);

    // allocs?seconds=N: only what was allocated in the window.
    // The leaks land in the middle of a 10 s window: seconds of margin on both sides for the
    // two snapshots (each takes milliseconds), however loaded the machine.
    let window = std::thread::spawn(move || profile_at(pp, "/debug/pprof/allocs?seconds=10"));
    std::thread::sleep(Duration::from_secs(5));
    for _ in 0..10 {
        ok(app, "/leak?kb=32");
    }
    let delta = window.join().unwrap();
    assert_eq!(
        function_cum(&delta, "alloc_space", "service::remember_request"),
        10 * 32 * 1024,
        "allocations of the window only"
    );

    // cargo rprof reads the URLs, and keeps a copy named as Go names it.
    let kept = std::env::temp_dir().join(format!("rprof-live-dir-{}", std::process::id()));
    let top = run({
        let mut c = Command::new(cargo_rprof());
        c.args(["rprof", "top", "--sample-index", "inuse_space"])
            .arg(format!("http://{pp}/debug/pprof/heap"))
            .env("RPROF_DIR", &kept);
        c
    });
    top.expect_code(0);
    assert!(
        top.stdout.contains("service::remember_request"),
        "{}",
        top.stdout
    );
    assert!(kept
        .join("pprof.service.alloc_objects.alloc_space.inuse_objects.inuse_space.peak_objects.peak_space.001.pb.gz")
        .is_file());
    let _ = std::fs::remove_dir_all(&kept);

    // The paths and parameters the README's Pyroscope (Alloy `pyroscope.scrape`) and Parca
    // scrape configs name, fetched as those scrapers fetch them: gzip-compressed pprof, served
    // as application/octet-stream, CPU as a delta over `seconds`.
    let load = std::thread::spawn(move || drive(app, 40, 1));
    for target in [
        "/debug/pprof/profile?seconds=2",
        "/debug/pprof/allocs",
        "/debug/pprof/block",
        "/debug/pprof/mutex",
        "/debug/pprof/goroutine",
    ] {
        let (status, head, body) = get_with_head(pp, target);
        assert_eq!(status, 200, "{target}: {}", String::from_utf8_lossy(&body));
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/octet-stream"),
            "{target}: {head}"
        );
        assert_eq!(&body[..2], &[0x1f, 0x8b], "{target}: gzip");
        let p = codec::decode(&body).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert!(!p.sample.is_empty(), "{target}: no samples");
        if target.ends_with("goroutine") {
            let named = p
                .sample
                .iter()
                .flat_map(|s| &s.label)
                .filter(|l| p.str(l.key) == "thread" && p.str(l.str).starts_with("worker-"))
                .count();
            assert_eq!(named, 8, "goroutine lists the 8 workers");
        }
        if target.contains("profile?seconds=2") {
            assert_eq!(p.duration_nanos / 1_000_000_000, 2);
        }
    }
    load.join().unwrap();

    // go tool pprof reads the URLs.
    if let Some(go) = go_tool() {
        let tmp = std::env::temp_dir().join(format!("rprof-live-go-{}", std::process::id()));
        for (target, args, expect) in [
            (
                "heap",
                vec!["-sample_index=inuse_space"],
                "service::remember_request",
            ),
            ("mutex", vec![], "service::update_shared"),
            ("profile?seconds=2", vec![], "service::count_primes"),
        ] {
            let load = std::thread::spawn(move || drive(app, 30, 1));
            let out = run({
                let mut c = Command::new(&go);
                c.args(["tool", "pprof", "-top"])
                    .args(&args)
                    .arg(format!("http://{pp}/debug/pprof/{target}"))
                    .env("PPROF_TMPDIR", &tmp);
                c
            });
            load.join().unwrap();
            out.expect_code(0);
            assert!(out.stdout.contains(expect), "{target}: {}", out.stdout);
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// A local address that is not loopback, if the machine has one.
fn non_loopback_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn the_endpoints_refuse_what_they_should() {
    // A non-loopback address needs --http-allow-remote; nothing is built or run without it.
    let fixture = Fixture::copy("examples/service");
    let refused = run(fixture.rprof(&["run", "--http", "0.0.0.0:0"]));
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not a loopback address")
            && refused.stderr.contains("--http-allow-remote"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("Compiling"), "{}", refused.stderr);

    let svc = start(&["--http", "127.0.0.1:0"]);
    let pp = svc.pprof;
    let remote_ip = non_loopback_ip();
    if let Some(ip) = remote_ip {
        // Bound to loopback: not reachable on the machine's other address.
        assert!(
            TcpStream::connect_timeout(&SocketAddr::new(ip, pp.port()), Duration::from_secs(5))
                .is_err(),
            "the loopback server answered on {ip}"
        );
    }
    let (status, body) = get(pp, "/debug/pprof/profile?seconds=100000");
    assert_eq!(status, 400);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "seconds must be between 1 and 300\n"
    );
    // Two CPU profiles at once: the second gets 409.
    // The second request comes 2 s into the first's 6 s, wide margins either way.
    let first = std::thread::spawn(move || get(pp, "/debug/pprof/profile?seconds=6"));
    std::thread::sleep(Duration::from_secs(2));
    let (second, why) = get(pp, "/debug/pprof/profile?seconds=1");
    assert_eq!(second, 409, "{}", String::from_utf8_lossy(&why));
    assert_eq!(first.join().unwrap().0, 200);
    // Malformed requests get a 4xx, and the server lives on.
    for raw in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET /debug/pprof/heap HTTP/9.9\r\n\r\n",
        b"GET /debug/pprof/%zz HTTP/1.1\r\n\r\n",
        b"GET /debug/pprof/heap?debug=x HTTP/1.1\r\n\r\n",
        b"POST /debug/pprof/heap HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /debug/pprof/nosuch HTTP/1.1\r\n\r\n",
        b"POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
    ] {
        let (status, body) = request(pp, raw);
        assert!(
            (400..500).contains(&status) || status == 505,
            "{:?} -> {status}",
            String::from_utf8_lossy(raw)
        );
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text.lines().count(), 1, "one-line reason: {text:?}");
    }
    // A client that sends half a request and goes away costs nothing lasting.
    drop(TcpStream::connect(pp).unwrap().write_all(b"GET /debug/pp"));
    assert_eq!(ok(pp, "/debug/pprof/symbol"), b"num_symbols: 1\n");
    drop(svc);

    // With --http-allow-remote: every request needs the printed token.
    let svc = start(&["--http", "0.0.0.0:0", "--http-allow-remote"]);
    let token = svc.token.clone().expect("a token is printed");
    assert_eq!(token.len(), 32);
    let addr = SocketAddr::new(
        remote_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        svc.pprof.port(),
    );
    assert_eq!(get(addr, "/debug/pprof/cmdline").0, 401);
    assert_eq!(get(addr, "/debug/pprof/cmdline?token=0123").0, 401);
    assert_eq!(
        get(addr, &format!("/debug/pprof/cmdline?token={token}")).0,
        200
    );
    let bearer =
        format!("GET /debug/pprof/symbol HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    assert_eq!(request(addr, bearer.as_bytes()).0, 200);
}
