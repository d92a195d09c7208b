#!/usr/bin/env bash
# Set up ocirt on this machine and run the main job.
#
#   sudo bash scripts/setup.sh [--no-demo]
#
# 1. apt packages (skipped when all are installed)
# 2. a venv in /opt/ocirt/venv with ocirt installed editable from this checkout, in setuptools'
#    "compat" mode: a plain .pth path entry, no import-hook finder, so start-up stays fast
#    (skipped when pyproject.toml, the checkout's path and the Python are unchanged)
# 3. /usr/local/bin/ocirt -> the venv's console script (on root's PATH and sudo's secure_path)
# 4. the bundles' root filesystems (scripts/build-rootfs.sh)
# 5. unless --no-demo: the main job, `ocirt run` of bundles/busybox, which prints the container's
#    hostname, its PID (1) and its own mount table
#
# Works on a fresh Debian 12 or Ubuntu as root, without a terminal (CI). Idempotent.
set -euo pipefail

PREFIX=/opt/ocirt
VENV=$PREFIX/venv
PYTHON=/usr/bin/python3
# iproute2 (ip) and util-linux (unshare, nsenter): the tests build network and mount namespaces.
APT_REQUIRED=(python3-venv python3-dev busybox-static libseccomp2 libcap-ng0 sudo iproute2 util-linux)
# For benchmarks and for checking the tests against other runtimes; setup goes on without them.
APT_OPTIONAL=(runc crun hyperfine)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

demo=1
for arg in "$@"; do
    case $arg in
        --no-demo) demo=0 ;;
        -h | --help) sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (usage: sudo bash scripts/setup.sh [--no-demo])" ;;
    esac
done

[[ $EUID -eq 0 ]] || die "must run as root: sudo bash scripts/setup.sh"

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

# --- 2. venv and the editable install ---------------------------------------------------------
install_venv() {
    [[ -x $PYTHON ]] || die "$PYTHON not found (it comes with python3-venv)"
    local version venv_version
    version=$("$PYTHON" -c 'import sys; print(sys.version_info >= (3, 11), sys.version.splitlines()[0])')
    [[ $version == True* ]] || die "ocirt needs Python 3.11 or newer; $PYTHON is ${version#* }"
    venv_version=$("$VENV/bin/python" -c 'import sys; print(True, sys.version.splitlines()[0])' 2>/dev/null) || true
    local want
    want="$version | $repo | $(sha256sum pyproject.toml | cut -d' ' -f1)"
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
    PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install -q -e "${repo}[dev]" \
        --config-settings editable_mode=compat </dev/null

    # Compat mode must leave a plain path entry: an __editable__ finder would run an import hook
    # on every start of `ocirt`.
    local trace
    trace=$(cd / && "$VENV/bin/python" -X importtime -c 'import ocirt' 2>&1) \
        || die "the venv cannot import ocirt: $trace"
    if grep -q '__editable__' <<<"$trace"; then
        die "ocirt is installed with an __editable__ import finder, not as a compat .pth entry"
    fi
    local where
    where=$(cd / && "$VENV/bin/python" -c 'import ocirt; print(ocirt.__file__)')
    [[ $where == "$repo/ocirt/"* ]] || die "the venv imports ocirt from $where, not from $repo"
    echo "$want" >"$stamp"
}

# --- 3. the command ----------------------------------------------------------------------------
# Our own launcher rather than pip's console script: `python -IS` ignores PYTHON* variables and
# the caller's directory (a runtime must not depend on its environment), and skips `site` and
# the `import re` of pip's wrapper (~4 ms a call): the launcher puts the checkout and the venv's
# site-packages on sys.path itself. The package is byte-compiled here, because
# PYTHONDONTWRITEBYTECODE may be set where ocirt is first run, and compiling on every start
# would cost ~30 ms.
link_command() {
    local launcher=/usr/local/bin/ocirt want
    # shellcheck disable=SC2016
    want=$("$VENV/bin/python" -c 'import sys, sysconfig
paths = [sys.argv[1], sysconfig.get_paths()["purelib"]]
print(f"#!{sys.executable} -IS\nimport sys\n\nsys.path[:0] = {paths!r}\n"
      "from ocirt.cli import main\n\nmain()")' "$repo")
    if [[ -L $launcher || ! -f $launcher || $(<"$launcher") != "$want" ]]; then
        mkdir -p /usr/local/bin
        rm -f "$launcher"
        printf '%s\n' "$want" >"$launcher"
        chmod 755 "$launcher"
        say "wrote $launcher (runs $VENV/bin/python -IS)"
    fi
    "$VENV/bin/python" -m compileall -q "$repo/ocirt" >/dev/null
}

# --- 5. the main job ---------------------------------------------------------------------------
run_demo() {
    local id=ocirt-demo-$$
    say "main job: ocirt run --bundle bundles/busybox $id"
    local rc=0
    /usr/local/bin/ocirt run --bundle bundles/busybox "$id" </dev/null || rc=$?
    # `run` removes the container when it exits; this only clears what a failed run left.
    /usr/local/bin/ocirt delete --force "$id" >/dev/null 2>&1 || true
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
