#!/usr/bin/env bash
# The cgroup v2 lane of the test suite: the cgroup integration tests (tests/integration/
# test_cgroups_*.py), run as root inside one VM whose kernel has pure cgroup v2
# (cgroup_no_v1=all), so every cgroup test runs on v1 (the host) and on v2 (here).
#
#   sudo bash scripts/vm/cgroup-tests.sh [PYTEST ARGS...]
#
# Sets the VM up first (scripts/vm/setup.sh: qemu, Debian's kernel, the initramfs; cached in
# /var/cache/ocirt-vm). Under TCG Python runs ~20x slower than on the host, so one VM runs the
# whole group; the VM gets a 64 MB scratch disk (a block device for the io.max tests).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
[[ $EUID -eq 0 ]] || { echo "cgroup-tests: must run as root" >&2; exit 1; }
VENV=${OCIRT_VENV:-/opt/ocirt/venv}
bash scripts/vm/setup.sh </dev/null
started=$(date +%s)
rc=0
scripts/vm/run.sh --disk 64 --mem 2G --timeout "${OCIRT_VM_TIMEOUT:-2700}" -- \
    env -u PYTHONDONTWRITEBYTECODE PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider -o console_output_style=classic \
    tests/integration/test_cgroups_*.py "$@" || rc=$?
echo "cgroup-tests: the VM lane took $(( $(date +%s) - started ))s (exit status $rc)"
exit "$rc"
