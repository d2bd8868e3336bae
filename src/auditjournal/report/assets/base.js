// auditjournal audit report: draws the data embedded in this page.
//
// Rules this script keeps: every value from the export is put into the page as
// text (textContent, setAttribute on non-script attributes), never as markup;
// nothing is fetched or sent (the page's Content-Security-Policy forbids it
// anyway); hashes are computed with the browser's WebCrypto (crypto.subtle).
//
// base.js: the page's data, DOM helpers (text only), the header, summary and verification.
// The report's scripts are inlined into one strict-mode function scope, in the order
// base, draw, rows, check, main (see html.py), so they share these names.
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
