#!/usr/bin/env bash
# Set up ocirt on this machine and run the main job.
#
#   bash scripts/setup.sh [--no-demo]       (as root; from a user account: sudo bash ...)
#
# 1. apt packages (skipped when all are installed)
# 2. a venv in /opt/ocirt/venv with ocirt installed into it from this checkout: a wheel built
#    from a copy of the package's files, not an editable install, so that what root runs lives
#    in root's own directory, whoever may write to the checkout (reinstalled when the package's
#    files or the Python changed; skipped otherwise)
# 3. /usr/local/bin/ocirt, a launcher of the venv's Python with -IS that imports only from
#    directories that no user but root can change (setup checks, and refuses otherwise)
# 4. the bundles' root filesystems (scripts/build-rootfs.sh)
# 5. unless --no-demo: the main job, `ocirt run` of bundles/busybox, which prints the container's
#    hostname, its PID (1) and its own mount table
#
# Works on a fresh Debian 12 or Ubuntu as root, without a terminal (CI) and without sudo.
# Idempotent. OCIRT_PREFIX (default /opt/ocirt) and OCIRT_LAUNCHER (/usr/local/bin/ocirt) put
# the venv and the launcher elsewhere (to try the set-up without touching the real ones).
set -euo pipefail

PREFIX=${OCIRT_PREFIX:-/opt/ocirt}
VENV=$PREFIX/venv
LAUNCHER=${OCIRT_LAUNCHER:-/usr/local/bin/ocirt}
PYTHON=/usr/bin/python3
# What ocirt needs to run.
APT_REQUIRED=(python3-venv python3-dev busybox-static libseccomp2 libcap-ng0)
# What the tests need: iproute2 (ip) and util-linux (unshare, nsenter) to build network and
# mount namespaces; gcc and libc6-dev to build the security tests' static helper; kmod, so that
# the kernel can load a module a test needs (vxlan) and lsmod shows what is loaded.
APT_REQUIRED+=(iproute2 util-linux gcc libc6-dev kmod)
# For benchmarks and for checking the tests against other runtimes; setup goes on without them.
APT_OPTIONAL=(runc crun hyperfine time)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

demo=1
for arg in "$@"; do
    case $arg in
        --no-demo) demo=0 ;;
        -h | --help) sed -n '2,19s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (usage: bash scripts/setup.sh [--no-demo], as root)" ;;
    esac
done

[[ $EUID -eq 0 ]] || die "must run as root (from a user account: sudo bash scripts/setup.sh)"

# --- 1. apt -----------------------------------------------------------------------------------
missing() {
    local pkg
    for pkg in "$@"; do
        if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
            echo "$pkg"
        fi
    done
}

