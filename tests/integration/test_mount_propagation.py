"""linux.rootfsPropagation and volume propagation, both directions, the way Kubernetes uses them.

A Kubernetes volume with ``mountPropagation: HostToContainer`` is an ``rbind,rslave`` bind (a
mount made on the host under its source appears inside); ``Bidirectional`` is ``rbind,rshared``
with ``rootfsPropagation: rshared`` (a mount made inside appears on the host too). For every
rootfsPropagation value (and none), one container gets both kinds of volume; the host then
mounts under each volume source and under the rootfs, the container mounts under each volume
and under its own root, and each side looks at what it sees.

The host side is this test's own: two directories under the test's temp dir, each bound on
itself and made shared (the host's ``/`` is never changed); the volumes come from one, the
rootfs lives on the other (as an image's rootfs and the kubelet's volumes do). Everything is
unmounted afterwards and the host's mount table checked (here and by the ``host_guard``).

What runc 1.5 does (and ocirt): the value replaces the first ``rslave`` of ``/``; the mount
holding the rootfs is then made private (slave for slave values); after pivot_root, a shared or
unbindable value is applied to the new root again. runc 1.1.5 (the one installed here) differs
only for the root itself: it has no second step after pivot_root (its root stays private for
shared and unbindable) and keeps a slave parent mount for rslave and no value (so its root
receives the host's mounts): ``RUNC_1_1_ROOT`` holds those rows, proven against it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .feature_support import host_mountinfo_of, mounts_under, started
from .support import IS_OCIRT, ROOT_MARKS, bind_mount, mount_table, propagation_tags

pytestmark = ROOT_MARKS

# value -> (tags of / inside, host mount under the rootfs seen inside,
#           HostToContainer volume: host->container, Bidirectional volume: host->container,
#           Bidirectional volume: container->host)
EXPECTED = {
    None: (set(), False, True, True, False),
    "rslave": ({"master"}, True, True, True, False),
    "slave": ({"master"}, True, True, True, True),
    "rshared": ({"shared"}, False, True, True, True),
    "shared": ({"shared"}, False, True, True, True),
    "rprivate": (set(), False, False, False, False),
    "private": (set(), False, True, True, True),
    "unbindable": ({"unbindable"}, False, True, True, True),
}
# runc 1.1.5: (tags of /, rootfs receives) where it differs from runc 1.5.
RUNC_1_1_ROOT = {
    None: ({"master"}, True),
    "slave": (set(), False),
    "rshared": (set(), False),
    "shared": (set(), False),
    "unbindable": (set(), False),
}


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _tmpfs(path: Path) -> None:
    _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path))


def _shared_mount(path: Path) -> None:
    path.mkdir()
    _mount("--bind", str(path), str(path))
    _mount("--make-shared", str(path))


@pytest.fixture
def host_side(tmp_path, busybox_rootfs):
    """``tmp_path/vols`` and ``tmp_path/images`` (shared mounts): the volume sources ``a``
    (HostToContainer) and ``b`` (Bidirectional), each with ``h`` (the host mounts there) and
    ``c`` (the container does), and a rootfs with ``mnt/slave``, ``mnt/shared``, ``mnt/later``
    (the host mounts there) and ``mnt/in`` (the container does)."""
    table_before = sorted(mount_table())
    vols, images = tmp_path / "vols", tmp_path / "images"
    try:
        _shared_mount(vols)
        _shared_mount(images)
        for name in ("a/h", "a/c", "b/h", "b/c"):
            (vols / name).mkdir(parents=True)
        rootfs = images / "rootfs"
        subprocess.run(["cp", "-a", str(busybox_rootfs), str(rootfs)], check=True)
        for name in ("mnt/slave", "mnt/shared", "mnt/later", "mnt/in"):
            (rootfs / name).mkdir(parents=True, exist_ok=True)
        yield vols, rootfs
    finally:
        for top in (vols, images):
            subprocess.run(["umount", "-R", "-l", str(top)], check=False, capture_output=True)
    assert mounts_under(vols, images) == []
    assert sorted(mount_table()) == table_before or _only_others_changed(table_before)


def _only_others_changed(before: list[tuple[str, str]]) -> bool:
    """Others on this machine mount under /tmp too: only theirs may differ."""
    after = sorted(mount_table())
    return all(point.startswith("/tmp/") and "pytest-of" not in point
               for point, _ in set(before) ^ set(after))


@pytest.mark.parametrize("propagation", list(EXPECTED), ids=lambda v: v or "unset")
def test_propagation_both_directions(rt, make_config, bundle, host_side, propagation):
    vols, rootfs = host_side
    # no /out: with "unbindable" the host's own / is unbindable in the container's namespace,
    # and a bind from it fails (EINVAL) in runc as in ocirt
    config = make_config(["sleep", "100"], out=False, rootfs_path=rootfs)
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind].append("CAP_SYS_ADMIN")
    if propagation:
        config["linux"]["rootfsPropagation"] = propagation
    config["mounts"] += [bind_mount(vols / "a", "/mnt/slave", "rslave"),
                         bind_mount(vols / "b", "/mnt/shared", "rshared")]
    cid, pid = started(rt, bundle, config)

    # host -> container: under each volume source and under the rootfs
    for path in (vols / "a" / "h", vols / "b" / "h", rootfs / "mnt" / "later"):
        _tmpfs(path)
    inside = host_mountinfo_of(pid)
    seen = ("/mnt/later" in inside, "/mnt/slave/h" in inside, "/mnt/shared/h" in inside)
    # container -> host: under each volume and under the container's own root
    rt.ok("exec", cid, "sh", "-c", "for d in /mnt/slave/c /mnt/shared/c /mnt/in; do "
          "mount -t tmpfs -o size=64k tmpfs $d || exit 1; done")
    on_host = {str(point) for point in mounts_under(vols, rootfs)}
    root_tags = propagation_tags(Path(f"/proc/{pid}/mountinfo").read_text())["/"]

    tags, rootfs_receives, slave_receives, shared_receives, shared_sends = EXPECTED[propagation]
    if not IS_OCIRT:
        tags, rootfs_receives = RUNC_1_1_ROOT.get(propagation, (tags, rootfs_receives))
    assert root_tags == tags, f"propagation of / inside: {root_tags}"
    assert seen == (rootfs_receives, slave_receives, shared_receives), \
        "host mounts seen inside (under the rootfs, the rslave volume, the rshared volume)"
    assert str(vols / "a" / "c") not in on_host, "an rslave volume never sends to the host"
    assert str(rootfs / "mnt" / "in") not in on_host, "the rootfs never sends to the host"
    assert (str(vols / "b" / "c") in on_host) is shared_sends, \
        f"a mount inside the rshared volume reached the host: {sorted(on_host)}"


def test_private_root_without_pivot_is_refused(rt, make_config, bundle):
    """runc: "rootfsPropagation of [r]private is not safe without pivot_root"."""
    config = make_config(["true"], linux__rootfsPropagation="rprivate")
    result = rt.fails("run", "--no-pivot", "--bundle", str(bundle(config)), rt.new_id())
    if IS_OCIRT:
        assert "$.linux.rootfsPropagation" in result.stderr
