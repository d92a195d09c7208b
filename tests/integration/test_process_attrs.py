"""Process attributes seen from the host: rlimits, oomScoreAdj, umask, additional groups, I/O
priority and scheduler; a hard limit above the caller's is refused with a clear message."""

from __future__ import annotations

import os
import resource

import pytest

from . import feature_support
from .feature_support import (
    ioprio_get,
    limits_of,
    started,
    status_of,
)
from .support import ROOT_MARKS, assert_nothing_left, requires_ocirt

pytestmark = ROOT_MARKS
# Fixtures of feature_support, used by name below.
background = feature_support.background


CAP_SYS_RESOURCE = 24
IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE = 2, 3
RLIMIT_NAMES = {"RLIMIT_NOFILE": "Max open files", "RLIMIT_NPROC": "Max processes",
                "RLIMIT_MSGQUEUE": "Max msgqueue size", "RLIMIT_CORE": "Max core file size",
                "RLIMIT_STACK": "Max stack size"}


def has_cap_sys_resource():
    return bool(int(status_of("self")["CapEff"][0], 16) & (1 << CAP_SYS_RESOURCE))


def below_hard(name, wanted):
    """``wanted`` or less: a value under the caller's hard limit (which we cannot raise)."""
    hard = resource.getrlimit(getattr(resource, name))[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def sleeper(rt, make_config, bundle, **overrides):
    return started(rt, bundle, make_config(["sleep", "100"], **overrides))


def test_rlimits_from_outside(rt, make_config, bundle):
    wanted = {name: (below_hard(name, soft), below_hard(name, hard))
              for name, soft, hard in (("RLIMIT_NOFILE", 1000, 1001),
                                       ("RLIMIT_NPROC", 500, 600),
                                       ("RLIMIT_MSGQUEUE", 1024, 2048),
                                       ("RLIMIT_CORE", 0, 4096))}
    rlimits = [{"type": name, "soft": soft, "hard": hard}
               for name, (soft, hard) in wanted.items()]
    cid, pid = sleeper(rt, make_config, bundle, process__rlimits=rlimits)
    limits = limits_of(pid)
    for name, (soft, hard) in wanted.items():
        assert limits[RLIMIT_NAMES[name]] == (str(soft), str(hard)), name
    # An exec'd process gets the same limits (they are part of the container's process).
    inside = rt.ok("exec", cid, "sh", "-c", "ulimit -Sn; ulimit -Hn").stdout.split()
    assert inside == [str(x) for x in wanted["RLIMIT_NOFILE"]]


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_CORE)[1] != resource.RLIM_INFINITY,
                    reason="needs an unlimited hard RLIMIT_CORE to ask for it")
def test_unlimited_rlimit(rt, make_config, bundle):
    """2**64 - 1 (the largest uint64 the schema allows) is RLIM_INFINITY, as for runc."""
    unlimited = 2**64 - 1
    _, pid = sleeper(rt, make_config, bundle, process__rlimits=[
        {"type": "RLIMIT_CORE", "soft": unlimited, "hard": unlimited}])
    assert limits_of(pid)["Max core file size"] == ("unlimited", "unlimited")


def test_unset_rlimits_are_inherited(rt, make_config, bundle):
    _, pid = sleeper(rt, make_config, bundle, process__rlimits=None)
    theirs, ours = limits_of(pid), limits_of("self")
    for name in ("Max processes", "Max stack size", "Max open files"):
        assert theirs[name] == ours[name], name


