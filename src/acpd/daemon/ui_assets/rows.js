// One conversation row as DOM: messages as safe Markdown, thinking folded, tool calls with their
// kind, status, locations, diffs and terminal output, plans as checklists, permission cards, turn
// ends and acpd's own notes. Every string from the session goes in as text (dom.js, markdown.js).

import { h, fmtTokens } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

export function renderRow(row, actions) {
  const el = RENDER[row.kind](row, actions);
  el.dataset.row = String(row.index);
  return el;
}

const RENDER = {
  user: (row) => h("div", { class: "msg user" + (row.cont ? " cont" : "") },
    row.cont ? null : h("div", { class: "who" }, "You · turn " + row.turn),
    h("div", { class: "plain", text: row.text })),
  agent: (row) => h("div", { class: "msg agent" + (row.cont ? " cont" : "") },
    row.cont ? null : h("div", { class: "who" }, "Agent"),
    h("div", { class: "md" }, renderMarkdown(row.text))),
  thought: (row) => {
    const el = h("details", { class: "thought", open: !!row.open },
      h("summary", {}, row.cont ? "Thinking (continued)" : "Thinking"),
      h("div", { class: "plain", text: row.text }));
    el.addEventListener("toggle", () => { row.open = el.open; });
    return el;
  },
  tool: renderTool,
  plan: (row) => h("div", { class: "plan" }, h("div", { class: "who" }, "Plan"), checklist(row.entries)),
  perm: renderPermission,
  end: (row) => h("div", { class: "turn-end" + (row.error ? " bad" : "") },
    `turn ${row.turn} ended: ${row.error ? "error " + (row.error.message || row.error.code) : row.stopReason}`,
    row.usage ? ` · ${fmtTokens(row.usage.totalTokens)} tokens` : ""),
  note: (row) => h("div", { class: "note" }, row.method.replaceAll("_", " "), noteDetail(row)),
};

export function checklist(entries) {
  const mark = { completed: "☑", in_progress: "◐", pending: "☐" };
  return h("ul", { class: "checklist" }, (entries || []).map((e) =>
    h("li", { class: "plan-" + e.status }, h("span", { class: "mark" }, mark[e.status] || "☐"), " ", String(e.content),
      e.priority ? h("span", { class: "prio" }, e.priority) : null)));
}

function noteDetail(row) {
  const p = row.params;
  if (row.method === "agent_started") return `: ${p.agent} (${p.how})`;
  if (row.method === "agent_exited") return `: ${p.agent}, exit ${p.exitCode}${p.expected ? " (expected)" : ""}`;
  if (row.method === "error") return `: ${p.code} ${p.message}`;
  if (row.method === "settings_changed") return ": " + Object.keys(p.changes || {}).join(", ");
  if (row.method === "limit_reached") return `: ${p.limit}`;
  return "";
}

function renderTool(row) {
  const c = row.call;
  const el = h("div", { class: "tool status-" + (c.status || "pending") },
    h("div", { class: "tool-head" },
      h("span", { class: "kind" }, c.kind || "tool"),
      h("span", { class: "title", text: c.title || row.id }),
      h("span", { class: "badge" }, c.status || "pending")));
  if (Array.isArray(c.locations) && c.locations.length) {
    el.append(h("ul", { class: "locations" }, c.locations.map((l) => h("li", { text: l.line ? `${l.path}:${l.line}` : l.path }))));
  }
  // a command's output reads as a terminal: its text content, else its raw output
  const term = c.kind === "execute";
  for (const item of Array.isArray(c.content) ? c.content : []) {
    if (item.type === "diff") el.append(diffView(item));
    else if (item.type === "content" && item.content && item.content.type === "text") {
      el.append(h("pre", { class: term ? "term" : "out", text: item.content.text }));
    } else if (item.type === "terminal") el.append(h("pre", { class: "term muted", text: `terminal ${item.terminalId}` }));
  }
  const raw = rawOutput(c.rawOutput);
  if (term && raw && !(c.content || []).some((i) => i.type === "content")) el.append(h("pre", { class: "term", text: raw }));
  return el;
}

