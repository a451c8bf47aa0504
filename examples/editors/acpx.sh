#!/usr/bin/env bash
# acpx (the ACP command-line client) with acpd as its agent: one prompt, permission requests
# approved, the ACP frames printed as JSON lines.
#
#   examples/editors/acpx.sh "permission execute"
#
# `acpd acp` relays to the daemon at ACPD_URL (default http://127.0.0.1:4520) if one answers, else
# runs one in process. ACPX and ACPD name the programs (default: acpx and acpd on PATH).
set -euo pipefail
exec "${ACPX:-acpx}" --agent "${ACPD:-acpd} acp" --approve-all --format json exec "${1:-text hello from acpx}"
