"""The recording double of the binding layer, on building blocks: the calls a plan's steps
make (and which Step made each), without root and without touching the kernel."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from ocirt.config.default import default_spec
from ocirt.container import plan as planning
from ocirt.errors import SyscallError
from ocirt.linux import capabilities, plan
from ocirt.linux import syscalls as sc
from ocirt.linux.syscalls import capng
from ocirt.linux.syscalls.double import RecordingError


def _plan(tmp_path: Path, **changes: Any) -> planning.ContainerPlan:
    (tmp_path / "rootfs").mkdir()
    config = default_spec()
    config["hostname"] = "planned"
    config.update(changes)
    return planning.build("d1", str(tmp_path), config, planning.Options())


def test_the_double_swaps_every_binding_and_puts_them_back() -> None:
    real_mount, real_apply = sc.mount, capng.apply_sets
    with sc.recording() as calls:
        assert sc.mount is not real_mount and capng.apply_sets is not real_apply
        sc.mount("proc", "/nowhere/proc", "proc", sc.MS_NOSUID)  # recorded, not made
        sc.umount2("/nowhere", sc.MNT_DETACH)
    assert sc.mount is real_mount and capng.apply_sets is real_apply
    assert calls.names() == ["mount", "umount2"]
    assert calls[0].args == ("proc", "/nowhere/proc", "proc", sc.MS_NOSUID)
    assert repr(calls[1]) == "umount2('/nowhere', 2)"
    assert calls[0].step is None  # made outside any Step


def test_results_values_functions_and_errors() -> None:
    failure = SyscallError("mount(None, '/x', None, 0x4000)", errno.EPERM)
    with sc.recording({"prctl": 1, "fstatfs_type": lambda fd: 0xEF53,
                       "mount": failure}) as calls:
        assert sc.prctl(sc.PR_SET_DUMPABLE) == 1
        assert sc.fstatfs_type(5) == 0xEF53
        with pytest.raises(PermissionError, match="EPERM"):
            sc.mount(None, "/x", None, sc.MS_REC)
        with pytest.raises(RecordingError, match="clone3"):
            sc.clone3(sc.CLONE_NEWPID, 3)
    assert calls.names() == ["prctl", "fstatfs_type", "mount", "clone3"]


def test_descriptors_the_double_made_are_closed_after() -> None:
    with sc.recording() as calls:
        fd = sc.open_tree("/proc", recursive=False)
        assert os.path.samestat(os.fstat(fd), os.stat("/proc"))
    assert calls.names() == ["open_tree"]
    with pytest.raises(OSError):
        os.fstat(fd)


def test_mount_steps_mount_inside_the_rootfs_each_call_in_its_step(tmp_path: Path) -> None:
    os.symlink("/etc", tmp_path / "escape")
    (tmp_path / "rootfs").mkdir()
    os.symlink("/etc", tmp_path / "rootfs" / "escape")
    config = default_spec()
    config["mounts"] = [{"destination": "/escape/inner", "type": "tmpfs", "source": "tmpfs",
                         "options": ["nosuid", "size=1k"]}]
    built = planning.build("d1", str(tmp_path), config, planning.Options())
    targets: list[str] = []

    def mount(source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        # what the magic link named when the call was made (the fd is closed after)
        targets.append(os.readlink(target) if "/fd/" in target else target)

    with sc.recording({"mount": mount}) as calls:
        plan.run_all(built.mount_steps)
    # no call was made outside a step, and each step's calls are attributed to it
    assert all(call.step in built.mount_steps for call in calls)
    inner = [s for s in built.mount_steps if "on /escape/inner" in s.describe()]
    (call,) = [c for c in calls.of("mount") if c.step is inner[0]]
    assert call.args[0] == "tmpfs" and call.args[2:] == ("tmpfs", sc.MS_NOSUID, "size=1k")
    # the symlink resolved inside the rootfs: the host's /etc was never the target
    assert str(tmp_path / "rootfs" / "etc" / "inner") in targets
    assert not os.path.exists("/etc/inner")
    assert {name for _, names in calls.by_step() for name in names} <= {
        "mount", "openat2", "fstatfs_type", "open_tree", "move_mount", "mount_setattr",
        "fsmount_new", "os.mknod", "os.chown", "os.chdir", "os.fchdir"}
    # the device nodes were recorded, not made (a plain file stands in for each); without
    # root the runtime binds the host's node onto an empty file instead of making one
    (null,) = [c for c in calls.of("os.mknod") if c.args[0] == "null"]
    assert null.args[2:] == ((os.makedev(1, 3),) if os.geteuid() == 0 else ())


def test_pivot_root_then_the_old_root_is_made_rslave_and_detached(tmp_path: Path) -> None:
    built = _plan(tmp_path)
    (pivot,) = [s for s in built.root_steps if s.describe().startswith("pivot_root")]
    cwd = os.getcwd()
    try:
        with sc.recording() as calls:
            pivot.run()
    finally:
        os.chdir(cwd)
    old_root = calls.of("os.fchdir")[0].args[0]
    assert [repr(c) for c in calls] == [
        f"os.chdir({str(tmp_path / 'rootfs')!r})",
        "pivot_root('.', '.')",
        f"os.fchdir({old_root})",  # stand on the old root
        f"mount(None, '.', None, {sc.MS_SLAVE | sc.MS_REC})",
        f"umount2('.', {sc.MNT_DETACH})",
        "os.chdir('/')"]
    assert all(c.step is pivot for c in calls)


def test_hostname_domainname_and_process_attributes(tmp_path: Path) -> None:
    built = _plan(tmp_path, domainname="example.org")
    steps = [s for s in built.root_steps if s.describe().startswith(("sethostname",
                                                                     "setdomainname"))]
    from ocirt.linux import process_attrs

    steps += process_attrs.personality_steps({"personality": {"domain": "LINUX32"}})
    steps += process_attrs.process_steps({"ioPriority": {"class": "IOPRIO_CLASS_IDLE",
                                                         "priority": 7}})
    with sc.recording() as calls:
        plan.run_all(steps)  # the steps were built before: they still reach the double
    assert [repr(c) for c in calls] == ["sethostname('planned')",
                                        "setdomainname('example.org')",
                                        "personality(8)", "ioprio_set(3, 7)"]
    assert [c.step for c in calls] == steps


def test_capabilities_are_set_through_libcap_ng_then_ambient_raised() -> None:
    sets = {"bounding": [0, 5, 21], "effective": [5], "permitted": [5, 12],
            "inheritable": [12], "ambient": [5, 12]}
    with sc.recording() as calls:
        numbers = capabilities.resolve({"bounding": ["CAP_CHOWN", "CAP_KILL"]})
        capabilities.drop_bounding(sets)
        capabilities.apply_sets(sets)
    assert numbers["bounding"] == [0, 5]
    assert calls.names() == ["capng.load", "capng.name_to_capability",
                             "capng.name_to_capability", "capng.apply_sets",
                             "capng.apply_sets", "prctl", "prctl"]
    bounding, caps = calls.of("capng.apply_sets")
    assert bounding.args == (capng.CAPNG_SELECT_BOUNDS, {capng.CAPNG_BOUNDING_SET: [0, 5, 21]})
    assert caps.args == (capng.CAPNG_SELECT_CAPS, {capng.CAPNG_EFFECTIVE: [5],
                                                   capng.CAPNG_PERMITTED: [5, 12],
                                                   capng.CAPNG_INHERITABLE: [12]})
    clear, raise_ = calls.of("prctl")
    assert clear.args == (sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    assert raise_.args == (sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, 12)  # 5 not inheritable


def test_seccomp_compiled_and_loaded(tmp_path: Path) -> None:
    from ocirt.linux.seccomp import SeccompFilter

    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
               "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ALLOW",
                             "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]}]}
    f = SeccompFilter(profile)
    with sc.recording() as calls:
        f.prepare(str(tmp_path / "cache"))  # a cache miss: compiled by the (recorded) libseccomp
        f.load()
    names = calls.names()
    assert names[names.index("seccomp.new_filter"):] == [
        "seccomp.new_filter", "seccomp.Filter.add_arch", "seccomp.resolve_name",
        "seccomp.Filter.add_rule", "seccomp.Filter.export", "seccomp.install_filter"]
    (rule,) = calls.of("seccomp.Filter.add_rule")
    assert rule.args[2] == [(0, 4, 7, 0)]  # index 0, SCMP_CMP_EQ, 7
    (install,) = calls.of("seccomp.install_filter")
    assert install.args == (f.bpf, f.flags())


def test_a_step_inside_a_step_is_noted_then_the_outer_again() -> None:
    inner = plan.Step("inner", lambda: sc.unshare(sc.CLONE_NEWUTS))
    outer = plan.Step("outer", lambda: (sc.prctl(sc.PR_SET_DUMPABLE), inner.run(),
                                        sc.sethostname("x")))
    with sc.recording() as calls:
        outer.run()
    assert [(c.name, c.step) for c in calls] == [("prctl", outer), ("unshare", inner),
                                                 ("sethostname", outer)]
    assert plan.current_step is None
    assert calls.by_step() == [(outer, ["prctl"]), (inner, ["unshare"]),
                               (outer, ["sethostname"])]


def test_process_changes_are_recorded_not_made() -> None:
    from ocirt.linux.syscalls.double import Stopped

    uid, gid, groups = os.getuid(), os.getgid(), os.getgroups()
    with sc.recording({"os.fork": 4242}) as calls:
        assert os.fork() == 4242  # the parent's side, as given
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        with pytest.raises(Stopped) as stop:
            os.execve("/bin/true", ["true"], {})
    assert (os.getuid(), os.getgid(), os.getgroups()) == (uid, gid, groups)
    assert calls.names() == ["os.fork", "os.setgroups", "os.setresgid", "os.setresuid",
                             "os.execve"]
    assert stop.value.call is calls[-1] and calls[-1].args[0] == "/bin/true"
    assert os.setresuid.__module__ == "posix"  # put back
