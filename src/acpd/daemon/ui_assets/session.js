// One session: its conversation (a virtual list of the model's rows, or of the raw JSON-RPC
// frames), the settings pickers, usage with the context meter, the plan, the pending permission
// cards, the prompt box, cancel and export. Live: the history a page at a time, then the SSE
// stream from the last seq held; every change since the last frame is drawn in one animation frame.

import { api, enc, follow, history } from "./api.js";
import { h, clear, select, fmtTokens, fmtCost } from "./dom.js";
import { SessionModel } from "./model.js";
import { renderRow, checklist } from "./rows.js";
import { VirtualList } from "./vlist.js";

const BUDGET_MS = 8;

export async function sessionView(main, id, ctx) {
  const base = `/v1/sessions/${enc(id)}`;
  const [session, agents] = await Promise.all([api("GET", base), api("GET", "/v1/agents")]);
  const model = new SessionModel(session);
  const view = new SessionView(main, id, base, model, agents.items, ctx);
  window.acpdUi = { model, view };
  view.start();
  return view;
}

class SessionView {
  constructor(main, id, base, model, agents, ctx) {
    Object.assign(this, { main, id, base, model, agents, ctx });
    this.frame = 0;
    this.raw = false;
    this.stream = null;
    this.loaded = false;
    this.build();
  }

