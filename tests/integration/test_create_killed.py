"""A ``create`` killed with SIGKILL at any moment: ``state`` never says ``creating`` once the
runtime that was creating is dead, and ``delete --force`` removes everything it had made
(state directory, cgroups in every hierarchy, processes, mounts in the runtime's namespace).

The kill comes after a random delay, measured from the start of ``create`` or from the moment
its state directory appears, spread over the time a whole create takes here, so the tries land
all over it: before the state exists, among the cgroup directories (a third of the tries aim at
the first 20 ms after the state directory appears), while stage-1 or init is alone, after
``ready``. A bounded number of tries per test (``OCIRT_TEST_KILL_TRIES``, default
10; the seed is printed on failure and taken from ``OCIRT_TEST_SEED``);
``scripts/soak.py`` does the long randomized run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from testkit import mounts_under

from . import feature_support
from .support import (
    ROOT_MARKS,
    RUNTIME_CMD,
    assert_nothing_left,
    pid_alive,
    processes_with_token,
    requires_ocirt,
    wait_for,
)

# runc 1.1.5 passes the `state` half of these checks (it never says creating: it shows the
# container only once created) but leaves the cgroup directories of a killed create behind.
pytestmark = [*ROOT_MARKS, requires_ocirt]

TRIES = int(os.environ.get("OCIRT_TEST_KILL_TRIES", "10"))


def seed() -> int:
    return int(os.environ.get("OCIRT_TEST_SEED") or random.randrange(1 << 30))


def killed_create(rt, cid: str, bundle_path: Path, delay: float, from_state_dir: bool) -> None:
    """Start ``create``, SIGKILL it ``delay`` seconds later (counted from when its state
    directory exists if ``from_state_dir``), and reap it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(rt.argv("create", "--bundle", str(bundle_path), cid),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=rt.env)
        try:
            if from_state_dir:
                deadline = time.monotonic() + 5
                while (not rt.state_dir(cid).exists() and proc.poll() is None
                       and time.monotonic() < deadline):
                    time.sleep(0.0005)
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def check_state(rt, cid: str) -> str:
    """What ``state`` says: a status, or "absent" if the container does not exist (yet)."""
    result = rt("state", cid)
    assert "Traceback" not in result.stderr, result
    if result.returncode == 0:
        status: str = json.loads(result.stdout)["status"]
        return status
    assert "does not exist" in result.stderr, result
    return "absent"


def check_after_kill(rt, cid: str, where: str) -> str:
    """``state`` tells the truth about a container whose creator is dead; ``delete --force``
    removes all of it. Returns what ``state`` said."""
    said = check_state(rt, cid)
    assert said != "creating", f"{where}: `state` says creating, but the creator is dead"
    deleted = rt("delete", "--force", cid, timeout=20)
    assert deleted.returncode == 0, (where, deleted)
    assert_nothing_left(rt, cid)
    return said


def timed_create(rt, bundle_path: Path) -> tuple[float, float]:
    """How long a create takes here, and when its state directory appears (the faster of
    two, so a cold first run does not stretch the delays past the end)."""
    timings = []
    for _ in range(2):
        cid = rt.new_id("timing")
        with tempfile.TemporaryFile() as out:
            began = time.monotonic()
            proc = subprocess.Popen(rt.argv("create", "--bundle", str(bundle_path), cid),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=rt.env)
            while not rt.state_dir(cid).exists() and proc.poll() is None:
                time.sleep(0.0005)
            appeared = time.monotonic() - began
            assert proc.wait() == 0
            timings.append((time.monotonic() - began, appeared))
        rt.ok("delete", "--force", cid)
    return min(timings)


def kill_all_over(rt, bundle_path: Path, what: str) -> dict[str, int]:
    took, appeared = timed_create(rt, bundle_path)
    rng = random.Random(chosen := seed())
    seen: dict[str, int] = {}
    for attempt in range(TRIES):
        cid = rt.new_id("killed")
        # a third from exec, a third from the state dir on, a third in the first 20 ms after
        # it appears (the state is written and the cgroup directories are made then)
        from_state_dir = attempt % 3 != 0
        delay = rng.uniform(0, took if attempt % 3 == 0 else
                            took - appeared if attempt % 3 == 1 else min(0.02, took - appeared))
        killed_create(rt, cid, bundle_path, delay, from_state_dir)
        where = (f"{what}: try {attempt}, SIGKILL {delay * 1000:.1f} ms after "
                 f"{'the state dir appeared' if from_state_dir else 'exec'} (seed {chosen}, "
                 f"a create takes {took * 1000:.0f} ms, its state dir appears after "
                 f"{appeared * 1000:.0f} ms)")
        said = check_after_kill(rt, cid, where)
        seen[said] = seen.get(said, 0) + 1
    print(f"{what}: {TRIES} creates killed, then `state` said {seen} (seed {chosen})")
    return seen


