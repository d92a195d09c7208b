#!/bin/bash
# Runs INSIDE the systemd VM, as root: rootless podman with its defaults (cgroup_manager systemd,
# so conmon calls the runtime with --systemd-cgroup and the user's systemd makes the scopes)
# driving the runtime given as $1, as the lingering user $2 (made by systemd-lane.sh).
# Storage: vfs in the user's home (a guest tmpfs). Prints PASS/FAIL lines; exit status: the
# number of FAILs.
set -u
RT=${1:?runtime} USERNAME=${2:?user}
REPO=${REPO:?}
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
uid=$(id -u "$USERNAME")
home=$(getent passwd "$USERNAME" | cut -d: -f6)
manager=/user.slice/user-$uid.slice/user@$uid.service
as_user() {
    (cd "$home" && runuser -u "$USERNAME" -- env -i HOME="$home" USER="$USERNAME" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        XDG_RUNTIME_DIR="/run/user/$uid" DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" \
        "$@")
}
P=(as_user podman --storage-driver vfs --runtime "$RT")
scope_of() { sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null; }

m=$("${P[@]}" info --format '{{.Host.CgroupManager}} {{.Host.Security.Rootless}}' 2>&1)
[[ $m == "systemd true" ]] && pass "rootless podman: cgroup manager systemd, rootless" \
    || fail "rootless podman info: '$m'"
IMG=localhost/busybox:lane
if ! "${P[@]}" image exists "$IMG" 2>/dev/null; then
    tar -C "$REPO/bundles/busybox/rootfs" -cf "$home/busybox.tar" . && chown "$USERNAME" "$home/busybox.tar"
    "${P[@]}" import -q "$home/busybox.tar" "$IMG" >/dev/null || fail "rootless podman import"
fi
R=("${P[@]}" run --network none)

"${R[@]}" --rm "$IMG" sh -c 'exit 3'; rc=$?
[[ $rc == 3 ]] && pass "rootless podman run: exit code 3" || fail "rootless podman run: exit code $rc, not 3"
out=$(echo hello-stdin | "${R[@]}" --rm -i "$IMG" cat 2>&1)
[[ $out == hello-stdin ]] && pass "rootless podman run -i: stdin reaches the container" || fail "rootless podman run -i: '$out'"
out=$("${R[@]}" --rm -t "$IMG" tty 2>&1 </dev/null | tr -d '\r')
[[ $out == /dev/pts/* ]] && pass "rootless podman run -t: a terminal ($out)" || fail "rootless podman run -t: '$out'"

id=$("${R[@]}" -d --memory 64m --memory-swap 64m --pids-limit 10 --cpus 0.5 "$IMG" sleep 1000 2>&1)
pid=$("${P[@]}" inspect -f '{{.State.Pid}}' "$id" 2>/dev/null)
cg=$(scope_of "$pid")
[[ $cg == "$manager"/*/libpod-$id.scope ]] && pass "rootless podman -d: the container is in $cg (the user's manager)" \
    || fail "rootless podman -d: cgroup '$cg' (id $id), not under $manager"
d=/sys/fs/cgroup$cg
[[ $(cat "$d/memory.max" 2>/dev/null) == 67108864 ]] && pass "host: --memory 64m: memory.max=67108864" || fail "host: memory.max '$(cat "$d/memory.max" 2>&1)'"
[[ $(cat "$d/pids.max" 2>/dev/null) == 10 ]] && pass "host: --pids-limit 10: pids.max=10" || fail "host: pids.max '$(cat "$d/pids.max" 2>&1)'"
[[ $(cat "$d/cpu.max" 2>/dev/null) == "50000 100000" ]] && pass "host: --cpus 0.5: cpu.max=50000 100000" || fail "host: cpu.max '$(cat "$d/cpu.max" 2>&1)'"
out=$("${P[@]}" exec "$id" sh -c 'echo in-exec; cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max' 2>&1 | tr '\n' ' ')
[[ $out == "in-exec 67108864 10 50000 100000 " ]] && pass "rootless podman exec: runs; inside: $out" || fail "rootless podman exec: '$out'"
out=$("${P[@]}" exec "$id" sh -c 'i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done; wait' 2>&1)
[[ $out == *"fork"* || $out == *"Resource temporarily unavailable"* ]] && pass "pids.max=10 enforced (forks refused)" || fail "pids limit not enforced: '$out'"
"${P[@]}" stop -t 2 "$id" >/dev/null 2>&1 && pass "rootless podman stop" || fail "rootless podman stop"
"${P[@]}" rm "$id" >/dev/null 2>&1 && pass "rootless podman rm" || fail "rootless podman rm"
sleep 1
[[ -d $d ]] && fail "$d still there after rm" || pass "the scope's cgroup is gone after rm"
"${R[@]}" --rm --memory 64m --memory-swap 64m "$IMG" dd if=/dev/zero of=/dev/null bs=200M count=1 >/dev/null 2>&1; rc=$?
[[ $rc == 137 ]] && pass "--memory 64m enforced: a 200 MB buffer is OOM-killed (137)" || fail "OOM test exited $rc"
"${P[@]}" rm -af >/dev/null 2>&1
echo "rootless podman with $RT: $fails failure(s)"
exit "$fails"
