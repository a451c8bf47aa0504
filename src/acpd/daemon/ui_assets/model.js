// A session as the page sees it, folded from its event log: conversation rows (messages, thinking,
// tool calls, plans, permission requests, turn ends, acpd's notes), the pending permissions, the
// plan, usage, settings and status. Records are applied strictly by seq: one already held is
// skipped (a resumed stream may repeat), so every event counts exactly once.

const SPLIT = 4000; // a message row past this many characters continues in a new row

export class SessionModel {
  constructor(session) {
    this.session = session;
    this.rows = [];
    this.frames = [];
    this.lastSeq = 0;
    this.stats = { applied: 0, duplicates: 0, gaps: 0, chunks: 0 };
    this.tools = new Map();
    this.perms = new Map(); // permission id -> row
    this.pending = new Map(); // permission id -> row, not answered yet
    this.plan = null;
    this.usage = { ...(session.usage || {}) };
    this.status = session.status;
    this.turn = 0;
    this.turnsEnded = 0;
    this.dirty = new Set();
  }

  apply(records) {
    for (const record of records) {
      if (record.seq <= this.lastSeq) {
        this.stats.duplicates++;
        continue;
      }
      if (record.seq !== this.lastSeq + 1) this.stats.gaps++;
      this.lastSeq = record.seq;
      this.stats.applied++;
      this.frames.push(record);
      this.one(record);
    }
  }

  push(row) {
    row.v = 0;
    row.index = this.rows.length;
    this.rows.push(row);
    return row;
  }

  touch(row) {
    row.v++;
    this.dirty.add(row.index);
  }

  one(record) {
    const p = record.payload || {};
    if (record.turn > this.turn) this.turn = record.turn;
    if (p.method === "session/update") return this.update(record, p.params.update || {});
    if (p.method === "session/prompt") return this.prompt(record, p);
    if (p.method === "session/request_permission") return this.permission(record, p);
    if (p.method && p.method.startsWith("_acpd/")) return this.note(record, p);
    if (!p.method && p.result && p.result._meta && p.result._meta.acpd && p.result._meta.acpd.permissionId) {
      this.answered(p.result._meta.acpd.permissionId, p.result);
    } else if (!p.method && typeof p.id === "string" && p.id.startsWith("turn-")) this.ended(record, p);
  }

  update(record, u) {
    const kind = u.sessionUpdate;
    const text = u.content && u.content.type === "text" ? u.content.text : "";
    if (kind === "agent_message_chunk") {
      this.stats.chunks++;
      return this.text("agent", record.turn, text);
    }
    if (kind === "agent_thought_chunk") return this.text("thought", record.turn, text);
    if (kind === "user_message_chunk") return this.text("user", record.turn, text);
    if (kind === "tool_call" || kind === "tool_call_update") return this.tool(record, u);
    if (kind === "plan") return this.planned(record, u);
    if (kind === "usage_update") {
      this.usage.contextUsed = u.used;
      this.usage.contextSize = u.size;
      if (u.cost) this.usage.cost = u.cost;
      return;
    }
    if (kind === "current_mode_update") this.session.mode = u.currentModeId;
    else if (kind === "config_option_update") this.session.configOptions = u.configOptions;
    else if (kind === "session_info_update" && u.title !== undefined) this.session.title = u.title;
  }

  text(kind, turn, text) {
    let row = this.rows[this.rows.length - 1];
    if (!row || row.kind !== kind || row.turn !== turn || row.sealed) {
      row = this.push({ kind, turn, text: "", cont: false });
    }
    row.text += text;
    this.touch(row);
    if (row.text.length > SPLIT) this.split(row);
  }

  // Seal a long row at a paragraph, line or word break and carry the rest into a new row; an
  // open code fence is closed in the first and opened again in the second.
  split(row) {
    const t = row.text;
    let cut = t.lastIndexOf("\n\n", t.length - 1);
    if (cut < SPLIT / 2) cut = t.lastIndexOf("\n", t.length - 1);
    if (cut < SPLIT / 2) cut = t.lastIndexOf(" ", t.length - 1) + 1;
    if (cut < SPLIT / 2) cut = SPLIT;
    let head = t.slice(0, cut);
    let rest = t.slice(cut);
    const fences = head.match(/^ {0,3}(```|~~~).*$/gm) || [];
    if (fences.length % 2) {
      const opener = fences[fences.length - 1 - ((fences.length - 1) % 2)];
      head += "\n```";
      rest = opener + "\n" + rest;
    }
    row.text = head;
    row.sealed = true;
    this.touch(row);
    this.push({ kind: row.kind, turn: row.turn, text: rest, cont: true });
  }

  prompt(record, p) {
    const blocks = Array.isArray(p.params.prompt) ? p.params.prompt : [];
    const text = blocks.map((b) => (b.type === "text" ? b.text : `[${b.type}]`)).join("\n");
    this.push({ kind: "user", turn: record.turn, text, cont: false, sealed: true, at: record.at });
    this.status = "running";
  }

  tool(record, u) {
    let row = this.tools.get(u.toolCallId);
    if (!row) {
      row = this.push({ kind: "tool", turn: record.turn, id: u.toolCallId, call: {} });
      this.tools.set(u.toolCallId, row);
    }
    for (const [k, v] of Object.entries(u)) if (k !== "sessionUpdate" && v !== undefined && v !== null) row.call[k] = v;
    this.touch(row);
  }

  planned(record, u) {
    this.plan = u.entries || [];
    const last = this.planRow;
    if (last && last.turn === record.turn) {
      last.entries = this.plan;
      this.touch(last);
    } else {
      this.planRow = this.push({ kind: "plan", turn: record.turn, entries: this.plan });
    }
  }

  permission(record, p) {
    const id = "p" + record.seq;
    const row = this.push({ kind: "perm", turn: record.turn, id, request: p.params, answer: null });
    this.perms.set(id, row);
    this.pending.set(id, row);
    this.status = "awaiting_permission";
  }

  answered(id, result) {
    const row = this.perms.get(id);
    this.pending.delete(id);
    if (this.status === "awaiting_permission" && !this.pending.size) this.status = "running";
    if (!row) return;
    row.answer = result;
    this.touch(row);
  }

  ended(record, p) {
    const r = p.result || {};
    this.push({ kind: "end", turn: record.turn, stopReason: r.stopReason, usage: r.usage, error: p.error || null });
    this.status = p.error ? "error" : "idle";
    this.turnsEnded++;
    for (const row of this.pending.values()) this.answered(row.id, { outcome: { outcome: "cancelled" } });
  }

  note(record, p) {
    const params = p.params || {};
    if (p.method === "_acpd/settings_changed") {
      Object.assign(this.session, settingsOf(params.changes || {}, record.at));
    }
    this.push({ kind: "note", turn: record.turn, method: p.method.slice(6), params });
  }

  // Every row's text, in order, for one kind (the tests read the whole conversation with it).
  textOf(kind) {
    return this.rows.filter((r) => r.kind === kind).map((r) => r.text).join("");
  }
}

// a settings change as the session's own fields (`archived` is recorded as a flag)
function settingsOf(changes, at) {
  const out = { ...changes };
  if ("archived" in changes) {
    out.archivedAt = changes.archived ? at : null;
    delete out.archived;
  }
  return out;
}
