//! `cargo rprof web` in a real browser: Debian's chromium, headless, driven through the
//! DevTools protocol (a small client over a WebSocket, below). Each view is loaded from a
//! server started on real fixture profiles, clicked and typed into as a user would; what it
//! shows is checked through the page's DOM and its `window.rprof` state, and a screenshot of
//! each view is kept in `target/rprof-artifacts/web/`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rprof::{cargo_rprof, chromium, codec, run, workspace_root, Fixture, ProfileBuilder};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long a page may take to show a view.
const PATIENCE: Duration = Duration::from_secs(60);

/// Read a child's stderr until a line contains `marker`; return that line and keep draining
/// the rest in a thread (so the child never blocks on a full pipe).
fn wait_for_line(child: &mut Child, marker: &str, what: &str) -> String {
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("reading stderr");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            std::thread::spawn(move || for _ in lines {});
            return line;
        }
    }
    panic!("{what} ended without printing {marker:?}; it printed:\n{seen}");
}

/// `cargo rprof web ... --no-browser --http 127.0.0.1:0`, running until dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(cargo_rprof())
            .args(["rprof", "web", "--no-browser", "--http", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting cargo rprof web");
        let line = wait_for_line(&mut child, "Serving", "cargo rprof web");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no loopback URL in {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless chromium with one page, driven through the DevTools protocol.
struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: String,
}

impl Browser {
    fn launch(chromium: &Path, profile_dir: &Path) -> Browser {
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        let line = wait_for_line(&mut child, "DevTools listening on", "chromium");
        let ws_url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .expect("a ws:// URL")
            .to_owned();
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("connecting to DevTools");
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            session: String::new(),
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false }),
        );
        b.call("Page.enable", json!({}));
        b
    }

    /// Send a command (to the page once attached) and wait for its result; events and other
    /// replies in between are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("sending to DevTools");
        loop {
            let Message::Text(text) = self.ws.read().expect("reading from DevTools") else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if reply["id"] != id {
                continue;
            }
            if let Some(e) = reply.get("error") {
                panic!("{method} failed: {e}");
            }
            return reply["result"].clone();
        }
    }

    /// Evaluate a JS expression in the page (promises awaited) and return its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {}", e["exception"]["description"]);
        }
        r["result"]["value"].clone()
    }

    /// Wait until a JS expression is truthy; return its value.
    fn wait_for(&mut self, expr: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(expr);
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if start.elapsed() > PATIENCE {
                let error = self.eval("document.querySelector('#error').textContent");
                panic!("timed out waiting for `{expr}` (page error: {error})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Load `url` afresh and wait for its view to be drawn.
    fn open(&mut self, url: &str, view: &str) {
        self.call("Page.navigate", json!({ "url": "about:blank" }));
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for(&format!(
            "window.rprof && rprof.ready && rprof.view === '{view}' && location.href === {}",
            json!(url)
        ));
    }

    /// Wait for the view to be drawn after an action that re-renders it.
    fn settle(&mut self, view: &str) {
        self.wait_for(&format!(
            "window.rprof && rprof.ready && rprof.view === '{view}'"
        ));
    }

    /// A left click at viewport coordinates.
    fn click(&mut self, x: f64, y: f64) {
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Click the center of the element `selector`.
    fn click_on(&mut self, selector: &str) {
        let r = self.eval(&format!(
            "(() => {{ const r = document.querySelector({}).getBoundingClientRect();
                       return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        ));
        self.click(r[0].as_f64().unwrap(), r[1].as_f64().unwrap());
    }

    /// Focus `selector` and type `text` into it, as a keyboard would.
    fn type_into(&mut self, selector: &str, text: &str) {
        self.eval(&format!(
            "document.querySelector({}).focus()",
            json!(selector)
        ));
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Save a PNG of the viewport.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = workspace_root().join("target/rprof-artifacts/web");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_profile(fixture: &Fixture, name: &str) -> PathBuf {
    run(fixture.rprof(&[
        "test",
        "--cpuprofile",
        name,
        "--cpuprofilerate",
        "1000",
        "--",
        "split_three_to_one",
    ]))
    .expect_code(0);
    fixture.path(name)
}

/// A duration as `cargo rprof top` prints it (`2999ms`, `1.50s`) in nanoseconds.
fn nanoseconds(text: &str) -> f64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "s" => 1e9,
        "ms" => 1e6,
        "us" => 1e3,
        "ns" | "" => 1.0,
        other => panic!("unknown unit {other:?} in {text:?}"),
    };
    (number.parse::<f64>().unwrap() * factor).round()
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn views_in_a_real_browser() {
    let fixture = Fixture::copy("cpu_split");
    let cpu = cpu_profile(&fixture, "cpu.prof");
    let Some(chromium) = chromium() else { return };
    let server = Server::start(&[cpu.to_str().unwrap()]);
    let mut b = Browser::launch(&chromium, &fixture.path("chromium"));
    let url = &server.url;

    // Top: rows sorted by flat; a click on the cum header sorts by cum; the regex box filters.
    b.open(&format!("{url}/#view=top"), "top");
    let rows = b.eval("document.querySelectorAll('#top tbody tr').length");
    assert!(f64_of(&rows) >= 5.0, "top shows {rows} rows");
    b.click_on("#top th[data-sort=cum]");
    b.settle("top");
    let cums = b.eval("rprof.lastTop.map(r => r.cum)");
    let cums: Vec<f64> = cums.as_array().unwrap().iter().map(f64_of).collect();
    assert!(
        cums.windows(2).all(|w| w[0] >= w[1]),
        "not by cum: {cums:?}"
    );
    assert!(b
        .eval("location.hash")
        .as_str()
        .unwrap()
        .contains("sort=cum"));
    b.screenshot("top");
    b.type_into("#search", "hot_");
    b.eval("document.querySelector('#search').dispatchEvent(new Event('change'))");
    b.settle("top");
    let names = b.eval("rprof.lastTop.map(r => r.name)");
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(
        {
            let mut n = names.clone();
            n.sort();
            n
        },
        ["cpu_split::hot_one", "cpu_split::hot_three"],
        "the regex box keeps matching rows"
    );

    // The same numbers as the CLI's top: hot_three's cum in the page and in `cargo rprof top`.
    let hot_three_cum = f64_of(&b.eval(
        "fetch('/api/top').then(r => r.json()).then(t => t.rows.find(r => r.name === 'cpu_split::hot_three').cum)",
    ));
    let cli = run({
        let mut c = Command::new(cargo_rprof());
        c.args(["rprof", "top", "--nodecount", "100"]).arg(&cpu);
        c
    });
    cli.expect_code(0);
    let label = b.eval(
        "fetch('/api/top').then(r => r.json()).then(t => t.rows.find(r => r.name === 'cpu_split::hot_three').cum_label)",
    );
    let cli_line = cli
        .stdout
        .lines()
        .find(|l| l.ends_with(" cpu_split::hot_three"))
        .expect("hot_three in the CLI's top");
    // The CLI prints 3 significant digits and a percentage of two decimals: the page's value
    // rounds to the one and its cum% is the other.
    assert_eq!(
        cli_line.split_whitespace().nth(3),
        label.as_str(),
        "the page's top prints hot_three's cum as the CLI does: {cli_line}"
    );
    let cli_cum = nanoseconds(cli_line.split_whitespace().nth(3).unwrap());
    assert!(
        (cli_cum - hot_three_cum).abs() <= cli_cum * 0.005,
        "the page's cum of hot_three ({hot_three_cum}) is the CLI's: {cli_line}"
    );
    // What the page shows in hot_three's row, cell by cell: flat, flat%, sum%, cum, cum%. The
    // rows are filtered now, so sum% is the page's own; the rest is the CLI's to the digit
    // (the percentages come from one formatter: a tie in the last digit once rounded apart).
    let page_row = b.eval(
        "(() => { const tr = [...document.querySelectorAll('#top tbody tr')].find(tr => tr.querySelector('td.name').textContent.startsWith('cpu_split::hot_three')); return [...tr.querySelectorAll('td')].slice(0, 5).map(td => td.textContent); })()",
    );
    let page_row: Vec<&str> = page_row
        .as_array()
        .expect("hot_three's row in the page")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let cli_cells: Vec<&str> = cli_line.split_whitespace().take(5).collect();
    for i in [0, 1, 3, 4] {
        assert_eq!(
            page_row[i], cli_cells[i],
            "cell {i} of hot_three's row: page {page_row:?}, CLI {cli_line}"
        );
    }

    // Where the page formats a share itself (sum% of a filtered table, the flame graph's search
    // result) it prints what the CLI's formatter prints, exact ties in the last digit included:
    // 601 of 800 is 75.125% in floating point, 75.12% to Rust and Go, 75.13% to toFixed.
    let grid: Vec<(i64, i64)> = [800i64, 4000, 333, 7]
        .iter()
        .flat_map(|&t| (0..=t).map(move |v| (v, t)))
        .collect();
    let page_pcts = b.eval(&format!(
        "{:?}.map(([v, t]) => rprof.pct(v, t))",
        grid.iter().map(|&(v, t)| [v, t]).collect::<Vec<_>>()
    ));
    let page_pcts = page_pcts.as_array().expect("the page's percentages");
    let mut differ = vec![];
    for (&(v, t), page) in grid.iter().zip(page_pcts) {
        let cli = rprof_core::report::TopTable::percent(v, t);
        if page.as_str() != Some(cli.as_str()) {
            differ.push(format!("{v}/{t}: page {page}, CLI {cli}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} differ: {:?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );

    // Flame graph: a click on a frame zooms into it; the URL keeps the zoom across a reload.
    b.open(&format!("{url}/#view=flame"), "flame");
    assert_eq!(b.eval("rprof.flame.zoomed.name"), json!("root"));
    let before = b.eval("rprof.flame.rectOf('cpu_split::hot_one')");
    b.screenshot("flame");
    b.click(
        f64_of(&before["x"]) + f64_of(&before["w"]) / 2.0,
        f64_of(&before["y"]) + 8.0,
    );
    b.wait_for("rprof.flame.zoomed.name === 'cpu_split::hot_one'");
    let after = b.eval("rprof.flame.rectOf('cpu_split::hot_one')");
    let width = f64_of(&b.eval("document.querySelector('#flame').clientWidth"));
    assert!(
        f64_of(&before["w"]) < width * 0.5 && (f64_of(&after["w"]) - width).abs() < 1.0,
        "hot_one fills the width once zoomed into: {before} -> {after} of {width}"
    );
    let zoomed_url = b.eval("location.href");
    assert!(
        zoomed_url.as_str().unwrap().contains("zoom="),
        "{zoomed_url}"
    );
    b.screenshot("flame-zoomed");
    b.open(zoomed_url.as_str().unwrap(), "flame");
    assert_eq!(
        b.eval("rprof.flame.zoomed.name"),
        json!("cpu_split::hot_one"),
        "a reload keeps the zoom"
    );
    b.click_on("#reset");
    b.settle("flame");
    assert_eq!(b.eval("rprof.flame.zoomed.name"), json!("root"));

    // Search: the matching frames are highlighted and their sum is shown, the function's cum.
    b.type_into("#search", "hot_three");
    b.wait_for("rprof.flame.matchCount > 0");
    assert_eq!(f64_of(&b.eval("rprof.flame.matchSum")), hot_three_cum);
    let shown = b.eval("document.querySelector('#search-result').textContent");
    let cli_pct = cli_line.split_whitespace().nth(4).unwrap();
    assert!(
        shown.as_str().unwrap().contains(&format!("({cli_pct} of")),
        "the sum is shown as {cli_pct} of the total, as top's cum% of hot_three: {shown}"
    );
    let pixel = b.eval(
        "(() => { const r = rprof.flame.rectOf('cpu_split::hot_three');
                  const c = document.querySelector('#flame'); const box = c.getBoundingClientRect();
                  const d = c.getContext('2d').getImageData(r.x - box.left + 1, r.y - box.top + 2, 1, 1).data;
                  return [d[0], d[1], d[2]]; })()",
    );
    assert_eq!(
        pixel,
        json!([206, 64, 231]),
        "hot_three is drawn highlighted"
    );
    assert!(b
        .eval("location.hash")
        .as_str()
        .unwrap()
        .contains("q=hot_three"));
    b.screenshot("flame-search");

    // Filters: focus from the form reaches the API and the URL.
    b.open(&format!("{url}/#view=top"), "top");
    b.type_into("#filters input[name=focus]", "hot_one");
    b.click_on("#filters button[type=submit]");
    b.wait_for("rprof.ready && location.hash.includes('focus=hot_one')");
    let names = b.eval("rprof.lastTop.map(r => r.name)");
    assert!(
        !names
            .as_array()
            .unwrap()
            .contains(&json!("cpu_split::hot_three")),
        "focus=hot_one leaves hot_three out: {names}"
    );

    // Callers of one function, inverted: its root is the function, its callers below.
    let callers_url = format!("{url}/#view=callers&fn=cpu_split::hot_three");
    b.open(&callers_url, "callers");
    assert_eq!(
        b.eval("rprof.flame.root.name"),
        json!("cpu_split::hot_three")
    );
    assert_eq!(
        b.eval("rprof.flame.root.children.map(c => c.name)"),
        json!(["cpu_split::split"])
    );
    b.screenshot("callers");

    // Peek: hot_three's callers and callees, as `cargo rprof peek` lists them.
    b.open(
        &format!("{url}/#view=peek&re=%5Ecpu_split%3A%3Ahot_three%24"),
        "peek",
    );
    let entries = b.eval("rprof.lastPeek.entries");
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["callers"][0]["name"], json!("cpu_split::split"));
    let cli = run({
        let mut c = Command::new(cargo_rprof());
        c.args(["rprof", "peek", "^cpu_split::hot_three$"])
            .arg(&cpu);
        c
    });
    cli.expect_code(0);
    for edge in entries[0]["callers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(entries[0]["callees"].as_array().unwrap())
    {
        let mark = if edge["inline"] == json!(true) {
            " (inline)"
        } else {
            ""
        };
        let (name, label) = (
            format!("|   {}{mark}", edge["name"].as_str().unwrap()),
            edge["label"].as_str().unwrap(),
        );
        assert!(
            cli.stdout
                .lines()
                .any(|l| l.ends_with(&name) && l.split_whitespace().next() == Some(label)),
            "{name} {label} as in `cargo rprof peek`:\n{}",
            cli.stdout
        );
    }
    assert_eq!(
        b.eval("document.querySelector('#peek tr.self td.name').textContent"),
        json!("cpu_split::hot_three")
    );
    b.screenshot("peek");

    // Source: hot_three's lines with their values, the same lines as `cargo rprof list`.
    b.open(
        &format!("{url}/#view=source&src=%5Ecpu_split%3A%3Ahot_three%24"),
        "source",
    );
    let listing = b.eval("rprof.lastSource.listings[0]");
    assert_eq!(listing["name"], json!("cpu_split::hot_three"));
    assert!(
        listing["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("src/lib.rs")),
        "the fixture's source was found: {}",
        listing["path"]
    );
    let shown_lines = b.eval(
        "[...document.querySelectorAll('table.source tr')].map(r => r.textContent).join('\\n')",
    );
    assert!(
        shown_lines.as_str().unwrap().contains("pub fn hot_three("),
        "the function's own line is shown: {shown_lines}"
    );
    let cli = run({
        let mut c = Command::new(cargo_rprof());
        c.args(["rprof", "list", "^cpu_split::hot_three$"])
            .arg(&cpu);
        c
    });
    cli.expect_code(0);
    // pprof's list prints `flat cum number: text`, `.` for zero.
    let cli_hot: Vec<i64> = cli
        .stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (flat, cum, number) = (w.next()?, w.next()?, w.next()?);
            let number = number.strip_suffix(':')?.parse().ok()?;
            (flat != "." || cum != ".").then_some(number)
        })
        .collect();
    let page_hot: Vec<i64> = listing["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["flat"] != json!(0) || l["cum"] != json!(0))
        .map(|l| l["number"].as_i64().unwrap())
        .collect();
    assert!(!page_hot.is_empty());
    assert_eq!(
        page_hot, cli_hot,
        "lines with samples, as `cargo rprof list` shows"
    );
    b.screenshot("source");

    // A bad filter is one line on the page, not a broken page.
    b.open(&format!("{url}/#view=top&focus=("), "top");
    let error = b.eval("document.querySelector('#error').textContent");
    assert_eq!(
        error,
        json!(r#"bad --focus regular expression "(": unclosed group"#)
    );
}

/// The sum of one sample type's values in a profile file.
fn total(file: &Path, sample_type: &str) -> i64 {
    let p = rprof::read_profile(file);
    let i = p.sample_index(sample_type).unwrap();
    p.sample.iter().map(|s| s.value[i]).sum()
}

#[test]
fn diff_of_two_runs() {
    let fixture = Fixture::copy("cpu_split");
    let base = cpu_profile(&fixture, "base.prof");
    let new = cpu_profile(&fixture, "new.prof");
    let Some(chromium) = chromium() else { return };
    let server = Server::start(&[new.to_str().unwrap(), "--diff_base", base.to_str().unwrap()]);
    let mut b = Browser::launch(&chromium, &fixture.path("chromium"));
    b.open(&format!("{}/#view=flame", server.url), "flame");
    assert_eq!(b.eval("rprof.meta.diff"), json!(true));
    // The root holds both runs apart: the new run's total and the base's.
    assert_eq!(
        f64_of(&b.eval("rprof.flame.root.value")),
        total(&new, "cpu") as f64
    );
    assert_eq!(
        f64_of(&b.eval("rprof.flame.root.base")),
        total(&base, "cpu") as f64
    );
    // Frames are colored by their delta: red where the new run spent more, green less.
    let colors = b.eval(
        "(() => { const out = {}; const walk = n => { const d = n.value - n.base;
                    const c = rprof.flame.color(n); if (d > 0.1 * n.base && n.base > 0) out.grew = c;
                    if (-d > 0.1 * n.base && n.value > 0) out.shrank = c;
                    n.children.forEach(walk); }; walk(rprof.flame.root); return out; })()",
    );
    for (kind, channel) in [("grew", 0), ("shrank", 1)] {
        if let Some(c) = colors[kind].as_str() {
            let rgb: Vec<u32> = c
                .trim_start_matches("rgb(")
                .trim_end_matches(')')
                .split(',')
                .map(|x| x.trim().parse().unwrap())
                .collect();
            assert!(
                rgb[channel] > rgb[1 - channel] && rgb[channel] > rgb[2],
                "a frame that {kind} is drawn {c}"
            );
        }
    }
    assert!(
        colors.as_object().is_some_and(|o| !o.is_empty()),
        "two runs of a timed loop differ somewhere: {colors}"
    );
    b.screenshot("flame-diff");
    b.open(&format!("{}/#view=top", server.url), "top");
    b.screenshot("top-diff");
}

#[test]
fn sample_type_switch_on_a_memory_profile() {
    let fixture = Fixture::copy("mem_sites");
    run(fixture.rprof(&[
        "test",
        "--memprofile",
        "mem.prof",
        "--memprofilerate",
        "1",
        "--",
        "exact",
    ]))
    .expect_code(0);
    let Some(chromium) = chromium() else { return };
    let server = Server::start(&[fixture.path("mem.prof").to_str().unwrap()]);
    let mut b = Browser::launch(&chromium, &fixture.path("chromium"));
    b.open(&format!("{}/#view=top", server.url), "top");
    let types = b.eval("[...document.querySelectorAll('#sample_index option')].map(o => o.value)");
    assert_eq!(
        types,
        json!([
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space",
            "peak_objects",
            "peak_space"
        ])
    );
    assert_eq!(b.eval("rprof.lastTopType"), json!("alloc_space"));
    b.eval(
        "(() => { const s = document.querySelector('#sample_index'); s.value = 'alloc_objects';
                  s.dispatchEvent(new Event('change')); })()",
    );
    b.wait_for("rprof.ready && rprof.lastTopType === 'alloc_objects'");
    assert!(b
        .eval("location.hash")
        .as_str()
        .unwrap()
        .contains("sample_index=alloc_objects"));
    b.screenshot("top-alloc-objects");
    let flame_url = format!("{}/#view=flame&sample_index=inuse_space", server.url);
    b.open(&flame_url, "flame");
    assert_eq!(
        b.eval("document.querySelector('#sample_index').value"),
        json!("inuse_space")
    );
    b.screenshot("flame-inuse-space");
    // rprof's own peak-heap type is one more choice of the same switch.
    b.open(
        &format!("{}/#view=top&sample_index=peak_space", server.url),
        "top",
    );
    b.wait_for("rprof.ready && rprof.lastTopType === 'peak_space'");
    assert_eq!(
        b.eval("document.querySelector('#sample_index').value"),
        json!("peak_space")
    );
}

/// A profile shaped like the issue's benchmark: 1M samples over 50k distinct stacks of depth
/// 20-60 drawn from 10k functions (stacks share their outer frames, as real ones do).
fn big_profile(path: &Path) {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    let mapping = b.mapping(&rprof_core::builder::MappingInfo {
        memory_limit: 0x1000_0000,
        filename: "/bin/big".into(),
        symbolized: true,
        ..Default::default()
    });
    let locations: Vec<u64> = (0..10_000u64)
        .map(|i| {
            let name = format!("big::module_{}::function_{i}", i % 97);
            let f = b.function(&name, &name, "src/big.rs", i as i64);
            b.location(mapping, 0x1000 + i * 16, &[(f, i as i64 + 1)])
        })
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut total = 0;
    let mut stack = Vec::new();
    for i in 0..50_000u64 {
        let depth = 20 + (next() % 41) as usize;
        stack.clear();
        let mut f = next() % 8;
        for level in 0..depth {
            stack.push(locations[f as usize]);
            // A few callees per function near the root, more further down.
            let fanout = 2 + level as u64;
            f = (f * 31 + next() % fanout + level as u64 * 211) % 10_000;
        }
        stack.push(locations[(i % 10_000) as usize]); // distinct leaves
        stack.reverse(); // leaf first
        let samples = if i == 49_999 {
            1_000_000 - total
        } else {
            1 + (next() % 39) as i64
        };
        total += samples;
        b.add_sample(&stack, &[samples, samples * 10_000_000]);
    }
    codec::write_file(path, &b.build()).unwrap();
}

#[test]
fn first_render_of_a_big_flame_graph() {
    let Some(chromium) = chromium() else { return };
    let dir = std::env::temp_dir().join(format!("rprof-web-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.prof");
    big_profile(&file);
    let server = Server::start(&[file.to_str().unwrap()]);
    let mut b = Browser::launch(&chromium, &dir.join("chromium"));
    let started = Instant::now();
    b.open(&format!("{}/#view=flame", server.url), "flame");
    let load = started.elapsed();
    let render_ms = f64_of(&b.eval("rprof.renderMs"));
    let frames = b.eval("(() => { let n = 0; const walk = f => { n++; f.children.forEach(walk); }; walk(rprof.flame.root); return n; })()");
    let fetch_ms = f64_of(&b.eval(
        "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/flame'))
           .map(e => e.responseEnd - e.startTime)[0]",
    ));
    eprintln!(
        "big profile (1M samples, 50k stacks, 10k functions): flame graph first render {render_ms:.1} ms in the browser ({frames} frames sent); /api/flame answered in {fetch_ms:.0} ms; whole page load {:.2} s",
        load.as_secs_f64()
    );
    b.screenshot("flame-big");

    // Zoomed into a small frame, the server sends that frame's subtree in finer detail.
    let size = "(n => { let k = 0; const walk = f => { k++; f.children.forEach(walk); }; walk(n); return k; })";
    let target = b.eval(
        "(() => { const row = rprof.flame.rects[4]; const r = row.reduce((a, b) => (b.w > a.w ? b : a));
                  window.before = rprof.flame; return { name: r.node.name, x: r.x, w: r.w }; })()",
    );
    let name = target["name"].as_str().unwrap().to_owned();
    let before = f64_of(&b.eval(&format!("{size}(rprof.flame.zoomed.children.length ? rprof.flame.rects[4].reduce((a, b) => (b.w > a.w ? b : a)).node : null)")));
    let rect = b.eval(&format!("rprof.flame.rectOf({})", json!(name)));
    b.click(
        f64_of(&rect["x"]) + f64_of(&rect["w"]) / 2.0,
        f64_of(&rect["y"]) + 8.0,
    );
    b.wait_for(&format!(
        "rprof.ready && rprof.flame !== window.before && rprof.flame.zoomed.name === {}",
        json!(name)
    ));
    let after = f64_of(&b.eval(&format!("{size}(rprof.flame.zoomed)")));
    eprintln!("zoomed into {name}: {before} frames before, {after} after fetching its detail");
    assert!(
        after > before,
        "zooming fetched more detail: {before} -> {after} frames"
    );
    b.screenshot("flame-big-zoomed");
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One raw HTTP/1.1 GET with the given Host header: the status code and the body.
fn http_get(url: &str, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn the_server_refuses_what_it_should_and_stops_on_ctrl_c() {
    let fixture = Fixture::copy("cpu_split");
    let cpu = cpu_profile(&fixture, "cpu.prof");
    let cpu = cpu.to_str().unwrap();

    // A non-loopback address needs an explicit flag; a bad filter fails before serving.
    for (args, expected) in [
        (
            vec!["--http", "0.0.0.0:0", cpu],
            "error: --http 0.0.0.0:0 is not a loopback address: anyone who can reach it would see the profile; add --http-allow-remote to serve it anyway",
        ),
        (
            vec!["--focus", "(", cpu],
            r#"error: bad --focus regular expression "(": unclosed group"#,
        ),
    ] {
        let ran = run({
            let mut c = Command::new(cargo_rprof());
            c.args(["rprof", "web", "--no-browser"]).args(&args);
            c
        });
        assert_ne!(ran.code, Some(0), "{args:?}");
        assert_eq!(ran.stderr.trim(), expected, "{args:?}");
    }
    let ran = run({
        let mut c = Command::new(cargo_rprof());
        c.args(["rprof", "web", "--no-browser", "/no/such.prof"]);
        c
    });
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.starts_with("error: /no/such.prof: ")
            && ran
                .stderr
                .trim()
                .ends_with("No such file or directory (os error 2)")
            && ran.stderr.lines().count() == 1,
        "{}",
        ran.stderr
    );

    let server = Server::start(&[cpu]);
    let url = &server.url;
    let host = url.trim_start_matches("http://");
    let (status, body) = http_get(url, "/", host);
    assert_eq!(status, 200);
    assert!(
        body.contains("<script type=\"module\" src=\"app.js\">"),
        "{body}"
    );
    let (status, body) = http_get(url, "/api/top?focus=hot_three", host);
    assert_eq!(status, 200);
    assert!(body.contains("\"name\":\"cpu_split::hot_three\""), "{body}");
    // Bad requests: 4xx and one line saying why.
    for (path, status, line) in [
        ("/api/top?fokus=x", 400, "unknown parameter \"fokus\" (known: sample_index, granularity, unit, focus, ignore, hide, show, show_from, prune_from, tagfocus, tagignore, f, zoom)"),
        ("/api/top?sample_index=nope", 400, "no sample type `nope` in this profile (it has: samples, cpu)"),
        ("/api/flame?f=no_such_function", 400, "no function named \"no_such_function\" in the profile"),
        ("/api/peek", 400, "peek needs f=REGEX"),
        ("/api/nope", 404, "no such API: /api/nope"),
        ("/../../etc/passwd", 404, "not found: /../../etc/passwd"),
    ] {
        assert_eq!(http_get(url, path, host), (status, format!("{line}\n")), "{path}");
    }
    // A page elsewhere reaching the port through DNS rebinding names another host.
    let (status, _) = http_get(url, "/api/meta", "attacker.example");
    assert_eq!(status, 403);

    // Ctrl-C ends it.
    let mut server = server;
    let pid = server.child.id().to_string();
    run({
        let mut c = Command::new("kill");
        c.args(["-INT", &pid]);
        c
    })
    .expect_code(0);
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(2), "ended by SIGINT: {status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still serving after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
