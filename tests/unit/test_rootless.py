"""The rootless decisions without a kernel: the default state root, who writes the id maps,
the "none" cgroup driver and what it refuses, sysfs as a bind, state-root denials."""

from __future__ import annotations

import errno
import os

import pytest

from ocirt import identity
from ocirt.container import plan
from ocirt.container.state import Store
from ocirt.errors import AccessError, ConfigError, UnsupportedError
from ocirt.linux import rootless, uidmap
from ocirt.linux.cgroups import Hierarchy, Manager
from ocirt.linux.cgroups import none as nonecg

HYBRID = [Hierarchy(1, "/sys/fs/cgroup/memory", frozenset({"memory"}), "/sys/fs/cgroup/memory"),
          Hierarchy(1, "/sys/fs/cgroup/cpu,cpuacct", frozenset({"cpu", "cpuacct"}),
                    "/sys/fs/cgroup/cpu,cpuacct/user"),
          Hierarchy(2, "/sys/fs/cgroup/unified", frozenset({"hugetlb"}),
                    "/sys/fs/cgroup/unified")]
SELF_CGROUP = "12:memory:/\n11:cpu,cpuacct:/user/shell\n0::/user/shell\n"


# --- the default state root -------------------------------------------------------------------

@pytest.mark.parametrize("euid, userns, env, expected", [
    (0, False, {"XDG_RUNTIME_DIR": "/run/user/0"}, "/run/ocirt"),
    (1000, False, {"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/ocirt"),
    (1000, False, {}, "/run/ocirt"),
    (0, True, {"XDG_RUNTIME_DIR": "/run/user/1000", "USER": "alice"}, "/run/user/1000/ocirt"),
    (0, True, {"XDG_RUNTIME_DIR": "/run/user/0", "USER": "root"}, "/run/ocirt"),
])
def test_default_root_follows_runcs_rule(monkeypatch, euid, userns, env, expected):
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr(rootless, "in_user_namespace", lambda: userns)
    for key in ("XDG_RUNTIME_DIR", "USER"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert rootless.default_root() == expected


def test_the_host_namespace_is_not_a_user_namespace():
    with open("/proc/self/uid_map") as handle:
        full = handle.read().split() == ["0", "0", "4294967295"]
    assert identity.in_user_namespace() is not full


# --- who writes the id maps -------------------------------------------------------------------

OWN = {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
       "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}
RANGE = {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1},
                         {"containerID": 1, "hostID": 100000, "size": 65536}],
         "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}


@pytest.fixture
def recorded(monkeypatch):
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(uidmap.namespaces, "write_id_maps",
                        lambda pid, linux: calls.append(("direct", sorted(linux))))
    monkeypatch.setattr(uidmap, "_deny_setgroups", lambda pid: calls.append(("deny", pid)))
    monkeypatch.setattr(uidmap, "_run_helper",
                        lambda helper, pid, entries, key, ranges: calls.append((helper, key)))
    return calls


def test_root_writes_every_map_itself(monkeypatch, recorded):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert uidmap.write(42, RANGE) == ["directly"]
    assert recorded == [("direct", ["gidMappings", "uidMappings"])]


def test_a_user_maps_its_own_ids_directly_denying_setgroups_first(monkeypatch, recorded):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    assert uidmap.write(42, OWN) == ["uid_map directly", "gid_map directly"]
    assert recorded == [("direct", ["uidMappings"]), ("deny", 42), ("direct", ["gidMappings"])]
    assert "after setgroups deny" in uidmap.describe(OWN)


def test_a_range_goes_through_the_helper(monkeypatch, recorded):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    assert uidmap.write(42, RANGE) == ["uid_map by newuidmap", "gid_map directly"]
    assert recorded[0] == ("newuidmap", "uidMappings")
    assert "newuidmap writes uid_map" in uidmap.describe(RANGE)


def test_another_users_single_id_needs_the_helper(monkeypatch, recorded):
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    uidmap.write(42, OWN)
    assert recorded[0] == ("newuidmap", "uidMappings")


def test_a_missing_helper_says_what_to_install(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, path=None: None)
    with pytest.raises(Exception) as err:
        uidmap._run_helper("newuidmap", 42, RANGE["uidMappings"], "uidMappings", "/etc/subuid")
    assert "apt-get install uidmap" in str(err.value)
    assert "linux.uidMappings" in str(err.value)


# --- the none cgroup driver -------------------------------------------------------------------

@pytest.mark.parametrize("resources, field", [
    ({"memory": {"limit": 1}}, "$.linux.resources.memory"),
    ({"cpu": {"cpus": "0"}}, "$.linux.resources.cpu"),
    ({"pids": {"limit": 5}}, "$.linux.resources.pids"),
    ({"blockIO": {"weight": 10}}, "$.linux.resources.blockIO"),
    ({"unified": {"memory.high": "1"}}, "$.linux.resources.unified['memory.high']"),
    ({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3}]},
     "$.linux.resources.devices[0]"),
])
def test_none_refuses_every_limit_naming_the_field(resources, field):
    manager = nonecg.NoneManager(HYBRID, "/sys/fs/cgroup/memory", SELF_CGROUP)
    with pytest.raises(ConfigError) as err:
        manager.steps(resources)
    assert err.value.where == field
    assert "rootless" in err.value.what and "/sys/fs/cgroup/memory" in err.value.what


