// The acpd docs page: fetches the daemon's OpenAPI spec and renders it. Plain JS, no libraries,
// nothing fetched but the spec from the same daemon (it works offline).
"use strict";

const SPEC_URL = "/v1/openapi.json";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function refName(ref) {
  return ref.slice(ref.lastIndexOf("/") + 1);
}

// A schema as one short line: a name for a $ref, a union's parts, an array's items.
function typeText(schema) {
  if (!schema) return "any";
  if (schema.$ref) return refName(schema.$ref);
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (schema[key]) return schema[key].map(typeText).join(key === "allOf" ? " & " : " | ");
  }
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.type === "array") return typeText(schema.items) + "[]";
  return schema.type || "object";
}

function schemaLink(schema) {
  const text = typeText(schema);
  return schema && schema.$ref ? el("a", { href: "#schema-" + refName(schema.$ref) }, el("code", {}, text)) : el("code", {}, text);
}

function propertiesTable(schema) {
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const rows = Object.entries(props).map(([name, prop]) =>
    el("tr", {}, el("td", {}, el("code", {}, name), required.has(name) ? " *" : ""), el("td", {}, schemaLink(prop)),
      el("td", {}, prop.description || "")));
  if (!rows.length) return el("p", {}, "Type: ", schemaLink(schema));
  return el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "about")), rows);
}

function parametersTable(parameters) {
  if (!parameters || !parameters.length) return null;
  return el("div", {}, el("h4", {}, "Parameters"), el("table", {},
    el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "about")),
    parameters.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name), p.required ? " *" : ""), el("td", {}, p.in),
      el("td", {}, schemaLink(p.schema)), el("td", {}, p.description || "")))));
}

function bodySection(body) {
  if (!body) return null;
  const media = Object.entries(body.content || {});
  return el("div", {}, el("h4", {}, "Body"), media.map(([type, content]) => el("p", {}, el("code", {}, type), " ", schemaLink(content.schema))));
}

function responsesTable(responses) {
  const rows = Object.entries(responses || {}).map(([status, answer]) => {
    const media = Object.entries(answer.content || {}).map(([type, content]) =>
      el("div", {}, el("code", {}, type), " ", schemaLink(content.schema),
        content["x-sse-data"] ? el("span", {}, " data: ", schemaLink(content["x-sse-data"])) : null));
    return el("tr", {}, el("td", { class: "status" }, status), el("td", {}, media), el("td", {}, answer.description || ""));
  });
  return el("div", {}, el("h4", {}, "Responses"),
    el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "body"), el("th", {}, "when")), rows));
}

function operationBlock(path, method, op) {
  const anchor = "op-" + op.operationId;
  const open = op.security && op.security.length === 0 ? el("span", { class: "open" }, "no token") : null;
  const block = el("details", { class: "op", id: anchor, "data-search": [path, op.summary, (op.tags || []).join(" ")].join(" ").toLowerCase() },
    el("summary", {}, el("span", { class: "method " + method }, method), el("span", { class: "path" }, path),
      el("span", { class: "summary" }, op.summary || ""), open),
    el("div", {}, op.description ? el("p", {}, op.description) : null, parametersTable(op.parameters),
      bodySection(op.requestBody), responsesTable(op.responses)));
  return block;
}

function renderOperations(spec) {
  const main = document.getElementById("operations");
  const toc = document.getElementById("toc");
  const byTag = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operationBlock(path, method, op));
      toc.append(el("a", { href: "#op-" + op.operationId }, method.toUpperCase() + " " + path));
    }
  }
  for (const [tag, blocks] of byTag) main.append(el("h2", {}, tag), blocks);
}

function renderProblems(spec) {
  const types = spec["x-problem-types"] || {};
  const rows = Object.entries(types).map(([type, about]) =>
    el("tr", {}, el("td", {}, el("code", {}, type)), el("td", {}, about.status), el("td", {}, about.when)));
  document.getElementById("problems").append(el("h2", {}, "Problem types"),
    el("p", {}, "Every error is application/problem+json with one of these types."),
    el("table", {}, el("tr", {}, el("th", {}, "type"), el("th", {}, "status"), el("th", {}, "when")), rows));
}

function renderSchemas(spec) {
  const section = document.getElementById("schemas");
  section.append(el("h2", {}, "Schemas"));
  const schemas = (spec.components && spec.components.schemas) || {};
  for (const name of Object.keys(schemas).sort()) {
    const schema = schemas[name];
    section.append(el("details", { class: "op", id: "schema-" + name }, el("summary", {}, el("code", {}, name),
      el("span", { class: "summary" }, (schema.description || "").split("\n")[0])), el("div", {}, propertiesTable(schema))));
  }
}

function openTarget() {
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target && target.tagName === "DETAILS") target.open = true;
}

function wireFilter() {
  document.getElementById("filter").addEventListener("input", (event) => {
    const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const block of document.querySelectorAll("#operations details.op")) {
      const text = block.getAttribute("data-search");
      block.classList.toggle("hidden", !words.every((w) => text.includes(w)));
    }
  });
}

async function main() {
  const intro = document.getElementById("intro");
  try {
    const response = await fetch(SPEC_URL);
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    const spec = await response.json();
    document.getElementById("version").textContent = spec.info.version;
    intro.textContent = spec.info.description;
    renderOperations(spec);
    renderProblems(spec);
    renderSchemas(spec);
    wireFilter();
    window.addEventListener("hashchange", openTarget);
    openTarget();
  } catch (error) {
    intro.textContent = "Could not load " + SPEC_URL + ": " + error.message;
  }
}

main();
