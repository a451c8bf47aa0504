#!/usr/bin/env bash
# The README's quick start as a script: a session on the mock agent with curl alone.
#
#   ACPD_URL=http://127.0.0.1:4520 ACPD_TOKEN=... examples/curl.sh
#
# ACPD_URL defaults to http://127.0.0.1:4520; ACPD_TOKEN to what `acpd token` prints (the local
# daemon's token). Needs curl and jq. The token goes to curl through a file descriptor (-H @<(H)),
# so it never shows in `ps`. Exits non-zero at the first step that fails.
set -euo pipefail

URL=${ACPD_URL:-http://127.0.0.1:4520}
TOKEN=${ACPD_TOKEN:-$(acpd token)}
H() { echo "Authorization: Bearer $TOKEN"; }
JSON='content-type: application/json'
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "curl.sh: $tool is needed" >&2; exit 1; }
done
step() { printf '\n== %s\n' "$*" >&2; }

step "health (open to all, no token)"
curl -sf "$URL/v1/health" | jq -c .

step "create a session on the mock agent (cwd must be an absolute directory)"
S=$(curl -sf "$URL/v1/sessions" -H @<(H) -H "$JSON" -d "$(jq -nc --arg cwd "$PWD" '{agent: "mock", cwd: $cwd}')" | jq -r .id)
echo "session $S"

step "blocking prompt: the JSON answer arrives when the turn ends"
curl -sf "$URL/v1/sessions/$S/prompt" -H @<(H) -H "$JSON" -d '{"prompt": "hello"}' | jq -c '{stopReason, text}'

step "streaming prompt: the turn's events as SSE, as they happen"
curl -sfN "$URL/v1/sessions/$S/prompt" -H @<(H) -H 'accept: text/event-stream' -H "$JSON" \
  -d '{"prompt": "plan 2\nthink hmm\ntool read\ntext done"}' | sed -n 's/^data: //p' | jq -c '.payload.params.update.sessionUpdate // .payload.result // empty'

step "page the history (resume a live stream with Last-Event-ID or ?after=)"
LAST=$(curl -sf "$URL/v1/sessions/$S/events?after=0&limit=100" -H @<(H) | jq '.items | last | .seq')
echo "$LAST events so far"

step "a permission request: the turn waits for an answer"
curl -sf "$URL/v1/sessions/$S/prompt" -H @<(H) -H "$JSON" -d '{"prompt": "permission edit"}' >"${TMPDIR:-/tmp}/acpd-turn.$$" &
TURN=$!
# follow the session's events until the request is recorded (bounded: 30 s), then stop following
exec {EVENTS}< <(curl -sfN --max-time 30 "$URL/v1/sessions/$S/events/stream?after=$LAST" -H @<(H))
FOLLOWER=$!
grep -m1 -q '"session/request_permission"' <&"$EVENTS" || true
kill "$FOLLOWER" 2>/dev/null || true
exec {EVENTS}<&-
P=$(curl -sf "$URL/v1/sessions/$S/permissions" -H @<(H) | jq -r '.items[0].id')
echo "permission $P: answering once"
curl -sf "$URL/v1/sessions/$S/permissions/$P" -H @<(H) -H "$JSON" -d '{"reply": "once"}' | jq -c .
wait "$TURN"
jq -c '{stopReason, text}' "${TMPDIR:-/tmp}/acpd-turn.$$"
rm -f "${TMPDIR:-/tmp}/acpd-turn.$$"

step "delete the session"
curl -sf -X DELETE "$URL/v1/sessions/$S" -H @<(H) -o /dev/null -w '%{http_code}\n'
