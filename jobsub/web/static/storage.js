"use strict";
// Interrupted multipart uploads (as the server lists them) and what the jobs prefix costs a month.
(() => {
  const { el } = J;
  async function start() {
    J.header("storage");
    let data;
    try { data = await J.api("/api/storage"); } catch (error) { J.fail(error); return; }
    const s = data.storage;
    J.main(
      el("h1", { text: "Storage" }),
      J.table(["prefix", "objects", "size", "per month"], [[s.prefix, String(s.objects), J.bytes(s.bytes), J.money(s.per_month, s.currency) + " [" + s.table + "]"]], { id: "storage-cost" }),
      el("h2", { text: "Interrupted uploads" }),
      data.uploads.length
        ? J.table(["object", "started", "file (this machine)", "done", "upload id"], data.uploads.map((u) => [
          u.uri, J.time(u.initiated), u.source || el("span", { class: "muted", text: "not known here" }),
          u.percent_done === null ? "" : u.percent_done + " %" + (u.size ? " of " + J.bytes(u.size) : ""), u.upload_id,
        ]), { id: "uploads" })
        : el("p", { class: "muted", id: "uploads", text: "no interrupted uploads" }),
      el("p", { class: "muted", text: "Resume one with the same `jobsub upload` command; clean up with `jobsub uploads abort`." }),
    );
  }
  start();
})();
