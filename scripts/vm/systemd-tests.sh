#!/usr/bin/env bash
# The systemd VM lane: a VM whose PID 1 is systemd on pure cgroup v2 with AppArmor on (the host
# as distributions boot it), running, first with runc (to prove each check) and then with
# ocirt:
#   1. tests/integration/test_systemd_cgroup.py (--systemd-cgroup: scopes, properties, files,
#      update, pause, delete, a failed create) and tests/integration/test_apparmor.py;
#   2. guest/managers-systemd.sh: root podman with its defaults (systemd cgroup manager, its
#      default AppArmor profile) and containerd (ctr, the runc shim with the systemd cgroup
#      driver, a kubelet-style cgroupsPath) driving the runtime;
#   3. rootless, as a lingering user made in the guest (its own systemd, user@UID.service):
#      tests/rootless/test_rootless_systemd.py (--systemd-cgroup on the user's bus) and
#      guest/podman-rootless.sh (rootless podman with its defaults, limits in the user's scope).
# One VM boot for the whole group (~10 s of boot under TCG; see the time printed at the end).
#
#   sudo bash scripts/vm/systemd-tests.sh [PYTEST ARGS...]
#
# Needs (installed by setup.sh, tests/managers/install.sh and here): qemu, the kernel, systemd
# and dbus, apparmor, podman with conmon, containerd, runc; for rootless uidmap (newuidmap) and
# dbus-user-session (the user's bus). Env: OCIRT_VM_TIMEOUT (default 2700); LANE_ONLY=rootless
# runs the rootless groups only.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
[[ $EUID -eq 0 ]] || { echo "systemd-tests: must run as root" >&2; exit 1; }
VENV=${OCIRT_VENV:-/opt/ocirt/venv}
bash scripts/vm/setup.sh </dev/null
bash tests/managers/install.sh podman containerd </dev/null >/dev/null
need=()
command -v newuidmap >/dev/null && command -v newgidmap >/dev/null || need+=(uidmap)
[[ -e /usr/lib/systemd/user/dbus.socket ]] || need+=(dbus-user-session)
if [[ ${#need[@]} -gt 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q update </dev/null >/dev/null
    apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi
[[ -x /lib/systemd/systemd ]] || { echo "systemd-tests: systemd is not installed" >&2; exit 1; }
started=$(date +%s)
rc=0
scripts/vm/run.sh --init systemd --mem 3G --timeout "${OCIRT_VM_TIMEOUT:-2700}" -- \
    env VENV="$VENV" REPO="$repo" bash scripts/vm/guest/systemd-lane.sh "$@" || rc=$?
echo "systemd-tests: the systemd VM lane took $(( $(date +%s) - started ))s (exit status $rc)"
exit "$rc"
