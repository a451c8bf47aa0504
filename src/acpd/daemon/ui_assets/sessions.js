// The sessions list: live status badges (the list is read again every two seconds while shown),
// search and filters, a new-session form, and rename, archive and delete on each row.

import { api, enc } from "./api.js";
import { h, clear, select, fmtTokens, fmtCost, ago } from "./dom.js";

const POLL_MS = 2000;

export async function sessionsView(main) {
  const agents = (await api("GET", "/v1/agents")).items;
  const view = new SessionsView(main, agents);
  await view.refresh();
  view.timer = setInterval(() => view.refresh(), POLL_MS);
  return view;
}

class SessionsView {
  constructor(main, agents) {
    this.main = main;
    this.agents = agents;
    this.filters = { q: "", agent: "", project: "", status: "", archived: "false" };
    this.table = h("tbody", { id: "sessions" });
    this.summary = h("div", { class: "summary", id: "usage-summary" });
    this.errorEl = h("div", { class: "error", role: "alert" });
    const names = ["", ...agents.map((a) => a.name)];
    const filter = (key, el) => {
      el.addEventListener(el.tagName === "INPUT" ? "input" : "change", () => {
        this.filters[key] = el.value;
        this.refresh();
      });
      return el;
    };
    clear(main).append(h("div", { class: "sessions" },
      this.newForm(),
      h("div", { class: "filters" },
        filter("q", h("input", { type: "search", id: "search", placeholder: "Search titles, prompts, replies" })),
        filter("agent", select(names.map((n) => [n, n || "any agent"]), "", { id: "filter-agent" })),
        filter("project", h("input", { id: "filter-project", placeholder: "project" })),
        filter("status", select([["", "any status"], "idle", "running", "awaiting_permission", "queued", "error", "closed"], "", { id: "filter-status" })),
        filter("archived", select([["false", "active"], ["true", "archived"], ["any", "all"]], "false", { id: "filter-archived" }))),
      this.errorEl,
      this.summary,
      h("table", { class: "list" },
        h("thead", {}, h("tr", {}, ["Status", "Title", "Agent", "Model", "Project", "Last activity", "Usage", ""].map((t) => h("th", {}, t)))),
        this.table)));
  }

  newForm() {
    const usable = this.agents.filter((a) => a.usable).map((a) => a.name);
    const agent = select(usable, usable.includes("mock") ? "mock" : usable[0], { id: "new-agent" });
    const field = (id, placeholder) => h("input", { id, placeholder });
    const cwd = field("new-cwd", "working directory (absolute; default: the daemon's)");
    const title = field("new-title", "title");
    const model = field("new-model", "model");
    const mode = field("new-mode", "mode");
    const thought = field("new-thought", "thought level");
    const policy = select([["", "policy: default"], "ask", "allow", "allow_reads", "deny"], "", { id: "new-policy" });
    const submit = async (ev) => {
      ev.preventDefault();
      const body = { agent: agent.value };
      for (const [key, el] of [["cwd", cwd], ["title", title], ["model", model], ["mode", mode], ["thoughtLevel", thought]]) {
        if (el.value.trim()) body[key] = el.value.trim();
      }
      if (policy.value) body.policy = { permissions: policy.value };
      try {
        const created = await api("POST", "/v1/sessions", body);
        location.hash = "#/s/" + enc(created.id);
      } catch (err) {
        this.errorEl.textContent = err.message;
      }
    };
    return h("form", { class: "new-session", id: "new-session", onsubmit: submit },
      h("strong", {}, "New session "), agent, cwd, title, model, mode, thought, policy, h("button", { type: "submit", id: "create" }, "Create"));
  }

  async refresh() {
    const f = this.filters;
    const query = new URLSearchParams({ limit: "200", archived: f.archived });
    if (f.q.trim()) query.set("q", f.q.trim());
    if (f.agent) query.set("agent", f.agent);
    if (f.project.trim()) query.set("project", f.project.trim());
    try {
      const [page, usage] = await Promise.all([api("GET", "/v1/sessions?" + query), api("GET", "/v1/usage?groupBy=agent")]);
      this.drawUsage(usage);
      this.draw(page.items.filter((s) => !f.status || statusOf(s) === f.status || (f.status === "queued" && s.queuedPrompts)));
      this.errorEl.textContent = "";
    } catch (err) {
      this.errorEl.textContent = err.message;
    }
  }

  drawUsage(usage) {
    const line = (label, u) => h("span", {}, h("strong", { text: label }),
      ` ${u.turns} turns · ${fmtTokens(u.totalTokens)} tokens`, u.cost ? " · " + fmtCost(u.cost) : "");
    clear(this.summary).append("Usage by agent:", ...usage.items.map((u) => line(u.key, u)), line("all", usage.total));
  }

  draw(items) {
    clear(this.table).append(...items.map((s) => this.row(s)));
  }

  row(s) {
    const status = statusOf(s);
    const u = s.usage || {};
    return h("tr", { "data-session": s.id },
      h("td", {}, h("span", { class: "badge status-" + status }, status.replaceAll("_", " ")),
        s.pendingPermissions ? h("span", { class: "badge status-awaiting_permission" }, `${s.pendingPermissions} asking`) : null,
        s.queuedPrompts ? h("span", { class: "badge queued" }, `${s.queuedPrompts} queued`) : null,
        s.archivedAt ? h("span", { class: "badge" }, "archived") : null),
      h("td", {}, h("a", { href: "#/s/" + enc(s.id), text: s.title || s.id }),
        s.match ? h("div", { class: "snippet", text: s.match.snippet }) : null),
      h("td", { text: s.agent }), h("td", { text: s.model || "" }), h("td", { text: s.project || "" }),
      h("td", {}, ago(s.updatedAt)),
      h("td", {}, [fmtTokens(u.totalTokens), fmtCost(u.cost)].filter(Boolean).join(" · ")),
      h("td", { class: "row-actions" },
        h("button", { onclick: () => this.rename(s) }, "Rename"),
        h("button", { onclick: () => this.change(s, { archived: !s.archivedAt }) }, s.archivedAt ? "Unarchive" : "Archive"),
        h("button", { class: "danger", onclick: () => this.remove(s) }, "Delete")));
  }

  async rename(s) {
    const title = prompt("New title", s.title || "");
    if (title !== null) await this.change(s, { title });
  }

  async change(s, body) {
    try {
      await api("PATCH", "/v1/sessions/" + enc(s.id), body);
    } catch (err) {
      this.errorEl.textContent = err.message;
    }
    this.refresh();
  }

  async remove(s) {
    if (!confirm(`Delete session ${s.title || s.id} and its whole log?`)) return;
    try {
      await api("DELETE", "/v1/sessions/" + enc(s.id));
    } catch (err) {
      this.errorEl.textContent = err.message;
    }
    this.refresh();
  }

  dispose() {
    clearInterval(this.timer);
  }
}

function statusOf(s) {
  if (s.pendingPermissions && s.status !== "error") return "awaiting_permission";
  return s.status;
}