def test_create_killed_at_random_moments(rt, make_config, bundle):
    config = make_config(["sleep", "100"], out=False)
    kill_all_over(rt, bundle(config), "default config")


def test_create_killed_at_random_moments_without_pid_namespace(rt, make_config, bundle):
    config = make_config(["sleep", "100"], out=False)
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "pid"]
    kill_all_over(rt, bundle(config), "no pid namespace")


holder_ns = feature_support.private_mount_ns
holder = feature_support.holder
nsrt = feature_support.ns_runtime


def test_create_killed_without_mount_namespace_leaves_no_mount(nsrt, holder, make_config,
                                                               bundle, private_rootfs):
    config = make_config(["sleep", "100"], out=False, rootfs_path=private_rootfs,
                         hostname=None)
    config["linux"]["namespaces"] = []
    kill_all_over(nsrt, bundle(config), "no mount namespace")
    # Only the rootfs counts: the holder's copies of other people's mounts under /tmp go
    # when they remove their mount points on the host.
    left = mounts_under(holder, private_rootfs)
    assert left == [], f"mounts left under the rootfs: {left}"


def test_creator_killed_in_a_prestart_hook_is_stopped(rt, make_config, bundle, tmp_path):
    """A deterministic point: the runtime is blocked in a prestart hook (init exists, in its
    cgroup, waiting) when it is killed. Once it is dead the container is stopped (and stays
    so), and delete --force removes it."""
    hook_pid = tmp_path / "hook.pid"
    config = make_config(["sleep", "100"], out=False)
    config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"echo $$ > {hook_pid}; exec sleep 60"]}]}
    cid = rt.new_id()
    pid = 0
    try:
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(rt.argv("create", "--bundle", str(bundle(config)), cid),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=rt.env)
            try:
                pid = int(wait_for(lambda: hook_pid.exists() and hook_pid.read_text().strip(),
                                   10, what="the prestart hook"))
                during = rt("state", cid)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        assert json.loads(during.stdout)["status"] == "creating", during
        for _ in range(2):  # stopped, and stays so
            said = check_state(rt, cid)
            assert said in ("stopped", "absent"), said
            time.sleep(0.2)
        rt.ok("delete", "--force", cid)
        assert_nothing_left(rt, cid)
    finally:
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# ocirt's CLI with a watcher (ocirt.linux.plan.watch) that SIGKILLs the runtime as soon as it
# has cloned init, and holds init back until then before its first step: the runtime is dead
# before init's prctl(PR_SET_PDEATHSIG), so no signal will ever come for it. Each step init
# begins is written to stderr.
KILLED_AFTER_CLONE = """
import os, signal, sys, time
from ocirt.linux import plan

RUNTIME = os.getpid()

class KillAfterClone:
    def phase(self, phase):
        pass

    def step(self, step):
        if os.getpid() != RUNTIME:
            if step.text.startswith("prctl(PR_SET_PDEATHSIG, SIGKILL)"):
                time.sleep(0.5)  # (the runtime is killed meanwhile)
            os.write(2, f"@init\\t{step.text}\\n".encode())
        step.action()
        if os.getpid() == RUNTIME and step.text.startswith("clone3("):
            os.kill(RUNTIME, signal.SIGKILL)

plan.watch(KillAfterClone())
sys.argv[0] = "ocirt"
from ocirt.cli import main
main()
"""


def test_runtime_killed_before_init_set_pdeathsig(rt, make_config, bundle):
    """Without stage-1 the runtime clones init, whose parent is then outside its pid namespace
    (getppid() is 0): a runtime that died before init's prctl(PR_SET_PDEATHSIG) shows as its
    end of the sync channel hung up, and init exits at that first step, before it joins the
    cgroups or mounts anything; delete --force removes the rest."""
    config = make_config(["sleep", "100"], out=False)
    cid = rt.new_id("killed")
    path = bundle(config)
    assert "clone3(" in rt.ok("create", "--explain", "--bundle", str(path), cid).stdout
    argv = [RUNTIME_CMD[0], "-c", KILLED_AFTER_CLONE, "--root", str(rt.root),
            "create", "--bundle", str(path), cid]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, env=rt.env, timeout=30, check=False)
        assert proc.returncode == -signal.SIGKILL
        wait_for(lambda: not processes_with_token(rt.token), 5, what="init to exit")
        err.seek(0)
        began = [line.split("\t", 1)[1] for line in err.read().decode().splitlines()
                 if line.startswith("@init\t")]
    assert len(began) == 1 and began[0].startswith("prctl(PR_SET_PDEATHSIG, SIGKILL)"), began
    check_after_kill(rt, cid, "killed right after clone3")
