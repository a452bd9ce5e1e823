#!/usr/bin/env bash
# Install (or check, in seconds, that the install is current) and run the demo.
#
#   scripts/demo.sh [crossi2p demo args...]      e.g.  scripts/demo.sh --frames 20 --style suburban
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/install.sh
echo "==> crossi2p demo $*"
exec .venv/bin/crossi2p demo "$@"
