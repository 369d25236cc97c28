"use strict";
// The jobs list: filter, sort, page; refreshes every few seconds; pick jobs to compare.
(() => {
  const { el } = J;
  const params = new URLSearchParams(location.search);
  const view = {
    state: params.get("state") || "", name: params.get("name") || "", template: params.get("template") || "",
    sort: params.get("sort") || "created", order: params.get("order") || "desc",
    offset: Number(params.get("offset") || 0), limit: Number(params.get("limit") || 50),
  };
  const picked = new Set();
  const columns = [
    ["", null], ["job", "id"], ["state", "state"], ["executor", "executor"], ["started", "started"],
    ["duration", "duration"], ["cost", "cost"], ["best", "headline"],
  ];
  const body = el("tbody", { id: "jobs-body" });
  const summary = el("span", { class: "muted", id: "summary" });
  const compareButton = el("button", { type: "button", text: "Compare selected", id: "compare-selected",
    onclick: () => { if (picked.size >= 2) location.href = "/compare?ids=" + [...picked].map(encodeURIComponent).join(","); } });
  const headRow = el("tr", {});

  function input(key, placeholder) {
    return el("input", { value: view[key], placeholder, id: "filter-" + key,
      onchange: (e) => { view[key] = e.target.value.trim(); view.offset = 0; load(); } });
  }
  const stateSelect = el("select", { id: "filter-state", onchange: (e) => { view.state = e.target.value; view.offset = 0; load(); } },
    ["", "QUEUED", "STAGING", "RUNNING", "UPLOADING", "SUCCEEDED", "FAILED", "CANCELLED", "LOST"].map(
      (s) => el("option", { value: s, text: s || "any state" })));
  stateSelect.value = view.state;

  function drawHead() {
    headRow.replaceChildren(...columns.map(([label, key]) => {
      if (!key) return el("th", {});
      const arrow = view.sort === key ? (view.order === "desc" ? " ▼" : " ▲") : "";
      return el("th", { class: "sortable", text: label + arrow, "data-sort": key, onclick: () => {
        view.order = view.sort === key && view.order === "desc" ? "asc" : "desc";
        view.sort = key; view.offset = 0; load();
      } });
    }));
  }

  function row(job) {
    const check = el("input", { type: "checkbox", checked: picked.has(job.id),
      onchange: (e) => { if (e.target.checked) picked.add(job.id); else picked.delete(job.id); } });
    const head = job.headline;
    const best = head && head.best !== null ? J.num(head.best) : "";
    return el("tr", { "data-job": job.id },
      el("td", {}, check),
      el("td", {}, el("a", { href: J.jobUrl(job.id), text: job.id })),
      el("td", {}, J.stateBadge(job.state, job.reason), job.state === "QUEUED" && job.reason ? el("div", { class: "muted", text: job.reason }) : null),
      el("td", { text: job.executor || "" }),
      el("td", { text: J.time(job.started) }),
      el("td", { class: "num", text: J.duration(job.duration_seconds) }),
      el("td", { class: "num", text: job.cost ? J.money(job.cost.compute, job.cost.currency) : "" }),
      el("td", { class: "num", title: head ? head.metric + " (" + head.goal + ")" : "", text: best ? head.metric + " " + best : "" }),
    );
  }

  const prev = el("button", { type: "button", text: "◀ newer", onclick: () => { view.offset = Math.max(0, view.offset - view.limit); load(); } });
  const next = el("button", { type: "button", text: "older ▶", onclick: () => { view.offset += view.limit; load(); } });
  let timer = null;
  let pending = false;

  async function load() {
    if (pending) return;
    pending = true;
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(view)) if (v !== "" && v !== null) query.set(k, v);
    history.replaceState(null, "", "/?" + query.toString());
    try {
      const page = await J.api("/api/jobs?" + query.toString());
      drawHead();
      body.replaceChildren(...page.jobs.map(row));
      if (!page.jobs.length) body.append(el("tr", {}, el("td", { text: "no jobs" })));
      const last = Math.min(page.offset + page.jobs.length, page.total);
      summary.textContent = page.total ? `${page.offset + 1}–${last} of ${page.total} jobs` : "0 jobs";
      prev.disabled = page.offset === 0;
      next.disabled = last >= page.total;
    } catch (error) {
      summary.textContent = "error: " + error.message;
    } finally {
      pending = false;
    }
    clearTimeout(timer);
    timer = setTimeout(() => { if (!document.hidden) load(); else timer = setTimeout(load, 3000); }, 3000);
  }

  J.header("jobs");
  J.main(
    el("h1", { text: "Jobs" }),
    el("div", { class: "controls" }, stateSelect, input("name", "name contains"), input("template", "template"), compareButton, summary),
    el("table", { id: "jobs" }, el("thead", {}, headRow), body),
    el("div", { class: "pager" }, prev, next),
  );
  load();
})();
