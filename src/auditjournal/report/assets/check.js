// check.js: WebCrypto SHA-256, the RFC 6962 Merkle tree, the re-hash of the embedded
// records and the check of the chunk files the auditor gives the page.
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
    let manifestDigest = DATA.manifest_sha256, manifestName = DATA.manifest_file;
    let bad = 0;
    const manifestFile = byName.get(DATA.manifest_file) || files.find((f) => f.name.endsWith(".manifest.json"));
    if (manifestFile) {
      used.add(manifestFile.name);
      const bytes = new Uint8Array(await manifestFile.arrayBuffer());
      const digest = hex(await sha256(bytes));
      manifestDigest = digest;
      manifestName = manifestFile.name;
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
      // every chunk, then the manifest (the listing covers it: `sha256sum -c` checks both)
      const expected = chunks.map((c) => c.sha256 + "  " + c.file + "\n").join("") +
        manifestDigest + "  " + manifestName + "\n";
      const ok = (await listing.text()) === expected;
      if (!ok) bad++;
      line(listing.name, ok ? "valid" : "INVALID", ok ? "lists exactly the manifest's chunks and hashes, and the manifest's" : "does not list exactly the manifest's chunks and hashes, and the manifest's");
    }
    for (const f of files) if (!used.has(f.name)) line(f.name, "ignored", "not a file of this export's manifest");
    results.appendChild(table(["file", "verdict", "detail"], rows));
    const verdict = bad ? "INVALID" : missing ? "INCOMPLETE" : "VALID";
    status.textContent = verdict + ": " + (chunks.length - missing) + " of " + chunks.length + " chunk(s) checked against " + from +
      ", " + fmt(records) + " records" + (bad ? ", " + bad + " problem(s)" : "") + ".";
    status.className = "status " + (bad ? "invalid" : missing ? "neutral" : "valid");
    status.setAttribute("data-check", verdict);
  }
