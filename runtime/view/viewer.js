// spex view: draws a run's search trees and request timelines from the JSON inlined in the page.
// No libraries and no network: plain DOM and SVG strings, so the file works offline forever.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("spex-data").textContent);
  const app = document.getElementById("app");

  // Field positions of the compact arrays written by runtime/view/page.py.
  const N = { ID: 0, PARENT: 1, CAT: 2, REWARD: 3, TOKENS: 4, LEAF: 5, ANSWER: 6, CLASS: 7,
    REQ: 8, GEN: 9, SCORED: 10, PROMOTED: 11, TEXT: 12, DEPTH: 13 };
  const R = { NODE: 0, KIND: 1, SPEC: 2, ENQ: 3, START: 4, END: 5, ENDC: 6, TOKENS: 7 };
  const CATS = [
    { name: "main", color: "#2f6fd6" },
    { name: "speculative, kept", color: "#22a06b" },
    { name: "speculative, wasted", color: "#f0a030" },
    { name: "aborted", color: "#d9453b" },
  ];
  const REWARD_COLOR = "#7b4fb8";
  const CLASS_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46a0a0",
    "#f032e6", "#9a6324", "#808000", "#000075"];
  const ENDS = ["done", "aborted", "failed", "other"];

  const state = { group: 0, query: null, selected: null, highlight: null };

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
      '"': "&quot;", "'": "&#39;" }[c]));
  }
  function secs(x) {
    if (x === null || x === undefined) return "-";
    return x < 100 ? x.toFixed(2) + " s" : x.toFixed(0) + " s";
  }
  function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%"; }
  function num(x) { return x === null || x === undefined ? "-" : Number(x).toLocaleString("en-US"); }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const g = Number(params.get("g"));
    if (Number.isInteger(g) && g >= 0 && g < DATA.groups.length) state.group = g;
    const q = params.get("q");
    const group = DATA.groups[state.group];
    state.query = group && group.queries.includes(q) ? q : group ? group.queries[0] : null;
    // #...&node=spec:12 opens a node's path (the run's label, the node's index in the trace).
    const node = params.get("node");
    state.selected = null;
    if (node && state.query !== null) {
      const cut = node.lastIndexOf(":");
      const label = node.slice(0, cut), index = Number(node.slice(cut + 1));
      const run = group.data[state.query][label];
      if (run && Number.isInteger(index) && index >= 0 && index < run.n.length) state.selected = { label, index };
    }
  }

  // ---------------------------------------------------------------- summary
  function summaryTable(group) {
    const sync = group.runs.find((r) => r.mode === "sync");
    const base = sync && sync.summary ? sync.summary.engine_s : null;
    const rows = group.runs.map((run) => {
      const s = run.summary || {};
      const speed = base && s.engine_s ? (base / s.engine_s).toFixed(2) + "x" : "-";
      const p50 = s.latency_p50_s !== undefined ? s.latency_p50_s : run.latency_p50;
      return `<tr><td><b>${esc(run.mode)}</b>${run.label !== run.mode ? ` <span class="note">${esc(run.label)}</span>` : ""}</td>
        <td>${esc(run.concurrency ?? "-")}</td><td>${esc(s.queries ?? group.queries.length)}</td>
        <td>${pct(s.accuracy)}</td><td>${secs(p50)}</td><td>${num(s.tokens)}</td>
        <td>${num(s.spec_tokens_wasted)}</td><td>${pct(s.hit_rate)}</td>
        <td>${secs(s.engine_s)}</td><td>${speed}</td><td>${num(run.nodes)}</td></tr>`;
    });
    return `<table class="summary"><thead><tr><th>mode</th><th>concurrency</th><th>queries</th>
      <th>accuracy</th><th>p50 latency</th><th>tokens</th><th>wasted</th><th>hit rate</th>
      <th>engine time</th><th>speedup vs sync</th><th>traced nodes</th></tr></thead>
      <tbody>${rows.join("")}</tbody></table>`;
  }

  function controls(group) {
    const groupSelect = DATA.groups.length > 1
      ? `<label>runs <select id="group">${DATA.groups.map((g, i) =>
        `<option value="${i}"${i === state.group ? " selected" : ""}>${esc(g.name === "." ? "top" : g.name)}</option>`).join("")}</select></label>`
      : "";
    const options = group.queries.map((q) => {
      const parts = group.runs.filter((r) => group.data[q][r.label])
        .map((r) => `${r.mode} ${secs(group.data[q][r.label].end)}`);
      return `<option value="${esc(q)}"${q === state.query ? " selected" : ""}>query ${esc(q)} — ${esc(parts.join(" · "))}</option>`;
    });
    const at = group.queries.indexOf(state.query);
    return `<div class="controls">${groupSelect}
      <button id="prev" ${at <= 0 ? "disabled" : ""}>◀</button>
      <label><select id="query">${options.join("")}</select></label>
      <button id="next" ${at >= group.queries.length - 1 ? "disabled" : ""}>▶</button>
      <span class="qinfo">${at + 1} of ${group.queries.length} queries</span></div>`;
  }

  function legend() {
    return `<div class="legend">${CATS.map((c) =>
      `<span><i class="sw" style="background:${c.color}"></i>${c.name}</span>`).join("")}
      <span><i class="sw" style="background:${REWARD_COLOR}"></i>reward call</span>
      <span>○ ring = the leaf's answer class</span></div>`;
  }

  // ---------------------------------------------------------------- timeline
  function niceStep(span, target) {
    const raw = span / Math.max(1, target);
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function packLanes(reqs) {
    // Greedy interval packing: each request takes the first lane free at its start.
    const order = reqs.map((r, i) => i).filter((i) => reqs[i][R.START] !== null && reqs[i][R.END] !== null)
      .sort((a, b) => reqs[a][R.START] - reqs[b][R.START] || reqs[a][R.KIND] - reqs[b][R.KIND]);
    const laneEnd = [];
    const lane = new Map();
    for (const i of order) {
      const r = reqs[i];
      let l = laneEnd.findIndex((e) => e <= r[R.START] + 1e-9);
      if (l < 0) { l = laneEnd.length; laneEnd.push(0); }
      laneEnd[l] = r[R.END];
      lane.set(i, l);
    }
    return { lane, lanes: laneEnd.length };
  }

  function timelines(group, width) {
    const q = group.data[state.query];
    const runs = group.runs.filter((r) => q[r.label]);
    const span = Math.max(1e-6, ...runs.map((r) => q[r.label].end));
    const left = 118, right = 16, laneH = 7, laneGap = 2;
    const scale = (width - left - right) / span;
    const step = niceStep(span, 10);
    let out = `<div class="timeline"><h2>Timeline: engine requests of query ${esc(state.query)}, on the engine clock (same axis for every mode)</h2>
      <p class="note">One bar per generation or reward call, packed into lanes. A gap in every lane is a reward barrier: the search waits for scores before it selects and generates again.</p>`;
    runs.forEach((run, k) => {
      const d = q[run.label];
      const { lane, lanes } = packLanes(d.r);
      const h = Math.max(62, Math.max(1, lanes) * (laneH + laneGap) + 8);
      const last = k === runs.length - 1;
      const height = h + (last ? 22 : 4);
      const gens = d.r.filter((r) => r[R.KIND] === 0).length;
      const rewards = d.r.length - gens;
      let svg = `<svg class="tl" data-run="${esc(run.label)}" width="${width}" height="${height}">`;
      for (let t = 0; t <= span + 1e-9; t += step) {
        const x = left + t * scale;
        svg += `<line class="grid" x1="${x}" x2="${x}" y1="0" y2="${h}"/>`;
        if (last) svg += `<text x="${x}" y="${h + 15}" text-anchor="middle">${+t.toFixed(3)} s</text>`;
      }
      svg += `<text x="4" y="14" style="font-weight:600;fill:#1d2330;font-size:13px">${esc(run.mode)}</text>`;
      svg += `<text x="4" y="29">${secs(d.end)}</text>`;
      svg += `<text x="4" y="43">${gens} generate</text>`;
      svg += `<text x="4" y="57">${rewards} reward calls</text>`;
      svg += `<line class="axis" x1="${left}" x2="${width - right}" y1="${h}" y2="${h}"/>`;
      d.r.forEach((r, i) => {
        if (!lane.has(i)) return;
        const node = d.n[r[R.NODE]];
        const color = r[R.KIND] === 1 ? REWARD_COLOR : CATS[node ? node[N.CAT] : 0].color;
        const x = left + r[R.START] * scale;
        const w = Math.max(1, (r[R.END] - r[R.START]) * scale);
        const y = 4 + lane.get(i) * (laneH + laneGap);
        svg += `<rect class="req" data-run="${esc(run.label)}" data-req="${i}" x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${laneH}" fill="${color}" rx="1.5"/>`;
      });
      out += svg + "</svg>";
    });
    return out + "</div>";
  }

  // ---------------------------------------------------------------- trees
  function classColors(q) {
    // The same answer class gets the same colour in every mode of the query.
    const counts = new Map();
    for (const label in q) for (const n of q[label].n) {
      if (n[N.LEAF] && n[N.CLASS] !== null) counts.set(n[N.CLASS], (counts.get(n[N.CLASS]) || 0) + 1);
    }
    const ordered = [...counts.entries()].sort((a, b) => b[1] - a[1]).map((e) => e[0]);
    const colors = new Map();
    ordered.forEach((c, i) => colors.set(c, i < CLASS_COLORS.length ? CLASS_COLORS[i] : "#999"));
    return colors;
  }

  function layout(nodes) {
    // Layered layout: depth down the page, each layer ordered by its parents' order, so sibling
    // groups stay together and edges rarely cross; every layer spreads across the full width.
    const children = nodes.map(() => []);
    const roots = [];
    nodes.forEach((n, i) => (n[N.PARENT] >= 0 ? children[n[N.PARENT]].push(i) : roots.push(i)));
    const depth = new Array(nodes.length).fill(0);
    const layers = [];
    let frontier = roots;
    let d = 0;
    const seen = new Set();
    while (frontier.length) {
      layers.push(frontier);
      frontier.forEach((i) => { depth[i] = d; seen.add(i); });
      frontier = frontier.flatMap((i) => children[i].filter((c) => !seen.has(c)));
      d += 1;
    }
    // Nodes whose parent is missing from the trace (a cut-off file) still get drawn, at the top.
    const orphans = nodes.map((_, i) => i).filter((i) => !seen.has(i));
    if (orphans.length) layers.push(orphans);
    return { layers, children, depth };
  }

  function tree(group, run, colors, width) {
    const d = group.data[state.query][run.label];
    const nodes = d.n;
    const { layers } = layout(nodes);
    // Shallow trees get taller layers; deep ones (40 layers) stay on one screen.
    const dy = Math.max(18, Math.min(36, 300 / Math.max(1, layers.length - 1))), top = 12, pad = 10;
    const height = top + (layers.length - 1) * dy + 22;
    const pos = new Array(nodes.length);
    layers.forEach((layer, k) => {
      const gap = (width - 2 * pad) / layer.length;
      layer.forEach((i, j) => { pos[i] = [pad + gap * (j + 0.5), top + k * dy]; });
    });
    let edges = "", dots = "", rings = "";
    nodes.forEach((n, i) => {
      const p = n[N.PARENT];
      if (p >= 0 && pos[p]) {
        const [x1, y1] = pos[p], [x2, y2] = pos[i];
        const kept = n[N.CAT] <= 1 ? " kept" : "";
        edges += `<path class="edge${kept}" d="M${x1.toFixed(1)},${y1}C${x1.toFixed(1)},${y1 + dy / 2} ${x2.toFixed(1)},${y2 - dy / 2} ${x2.toFixed(1)},${y2}"/>`;
      }
    });
    const hl = state.highlight;
    nodes.forEach((n, i) => {
      const [x, y] = pos[i];
      const leaf = n[N.LEAF] === 1;
      const r = leaf ? 4.6 : n[N.PARENT] < 0 ? 5.5 : 3.8;
      const sel = state.selected && state.selected.label === run.label && state.selected.index === i;
      const dim = hl !== null && n[N.CLASS] !== hl;
      if (leaf && n[N.CLASS] !== null) {
        rings += `<circle class="answer-ring${dim ? " dim" : ""}" cx="${x.toFixed(1)}" cy="${y}" r="${r + 2.6}" stroke="${colors.get(n[N.CLASS]) || "#999"}"/>`;
      }
      dots += `<circle class="node${sel ? " sel" : ""}${dim ? " dim" : ""}" data-run="${esc(run.label)}" data-i="${i}" cx="${x.toFixed(1)}" cy="${y}" r="${r}" fill="${CATS[n[N.CAT]].color}"/>`;
    });
    const counts = [0, 0, 0, 0];
    nodes.forEach((n) => { counts[n[N.CAT]] += 1; });
    const answers = new Map();
    nodes.forEach((n) => {
      if (n[N.LEAF] && n[N.CLASS] !== null && n[N.CAT] <= 1) answers.set(n[N.CLASS], (answers.get(n[N.CLASS]) || 0) + 1);
    });
    const chips = [...answers.entries()].sort((a, b) => b[1] - a[1]).map(([c, k]) =>
      `<span class="chip" data-class="${esc(c)}" style="border-color:${colors.get(c) || "#999"}">${esc(c.length > 40 ? c.slice(0, 39) + "…" : c)} ×${k}</span>`).join("");
    return `<div class="treebox" data-run="${esc(run.label)}" data-nodes="${nodes.length}">
      <h3>${esc(run.mode)} <span class="note">${nodes.length} nodes, ${layers.length - 1} layers</span></h3>
      <div class="meta">${CATS.map((c, k) => `${c.name} ${counts[k]}`).join(" · ")}</div>
      <svg class="tree" width="${width}" height="${height}">${edges}${rings}${dots}</svg>
      <div class="answers"><b>answers of kept leaves:</b> ${chips || "none"}</div></div>`;
  }

  function trees(group, width) {
    const q = group.data[state.query];
    const runs = group.runs.filter((r) => q[r.label]);
    const colors = classColors(q);
    const cols = Math.min(runs.length, 3);
    const w = Math.floor((width - 16 * (cols - 1)) / cols) - 22;
    return `<h2>Search tree of query ${esc(state.query)} <span class="note">(hover a node for its reward, click it for its path; hover an answer to highlight its class)</span></h2>
      <div class="trees" style="grid-template-columns:repeat(${cols},1fr)">${runs.map((r) => tree(group, r, colors, w)).join("")}</div>`;
  }

  // ---------------------------------------------------------------- details
  function nodeLines(n) {
    const lines = [`node ${n[N.ID]} · ${CATS[n[N.CAT]].name}`];
    lines.push(`reward ${n[N.REWARD] === null ? "-" : Number(n[N.REWARD]).toFixed(4)} · ${n[N.TOKENS]} tokens · depth ${n[N.DEPTH]}`);
    if (n[N.ANSWER] !== null) lines.push(`answer ${n[N.ANSWER]}`);
    return lines;
  }

  function detail(group) {
    const sel = state.selected;
    const q = group.data[state.query];
    if (!sel || !q[sel.label]) {
      return `<div class="detail"><span class="empty">Click a node of a tree to read its path.</span></div>`;
    }
    const run = group.runs.find((r) => r.label === sel.label);
    const nodes = q[sel.label].n;
    const n = nodes[sel.index];
    const path = [];
    for (let i = sel.index; i >= 0; i = nodes[i][N.PARENT]) path.unshift(nodes[i]);
    const reqs = q[sel.label].r.filter((r) => r[R.NODE] === sel.index);
    const reqText = reqs.map((r) => `${r[R.KIND] ? "reward" : "generate"} (${r[R.SPEC] ? "speculative" : "main"}) ${secs(r[R.START])} → ${secs(r[R.END])}, ${ENDS[r[R.ENDC]]}`).join("<br>");
    const hasText = path.some((p) => p[N.PARENT] >= 0 && p[N.TEXT] !== null);
    const steps = hasText
      ? `<ol class="steps">${path.filter((p) => p[N.PARENT] >= 0).map((p, k, all) =>
        `<li class="${k === all.length - 1 ? "last" : ""}">${esc(p[N.TEXT] ?? "(no text)")}</li>`).join("")}</ol>`
      : `<p class="note">This trace records no step text, so the path is shown by its nodes: ${path.map((p) => esc(p[N.ID])).join(" → ")}.</p>`;
    // A trace with text gives the root the prompt: shown folded, above the steps.
    const prompt = path[0][N.TEXT] !== null && path[0][N.PARENT] < 0
      ? `<details><summary>prompt</summary><ol class="steps"><li>${esc(path[0][N.TEXT])}</li></ol></details>` : "";
    return `<div class="detail"><h3>${esc(run ? run.mode : sel.label)}: node ${esc(n[N.ID])}</h3><dl>
      <dt>kind</dt><dd>${CATS[n[N.CAT]].name}${n[N.LEAF] ? ", leaf" : ""}</dd>
      <dt>reward</dt><dd>${n[N.REWARD] === null ? "-" : Number(n[N.REWARD]).toFixed(4)}</dd>
      <dt>tokens</dt><dd>${n[N.TOKENS]}</dd><dt>answer</dt><dd>${esc(n[N.ANSWER] ?? "-")}</dd>
      <dt>requested / generated / scored</dt><dd>${secs(n[N.REQ])} / ${secs(n[N.GEN])} / ${secs(n[N.SCORED])}${n[N.PROMOTED] !== null ? `; promoted ${secs(n[N.PROMOTED])}` : ""}</dd>
      <dt>requests</dt><dd>${reqText || "-"}</dd></dl>
      <h3>Path from the root (${path.length - 1} steps)</h3>${prompt}${steps}</div>`;
  }

  // ---------------------------------------------------------------- page
  function render() {
    const group = DATA.groups[state.group];
    if (!group || state.query === null) {
      app.innerHTML = `<h1>spex view</h1><p>The trace holds no queries.</p>`;
      return;
    }
    const first = group.runs[0] || {};
    const width = Math.max(700, app.clientWidth - 48);
    const params = Object.entries(first.parameters || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    app.innerHTML = `<h1>spex view: ${esc(first.strategy || "trace")}</h1>
      <p class="sub">${esc(DATA.source)} · engine ${esc(first.engine || "-")} · ${group.queries.length} queries · modes ${esc(group.runs.map((r) => r.mode).join(", "))}${params ? " · " + esc(params) : ""}</p>
      <h2>Run summary</h2>${summaryTable(group)}
      ${controls(group)}${legend()}${timelines(group, width)}${trees(group, width)}
      <div id="detail">${detail(group)}</div><div id="tip"></div>`;
    bind();
  }

  function bind() {
    const group = DATA.groups[state.group];
    // Moving to another query goes through the URL (#g=0&q=17), so a view can be linked to.
    const go = (q) => {
      const hash = `g=${state.group}&q=${encodeURIComponent(q)}`;
      if (location.hash.slice(1) !== hash) location.hash = hash;
      else { state.query = q; render(); }
    };
    const g = document.getElementById("group");
    if (g) g.onchange = () => { state.group = Number(g.value); state.query = DATA.groups[state.group].queries[0]; go(state.query); };
    document.getElementById("query").onchange = (e) => go(e.target.value);
    const at = group.queries.indexOf(state.query);
    document.getElementById("prev").onclick = () => at > 0 && go(group.queries[at - 1]);
    document.getElementById("next").onclick = () => at < group.queries.length - 1 && go(group.queries[at + 1]);
    const tip = document.getElementById("tip");
    const q = group.data[state.query];
    const show = (e, text) => { tip.textContent = text; tip.style.display = "block"; tip.style.left = e.clientX + 14 + "px"; tip.style.top = e.clientY + 12 + "px"; };
    const hide = () => { tip.style.display = "none"; };
    app.querySelectorAll("circle.node").forEach((el) => {
      const n = q[el.dataset.run].n[Number(el.dataset.i)];
      el.onmousemove = (e) => show(e, nodeLines(n).join("\n"));
      el.onmouseleave = hide;
      el.onclick = () => { state.selected = { label: el.dataset.run, index: Number(el.dataset.i) }; render(); document.getElementById("detail").scrollIntoView({ block: "nearest" }); };
    });
    app.querySelectorAll("rect.req").forEach((el) => {
      const d = q[el.dataset.run];
      const r = d.r[Number(el.dataset.req)];
      const n = d.n[r[R.NODE]];
      el.onmousemove = (e) => show(e, `${r[R.KIND] ? "reward" : "generate"} for node ${n ? n[N.ID] : "?"} (${r[R.SPEC] ? "speculative" : "main"})\n${secs(r[R.START])} → ${secs(r[R.END])}, ${r[R.TOKENS]} tokens, ${ENDS[r[R.ENDC]]}`);
      el.onmouseleave = hide;
    });
    app.querySelectorAll(".chip").forEach((el) => {
      el.onmouseenter = () => { state.highlight = el.dataset.class; paintHighlight(); };
      el.onmouseleave = () => { state.highlight = null; paintHighlight(); };
    });
  }

  function paintHighlight() {
    // Dim other classes in place (no re-render, so the hovered chip stays under the pointer).
    const q = DATA.groups[state.group].data[state.query];
    app.querySelectorAll("circle.node").forEach((el) => {
      const n = q[el.dataset.run].n[Number(el.dataset.i)];
      el.classList.toggle("dim", state.highlight !== null && n[N.CLASS] !== state.highlight);
    });
  }

  readHash();
  render();
  window.addEventListener("hashchange", () => {
    readHash();
    state.highlight = null;
    render();
  });
})();
