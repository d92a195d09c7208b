#!/usr/bin/env bash
# Race the path-hardening tests for longer than CI does (tests/integration/test_security_paths.py).
#
#   sudo bash scripts/stress-paths.sh [SECONDS_PER_TEST] [pytest args...]
#
# Each test creates containers for SECONDS_PER_TEST (default 60) while a second process swaps
# the path it attacks for a symlink in a loop. Runs the checkout's own code (PYTHONPATH = this
# checkout); OCIRT_TEST_RUNTIME=runc points it at runc. Prints how often the attacker won
# (created vs refused) for each test.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift || true
python=${PYTHON:-/opt/ocirt/venv/bin/python}

[[ $EUID -eq 0 ]] || { echo "stress-paths: must run as root" >&2; exit 1; }
cd "$repo"
OCIRT_RACE_SECONDS=$seconds exec "$python" -m pytest -q -s -p no:cacheprovider \
    tests/integration/test_security_paths.py "$@"
