"""exec's placement and affinity inputs, without root: ``--cgroup`` forms (runc's
getSubCgroupPaths), the directories they name in a manager's hierarchies (temporary directories
stand for the cgroup mounts), and execCPUAffinity's CPU lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocirt.errors import ConfigError, OcirtError
from ocirt.linux import affinity
from ocirt.linux.cgroups import Hierarchy, Manager, placement


def test_sub_paths_forms() -> None:
    assert placement.sub_paths([]) == {}
    assert placement.sub_paths(["a/b"]) == {"": "a/b"}
    assert placement.sub_paths(["cpu,memory:a", "pids:b"]) == {
        "cpu": "a", "memory": "a", "pids": "b"}
    for bad, why in ((["a", "b"], "missing <controller>"), ([":a"], "empty <controller>"),
                     (["cpu:a", "cpu,memory:b"], "cpu specified multiple times")):
        with pytest.raises(OcirtError, match=why):
            placement.sub_paths(bad)


def _manager(tmp_path: Path, v2: bool) -> Manager:
    hierarchies = ([Hierarchy(2, str(tmp_path / "unified"), frozenset({"cpu", "memory"}),
                              str(tmp_path / "unified"))] if v2 else
                   [Hierarchy(1, str(tmp_path / name), frozenset(name.split(",")),
                              str(tmp_path / name)) for name in ("cpu,cpuacct", "memory")])
    manager = Manager(hierarchies, "/ctr")
    for directory in manager.dirs.values():
        Path(directory, "sub").mkdir(parents=True)
    return manager


def test_exec_dirs_v1(tmp_path: Path) -> None:
    manager = _manager(tmp_path, v2=False)
    base = dict(manager.dirs)
    assert placement.exec_dirs(manager, {}) == base
    assert placement.exec_dirs(manager, {"": "sub"}) == {k: f"{v}/sub" for k, v in base.items()}
    assert placement.exec_dirs(manager, {"cpuacct": "/sub"}) == {
        "cpu,cpuacct": f"{base['cpu,cpuacct']}/sub", "memory": base["memory"]}
    for subs, why in (({"memory": "nope"}, "does not exist"),
                      ({"": "../ctr2"}, "leaves the container's cgroup"),
                      ({"blkio": "sub"}, "unknown controller 'blkio'"),
                      ({"cpu": "sub", "cpuacct": "other"}, "different paths")):
        with pytest.raises(OcirtError, match=why):
            placement.exec_dirs(manager, subs)


def test_exec_dirs_v2(tmp_path: Path) -> None:
    manager = _manager(tmp_path, v2=True)
    assert placement.exec_dirs(manager, {"": "sub"}) == {
        "unified": f"{manager.dirs['unified']}/sub"}
    with pytest.raises(OcirtError, match="plain path"):
        placement.exec_dirs(manager, {"memory": "sub"})


def test_cpu_lists() -> None:
    mask = affinity.parse("0-2, 9,,", "$.x")
    assert mask is not None and mask.mask == bytes([0b111, 0b10, 0, 0, 0, 0, 0, 0])
    assert affinity.parse("", "$.x") is None and affinity.parse(None, "$.x") is None
    for bad in ("a", "3-1", ",", "-1", "70000"):
        with pytest.raises(ConfigError, match=r"\$\.process\.execCPUAffinity\.final"):
            affinity.parse(bad, "$.process.execCPUAffinity.final")
