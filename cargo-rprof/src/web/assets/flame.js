// An interactive flame graph on a canvas: frames root at the top, width by value; click a
// frame to zoom into it (an ancestor or the root to zoom out), search by regular expression
// to highlight frames and sum their values. In a diff (a base given), a frame's width is both
// runs together and its color says the delta: red grew, green shrank.

const ROW = 18; // pixels per stack level
const MIN_WIDTH = 0.5; // frames narrower than this (in CSS pixels) are not drawn

// A node from the API's compact form [name index, value, base, [children]].
function inflate(names, raw, parent, depth) {
  const node = { name: names[raw[0]], value: raw[1], base: raw[2], parent, depth, children: [] };
  for (const c of raw[3]) node.children.push(inflate(names, c, node, depth + 1));
  return node;
}

// A stable warm color from a function name, as classic flame graphs use.
function warm(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  const r = 205 + (h % 50);
  const g = 80 + ((h >>> 8) % 130);
  const b = 30 + ((h >>> 16) % 50);
  return `rgb(${r},${g},${b})`;
}

export class FlameGraph {
  // data: the API's answer; opts: { diff, rootLabel, format(value) -> text,
  // onZoom(path, node), tooltip }.
  constructor(canvas, data, opts) {
    this.canvas = canvas;
    this.opts = opts;
    this.root = inflate(data.names, data.tree, null, 0);
    this.zoomed = this.root;
    this.matcher = null;
    this.matchCount = 0;
    this.matchSum = 0;
    this.rects = []; // per row: [{x, w, node}] of what is drawn
    canvas.addEventListener("click", (e) => this.click(e));
    canvas.addEventListener("mousemove", (e) => this.hover(e));
    canvas.addEventListener("mouseleave", () => (opts.tooltip.hidden = true));
    this.resize = () => this.draw();
    window.addEventListener("resize", this.resize);
  }

  // Stop listening to the window (the view is being replaced).
  dispose() {
    window.removeEventListener("resize", this.resize);
  }

  width(n) {
    return this.opts.diff ? n.value + n.base : Math.max(n.value, 0);
  }

  // The path of names from the root to the zoomed frame (the root excluded).
  zoomPath() {
    const path = [];
    for (let n = this.zoomed; n && n.parent; n = n.parent) path.unshift(n.name);
    return path;
  }

  // Zoom to the frame at `path` (names from the root), as far as it exists.
  zoomTo(path) {
    let n = this.root;
    for (const name of path || []) {
      const next = n.children.find((c) => c.name === name);
      if (!next) break;
      n = next;
    }
    this.zoomed = n;
  }

  // Highlight frames whose name matches `re` (a RegExp or null); sum the values of the
  // outermost matching frames, so a frame inside another match is not counted twice.
  search(re) {
    this.matcher = re;
    this.matchCount = 0;
    this.matchSum = 0;
    if (re) {
      const walk = (n, inside) => {
        const hit = n.parent !== null && re.test(n.name);
        if (hit) this.matchCount++;
        if (hit && !inside) this.matchSum += n.value;
        for (const c of n.children) walk(c, inside || hit);
      };
      walk(this.root, false);
    }
  }

  color(n) {
    if (this.matcher && n.parent !== null && this.matcher.test(n.name)) return "rgb(206,64,231)";
    if (this.opts.diff) {
      const span = Math.max(n.value, n.base, 1);
      const r = (n.value - n.base) / span; // -1 .. 1
      const fade = Math.round(235 - 175 * Math.min(1, Math.abs(r) * 1.5));
      if (Math.abs(r) < 0.02) return "rgb(225,225,225)";
      return r > 0 ? `rgb(240,${fade},${fade})` : `rgb(${fade},230,${fade})`;
    }
    return warm(n.name);
  }

  draw() {
    const canvas = this.canvas;
    const cssWidth = canvas.clientWidth || canvas.parentElement.clientWidth;
    const ancestors = [];
    for (let n = this.zoomed.parent; n; n = n.parent) ancestors.unshift(n);
    // Lay out: ancestors full width, the zoomed frame full width, its subtree to scale.
    this.rects = [];
    const put = (n, x, w) => {
      (this.rects[n.depth] ||= []).push({ x, w, node: n });
    };
    for (const a of ancestors) put(a, 0, cssWidth);
    const total = this.width(this.zoomed) || 1;
    const scale = cssWidth / total;
    const layout = (n, x) => {
      put(n, x, this.width(n) * scale);
      let cx = x;
      for (const c of n.children) {
        const cw = this.width(c) * scale;
        if (cw >= MIN_WIDTH) layout(c, cx);
        cx += Math.max(cw, 0);
      }
    };
    layout(this.zoomed, 0);

    const ratio = window.devicePixelRatio || 1;
    const height = this.rects.length * ROW + 2;
    canvas.style.height = `${height}px`;
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.font = "11px ui-monospace, monospace";
    ctx.textBaseline = "middle";
    const charWidth = ctx.measureText("m").width;
    this.rects.forEach((row, depth) => {
      const y = depth * ROW;
      for (const r of row) {
        const below = r.node.depth < this.zoomed.depth;
        ctx.fillStyle = below ? "rgb(200,200,206)" : this.color(r.node);
        ctx.fillRect(r.x, y, Math.max(r.w - 0.5, 0.5), ROW - 1);
        const room = Math.floor((r.w - 6) / charWidth);
        if (room >= 3) {
          const label = r.node.parent === null ? this.opts.rootLabel : r.node.name;
          const text = label.length > room ? label.slice(0, room - 1) + "…" : label;
          ctx.fillStyle = "#111";
          ctx.fillText(text, r.x + 3, y + ROW / 2);
        }
      }
    });
  }

  // The drawn frame under a mouse event, or null.
  at(e) {
    const box = this.canvas.getBoundingClientRect();
    const x = e.clientX - box.left;
    const row = this.rects[Math.floor((e.clientY - box.top) / ROW)];
    if (!row) return null;
    const hit = row.find((r) => x >= r.x && x < r.x + r.w);
    return hit ? hit.node : null;
  }

  click(e) {
    const n = this.at(e);
    if (!n) return;
    this.zoomed = n;
    this.draw();
    this.opts.onZoom(this.zoomPath(), n);
  }

  hover(e) {
    const tip = this.opts.tooltip;
    const n = this.at(e);
    if (!n) {
      tip.hidden = true;
      return;
    }
    const f = this.opts.format;
    const total = this.root.value;
    const pct = (v) => (total ? (Math.abs(v / total) * 100).toFixed(2) + "%" : "");
    let text = `${n.parent === null ? this.opts.rootLabel : n.name}\n${f(n.value)} (${pct(n.value)})`;
    const own = n.value - n.children.reduce((s, c) => s + c.value, 0);
    if (n.children.length) text += `, self ${f(own)}`;
    if (this.opts.diff) {
      const d = n.value - n.base;
      text += `\nbase ${f(n.base)}, delta ${d >= 0 ? "+" : ""}${f(d)}`;
    }
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = `${Math.min(e.clientX + 12, window.innerWidth - tip.offsetWidth - 8)}px`;
    tip.style.top = `${e.clientY + 14}px`;
  }

  // Where the first drawn frame named `name` is, in viewport pixels (for tests and links).
  rectOf(name) {
    const box = this.canvas.getBoundingClientRect();
    for (let depth = 0; depth < this.rects.length; depth++) {
      const r = this.rects[depth].find((r) => r.node.name === name && r.node.parent !== null);
      if (r) return { x: box.left + r.x, y: box.top + depth * ROW, w: r.w, h: ROW - 1 };
    }
    return null;
  }
}
