// draw.js: the pipeline graph, the timeline, the outcomes and the about section.
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
