// rows.js: the row browser: index the embedded records, search, a row's story, diffs.
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
