#!/usr/bin/env bash
# The cgroup v2 VM lane, part 2: run one command as root in a throw-away VM with pure cgroup v2.
#
#   scripts/vm/run.sh [--init busybox|systemd] [--mem 2G] [--cpus N] [--timeout SECONDS]
#                     [--disk MB] [--rw DIR]... -- COMMAND...
#
# --init systemd boots the host's systemd as PID 1 (ocirt.target: basic.target, dbus, logind),
# and COMMAND runs in ocirt-job.service (guest/systemd/); the default is busybox's init.
# Boots Debian's kernel (cached by setup.sh) under qemu with cgroup_no_v1=all. The guest's root is
# the host's / (read-only over 9p, with a tmpfs overlay); the current directory and each --rw DIR
# are shared read-write at the same paths. --disk attaches an empty raw disk of that many MB
# (a block device for io.max tests). COMMAND runs in the current directory with the caller's
# environment; its stdout and stderr stream back, and its exit status is ours:
#   124 the timeout hit (the VM was killed)     125 the VM failed (no exit status came back)
# Env: OCIRT_VM_CACHE (default /var/cache/ocirt-vm), OCIRT_VM_JOBS (default /var/tmp/ocirt-vm),
#      OCIRT_VM_KEEP=1 (keep the job directory), OCIRT_VM_ACCEL (tcg; kvm where it works),
#      OCIRT_VM_DEBUG=1 (with --init systemd: systemd's status and log on the console).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${OCIRT_VM_CACHE:-/var/cache/ocirt-vm}
JOBS=${OCIRT_VM_JOBS:-/var/tmp/ocirt-vm}
mem=2G
cpus=$(nproc)
timeout=1800
disk=0
accel=${OCIRT_VM_ACCEL:-tcg}
rwdirs=()
init=busybox
usage() { sed -n '2,20s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 125; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --init) init=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --disk) disk=$2; shift 2 ;;
        --rw) rwdirs+=("$(realpath "$2")"); shift 2 ;;
        --) shift; break ;;
        -h | --help) usage ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || usage
say() { echo "vm-run: $*" >&2; }
kernel=$CACHE/kernel/vmlinux
[[ -f $kernel ]] || kernel=$CACHE/kernel/vmlinuz
case $init in
    busybox) initrd=$CACHE/initramfs.img; boot="" ;;
    systemd) initrd=$CACHE/initramfs-systemd.img
             boot="systemd.unit=ocirt.target systemd.firstboot=0" ;;
    *) say "--init: busybox or systemd, not $init"; exit 125 ;;
esac
verbosity="quiet loglevel=4"
if [[ $init == systemd ]]; then
    if [[ -n ${OCIRT_VM_DEBUG:-} ]]; then
        verbosity="loglevel=6 systemd.show_status=1 systemd.log_level=info systemd.log_target=kmsg printk.devkmsg=on log_buf_len=8M"
        OCIRT_VM_KEEP=1
    else
        verbosity="$verbosity systemd.show_status=error"
    fi
fi
for f in "$kernel" "$initrd"; do
    [[ -f $f ]] || { say "missing $f: run $HERE/setup.sh first"; exit 125; }
done
command -v qemu-system-x86_64 >/dev/null || { say "qemu is missing: run $HERE/setup.sh"; exit 125; }

cwd=$(pwd -P)
mkdir -p "$JOBS" || exit 125
job=$(mktemp -d "$JOBS/job.XXXXXX") || exit 125

# The job: the caller's environment, cd, the command; run by the host's bash in the guest.
{
    echo '#!/bin/bash'
    export -p | grep -v -E '^declare -x (PWD|OLDPWD|SHLVL|_|BASH_ENV|ENV)(=|$)'
    echo 'export OCIRT_VM_GUEST=1'
    printf 'cd %q || exit 125\n' "$cwd"
    printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$job/run.sh"
: > "$job/rc"

# Read-write shares: the current directory and --rw dirs, parents first, no duplicates.
shares=()
[[ $cwd == / ]] || rwdirs+=("$cwd")
: > "$job/mounts"
i=0
while read -r d; do
    [[ -n $d ]] || continue
    echo "rw$i $d" >> "$job/mounts"; shares+=("$d"); i=$((i + 1))
done < <(printf '%s\n' "${rwdirs[@]}" | awk '{print length($0) "\t" $0}' | sort -n -u | cut -f2- | awk '!s[$0]++')

if [[ $accel == kvm ]]; then A=(-accel kvm -cpu host); else A=(-accel tcg,thread=multi -cpu max); fi
Q=(qemu-system-x86_64 -nodefaults -no-user-config -display none -monitor none
   -M q35 "${A[@]}" -smp "$cpus" -m "$mem" -no-reboot -nic none
   -pidfile "$job/qemu.pid"
   -kernel "$kernel" -initrd "$initrd"
   -append "console=ttyS0 $verbosity mitigations=off panic=-1 oops=panic cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 random.trust_cpu=on $boot ocirt.job=$job"
   -serial "file:$job/console.log"
   -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
   -device "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"
   -device virtio-rng-pci
   -device "virtio-serial-pci,max_ports=8"
   -chardev "file,id=out,path=/proc/self/fd/1,append=on" -device "virtserialport,chardev=out,name=ocirt.out"
   -chardev "file,id=err,path=/proc/self/fd/2,append=on" -device "virtserialport,chardev=err,name=ocirt.err"
   -chardev "file,id=ret,path=$job/rc" -device "virtserialport,chardev=ret,name=ocirt.ret")
i=0
for d in "${shares[@]}"; do
    Q+=(-fsdev "local,id=rw$i,path=$d,security_model=none,multidevs=remap"
        -device "virtio-9p-pci,fsdev=rw$i,mount_tag=rw$i")
    i=$((i + 1))
done
if [[ $disk -gt 0 ]]; then
    truncate -s "${disk}M" "$job/disk.img"
    Q+=(-drive "file=$job/disk.img,if=virtio,format=raw,cache=unsafe")
fi

# qemu's file chardevs reopen /proc/self/fd/1 and 2: safe only on pipes, so both go through cat.
# `timeout` is the hard limit; the trap stops the VM (by its pid file) if we are interrupted.
stop_vm() {
    local p
    for p in "$(cat "$job/timeout.pid" 2>/dev/null)" "$(cat "$job/qemu.pid" 2>/dev/null)"; do
        [[ -n $p ]] && kill -TERM "$p" 2>/dev/null
    done
    sleep 1
    p=$(cat "$job/qemu.pid" 2>/dev/null); [[ -n $p ]] && kill -KILL "$p" 2>/dev/null
}
trap 'say "interrupted: stopping the VM"; stop_vm; wait; rm -rf "$job"; exit 130' INT TERM HUP
{ { bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$job/timeout.pid" \
        timeout -k 5 "$timeout" "${Q[@]}" </dev/null 2>&1 1>&3 3>&- | cat >&2; exit "${PIPESTATUS[0]}"; } 3>&1 | cat; exit "${PIPESTATUS[0]}"; } &
wait $!
qrc=$?
rc=$(tr -dc '0-9' < "$job/rc")
keep=${OCIRT_VM_KEEP:-}
if [[ $qrc == 124 || $qrc == 137 ]]; then
    say "TIMEOUT after ${timeout}s: the VM was killed"; rc=124; keep=1
elif [[ -z $rc ]]; then
    say "the VM ended without an exit status (qemu exit $qrc); console tail:"
    tail -n 30 "$job/console.log" >&2; rc=125; keep=1
fi
if [[ -n $keep ]]; then say "job directory kept: $job"; else rm -rf "$job"; fi
exit "$rc"
