// The daemon's public API, as the page uses it: JSON over fetch with the bearer token, and a
// session's SSE stream read with fetch (EventSource cannot send the token) that resumes from the
// last seq the page holds (Last-Event-ID) after any drop. The token lives in sessionStorage,
// for this tab only, and travels only in the Authorization header, never in a URL.

const KEY = "acpd.token";
let asking = null;
let tokenPrompt = null;

export function setTokenPrompt(fn) {
  tokenPrompt = fn;
}

function token() {
  return sessionStorage.getItem(KEY) || "";
}

function needToken() {
  // one question however many requests were refused at once
  if (!asking) {
    asking = Promise.resolve(tokenPrompt ? tokenPrompt() : "").then((value) => {
      sessionStorage.setItem(KEY, value);
      asking = null;
    });
  }
  return asking;
}

function headers(extra = {}) {
  const all = { Accept: "application/json", ...extra };
  const t = token();
  if (t) all.Authorization = "Bearer " + t;
  return all;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || "HTTP " + status);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(method, path, body) {
  for (;;) {
    const init = { method, headers: headers(), credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    if (r.status === 401) {
      await needToken();
      continue;
    }
    if (!r.ok) {
      let problem = {};
      try {
        problem = await r.json();
      } catch {
        problem = { title: r.statusText };
      }
      throw new ApiError(r.status, problem);
    }
    return r.status === 204 ? null : r.json();
  }
}

export const enc = encodeURIComponent;

// Follow a session's stream: `lastSeq()` says where to resume (the model's own count, so a
// reconnect neither skips nor repeats); `onRecords` gets each network read's records at once.
export function follow(sessionId, lastSeq, { onRecords, onState }) {
  let stopped = false;
  let controller = null;
  let delay = 250;
  const path = `/v1/sessions/${enc(sessionId)}/events/stream`;

  async function once() {
    controller = new AbortController();
    const r = await fetch(path, {
      headers: headers({ Accept: "text/event-stream", "Last-Event-ID": String(lastSeq()) }),
      credentials: "omit",
      cache: "no-store",
      signal: controller.signal,
    });
    if (r.status === 401) return needToken();
    if (r.status === 404) {
      stopped = true;
      return onState("gone");
    }
    if (!r.ok) throw new Error("stream answered " + r.status);
    onState("live");
    delay = 250;
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const end = buffer.lastIndexOf("\n\n");
      if (end < 0) continue;
      const records = parseBlocks(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (records.length) onRecords(records);
    }
  }

  async function loop() {
    while (!stopped) {
      try {
        await once();
      } catch (err) {
        if (stopped) return;
      }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
  loop();
  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
    // a network drop, on purpose (the tests use it): the loop reconnects from lastSeq()
    drop() {
      if (controller) controller.abort();
    },
  };
}

function parseBlocks(text) {
  const records = [];
  for (const block of text.split("\n\n")) {
    let data = "";
    let event = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(line[5] === " " ? 6 : 5);
      else if (line.startsWith("event:")) event = line.slice(6).trim();
    }
    if (data && (event === "" || event === "message")) records.push(JSON.parse(data));
  }
  return records;
}

// A POST whose answer is a stream of named SSE events (an agent's install): `onEvent(name, data)`
// for each, as it comes; a refusal before the stream is thrown as an ApiError.
export async function postStream(path, onEvent) {
  for (;;) {
    const r = await fetch(path, { method: "POST", headers: headers({ Accept: "text/event-stream" }), credentials: "omit", cache: "no-store" });
    if (r.status === 401) {
      await needToken();
      continue;
    }
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => ({})));
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const end = buffer.lastIndexOf("\n\n");
      if (end < 0) continue;
      for (const block of buffer.slice(0, end).split("\n\n")) {
        const fields = Object.fromEntries(block.split("\n").map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]));
        if (fields.data) onEvent(fields.event || "message", JSON.parse(fields.data));
      }
      buffer = buffer.slice(end + 2);
    }
  }
}

// The whole history before the live stream, a page at a time (`onPage` sees each one at once).
export async function history(sessionId, after, onPage) {
  let cursor = after;
  for (;;) {
    const page = await api("GET", `/v1/sessions/${enc(sessionId)}/events?after=${cursor}&limit=10000`);
    onPage(page.items);
    if (!page.hasMore || page.nextAfter === null || page.nextAfter === undefined) return;
    cursor = page.nextAfter;
  }
}
