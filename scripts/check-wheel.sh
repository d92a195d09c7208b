#!/usr/bin/env bash
# Check ocirt as pip users get it (run by scripts/test.sh, so by CI):
#
#   sudo bash scripts/check-wheel.sh
#
# 1. builds an sdist and, from that sdist, a wheel (`python -m build`, in a throwaway venv),
#    from a copy of the checkout's files, so nothing is written into the checkout;
# 2. installs the wheel with its dependencies into a fresh venv, and the sdist into another;
# 3. with each venv's `ocirt` console script, from a directory outside the checkout and with
#    a copy of bundles/busybox there: `ocirt spec`, `ocirt run` of the bundle (a cold and a
#    warm start of the config validator's cache), and checks that the code came from the venv.
#
# Everything lives in one temporary directory, removed at the end (a container that a failed
# run left is deleted first). Needs root (it runs containers), python3-venv, and PyPI or a
# mirror that pip is configured for (the build backend and ocirt's dependencies).
set -euo pipefail

PYTHON=${PYTHON:-/usr/bin/python3}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { echo "check-wheel: $*"; }
die() { echo "check-wheel: FAILED: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (it runs containers): sudo bash scripts/check-wheel.sh"
[[ -x $repo/bundles/busybox/rootfs/bin/busybox ]] \
    || die "bundles/busybox/rootfs is not built: run scripts/build-rootfs.sh (setup does)"

tmp=$(mktemp -d /tmp/ocirt-check-wheel.XXXXXX)
ids=()
cleanup() {
    local id venv
    for id in "${ids[@]}"; do
        for venv in "$tmp"/venv-*; do
            [[ -x $venv/bin/ocirt ]] || continue
            "$venv/bin/ocirt" --root "$tmp/state" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The validator's and seccomp's caches go to the temporary directory, not /var/cache/ocirt.
export OCIRT_CACHE_DIR=$tmp/cache

# --- 1. sdist, then the wheel from it -----------------------------------------------------------
# The checkout's files (tracked, and new ones not ignored), without what a build left there.
mkdir "$tmp/src"
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$tmp/src"
else  # an unpacked sdist: everything it holds
    (cd "$repo" && tar --exclude=__pycache__ --exclude='*.egg-info' --exclude=build \
        --exclude=dist -cf - .) | tar -xf - -C "$tmp/src"
fi

say "building the sdist and the wheel"
"$PYTHON" -m venv "$tmp/builder"
"$tmp/builder/bin/pip" install -q build </dev/null
"$tmp/builder/bin/python" -m build --outdir "$tmp/dist" "$tmp/src" </dev/null >"$tmp/build.log" 2>&1 \
    || die "python -m build failed: $(tail -n 40 "$tmp/build.log")"
# A deprecation today is a failed build tomorrow: setuptools' warnings count.
if grep -q -i 'deprecat' "$tmp/build.log"; then
    die "the build warns: $(grep -i -A3 'deprecat' "$tmp/build.log" | head -n 20)"
fi
wheel=$(echo "$tmp"/dist/ocirt-*.whl)
sdist=$(echo "$tmp"/dist/ocirt-*.tar.gz)
[[ -f $wheel && -f $sdist ]] || die "python -m build made no wheel or sdist: $(ls "$tmp/dist")"
say "built $(basename "$sdist") and $(basename "$wheel")"

# Every file ocirt reads at run time must be in the wheel.
"$tmp/builder/bin/python" - "$wheel" <<'EOF' || die "the wheel lacks package data"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["ocirt/config/seccomp_default.json", "ocirt/py.typed",
        *(f"ocirt/config/schemas/{n}.json" for n in
          ("config-schema", "config-linux", "config-process", "defs", "state-schema"))]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"check-wheel: the wheel lacks {missing}")
EOF

# --- 2. and 3. install each into a fresh venv and run a container -------------------------------
mkdir "$tmp/work" "$tmp/bundle"
cp -a "$repo/bundles/busybox/config.json" "$repo/bundles/busybox/rootfs" "$tmp/bundle/"

check_install() {
    local kind=$1 artefact=$2
    local venv=$tmp/venv-$kind
    say "$kind: pip install $(basename "$artefact") (with its dependencies) into a fresh venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q "$artefact" </dev/null
    [[ -x $venv/bin/ocirt ]] || die "$kind: the install made no ocirt console script"

    # Run from outside the checkout, with nothing pointing at it.
    cd "$tmp/work"
    local where
    where=$(env -u PYTHONPATH "$venv/bin/python" -c 'import ocirt; print(ocirt.__file__)')
    [[ $where == "$venv/"* ]] || die "$kind: ocirt was imported from $where, not from $venv"

    "$venv/bin/ocirt" spec >/dev/null || die "$kind: ocirt spec failed"
    [[ -s config.json ]] || die "$kind: ocirt spec wrote no config.json"
    rm -f config.json

    local round id out
    for round in cold warm; do
        id=check-wheel-$kind-$round-$$
        ids+=("$id")
        out=$(env -u PYTHONPATH "$venv/bin/ocirt" --root "$tmp/state" run --bundle "$tmp/bundle" \
            "$id" </dev/null 2>&1) || die "$kind: ocirt run ($round cache) failed: $out"
        grep -qx 'hostname: ocirt-busybox' <<<"$out" \
            || die "$kind: the container did not print its hostname: $out"
        grep -qx 'pid: 1' <<<"$out" || die "$kind: the container's shell is not PID 1: $out"
    done
    [[ -z $(ls -A "$tmp/state" 2>/dev/null) ]] || die "$kind: state left in $tmp/state"
    cd /
    say "$kind: ocirt spec and ocirt run work ($venv/bin/ocirt, from $tmp/work)"
}

check_install wheel "$wheel"
check_install sdist "$sdist"
say "ok"
