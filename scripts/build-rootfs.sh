#!/usr/bin/env bash
# Build the root filesystems of the bundles under bundles/ (called by scripts/setup.sh).
#
#   bundles/busybox/rootfs   the host's static busybox, one symlink per applet, a minimal /etc
#   bundles/hostbind/rootfs  an empty directory: everything in it comes from bind mounts
#
# Idempotent: the busybox rootfs is rebuilt only when the host's busybox or this script changed
# (a stamp next to the rootfs records both hashes). A rebuild happens in a temporary directory
# that replaces the old rootfs only once complete. Needs root (files are owned by root:root).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundles=$repo/bundles

die() { echo "build-rootfs: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (the rootfs belongs to root)"

busybox=$(command -v busybox || true)
[[ -n $busybox ]] || die "busybox not found: install the busybox-static package"
busybox=$(readlink -f "$busybox")
# A dynamically linked busybox would need the host's libc inside the container.
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked: install busybox-static instead of busybox"
fi

build_busybox() {
    local dest=$bundles/busybox/rootfs
    local stamp=$bundles/busybox/.rootfs-stamp
    local want
    want="$(sha256sum "$busybox" | cut -d' ' -f1) $(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
    if [[ -x $dest/bin/busybox && -f $stamp && $(<"$stamp") == "$want" ]]; then
        echo "build-rootfs: $dest is up to date"
        return
    fi

    local tmp=$dest.tmp.$$
    rm -rf "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp"/{bin,dev,etc,proc,sys}
    install -d -m 0700 "$tmp/root"
    install -d -m 1777 "$tmp/tmp"
    install -m 0755 "$busybox" "$tmp/bin/busybox"

    local applet n=0
    while read -r applet; do
        [[ $applet == busybox ]] && continue
        ln -s busybox "$tmp/bin/$applet"
        n=$((n + 1))
    done < <("$busybox" --list)

    printf '%s\n' \
        'root:x:0:0:root:/root:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$tmp/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$tmp/etc/group"
    echo ocirt-busybox >"$tmp/etc/hostname"
    chmod 0644 "$tmp"/etc/{passwd,group,hostname}
    chown -R root:root "$tmp"

    rm -rf "$dest"
    mv "$tmp" "$dest"
    trap - EXIT
    echo "$want" >"$stamp"
    echo "build-rootfs: built $dest (busybox and $n applet links)"
}

build_hostbind() {
    # Empty on purpose: the config bind-mounts the host's /usr, /bin, /lib, /lib64 and /sbin.
    # The runtime creates the mount points in it, so it does not stay empty after a run.
    mkdir -p "$bundles/hostbind/rootfs"
}

build_busybox
build_hostbind
