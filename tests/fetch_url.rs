//! The analyzer reads URLs, as `go tool pprof http://host/debug/pprof/heap` does: a profile
//! served by a plain TCP listener here is reported exactly as the same profile read from a file,
//! a copy is saved under `$RPROF_DIR` (else `./pprof`) with Go's name and counter, `--seconds`
//! reaches the request, and server and connection failures are one-line errors.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use rprof::{codec, read_profile, rprof_in, run, Profile, ProfileBuilder, Ran};
use rprof_core::builder::MappingInfo;

const MEM: &[(&str, &str)] = &[
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];
const CPU: &[(&str, &str)] = &[("samples", "count"), ("cpu", "nanoseconds")];
const COPY_NAME: &str = "pprof.server.alloc_objects.alloc_space.inuse_objects.inuse_space";

/// A small symbolized profile of `types` from the binary `/srv/bin/server`: main calls
/// `parse` and `render`, each with its own value.
fn profile(types: &[(&str, &str)]) -> Profile {
    let last = types[types.len() - 1];
    let mut b = ProfileBuilder::new(types, last, 1);
    let mapping = b.mapping(&MappingInfo {
        memory_start: 0x1000,
        memory_limit: 0x9000,
        file_offset: 0,
        filename: "/srv/bin/server".into(),
        build_id: "abc123".into(),
        symbolized: true,
    });
    let main = b.function("server::main", "server::main", "src/main.rs", 1);
    let l_main = b.location(mapping, 0x1100, &[(main, 5)]);
    for (i, (leaf, scale)) in [("server::parse", 3), ("server::render", 1)]
        .into_iter()
        .enumerate()
    {
        let f = b.function(leaf, leaf, "src/lib.rs", 10 * i as i64);
        let l = b.location(mapping, 0x2000 + 0x100 * i as u64, &[(f, 11 + i as i64)]);
        let values: Vec<i64> = (0..types.len() as i64)
            .map(|k| scale * (k + 1) * 1000)
            .collect();
        b.add_sample(&[l, l_main], &values);
    }
    b.build()
}

/// A fresh empty directory.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rprof-fetch-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server on 127.0.0.1 answering one connection per response, in order; joining it gives
/// each request's head (request line and headers).
struct Server {
    port: u16,
    thread: JoinHandle<Vec<String>>,
}

impl Server {
    fn start(responses: Vec<Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for response in responses {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                heads.push(String::from_utf8(head).unwrap());
                // The client may give up early (a too-large or bad body): ignore write errors.
                let _ = conn.write_all(&response);
                let _ = conn.shutdown(Shutdown::Both);
            }
            heads
        });
        Server { port, thread }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(self) -> Vec<String> {
        self.thread.join().unwrap()
    }
}

