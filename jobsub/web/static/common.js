"use strict";
// Shared helpers of every page. Data never becomes markup: elements are built with createElement and
// textContent only (a job's log or spec may hold "<script>"), and the CSP forbids inline script anyway.
const J = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "href" || key === "title" || key === "id" || key === "type" || key === "value"
               || key === "placeholder" || key === "checked" || key === "src" || key === "alt") node[key] = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path) {
    const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response.json();
  }

  function jobUrl(id) { return "/job/" + encodeURIComponent(id); }
  function apiJob(id, rest) { return "/api/jobs/" + encodeURIComponent(id) + (rest || ""); }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.round(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }
  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0; let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v) + " " + units[i];
  }
  function money(value, currency) {
    if (value === null || value === undefined) return "";
    return value.toFixed(value < 1 ? 4 : 2) + " " + (currency || "");
  }
  function num(value) {
    if (value === null || value === undefined) return "";
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  function stateBadge(state, reason) {
    return el("span", { class: "state " + state, text: state, title: reason || "", "data-state": state });
  }
  function header(active) {
    const top = document.getElementById("top");
    top.replaceChildren(
      el("span", { class: "brand", text: "jobsub" }),
      el("a", { href: "/", text: "Jobs", class: active === "jobs" ? "active" : "" }),
      el("a", { href: "/compare", text: "Compare", class: active === "compare" ? "active" : "" }),
      el("a", { href: "/storage", text: "Storage", class: active === "storage" ? "active" : "" }),
    );
  }
  function main(...children) {
    document.getElementById("main").replaceChildren(...children);
  }
  function fail(error) {
    main(el("p", { class: "error", id: "error", text: "error: " + error.message }));
  }
  function table(headers, rows, attrs) {
    return el("table", attrs || {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
  }
  return { el, api, jobUrl, apiJob, duration, time, bytes, money, num, stateBadge, header, main, fail, table };
})();
