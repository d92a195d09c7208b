#!/bin/bash
# Runs INSIDE the systemd VM (scripts/vm/systemd-tests.sh), as root in ocirt-job.service.
# Each group first with runc (proving the checks), then with ocirt. Exit status: the number of
# groups that failed.
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
group "runc: systemd driver and AppArmor tests" tests OCIRT_TEST_RUNTIME="$RUNC"
group "ocirt: systemd driver and AppArmor tests" tests
cd "$W" || exit 1  # conmon may leave a file named "oom" in its working directory
group "runc: podman and containerd" bash "$REPO/scripts/vm/guest/managers-systemd.sh" "$RUNC"
group "ocirt: podman and containerd" bash "$REPO/scripts/vm/guest/managers-systemd.sh" "$W/bin/ocirt"
echo "== systemd lane: uptime $(now)s at the end; $fails group(s) failed"
exit "$fails"
