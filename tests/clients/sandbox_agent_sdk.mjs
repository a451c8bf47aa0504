// A third-party ACP-over-HTTP client for acpd's tests: the sandbox-agent 0.4.2
// TypeScript SDK (`SandboxAgent`), which speaks to /v1/health and /v1/acp/{id}.
//
//   node sandbox_agent_sdk.mjs <baseUrl> [agent]      (agent defaults to "mock")
//
// Optional: $SANDBOX_AGENT_TOKEN (sent as a bearer token), $ACP_CWD (the
// session's cwd, else the current directory), $ACP_CLIENT_TIMEOUT_MS (hard
// timeout of the whole run, default 30000).
//
// stdout is a transcript: one JSON object per line, each with a "step" field.
// Exit 0 on success; on failure the last line is {"step":"error","message":...}
// and the exit status is 1.
//
// Steps: connect -> createSession (with onEvent/onPermissionRequest listeners) ->
// prompt "text hello" -> prompt "permission execute" answered with
// respondPermission("once") -> setMode (a mode other than the current one, if
// any) -> getEvents -> listSessions -> resumeSession on the same SDK (a no-op) ->
// dispose; then a second SDK over the same persisted sessions: resumeSession
// (the SDK's restore: a fresh session/new plus a text replay in the next prompt)
// -> prompt "text again" -> destroySession -> dispose.
//
// The prompts use acpd's mock agent language (docs/mock-agent.md); any agent
// that echoes text and asks permission for "permission execute" will do.
//
// Each prompt/set_mode line summarizes the SDK events of that exchange (count,
// senders, methods, sessionUpdate kinds, an ordered list) and
// `updatesAfterResponse`: how many session/update notifications reached the SDK
// after the response did (the SDK resolves on the first copy of the response,
// POST body or SSE; real sandbox-agent 0.4.2 often delivers a turn's last
// updates late, which a server can avoid by ordering its SSE writes).

import { InMemorySessionPersistDriver, SandboxAgent } from "sandbox-agent";

const TIMEOUT_MS = Number(process.env.ACP_CLIENT_TIMEOUT_MS ?? 30000);
const CWD = process.env.ACP_CWD || process.cwd();
const REPLAY_PREFIX = "Previous session history is replayed below";

function emit(step, data = {}) {
  process.stdout.write(`${JSON.stringify({ step, ...data })}\n`);
}

// SDK errors: SandboxAgentError {status, problem}, AcpRpcError {code, data},
// Unsupported*Error, or plain Errors.
function describeError(error) {
  if (!error || typeof error !== "object") return { message: String(error) };
  const out = { message: String(error.message ?? JSON.stringify(error)), name: error.name };
  for (const key of ["code", "data", "status", "problem"]) {
    if (error[key] !== undefined) out[key] = error[key];
  }
  return out;
}

function fail(error) {
  emit("error", describeError(error));
  process.exit(1);
}

const methodOf = (p) => p.method ?? (p.error ? "(error)" : "(result)");
const kindOf = (p) => p.params?.update?.sessionUpdate;