@pytest.mark.skipif(has_cap_sys_resource(), reason="with CAP_SYS_RESOURCE root may raise it")
def test_raising_a_hard_limit_fails(rt, make_config, bundle):
    current = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = current[1] + 1
    cid = rt.new_id()
    config = make_config(["true"], process__rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": current[0], "hard": hard}])
    rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert_nothing_left(rt, cid)


@requires_ocirt
@pytest.mark.skipif(has_cap_sys_resource(), reason="with CAP_SYS_RESOURCE root may raise it")
def test_raising_a_hard_limit_message(rt, make_config, bundle):
    current = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = current[1] + 1
    cid = rt.new_id()
    config = make_config(["true"], process__rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": 64, "hard": hard}])
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    for part in ("RLIMIT_NOFILE", str(hard), str(current[1]), "CAP_SYS_RESOURCE"):
        assert part in result.stderr, (part, result)
    assert_nothing_left(rt, cid)


def test_oom_score_adj(rt, make_config, bundle):
    _, pid = sleeper(rt, make_config, bundle, process__oomScoreAdj=543)
    with open(f"/proc/{pid}/oom_score_adj") as handle:
        assert handle.read().strip() == "543"


def test_exec_gets_oom_score_adj(rt, make_config, bundle, tmp_path, background):
    cid, _ = sleeper(rt, make_config, bundle, process__oomScoreAdj=321)
    pid = background.exec(cid, tmp_path)
    with open(f"/proc/{pid}/oom_score_adj") as handle:
        assert handle.read().strip() == "321"


def test_umask(rt, make_config, bundle):
    user = {"uid": 0, "gid": 0, "umask": 0o027}
    _, pid = sleeper(rt, make_config, bundle, process__user=user)
    assert status_of(pid)["Umask"] == ["0027"]


def test_additional_gids(rt, make_config, bundle):
    user = {"uid": 1000, "gid": 1000, "additionalGids": [5, 44, 1000, 30000]}
    _, pid = sleeper(rt, make_config, bundle, process__user=user)
    fields = status_of(pid)
    assert fields["Uid"] == ["1000"] * 4
    assert fields["Gid"] == ["1000"] * 4
    assert sorted(map(int, fields["Groups"])) == [5, 44, 1000, 30000]


@requires_ocirt  # runc 1.1 has no process.ioPriority
@pytest.mark.parametrize("ioclass,number,level", [("IOPRIO_CLASS_BE", IOPRIO_CLASS_BE, 6),
                                                  ("IOPRIO_CLASS_IDLE", IOPRIO_CLASS_IDLE, 0)])
def test_io_priority(rt, make_config, bundle, ioclass, number, level):
    _, pid = sleeper(rt, make_config, bundle,
                     process__ioPriority={"class": ioclass, "priority": level})
    assert ioprio_get(pid) == (number, level)


@requires_ocirt
def test_exec_gets_io_priority_and_scheduler(rt, make_config, bundle, tmp_path, background):
    """exec runs the container's process object: its ioPriority and scheduler too."""
    config = make_config(["sleep", "100"],
                         process__ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 3},
                         process__scheduler={"policy": "SCHED_BATCH", "nice": 4})
    cid, _ = started(rt, bundle, config)
    pid = background.exec(cid, tmp_path)
    assert ioprio_get(pid) == (IOPRIO_CLASS_BE, 3)
    assert os.sched_getscheduler(pid) == os.SCHED_BATCH
    assert os.getpriority(os.PRIO_PROCESS, pid) == 4


@requires_ocirt  # runc 1.1 has no process.scheduler
def test_scheduler_batch_and_nice(rt, make_config, bundle):
    _, pid = sleeper(rt, make_config, bundle,
                     process__scheduler={"policy": "SCHED_BATCH", "nice": 7})
    assert os.sched_getscheduler(pid) == os.SCHED_BATCH
    assert os.getpriority(os.PRIO_PROCESS, pid) == 7


@requires_ocirt
def test_scheduler_idle(rt, make_config, bundle):
    _, pid = sleeper(rt, make_config, bundle, process__scheduler={"policy": "SCHED_IDLE"})
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE


def test_default_scheduler_is_the_hosts(rt, make_config, bundle):
    _, pid = sleeper(rt, make_config, bundle)
    assert os.sched_getscheduler(pid) == os.sched_getscheduler(0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
