// Runs the docs page's script (src/acpd/daemon/docs_assets/docs.js) under node against a small
// stand-in for the browser's DOM, with the spec given on stdin, and prints what it rendered:
// the ids of the elements it made, and the page's intro text. Used by tests/api/test_docs_page.py.
"use strict";

const fs = require("fs");
const vm = require("vm");

class Node {}
class TextNode extends Node {
  constructor(text) { super(); this.textContent = text; }
}
class Element extends Node {
  constructor(tag) {
    super();
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.attributes = {};
    this.className = "";
    this._text = "";
    this.classList = { toggle: () => {} };
  }
  setAttribute(name, value) { this.attributes[name] = String(value); if (name === "id") this.id = String(value); }
  getAttribute(name) { return this.attributes[name]; }
  append(...nodes) { for (const node of nodes.flat()) this.children.push(node instanceof Node ? node : new TextNode(String(node))); }
  addEventListener() {}
  set textContent(text) { this._text = text; this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  *walk() { yield this; for (const child of this.children) if (child instanceof Element) yield* child.walk(); }
}

const roots = {};
for (const id of ["version", "intro", "filter", "toc", "operations", "problems", "schemas"]) {
  roots[id] = new Element("div");
  roots[id].setAttribute("id", id);
}
const spec = fs.readFileSync(0, "utf8");
const document = {
  createElement: (tag) => new Element(tag),
  createTextNode: (text) => new TextNode(text),
  getElementById: (id) => roots[id] || [...Object.values(roots)].flatMap((r) => [...r.walk()]).find((e) => e.id === id) || null,
  querySelectorAll: () => [],
};
const context = {
  document,
  Node,
  location: { hash: "" },
  window: { addEventListener() {} },
  fetch: async (url) => ({ ok: url === "/v1/openapi.json", status: 200, statusText: "OK", json: async () => JSON.parse(spec) }),
  console,
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
setImmediate(() => {
  const ids = Object.values(roots).flatMap((root) => [...root.walk()]).map((e) => e.id).filter(Boolean);
  const problemRows = [...roots.problems.walk()].filter((e) => e.tagName === "TR").length - 1;
  process.stdout.write(JSON.stringify({ ids, intro: roots.intro.textContent, problemRows }));
});
