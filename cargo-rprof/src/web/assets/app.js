// rprof's web UI: views over the server's JSON API. All state lives in the URL fragment
// (view, sample type, filters, search, zoom, ...), so a link can be shared and a reload keeps
// the view. `window.rprof` exposes what is on screen, for tests and the curious.

import { FlameGraph } from "./flame.js";

const FILTERS = ["focus", "ignore", "hide", "show", "show_from", "prune_from", "tagfocus", "tagignore"];
// What the API takes besides the filters, as the CLI names it.
const OPTIONS = ["sample_index", "granularity", "unit"];
const $ = (sel) => document.querySelector(sel);
const main = $("#main");
const rprof = (window.rprof = { ready: false, view: null, flame: null, renderMs: null });
let meta = null;
const cache = new Map();
let rendering = 0; // counts renders, so a slow answer for an old one is dropped

// ---- state in the URL fragment ----

function state() {
  return new URLSearchParams(location.hash.slice(1));
}

// Change some state keys (null or "" removes one) and render; `push` adds a history entry.
function update(changes, push = true) {
  remember(changes, push);
  render();
}

// Change some state keys without rendering (the view already shows them).
function remember(changes, push = false) {
  const s = state();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === "") s.delete(k);
    else s.set(k, v);
  }
  const url = "#" + s.toString();
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

