"use strict";
// 2..N jobs side by side: one metric's curves overlaid, and params + metrics in one table.
(() => {
  const { el } = J;
  const COLORS = ["#0b62d6", "#d63a0b", "#2b9348", "#8e44ad", "#c49000", "#00838f", "#6d4c41", "#e91e63"];
  const ids = (new URLSearchParams(location.search).get("ids") || "").split(",").filter(Boolean);

  function cellValue(v) { return v === undefined ? "" : typeof v === "number" ? J.num(v) : String(v); }

  async function start() {
    J.header("compare");
    if (ids.length < 2) {
      J.main(el("h1", { text: "Compare" }), el("p", { text: "Pick two or more jobs on the Jobs page and press “Compare selected”." }));
      return;
    }
    let data;
    try { data = await J.api("/api/compare?ids=" + ids.map(encodeURIComponent).join(",")); } catch (error) { J.fail(error); return; }
    const jobs = data.jobs;
    const histories = await Promise.all(jobs.map((j) => J.api(J.apiJob(j.id, "/metrics")).then((m) => m.rows).catch(() => [])));
    const keys = new Set();
    for (const rows of histories) for (const r of rows) for (const k of Object.keys(r)) if (!["step", "epoch", "elapsed_s", "final"].includes(k)) keys.add(k);
    const metricSelect = el("select", { id: "metric" }, [...keys].sort().map((k) => el("option", { value: k, text: k })));
    const headline = jobs.find((j) => j.headline) ? jobs.find((j) => j.headline).headline.metric : null;
    if (headline && keys.has(headline)) metricSelect.value = headline;
    const chartBox = el("div", { class: "card", id: "compare-chart" });
    let plot = null;
    function draw() {
      const key = metricSelect.value;
      if (plot) { plot.destroy(); plot = null; }
      chartBox.replaceChildren();
      if (!key || typeof uPlot === "undefined") return;
      const steps = [...new Set(histories.flatMap((rows) => rows.filter((r) => typeof r[key] === "number" && typeof r.step === "number").map((r) => r.step)))].sort((a, b) => a - b);
      const series = histories.map((rows) => {
        const byStep = new Map(rows.filter((r) => typeof r[key] === "number").map((r) => [r.step, r[key]]));
        return steps.map((s) => (byStep.has(s) ? byStep.get(s) : null));
      });
      plot = new uPlot({
        width: Math.max(480, chartBox.clientWidth - 30), height: 300, scales: { x: { time: false } },
        series: [{ label: "step" }, ...jobs.map((j, i) => ({ label: j.id, stroke: COLORS[i % COLORS.length], spanGaps: true }))],
      }, [steps, ...series], chartBox);
    }
    metricSelect.addEventListener("change", draw);

    const rowDefs = [["state", (j) => j.state], ["duration", (j) => J.duration(j.duration_seconds)]];
    if (headline) rowDefs.push(["best " + headline, (j) => (j.headline ? j.headline.best : undefined)]);
    const paramKeys = [...new Set(jobs.flatMap((j) => Object.keys(j.params || {})))].sort();
    const metricKeys = [...new Set(jobs.flatMap((j) => Object.keys(j.metrics || {})))].sort();
    for (const k of paramKeys) rowDefs.push(["params." + k, (j) => (j.params || {})[k]]);
    for (const k of metricKeys) rowDefs.push(["metrics." + k, (j) => (j.metrics || {})[k]]);
    const table = el("table", { id: "compare-table" },
      el("thead", {}, el("tr", {}, el("th", { text: "" }), jobs.map((j) => el("th", {}, el("a", { href: J.jobUrl(j.id), text: j.id }))))),
      el("tbody", {}, rowDefs.map(([label, get]) => {
        const values = jobs.map((j) => cellValue(get(j)));
        const same = values.every((v) => v === values[0]);
        return el("tr", { class: same ? "same" : "differs", "data-row": label }, el("th", { text: label }), values.map((v) => el("td", { text: v })));
      })));
    const wrapper = el("div", { class: "show-same", id: "compare-wrapper" }, table);
    const onlyDiff = el("input", { type: "checkbox", id: "only-differences",
      onchange: (e) => wrapper.classList.toggle("show-same", !e.target.checked) });
    J.main(
      el("h1", { text: "Compare " + jobs.length + " jobs" }),
      el("div", { class: "controls" }, "metric ", metricSelect),
      chartBox,
      el("h2", { text: "Parameters and metrics" }),
      el("label", {}, onlyDiff, " only differences"),
      wrapper,
    );
    draw();
  }
  start();
})();