  build() {
    const head = h("div", { class: "s-head" });
    this.headEl = head;
    this.scroller = h("div", { class: "scroller", id: "conversation", tabindex: "0" });
    this.detail = h("pre", { class: "frame-detail", hidden: true });
    this.aside = h("aside", { class: "s-side" });
    this.promptBox = h("textarea", { id: "prompt", rows: 3, placeholder: "Prompt (Ctrl+Enter sends; queues behind a running turn)",
      onkeydown: (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) this.send(); } });
    this.errorEl = h("div", { class: "error", role: "alert" });
    const foot = h("div", { class: "s-foot" }, this.promptBox,
      h("div", { class: "buttons" },
        h("button", { id: "send", onclick: () => this.send() }, "Send"),
        h("button", { id: "cancel", onclick: () => this.act("POST", "/cancel") }, "Cancel")));
    clear(this.main).append(h("div", { class: "session" }, head, this.errorEl,
      h("div", { class: "s-body" }, h("div", { class: "s-main" }, this.scroller, this.detail), this.aside), foot));
    this.list = new VirtualList(this.scroller, {
      count: 0,
      render: (i) => renderRow(this.model.rows[i], this),
      version: (i) => this.model.rows[i].v,
    });
    this.drawHead();
  }

  // timing: milliseconds since the page's navigation began (performance.now()), for the benchmark
  start() {
    const timing = (this.model.timing = { start: performance.now() });
    history(this.id, 0, (items) => {
      this.model.apply(items);
      if (!timing.firstPage) timing.firstPage = performance.now();
      this.schedule();
    }).then(() => {
      if (this.disposed) return;
      this.loaded = true;
      timing.loaded = performance.now();
      this.schedule();
      this.follow();
    }, (err) => this.fail(err));
  }

  // Live records wait in an inbox and are applied in the next frames, at most BUDGET_MS of them a
  // frame, so a burst of 100,000 chunks never holds the page for long; the stream resumes after
  // the last record received (the inbox included), and the model still skips any it holds.
  follow() {
    this.inbox = [];
    this.received = this.model.lastSeq;
    this.stream = follow(this.id, () => this.received, {
      onRecords: (records) => {
        for (const record of records) {
          if (record.seq <= this.received) continue;
          this.inbox.push(record);
          this.received = record.seq;
        }
        this.schedule();
      },
      onState: (state) => {
        this.ctx.connection(state);
        if (state === "gone") this.fail(new Error("this session no longer exists (deleted elsewhere)"));
      },
    });
  }

  // after a turn: the session's own fields (a title from the first prompt, totals, the queue)
  async reload() {
    try {
      const [fresh, turns] = await Promise.all([api("GET", this.base), api("GET", this.base + "/turns")]);
      this.turns = turns.items;
      Object.assign(this.model.session, fresh);
      this.model.usage = { ...this.model.usage, ...fresh.usage };
      // the status only from an answer that saw at least what the page holds (not a stale one)
      if (fresh.lastSeq >= this.model.lastSeq) this.model.status = fresh.pendingPermissions ? "awaiting_permission" : fresh.status;
      this.schedule();
    } catch (err) {
      this.fail(err);
    }
  }

  // The text of every row of one kind as the page renders it, rows outside the view included
  // (the list keeps only the visible ones in the DOM); the tests read whole turns with it.
  renderedText(kind) {
    return this.model.rows.filter((r) => r.kind === kind).map((r) => {
      const el = renderRow(r, this);
      return (el.querySelector(".md, .plain") || el).textContent;
    });
  }

  dropStream() {
    if (this.stream) this.stream.drop();
  }

  dispose() {
    this.disposed = true;
    this.list.destroy();
    if (this.stream) this.stream.stop();
    if (window.acpdUi && window.acpdUi.view === this) window.acpdUi = null;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  draw() {
    const m = this.model;
    if (this.inbox && this.inbox.length) {
      const until = performance.now() + BUDGET_MS;
      let k = 0;
      while (k < this.inbox.length && performance.now() < until) {
        m.apply(this.inbox.slice(k, k + 500));
        k += 500;
      }
      this.inbox = this.inbox.slice(k);
      if (this.inbox.length) this.schedule();
    }
    if (this.raw) this.list.setCount(m.frames.length);
    else this.list.setCount(m.rows.length);
    if (m.dirty.size) {
      m.dirty.clear();
      this.list.changed();
    }
    if (m.turnsEnded !== this.endedSeen && this.loaded) {
      this.endedSeen = m.turnsEnded;
      this.reload();
    }
    this.drawHead();
    this.drawSide();
    if (!m.timing.firstRender && m.rows.length) {
      // time to first render: when the first rows are in the DOM (measured after the list draws)
      requestAnimationFrame(() => { m.timing.firstRender = m.timing.firstRender || performance.now(); });
    }
  }

  // The parts that change with every event (status, usage, the count) are updated in place; the
  // pickers, title and cards are rebuilt only when what they show changed, so a control being
  // used is never swapped out under the pointer.
  drawHead() {
    const s = this.model.session;
    const u = this.model.usage;
    const status = this.model.status;
    const sig = JSON.stringify([s.agent, s.title, s.archivedAt, s.configOptions, this.raw]);
    if (sig !== this.headSig) {
      this.headSig = sig;
      this.buildHead(s);
    }
    this.statusEl.className = "badge status-" + status;
    this.statusEl.textContent = status.replaceAll("_", " ");
    const queued = s.queuedPrompts || 0;
    this.queuedEl.hidden = !queued;
    this.queuedEl.textContent = `${queued} queued`;
    const meter = u.contextSize ? h("meter", { id: "context", min: 0, max: u.contextSize, value: u.contextUsed || 0,
      title: `context ${fmtTokens(u.contextUsed)} of ${fmtTokens(u.contextSize)}` }) : null;
    const parts = [];
    if (u.totalTokens) parts.push(`${fmtTokens(u.totalTokens)} tokens`);
    if (fmtCost(u.cost)) parts.push(fmtCost(u.cost));
    if (u.contextSize) parts.push(`context ${fmtTokens(u.contextUsed)} / ${fmtTokens(u.contextSize)}`);
    const usage = parts.join(" · ");
    if (usage !== this.usageSig) {
      this.usageSig = usage;
      clear(this.usageEl).append(usage || "no usage yet", ...(meter ? [" ", meter] : []));
    }
  }

  buildHead(s) {
    this.statusEl = h("span", { class: "badge", id: "status" });
    this.queuedEl = h("span", { class: "badge queued", id: "queued", hidden: true });
    this.usageEl = h("span", { class: "usage", id: "usage" });
    this.usageSig = "";
    const title = h("input", { class: "title-edit", id: "title", value: s.title || "", placeholder: "untitled", "aria-label": "title",
      onchange: (ev) => this.patch({ title: ev.target.value }) });
    clear(this.headEl).append(
      h("a", { href: "#/", class: "back" }, "← sessions"), title, this.statusEl, this.queuedEl,
      h("label", {}, "agent ", select(this.agents.filter((a) => a.usable || a.name === s.agent).map((a) => a.name), s.agent,
        { id: "pick-agent", onchange: (ev) => this.patch({ agent: ev.target.value }) })),
      ...this.pickers(s), this.usageEl,
      h("span", { class: "actions" },
        h("button", { id: "raw-toggle", onclick: () => this.toggleRaw() }, this.raw ? "Conversation" : "Raw frames"),
        "export ", ["markdown", "json", "jsonl"].map((f) => h("button", { class: "link", "data-export": f, onclick: () => this.exportAs(f) }, f)),
        h("button", { id: "fork", title: "a new session with this one's history up to its last finished turn", onclick: () => this.fork() }, "Fork"),
        h("button", { onclick: () => this.patch({ archived: !s.archivedAt }) }, s.archivedAt ? "Unarchive" : "Archive"),
        h("button", { class: "danger", onclick: () => this.remove() }, "Delete")));
  }

  pickers(s) {
    const settings = { model: "model", mode: "mode", thought_level: "thoughtLevel" };
    return (s.configOptions || []).filter((o) => settings[o.category] && o.type === "select").map((o) =>
      h("label", {}, o.name.toLowerCase() + " ", select((o.options || []).map((v) => [v.value, v.name || v.value]), o.currentValue,
        { id: "pick-" + settings[o.category], onchange: (ev) => this.patch({ [settings[o.category]]: ev.target.value }) })));
  }

  drawSide() {
    const m = this.model;
    if (!this.sideBuilt) {
      this.sideBuilt = true;
      this.cardsEl = h("div", { class: "pending", id: "pending" });
      this.planEl = h("div", { id: "plan" });
      this.seqEl = h("p", { class: "muted", id: "seq" });
      this.turnsEl = h("ol", { class: "turns", id: "turns" });
      this.aside.append(h("h3", {}, "Permissions"), this.cardsEl, h("h3", {}, "Plan"), this.planEl,
        h("h3", {}, "Turns"), this.turnsEl, h("h3", {}, "Log"), this.seqEl);
    }
    if (this.turns !== this.turnsShown) {
      this.turnsShown = this.turns;
      clear(this.turnsEl).append(...(this.turns || []).map((t) => h("li", { "data-turn": t.turn, onclick: () => this.goToTurn(t.turn) },
        h("span", { class: "turn-prompt", text: t.prompt || "(no text)" }),
        h("span", { class: "muted" }, ` ${t.error ? "error" : t.stopReason} · ${t.steps} tools`,
          t.usage && t.usage.totalTokens ? ` · ${fmtTokens(t.usage.totalTokens)} tok` : "", t.usage && t.usage.cost ? " · " + fmtCost(t.usage.cost) : ""))));
    }
    const pending = [...m.pending.keys()].join(",");
    if (pending !== this.pendingSig) {
      this.pendingSig = pending;
      const cards = [...m.pending.values()].map((row) => renderRow(row, this));
      clear(this.cardsEl).append(...(cards.length ? cards : [h("p", { class: "muted" }, "none pending")]));
    }
    if (m.plan !== this.planShown) {
      this.planShown = m.plan;
      clear(this.planEl).append(m.plan ? checklist(m.plan) : h("p", { class: "muted" }, "no plan"));
    }
    this.seqEl.textContent = `${m.lastSeq} events` + (this.loaded ? "" : " (loading…)");
  }

  goToTurn(turn) {
    if (this.raw) this.toggleRaw();
    const index = this.model.rows.findIndex((r) => r.kind === "user" && r.turn === turn);
    if (index >= 0) this.list.scrollToIndex(index);
  }

  async fork() {
    try {
      const forked = await api("POST", this.base + "/fork", {});
      location.hash = "#/s/" + enc(forked.id);
    } catch (err) {
      this.fail(err);
    }
  }

  toggleRaw() {
    this.raw = !this.raw;
    this.detail.hidden = true;
    this.list.destroy();
    this.list = new VirtualList(this.scroller, this.raw ? {
      count: this.model.frames.length,
      estimate: 22,
      render: (i) => frameRow(this.model.frames[i], () => this.showFrame(i)),
      version: () => 0,
    } : {
      count: this.model.rows.length,
      render: (i) => renderRow(this.model.rows[i], this),
      version: (i) => this.model.rows[i].v,
    });
    this.drawHead();
    this.schedule();
  }

  showFrame(i) {
    this.detail.hidden = false;
    this.detail.textContent = JSON.stringify(this.model.frames[i], null, 2);
  }

  async send() {
    const text = this.promptBox.value;
    if (!text.trim()) return;
    const controller = new AbortController();
    try {
      // streamed, and let go once accepted: the turn belongs to the daemon and its events come
      // on the session's stream (a blocking request would hold a connection per queued prompt)
      const r = await fetch(this.base + "/prompt", {
        method: "POST", signal: controller.signal, credentials: "omit",
        headers: { ...authHeaders(), "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ prompt: text, queue: true }),
      });
      if (!r.ok) throw new Error((await r.json()).detail || "HTTP " + r.status);
      this.promptBox.value = "";
      this.errorEl.textContent = "";
      this.reload(); // its place in the queue
    } catch (err) {
      this.fail(err);
    } finally {
      controller.abort();
    }
  }

  async answer(pid, optionId) {
    try {
      await api("POST", `${this.base}/permissions/${enc(pid)}`, { optionId });
    } catch (err) {
      if (err.status !== 404) this.fail(err); // 404: someone else answered first
    }
  }

  async patch(body) {
    try {
      this.model.session = Object.assign(this.model.session, await api("PATCH", this.base, body));
      this.errorEl.textContent = "";
    } catch (err) {
      this.fail(err);
    }
    this.schedule();
  }

  async act(method, suffix) {
    try {
      await api(method, this.base + suffix);
    } catch (err) {
      this.fail(err);
    }
  }

  async remove() {
    if (!confirm("Delete this session and its whole log?")) return;
    await this.act("DELETE", "");
    location.hash = "#/";
  }

  async exportAs(format) {
    const r = await fetch(`${this.base}/export?format=${format}`, { headers: authHeaders(), credentials: "omit" });
    if (!r.ok) return this.fail(new Error("export answered " + r.status));
    const url = URL.createObjectURL(await r.blob());
    const ext = format === "markdown" ? "md" : format;
    const a = h("a", { href: url, download: `${this.id}.${ext}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  fail(err) {
    this.errorEl.textContent = err && err.message ? err.message : String(err);
  }
}

function authHeaders() {
  const t = sessionStorage.getItem("acpd.token");
  return t ? { Authorization: "Bearer " + t } : {};
}

function frameRow(record, onclick) {
  const p = record.payload || {};
  const what = p.method === "session/update" ? p.params.update.sessionUpdate : p.method || (p.error ? "error" : "result");
  const json = JSON.stringify(p);
  return h("div", { class: "frame", onclick },
    h("span", { class: "seq" }, String(record.seq)),
    h("span", { class: "sender s-" + record.sender }, record.sender),
    h("span", { class: "what", text: what }),
    h("span", { class: "json", text: json.length > 300 ? json.slice(0, 300) + "…" : json }));
}
