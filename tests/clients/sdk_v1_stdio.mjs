// A third-party ACP client for acpd's tests: the official TypeScript SDK 1.9.0
// (`ClientSideConnection` over `ndJsonStream`) driving an ACP agent on stdio.
//
//   node sdk_v1_stdio.mjs basic -- <command> [args...]
//   node sdk_v1_stdio.mjs load <sessionId> -- <command> [args...]
//
// The agent is spawned from the command after `--`; its stderr passes through.
// The session's cwd is $ACP_CWD, else the current directory.
//
// stdout is a transcript: one JSON object per line, each with a "step" field.
// Exit 0 on success; on failure the last line is {"step":"error","message":...}
// and the exit status is 1. The whole run has a hard timeout
// ($ACP_CLIENT_TIMEOUT_MS, default 30000) so a hang fails fast.
//
// basic: initialize (fs read/write true, terminal false) -> session/new ->
//   prompt "text hello" -> prompt "permission execute" (answered with the first
//   allow option) -> session/set_mode (a mode other than the current one, if
//   the agent offers modes) -> session/list and session/close (when the agent
//   advertises them) -> done.
// load: initialize -> session/load, printing every replayed update.

import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import * as acp from "acp-sdk-v1";

const TIMEOUT_MS = Number(process.env.ACP_CLIENT_TIMEOUT_MS ?? 30000);
const CWD = process.env.ACP_CWD || process.cwd();

// One transcript line.
function emit(step, data = {}) {
  process.stdout.write(`${JSON.stringify({ step, ...data })}\n`);
}

// JSON-RPC errors arrive as RequestError (an Error with code and data) or as
// plain {code, message, data} objects; keep the code and data either way.
function describeError(error) {
  if (error && typeof error === "object") {
    return { message: String(error.message ?? JSON.stringify(error)), code: error.code, data: error.data };
  }
  return { message: String(error) };
}

let child = null;

function fail(error) {
  emit("error", describeError(error));
  if (child && child.exitCode === null) child.kill("SIGKILL");
  process.exit(1);
}

function parseArgs(argv) {
  const sep = argv.indexOf("--");
  if (sep === -1 || sep === argv.length - 1) {
    throw new Error("usage: sdk_v1_stdio.mjs basic|load <sessionId> -- <command> [args...]");
  }
  const [scenario, ...rest] = argv.slice(0, sep);
  const command = argv.slice(sep + 1);
  if (scenario === "basic" && rest.length === 0) return { scenario, command };
  if (scenario === "load" && rest.length === 1) return { scenario, sessionId: rest[0], command };
  throw new Error(`bad arguments before "--": ${JSON.stringify(argv.slice(0, sep))}`);
}

// The client side: collects every session/update, answers permissions with the
// first allow option, and serves fs/* from the local disk.
class TranscriptClient {
  updates = []; // full `update` objects of the current step
  permissionRequests = [];

  takeUpdates() {
    const taken = this.updates;
    this.updates = [];
    return taken;
  }

  async sessionUpdate(params) {
    this.updates.push(params.update);
  }

  async requestPermission(params) {
    const allow = params.options.find((o) => o.kind === "allow_once" || o.kind === "allow_always");
    const outcome = allow ? { outcome: "selected", optionId: allow.optionId } : { outcome: "cancelled" };
    this.permissionRequests.push({ request: params, answer: outcome });
    return { outcome };
  }

  async readTextFile(params) {
    emit("agent_request", { method: "fs/read_text_file", params });
    let content = await readFile(params.path, "utf8");
    if (params.line != null || params.limit != null) {
      const lines = content.split("\n");
      const start = Math.max(0, (params.line ?? 1) - 1);
      content = lines.slice(start, params.limit != null ? start + params.limit : undefined).join("\n");
    }
    return { content };
  }

  async writeTextFile(params) {
    emit("agent_request", { method: "fs/write_text_file", params: { ...params, content: `<${params.content.length} chars>` } });
    await writeFile(params.path, params.content, "utf8");
    return {};
  }
}

const kindsOf = (updates) => [...new Set(updates.map((u) => u.sessionUpdate))];

async function initialize(conn) {
  const response = await conn.initialize({
    protocolVersion: acp.PROTOCOL_VERSION,
    clientCapabilities: { fs: { readTextFile: true, writeTextFile: true }, terminal: false },
    clientInfo: { name: "acpd-tests-sdk-v1", version: "1.9.0" },
  });
  emit("initialize", response);
  return response;
}

