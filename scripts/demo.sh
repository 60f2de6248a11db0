#!/usr/bin/env bash
# `make demo`: the four reference servers as separate processes on loopback, and an agent
# calling the sample calendar in every access mode over real HTTPS (aauth_flows/io/demo.py).
# Exit status 0 only when every mode succeeded and every server stopped cleanly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="$PWD/.venv/bin/python"
[[ -x "$PYTHON" ]] || { echo "demo: $PYTHON not found (run 'make demo')" >&2; exit 1; }
exec "$PYTHON" -m aauth_flows.io.demo "$@"