// A compact, ordered view of SDK session events.
function summarize(events) {
  const count = (key) => events.reduce((acc, e) => ((acc[key(e)] = (acc[key(e)] ?? 0) + 1), acc), {});
  return {
    count: events.length,
    senders: count((e) => e.sender),
    methods: count((e) => methodOf(e.payload)),
    kinds: [...new Set(events.map((e) => kindOf(e.payload)).filter(Boolean))],
    list: events.map((e) => ({
      eventIndex: e.eventIndex,
      sender: e.sender,
      method: methodOf(e.payload),
      id: e.payload.id,
      kind: kindOf(e.payload),
    })),
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Wait until `list` has not grown for `quietMs` (at most `maxMs`). Over HTTP a
// turn's notifications travel on the SSE stream while its response comes back
// on the POST, so they can land after the SDK call has already resolved; and
// the SDK records events asynchronously, after the call resolves.
async function settle(list, quietMs = 150, maxMs = 3000) {
  const deadline = Date.now() + maxMs;
  let seen = list.length;
  let quietSince = Date.now();
  while (Date.now() < deadline && Date.now() - quietSince < quietMs) {
    await sleep(25);
    if (list.length !== seen) {
      seen = list.length;
      quietSince = Date.now();
    }
  }
}

// The events of one request/response exchange, and how many of the agent's
// session/update notifications reached the SDK after the response did.
function exchange(events, method) {
  const request = events.find((e) => e.sender === "client" && e.payload.method === method);
  const at = events.findIndex((e) => e.sender === "agent" && !e.payload.method && e.payload.id === request?.payload.id);
  const after = events.slice(at + 1);
  return {
    request,
    updatesAfterResponse: at === -1 ? null : after.filter((e) => e.payload.method === "session/update").length,
    ...summarize(events),
  };
}

async function allEvents(sdk, sessionId) {
  const events = [];
  let cursor;
  do {
    const page = await sdk.getEvents({ sessionId, cursor, limit: 500 });
    events.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return events;
}

function connect(baseUrl, persist) {
  return SandboxAgent.connect({
    baseUrl,
    persist,
    token: process.env.SANDBOX_AGENT_TOKEN || undefined,
    waitForHealth: { timeoutMs: 10000 },
  });
}

async function timed(fn) {
  const started = Date.now();
  const value = await fn();
  return [value, Date.now() - started];
}

async function main() {
  const [baseUrl, agent = "mock", ...extra] = process.argv.slice(2);
  if (!baseUrl || extra.length) throw new Error("usage: sandbox_agent_sdk.mjs <baseUrl> [agent]");
  setTimeout(() => fail(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS).unref();

  // The SDK keeps sessions and events client-side, in this driver; the second
  // SDK below reuses it, as an app restarting with a persistent driver would.
  const persist = new InMemorySessionPersistDriver();
  const sdk = await connect(baseUrl, persist);
  emit("connect", { baseUrl, health: await sdk.getHealth() });

  // Our own local id, so the listener is in place before session/new is sent.
  const localId = `acpd-test-${Date.now().toString(36)}`;
  const live = [];
  sdk.onSessionEvent(localId, (event) => live.push(event));

  const session = await sdk.createSession({ id: localId, agent, cwd: CWD });
  const permissions = [];
  session.onPermissionRequest((request) => {
    permissions.push(request);
    void session.respondPermission(request.id, "once").catch(fail);
  });
  const record = session.toRecord();
  emit("create_session", {
    id: session.id,
    agent: session.agent,
    agentSessionId: session.agentSessionId,
    lastConnectionId: session.lastConnectionId,
    modes: record.modes ?? null,
    configOptionIds: record.configOptions?.map((o) => o.id) ?? null,
  });
  if (!session.agentSessionId) throw new Error("session/new returned no sessionId");

  const prompt = async (text) => {
    const before = live.length;
    const response = await session.prompt([{ type: "text", text }]);
    await settle(live);
    const { request, ...events } = exchange(live.slice(before), "session/prompt");
    emit("prompt", { prompt: text, stopReason: response?.stopReason, response, events });
    return response;
  };

  await prompt("text hello");
  await prompt("permission execute");
  emit("permission", {
    count: permissions.length,
    requests: permissions.map((p) => ({
      id: p.id,
      sessionId: p.sessionId,
      agentSessionId: p.agentSessionId,
      availableReplies: p.availableReplies,
      options: p.options,
      toolCall: p.toolCall,
    })),
  });
  if (permissions.length === 0) throw new Error("no permission request reached onPermissionRequest");

  const modes = await session.getModes();
  const available = modes?.availableModes ?? [];
  if (available.length === 0) {
    emit("set_mode", { skipped: true, reason: "the session has no modes", modes });
  } else {
    const target = available.find((m) => m.id !== modes.currentModeId) ?? available[0];
    const before = live.length;
    const response = await session.setMode(target.id);
    await settle(live);
    const { request, ...events } = exchange(live.slice(before), "session/set_mode");
    emit("set_mode", {
      modeId: target.id,
      from: modes.currentModeId,
      response,
      currentModeId: (await session.getModes())?.currentModeId,
      events,
    });
  }

  const recorded = await allEvents(sdk, localId);
  emit("get_events", {
    liveCount: live.length,
    contiguous: recorded.every((e, i) => e.eventIndex === i + 1),
    ...summarize(recorded),
  });

  const listed = await sdk.listSessions();
  emit("list_sessions", { ids: listed.items.map((s) => s.id), nextCursor: listed.nextCursor ?? null });

  // Same SDK, same live connection: resumeSession returns the bound session.
  const same = await sdk.resumeSession(localId);
  emit("resume_session", {
    sdk: "same",
    agentSessionId: same.agentSessionId,
    unchanged: same.agentSessionId === record.agentSessionId,
    lastConnectionId: same.lastConnectionId,
  });

  const [, disposeMs] = await timed(() => sdk.dispose());
  emit("dispose", { sdk: "first", ms: disposeMs });

  // A second SDK over the same persisted records: resumeSession opens a new
  // ACP connection, sends session/new again and queues a text replay.
  const sdk2 = await connect(baseUrl, persist);
  const live2 = [];
  sdk2.onSessionEvent(localId, (event) => live2.push(event));
  const resumed = await sdk2.resumeSession(localId);
  emit("resume_session", {
    sdk: "second",
    agentSessionId: resumed.agentSessionId,
    previousAgentSessionId: record.agentSessionId,
    lastConnectionId: resumed.lastConnectionId,
    newConnection: resumed.lastConnectionId !== record.lastConnectionId,
  });

  const before = live2.length;
  const response = await resumed.prompt([{ type: "text", text: "text again" }]);
  await settle(live2);
  const { request, ...events } = exchange(live2.slice(before), "session/prompt");
  const blocks = request?.payload.params.prompt ?? [];
  emit("prompt", {
    prompt: "text again",
    stopReason: response?.stopReason,
    replayInjected: blocks.length > 1 && String(blocks[0].text ?? "").startsWith(REPLAY_PREFIX),
    replayChars: blocks.length > 1 ? String(blocks[0].text ?? "").length : 0,
    events,
  });

  const destroyed = await sdk2.destroySession(localId);
  emit("destroy_session", { id: destroyed.id, destroyedAt: destroyed.destroyedAt ?? null });

  const [, dispose2Ms] = await timed(() => sdk2.dispose());
  emit("dispose", { sdk: "second", ms: dispose2Ms });

  const total = await allEvents(sdk2, localId);
  emit("done", { sessionId: localId, agent, eventCount: total.length, permissions: permissions.length });
  process.exit(0);
}

process.on("unhandledRejection", fail);
main().catch(fail);
