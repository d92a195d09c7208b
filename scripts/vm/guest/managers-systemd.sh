#!/bin/bash
# Runs INSIDE the systemd VM: root podman with its defaults and containerd's ctr with the runc
# shim's systemd cgroup driver, both driving the runtime given as $1 (runc proves the checks).
# Prints PASS/FAIL lines; exit status: the number of FAILs.
set -u
RT=${1:?runtime}
REPO=${REPO:?}
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
W=$(mktemp -d /tmp/managers.XXXXXX)
cd "$W" || exit 1
ROOTFS=$REPO/bundles/busybox/rootfs
scope_of() { sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null; }

# --- podman (root; cgroup_manager systemd and the default AppArmor profile: its defaults) ----
# Its storage on a guest tmpfs: the host's /var/lib/containers is not ours.
mountpoint -q /var/lib/containers || mount -t tmpfs -o mode=0700 tmpfs /var/lib/containers
P=(podman --runtime "$RT")
manager=$("${P[@]}" info --format '{{.Host.CgroupManager}}' 2>&1)
[[ $manager == systemd ]] && pass "podman's cgroup manager is systemd" || fail "podman: cgroup manager '$manager'"
if ! "${P[@]}" image exists localhost/busybox:lane 2>/dev/null; then
    tar -C "$ROOTFS" -cf "$W/busybox.tar" . && "${P[@]}" import -q "$W/busybox.tar" localhost/busybox:lane >/dev/null \
        || fail "podman import"
fi
IMG=localhost/busybox:lane
R=("${P[@]}" run --network none)

"${R[@]}" --rm "$IMG" sh -c 'exit 3'; rc=$?
[[ $rc == 3 ]] && pass "podman run: exit code 3" || fail "podman run: exit code $rc, not 3"
out=$(echo hello-stdin | "${R[@]}" --rm -i "$IMG" cat 2>&1)
[[ $out == hello-stdin ]] && pass "podman run -i: stdin reaches the container" || fail "podman run -i: '$out'"
out=$("${R[@]}" --rm -t "$IMG" tty 2>&1 | tr -d '\r')
[[ $out == /dev/pts/* ]] && pass "podman run -t: a terminal ($out)" || fail "podman run -t: '$out'"
out=$("${R[@]}" --rm "$IMG" cat /proc/self/attr/current 2>&1)
if [[ $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null) == Y ]]; then
    [[ $out == containers-default* ]] && pass "podman's default AppArmor profile: $out" || fail "AppArmor label '$out'"
else
    fail "AppArmor is not enabled in the VM"
fi

id=$("${R[@]}" -d --memory 64m --memory-swap 64m --pids-limit 10 --cpus 0.5 "$IMG" sleep 1000 2>&1)
pid=$("${P[@]}" inspect -f '{{.State.Pid}}' "$id" 2>/dev/null)
cg=$(scope_of "$pid")
[[ $cg == */libpod-$id.scope ]] && pass "podman -d: the container is in $cg" || fail "podman -d: cgroup '$cg' (id $id)"
d=/sys/fs/cgroup$cg
[[ $(cat "$d/memory.max" 2>/dev/null) == 67108864 ]] && pass "--memory 64m: memory.max=67108864" || fail "memory.max '$(cat "$d/memory.max" 2>&1)'"
[[ $(cat "$d/pids.max" 2>/dev/null) == 10 ]] && pass "--pids-limit 10: pids.max=10" || fail "pids.max '$(cat "$d/pids.max" 2>&1)'"
[[ $(cat "$d/cpu.max" 2>/dev/null) == "50000 100000" ]] && pass "--cpus 0.5: cpu.max=50000 100000" || fail "cpu.max '$(cat "$d/cpu.max" 2>&1)'"
out=$("${P[@]}" exec "$id" sh -c 'echo in-exec; cat /proc/self/attr/current' 2>&1 | tr '\n' ' ')
[[ $out == "in-exec containers-default"* ]] && pass "podman exec: runs, confined ($out)" || fail "podman exec: '$out'"
out=$("${P[@]}" exec "$id" sh -c 'i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done; wait' 2>&1)
[[ $out == *"fork"* || $out == *"Resource temporarily unavailable"* ]] && pass "pids.max=10 enforced (forks refused)" || fail "pids limit not enforced: '$out'"
"${P[@]}" stop -t 2 "$id" >/dev/null 2>&1 && pass "podman stop" || fail "podman stop"
"${P[@]}" rm "$id" >/dev/null 2>&1 && pass "podman rm" || fail "podman rm"
sleep 1
systemctl is-active -q "libpod-$id.scope" && fail "libpod-$id.scope still active after rm" || pass "the scope is gone after rm"
"${R[@]}" --rm --memory 64m --memory-swap 64m "$IMG" dd if=/dev/zero of=/dev/null bs=200M count=1 >/dev/null 2>&1; rc=$?
[[ $rc == 137 ]] && pass "--memory 64m enforced: a 200 MB buffer is OOM-killed (137)" || fail "OOM test exited $rc"

# --- containerd: ctr, the runc shim with SystemdCgroup, a kubelet-style cgroupsPath -----------
C=$W/containerd; mkdir -p "$C"
cat > "$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
TOML
containerd --config "$C/config.toml" >"$C/log" 2>&1 &
cpid=$!
for _ in $(seq 300); do [[ -S $C/containerd.sock ]] && ctr --address "$C/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.2; done
CTR=(ctr --address "$C/containerd.sock" --namespace lane)
uid=0123abcd-4567-89ef-0123-456789abcdef
cid=ctr$RANDOM
path="kubepods-besteffort-pod${uid//-/_}.slice:cri-containerd:$cid"
cp -a "$ROOTFS" "$C/rootfs"
if "${CTR[@]}" run -d --runc-binary "$RT" --runc-systemd-cgroup --cgroup "$path" \
        --memory-limit 67108864 --env PATH=/bin:/sbin:/usr/bin --rootfs "$C/rootfs" "$cid" /bin/sleep 1000 >"$C/run.out" 2>&1; then
    pid=$("${CTR[@]}" task ls | awk -v c="$cid" '$1 == c {print $2}')
    cg=$(scope_of "$pid")
    want="/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid//-/_}.slice/cri-containerd-$cid.scope"
    [[ $cg == "$want" ]] && pass "containerd: the task is in $cg" || fail "containerd: cgroup '$cg', not $want"
    [[ $(cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null) == 67108864 ]] && pass "containerd: memory.max=64M" || fail "containerd: memory.max '$(cat "/sys/fs/cgroup$cg/memory.max" 2>&1)'"
    out=$("${CTR[@]}" task exec --exec-id e1 "$cid" /bin/echo in-exec 2>&1)
    [[ $out == in-exec ]] && pass "containerd: task exec" || fail "containerd: task exec '$out'"
    "${CTR[@]}" task kill -s KILL "$cid" >/dev/null 2>&1
    for _ in $(seq 100); do [[ $("${CTR[@]}" task ls | awk -v c="$cid" '$1 == c {print $3}') == STOPPED ]] && break; sleep 0.2; done
    "${CTR[@]}" task delete "$cid" >/dev/null 2>&1 && pass "containerd: task delete" || fail "containerd: task delete"
    "${CTR[@]}" container delete "$cid" >/dev/null 2>&1
    sleep 1
    systemctl is-active -q "cri-containerd-$cid.scope" && fail "containerd: the scope is still active" || pass "containerd: the scope is gone"
else
    fail "containerd: ctr run: $(tail -5 "$C/run.out")"
fi
kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
rm -rf "$W"
echo "managers with $RT: $fails failure(s)"
exit "$fails"
