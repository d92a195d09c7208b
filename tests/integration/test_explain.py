"""``--explain`` says exactly what runs: a real ``run`` (and ``exec``) with a watcher that tells
every phase and step as it begins (``ocirt.linux.plan.watch``) runs the steps ``--explain``
printed for the same bundle, phase by phase, in the same order, and nothing else (an
ocirt-only option: runc has no --explain)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import feature_support
from .cgroup_support import SLOW  # (the cgroup v2 VM lane runs the run tests: TCG is slow)
from .feature_support import started, userns_config
from .support import ROOT_MARKS, RUNTIME_CMD, requires_ocirt, run_captured, wait_for

pytestmark = [*ROOT_MARKS, requires_ocirt]
open_out = feature_support.open_out
open_rootfs = feature_support.open_rootfs

# ocirt's CLI with a watcher that writes each phase and step to stderr (fd 2, which init and
# the exec'd process keep) before it runs: one write(2) per line, tagged with the pid.
WATCHED = """
import os, sys
from ocirt.linux import plan

class Tell:
    def phase(self, phase):
        os.write(2, f"@phase\\t{os.getpid()}\\t{phase.process}, {phase.title}\\n".encode())

    def step(self, step):
        os.write(2, f"@step\\t{os.getpid()}\\t{step.text}\\n".encode())
        step.action()

plan.watch(Tell())
sys.argv[0] = "ocirt"
from ocirt.cli import main
main()
"""


def explained(output: str) -> dict[str, list[str]]:
    """--explain's phases: heading -> the steps under it (notes left out)."""
    phases: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines()[1:]:
        if not line.startswith("  "):
            assert line.endswith(":"), line
            current = phases.setdefault(line[:-1], [])
        elif not line.startswith("  # ") and line != "  (nothing)":
            current.append(line[2:])
    return phases


def executed(stderr: str) -> dict[str, list[str]]:
    """The watcher's lines: each process's steps, under the phase it was in."""
    where: dict[str, str] = {}  # pid -> its current phase
    phases: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        kind, _, rest = line.partition("\t")
        pid, _, text = rest.partition("\t")
        if kind == "@phase":
            where[pid] = text
            assert text not in phases, f"phase {text!r} ran twice"
            phases[text] = []
        elif kind == "@step":
            assert pid in where, f"a step outside any phase: {text!r}"
            phases[where[pid]].append(text)
    return phases


def watched(rt, *args: str):
    argv = [RUNTIME_CMD[0], "-c", WATCHED, "--root", str(rt.root), *args]
    return run_captured(argv, stdin=None, env=rt.env, timeout=30 * SLOW)


def _same(explain_out: str, stderr: str) -> dict[str, list[str]]:
    planned, ran = explained(explain_out), executed(stderr)
    # (the runtime's second phase and stage-1's begin at the same time: either is first)
    assert sorted(ran) == sorted(planned), (list(ran), list(planned))
    for title, steps in planned.items():
        assert ran[title] == steps, (title, ran[title], steps)
    return ran


def _run_both(rt, path: Path, *options: str) -> dict[str, list[str]]:
    cid = rt.new_id("explain")
    plan = rt.ok("run", "--explain", *options, "--bundle", str(path), cid, timeout=10 * SLOW)
    result = watched(rt, "run", *options, "--bundle", str(path), cid)
    assert result.returncode == 0, result
    return _same(plan.stdout, result.stderr)


DIRECT = ["runtime, before it clones init", "runtime, while init sets up",
          "init, before it reports ready", "init, on start"]
STAGE1 = ["runtime, before it forks stage-1", "stage-1, in the new namespaces, forks init",
          "runtime, while stage-1 and init set up", "init, before it reports ready",
          "init, on start"]


def test_run_runs_what_explain_says(rt, make_config, bundle):
    """The direct path: nothing needs stage-1, so the runtime clones init into its
    namespaces, and init joins the cgroups first."""
    ran = _run_both(rt, bundle(make_config(["true"], out=False)))
    assert sorted(ran) == sorted(DIRECT), list(ran)
    assert ran["init, on start"][-1].startswith("execve ['true']"), ran
    assert ran["runtime, before it clones init"][-1].startswith("clone3(CLONE_NEWPID"), ran
    assert ran["runtime, while init sets up"] == ['sync: wait for {"ready"}'], ran
    init = ran["init, before it reports ready"]
    assert init[0].startswith("prctl(PR_SET_PDEATHSIG, SIGKILL)"), init
    assert init[1] == "join the container's cgroups (cgroupfs driver)", init


