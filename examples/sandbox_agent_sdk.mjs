// The rivet-dev sandbox-agent TypeScript SDK, unchanged, driving acpd: acpd serves the routes the
// SDK speaks (/v1/health, /v1/acp/{id}), so an app written for sandbox-agent runs on acpd as is.
//
//   npm install sandbox-agent@0.4.2
//   ACPD_URL=http://127.0.0.1:4520 ACPD_TOKEN=$(acpd token) node sandbox_agent_sdk.mjs
//
// ACPD_AGENT picks the agent (default "mock", acpd's scripted agent: its prompts below are its
// language). Prints what happens, one line a step; exits 1 on the first failure.

import { SandboxAgent } from "sandbox-agent";

const baseUrl = process.env.ACPD_URL ?? "http://127.0.0.1:4520";
const agent = process.env.ACPD_AGENT ?? "mock";
setTimeout(() => fail(new Error("timed out after 60 s")), 60_000).unref();

function fail(error) {
  console.error(`sandbox_agent_sdk.mjs: ${error?.message ?? error}`);
  process.exit(1);
}

const sdk = await SandboxAgent.connect({ baseUrl, token: process.env.ACPD_TOKEN, waitForHealth: { timeoutMs: 10_000 } });
console.log("health", JSON.stringify(await sdk.getHealth()));

const session = await sdk.createSession({ agent, cwd: process.cwd() });
console.log("session", session.id, "agent session", session.agentSessionId);

// The agent's text, chunk by chunk, as it streams (over SSE: a chunk may land after the prompt's answer).
session.onEvent((event) => {
  const update = event.payload.params?.update;
  if (update?.sessionUpdate === "agent_message_chunk" && update.content?.type === "text") {
    console.log("chunk", JSON.stringify(update.content.text));
  }
});

// Answer permission requests from code: allow this one call.
session.onPermissionRequest((request) => {
  console.log("permission", request.id, request.toolCall?.title ?? "(untitled)", "-> once");
  session.respondPermission(request.id, "once").catch(fail);
});

for (const text of ["text hello from the sandbox-agent SDK", "permission execute"]) {
  const response = await session.prompt([{ type: "text", text }]);
  console.log("prompt", JSON.stringify(text), "->", response.stopReason);
}

const events = await sdk.getEvents({ sessionId: session.id, limit: 500 });
console.log("events", events.items.length);

await sdk.destroySession(session.id);
console.log("destroyed", session.id);
await sdk.dispose();
process.exit(0);
