#!/usr/bin/env bash
# The cgroup v2 VM lane, part 1: everything `run.sh` needs, from Debian packages only.
#
#   sudo bash scripts/vm/setup.sh
#
# - apt: qemu-system-x86 (no recommends), busybox-static, kmod
# - the kernel: Debian's current linux-image-*-amd64, fetched with `apt-get download` and unpacked
#   into the cache (never installed: /boot and the host's modules are untouched); only the kernel
#   (also as an uncompressed ELF, which boots ~3 s faster under TCG) and the modules the guest
#   needs (9p, virtio, overlay, virtio-blk) are kept
# - the initramfs: busybox + guest/init + guest/stage2 + those modules; rebuilt when they change
# - the systemd lane's initramfs (run.sh --init systemd): busybox + guest/init-systemd +
#   guest/ocirt-job + guest/systemd/ (units, masks) + the same modules; and apparmor on the host
#   (the guest's root), so the guest kernel has AppArmor on with apparmor_parser and profiles
# Idempotent: with everything in place it takes well under a second.
# Env: OCIRT_VM_CACHE (default /var/cache/ocirt-vm), OCIRT_VM_KERNEL_PKG to pin a kernel package.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${OCIRT_VM_CACHE:-/var/cache/ocirt-vm}
MODULES="9p 9pnet_virtio virtio_pci virtio_console virtio_rng virtio_blk overlay"
say() { echo "vm-setup: $*" >&2; }
mkdir -p "$CACHE"

# 1. packages
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v depmod >/dev/null && command -v modprobe >/dev/null || need+=(kmod)
[[ -x /sbin/apparmor_parser ]] || need+=(apparmor)
if [[ ${#need[@]} -gt 0 ]]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q update </dev/null >/dev/null
    apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi

# 2. the kernel and its modules
if [[ ! -f $CACHE/kernel/vmlinuz || ! -f $CACHE/kernel/modules.list ]]; then
    pkg=${OCIRT_VM_KERNEL_PKG:-}
    if [[ -z $pkg ]]; then
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
        if [[ -z $pkg ]]; then
            apt-get -q update </dev/null >/dev/null
            pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
        fi
    fi
    [[ -n $pkg ]] || { say "cannot tell which kernel package linux-image-amd64 is"; exit 1; }
    kver=${pkg#linux-image-}
    say "fetching $pkg"
    tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -q "$pkg" </dev/null >/dev/null 2>&1) || {
        apt-get -q update </dev/null >/dev/null; (cd "$tmp" && apt-get download -q "$pkg" </dev/null >/dev/null); }
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    depmod -b "$tmp/x" "$kver"
    new=$CACHE/kernel.new
    rm -rf "$new"; mkdir -p "$new/modules"
    cp "$tmp/x/boot/vmlinuz-$kver" "$new/vmlinuz"
    cp "$tmp/x/boot/config-$kver" "$new/config"
    python3 "$HERE/extract-vmlinux.py" "$new/vmlinuz" "$new/vmlinux" \
        || { say "no uncompressed kernel (boots slower)"; rm -f "$new/vmlinux"; }
    for m in $MODULES; do modprobe -d "$tmp/x" -S "$kver" --show-depends "$m"; done \
        | awk '$1=="insmod"{print $2}' | awk '!seen[$0]++' > "$tmp/order"
    : > "$new/modules.list"
    while read -r f; do
        b=$(basename "$f" .ko); cp "$f" "$new/modules/$b.ko"; echo "$b" >> "$new/modules.list"
    done < "$tmp/order"
    echo "$kver" > "$new/version"
    rm -rf "$CACHE/kernel"; mv "$new" "$CACHE/kernel"
    rm -rf "$tmp"; trap - EXIT
    rm -f "$CACHE/initramfs.img" "$CACHE/initramfs-systemd.img"
fi

# 3. the initramfs
img=$CACHE/initramfs.img
if [[ ! -f $img || $HERE/guest/init -nt $img || $HERE/guest/stage2 -nt $img ]]; then
    say "building the initramfs"
    st=$(mktemp -d "$CACHE/ird.XXXXXX")
    mkdir -p "$st/bin" "$st/modules"
    cp /bin/busybox "$st/bin/busybox"
    install -m 0755 "$HERE/guest/init" "$st/init"
    install -m 0644 "$HERE/guest/stage2" "$st/stage2"
    cp "$CACHE/kernel/modules/"*.ko "$st/modules/"
    cp "$CACHE/kernel/modules.list" "$st/modules.list"
    (cd "$st" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$img.new")
    mv "$img.new" "$img"
    rm -rf "$st"
fi
# 4. the systemd lane's initramfs
img=$CACHE/initramfs-systemd.img
newest=$(find "$HERE/guest/init-systemd" "$HERE/guest/ocirt-job" "$HERE/guest/systemd" -type f \
         -newer "$img" 2>/dev/null | head -1 || true)
if [[ ! -f $img || -n $newest ]]; then
    say "building the systemd initramfs"
    st=$(mktemp -d "$CACHE/ird.XXXXXX")
    mkdir -p "$st/bin" "$st/modules" "$st/units"
    cp /bin/busybox "$st/bin/busybox"
    install -m 0755 "$HERE/guest/init-systemd" "$st/init"
    install -m 0644 "$HERE/guest/ocirt-job" "$st/ocirt-job"
    cp "$HERE/guest/systemd/"* "$st/units/"
    cp "$CACHE/kernel/modules/"*.ko "$st/modules/"
    cp "$CACHE/kernel/modules.list" "$st/modules.list"
    (cd "$st" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$img.new")
    mv "$img.new" "$img"
    rm -rf "$st"
fi
say "ready: kernel $(cat "$CACHE/kernel/version") in $CACHE"
