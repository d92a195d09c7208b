"""The plan built from a config, checked without root: its steps, and the mount(2) calls the
mount steps make, recorded by a fake in place of the syscall."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ocirt.config.default import default_spec
from ocirt.container import plan as planning
from ocirt.errors import ConfigError
from ocirt.linux import syscalls as sc


def _bundle(tmp_path: Path, **changes: Any) -> tuple[str, dict[str, Any]]:
    (tmp_path / "rootfs").mkdir()
    config = default_spec()
    config["hostname"] = "planned"
    config.update(changes)
    return str(tmp_path), config


def test_explain_lists_every_phase(tmp_path: Path) -> None:
    bundle, config = _bundle(tmp_path)
    config["linux"]["resources"] = {"memory": {"limit": 1 << 20}}
    text = planning.build("p1", bundle, config, planning.Options()).explain()
    for expected in (
        "mount --make-rslave /",
        "mount proc on /proc type proc",
        "pivot_root",
        "sethostname 'planned'",
        "mask /proc/kcore",
        "remount / read-only",
        "clone3(CLONE_NEWPID",  # (direct: no user namespace, nothing joined)
        "CLONE_NEWNET",
        "1048576",
        "setresuid 0",
        "execve ['sh']",
    ):
        assert expected in text, expected


def test_no_pivot_and_no_mount_namespace(tmp_path: Path) -> None:
    bundle, config = _bundle(tmp_path)
    text = planning.build("p1", bundle, config, planning.Options(no_pivot=True)).explain()
    assert "mount --move" in text and "pivot_root" not in text
    config["linux"]["namespaces"] = [
        n for n in config["linux"]["namespaces"] if n["type"] != "mount"
    ]
    # the runtime's mount namespace: no propagation change, chroot (even with --no-pivot),
    # and the mounts are said to be in the runtime's namespace
    text = planning.build("p1", bundle, config, planning.Options(no_pivot=True)).explain()
    assert "chroot" in text and "pivot_root /" not in text and "--move" not in text
    assert "make-rslave" not in text and "runtime's mount namespace" in text
    assert f"mount --rbind {os.path.realpath(bundle)}/rootfs" in text  # read-only root
    config["linux"]["rootfsPropagation"] = "private"
    with pytest.raises(ConfigError, match=r"\$\.linux\.rootfsPropagation"):
        planning.build("p1", bundle, config, planning.Options())


def test_hostname_needs_uts_namespace(tmp_path: Path) -> None:
    bundle, config = _bundle(tmp_path)
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "uts"]
    with pytest.raises(ConfigError, match=r"\$\.hostname"):
        planning.build("p1", bundle, config, planning.Options())


def test_unknown_capability_is_an_error(tmp_path: Path) -> None:
    bundle, config = _bundle(tmp_path)
    config["process"]["capabilities"]["bounding"].append("CAP_NOT_A_THING")
    with pytest.raises(ConfigError, match=r"bounding\[\d+\]: unknown capability"):
        planning.build("p1", bundle, config, planning.Options())


def test_mount_steps_call_mount_inside_the_rootfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, config = _bundle(tmp_path)
    os.symlink("/etc", tmp_path / "rootfs" / "escape")
    config["mounts"] = [
        {
            "destination": "/escape/inner",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "size=1k"],
        }
    ]
    calls: list[tuple[Any, ...]] = []

    def fake_mount(
        source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
    ) -> None:
        calls.append(
            (
                source,
                os.readlink(target) if target.startswith(("/proc/self/fd/", "thread-self/fd/"))
                else target,
                fstype,
                flags,
                data,
            )
        )

    monkeypatch.setattr(sc, "mount", fake_mount)
    plan = planning.build("p1", bundle, config, planning.Options())
    for step in plan.mount_steps:
        if "on /escape/inner" in step.describe():
            step.run()
    ((source, target, fstype, flags, data),) = calls
    assert source == "tmpfs"
    # The symlink was resolved inside the rootfs: the host's /etc was not touched.
    assert target == str(tmp_path / "rootfs" / "etc" / "inner")
    assert not os.path.exists("/etc/inner")
    assert (fstype, flags, data) == ("tmpfs", sc.MS_NOSUID, "size=1k")


def test_node_lists_and_memory_policy_plan(tmp_path: Path) -> None:
    from ocirt.linux import process_attrs

    assert process_attrs.parse_node_list("0-3,7, 2", "$.x") == [0, 1, 2, 3, 7]
    assert process_attrs.parse_node_list("", "$.x") == []
    with pytest.raises(ConfigError, match=r"'3-1' is not a valid node range"):
        process_attrs.parse_node_list("3-1", "$.x")
    online = tmp_path / "online"
    online.write_text("0-1\n")
    [step] = process_attrs.memory_policy_steps(
        {"memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "0-1",
                          "flags": ["MPOL_F_STATIC_NODES"]}}, str(online))
    assert step.describe() == "set_mempolicy(MPOL_INTERLEAVE | MPOL_F_STATIC_NODES, nodes 0-1)"
    with pytest.raises(ConfigError, match=r"node\(s\) \[2\] are not online"):
        process_attrs.memory_policy_steps({"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "2"}},
                                          str(online))


@pytest.mark.parametrize("propagation,first,parent,again", [
    (None, "mount --make-rslave /", "make-private", False),
    ("rshared", "mount --make-rshared / (linux.rootfsPropagation)", "make-private", True),
    ("slave", "mount --make-slave / (linux.rootfsPropagation)", "make-slave", False),
    ("unbindable", "mount --make-unbindable /", "make-private", True),
    ("private", "mount --make-private / (linux.rootfsPropagation)", "make-private", False),
])
def test_rootfs_propagation_steps(tmp_path: Path, propagation: str | None, first: str,
                                  parent: str, again: bool) -> None:
    """runc 1.5's order: the value replaces the first rslave, the rootfs's mount is made
    private (slave), and shared/unbindable values are applied again after pivot_root."""
    bundle, config = _bundle(tmp_path)
    if propagation:
        config["linux"]["rootfsPropagation"] = propagation
    plan = planning.build("p1", bundle, config, planning.Options())
    mounts = [step.describe() for step in plan.mount_steps]
    assert mounts[0].startswith(first), mounts[0]
    assert mounts[1].startswith(f"mount --{parent} on the mount holding"), mounts[1]
    roots = [step.describe() for step in plan.root_steps]
    assert any("again on the new root" in text for text in roots) is again, roots


def test_private_root_propagation_needs_pivot_root(tmp_path: Path) -> None:
    bundle, config = _bundle(tmp_path)
    config["linux"]["rootfsPropagation"] = "rprivate"
    with pytest.raises(ConfigError, match=r"\$\.linux\.rootfsPropagation.*--no-pivot"):
        planning.build("p1", bundle, config, planning.Options(no_pivot=True))
    config["linux"]["rootfsPropagation"] = "rshared"
    planning.build("p1", bundle, config, planning.Options(no_pivot=True))


def test_the_rootfs_parent_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EINVAL means "not a mount point": the propagation change walks up to the first mount."""
    from ocirt.errors import SyscallError
    from ocirt.linux import pivot, rootfs

    calls: list[str] = []

    def fake_mount(source: str | None, target: str, fstype: str | None, flags: int,
                   data: str | None = None) -> None:
        calls.append(target)
        if target != "/srv":
            raise SyscallError(f"mount({target!r})", 22)

    monkeypatch.setattr(sc, "mount", fake_mount)
    steps = pivot.prepare_steps(rootfs.RootContext("/srv/bundle/rootfs"), "rshared")
    steps[1].run()
    assert calls == ["/srv/bundle/rootfs", "/srv/bundle", "/srv"]