async function prompt(conn, client, sessionId, text) {
  const response = await conn.prompt({ sessionId, prompt: [{ type: "text", text }] });
  const updates = client.takeUpdates();
  emit("prompt", { prompt: text, stopReason: response.stopReason, usage: response.usage, kinds: kindsOf(updates), updates });
  return response;
}

async function basic(conn, client) {
  const init = await initialize(conn);
  const sessionCaps = init.agentCapabilities?.sessionCapabilities ?? {};

  const created = await conn.newSession({ cwd: CWD, mcpServers: [] });
  const sessionId = created.sessionId;
  emit("session_new", { ...created, updates: client.takeUpdates() });

  const stopReasons = [];
  stopReasons.push((await prompt(conn, client, sessionId, "text hello")).stopReason);

  const before = client.permissionRequests.length;
  stopReasons.push((await prompt(conn, client, sessionId, "permission execute")).stopReason);
  const seen = client.permissionRequests.slice(before);
  emit("permission", { count: seen.length, requests: seen });
  if (seen.length === 0) throw new Error("the agent never asked for permission");

  // Pick a mode other than the current one, so the switch is observable.
  const modes = created.modes?.availableModes ?? [];
  if (modes.length === 0) {
    emit("set_mode", { skipped: true, reason: "session/new returned no modes" });
  } else {
    const target = modes.find((m) => m.id !== created.modes.currentModeId) ?? modes[0];
    const response = await conn.setSessionMode({ sessionId, modeId: target.id });
    const updates = client.takeUpdates();
    emit("set_mode", { modeId: target.id, from: created.modes.currentModeId, response, kinds: kindsOf(updates), updates });
  }

  if (typeof conn.listSessions !== "function") {
    emit("session_list", { skipped: true, reason: "SDK 1.9.0 exposes no listSessions" });
  } else if (!sessionCaps.list) {
    emit("session_list", { skipped: true, reason: "agent does not advertise sessionCapabilities.list" });
  } else {
    const response = await conn.listSessions({ cwd: CWD });
    const listed = (response.sessions ?? []).some((s) => s.sessionId === sessionId);
    emit("session_list", { response, containsSession: listed });
  }

  if (typeof conn.closeSession !== "function") {
    emit("session_close", { skipped: true, reason: "SDK 1.9.0 exposes no closeSession" });
  } else if (!sessionCaps.close) {
    emit("session_close", { skipped: true, reason: "agent does not advertise sessionCapabilities.close" });
  } else {
    emit("session_close", { response: await conn.closeSession({ sessionId }), updates: client.takeUpdates() });
  }

  emit("done", { scenario: "basic", sessionId, stopReasons });
}

async function load(conn, client, sessionId) {
  const init = await initialize(conn);
  if (!init.agentCapabilities?.loadSession) throw new Error("agent does not advertise loadSession");
  const response = await conn.loadSession({ sessionId, cwd: CWD, mcpServers: [] });
  const updates = client.takeUpdates();
  emit("session_load", { sessionId, response, count: updates.length, kinds: kindsOf(updates), updates });
  emit("done", { scenario: "load", sessionId });
}

// Close the agent's stdin and report how it exited (SIGKILL after 5 s).
function stopAgent() {
  return new Promise((resolve) => {
    const report = (code, signal) => {
      emit("agent_exit", { code, signal });
      resolve();
    };
    if (child.exitCode !== null || child.signalCode !== null) return report(child.exitCode, child.signalCode);
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", (code, signal) => {
      clearTimeout(killer);
      report(code, signal);
    });
    child.stdin.end();
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS).unref();

  child = spawn(args.command[0], args.command.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
  const spawned = new Promise((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  await spawned;
  child.on("exit", (code, signal) => {
    if (!exiting) fail(new Error(`agent exited early (code ${code}, signal ${signal})`));
  });

  const client = new TranscriptClient();
  const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));
  const conn = new acp.ClientSideConnection(() => client, stream);

  if (args.scenario === "basic") await basic(conn, client);
  else await load(conn, client, args.sessionId);

  exiting = true;
  await stopAgent();
  process.exit(0);
}

let exiting = false;
main().catch(fail);
