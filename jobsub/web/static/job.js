"use strict";
// One job: timeline, live log tail (server-sent events), live curves (uPlot), results, outputs, spec, cost.
(() => {
  const { el } = J;
  const jobId = decodeURIComponent(location.pathname.split("/").pop());
  const COLORS = ["#0b62d6", "#d63a0b", "#2b9348", "#8e44ad", "#c49000", "#00838f", "#6d4c41", "#e91e63"];
  const ORDER = ["QUEUED", "STAGING", "RUNNING", "UPLOADING"];

  // -- status and timeline -------------------------------------------------------------------------------
  const stateBox = el("span", { id: "state" });
  const reasonBox = el("span", { class: "muted", id: "reason" });
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  const facts = el("div", { class: "muted", id: "facts" });

  function drawStatus(status) {
    stateBox.replaceChildren(J.stateBadge(status.state, status.reason));
    stateBox.setAttribute("data-state", status.state);
    reasonBox.textContent = status.reason ? " " + status.reason : "";
    let steps = status.transitions || [];
    if (!steps.length) { // records written before transitions were kept
      steps = [{ state: "QUEUED", at: status.created }];
      if (status.started) steps.push({ state: "RUNNING", at: status.started });
      if (status.final) steps.push({ state: status.state, at: status.finished, reason: status.reason });
    }
    const seen = new Set(steps.map((s) => s.state));
    const items = steps.map((s) => el("li", { "data-state": s.state, title: s.reason || "" },
      el("b", { text: s.state }), " ", el("span", { class: "muted", text: J.time(s.at) }),
      s.reason ? el("div", { class: "muted", text: s.reason }) : null));
    if (!status.final) {
      for (const name of ORDER) if (!seen.has(name) && ORDER.indexOf(name) > ORDER.indexOf(status.state)) items.push(el("li", { class: "pending", text: name }));
      items.push(el("li", { class: "pending", text: "final" }));
    }
    timeline.replaceChildren(...items);
    facts.textContent = "duration " + J.duration(status.duration_seconds) + (status.exit_code !== null ? " · exit code " + status.exit_code : "") +
      (status.attempt ? " · attempt " + status.attempt : "");
  }

  // -- log -------------------------------------------------------------------------------------------------
  const logBox = el("div", { id: "log" });
  const follow = el("input", { type: "checkbox", checked: true, id: "follow" });
  let lastDone = ""; let partial = { chunk: "", batch: -1 }; let lineCount = 0;
  const lineCounter = el("span", { class: "muted", id: "line-count", text: "0 lines" });

  function addLines(payload) {
    const { chunk, batch, lines, done } = payload;
    if (chunk && batch >= 0) {
      if (chunk <= lastDone) return; // a reconnect replays what was shown: skip it
      if (chunk === partial.chunk && batch <= partial.batch) return;
    }
    const atBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 40;
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      fragment.append(el("div", { class: "line " + (line.s || ""), text: line.l }));
    }
    logBox.append(fragment);
    lineCount += lines.length;
    while (logBox.childElementCount > 20000) logBox.firstElementChild.remove();
    lineCounter.textContent = lineCount + " lines";
    if (done) { lastDone = chunk || lastDone; partial = { chunk: "", batch: -1 }; } else partial = { chunk, batch };
    if (follow.checked && atBottom) logBox.scrollTop = logBox.scrollHeight;
  }

  function followLog() {
    const source = new EventSource(J.apiJob(jobId, "/log/stream?tail=500"));
    source.addEventListener("lines", (e) => addLines(JSON.parse(e.data)));
    source.addEventListener("status", (e) => { const s = JSON.parse(e.data); drawStatus(s); if (s.final) onFinal(); });
    source.addEventListener("end", (e) => { source.close(); if (e.data) { drawStatus(JSON.parse(e.data)); } onFinal(); });
  }

  const searchBox = el("input", { placeholder: "search the whole log", id: "log-search" });
  const searchResults = el("div", { id: "search-results" });
  async function search() {
    const query = searchBox.value.trim();
    searchResults.replaceChildren();
    if (!query) return;
    const response = await fetch(J.apiJob(jobId, "/log/search?q=" + encodeURIComponent(query)), { credentials: "same-origin" });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = ""; let found = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const parts = buffered.split("\n"); buffered = parts.pop();
      for (const part of parts) {
        if (!part) continue;
        const line = JSON.parse(part); found++;
        searchResults.append(el("div", { class: "line" }, el("span", { class: "muted", text: "#" + line.n + " " }), line.l));
      }
    }
    searchResults.prepend(el("div", { class: "muted", text: found + " matching lines" }));
  }

  // -- curves ----------------------------------------------------------------------------------------------
  const rows = [];
  const charts = new Map();
  let headline = null;
  const headlineBox = el("p", { id: "headline" });
  const curves = el("div", { class: "grid", id: "curves" });
  const pointCount = el("span", { class: "muted", id: "curve-points", text: "0" });
  const axisSelect = el("select", { id: "x-axis", onchange: () => redrawCurves(true) },
    el("option", { value: "step", text: "step" }), el("option", { value: "elapsed_s", text: "time (s)" }));
  const smoothing = el("input", { type: "range", id: "smoothing", value: "0", onchange: () => redrawCurves(false) });
  smoothing.min = "0"; smoothing.max = "0.95"; smoothing.step = "0.05";

  function groupOf(key) {
    if (key === "step" || key === "epoch" || key === "elapsed_s" || key === "final") return null;
    if (key === "lr" || key === "learning_rate") return "learning rate";
    if (key.includes("loss") || key === "perplexity") return "loss";
    return "evaluation";
  }
  function smooth(values, alpha) {
    if (!alpha) return values;
    let last = null;
    return values.map((v) => { if (v === null || v === undefined) return null; last = last === null ? v : alpha * last + (1 - alpha) * v; return last; });
  }
  function redrawCurves(rebuild) {
    const xKey = axisSelect.value;
    const points = rows.filter((r) => !r.final && typeof r[xKey] === "number");
    const groups = new Map();
    for (const r of points) for (const key of Object.keys(r)) {
      const group = groupOf(key);
      if (group) { if (!groups.has(group)) groups.set(group, new Set()); groups.get(group).add(key); }
    }
    pointCount.textContent = String(points.length);
    if (headline) { // the best value so far, from the rows the page holds (the API's answer was at load time)
      const values = rows.map((r) => r[headline.metric]).filter((v) => typeof v === "number");
      if (values.length) {
        const best = headline.goal === "min" ? Math.min(...values) : Math.max(...values);
        headlineBox.textContent = "best " + headline.metric + ": " + J.num(best);
      }
    }
    if (typeof uPlot === "undefined") return;
    for (const [group, keySet] of groups) {
      const keys = [...keySet].sort();
      const xs = points.map((r) => r[xKey]);
      const alpha = group === "loss" ? Number(smoothing.value) : 0;
      const series = keys.map((k) => smooth(points.map((r) => (typeof r[k] === "number" ? r[k] : null)), alpha));
      const id = group + "|" + keys.join(",") + "|" + xKey;
      let chart = charts.get(group);
      if (chart && (rebuild || chart.id !== id)) { chart.plot.destroy(); chart.card.remove(); chart = null; }
      if (!chart) {
        const card = el("div", { class: "card", "data-group": group }, el("b", { text: group }));
        curves.append(card);
        const wide = curves.clientWidth;
        const plot = new uPlot({
          width: Math.max(300, (wide > 900 ? Math.floor(wide / 2) : wide) - 50), height: 220,
          scales: { x: { time: false } },
          series: [{ label: xKey }, ...keys.map((k, i) => ({ label: k, stroke: COLORS[i % COLORS.length], spanGaps: true, points: { show: false } }))],
        }, [xs, ...series], card);
        chart = { plot, card, id };
        charts.set(group, chart);
      } else {
        chart.plot.setData([xs, ...series]);
      }
    }
  }
  function followMetrics() {
    const source = new EventSource(J.apiJob(jobId, "/metrics/stream"));
    source.addEventListener("rows", (e) => {
      const data = JSON.parse(e.data);
      if (data.from === 0) rows.length = 0;
      rows.push(...data.rows);
      redrawCurves(false);
    });
    source.addEventListener("end", () => source.close());
  }

  // -- results, outputs, spec, cost ------------------------------------------------------------------------
  const resultsBox = el("div", { id: "results" });
  const outputsBox = el("div", { id: "outputs" });
  let finalShown = false;
  function onFinal() { if (!finalShown) { finalShown = true; loadResults(); } }

  function outputUrl(path, inline) {
    return J.apiJob(jobId, "/outputs/" + path.split("/").map(encodeURIComponent).join("/")) + (inline ? "?inline=1" : "");
  }
  function matrixTable(cm) {
    const max = Math.max(1, ...cm.matrix.flat().filter((v) => typeof v === "number"));
    return el("table", { class: "matrix", id: "confusion" },
      el("thead", {}, el("tr", {}, el("th", { text: "true \\ predicted" }), cm.labels.map((l) => el("th", { text: l })))),
      el("tbody", {}, cm.matrix.map((row, i) => el("tr", {}, el("th", { text: cm.labels[i] }), row.map((v) => {
        const cell = el("td", { text: v === null ? "" : v });
        if (typeof v === "number") cell.style.background = "rgba(11, 98, 214, " + (0.08 + 0.7 * v / max).toFixed(2) + ")";
        return cell;
      })))));
  }
  async function loadResults() {
    try {
      const r = await J.api(J.apiJob(jobId, "/results"));
      const parts = [];
      const metrics = Object.entries(r.metrics || {});
      if (metrics.length) parts.push(J.table(["metric", "value"], metrics.map(([k, v]) => [k, J.num(v)]), { id: "metrics-table" }));
      else parts.push(el("p", { class: "muted", text: "no results yet" }));
      if (r.metrics_source) parts.push(el("p", { class: "muted", text: "from " + r.metrics_source }));
      if (r.per_class) {
        parts.push(el("h2", { text: "Per class" }));
        parts.push(J.table(["class", "precision", "recall", "f1", "support"], Object.entries(r.per_class).map(([name, c]) =>
          [name, J.num(c.precision), J.num(c.recall), J.num(c.f1), J.num(c.support)]), { id: "per-class" }));
      }
      if (r.confusion_matrix) { parts.push(el("h2", { text: "Confusion matrix" })); parts.push(matrixTable(r.confusion_matrix)); }
      for (const w of r.warnings || []) parts.push(el("p", { class: "error", text: w }));
      resultsBox.replaceChildren(...parts);
      outputsBox.replaceChildren(J.table(["output", "size", ""], (r.files || []).map((f) => [
        el("a", { href: outputUrl(f.path, false), text: f.path }), J.bytes(f.size),
        /\.(png|jpe?g)$/i.test(f.path) ? el("a", { href: outputUrl(f.path, true), text: "view" }) : "",
      ]), { id: "outputs-table" }));
    } catch (error) {
      resultsBox.replaceChildren(el("p", { class: "error", text: "results: " + error.message }));
    }
  }

  function costBox(job) {
    const c = job.cost || {};
    const est = c.estimate || null;
    const lines = [["actual (compute so far)", J.money(c.compute, c.currency) + " at " + J.num(c.rate_per_hour) + "/h"], ["price table", c.table || "none"]];
    if (est) for (const [k, v] of Object.entries(est)) if (typeof v === "number" || typeof v === "string") lines.push(["estimate " + k, J.num(v)]);
    if (c.max_cost !== null && c.max_cost !== undefined) lines.push(["max cost", J.money(c.max_cost, c.currency)]);
    return J.table(["cost", ""], lines, { id: "cost" });
  }

  async function start() {
    J.header("");
    let job;
    try { job = await J.api(J.apiJob(jobId)); } catch (error) { J.fail(error); return; }
    headline = job.headline;
    if (headline && headline.best !== null) {
      headlineBox.textContent = "best " + headline.metric + ": " + J.num(headline.best) + (headline.step !== null ? " at step " + headline.step : "");
    }
    J.main(
      el("h1", { text: job.id }),
      el("div", { class: "controls" }, stateBox, reasonBox),
      timeline, facts, headlineBox,
      el("p", { class: "muted", text: job.executor + " · " + job.record }),
      el("h2", { text: "Log" }),
      el("div", { class: "controls" }, el("label", {}, follow, " follow"), lineCounter,
        el("a", { href: J.apiJob(jobId, "/log.txt"), text: "download the whole log", id: "log-download" }),
        searchBox, el("button", { type: "button", text: "search", onclick: search })),
      logBox, searchResults,
      el("h2", { text: "Curves" }),
      el("div", { class: "controls" }, "x axis ", axisSelect, " smoothing ", smoothing, " points: ", pointCount),
      curves,
      el("h2", { text: "Results" }), resultsBox,
      el("h2", { text: "Outputs" }), outputsBox,
      el("h2", { text: "Parameters" }), J.table(["param", "value"], Object.entries(job.params || {}).map(([k, v]) => [k, String(v)]), { id: "params" }),
      el("h2", { text: "Cost" }), costBox(job),
      el("h2", { text: "Resolved spec" }), el("pre", { class: "spec", id: "spec", text: JSON.stringify(job.spec, null, 2) }),
    );
    drawStatus(job.status);
    // streams open after the load event: an event stream opened during loading keeps the page "loading"
    const streams = () => { followLog(); followMetrics(); };
    if (document.readyState === "complete") streams(); else window.addEventListener("load", streams);
    loadResults();
    if (job.status.final) finalShown = true;
  }
  start();
})();