def test_none_accepts_no_limits_and_device_rules_that_need_no_cgroup():
    manager = nonecg.NoneManager(HYBRID, "/x", SELF_CGROUP)
    resources = {"devices": [{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 3}],
                 "memory": {}, "hugepageLimits": [], "pids": {"limit": None}}
    steps = manager.steps(resources)
    assert len(steps) == 1 and steps[0].describe().startswith("no cgroup")
    assert manager.to_state() == {}
    assert manager.pids() == [] and not manager.frozen()
    manager.add(1)
    manager.destroy()


@pytest.mark.parametrize("call", ["freeze", "thaw", "stats"])
def test_none_says_why_pause_and_stats_cannot_work(call):
    manager = nonecg.NoneManager(HYBRID, "/sys/fs/cgroup/memory", SELF_CGROUP)
    with pytest.raises(UnsupportedError) as err:
        getattr(manager, call)()
    assert "no" in str(err.value) and "docs/rootless.md" in str(err.value)
    with pytest.raises(UnsupportedError):
        manager.update({"memory": {"limit": 1}})


def test_none_shows_the_callers_own_cgroups():
    manager = nonecg.NoneManager(HYBRID, "/x", SELF_CGROUP)
    assert manager.dirs == {"memory": "/sys/fs/cgroup/memory",
                            "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/user/shell",
                            "unified": "/sys/fs/cgroup/unified/user/shell"}


def test_choose_keeps_the_manager_for_root_and_for_a_delegated_cgroup(monkeypatch, tmp_path):
    manager = Manager([Hierarchy(2, str(tmp_path), frozenset(), str(tmp_path))], "ctr")
    assert nonecg.choose(manager, rootless=False) is manager
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    assert nonecg.choose(manager, rootless=True) is manager
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    chosen = nonecg.choose(manager, rootless=True)
    assert isinstance(chosen, nonecg.NoneManager)
    assert chosen.reason == str(tmp_path)


# --- sysfs, and the state root ----------------------------------------------------------------

def test_sysfs_becomes_a_recursive_bind_of_the_hosts_sys_keeping_its_flags():
    mount = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro", "size=1"]}
    assert plan._sysfs_as_bind(mount) == {
        "destination": "/sys", "type": "bind", "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}


@pytest.mark.parametrize("method, args", [("ids", ()), ("create", ("c1",)), ("lock", ("c1",)),
                                          ("load", ("c1",))])
def test_a_denied_state_root_is_one_clear_error(monkeypatch, tmp_path, method, args):
    def denied(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    for name in ("listdir", "makedirs", "open"):
        monkeypatch.setattr(os, name, denied)
    monkeypatch.setattr("builtins.open", denied)
    store = Store(str(tmp_path / "root"))
    with pytest.raises(AccessError) as err:
        getattr(store, method)(*args)
    text = str(err.value)
    assert "(EACCES)" in text and "--root" in text and str(tmp_path / "root") in text


def test_a_delegated_cgroup_leaves_the_device_controller_alone(monkeypatch, tmp_path):
    hierarchies = [Hierarchy(1, str(tmp_path), frozenset({"devices"}), str(tmp_path))]
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    manager = Manager(hierarchies, "ctr")
    chosen = nonecg.choose(manager, True, {"devices": [{"allow": False, "access": "rwm"}]})
    assert chosen is manager and manager.device_cgroup is False
    assert [op for _, op in manager.ops({}, [])] == []
    with pytest.raises(ConfigError) as err:
        nonecg.choose(Manager(hierarchies, "ctr"), True,
                      {"devices": [{"allow": False, "type": "b", "major": 8, "minor": 0}]})
    assert err.value.where == "$.linux.resources.devices[0]"
    assert "CAP_SYS_ADMIN" in err.value.what


def test_a_denial_no_layer_worded_is_still_one_line_not_an_internal_error(monkeypatch, capsys):
    from ocirt.cli import commands
    from ocirt.cli.table import COMMANDS

    def handler(store, globals_, values):
        raise PermissionError(errno.EACCES, "Permission denied", "/some/where")

    monkeypatch.setitem(commands.HANDLERS, "list", handler)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(identity, "_cached", None)
    command = COMMANDS["list"]
    code = commands.dispatch({"root": "/tmp/x"}, command, {})
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "internal error" not in err[0]
    assert err[0].startswith("ocirt: list: Permission denied (EACCES) on /some/where: uid ")
    assert "docs/rootless.md" in err[0]


def test_setgroups_is_tried_before_the_proc_file_is_believed(monkeypatch):
    """A container that mounts a fake /proc/self/setgroups ("deny") cannot make the runtime
    skip setgroups(2) and keep its own groups: the kernel is asked first."""
    from ocirt.linux import process

    setup = process.ProcessSetup({"args": ["true"], "user": {"uid": 0, "gid": 0}}, 0)
    calls = []
    monkeypatch.setattr(process, "_setgroups_denied", lambda: True)
    monkeypatch.setattr(os, "setgroups", lambda groups: calls.append(list(groups)))
    setup._set_groups()
    assert calls == [[]], "setgroups was called although the file says deny"

    def refused(groups):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "setgroups", refused)
    setup._set_groups()  # really denied, nothing asked: the user's groups stay
    setup.additional_gids = [5]
    with pytest.raises(Exception, match="additionalGids"):
        setup._set_groups()
    monkeypatch.setattr(process, "_setgroups_denied", lambda: False)
    setup.additional_gids = []
    with pytest.raises(PermissionError):
        setup._set_groups()
