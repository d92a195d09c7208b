"""The hooks the hook tests install: one script on the host and in the rootfs that logs where
and when it ran (kind, pid and mount namespaces, args, env, the state on stdin), its config
entries, the fixtures that make them, a failing hook, and runc 1.1's poststart skip."""

from __future__ import annotations

import json

import pytest

from .support import IS_OCIRT, RUNTIME_NAME

# Appends one line per call: kind|pid ns|mount ns|extra args|HOOK_VAR|token var|state JSON.
# It runs on the host (dash) and, as a startContainer hook, in the container (busybox).
HOOK = """#!/bin/sh
kind=$1 log=$2
shift 2
state=$(cat | tr -d '\\n')
echo "$kind|$(readlink /proc/self/ns/pid)|$(readlink /proc/self/ns/mnt)|$*|\
${HOOK_VAR-unset}|${OCIRT_ITEST-unset}|$state" >> "$log"
"""
# The startContainer hook lives in the rootfs only: its path resolves in the container.
IN_ROOTFS = "/hook-in-rootfs.sh"
HOOK_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
HOST_KINDS = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")


class Hooks:
    """The hook script on the host and in a private rootfs, the log they append to, and
    config entries for them."""

    def __init__(self, tmp_path, rootfs, out_dir):
        self.host = tmp_path / "hook.sh"
        self.host.write_text(HOOK)
        self.host.chmod(0o755)
        inside = rootfs / IN_ROOTFS.lstrip("/")
        inside.write_text(HOOK)
        inside.chmod(0o755)
        self.log = out_dir / "hooks.log"  # /out/hooks.log in the container

    def entry(self, kind, *extra, label=None, env=(), timeout=None):
        path = IN_ROOTFS if kind == "startContainer" else str(self.host)
        log = "/out/hooks.log" if kind == "startContainer" else str(self.log)
        hook = {"path": path, "args": [path, label or kind, log, *extra],
                "env": [HOOK_PATH, *env]}
        if timeout is not None:
            hook["timeout"] = timeout
        return hook

    def all_kinds(self):
        return {kind: [self.entry(kind)] for kind in (*HOST_KINDS, "startContainer")}

    def calls(self):
        """The log: a list of dicts (kind, pidns, mntns, args, var, token, state)."""
        if not self.log.exists():
            return []
        calls = []
        for line in self.log.read_text().splitlines():
            kind, pidns, mntns, args, var, token, state = line.split("|", 6)
            calls.append({"kind": kind, "pidns": ns_number(pidns), "mntns": ns_number(mntns),
                          "args": args, "var": var, "token": token,
                          "state": json.loads(state)})
        return calls

    def kinds(self):
        return [call["kind"] for call in self.calls()]


def ns_number(link):
    return int(link.split("[")[1].rstrip("]"))


@pytest.fixture
def hooks(tmp_path, private_rootfs, out_dir):
    return Hooks(tmp_path, private_rootfs, out_dir)


@pytest.fixture
def hooked(make_config, private_rootfs):
    """``hooked(hooks_dict, args=...)``: a config on the private rootfs with those hooks."""

    def make(hook_config, args=("sleep", "100")):
        config = make_config(list(args), rootfs_path=private_rootfs)
        config["hooks"] = hook_config
        return config

    return make


RUNC_POSTSTART = ("runc 1.1 runs poststart hooks during create, before the program runs "
                  "(status created); config.md wants them after the program is executed")
requires_poststart_on_start = pytest.mark.skipif(
    not IS_OCIRT, reason=f"the runtime is {RUNTIME_NAME}: {RUNC_POSTSTART}")


def check_state(call, cid, bundle_dir, status, pid):
    state = call["state"]
    assert state["id"] == cid and state["bundle"] == str(bundle_dir), call
    assert state["status"] == status, call
    assert state.get("pid") == pid, call


def failing(tmp_path, name="fail.sh"):
    path = tmp_path / name
    path.write_text("#!/bin/sh\necho hook failure reason >&2\nexit 3\n")
    path.chmod(0o755)
    return str(path)


def start_container_failing(rt, bundle, hooked, private_rootfs, extra=None):
    (private_rootfs / "fail.sh").write_text("#!/bin/sh\nexit 3\n")
    (private_rootfs / "fail.sh").chmod(0o755)
    cid = rt.new_id()
    config = hooked({"startContainer": [{"path": "/fail.sh"}], **(extra or {})},
                    args=("sh", "-c", "touch /out/program-ran"))
    rt.create(cid, bundle(config))
    return cid, rt.state(cid)["pid"]
