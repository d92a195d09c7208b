#!/usr/bin/env bash
# The systemd VM lane: a VM whose PID 1 is systemd on pure cgroup v2 with AppArmor on (the host
# as distributions boot it), running, first with runc (to prove each check) and then with
# ocirt:
#   1. tests/integration/test_systemd_cgroup.py (--systemd-cgroup: scopes, properties, files,
#      update, pause, delete, a failed create) and tests/integration/test_apparmor.py;
#   2. guest/managers-systemd.sh: root podman with its defaults (systemd cgroup manager, its
#      default AppArmor profile) and containerd (ctr, the runc shim with the systemd cgroup
#      driver, a kubelet-style cgroupsPath) driving the runtime.
# One VM boot for the whole group (~10 s of boot under TCG; see the time printed at the end).
#
#   sudo bash scripts/vm/systemd-tests.sh [PYTEST ARGS...]
#
# Needs (installed by setup.sh and tests/managers/install.sh): qemu, the kernel, systemd and
# dbus, apparmor, podman with conmon, containerd, runc. Env: OCIRT_VM_TIMEOUT (default 2700).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
[[ $EUID -eq 0 ]] || { echo "systemd-tests: must run as root" >&2; exit 1; }
VENV=${OCIRT_VENV:-/opt/ocirt/venv}
bash scripts/vm/setup.sh </dev/null
bash tests/managers/install.sh podman containerd </dev/null >/dev/null
[[ -x /lib/systemd/systemd ]] || { echo "systemd-tests: systemd is not installed" >&2; exit 1; }
started=$(date +%s)
rc=0
scripts/vm/run.sh --init systemd --mem 3G --timeout "${OCIRT_VM_TIMEOUT:-2700}" -- \
    env VENV="$VENV" REPO="$repo" bash scripts/vm/guest/systemd-lane.sh "$@" || rc=$?
echo "systemd-tests: the systemd VM lane took $(( $(date +%s) - started ))s (exit status $rc)"
exit "$rc"