def test_a_namespace_joined_by_path_runs_through_stage1(rt, make_config, bundle):
    """A namespace joined by path needs stage-1 (setns before init is forked): the same
    check, on that path (the namespace: a holder process's, which the test started)."""
    holder = subprocess.Popen(["unshare", "--ipc", "sleep", "60"])
    try:
        config = make_config(["true"], out=False)
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "ipc"]
        path = f"/proc/{holder.pid}/ns/ipc"
        wait_for(lambda: os.readlink(path) != os.readlink("/proc/self/ns/ipc"), 1 * SLOW,
                 what="unshare to make the ipc namespace")
        config["linux"]["namespaces"].append({"type": "ipc", "path": path})
        ran = _run_both(rt, bundle(config))
    finally:
        holder.kill()
        holder.wait()
    assert sorted(ran) == sorted(STAGE1), list(ran)
    assert ran["stage-1, in the new namespaces, forks init"][-1].startswith('sync: {"pid"')
    assert f"setns {path} (ipc)" in ran["stage-1, in the new namespaces, forks init"]
    assert not any("PDEATHSIG" in text for text in ran["init, before it reports ready"])


def test_hooks_and_timings_are_steps_in_explain_order(rt, make_config, bundle):
    config = make_config(["true"], out=False)
    config["hooks"] = {kind: [{"path": "/bin/true"}] for kind in
                       ("prestart", "createRuntime", "createContainer", "startContainer")}
    ran = _run_both(rt, bundle(config), "--timings")
    init = ran["init, before it reports ready"]
    assert init.index('sync: {"hooks"} to the runtime (prestart, createRuntime hooks), wait '
                      'for {"hooks-done"}') < init.index("createContainer hooks: 1")
    runtime = ran["runtime, while init sets up"]
    assert 'sync: {"hooks-done"} to init' in runtime
    assert ran["init, on start"][:2] == [
        "startContainer hooks: 1",
        "sync: --timings rows to run in the foreground (just before the exec)"]


def test_time_offsets_after_the_unshare_that_makes_the_namespace(rt, make_config, bundle):
    config = make_config(["true"], out=False)
    config["linux"]["namespaces"].append({"type": "time"})
    config["linux"]["timeOffsets"] = {"monotonic": {"secs": 86400, "nanosecs": 0}}
    ran = _run_both(rt, bundle(config))
    stage1 = ran["stage-1, in the new namespaces, forks init"]
    unshare = next(i for i, text in enumerate(stage1) if "CLONE_NEWTIME" in text)
    request = stage1.index('sync: {"timens"} to the runtime, wait for {"offsets"}')
    assert unshare < request < stage1.index('sync: wait for {"go"}'), stage1
    runtime = ran["runtime, while stage-1 and init set up"]
    written = runtime.index("write /proc/<stage-1>/timens_offsets: monotonic 86400s 0ns "
                            "(before init enters the time namespace)")
    assert runtime.index('sync: wait for {"timens"}') < written < runtime.index(
        'sync: {"offsets"} to stage-1') < runtime.index('sync: {"go"} to stage-1'), runtime


def test_user_namespace_mapping_exchange(rt, make_config, bundle, open_rootfs, open_out):
    ran = _run_both(rt, bundle(userns_config(make_config, open_rootfs, open_out, ["true"])))
    stage1 = ran["stage-1, in the new namespaces, forks init"]
    assert stage1.index("unshare(CLONE_NEWUSER)") + 1 == stage1.index(
        'sync: {"userns"} to the runtime, wait for {"mapped"}'), stage1
    runtime = ran["runtime, while stage-1 and init set up"]
    assert runtime[:3] == ['sync: wait for {"userns"}',
                           "id maps of stage-1: the runtime writes uid_map and gid_map",
                           'sync: {"mapped"} to stage-1'], runtime


def test_exec_runs_what_explain_says(rt, make_config, bundle):
    cid, _ = started(rt, bundle, make_config(["sleep", "100"], out=False))
    for options in ((), ("--timings",)):
        plan = rt.ok("exec", "--explain", *options, cid, "sh", "-c", "exit 3",
                     timeout=10 * SLOW)
        result = watched(rt, "exec", *options, cid, "sh", "-c", "exit 3")
        assert result.returncode == 3, result
        ran = _same(plan.stdout, result.stderr)
        assert ran["process, sets itself up and execs"][-1].startswith(
            "execve ['sh', '-c', 'exit 3']"), ran
        joined = ran["stage-1, joins the container, forks the process"]
        assert f"setns /proc/{rt.state(cid)['pid']}/ns/mnt (mount)" in joined
    assert os.path.exists(f"/proc/{rt.state(cid)['pid']}")
