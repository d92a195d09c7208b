#!/usr/bin/env bash
# Install the container managers the tests in tests/managers/ drive ocirt through:
# podman (with conmon) and containerd (with ctr and the runc shim, containerd-shim-runc-v2).
#
#   sudo bash tests/managers/install.sh [podman|containerd]...   (default: both)
#
# Debian's packages, without recommends: no network helpers (the tests use --network none),
# no rootless helpers. Nothing is started or enabled: the tests run a private containerd and a
# podman with private storage and config. Idempotent; prints what it did. Exit status 0 when
# every asked-for manager is usable afterwards, 1 otherwise (the tests then skip, saying why).
set -uo pipefail

say() { echo "install-managers: $*"; }

[[ $EUID -eq 0 ]] || { say "must run as root"; exit 1; }

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(podman containerd)

packages=()
for manager in "${want[@]}"; do
    case $manager in
        podman) command -v podman >/dev/null && command -v conmon >/dev/null \
                    || packages+=(podman conmon) ;;
        containerd) command -v containerd >/dev/null && command -v ctr >/dev/null \
                    && command -v containerd-shim-runc-v2 >/dev/null \
                    || packages+=(containerd) ;;
        *) say "unknown manager: $manager (podman or containerd)"; exit 2 ;;
    esac
done

if [[ ${#packages[@]} -gt 0 ]]; then
    say "installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # A package's postinst must not start a system-wide daemon: only the tests' own instances
    # run. Debian images for containers already have a policy-rc.d saying so; add one for the
    # duration of the install where there is none.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    apt=(apt-get -q -y -o Dpkg::Use-Pty=0 --no-install-recommends)
    if ! "${apt[@]}" install "${packages[@]}" </dev/null; then
        apt-get -q update </dev/null
        "${apt[@]}" install "${packages[@]}" </dev/null
    fi
    [[ $added_policy -eq 0 ]] || rm -f "$policy"
    # A containerd that was started anyway (a host with systemd and no policy-rc.d) would be
    # system-wide; the tests never use it, but say so.
    if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
        say "note: a system containerd is running; the tests use their own instance"
    fi
fi

rc=0
for manager in "${want[@]}"; do
    case $manager in
        podman) tools=(podman conmon) ;;
        containerd) tools=(containerd ctr containerd-shim-runc-v2) ;;
    esac
    for tool in "${tools[@]}"; do
        if ! command -v "$tool" >/dev/null; then
            say "$tool is missing after the install"
            rc=1
        fi
    done
done
[[ $rc -ne 0 ]] || say "ready: ${want[*]}"
exit $rc
