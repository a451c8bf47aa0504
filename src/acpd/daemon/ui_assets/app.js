// The inspector's entry: the token dialog, the connection badge and the hash router
// (#/ sessions, #/s/<id> a session, #/agents, #/audit the tool calls). Each view is disposed of
// when another opens.

import { setTokenPrompt } from "./api.js";
import { h, clear } from "./dom.js";
import { sessionsView } from "./sessions.js";
import { sessionView } from "./session.js";
import { agentsView } from "./agents.js";
import { auditView } from "./audit.js";

const main = document.getElementById("main");
const conn = document.getElementById("conn");
let current = null;
let opening = 0;

setTokenPrompt(() => new Promise((resolve) => {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-form").addEventListener("submit", () => resolve(input.value.trim()), { once: true });
  dialog.showModal();
}));

const ctx = {
  connection(state) {
    conn.textContent = state === "live" ? "live" : state;
    conn.className = "conn " + state;
  },
};

async function route() {
  const ticket = ++opening;
  if (current) current.dispose();
  current = null;
  const hash = location.hash || "#/";
  const on = hash.startsWith("#/agents") ? "agents" : hash.startsWith("#/audit") ? "audit" : "sessions";
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("on", a.dataset.nav === on);
  if (!hash.startsWith("#/s/")) ctx.connection("");
  try {
    let view;
    if (hash.startsWith("#/s/")) view = await sessionView(main, decodeURIComponent(hash.slice(4)), ctx);
    else if (hash.startsWith("#/agents")) view = await agentsView(main);
    else if (hash.startsWith("#/audit")) view = await auditView(main);
    else view = await sessionsView(main);
    if (ticket !== opening) view.dispose();
    else current = view;
  } catch (err) {
    if (ticket === opening) clear(main).append(h("p", { class: "error", text: err.message }));
  }
}

window.addEventListener("hashchange", route);
route();
