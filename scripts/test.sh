#!/usr/bin/env bash
# The project's checks, as CI runs them (.ci/run):
#
#   sudo bash scripts/test.sh
#
# Sets up the machine (scripts/setup.sh --no-demo), then runs ruff, mypy (strict, configured in
# pyproject.toml) and the test suite with the venv's Python. Every check runs even when an
# earlier one failed; the exit status is non-zero when any failed. A test run that collects no
# test counts as a failure: CI must never pass while testing nothing.
set -euo pipefail

VENV=/opt/ocirt/venv

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

[[ $EUID -eq 0 ]] || { echo "test: must run as root: sudo bash scripts/test.sh" >&2; exit 1; }

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

check ruff "$VENV/bin/ruff" check ocirt tests bench
check mypy "$VENV/bin/mypy"
check mypy-bench "$VENV/bin/mypy" --strict bench/bench.py
check pytest "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
# The cgroup tests again, in a VM with a pure cgroup v2 kernel (this host is hybrid v1).
check vm-cgroup-v2 bash scripts/vm/cgroup-tests.sh

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "test: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test: all checks passed"