// The API query for the current filters and sample type (plus `extra`).
function apiQuery(s, extra = {}) {
  const q = new URLSearchParams();
  for (const k of [...OPTIONS, ...FILTERS]) if (s.get(k)) q.set(k, s.get(k));
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

async function api(endpoint, query) {
  const url = `/api/${endpoint}?${query}`;
  if (!cache.has(url)) {
    cache.set(
      url,
      fetch(url).then(async (r) => {
        if (!r.ok) throw new Error((await r.text()).trim());
        return r.json();
      }),
    );
  }
  try {
    return await cache.get(url);
  } catch (e) {
    cache.delete(url);
    throw e;
  }
}

// ---- values as pprof prints them ----

const TIME = [["s", 1e9], ["ms", 1e6], ["us", 1e3], ["ns", 1]];
const MEMORY = [["TB", 1024 ** 4], ["GB", 1024 ** 3], ["MB", 1024 ** 2], ["kB", 1024], ["B", 1]];

function format(value, unit) {
  const scales = unit === "nanoseconds" ? TIME : unit === "bytes" ? MEMORY : null;
  if (!scales || value === 0) return String(value);
  const abs = Math.abs(value);
  const [name, factor] = scales.find(([, f]) => abs >= f) || scales[scales.length - 1];
  const text = (value / factor).toFixed(2).replace(/\.00$/, "");
  return text + name;
}

// A share of a total for what the server did not label, exactly as the CLI prints it (Go's
// pprof): |v / total| * 100; "100%" within 0.05 of it; two decimals from 1% up; below, Go's
// %.2g. Rounding is on the double's exact decimal value, ties to even, as Rust and Go round:
// toFixed would print 601 of 800 (75.125 exactly) as 75.13%, the CLI as 75.12%.
function pct(v, total) {
  if (!total) return "";
  const r = Math.abs(v / total) * 100;
  if (r >= 99.95 && r <= 100.05) return "100%";
  if (r === 0) return "0%";
  if (r >= 1) return roundHalfEven(r, 2) + "%";
  // %.2g: two significant digits, trailing zeros dropped, an exponent below 1e-4.
  const exact = r.toFixed(100);
  let lead = exact.search(/[1-9]/) - 2; // zeros after the point before the first digit
  let text = roundHalfEven(r, lead + 2);
  if (text.replace(/^0\.0*/, "").length > 2) lead -= 1; // 0.0996 rounded up to 0.100
  if (lead >= 4) {
    const digits = text.replace(/^0\.0*/, "").slice(0, 2).replace(/0$/, "");
    const mantissa = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    return `${mantissa}e-${String(lead + 1).padStart(2, "0")}%`;
  }
  text = text.replace(/0+$/, "").replace(/\.$/, "");
  return text + "%";
}

// `x` (≥ 0) with `places` decimals, rounded half to even on its exact binary value.
function roundHalfEven(x, places) {
  const [whole, frac] = x.toFixed(100).split(".");
  const kept = whole + frac.slice(0, places);
  const rest = frac.slice(places);
  const odd = Number(kept[kept.length - 1]) % 2 === 1;
  const up = rest[0] > "5" || (rest[0] === "5" && (/[1-9]/.test(rest.slice(1)) || odd));
  const digits = up ? (BigInt(kept) + 1n).toString().padStart(kept.length, "0") : kept;
  const cut = digits.length - places;
  return places ? digits.slice(0, cut) + "." + digits.slice(cut) : digits;
}
rprof.pct = pct;

// A regular expression from user input, or null when empty; a bad one is reported.
function regex(text) {
  if (!text) return null;
  try {
    return new RegExp(text);
  } catch (e) {
    showError(`bad regular expression ${JSON.stringify(text)}: ${e.message}`);
    return null;
  }
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

// ---- views ----

function linkTo(text, changes, title) {
  return el("a", { title: title || "", on: { click: () => update(changes) } }, text);
}

// Whether a newer render has started since `ticket` (its answer must not be shown).
const stale = (ticket) => ticket !== rendering;

async function topView(s) {
  const ticket = rendering;
  const data = await api("top", apiQuery(s));
  if (stale(ticket)) return;
  const sortKey = s.get("sort") || "flat";
  const asc = s.get("order") === "asc";
  const filter = regex(s.get("q"));
  let rows = data.rows.filter((r) => !filter || filter.test(r.name));
  // As pprof sorts: by |value|, then by name.
  const byName = (a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0);
  const cmp = {
    flat: (a, b) => Math.abs(b.flat) - Math.abs(a.flat) || -byName(a, b),
    cum: (a, b) => Math.abs(b.cum) - Math.abs(a.cum) || -byName(a, b),
    name: (a, b) => -byName(a, b),
  }[sortKey] || (() => 0);
  rows = rows.slice().sort((a, b) => (asc ? -cmp(a, b) : cmp(a, b)));
  rprof.lastTop = rows;
  rprof.lastTopType = data.sample_type;

  const search = el("input", { id: "search", placeholder: "regex: keep matching functions", value: s.get("q") || "" });
  search.addEventListener("change", () => update({ q: search.value }, false));
  search.addEventListener("keyup", (e) => e.key === "Enter" && update({ q: search.value }, false));
  const bar = el("div", { class: "bar" }, search,
    el("span", { class: "info", id: "top-info" }, `${data.sample_type}: ${rows.length} of ${data.rows.length} rows`));
  const labels = el("pre", { class: "labels" }, data.labels.join("\n"));

  const head = (key, label) =>
    el("th", {
      class: (key === "name" ? "name " : "") + (key === sortKey ? "sorted" + (asc ? " asc" : "") : ""),
      "data-sort": key,
      on: { click: () => update({ sort: key, order: key === sortKey && !asc ? "asc" : "" }, false) },
    }, label);
  const table = el("table", { id: "top" },
    el("thead", {}, el("tr", {}, head("flat", "flat"), el("th", {}, "flat%"), el("th", {}, "sum%"),
      head("cum", "cum"), el("th", {}, "cum%"), head("name", "name"), el("th", {}, ""))));
  const body = el("tbody");
  // sum% is the CLI's when the rows are top's own; filtered or re-sorted, it sums what is shown.
  const asTop = !filter && sortKey === "flat" && !asc;
  let sum = 0;
  for (const r of rows) {
    sum += r.flat;
    const delta = (v) => (!meta.diff || v === 0 ? "" : v > 0 ? "grew" : "shrank");
    body.append(el("tr", {},
      el("td", { class: delta(r.flat) }, r.flat_label), el("td", {}, r.flat_pct),
      el("td", {}, asTop ? r.sum_pct : pct(sum, data.total)),
      el("td", { class: delta(r.cum) }, r.cum_label), el("td", {}, r.cum_pct),
      el("td", { class: "name" }, linkTo(r.name, { view: "callers", fn: r.name, zoom: null }, "its callers"), r.inline),
      el("td", { class: "acts" },
        linkTo("callers", { view: "callers", fn: r.name, zoom: null }),
        linkTo("peek", { view: "peek", re: "^" + escapeRegex(r.name) + "$" }),
        linkTo("source", { view: "source", src: "^" + escapeRegex(r.name) + "$" }),
        linkTo("focus", { view: "flame", focus: "^" + escapeRegex(r.name) + "$", zoom: null }))));
  }
  table.append(body);
  main.replaceChildren(labels, bar, table);
}

function escapeRegex(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// The flame graph (or, with `fn`, the callers of one function) with zoom and search.
async function flameView(s, callers) {
  const fn = s.get("fn");
  if (callers && !fn) {
    main.replaceChildren(el("p", { class: "empty" },
      "Choose a function: click a name in the Top view, or type one:"), fnPicker(""));
    return;
  }
  // The server sends frames down to a fraction of the zoomed frame: with a zoom, it sends the
  // path to it and its subtree in full detail.
  const zoom = JSON.parse(s.get("zoom") || "[]");
  const extra = callers ? { f: fn } : {};
  if (zoom.length) extra.zoom = JSON.stringify(zoom);
  const ticket = rendering;
  const data = await api("flame", apiQuery(s, extra));
  if (stale(ticket)) return;
  const canvas = el("canvas", { class: "flame", id: "flame" });
  const search = el("input", { id: "search", placeholder: "regex: highlight and sum", value: s.get("q") || "" });
  const result = el("span", { class: "hit", id: "search-result" });
  const reset = el("button", { id: "reset", on: { click: () => update({ zoom: null }) } }, "Reset zoom");
  const title = callers
    ? el("span", { class: "info" }, `Callers of `, el("b", {}, fn), ` (${data.sample_type})`)
    : el("span", { class: "info" }, `${data.sample_type}, total ${data.total_label}`);
  if (meta.diff) {
    title.append(`, base ${format(data.tree[2], data.unit)}: width is both runs, red grew, green shrank`);
  }
  const bar = el("div", { class: "bar" }, search, reset, result, title);
  main.replaceChildren(bar, callers ? fnPicker(fn) : "", canvas);

  const diff = meta.diff;
  if (rprof.flame) rprof.flame.dispose();
  const started = performance.now();
  const graph = new FlameGraph(canvas, data, {
    diff,
    rootLabel: callers ? fn : "all",
    format: (v) => format(v, data.unit),
    tooltip: $("#tooltip"),
    onZoom: (path, node) => {
      const changes = { zoom: path.length ? JSON.stringify(path) : null };
      // Above the frame the data was fetched for, siblings are missing; far below it, detail
      // was left out: fetch again. Otherwise what is loaded is enough.
      if (path.length < fetchedAt.depth || graph.width(node) * 8 < graph.width(fetchedAt)) update(changes);
      else remember(changes, true);
    },
  });
  rprof.flame = graph;
  graph.zoomTo(zoom);
  const fetchedAt = graph.zoomed;
  const showSearch = () => {
    graph.search(regex(search.value));
    result.textContent = graph.matcher
      ? `${graph.matchCount} ${graph.matchCount === 1 ? "frame matches" : "frames match"}: ${format(graph.matchSum, data.unit)} (${pct(graph.matchSum, graph.root.value)} of ${format(graph.root.value, data.unit)})` +
        (fetchedAt.depth > 0 ? ", in the stacks through the zoomed frame" : "")
      : "";
  };
  showSearch();
  graph.draw();
  rprof.renderMs = performance.now() - started;
  search.addEventListener("input", () => {
    showSearch();
    graph.draw();
    remember({ q: search.value });
  });
}

function fnPicker(current) {
  const input = el("input", { id: "fn", placeholder: "function name, exactly as in Top", value: current });
  input.addEventListener("keyup", (e) => e.key === "Enter" && update({ view: "callers", fn: input.value, zoom: null }));
  return el("div", { class: "bar" }, el("span", { class: "info" }, "Function"), input);
}

// pprof's peek: for each node matching a regex, its callers above and its callees below.
async function peekView(s) {
  const re = s.get("re") || "";
  const input = el("input", { id: "peek-re", placeholder: "regex: functions to peek at", value: re });
  input.addEventListener("keyup", (e) => e.key === "Enter" && update({ re: input.value }));
  const bar = el("div", { class: "bar" }, input, el("span", { class: "info" }, "callers above, callees below each function"));
  if (!re) {
    main.replaceChildren(bar, el("p", { class: "empty" }, "Type a regular expression and press Enter."));
    return;
  }
  const ticket = rendering;
  const data = await api("peek", apiQuery(s, { f: re }));
  if (stale(ticket)) return;
  const table = el("table", { id: "peek" },
    el("thead", {}, el("tr", {}, ...["flat", "flat%", "cum", "cum%", "calls", "name"].map((h) => el("th", { class: h === "name" ? "name" : "" }, h)))));
  for (const e of data.entries) {
    const body = el("tbody", { class: "entry" });
    const edge = (x, kind) => el("tr", { class: kind },
      el("td", {}, ""), el("td", {}, ""), el("td", {}, ""), el("td", {}, ""),
      el("td", {}, `${x.label} ${x.pct}`),
      el("td", { class: "name" }, linkTo(x.name, { re: "^" + escapeRegex(x.name) + "$" }), x.inline ? " (inline)" : ""));
    for (const c of e.callers) body.append(edge(c, "caller"));
    body.append(el("tr", { class: "self" },
      el("td", {}, e.flat_label), el("td", {}, e.flat_pct),
      el("td", {}, e.cum_label), el("td", {}, e.cum_pct), el("td", {}, ""),
      el("td", { class: "name" }, e.name)));
    for (const c of e.callees) body.append(edge(c, "callee"));
    table.append(body);
  }
  rprof.lastPeek = data;
  main.replaceChildren(el("pre", { class: "labels" }, data.labels.join("\n")), bar,
    data.entries.length ? table : el("p", { class: "empty" }, `Nothing matches ${re}.`));
}

// pprof's list: each matching function's source, each line with its flat and cum, the lines
// shaded by their cum (the hottest line of a listing darkest).
async function sourceView(s) {
  const re = s.get("src") || "";
  const input = el("input", { id: "source-re", placeholder: "regex: functions to list", value: re });
  input.addEventListener("keyup", (e) => e.key === "Enter" && update({ src: input.value }));
  const bar = el("div", { class: "bar" }, input, el("span", { class: "info" }, "source lines with their flat and cum"));
  if (!re) {
    main.replaceChildren(bar, el("p", { class: "empty" }, "Type a regular expression and press Enter."));
    return;
  }
  const ticket = rendering;
  const data = await api("source", apiQuery(s, { f: re }));
  if (stale(ticket)) return;
  rprof.lastSource = data;
  const parts = [bar];
  for (const l of data.listings) {
    const hottest = Math.max(1, ...l.lines.map((x) => Math.abs(x.cum)));
    const where = l.path || `${l.file || "(no file)"}: source not found`;
    const value = (v, label) => (v ? label : "0");
    parts.push(el("h3", { class: "listing" }, l.name,
      el("span", { class: "info" }, `${where}: flat ${value(l.flat, l.flat_label)}, cum ${value(l.cum, l.cum_label)}`)));
    const table = el("table", { class: "source" },
      el("thead", {}, el("tr", {}, el("th", {}, "flat"), el("th", {}, "cum"), el("th", {}, "line"), el("th", { class: "name" }, "source"))));
    for (const x of l.lines) {
      const heat = Math.abs(x.cum) / hottest;
      const row = el("tr", { "data-line": x.number },
        el("td", { class: x.flat ? "hot" : "" }, x.flat_label), el("td", {}, x.cum_label),
        el("td", { class: "num" }, String(x.number)),
        el("td", { class: "code" }, x.text === null ? "" : x.text));
      if (x.cum) row.style.background = `rgba(230, 80, 30, ${(0.08 + 0.5 * heat).toFixed(3)})`;
      table.append(row);
    }
    parts.push(table);
  }
  main.replaceChildren(...parts);
}

const VIEWS = {
  source: sourceView,
  peek: peekView,
  top: topView,
  flame: (s) => flameView(s, false),
  callers: (s) => flameView(s, true),
};

// ---- the page ----

async function render() {
  const ticket = ++rendering;
  rprof.ready = false;
  const s = state();
  const view = VIEWS[s.get("view")] ? s.get("view") : "flame";
  for (const a of document.querySelectorAll("#views a")) a.classList.toggle("active", a.dataset.view === view);
  for (const input of document.querySelectorAll("#filters input")) {
    input.value = s.get(input.name) || "";
    input.classList.toggle("set", !!input.value);
  }
  $("#sample_index").value = s.get("sample_index") || meta.default_sample_index;
  $("#granularity").value = s.get("granularity") || "functions";
  showError("");
  $("#tooltip").hidden = true;
  try {
    await VIEWS[view](s);
  } catch (e) {
    if (ticket === rendering) {
      main.replaceChildren();
      showError(e.message);
    }
  }
  if (ticket === rendering) {
    rprof.view = view;
    rprof.ready = true;
  }
}

async function start() {
  meta = await api("meta", "");
  rprof.meta = meta;
  let files = meta.files.join(" ");
  if (meta.base) files += ` (${meta.base_mode} ${meta.base}${meta.diff ? ": red grew, green shrank" : ""})`;
  $("#files").textContent = files;
  $("#files").title = files;
  if (!location.hash && Object.keys(meta.start).length) remember(meta.start);
  const granularity = $("#granularity");
  granularity.addEventListener("change", () => update({ granularity: granularity.value === "functions" ? null : granularity.value, zoom: null }));
  const select = $("#sample_index");
  for (const t of meta.sample_types) select.append(el("option", { value: t.name }, `${t.name} (${t.unit})`));
  select.addEventListener("change", () => update({ sample_index: select.value === meta.default_sample_index ? null : select.value }));
  // A zoom belongs to the graph it was made in.
  for (const a of document.querySelectorAll("#views a")) {
    a.addEventListener("click", () => a.dataset.view !== state().get("view") && update({ view: a.dataset.view, zoom: null }));
  }
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const changes = { zoom: null };
    for (const input of document.querySelectorAll("#filters input")) changes[input.name] = input.value;
    update(changes);
  });
  $("#clear-filters").addEventListener("click", () => update(Object.fromEntries(FILTERS.map((f) => [f, null]))));
  window.addEventListener("popstate", render);
  window.addEventListener("hashchange", render);
  await render();
}

start().catch((e) => showError(e.message));
