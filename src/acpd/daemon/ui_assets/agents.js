// The agents view: every configured agent, whether it is installed, its version, whether a
// session can start on it and, if not, every reason with its fix.

import { api } from "./api.js";
import { h, clear } from "./dom.js";

export async function agentsView(main) {
  const agents = (await api("GET", "/v1/agents")).items;
  clear(main).append(h("table", { class: "list agents", id: "agents" },
    h("thead", {}, h("tr", {}, ["Agent", "Kind", "Installed", "Version", "Usable", "Why not / how"].map((t) => h("th", {}, t)))),
    h("tbody", {}, agents.map((a) => h("tr", { "data-agent": a.name },
      h("td", {}, h("strong", { text: a.name }), a.description ? h("div", { class: "muted", text: a.description }) : null),
      h("td", { text: a.kind }),
      h("td", {}, a.available ? "yes" : "no"),
      h("td", { text: a.version || "–" }),
      h("td", {}, h("span", { class: "badge " + (a.usable ? "status-idle" : "status-error") }, a.usable ? "usable" : "not usable")),
      h("td", {}, (a.reasons || []).map((r) => h("div", { text: r })),
        a.preset && !a.available ? h("code", { text: `acpd agents install ${a.preset}` }) : null))))));
  return { dispose() {} };
}
