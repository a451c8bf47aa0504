// A small, safe Markdown renderer: it builds DOM nodes and puts every piece of text in with
// textContent, so whatever an agent wrote (HTML, script, event handlers) stays text. Links keep
// only http(s) and mailto targets; images become links (the page loads nothing an agent names).
// Covers what agents write: headings, paragraphs, fenced code, lists and task lists, quotes,
// rules, simple pipe tables, and inline code, emphasis, strong, strikethrough and links.

import { h } from "./dom.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const SAFE_URL = /^(https?:|mailto:)/i;

export function renderMarkdown(text) {
  const root = document.createDocumentFragment();
  blocks(text.split("\n"), root);
  return root;
}

function blocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
      continue;
    }
    const step = fence(lines, i, parent) || heading(lines, i, parent) || rule(lines, i, parent)
      || quote(lines, i, parent) || list(lines, i, parent) || table(lines, i, parent) || paragraph(lines, i, parent);
    i = step;
  }
}

function fence(lines, i, parent) {
  const m = FENCE.exec(lines[i]);
  if (!m) return 0;
  const body = [];
  let j = i + 1;
  while (j < lines.length && !lines[j].trimStart().startsWith(m[1])) body.push(lines[j++]);
  const code = h("code", { text: body.join("\n") });
  if (m[2]) code.dataset.lang = m[2];
  parent.append(h("pre", { class: "code" }, code));
  return j + 1;
}

function heading(lines, i, parent) {
  const m = HEADING.exec(lines[i]);
  if (!m) return 0;
  // a message's headings sit below the page's own
  const el = h("h" + Math.min(6, m[1].length + 2), { class: "md-h" });
  inline(m[2], el);
  parent.append(el);
  return i + 1;
}

function rule(lines, i, parent) {
  if (!RULE.test(lines[i])) return 0;
  parent.append(h("hr"));
  return i + 1;
}

function quote(lines, i, parent) {
  if (!QUOTE.test(lines[i])) return 0;
  const inner = [];
  let j = i;
  for (let m; j < lines.length && (m = QUOTE.exec(lines[j])); j++) inner.push(m[1]);
  const el = h("blockquote");
  blocks(inner, el);
  parent.append(el);
  return j;
}

function list(lines, i, parent) {
  const first = ITEM.exec(lines[i]);
  if (!first) return 0;
  const ordered = /\d/.test(first[2]);
  const el = h(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) el.setAttribute("start", String(parseInt(first[2], 10)));
  let j = i;
  while (j < lines.length) {
    const m = ITEM.exec(lines[j]);
    if (!m || /\d/.test(m[2]) !== ordered) break;
    const body = [m[3]];
    j++;
    // continuation lines: indented, not a new item
    while (j < lines.length && lines[j].trim() && /^\s{2,}/.test(lines[j]) && !ITEM.test(lines[j])) body.push(lines[j++].trim());
    el.append(item(body.join("\n"), m[1].length));
  }
  parent.append(el);
  return j;
}

function item(text, indent) {
  const li = h("li");
  if (indent) li.style.marginLeft = Math.min(indent, 12) * 0.5 + "em";
  const task = /^\[([ xX])\]\s+(.*)$/s.exec(text);
  if (task) {
    li.className = "task";
    li.append(h("input", { type: "checkbox", disabled: true, checked: task[1] !== " " }));
    inline(task[2], li);
  } else {
    inline(text, li);
  }
  return li;
}

function table(lines, i, parent) {
  if (!lines[i].includes("|") || i + 1 >= lines.length || !TABLE_RULE.test(lines[i + 1])) return 0;
  const cells = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  const head = h("tr", {}, cells(lines[i]).map((c) => inline(c, h("th"))));
  const body = h("tbody");
  let j = i + 2;
  for (; j < lines.length && lines[j].includes("|") && lines[j].trim(); j++) {
    body.append(h("tr", {}, cells(lines[j]).map((c) => inline(c, h("td")))));
  }
  parent.append(h("table", { class: "md-table" }, h("thead", {}, head), body));
  return j;
}

function paragraph(lines, i, parent) {
  const body = [lines[i]];
  let j = i + 1;
  while (j < lines.length && lines[j].trim() && !startsBlock(lines[j])) body.push(lines[j++]);
  const p = h("p");
  inline(body.join("\n"), p);
  parent.append(p);
  return j;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

// Inline spans, left to right: the earliest match wins; text between matches is plain text.
const SPANS = [
  [/`+/, code],
  [/!?\[([^\]\n]*)\]\(([^)\s]*)(?:\s+"[^"]*")?\)/, link],
  [/<(https?:\/\/[^\s<>]+)>/, autolink],
  [/\*\*(?=\S)([\s\S]*?\S)\*\*|(?<!\w)__(?=\S)([\s\S]*?\S)__(?!\w)/, (m, el) => wrap("strong", m[1] ?? m[2], el)],
  [/~~(?=\S)([\s\S]*?\S)~~/, (m, el) => wrap("del", m[1], el)],
  [/\*(?=\S)([^*]*?\S)\*|(?<!\w)_(?=\S)([^_]*?\S)_(?!\w)/, (m, el) => wrap("em", m[1] ?? m[2], el)],
];

export function inline(text, el) {
  let rest = text;
  while (rest) {
    let best = null;
    for (const [re, fn] of SPANS) {
      const m = re.exec(rest);
      if (m && (best === null || m.index < best.m.index)) best = { m, fn };
    }
    if (!best) break;
    if (best.m.index) el.append(document.createTextNode(rest.slice(0, best.m.index)));
    const used = best.fn(best.m, el, rest.slice(best.m.index)) ?? best.m[0].length;
    rest = rest.slice(best.m.index + used);
  }
  if (rest) el.append(document.createTextNode(rest));
  return el;
}

function code(m, el, from) {
  const ticks = m[0];
  const end = from.indexOf(ticks, ticks.length);
  if (end < 0) {
    el.append(document.createTextNode(ticks));
    return ticks.length;
  }
  el.append(h("code", { text: from.slice(ticks.length, end) }));
  return end + ticks.length;
}

function link(m, el) {
  const image = m[0].startsWith("!");
  const label = m[1] || m[2];
  if (SAFE_URL.test(m[2])) {
    const a = h("a", { href: m[2], target: "_blank", rel: "noopener noreferrer nofollow", class: image ? "md-img" : null });
    inline(image ? "image: " + label : label, a);
    el.append(a);
  } else {
    // an unsafe target (javascript:, data:, a relative path) is shown, not followed
    el.append(document.createTextNode(m[0]));
  }
  return m[0].length;
}

function autolink(m, el) {
  el.append(h("a", { href: m[1], target: "_blank", rel: "noopener noreferrer nofollow", text: m[1] }));
  return m[0].length;
}

function wrap(tag, inner, el) {
  el.append(inline(inner, h(tag)));
  return undefined;
}
