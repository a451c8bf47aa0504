// A third-party ACP client for acpd's tests: the official TypeScript SDK 2.4.0's remote transports
// (`createHttpStream`, or `createWebSocketStream` for a ws:// URL; unchanged) driving acpd's `/acp`.
//
//   node sdk_http.mjs basic <url>
//   node sdk_http.mjs load <url> <sessionId>
//
// The bearer token is $ACPD_TOKEN: sent as Authorization on every HTTP request; on a WebSocket (the
// platform's, which cannot set headers: run node with --experimental-websocket on node 20) as
// ?access_token=. The session's cwd is $ACP_CWD, else the current directory.
//
// stdout is a transcript: one JSON object per line, each with a "step" field. Exit 0 on success;
// on failure the last line is {"step":"error","message":...} and the exit status is 1. The whole
// run has a hard timeout ($ACP_CLIENT_TIMEOUT_MS, default 30000) so a hang fails fast.
//
// basic: initialize -> session/new -> prompt "text one / tool read / permission edit / text two"
//   (the permission answered with the first allow option) -> session/set_mode plan ->
//   session/list -> done (the stream's close DELETEs the connection).
// load: initialize -> session/load (every replayed update printed) -> prompt "text three" -> done.

import { client } from "@agentclientprotocol/sdk";
import { createHttpStream } from "@agentclientprotocol/sdk/experimental/http-client";
import { createWebSocketStream } from "@agentclientprotocol/sdk/experimental/ws-client";

const TIMEOUT_MS = Number(process.env.ACP_CLIENT_TIMEOUT_MS ?? 30000);
const CWD = process.env.ACP_CWD || process.cwd();

function emit(step, data = {}) {
  process.stdout.write(`${JSON.stringify({ step, ...data })}\n`);
}

function fail(error) {
  emit("error", { message: String(error?.message ?? error), code: error?.code, data: error?.data });
  process.exit(1);
}

const [scenario, url, sessionArg] = process.argv.slice(2);
if (!["basic", "load"].includes(scenario) || !url || (scenario === "load" && !sessionArg)) {
  fail(new Error("usage: sdk_http.mjs basic <url> | load <url> <sessionId>"));
}
setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS).unref();

const updates = [];
const permissions = [];
const take = () => updates.splice(0, updates.length);
const kinds = (list) => [...new Set(list.map((u) => u.sessionUpdate))];

const app = client({ name: "acpd-tests-sdk-http" })
  .onNotification("session/update", async ({ params }) => {
    updates.push(params.update);
  })
  .onRequest("session/request_permission", async ({ params }) => {
    const allow = params.options.find((o) => o.kind === "allow_once" || o.kind === "allow_always");
    const outcome = allow ? { outcome: "selected", optionId: allow.optionId } : { outcome: "cancelled" };
    permissions.push({ toolCallId: params.toolCall.toolCallId, answer: outcome });
    return { outcome };
  });

const token = process.env.ACPD_TOKEN;
const headers = token ? { Authorization: `Bearer ${token}` } : {};

function openStream() {
  if (!url.startsWith("ws")) {
    return createHttpStream(url, { headers });
  }
  const withToken = new URL(url);
  if (token) withToken.searchParams.set("access_token", token);
  return createWebSocketStream(withToken.toString());
}

async function prompt(agent, sessionId, text) {
  const response = await agent.request("session/prompt", { sessionId, prompt: [{ type: "text", text }] });
  const seen = take();
  emit("prompt", { prompt: text, stopReason: response.stopReason, kinds: kinds(seen), updates: seen });
}

async function basic(agent) {
  const session = await agent.request("session/new", { cwd: CWD, mcpServers: [] });
  emit("session_new", { sessionId: session.sessionId, modes: session.modes });
  take();
  await prompt(agent, session.sessionId, "text one\ntool read\npermission edit\ntext two");
  emit("permission", { count: permissions.length, requests: permissions });
  await agent.request("session/set_mode", { sessionId: session.sessionId, modeId: "plan" });
  emit("set_mode", { modeId: "plan", kinds: kinds(take()) });
  const listed = await agent.request("session/list", {});
  emit("session_list", { containsSession: listed.sessions.some((s) => s.sessionId === session.sessionId) });
  emit("done", { sessionId: session.sessionId });
}

async function load(agent) {
  const response = await agent.request("session/load", { sessionId: sessionArg, cwd: CWD, mcpServers: [] });
  const replayed = take();
  emit("session_load", { currentModeId: response.modes?.currentModeId, kinds: kinds(replayed), updates: replayed });
  await prompt(agent, sessionArg, "text three");
  emit("done", { sessionId: sessionArg });
}

try {
  await app.connectWith(openStream(), async (agent) => {
    const init = await agent.request("initialize", {
      protocolVersion: 1,
      clientCapabilities: {},
      clientInfo: { name: "acpd-tests-sdk-http", version: "2.4.0" },
    });
    emit("initialize", init);
    await (scenario === "basic" ? basic(agent) : load(agent));
  });
  process.exit(0);
} catch (error) {
  fail(error);
}
