// The agents view: every configured agent, whether it is installed, its version, whether a
// session can start on it and, if not, every reason with its fix; a preset not installed has an
// Install button whose progress (time, bytes on disk) streams from the daemon.

import { api, postStream, enc } from "./api.js";
import { h, clear } from "./dom.js";

export async function agentsView(main) {
  const view = { dispose() {} };
  const draw = async () => {
    const agents = (await api("GET", "/v1/agents")).items;
    clear(main).append(h("table", { class: "list agents", id: "agents" },
      h("thead", {}, h("tr", {}, ["Agent", "Kind", "Installed", "Version", "Usable", "Why not / how"].map((t) => h("th", {}, t)))),
      h("tbody", {}, agents.map((a) => row(a, draw)))));
  };
  await draw();
  return view;
}

function row(a, redraw) {
  const progress = h("div", { class: "install-progress", "data-install": a.name });
  const install = a.preset && !a.available
    ? h("button", { class: "install", "data-agent-install": a.preset, onclick: (ev) => installing(ev.target, a.preset, progress, redraw) }, "Install")
    : null;
  return h("tr", { "data-agent": a.name },
    h("td", {}, h("strong", { text: a.name }), a.description ? h("div", { class: "muted", text: a.description }) : null),
    h("td", { text: a.kind }),
    h("td", {}, a.available ? "yes" : "no"),
    h("td", { text: a.version || "–" }),
    h("td", {}, h("span", { class: "badge " + (a.usable ? "status-idle" : "status-error") }, a.usable ? "usable" : "not usable")),
    h("td", {}, (a.reasons || []).map((r) => h("div", { text: r })), install, progress));
}

async function installing(button, preset, progress, redraw) {
  button.disabled = true;
  progress.textContent = "starting…";
  let failed = null;
  try {
    await postStream(`/v1/agents/${enc(preset)}/install`, (event, data) => {
      if (event === "progress") progress.textContent = `installing… ${data.elapsedSeconds} s, ${(data.bytesOnDisk / 2 ** 20).toFixed(1)} MiB`;
      else if (event === "done") progress.textContent = "installed";
      else if (event === "error") failed = data;
    });
  } catch (err) {
    failed = { detail: err.message };
  }
  if (failed) {
    button.disabled = false;
    progress.textContent = failed.detail + (failed.data && failed.data.npmOutput ? "\n" + failed.data.npmOutput : "");
    progress.classList.add("error");
    return;
  }
  await redraw();
}