install_packages() {
    local -a need_required need_optional
    mapfile -t need_required < <(missing "${APT_REQUIRED[@]}")
    mapfile -t need_optional < <(missing "${APT_OPTIONAL[@]}")
    # An optional package this distribution does not have is tried once, not on every run.
    local unavailable=$PREFIX/apt-unavailable
    if [[ ${#need_required[@]} -eq 0 && -f $unavailable \
        && $(<"$unavailable") == "${need_optional[*]}" ]]; then
        need_optional=()
    fi
    if [[ ${#need_required[@]} -eq 0 && ${#need_optional[@]} -eq 0 ]]; then
        say "apt packages are installed"
        return
    fi

    local -a need=("${need_required[@]}" "${need_optional[@]}")
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local -a apt=(apt-get -q -y -o Dpkg::Use-Pty=0 --no-install-recommends)
    apt-get -q update </dev/null
    if [[ ${#need_required[@]} -gt 0 ]]; then
        "${apt[@]}" install "${need_required[@]}" </dev/null
    fi
    local pkg
    for pkg in "${need_optional[@]}"; do
        "${apt[@]}" install "$pkg" </dev/null || say "warning: could not install $pkg (optional)"
    done
    mkdir -p "$PREFIX"
    missing "${APT_OPTIONAL[@]}" | paste -sd' ' >"$unavailable"
}

# --- 2. the venv, and ocirt installed into it ---------------------------------------------------
# The files a wheel of ocirt is built from, relative to the checkout, NUL-separated.
package_files() {
    find pyproject.toml README.md ocirt -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' \
        ! -name codepack.bin -print0 | LC_ALL=C sort -z
}

install_venv() {
    [[ -x $PYTHON ]] || die "$PYTHON not found (it comes with python3-venv)"
    local version venv_version
    version=$("$PYTHON" -c 'import sys; print(sys.version_info >= (3, 11), sys.version.splitlines()[0])')
    [[ $version == True* ]] || die "ocirt needs Python 3.11 or newer; $PYTHON is ${version#* }"
    venv_version=$("$VENV/bin/python" -c 'import sys; print(True, sys.version.splitlines()[0])' 2>/dev/null) || true
    local want
    want="$version | $(package_files | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
    local stamp=$VENV/.ocirt-install

    if [[ $venv_version != "$version" ]]; then
        # Missing, broken, or made by another Python (the system's was upgraded): start anew.
        say "creating $VENV"
        rm -rf "$VENV"
        mkdir -p "$PREFIX"
        "$PYTHON" -m venv "$VENV"
    elif [[ -f $stamp && $(<"$stamp") == "$want" && -x $VENV/bin/ocirt ]]; then
        say "$VENV is current"
        return
    fi

    say "installing ocirt from $repo into $VENV"
    rm -f "$stamp"
    # Built from a copy: a build writes build/ and ocirt.egg-info/ where it runs.
    local build
    build=$(mktemp -d)
    mkdir "$build/src"
    package_files | tar --null -T - -cf - | tar -xf - -C "$build/src"
    local -a pip=(env PIP_NO_INPUT=1 "$VENV/bin/python" -m pip)
    local rc=0
    "${pip[@]}" wheel -q --no-deps -w "$build/dist" "$build/src" </dev/null || rc=$?
    local wheel
    wheel=$(echo "$build"/dist/ocirt-*.whl)
    if [[ $rc -eq 0 ]]; then
        # The version number may be the installed one: --force-reinstall, for ocirt alone; then
        # its dependencies and the development tools, where missing.
        "${pip[@]}" install -q --no-deps --force-reinstall "$wheel" </dev/null \
            && "${pip[@]}" install -q "${wheel}[dev]" </dev/null || rc=$?
    fi
    rm -rf "$build"
    [[ $rc -eq 0 ]] || die "could not build and install ocirt into $VENV (exit status $rc)"

    local where
    where=$(cd / && "$VENV/bin/python" -c 'import ocirt; print(ocirt.__file__)')
    [[ $where == "$VENV/"* ]] || die "the venv imports ocirt from $where, not from $VENV"
    echo "$want" >"$stamp"
}

# --- 3. the command ----------------------------------------------------------------------------
# Our own launcher rather than pip's console script: `python -IS` ignores PYTHON* variables and
# the caller's directory (a runtime must not depend on its environment), and skips `site` and
# the `import re` of pip's wrapper (~4 ms a call): the launcher puts the venv's site-packages
# on sys.path itself, and nothing else (never the checkout). pip byte-compiles what it installs
# (compiling on every start would cost ~30 ms); compileall makes sure. Then setup packs the
# compiled modules into one file the launcher imports them from (ocirt/codepack.py: ~50
# imports of ~60-100 us each become ~25 us; a module whose source changed since is imported
# as usual).
#
# podman, containerd and conmon run it as root, so every directory it imports from must be
# root's alone, parents included (scripts/root-only.py); setup refuses to write it otherwise.
link_command() {
    local purelib
    purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    local -a paths
    mapfile -t paths < <("$VENV/bin/python" -IS -c 'import sys
print("\n".join([*sys.path, sys.executable]))')
    local unsafe
    unsafe=$("$VENV/bin/python" -IS scripts/root-only.py "$purelib" "${paths[@]}" \
        "$(dirname "$LAUNCHER")") \
        || { rm -f "$LAUNCHER"; die "refusing to install $LAUNCHER (an old one is removed): it" \
                 "would run code that users other than root can change: $unsafe"; }

    local want
    # shellcheck disable=SC2016
    want=$("$VENV/bin/python" -c 'import sys
print(f"#!{sys.executable} -IS\nimport sys\n\nsys.path[:0] = {sys.argv[1:2]!r}\n"
      f"from ocirt import codepack\n\ncodepack.install({sys.argv[2]!r})\n"
      "from ocirt.cli import main\n\nmain()")' "$purelib" "$purelib/ocirt")
    if [[ -L $LAUNCHER || ! -f $LAUNCHER || $(<"$LAUNCHER") != "$want" ]]; then
        mkdir -p "$(dirname "$LAUNCHER")"
        rm -f "$LAUNCHER"
        printf '%s\n' "$want" >"$LAUNCHER"
        chmod 755 "$LAUNCHER"
        say "wrote $LAUNCHER (runs $VENV/bin/python -IS, imports from $purelib)"
    fi
    "$VENV/bin/python" -m compileall -q "$purelib/ocirt" >/dev/null
    (cd / && "$VENV/bin/python" -IS -c 'import sys
sys.path[:0] = [sys.argv[1]]
from ocirt import codepack
codepack.build(sys.argv[1] + "/ocirt")' "$purelib") \
        || die "could not write $purelib/ocirt/codepack.bin"
    # What setup installs comes from the checkout: say so when others may change it.
    unsafe=$("$VENV/bin/python" -IS scripts/root-only.py "$repo/ocirt" "$repo/pyproject.toml") \
        || say "warning: what setup installs from $repo, others can change: $unsafe"
}

# --- 5. the main job ---------------------------------------------------------------------------
run_demo() {
    local id=ocirt-demo-$$
    say "main job: ocirt run --bundle bundles/busybox $id"
    local rc=0
    "$LAUNCHER" run --bundle bundles/busybox "$id" </dev/null || rc=$?
    # `run` removes the container when it exits; this only clears what a failed run left.
    "$LAUNCHER" delete --force "$id" >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] || die "the main job failed (exit status $rc)"
}

install_packages
install_venv
link_command
bash "$repo/scripts/build-rootfs.sh"
if [[ $demo -eq 1 ]]; then
    run_demo
fi
say "done"
