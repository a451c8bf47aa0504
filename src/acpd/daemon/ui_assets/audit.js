// The tool-call audit: every session's tool calls, one row each, oldest first, with the filters
// the API takes (agent, kind, status, who decided its permission), further pages on demand and
// the whole selection as CSV.

import { api, enc } from "./api.js";
import { h, clear, select, ago } from "./dom.js";

const KINDS = ["", "read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"];
const STATUSES = ["", "pending", "in_progress", "completed", "failed"];
const DECIDERS = ["", "client", "policy", "limit", "timeout", "cancel", "error"];

export async function auditView(main) {
  const filters = {};
  const rows = h("tbody", { id: "audit" });
  const more = h("button", { id: "audit-more", hidden: true }, "More");
  const errorEl = h("div", { class: "error", role: "alert" });
  let cursor = null;

  const query = () => {
    const q = new URLSearchParams({ limit: "200" });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    return q;
  };
  const load = async (append) => {
    const q = query();
    if (append && cursor) q.set("cursor", cursor);
    try {
      const page = await api("GET", "/v1/audit/tool-calls?" + q);
      if (!append) clear(rows);
      rows.append(...page.items.map(row));
      cursor = page.nextCursor;
      more.hidden = !cursor;
      errorEl.textContent = "";
    } catch (err) {
      errorEl.textContent = err.message;
    }
  };
  const filter = (key, options, label) => select(options.map((o) => [o, o || label]), "", {
    id: "audit-" + key, onchange: (ev) => { filters[key] = ev.target.value; load(false); } });
  const csv = async () => {
    const q = query();
    q.set("format", "csv");
    const token = sessionStorage.getItem("acpd.token");
    const r = await fetch("/v1/audit/tool-calls?" + q, { headers: token ? { Authorization: "Bearer " + token } : {}, credentials: "omit" });
    if (!r.ok) return (errorEl.textContent = "export answered " + r.status);
    const url = URL.createObjectURL(await r.blob());
    const a = h("a", { href: url, download: "tool-calls.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  more.addEventListener("click", () => load(true));
  clear(main).append(h("div", { class: "sessions" },
    h("div", { class: "filters" },
      filter("kind", KINDS, "any kind"), filter("status", STATUSES, "any status"), filter("decidedBy", DECIDERS, "decided by anyone"),
      h("input", { id: "audit-agent", placeholder: "agent", onchange: (ev) => { filters.agent = ev.target.value.trim(); load(false); } }),
      h("button", { onclick: csv }, "CSV")),
    errorEl,
    h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["Started", "Session", "Agent", "Turn", "Kind", "Title", "Status", "Permission", "Duration"].map((t) => h("th", {}, t)))),
      rows),
    more));
  await load(false);
  return { dispose() {} };
}

function row(t) {
  const permission = t.permissionAsked ? [t.outcome || t.reply || "asked", t.decidedBy ? "by " + t.decidedBy : ""].join(" ") : "";
  return h("tr", { "data-call": t.toolCallId },
    h("td", {}, ago(t.startedAt)),
    h("td", {}, h("a", { href: "#/s/" + enc(t.sessionId), text: t.sessionId.slice(0, 8) })),
    h("td", { text: t.agent }), h("td", {}, String(t.turn)), h("td", { text: t.kind || "" }),
    h("td", { text: t.title || "" }),
    h("td", {}, h("span", { class: "badge status-" + t.status }, t.status)),
    h("td", { text: permission }),
    h("td", {}, t.durationMs === null || t.durationMs === undefined ? "" : `${t.durationMs} ms`));
}
