#!/usr/bin/env bash
# The project's checks, as CI runs them (.ci/run):
#
#   bash scripts/test.sh            (as root; from a user account: sudo bash scripts/test.sh)
#
# Sets up the machine (scripts/setup.sh --no-demo), then runs ruff, mypy (strict, configured in
# pyproject.toml), the test suite with the venv's Python (which tests the checkout: python -m
# pytest from here), and the check of the package as pip users get it (scripts/check-wheel.sh).
# Every check runs even when an earlier one failed; the exit status is non-zero when any
# failed. A test run that collects no test counts as a failure: CI must never pass while
# testing nothing. OCIRT_PREFIX is passed on to setup (see scripts/setup.sh).
set -euo pipefail

VENV=${OCIRT_PREFIX:-/opt/ocirt}/venv

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

[[ $EUID -eq 0 ]] || { echo "test: must run as root (sudo bash scripts/test.sh)" >&2; exit 1; }

bash scripts/setup.sh --no-demo </dev/null

failed=()

check() {
    local name=$1
    shift
    echo "test: $name: $*"
    local rc=0
    "$@" </dev/null || rc=$?
    if [[ $rc -ne 0 ]]; then
        if [[ $name == pytest && $rc -eq 5 ]]; then
            echo "test: pytest collected no tests: that is a failure" >&2
        fi
        failed+=("$name")
    fi
}

check ruff "$VENV/bin/ruff" check ocirt tests bench scripts/root-only.py
check mypy "$VENV/bin/mypy"
check mypy-scripts "$VENV/bin/mypy" --strict bench/bench.py scripts/root-only.py
check pytest "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
# A wheel and an sdist, each installed with its dependencies into a fresh venv, run a container.
check wheel bash scripts/check-wheel.sh
# The cgroup tests again, in a VM with a pure cgroup v2 kernel (this host is hybrid v1).
check vm-cgroup-v2 env OCIRT_VENV="$VENV" bash scripts/vm/cgroup-tests.sh
check vm-systemd env OCIRT_VENV="$VENV" bash scripts/vm/systemd-tests.sh

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "test: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test: all checks passed"
