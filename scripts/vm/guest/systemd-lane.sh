#!/bin/bash
# Runs INSIDE the systemd VM (scripts/vm/systemd-tests.sh), as root in ocirt-job.service.
# Each group first with runc (proving the checks), then with ocirt. Exit status: the number of
# groups that failed. Rootless: a lingering user (its own systemd, user@UID.service, with a
# bus) made here in the guest's tmpfs /etc, driven through tests/rootless/test_rootless_systemd.py
# and rootless podman (guest/podman-rootless.sh).
set -u
: "${VENV:?}" "${REPO:?}"
fails=0
now() { cut -d' ' -f1 /proc/uptime; }
echo "== systemd lane: uptime $(now)s; PID 1 $(cat /proc/1/comm); $(stat -fc %T /sys/fs/cgroup);" \
     "AppArmor $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)"
[[ $(cat /proc/1/comm) == systemd && $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]] \
    || { echo "FAIL: not systemd on pure cgroup v2"; exit 1; }
W=/tmp/lane; mkdir -p "$W/bin"
# ocirt from this checkout (the launcher in /usr/local/bin may point at another one).
printf '#!/bin/sh\nPYTHONPATH=%q exec %q -m ocirt "$@"\n' "$REPO" "$VENV/bin/python" > "$W/bin/ocirt"
chmod +x "$W/bin/ocirt"
RUNC=$(command -v runc)

group() {  # group NAME COMMAND...: run, report, count a failure
    local name=$1 t0 rc=0; shift
    t0=$(now)
    echo "== $name"
    "$@" || rc=$?
    echo "== $name: exit status $rc, $(echo "$t0 $(now)" | awk '{printf "%.0f", $2 - $1}')s"
    [[ $rc -eq 0 ]] || fails=$((fails + 1))
}
tests() {
    cd "$REPO" && env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$@" "$VENV/bin/python" -m pytest -q \
        -p no:cacheprovider -o console_output_style=classic \
        tests/integration/test_systemd_cgroup.py tests/integration/test_apparmor.py "${ARGS[@]}"
}
ARGS=("$@")
if [[ ${LANE_ONLY:-} != rootless ]]; then  # LANE_ONLY=rootless: the rootless groups only
group "runc: systemd driver and AppArmor tests" tests OCIRT_TEST_RUNTIME="$RUNC"
group "ocirt: systemd driver and AppArmor tests" tests
cd "$W" || exit 1  # conmon may leave a file named "oom" in its working directory
group "runc: podman and containerd" bash "$REPO/scripts/vm/guest/managers-systemd.sh" "$RUNC"
group "ocirt: podman and containerd" bash "$REPO/scripts/vm/guest/managers-systemd.sh" "$W/bin/ocirt"
fi

# --- rootless: the user tests/rootless uses, lingering, with subordinate ids ---------------
RL=ocirt-rootless-test
lingering_user() {
    # The host's own user of that name (a rootless test session running there) shows through
    # the overlay, with no home: either way the guest's user gets a home on the guest's tmpfs,
    # and /etc/passwd, subuid and subgid are copied up, so that no later change on the host
    # (its session removing the user) reaches the guest.
    id "$RL" >/dev/null 2>&1 || useradd --no-create-home --shell /bin/sh "$RL" || return 1
    mkdir -p "$W/home-$RL" && usermod --home "$W/home-$RL" "$RL" \
        && chown "$RL:$(id -gn "$RL")" "$W/home-$RL" && touch /etc/subuid /etc/subgid || return 1
    grep -q "^$RL:" /etc/subuid || usermod --add-subuids 200000-265535 --add-subgids 200000-265535 "$RL" \
        || return 1
    loginctl enable-linger "$RL" || return 1
    local uid bus i
    uid=$(id -u "$RL"); bus=/run/user/$uid/bus
    for i in $(seq 300); do [[ -S $bus ]] && break; sleep 0.2; done
    [[ -S $bus ]] || { echo "FAIL: no $bus after enable-linger"; return 1; }
    echo "user@$uid.service: $(systemctl is-active "user@$uid.service"); delegated:" \
         "$(cat "/sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service/cgroup.controllers")"
    # ocirt for the user (and for podman's user namespace): a byte-compiled copy of the
    # package it can read, with a launcher (the checkout may be closed to other users).
    mkdir -p "$W/rl/bin" && cp -r "$REPO/ocirt" "$W/rl/ocirt" && find "$W/rl/ocirt" -name __pycache__ -prune -exec rm -rf {} + \
        && "$VENV/bin/python" -m compileall -q "$W/rl/ocirt" >/dev/null || return 1
    local purelib
    purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf '#!%s -IS\nimport sys\nsys.path[:0] = [%s, %s]\nfrom ocirt.cli import main\nmain()\n' \
        "$VENV/bin/python" "'$W/rl'" "'$purelib'" > "$W/rl/bin/ocirt"
    chmod -R a+rX "$W/rl" && chmod 755 "$W" "$W/rl/bin/ocirt"
    runuser -u "$RL" -- "$W/rl/bin/ocirt" --version
}
rltests() {
    cd "$REPO" && env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$@" "$VENV/bin/python" -m pytest -q \
        -p no:cacheprovider -o console_output_style=classic -rs \
        tests/rootless/test_rootless_systemd.py "${ARGS[@]}"
}
group "rootless: a lingering user with its systemd" lingering_user
group "runc: rootless --systemd-cgroup tests" rltests OCIRT_TEST_RUNTIME="$RUNC"
group "ocirt: rootless --systemd-cgroup tests" rltests
cd "$W" || exit 1
group "runc: rootless podman" bash "$REPO/scripts/vm/guest/podman-rootless.sh" "$RUNC" "$RL"
group "ocirt: rootless podman" bash "$REPO/scripts/vm/guest/podman-rootless.sh" "$W/rl/bin/ocirt" "$RL"
echo "== systemd lane: uptime $(now)s at the end; $fails group(s) failed"
exit "$fails"