function rawOutput(raw) {
  if (raw === undefined || raw === null) return "";
  if (typeof raw === "string") return raw;
  for (const key of ["formatted_output", "output", "stdout", "aggregated_output"]) {
    if (typeof raw[key] === "string") return raw[key] + (typeof raw.stderr === "string" ? raw.stderr : "");
  }
  return JSON.stringify(raw, null, 2);
}

// A tool call's diff, unified or side by side (a button switches; the choice is kept for the page):
// lines matched by longest common subsequence (past 400 lines a side, old and new shown whole).
let sideBySide = false;

export function diffView(item) {
  const a = (item.oldText || "").split("\n");
  const b = (item.newText || "").split("\n");
  const ops = a.length > 400 || b.length > 400 ? [...a.map((t) => ["-", t]), ...b.map((t) => ["+", t])] : lcsDiff(a, b);
  const body = h("div");
  const draw = () => body.replaceChildren(sideBySide ? split(ops) : unified(ops));
  const toggle = h("button", { class: "link diff-mode", onclick: () => { sideBySide = !sideBySide; draw(); } }, "unified / side by side");
  draw();
  return h("div", { class: "diff" }, h("div", { class: "diff-path" }, h("span", { text: item.path || "" }), toggle), body);
}

function unified(ops) {
  return h("div", {}, ops.map(([sign, text]) =>
    h("div", { class: sign === "+" ? "add" : sign === "-" ? "del" : "ctx" }, h("span", { class: "sign" }, sign), text)));
}

// old on the left, new on the right: a run of removed lines faces the run of added lines after it
function split(ops) {
  const rows = [];
  for (let i = 0; i < ops.length;) {
    if (ops[i][0] === " ") {
      rows.push([ops[i], ops[i]]);
      i++;
      continue;
    }
    const dels = [];
    const adds = [];
    while (i < ops.length && ops[i][0] === "-") dels.push(ops[i++]);
    while (i < ops.length && ops[i][0] === "+") adds.push(ops[i++]);
    for (let k = 0; k < Math.max(dels.length, adds.length); k++) rows.push([dels[k], adds[k]]);
  }
  const cell = (op) => h("td", { class: op ? (op[0] === "+" ? "add" : op[0] === "-" ? "del" : "ctx") : "none", text: op ? op[1] : "" });
  return h("table", { class: "split" }, h("tbody", {}, rows.map(([left, right]) => h("tr", {}, cell(left), cell(right)))));
}

function lcsDiff(a, b) {
  const n = a.length;
  const m = b.length;
  const dp = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (j < m && (i >= n || dp[i][j + 1] >= dp[i + 1][j])) out.push(["+", b[j++]]);
    else out.push(["-", a[i++]]);
  }
  return out;
}

const REPLY = { allow_once: "once", allow_always: "always", reject_once: "reject", reject_always: "reject" };

function renderPermission(row, actions) {
  const req = row.request || {};
  const call = req.toolCall || {};
  if (row.answer) {
    const o = row.answer.outcome || {};
    const by = row.answer._meta && row.answer._meta.acpd ? " by " + row.answer._meta.acpd.decidedBy : "";
    return h("div", { class: "perm settled" }, "Permission for ", h("span", { text: call.title || call.toolCallId || "" }),
      ": ", o.outcome === "selected" ? o.optionId : o.outcome || "answered", by);
  }
  return h("div", { class: "perm card", "data-perm": row.id },
    h("div", { class: "who" }, "Permission asked · " + (call.kind || "tool")),
    h("div", { class: "title", text: call.title || call.toolCallId || "" }),
    call.rawInput ? h("pre", { class: "out", text: JSON.stringify(call.rawInput, null, 2) }) : null,
    h("div", { class: "buttons" }, (req.options || []).map((o) => h("button", {
      class: "reply-" + (REPLY[o.kind] || "other"),
      "data-option": o.optionId,
      onclick: (ev) => { ev.target.disabled = true; actions.answer(row.id, o.optionId); },
    }, o.name || o.optionId))));
}
