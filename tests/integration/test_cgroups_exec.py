"""Where exec puts its process, and killing a whole container, on cgroup v1/hybrid (this host)
and pure v2 (the VM lane):

- ``exec --cgroup`` (runc 1.1): into an existing sub-cgroup of the container's; on v1 per
  controller (``cpu,memory:sub``, repeatable) or one plain path for every hierarchy; a missing
  or escaping sub-cgroup is an error that leaves no process behind. Proven with runc 1.1.5,
  except the argument checks runc added later (1.5 refuses a controller given twice or an
  empty one; 1.1.5 takes the last or the plain path) and v2's refusal of ``controller:``.
- v2: exec's process is born in the cgroup (clone3 CLONE_INTO_CGROUP, runc 1.4), and falls
  back to a cgroup.procs write when clone3 is refused (here by a seccomp filter, as some
  sandboxes do); ``kill --all KILL`` and ``delete --force`` go through cgroup.kill (runc 1.2).
  Which path ocirt took is read from its --debug log; what happened is read from the kernel.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from .cgroup_support import SLOW, V2, cgroup_dir, requires_v1, requires_v2, start, wait_file
from .support import IS_OCIRT, ROOT_MARKS, pid_alive, requires_ocirt, wait_for

pytestmark = ROOT_MARKS


def container_dirs(pid: int, cid: str) -> dict[str, Path]:
    """controllers ('' for v2) -> the container's own directory, from /proc/<pid>/cgroup."""
    result = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, _ = line.split(":", 2)
        directory = cgroup_dir(pid, controllers.split(",")[0])
        if cid in str(directory):
            result[controllers] = directory
    assert result, f"no cgroup of {cid}"
    return result


def exec_detached(rt, cid, tmp_path, *options, name="exec", **kwargs):
    pid_file = tmp_path / f"{name}.pid"
    rt.ok("exec", "-d", "--pid-file", str(pid_file), *options, cid, "sleep", "100",
          timeout=10 * SLOW, **kwargs)
    return int(pid_file.read_text())


def only_init_left(rt, c) -> None:
    wait_for(lambda: json.loads(rt.ok("ps", "--format", "json", c.cid,
                                      timeout=10 * SLOW).stdout) == [c.pid],
             10 * SLOW, what="only init in the container")


# --- exec --cgroup ----------------------------------------------------------------------------

def test_exec_into_a_sub_cgroup_of_every_hierarchy(rt, make_config, bundle, tmp_path):
    c = start(rt, make_config, bundle)
    dirs = container_dirs(c.pid, c.cid)
    for controllers, directory in dirs.items():
        (directory / "sub").mkdir()
        if "cpuset" in controllers.split(","):  # a v1 cpuset starts empty: fill it
            for name in ("cpuset.cpus", "cpuset.mems"):
                (directory / "sub" / name).write_text((directory / name).read_text())
    pid = exec_detached(rt, c.cid, tmp_path, "--cgroup", "sub")
    for controllers, directory in dirs.items():
        assert cgroup_dir(pid, controllers.split(",")[0]) == directory / "sub", controllers
    # delete --force ends it and removes the sub-cgroups with the container's (the host
    # guard checks no cgroup named after the container is left)


@requires_v1
def test_exec_per_controller(rt, make_config, bundle, tmp_path):
    c = start(rt, make_config, bundle)
    dirs = container_dirs(c.pid, c.cid)
    for controller in ("cpu", "memory", "pids"):
        (cgroup_dir(c.pid, controller) / "a").mkdir()
    (cgroup_dir(c.pid, "pids") / "b").mkdir()
    pid = exec_detached(rt, c.cid, tmp_path, "--cgroup", "cpu,memory:a", "--cgroup", "pids:b")
    assert cgroup_dir(pid, "cpu") == cgroup_dir(c.pid, "cpu") / "a"
    assert cgroup_dir(pid, "memory") == cgroup_dir(c.pid, "memory") / "a"
    assert cgroup_dir(pid, "pids") == cgroup_dir(c.pid, "pids") / "b"
    for controllers, directory in dirs.items():  # the others: the container's own
        if not {"cpu", "memory", "pids"} & set(controllers.split(",")):
            assert cgroup_dir(pid, controllers.split(",")[0]) == directory, controllers


@pytest.mark.parametrize("args", [["nosub"], ["../escape"], ["a", "b"]] + (
    [] if V2 else [["cpu:nosub"], ["nosuchcontroller:x"]]),
    ids=lambda args: " ".join(args))