/// A 200 response with a Content-Length.
fn ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A 200 response in chunks of 100 bytes, as Go's net/http sends a body of unknown length.
fn ok_chunked(body: &[u8]) -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.chunks(100) {
        r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        r.extend_from_slice(chunk);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

/// `cargo rprof ARGS` in `cwd`, with `RPROF_DIR` set to `copies` (or unset).
fn rprof(cwd: &Path, copies: Option<&Path>, args: &[&str]) -> Ran {
    let mut cmd: Command = rprof_in(cwd, args);
    match copies {
        Some(dir) => cmd.env("RPROF_DIR", dir),
        None => cmd.env_remove("RPROF_DIR"),
    };
    run(cmd)
}

/// The single `error:` line of a failed run (the last line; only status lines come before).
fn error_line(ran: &Ran) -> &str {
    assert_eq!(ran.code, Some(1), "stderr: {}", ran.stderr);
    assert!(ran.stdout.is_empty(), "stdout: {}", ran.stdout);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    let errors: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "want one error line:\n{}", ran.stderr);
    assert_eq!(ran.stderr.lines().last(), Some(errors[0]), "{}", ran.stderr);
    errors[0]
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn top_of_a_url_is_top_of_the_file_and_each_fetch_is_saved() {
    let work = scratch("same");
    let copies = work.join("copies");
    let heap = profile(MEM);
    let file = work.join("heap.prof");
    codec::write_file(&file, &heap).unwrap();
    let bytes = codec::encode(&heap);

    let from_file = rprof(&work, Some(&copies), &["top", file.to_str().unwrap()]);
    from_file.expect_code(0);
    assert!(
        from_file.stdout.contains("server::parse"),
        "{}",
        from_file.stdout
    );

    let server = Server::start(vec![ok(&bytes), ok_chunked(&bytes), ok(&bytes)]);
    let url = server.url("/debug/pprof/heap");
    let first = rprof(&work, Some(&copies), &["top", &url]);
    first.expect_code(0);
    assert_eq!(first.stdout, from_file.stdout);
    assert!(
        first
            .stderr
            .contains(&format!("Fetching profile over HTTP from {url}\n")),
        "{}",
        first.stderr
    );
    let copy1 = copies.join(format!("{COPY_NAME}.001.pb.gz"));
    assert!(
        first
            .stderr
            .contains(&format!("Saved profile in {}\n", copy1.display())),
        "{}",
        first.stderr
    );
    assert_eq!(read_profile(&copy1), heap);
    // Saved as every pprof file rprof writes: gzip.
    assert!(std::fs::read(&copy1).unwrap().starts_with(&[0x1f, 0x8b]));

    // A chunked answer; the next free counter.
    let second = rprof(&work, Some(&copies), &["top", &url]);
    second.expect_code(0);
    assert_eq!(second.stdout, from_file.stdout);
    let copy2 = copies.join(format!("{COPY_NAME}.002.pb.gz"));
    assert!(
        second
            .stderr
            .contains(&format!("Saved profile in {}", copy2.display())),
        "{}",
        second.stderr
    );
    assert_eq!(read_profile(&copy2), heap);

    // A URL as the base: the same report as with the file as the base.
    let diff_file = rprof(
        &work,
        Some(&copies),
        &[
            "top",
            file.to_str().unwrap(),
            "--diff_base",
            file.to_str().unwrap(),
        ],
    );
    diff_file.expect_code(0);
    let diff_url = rprof(
        &work,
        Some(&copies),
        &["top", file.to_str().unwrap(), "--diff_base", &url],
    );
    diff_url.expect_code(0);
    assert_eq!(diff_url.stdout, diff_file.stdout);
    assert_eq!(
        files_in(&copies),
        [1, 2, 3].map(|n| format!("{COPY_NAME}.{n:03}.pb.gz"))
    );

    let host = format!("Host: 127.0.0.1:{}", server.port);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for head in &requests {
        let mut lines = head.lines();
        assert_eq!(
            lines.next(),
            Some("GET /debug/pprof/heap HTTP/1.1"),
            "{head}"
        );
        let headers: Vec<&str> = lines.collect();
        assert!(headers.contains(&host.as_str()), "{head}");
        assert!(headers.contains(&"Connection: close"), "{head}");
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn seconds_goes_into_the_query_and_a_cpu_url_waits_for_the_server() {
    let work = scratch("seconds");
    let copies = work.join("copies");
    let cpu = profile(CPU);
    let bytes = codec::encode(&cpu);
    let server = Server::start(vec![ok(&bytes), ok(&bytes), ok(&bytes)]);

    let with_token = server.url("/debug/pprof/profile?token=abc");
    let ran = rprof(
        &work,
        Some(&copies),
        &["top", &with_token, "--seconds", "5"],
    );
    ran.expect_code(0);
    assert!(ran.stdout.contains("server::parse"), "{}", ran.stdout);
    let requested = server.url("/debug/pprof/profile?token=abc&seconds=5");
    assert!(
        ran.stderr
            .contains(&format!("Fetching profile over HTTP from {requested}\n")),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("the server profiles for 5s before it answers"),
        "{}",
        ran.stderr
    );
    assert!(copies.join("pprof.server.samples.cpu.001.pb.gz").is_file());

    // A CPU URL without --seconds is fetched as given, and says it waits the server's 30 s.
    // Without RPROF_DIR the copy goes to ./pprof.
    let plain = server.url("/debug/pprof/profile");
    let ran = rprof(&work, None, &["traces", &plain]);
    ran.expect_code(0);
    assert!(ran.stdout.contains("server::render"), "{}", ran.stdout);
    assert!(
        ran.stderr.contains("30s (the server's default"),
        "{}",
        ran.stderr
    );
    let default_copy = Path::new("pprof").join("pprof.server.samples.cpu.001.pb.gz");
    assert!(
        ran.stderr
            .contains(&format!("Saved profile in {}", default_copy.display())),
        "{}",
        ran.stderr
    );
    assert_eq!(read_profile(&work.join(&default_copy)), cpu);

    // --seconds applies to any URL.
    let heap_url = server.url("/debug/pprof/heap?token=abc&debug=0");
    rprof(&work, Some(&copies), &["top", &heap_url, "--seconds", "7"]).expect_code(0);

    let requests = server.requests();
    let lines: Vec<&str> = requests.iter().map(|r| r.lines().next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "GET /debug/pprof/profile?token=abc&seconds=5 HTTP/1.1",
            "GET /debug/pprof/profile HTTP/1.1",
            "GET /debug/pprof/heap?token=abc&debug=0&seconds=7 HTTP/1.1",
        ]
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_server_error_is_one_line_with_its_status_and_message() {
    let work = scratch("status");
    let copies = work.join("copies");
    let body = "a CPU profile is already being collected\nsecond line\n";
    let server = Server::start(vec![format!(
        "HTTP/1.1 409 Conflict\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()]);
    let url = server.url("/debug/pprof/profile");
    let ran = rprof(&work, Some(&copies), &["top", &url, "--seconds", "1"]);
    let line = error_line(&ran);
    assert!(line.contains(&format!("{url}?seconds=1")), "{line}");
    assert!(
        line.ends_with("server said 409 Conflict: a CPU profile is already being collected"),
        "{line}"
    );
    assert!(files_in(&copies).is_empty());
    server.requests();
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_body_that_is_not_a_profile_names_the_url() {
    let work = scratch("garbage");
    let copies = work.join("copies");
    let server = Server::start(vec![ok(b"<html>this is not a profile</html>\n")]);
    let url = server.url("/debug/pprof/heap");
    let line = error_line(&rprof(&work, Some(&copies), &["top", &url])).to_owned();
    assert!(line.contains(&url), "{line}");
    assert!(line.contains("not a pprof profile"), "{line}");
    assert!(files_in(&copies).is_empty());
    server.requests();
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_refused_connection_and_https_are_one_line_errors() {
    let work = scratch("refused");
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/debug/pprof/heap");
    let ran = rprof(&work, None, &["top", &url]);
    let line = error_line(&ran);
    assert!(
        line.contains(&format!(
            "cannot fetch {url}: cannot connect to 127.0.0.1:{port}"
        )),
        "{line}"
    );
    assert!(line.to_lowercase().contains("refused"), "{line}");

    // https is refused before anything is fetched, also as a base.
    let ran = rprof(
        &work,
        None,
        &[
            "top",
            &url,
            "--base",
            "https://example.com/debug/pprof/heap",
        ],
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("only http:// URLs") && ran.stderr.contains("curl"));
    assert!(!work.join("pprof").exists());
    let _ = std::fs::remove_dir_all(&work);
}
