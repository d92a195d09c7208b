"""Mount options become the right mount(2) flags, propagation and data."""

from __future__ import annotations

from ocirt.linux import mountopts
from ocirt.linux import syscalls as sc


def test_flags_propagation_and_data() -> None:
    parsed = mountopts.parse_options(["rbind", "ro", "nosuid", "rslave", "mode=755", "size=1k"])
    assert parsed.flags == sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY | sc.MS_NOSUID
    assert parsed.propagation == [sc.MS_SLAVE | sc.MS_REC]
    assert parsed.data == ["mode=755", "size=1k"]
    assert parsed.is_bind


def test_later_options_clear_earlier_ones() -> None:
    assert mountopts.parse_options(["ro", "rw"]).flags == 0
    assert mountopts.parse_options(["nosuid", "suid"]).flags == 0
    assert mountopts.parse_options(["defaults"]).flags == 0


def test_describe_flags() -> None:
    assert mountopts.describe_flags(sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY) == "rbind,ro"
    assert mountopts.describe_flags(0) == "none"


def test_idmap_options_are_not_mount_data():
    from ocirt.linux import rootfs

    parsed = mountopts.parse_options(["rbind", "ridmap", "ro"])
    assert parsed.idmap == "ridmap" and parsed.data == []
    assert rootfs.is_idmapped({"options": ["bind", "idmap"]})
    assert rootfs.is_idmapped({"options": ["bind"], "uidMappings": [{}]})
    assert not rootfs.is_idmapped({"options": ["bind", "ro"]})
