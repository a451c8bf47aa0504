// The one way the inspector builds DOM: elements from a tag, attributes and children, where every
// string child becomes a text node. Nothing here ever parses HTML, so text from an agent stays text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value") el.value = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function select(options, current, attrs = {}) {
  const el = h("select", attrs);
  for (const option of options) {
    const [value, label] = Array.isArray(option) ? option : [option, option];
    el.append(h("option", { value, selected: value === current }, label));
  }
  if (current !== undefined && current !== null) el.value = current;
  return el;
}

export function fmtTokens(n) {
  if (n === undefined || n === null) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

// a cost as the API gives it ({amount, currency}), or a bare number of dollars
export function fmtCost(cost) {
  if (cost === undefined || cost === null) return "";
  const amount = typeof cost === "object" ? cost.amount : cost;
  const currency = typeof cost === "object" && cost.currency ? cost.currency : "USD";
  if (typeof amount !== "number") return "";
  return currency === "USD" ? `$${amount.toFixed(4)}` : `${amount.toFixed(4)} ${currency}`;
}

export function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.round(s) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  if (s < 86400) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}