def test_exec_cgroup_errors(rt, make_config, bundle, args):
    c = start(rt, make_config, bundle)
    (cgroup_dir(c.pid, "cpu") / "escape").mkdir()  # exists, but not below the container's
    try:
        options = [word for arg in args for word in ("--cgroup", arg)]
        result = rt.fails("exec", *options, c.cid, "true", timeout=10 * SLOW)
        only_init_left(rt, c)
    finally:
        (cgroup_dir(c.pid, "cpu") / "escape").rmdir()
    if IS_OCIRT:
        expected = {"nosub": "does not exist", "../escape": "leaves the container's cgroup",
                    "a": "missing <controller>: prefix", "cpu:nosub": "does not exist",
                    "nosuchcontroller:x": "unknown controller"}[args[0]]
        assert expected in result.stderr, result


@requires_ocirt  # runc 1.5 refuses these too; 1.1.5 takes the last path, or no controller
@pytest.mark.parametrize("args,expected", [
    (["cpu:a", "cpu:b"], "controller cpu specified multiple times"),
    ([":a"], "empty <controller> prefix"),
])
def test_exec_cgroup_argument_checks(rt, make_config, bundle, args, expected):
    c = start(rt, make_config, bundle)
    options = [word for arg in args for word in ("--cgroup", arg)]
    assert expected in rt.fails("exec", *options, c.cid, "true", timeout=10 * SLOW).stderr
    only_init_left(rt, c)


@requires_v2
@requires_ocirt  # runc ignores a controller: prefix on v2 and joins the container's cgroup
def test_exec_cgroup_v2_takes_a_plain_path(rt, make_config, bundle):
    c = start(rt, make_config, bundle)
    (cgroup_dir(c.pid, "") / "sub").mkdir()
    result = rt.fails("exec", "--cgroup", "memory:sub", c.cid, "true", timeout=10 * SLOW)
    assert "cgroup v2 takes a plain path" in result.stderr
    only_init_left(rt, c)


# --- clone3(CLONE_INTO_CGROUP) ----------------------------------------------------------------

def _refuse_clone3():
    """A preexec_fn: the runtime runs under a seccomp filter that fails clone3 with ENOSYS."""
    import pyseccomp

    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.load()


@requires_v2
@pytest.mark.parametrize("clone3", ["allowed", "refused"])
def test_exec_is_born_in_the_cgroup(rt, make_config, bundle, tmp_path, clone3):
    c = start(rt, make_config, bundle)
    log = tmp_path / "ocirt.log"
    pid = exec_detached(rt, c.cid, tmp_path, global_opts=["--debug", "--log", str(log)],
                        preexec_fn=_refuse_clone3 if clone3 == "refused" else None)
    assert cgroup_dir(pid, "") == cgroup_dir(c.pid, "")
    if IS_OCIRT:
        text = log.read_text()
        if clone3 == "allowed":
            assert "(clone3 CLONE_INTO_CGROUP)" in text, text
        else:
            assert "from a plain fork (clone3 CLONE_INTO_CGROUP refused)" in text, text


# --- killing all through cgroup.kill ----------------------------------------------------------

FAMILY = "for i in 1 2 3; do sleep 1000 & done; echo $! > /out/last; while :; do sleep 0.1; done"


@pytest.mark.parametrize("how", ["kill --all", "delete --force"])
def test_sigkill_reaches_every_process(rt, make_config, bundle, out_dir, tmp_path, how):
    c = start(rt, make_config, bundle, args=["sh", "-c", FAMILY])
    wait_file(out_dir / "last")
    pids = json.loads(rt.ok("ps", "--format", "json", c.cid, timeout=10 * SLOW).stdout)
    assert len(pids) >= 4, pids
    has_cgroup_kill = V2 and (cgroup_dir(c.pid, "") / "cgroup.kill").exists()
    log = tmp_path / "ocirt.log"
    opts = ["--debug", "--log", str(log)] if IS_OCIRT else []
    if how == "kill --all":
        rt.ok("kill", "--all", c.cid, "KILL", global_opts=opts, timeout=10 * SLOW)
        rt.wait_status(c.cid, "stopped", timeout=5 * SLOW)
    else:
        rt.ok("delete", "--force", c.cid, global_opts=opts, timeout=15 * SLOW)
    wait_for(lambda: not any(pid_alive(p) for p in pids), 5 * SLOW,
             what="every process of the container to die")
    if IS_OCIRT:
        used = "cgroup.kill" in (log.read_text() if log.exists() else "")
        assert used is has_cgroup_kill, "cgroup.kill used exactly where there is one"
