"""hostmounts: reading mountinfo (escaped mount points) and telling new mounts from old."""

from __future__ import annotations

from ocirt.linux import hostmounts

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
63 22 8:1 /b /tmp/my\\040bundle/rootfs rw shared:1 - ext4 /dev/sda1 rw
64 63 0:5 / /tmp/my\\040bundle/rootfs/proc rw - proc proc rw
65 22 0:6 / /tmp/my\\040bundle/rootfs2 rw - tmpfs tmpfs rw
"""


def test_mounts_under_reads_escaped_points_and_stops_at_the_path(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    found = hostmounts.mounts_under("/tmp/my bundle/rootfs", str(info))
    assert found == [(63, "/tmp/my bundle/rootfs"), (64, "/tmp/my bundle/rootfs/proc")]


def test_made_since_is_the_difference_by_mount_id():
    before = hostmounts.mounts_under("/", "/proc/self/mountinfo")
    assert hostmounts.made_since(before, "/") == []
    assert hostmounts.detach([]) == []
