// nats-edge status page: polls statusz and updates the DOM in place. No framework, no build step.
// Each poll asks only for history buckets from the newest one it holds (?since=) and log lines after
// the newest it has (?log=), so after the first load a poll is small even over a slow link.
"use strict";

const POLL_MS = 3000;
const MAX_BACKOFF_MS = 30000;
const POINTS = 120;
const MAX_LOG = 100;

const state = { bucket: -1, logSeq: -1, series: new Map(), cards: new Map(), lastOk: 0, failures: 0, timer: 0 };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return "—";
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + x + "s";
  return x + "s";
}

function num(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }

function value(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
  if (v === null || v === undefined) return "—";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

function facts(dl, rows) {
  const frag = document.createDocumentFragment();
  for (const [k, v, key] of rows) {
    frag.append(el("dt", {}, k), el("dd", key ? { "data-key": key } : {}, v));
  }
  dl.replaceChildren(frag);
}

function stateWord(up, yes, no) {
  // A word and a symbol, so the state reads without colour (and on a monochrome screen).
  return el("span", { class: "state " + (up ? yes : no), "data-state": up ? yes : no },
    (up ? "▲ " : "▼ ") + (up ? yes : no).toUpperCase());
}

// -- history ------------------------------------------------------------------------------------

function merge(key, first, series, newest) {
  // The answer covers buckets first..newest: those it has no value for are empty now (a gap).
  let m = state.series.get(key);
  if (!m) { m = new Map(); state.series.set(key, m); }
  for (let b = Math.max(first, newest - POINTS + 1); b <= newest; b++) m.delete(b);
  series.values.forEach((v, i) => m.set(series.from + i, v));
  for (const b of m.keys()) if (b <= newest - POINTS) m.delete(b);
  return m;
}

function pathFor(m, newest, height) {
  let max = -Infinity, min = Infinity;
  for (const v of m.values()) if (v !== null) { max = Math.max(max, v); min = Math.min(min, v); }
  if (max === -Infinity) return { d: "", min: 0, max: 0 };
  const span = max - min || 1;
  let d = "", pen = false;
  for (let i = 0; i < POINTS; i++) {
    const v = m.get(newest - POINTS + 1 + i);
    if (v === null || v === undefined) { pen = false; continue; }
    const y = (height - 1 - (v - min) / span * (height - 2)).toFixed(1);
    d += (pen ? "L" : "M") + i + " " + y;
    pen = true;
    if (i === POINTS - 1 || m.get(newest - POINTS + 2 + i) == null) d += "h1";  // a lone point stays visible
  }
  return { d, min, max };
}

function plot(cls, height) {
  const svg = svgEl("svg", { class: cls, viewBox: "0 0 " + POINTS + " " + height, preserveAspectRatio: "none",
    role: "img" });
  svg.append(svgEl("path", { d: "" }));
  return svg;
}

// -- sections -------------------------------------------------------------------------------------

function renderGateway(s) {
  const g = s.gateway;
  $("gw-name").textContent = g.name;
  document.title = g.name + " · nats-edge status";
  facts($("gw"), [
    ["Name", g.name, "name"],
    ["Version", "nats-edge " + g.version, "version"],
    ["Profile", g.profile || "none", "profile"],
    ["Uptime", duration(g.uptime), "uptime"],
    ["CPU", g.cpu.toFixed(1) + " %", "cpu"],
    ["Memory (RSS)", bytes(g.rss), "rss"],
    ["Disk free", g.disk_free === null ? "— (no outbox)" : bytes(g.disk_free) + " under " + g.disk_path, "disk"],
    ["Messages", num(g.in_msgs) + " in · " + num(g.out_msgs) + " out", "msgs"],
  ].concat(g.lame_duck ? [["Mode", "LAME DUCK (shutting down)", "mode"]] : []));
}

function renderUplinks(s) {
  const box = $("uplinks");
  if (!s.uplinks.length) { box.replaceChildren(el("p", { class: "muted" }, "No leaf remotes configured.")); return; }
  const frag = document.createDocumentFragment();
  for (const u of s.uplinks) {
    const up = u.state === "up";
    const dl = el("dl", { class: "facts" });
    facts(dl, [
      ["State", stateWord(up, "up", "down"), "state"],
      [up ? "Up for" : "Down for", u.since === null ? "—" : duration(u.since), "since"],
      ["Hub", u.hub || "—", "hub"],
      ["RTT", u.rtt === null ? "—" : (u.rtt * 1000).toFixed(1) + " ms", "rtt"],
      ["To hub", num(u.out_msgs) + " msgs · " + bytes(u.out_bytes), "out"],
      ["From hub", num(u.in_msgs) + " msgs · " + bytes(u.in_bytes), "in"],
      ["Reconnects", num(u.reconnects), "reconnects"],
      ["Last error", u.last_error ? el("span", { class: "error" }, u.last_error) : "none", "error"],
    ]);
    frag.append(el("div", { class: "link", "data-url": u.url, "data-state": u.state }, el("h3", {}, u.url), dl));
  }
  box.replaceChildren(frag);
}

let outboxPlot = null;

function renderOutbox(s) {
  const box = $("ob");
  const o = s.outbox;
  if (!o) { box.replaceChildren(el("p", { class: "muted" }, "Store-and-forward is off.")); outboxPlot = null; return; }
  const m = merge("outbox", s.first, o.series, s.bucket);
  if (!outboxPlot) {
    outboxPlot = { dl: el("dl", { class: "facts" }), svg: plot("plot", 60), top: el("span"), left: el("span") };
    outboxPlot.svg.setAttribute("aria-label", "outbox depth over the last hour");
    box.replaceChildren(outboxPlot.dl, el("div", { class: "axis" }, outboxPlot.top, el("span", {}, "pending records")),
      outboxPlot.svg, el("div", { class: "axis" }, outboxPlot.left, el("span", {}, "now")));
  }
  const dropped = o.dropped.full + o.dropped.age + o.dropped.corrupt;
  facts(outboxPlot.dl, [
    ["Pending", num(o.depth) + " records · " + bytes(o.bytes), "depth"],
    ["Oldest", o.depth ? duration(o.oldest_age) + " old" : "—", "oldest"],
    ["Forwarding", (o.forwarding ? "yes" : "no (link down)") + " · " + o.replay_rate + " msg/s", "forwarding"],
    ["Forwarded", num(o.forwarded), "forwarded"],
    ["Dropped", dropped ? num(o.dropped.full) + " full · " + num(o.dropped.age) + " too old · " +
      num(o.dropped.corrupt) + " corrupt" : "none", "dropped"],
    ["Rejected", num(o.rejected), "rejected"],
  ].concat(o.disk_full ? [["Disk", el("span", { class: "error" }, "FULL: appends refused"), "disk"]] : []));
  const p = pathFor(m, s.bucket, 60);
  outboxPlot.svg.firstChild.setAttribute("d", p.d);
  outboxPlot.top.textContent = "max " + num(p.max);
  outboxPlot.left.textContent = "−" + duration(POINTS * s.step);
}

function deviceCard(key) {
  const card = { root: el("article", { class: "card", "data-device": key }), title: el("h3"), meta: el("div", { class: "meta" }),
    word: el("span"), channels: el("div"), rows: new Map() };
  card.root.append(card.title, card.meta, card.channels);
  return card;
}

function renderDevices(s) {
  const box = $("devs");
  const seen = new Set();
  const filter = $("filter").value.trim().toLowerCase();
  let online = 0;
  for (const d of s.devices) {
    const key = d.instance + "/" + d.id;
    seen.add(key);
    let card = state.cards.get(key);
    if (!card) { card = deviceCard(key); state.cards.set(key, card); box.append(card.root); }
    if (d.online) online++;
    // Only what changed is written: with hundreds of cards, untouched nodes are what keeps a poll cheap.
    const head = d.online + "\u0000" + d.name;
    if (card.head !== head) {
      card.head = head;
      card.root.dataset.online = String(d.online);
      card.title.replaceChildren(stateWord(d.online, "online", "offline"), " " + d.name);
    }
    const ago = d.last_seen ? "seen " + duration(s.now - d.last_seen) + " ago" : "never seen";
    setText(card.meta, d.adapter + (d.instance !== d.adapter ? " · " + d.instance : "") + " · " + ago +
      " · " + num(d.readings) + " readings" + (d.errors ? " · " + num(d.errors) + " errors" : "") +
      (d.actions && d.actions.length ? " · accepts " + d.actions.join(", ") : ""));
    card.root.hidden = filter !== "" && !(key + " " + d.name + " " + d.adapter).toLowerCase().includes(filter);
    for (const c of d.channels) {
      let row = card.rows.get(c.name);
      if (!row) {
        row = { root: el("div", { class: "ch", "data-channel": c.name }), v: el("span", { class: "v" }), svg: plot("spark", 20) };
        row.svg.setAttribute("aria-label", c.name + " over the last hour");
        row.root.append(el("span", { class: "n" }, c.name), row.v, row.svg);
        card.rows.set(c.name, row);
        card.channels.append(row.root);
      }
      setText(row.v, value(c.value) + (c.unit ? " " + c.unit : ""));
      if (c.series) {
        const m = merge("dev:" + key + "/" + c.name, s.first, c.series, s.bucket);
        if (!card.root.hidden) {
          const d = pathFor(m, s.bucket, 20).d;
          if (row.d !== d) { row.d = d; row.svg.firstChild.setAttribute("d", d); }
        }
      }
    }
  }
  for (const [key, card] of state.cards) {
    if (!seen.has(key)) { card.root.remove(); state.cards.delete(key); }
  }
  $("dev-count").textContent = s.devices.length ? "(" + online + " of " + s.devices.length + " online)" : "";
  if (!s.devices.length && !box.querySelector(".empty")) {
    box.append(el("p", { class: "muted empty" }, "No devices: no adapters are configured, or none has reported yet."));
  } else if (s.devices.length) {
    box.querySelector(".empty")?.remove();
  }
}

function renderClients(s) {
  const c = s.clients;
  facts($("cl"), [
    ["Connected", num(c.count), "count"],
    ["Since start", num(c.total), "total"],
    ["Slow consumers", num(c.slow_consumers), "slow"],
    ["Stale", num(c.stale), "stale"],
  ]);
}

function stamp(ts) { return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z"; }

function renderLog(s) {
  // Newest first; a line repeating the one above it (a link retrying, say) is counted, not repeated.
  const ul = $("log-lines");
  for (const l of s.log) {
    const sig = l.level + "\u0000" + l.logger + "\u0000" + l.text;
    const top = ul.firstElementChild;
    if (top && top.dataset.sig === sig) {
      top.dataset.count = String(Number(top.dataset.count) + 1);
      top.querySelector("time").textContent = stamp(l.ts);
      top.querySelector(".count").textContent = " (×" + top.dataset.count + ")";
      continue;
    }
    const li = el("li", { "data-level": l.level, "data-count": "1" }, el("span", { class: "lvl " + l.level }, l.level),
      " ", el("time", {}, stamp(l.ts)), " ", el("span", { class: "muted" }, l.logger), " ", l.text,
      el("span", { class: "count muted" }));
    li.dataset.sig = sig;
    ul.prepend(li);
  }
  while (ul.children.length > MAX_LOG) ul.lastElementChild.remove();
  if (!ul.children.length) ul.replaceChildren(el("li", { class: "muted empty" }, "Nothing since start."));
  else if (s.log.length) ul.querySelector(".empty")?.remove();
}

function render(s) {
  renderGateway(s);
  renderUplinks(s);
  renderOutbox(s);
  renderDevices(s);
  renderClients(s);
  renderLog(s);
  state.bucket = s.bucket;
  state.logSeq = s.log_seq;
}

// -- polling --------------------------------------------------------------------------------------

function setLive(kind, text) {
  const p = $("live");
  p.dataset.state = kind;
  p.textContent = text;
}

async function poll() {
  const started = performance.now();
  try {
    const r = await fetch("statusz?since=" + state.bucket + "&log=" + state.logSeq, { cache: "no-store" });
    if (r.status === 401) throw new Error("authentication required: reload the page to log in");
    if (!r.ok) throw new Error("HTTP " + r.status);
    const s = await r.json();
    const fetched = performance.now();
    render(s);
    state.lastOk = Date.now();
    state.failures = 0;
    // For the browser tests (and the curious): time to fetch + parse a poll, and to update the DOM.
    document.body.dataset.fetchMs = (fetched - started).toFixed(1);
    document.body.dataset.renderMs = (performance.now() - fetched).toFixed(1);
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    setLive("live", "Live · updated " + new Date().toLocaleTimeString());
  } catch (e) {
    state.failures++;
    const since = state.lastOk ? " · last update " + duration((Date.now() - state.lastOk) / 1000) + " ago" : "";
    setLive("lost", "Connection to the gateway lost (" + e.message + "), retrying" + since);
  }
  const wait = Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** Math.min(state.failures, 4));
  state.timer = setTimeout(poll, document.hidden ? Math.max(wait, 15000) : wait);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) { clearTimeout(state.timer); poll(); }
});
$("filter").addEventListener("input", () => { clearTimeout(state.timer); poll(); });
poll();
