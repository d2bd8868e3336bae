// auditjournal audit report: draws the data embedded in this page.
//
// Rules this script keeps: every value from the export is put into the page as
// text (textContent, setAttribute on non-script attributes), never as markup;
// nothing is fetched or sent (the page's Content-Security-Policy forbids it
// anyway); hashes are computed with the browser's WebCrypto (crypto.subtle).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("aj-data").textContent);
  const recordsBlock = document.getElementById("aj-records");
  const SVGNS = "http://www.w3.org/2000/svg";
  const STATUS_CLASSES = ["completed", "failed", "open"];

  // -- small helpers ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (/^on/i.test(name) || name === "style") throw new Error("attribute not allowed: " + name);
      node.setAttribute(name, String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function fmt(n) {
    return Number(n || 0).toLocaleString("en-US");
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  function short(value, limit) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    if (text === undefined) return "";
    return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  function sum(obj) {
    return Object.values(obj || {}).reduce((a, b) => a + b, 0);
  }

  function verdictClass(ok) {
    return ok ? "valid" : "invalid";
  }

  function jsonBlock(label, value, open) {
    return el("details", { open: open ? "open" : null }, el("summary", {}, label), el("pre", {}, pretty(value)));
  }

  function table(headers, rows, attrs) {
    return el("table", attrs || {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : null }, h.text || h)))),
      el("tbody", {}, rows));
  }

  const nodesById = new Map(DATA.graph.nodes.map((n) => [n.node_id, n]));
  const edgesById = new Map(DATA.graph.edges.map((e) => [e.edge_id, e]));

  function nodeName(id) {
    const n = nodesById.get(id);
    return n ? n.plugin_name + " (" + n.node_type + ")" : String(id);
  }

  // -- header, summary, verification -----------------------------------------------------

  function renderHeader() {
    const run = DATA.run;
    document.getElementById("run-title").textContent = "Run " + run.run_id;
    const meta = document.getElementById("run-meta");
    const items = [
      ["status", run.status],
      ["started", run.started_at],
      ["completed", run.completed_at],
      ["sealed", run.sealed_at],
      ["records", fmt(DATA.verification.record_count)],
      ["chunks", fmt(DATA.verification.chunk_count)],
    ];
    for (const [k, v] of items) if (v !== null && v !== undefined) meta.appendChild(el("span", {}, k + ": " + v));
    const verdict = document.getElementById("verdict");
    const v = DATA.verification;
    verdict.textContent = (v.ok ? "VALID — " : "INVALID — ") + v.summary;
    verdict.classList.add(v.ok ? "ok" : "bad");
    verdict.setAttribute("data-verdict", v.ok ? "VALID" : "INVALID");
  }

  function card(key, value, sub, attrs) {
    return el("div", Object.assign({ class: "card" }, attrs || {}),
      el("div", { class: "n" }, fmt(value)), el("div", { class: "k" }, key), sub ? el("div", { class: "sub" }, sub) : null);
  }

  function breakdown(obj) {
    return Object.entries(obj || {}).sort((a, b) => b[1] - a[1]).map(([k, n]) => fmt(n) + " " + k).join(" · ");
  }

  function renderSummary() {
    const body = document.getElementById("summary-body");
    const c = DATA.counts;
    body.appendChild(card("records", sum(c), null, { "data-count": "records" }));
    const order = ["row", "token", "node_state", "call", "routing_event", "artifact", "token_outcome", "node", "edge", "run"];
    const subs = { node_state: breakdown(DATA.states_by_status), call: breakdown(DATA.calls_by_status), token_outcome: breakdown(DATA.outcomes) };
    const seen = new Set();
    for (const kind of order.concat(Object.keys(c))) {
      if (seen.has(kind) || !(kind in c)) continue;
      seen.add(kind);
      body.appendChild(card(kind.replace(/_/g, " ") + (c[kind] === 1 ? "" : "s"), c[kind], subs[kind], { "data-count": kind }));
    }
    if (DATA.unreadable_lines) {
      body.appendChild(card("unreadable record lines", DATA.unreadable_lines, "see Verification", { "data-count": "unreadable" }));
    }
  }

  function renderVerification() {
    const v = DATA.verification;
    const body = document.getElementById("verification-body");
    body.appendChild(el("p", {},
      "Checked by ", DATA.generator, " at ", v.checked_at, " (the same checks as ",
      el("code", {}, "auditjournal verify"), "): manifest, signature, the sha256 listing, every chunk's bytes, sha256, ",
      "record count, seq range and layout, and the RFC 6962 Merkle root over all records."));
    body.appendChild(el("p", {}, "Manifest signature: ",
      el("span", { class: v.signature === "valid" ? "valid" : v.signature === "INVALID" ? "invalid" : "neutral", "data-signature": v.signature }, v.signature)));
    const rows = v.files.map((f) => el("tr", { "data-file": f.file },
      el("td", { class: "mono" }, f.file),
      el("td", { class: verdictClass(f.valid) }, f.valid ? "valid" : "INVALID"),
      el("td", {}, f.reason || "")));
    body.appendChild(table(["file", "verdict", "reason"], rows));
    body.appendChild(el("p", { class: "status " + verdictClass(v.ok) }, v.summary));
    body.appendChild(el("p", { class: "note" },
      "Manifest ", el("code", {}, DATA.manifest_file), " sha256 ", el("code", {}, DATA.manifest_sha256),
      ", Merkle root ", el("code", {}, String(DATA.manifest.merkle_root || "?")), "."));
    body.appendChild(el("p", { class: "note", id: "embedded-check", "data-embedded-check": "" }, ""));
  }

  // -- pipeline graph --------------------------------------------------------------------

  function renderGraph() {
    const g = DATA.graph;
    const box = document.getElementById("graph");
    if (!g.nodes.length) {
      box.appendChild(el("p", { class: "note" }, "No nodes were recorded."));
      return;
    }
    const root = svg("svg", { width: g.width, height: g.height, viewBox: "0 0 " + g.width + " " + g.height, role: "img", "aria-label": "pipeline graph" });
    root.appendChild(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))));
    for (const e of g.edges) {
      if (!e.path) continue;
      const group = svg("g", { class: "edge", "data-edge": e.edge_id, "data-tokens": e.tokens },
        svg("title", {}, e.edge_id + ": " + nodeName(e.from_node_id) + " → " + nodeName(e.to_node_id) +
          "\nlabel " + e.label + ", mode " + e.mode + "\n" + fmt(e.tokens) + " token(s), " + fmt(e.routing_events) + " routing event(s)"),
        svg("path", { d: e.path, "marker-end": "url(#arrow)" }),
        svg("text", { x: e.label_x, y: e.label_y - 5, "text-anchor": "middle" }, e.label),
        svg("text", { x: e.label_x, y: e.label_y + 13, "text-anchor": "middle", class: "count" }, fmt(e.tokens)));
      root.appendChild(group);
    }
    for (const n of g.nodes) {
      const failed = (n.states.failed || 0);
      const total = sum(n.states);
      const group = svg("g", { class: "node " + n.node_type, "data-node": n.node_id, transform: "translate(" + n.x + "," + n.y + ")" },
        svg("title", {}, n.node_id + ": " + n.plugin_name + " " + n.plugin_version + " (" + n.node_type + ", " + n.determinism + ")\n" + breakdown(n.states)),
        svg("rect", { width: g.node_width, height: g.node_height, rx: 7 }),
        svg("text", { x: 10, y: 19, class: "title" }, short(n.plugin_name, 19)),
        svg("text", { x: 10, y: 34, class: "small" }, short(n.node_type + " · " + n.node_id, 24)),
        svg("text", { x: 10, y: 46, class: failed ? "small bad" : "small" },
          total ? fmt(total) + " state" + (total === 1 ? "" : "s") + (failed ? " · " + fmt(failed) + " failed" : "") : "no states"));
      root.appendChild(group);
    }
    box.appendChild(root);
    const note = document.getElementById("graph-note");
    note.textContent = "Edges: the label above the line, below it how many tokens went along the edge (a gate's routing events, or the move " +
      "from a token's previous node). Hover a node or an edge for details." +
      (g.unattributed ? " " + fmt(g.unattributed) + " move(s) matched no single edge." : "");
  }

  // -- timeline --------------------------------------------------------------------------

  function renderTimeline() {
    const t = DATA.timeline;
    const body = document.getElementById("timeline-body");
    if (!t.lanes.length || !t.start || !t.end) {
      body.appendChild(el("p", { class: "note" }, "No node states to show."));
      return;
    }
    body.appendChild(el("div", { class: "legend" },
      el("span", { class: "completed" }, "completed"), el("span", { class: "failed" }, "failed"),
      el("span", { class: "open" }, "open at the end"), el("span", { class: "other" }, "other")));
    const labelW = 190, totalsW = 150, binW = 12, laneH = 30, top = 4;
    const plotW = t.bin_count * binW;
    const width = labelW + plotW + totalsW;
    const height = top + t.lanes.length * laneH + 22;
    const root = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "timeline of node states" });
    t.lanes.forEach((lane, i) => {
      const y = top + i * laneH;
      const node = nodesById.get(lane.node_id);
      const g = svg("g", { "data-lane": lane.node_id });
      g.appendChild(svg("text", { x: 0, y: y + 13, class: "lane-label" }, short(node ? node.plugin_name : lane.node_id, 26)));
      g.appendChild(svg("text", { x: 0, y: y + 25, class: "lane-sub" }, short(lane.node_id, 30)));
      g.appendChild(svg("rect", { x: labelW, y: y + 2, width: plotW, height: laneH - 6, class: "lane-bg" }));
      const statuses = Object.keys(lane.bins);
      let peak = 1;
      for (let b = 0; b < t.bin_count; b++) {
        peak = Math.max(peak, statuses.reduce((a, s) => a + lane.bins[s][b], 0));
      }
      for (let b = 0; b < t.bin_count; b++) {
        let base = y + laneH - 4;
        for (const s of statuses) {
          const n = lane.bins[s][b];
          if (!n) continue;
          const h = Math.max(1, (n / peak) * (laneH - 8));
          base -= h;
          g.appendChild(svg("rect", { x: labelW + b * binW + 1, y: base, width: binW - 2, height: h, class: "bar-" + (STATUS_CLASSES.includes(s) ? s : "other") },
            svg("title", {}, fmt(n) + " " + s)));
        }
      }
      const totals = node ? breakdown(node.states) : "";
      g.appendChild(svg("text", { x: labelW + plotW + 8, y: y + 17, class: "lane-sub" }, short(totals, 30), svg("title", {}, totals)));
      root.appendChild(g);
    });
    const axisY = top + t.lanes.length * laneH + 14;
    root.appendChild(svg("text", { x: labelW, y: axisY, class: "axis" }, t.start));
    root.appendChild(svg("text", { x: labelW + plotW, y: axisY, class: "axis", "text-anchor": "end" }, t.end));
    body.appendChild(root);
    body.appendChild(el("p", { class: "note" },
      "Each lane is one node; each bar counts the node's states that ended in that slice of the run (" +
      t.bin_count + " equal slices from the first record to the seal), coloured by status, scaled per lane."));
  }

  // -- outcomes --------------------------------------------------------------------------

  function barTable(title, counts, attrName) {
    const total = sum(counts) || 1;
    const rows = Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([k, n]) =>
      el("tr", {},
        el("td", {}, el("span", { class: "pill " + k }, k)),
        el("td", { class: "num", [attrName]: k }, fmt(n)),
        el("td", {}, svg("svg", { width: 160, height: 10 }, svg("rect", { width: Math.max(1, 160 * n / total), height: 10, class: "bar-completed" })))));
    return el("div", {}, el("h3", {}, title), table([title.includes("sink") ? "sink" : "outcome", { text: "tokens", num: true }, ""], rows));
  }

  function renderOutcomes() {
    const body = document.getElementById("outcomes-body");
    if (!sum(DATA.outcomes)) {
      body.appendChild(el("p", { class: "note" }, "No token outcomes were recorded."));
      return;
    }
    body.appendChild(barTable("By outcome", DATA.outcomes, "data-outcome"));
    body.appendChild(barTable("By sink", DATA.outcomes_by_sink, "data-sink"));
  }

  // -- WebCrypto: SHA-256 and the RFC 6962 Merkle tree -----------------------------------

  const subtle = window.crypto && window.crypto.subtle;

  async function sha256(bytes) {
    return new Uint8Array(await subtle.digest("SHA-256", bytes));
  }

  function hex(bytes) {
    let out = "";
    for (const b of bytes) out += b.toString(16).padStart(2, "0");
    return out;
  }

  function leafInput(line) {
    const buf = new Uint8Array(line.length + 1);
    buf.set(line, 1); // buf[0] stays 0x00: RFC 6962 leaf prefix
    return buf;
  }

  async function nodeHash(left, right) {
    const buf = new Uint8Array(65);
    buf[0] = 1;
    buf.set(left, 1);
    buf.set(right, 33);
    return sha256(buf);
  }

  // Incremental RFC 6962 root: a stack of perfect subtrees, sizes falling; the root folds
  // them from the right, which is the split at the largest power of two below n.
  class Frontier {
    constructor() { this.stack = []; this.count = 0; }
    async add(leaf) {
      let size = 1, node = leaf;
      while (this.stack.length && this.stack[this.stack.length - 1].size === size) {
        node = await nodeHash(this.stack.pop().hash, node);
        size *= 2;
      }
      this.stack.push({ size: size, hash: node });
      this.count += 1;
    }
    async addLines(lines) {
      const BATCH = 2048;
      for (let i = 0; i < lines.length; i += BATCH) {
        const leaves = await Promise.all(lines.slice(i, i + BATCH).map((l) => sha256(leafInput(l))));
        for (const leaf of leaves) await this.add(leaf);
      }
    }
    async root() {
      if (!this.stack.length) return sha256(new Uint8Array(0));
      let h = this.stack[this.stack.length - 1].hash;
      for (let i = this.stack.length - 2; i >= 0; i--) h = await nodeHash(this.stack[i].hash, h);
      return h;
    }
  }

  // The record lines of a chunk (without the separating "," and line end), and what is
  // wrong with its layout: "[", first record, ","+record ..., "]", each on its own line.
  function chunkLines(bytes) {
    const lines = [];
    const problems = [];
    let start = 0, index = 0, closed = false;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 10) continue;
      const line = bytes.subarray(start, i);
      start = i + 1;
      if (index === 0) {
        if (!(line.length === 1 && line[0] === 91)) problems.push("first line is not [");
      } else if (line.length === 1 && line[0] === 93) {
        closed = true;
      } else if (closed) {
        problems.push("a line after ]");
      } else if (lines.length === 0) {
        lines.push(line);
      } else if (line[0] === 44) {
        lines.push(line.subarray(1));
      } else {
        problems.push("record line " + (lines.length + 1) + " lacks its leading comma");
        lines.push(line);
      }
      index++;
    }
    if (start !== bytes.length) problems.push("last line has no line end");
    if (!closed) problems.push("no closing ]");
    return { lines: lines, problems: problems };
  }

  // -- rows ------------------------------------------------------------------------------

  const INDEX = { ready: false, rows: [], rowById: new Map(), byRow: new Map(), artifactsByState: new Map(), lines: null };

  function buildIndex() {
    const lines = JSON.parse(recordsBlock.textContent);
    INDEX.lines = lines;
    const bucket = (rowId) => {
      let b = INDEX.byRow.get(rowId);
      if (!b) INDEX.byRow.set(rowId, (b = { tokens: [], states: [], routing: [], calls: [], outcomes: [] }));
      return b;
    };
    for (const line of lines) {
      let r;
      try { r = JSON.parse(line); } catch (err) { continue; }
      if (!r || typeof r !== "object") continue;
      const kind = r.record_type;
      if (kind === "row") { INDEX.rows.push(r); INDEX.rowById.set(r.row_id, r); }
      else if (kind === "artifact") {
        const list = INDEX.artifactsByState.get(r.state_id) || [];
        list.push(r);
        INDEX.artifactsByState.set(r.state_id, list);
      }
      else if (r.row_id !== undefined && r.row_id !== null) {
        const b = bucket(r.row_id);
        if (kind === "token") b.tokens.push(r);
        else if (kind === "node_state") b.states.push(r);
        else if (kind === "routing_event") b.routing.push(r);
        else if (kind === "call") b.calls.push(r);
        else if (kind === "token_outcome") b.outcomes.push(r);
      }
    }
    INDEX.ready = true;
  }

  function fieldValue(data, path) {
    let v = data;
    for (const part of path.split(".")) {
      if (v === null || typeof v !== "object" || !(part in v)) return undefined;
      v = v[part];
    }
    return v;
  }

  function asText(v) {
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  // A query is a row id, a row index, field=value (on the row's source data; dotted
  // paths reach nested fields), or text found in a row id or a source field's value.
  function search(query) {
    const q = query.trim();
    if (!q) return { rows: INDEX.rows.slice(), how: "all rows" };
    if (INDEX.rowById.has(q)) return { rows: [INDEX.rowById.get(q)], how: "row id" };
    if (/^\d+$/.test(q)) {
      const n = Number(q);
      return { rows: INDEX.rows.filter((r) => r.row_index === n), how: "row index " + n };
    }
    const eq = q.indexOf("=");
    if (eq > 0) {
      const field = q.slice(0, eq).trim(), value = q.slice(eq + 1).trim();
      return {
        rows: INDEX.rows.filter((r) => { const v = fieldValue(r.source_data, field); return v !== undefined && asText(v) === value; }),
        how: field + " = " + value,
      };
    }
    const needle = q.toLowerCase();
    return {
      rows: INDEX.rows.filter((r) => String(r.row_id).toLowerCase().includes(needle) ||
        (r.source_data && typeof r.source_data === "object" &&
          Object.values(r.source_data).some((v) => asText(v).toLowerCase().includes(needle)))),
      how: "text " + q,
    };
  }

  function outcomeOf(rowId) {
    const b = INDEX.byRow.get(rowId);
    return b ? b.outcomes.map((o) => o.outcome + (o.sink_name ? " → " + o.sink_name : "")).join(", ") : "";
  }

  function preview(data) {
    if (!data || typeof data !== "object") return short(data, 80);
    return short(Object.entries(data).slice(0, 3).map(([k, v]) => k + "=" + asText(v)).join("  "), 90);
  }

  const LIMIT = 200;

  function renderRows() {
    const body = document.getElementById("rows-body");
    const info = DATA.records;
    if (!info.embedded || !recordsBlock) {
      body.appendChild(el("p", { class: "note", id: "rows-omitted" }, info.note || "Records are not embedded in this report."));
      return;
    }
    const input = el("input", { type: "search", id: "row-query", placeholder: "row id, row index, field=value (e.g. customer_id=C0001) or text", autocomplete: "off", spellcheck: "false" });
    const button = el("button", { id: "row-search", type: "button" }, "Find");
    const status = el("div", { class: "note", id: "row-status" }, "Indexing records…");
    const results = el("div", { class: "results", id: "row-results" });
    const story = el("div", { class: "story", id: "row-story" });
    append(body, [el("div", { class: "searchbar" }, input, button), status, results, story]);
    const run = () => {
      if (!INDEX.ready) return;
      const found = search(input.value);
      status.textContent = fmt(found.rows.length) + " row(s) match " + found.how + (found.rows.length > LIMIT ? "; showing the first " + LIMIT : "") + ".";
      status.setAttribute("data-matches", found.rows.length);
      const rows = found.rows.slice(0, LIMIT).map((r) => {
        const tr = el("tr", { class: "hit", "data-row-id": r.row_id, tabindex: 0 },
          el("td", { class: "num" }, String(r.row_index)), el("td", { class: "mono" }, r.row_id),
          el("td", {}, outcomeOf(r.row_id)), el("td", { class: "mono" }, preview(r.source_data)));
        const open = () => {
          for (const other of results.querySelectorAll("tr.current")) other.classList.remove("current");
          tr.classList.add("current");
          showStory(story, r);
        };
        tr.addEventListener("click", open);
        tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
        return tr;
      });
      clear(results).appendChild(table([{ text: "index", num: true }, "row id", "outcome", "source data"], rows));
      if (found.rows.length === 1) showStory(story, found.rows[0]);
    };
    input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") run(); });
    button.addEventListener("click", run);
    setTimeout(() => {
      buildIndex();
      status.textContent = fmt(INDEX.rows.length) + " rows indexed. Search, or pick a row.";
      status.setAttribute("data-ready", "1");
      run();
    }, 0);
  }

  function pill(text) {
    return el("span", { class: "pill " + text }, text);
  }

  // Input/output diff over flattened paths (a.b, list[0]); unchanged fields are folded.
  function flatten(value, prefix, out) {
    if (value !== null && typeof value === "object" && Object.keys(value).length) {
      for (const [k, v] of Object.entries(value)) {
        flatten(v, Array.isArray(value) ? prefix + "[" + k + "]" : prefix ? prefix + "." + k : k, out);
      }
    } else {
      out.set(prefix || "(value)", JSON.stringify(value));
    }
    return out;
  }

  function diffTable(input, output) {
    const a = flatten(input, "", new Map()), b = flatten(output, "", new Map());
    const keys = Array.from(new Set([...a.keys(), ...b.keys()]));
    const rows = [], same = [];
    for (const k of keys) {
      const kind = !a.has(k) ? "added" : !b.has(k) ? "removed" : a.get(k) === b.get(k) ? "same" : "changed";
      if (kind === "same") { same.push(k); continue; }
      rows.push(el("tr", { class: kind, "data-diff": kind, "data-field": k },
        el("td", {}, k), el("td", { class: "in" }, a.has(k) ? short(a.get(k), 300) : ""),
        el("td", { class: "out" }, b.has(k) ? short(b.get(k), 300) : ""), el("td", {}, kind)));
    }
    const box = el("div", {});
    if (rows.length) box.appendChild(table(["field", "input", "output", "change"], rows, { class: "diff" }));
    else box.appendChild(el("p", { class: "note" }, "Output equals input."));
    if (same.length) box.appendChild(el("p", { class: "note" }, fmt(same.length) + " field(s) unchanged: " + short(same.join(", "), 400)));
    return box;
  }

  function stateCard(s, b) {
    const node = nodesById.get(s.node_id);
    const card = el("article", { class: "state " + (s.status || ""), "data-state": s.state_id },
      el("div", { class: "head" },
        el("b", {}, "step " + s.step_index + " · " + (node ? node.plugin_name : s.node_id)),
        pill(s.status || "?"),
        el("span", { class: "note" }, (node ? node.node_type + " · " : "") + s.node_id + " · attempt " + s.attempt + " · " + s.state_id),
        el("span", { class: "note" }, s.started_at + (s.completed_at ? " → " + s.completed_at : "") +
          (s.duration_ms !== null && s.duration_ms !== undefined ? " · " + s.duration_ms + " ms" : ""))));
    if (s.error !== null && s.error !== undefined) card.appendChild(jsonBlock("error", s.error, true));
    if (s.success_reason !== null && s.success_reason !== undefined) card.appendChild(jsonBlock("success reason", s.success_reason, false));
    if ("input_data" in s) {
      if (s.output_data !== null && s.output_data !== undefined) {
        card.appendChild(el("h4", {}, "input → output"));
        card.appendChild(diffTable(s.input_data, s.output_data));
      }
      card.appendChild(jsonBlock("input (" + s.input_data_ref + ")", s.input_data, false));
      if (s.output_data !== null && s.output_data !== undefined) card.appendChild(jsonBlock("output (" + s.output_data_ref + ")", s.output_data, false));
    } else {
      card.appendChild(el("p", { class: "note" }, "Payloads are not inlined in this export; input ref " + s.input_data_ref + (s.output_data_ref ? ", output ref " + s.output_data_ref : "")));
    }
    for (const c of b.calls.filter((c) => c.state_id === s.state_id).sort((x, y) => x.call_index - y.call_index)) {
      card.appendChild(el("div", { class: "call", "data-call": c.call_id },
        el("h4", {}, "call " + c.call_index + ": " + c.call_type + " "), pill(c.status),
        el("span", { class: "note" }, " " + (c.latency_ms !== null && c.latency_ms !== undefined ? c.latency_ms + " ms" : "")),
        "request" in c ? jsonBlock("request", c.request, false) : null,
        "response" in c && c.response !== null ? jsonBlock("response", c.response, false) : null,
        c.error !== null && c.error !== undefined ? jsonBlock("error", c.error, true) : null));
    }
    for (const r of b.routing.filter((r) => r.state_id === s.state_id).sort((x, y) => x.ordinal - y.ordinal)) {
      const e = edgesById.get(r.edge_id);
      card.appendChild(el("div", { class: "routing", "data-routing": r.routing_event_id },
        el("h4", {}, "routed: " + (e ? e.label + " → " + nodeName(e.to_node_id) : r.edge_id) + " (" + r.mode + ")"),
        "reason" in r ? jsonBlock("reason", r.reason, true) : el("span", { class: "note" }, "reason ref " + r.reason_ref)));
    }
    for (const a of INDEX.artifactsByState.get(s.state_id) || []) {
      card.appendChild(el("div", { class: "artifact" },
        el("h4", {}, "artifact: " + a.artifact_type + " " + a.path_or_uri),
        el("span", { class: "note" }, fmt(a.size_bytes) + " bytes, sha256 " + a.content_hash)));
    }
    return card;
  }

  function showStory(box, row) {
    clear(box);
    const b = INDEX.byRow.get(row.row_id) || { tokens: [], states: [], routing: [], calls: [], outcomes: [] };
    box.appendChild(el("h3", { "data-story": row.row_id }, "Row " + row.row_id));
    box.appendChild(el("p", { class: "note" }, "index " + row.row_index + " · source " + nodeName(row.source_node_id) +
      " · created " + row.created_at + " · source data sha256 " + row.source_data_hash));
    if ("source_data" in row) {
      const data = row.source_data;
      if (data && typeof data === "object" && !Array.isArray(data)) {
        box.appendChild(table(["field", "value"], Object.entries(data).map(([k, v]) =>
          el("tr", {}, el("td", { class: "mono" }, k), el("td", { class: "mono" }, short(asText(v), 400))))));
      }
      box.appendChild(jsonBlock("source data (JSON)", data, false));
    }
    const tokens = b.tokens.slice().sort((x, y) => x.seq - y.seq);
    for (const t of tokens) {
      const section = el("div", { class: "token", "data-token": t.token_id },
        el("h4", {}, "token " + t.token_id + (t.branch_name ? " · branch " + t.branch_name : "") +
          (t.parent_token_ids && t.parent_token_ids.length ? " · from " + t.parent_token_ids.join(", ") : "")));
      const states = b.states.filter((s) => s.token_id === t.token_id)
        .sort((x, y) => (x.started_seq - y.started_seq) || (x.seq - y.seq));
      for (const s of states) section.appendChild(stateCard(s, b));
      for (const o of b.outcomes.filter((o) => o.token_id === t.token_id)) {
        section.appendChild(el("div", { class: "outcome", "data-outcome-of": t.token_id },
          el("h4", {}, "outcome "), pill(o.outcome), o.sink_name ? el("span", {}, " → sink " + o.sink_name) : null,
          o.context !== null && o.context !== undefined ? jsonBlock("context", o.context, true) : null));
      }
      box.appendChild(section);
    }
    if (!tokens.length) box.appendChild(el("p", { class: "note" }, "No tokens were recorded for this row."));
  }

  // -- the embedded records against the manifest's Merkle root ---------------------------

  async function checkEmbedded() {
    const out = document.getElementById("embedded-check");
    if (!DATA.records.embedded || !recordsBlock) {
      out.textContent = "Records are not embedded in this report (see Rows).";
      return;
    }
    if (!subtle) {
      out.textContent = "This browser offers no WebCrypto here (open the report as a file), so the embedded records were not re-hashed.";
      out.setAttribute("data-embedded-check", "unavailable");
      return;
    }
    while (!INDEX.ready) await new Promise((r) => setTimeout(r, 20));
    const encoder = new TextEncoder();
    const tree = new Frontier();
    await tree.addLines(INDEX.lines.map((l) => encoder.encode(l)));
    const root = hex(await tree.root());
    const ok = root === DATA.manifest.merkle_root;
    out.textContent = "This browser re-hashed the " + fmt(tree.count) + " records embedded in this page (RFC 6962, WebCrypto): " +
      (ok ? "valid — they are exactly the records under the manifest's Merkle root." : "INVALID — their root " + root + " is not the manifest's.");
    out.className = "note " + verdictClass(ok);
    out.setAttribute("data-embedded-check", ok ? "valid" : "INVALID");
  }

  // -- the auditor's own files, checked here ---------------------------------------------

  function renderCheck() {
    const body = document.getElementById("check-body");
    body.appendChild(el("p", {},
      "Give this page the export's files (", el("code", {}, "audit_trail.NNN.json"), " chunks, and ",
      el("code", {}, DATA.manifest_file), " and ", el("code", {}, "audit_trail.sha256"), " if you have them). ",
      "The browser reads them locally — nothing leaves this computer — and checks each chunk's size, SHA-256, ",
      "layout and record count against the manifest, then the RFC 6962 Merkle root over all records, with WebCrypto. ",
      "With the manifest file given, that file is the reference; without it, the manifest embedded in this report is."));
    const input = el("input", { type: "file", id: "check-files", multiple: "multiple" });
    const drop = el("div", { class: "drop", id: "check-drop" }, "…or drop the files here");
    const status = el("div", { class: "status", id: "check-status" });
    const results = el("div", { id: "check-results" });
    append(body, [input, drop, status, results]);
    if (!subtle) {
      status.textContent = "This browser offers no WebCrypto here; open the report as a local file (file://) to use the check.";
      input.disabled = true;
      return;
    }
    const start = (files) => runCheck(Array.from(files), status, results).catch((err) => {
      status.textContent = "The check stopped: " + err;
      status.className = "status invalid";
    });
    input.addEventListener("change", () => start(input.files));
    drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); start(ev.dataTransfer.files); });
  }

  async function runCheck(files, status, results) {
    clear(results);
    status.className = "status";
    status.removeAttribute("data-check");
    const byName = new Map(files.map((f) => [f.name, f]));
    const used = new Set();
    const rows = [];
    const line = (file, verdict, reason) => {
      const cls = verdict === "valid" ? "valid" : verdict === "INVALID" ? "invalid" : "neutral";
      rows.push(el("tr", { "data-check-file": file, "data-check-result": verdict },
        el("td", { class: "mono" }, file), el("td", { class: cls }, verdict), el("td", {}, reason || "")));
    };
    let reference = DATA.manifest, from = "the manifest embedded in this report";
    let bad = 0;
    const manifestFile = byName.get(DATA.manifest_file) || files.find((f) => f.name.endsWith(".manifest.json"));
    if (manifestFile) {
      used.add(manifestFile.name);
      const bytes = new Uint8Array(await manifestFile.arrayBuffer());
      const digest = hex(await sha256(bytes));
      try {
        reference = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
        from = "the manifest file you gave (" + manifestFile.name + ")";
        if (digest === DATA.manifest_sha256) line(manifestFile.name, "valid", "the manifest this report was made from (sha256 " + digest + ")");
        else { bad++; line(manifestFile.name, "INVALID", "not the manifest this report was made from: sha256 " + digest + ", the report's is " + DATA.manifest_sha256); }
      } catch (err) {
        bad++;
        line(manifestFile.name, "INVALID", "not a JSON manifest: " + err.message);
      }
    }
    const chunks = Array.isArray(reference.chunks) ? reference.chunks : [];
    const tree = new Frontier();
    let missing = 0, records = 0;
    for (const [i, c] of chunks.entries()) {
      const f = byName.get(c.file);
      if (!f) { missing++; line(c.file, "not given", "no file of this name was given"); continue; }
      used.add(f.name);
      status.textContent = "Checking " + c.file + " (" + (i + 1) + " of " + chunks.length + ")…";
      const bytes = new Uint8Array(await f.arrayBuffer());
      const problems = [];
      if (bytes.length !== c.bytes) problems.push(fmt(bytes.length) + " bytes, the manifest says " + fmt(c.bytes));
      const digest = hex(await sha256(bytes));
      if (digest !== c.sha256) problems.push("sha256 " + digest + " is not the manifest's " + c.sha256);
      const parsed = chunkLines(bytes);
      problems.push(...parsed.problems);
      if (parsed.lines.length !== c.record_count) problems.push(fmt(parsed.lines.length) + " records, the manifest says " + fmt(c.record_count));
      records += parsed.lines.length;
      if (!missing) await tree.addLines(parsed.lines);
      if (problems.length) bad++;
      line(c.file, problems.length ? "INVALID" : "valid", problems.length ? problems.join("; ") : "sha256 " + digest + ", " + fmt(parsed.lines.length) + " records");
    }
    let rootVerdict;
    if (missing) {
      rootVerdict = "not given";
      line("Merkle root", rootVerdict, "not computed: " + missing + " chunk file(s) were not given");
    } else {
      const root = hex(await tree.root());
      const ok = root === reference.merkle_root;
      rootVerdict = ok ? "valid" : "INVALID";
      if (!ok) bad++;
      line("Merkle root", rootVerdict, ok ? root + " over " + fmt(tree.count) + " records"
        : "the records give " + root + ", the manifest says " + reference.merkle_root);
    }
    rows[rows.length - 1].setAttribute("data-check", "merkle");
    const listing = files.find((f) => f.name.endsWith(".sha256"));
    if (listing) {
      used.add(listing.name);
      const expected = chunks.map((c) => c.sha256 + "  " + c.file + "\n").join("");
      const ok = (await listing.text()) === expected;
      if (!ok) bad++;
      line(listing.name, ok ? "valid" : "INVALID", ok ? "lists exactly the manifest's chunks and hashes" : "does not list exactly the manifest's chunks and hashes");
    }
    for (const f of files) if (!used.has(f.name)) line(f.name, "ignored", "not a file of this export's manifest");
    results.appendChild(table(["file", "verdict", "detail"], rows));
    const verdict = bad ? "INVALID" : missing ? "INCOMPLETE" : "VALID";
    status.textContent = verdict + ": " + (chunks.length - missing) + " of " + chunks.length + " chunk(s) checked against " + from +
      ", " + fmt(records) + " records" + (bad ? ", " + bad + " problem(s)" : "") + ".";
    status.className = "status " + (bad ? "invalid" : missing ? "neutral" : "valid");
    status.setAttribute("data-check", verdict);
  }

  // -- about -----------------------------------------------------------------------------

  function renderAbout() {
    const body = document.getElementById("about-body");
    append(body, [
      el("p", {}, "Made by ", DATA.generator, " at ", DATA.generated_at, " from ", el("code", {}, DATA.export_dir), "."),
      el("p", {}, "This page is one file: its script and data are inside it, and its Content-Security-Policy lets it load ",
        "and send nothing. Its checks are only as trustworthy as the page itself; to check an export with nothing of ours, ",
        "use ", el("code", {}, "sha256sum -c audit_trail.sha256"), " and the steps in the project's docs/verifying-without-auditjournal.md."),
      jsonBlock("run configuration", DATA.run.config, false),
      DATA.run.error !== null && DATA.run.error !== undefined ? jsonBlock("run error", DATA.run.error, true) : null,
      jsonBlock("manifest", DATA.manifest, false)]);
  }

  renderHeader();
  renderSummary();
  renderVerification();
  renderGraph();
  renderTimeline();
  renderOutcomes();
  renderRows();
  renderCheck();
  renderAbout();
  document.body.setAttribute("data-rendered", "1");
  checkEmbedded().catch((err) => {
    const out = document.getElementById("embedded-check");
    out.textContent = "The embedded records could not be checked: " + err;
    out.setAttribute("data-embedded-check", "error");
  });
})();
