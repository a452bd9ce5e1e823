#!/usr/bin/env bash
# Install (or check, in seconds, that the install is current) and run the tests.
#
#   scripts/test.sh [pytest args...]      e.g.  scripts/test.sh -m ros -x
#
# pytest settings live in setup.cfg (markers `slow` and `ros`; the default run
# leaves out `slow`: pass -m slow, or -m "", to include it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

./scripts/install.sh

# Test the venv as installed: a sourced ROS 2 setup in this shell would put the
# system's rclpy on PYTHONPATH and its libraries in the ament index.
unset PYTHONPATH AMENT_PREFIX_PATH COLCON_PREFIX_PATH

echo "==> pytest $*"
rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if ((rc == 5)); then
  echo "test.sh: error: pytest collected no tests (exit 5); a test run that runs nothing is a failure." >&2
  echo "    Check the test paths and the -m/-k selection: $*" >&2
  exit 1
fi
exit "$rc"
