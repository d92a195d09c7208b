"""Idmapped bind mounts (config.md: the idmap/ridmap options, mounts[].uidMappings and
gidMappings): the files of a host directory show inside with their owners mapped, while on disk
nothing changes; with a user namespace and no mappings of its own, the container's are used.

A file owned by containerID + n on disk shows as hostID + n through the mount (the mapping a
container's user namespace applies to its own processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import feature_support
from .feature_support import started, userns_config
from .support import ROOT_MARKS, assert_nothing_left, parse_mountinfo_text, requires_ocirt

pytestmark = [*ROOT_MARKS, requires_ocirt]  # runc 1.1 has no idmapped mounts
open_out = feature_support.open_out
open_rootfs = feature_support.open_rootfs


def ranges(*maps):
    return [{"containerID": c, "hostID": h, "size": s} for c, h, s in maps]


@pytest.fixture
def shared_dir(tmp_path):
    """A host directory with a file of root's, one of uid/gid 5, and a subdirectory."""
    top = tmp_path / "shared"
    top.mkdir()
    top.chmod(0o755)
    (top / "root-file").write_text("root\n")
    (top / "five").write_text("five\n")
    os.chown(top / "five", 5, 5)
    (top / "sub").mkdir()
    return top


def idmapped(source, destination, options=("bind",), uid_maps=None, gid_maps=None):
    mount = {"destination": destination, "type": "bind", "source": str(source),
             "options": list(options)}
    if uid_maps is not None:
        mount["uidMappings"] = uid_maps
        mount["gidMappings"] = gid_maps if gid_maps is not None else uid_maps
    return mount


def owners(cid, rt, *paths):
    out = rt.ok("exec", cid, "stat", "-c", "%n %u %g", *paths).stdout
    return {line.split()[0]: tuple(line.split()[1:]) for line in out.splitlines()}


def test_own_mappings_without_a_user_namespace(rt, make_config, bundle, shared_dir):
    config = make_config(["sleep", "100"])
    config["mounts"].append(idmapped(shared_dir, "/mnt/bind", ("bind", "idmap"),
                                     ranges((0, 1000, 10))))
    cid, pid = started(rt, bundle, config)
    seen = owners(cid, rt, "/mnt/bind/root-file", "/mnt/bind/five")
    assert seen == {"/mnt/bind/root-file": ("1000", "1000"), "/mnt/bind/five": ("1005", "1005")}
    # on disk nothing changed, and the mount says it is idmapped
    assert (os.stat(shared_dir / "root-file").st_uid, os.stat(shared_dir / "five").st_uid) == (0, 5)
    mounts = parse_mountinfo_text(Path(f"/proc/{pid}/mountinfo").read_text())
    assert "idmapped" in mounts["/mnt/bind"]["options"]


def test_ids_outside_the_mapping_show_as_overflow(rt, make_config, bundle, shared_dir):
    config = make_config(["sleep", "100"])
    config["mounts"].append(idmapped(shared_dir, "/mnt/bind", ("bind",), ranges((0, 1000, 1))))
    cid, _ = started(rt, bundle, config)
    assert owners(cid, rt, "/mnt/bind/five") == {"/mnt/bind/five": ("65534", "65534")}


def test_user_namespace_mappings_are_used_when_the_mount_has_none(
        rt, make_config, bundle, open_rootfs, open_out, shared_dir):
    """Container root (host 100000) sees the host's root-owned files as its own, and can
    write them: what idmapped mounts are for."""
    config = userns_config(make_config, open_rootfs, open_out, ["sleep", "100"])
    config["mounts"].append(idmapped(shared_dir, "/mnt/bind", ("rbind", "rw", "idmap")))
    cid, _ = started(rt, bundle, config)
    seen = owners(cid, rt, "/mnt/bind/root-file", "/mnt/bind/five")
    assert seen == {"/mnt/bind/root-file": ("0", "0"), "/mnt/bind/five": ("5", "5")}
    rt.ok("exec", cid, "sh", "-c", "echo changed > /mnt/bind/root-file; touch /mnt/bind/new")
    assert (shared_dir / "root-file").read_text() == "changed\n"
    new = os.stat(shared_dir / "new")
    assert (new.st_uid, new.st_gid) == (0, 0)  # written as the container's root: host root


def test_read_only_idmapped(rt, make_config, bundle, shared_dir):
    config = make_config(["sleep", "100"])
    config["mounts"].append(idmapped(shared_dir, "/mnt/bind", ("bind", "ro", "idmap"),
                                     ranges((0, 1000, 10))))
    cid, _ = started(rt, bundle, config)
    result = rt("exec", cid, "touch", "/mnt/bind/x")
    assert result.returncode != 0 and "Read-only file system" in result.stderr, result


@pytest.mark.parametrize("mount, where", [
    ({"type": "bind", "options": ["bind", "idmap"]},
     "an idmapped mount needs uidMappings and gidMappings, or a user namespace"),
    ({"type": "tmpfs", "source": "tmpfs", "options": ["idmap"], "uidMappings": ranges((0, 1, 1)),
      "gidMappings": ranges((0, 1, 1))}, "ocirt idmaps bind mounts only"),
])
def test_what_cannot_be_idmapped_is_refused(rt, make_config, bundle, shared_dir, mount, where):
    config = make_config(["true"])
    config["mounts"].append({"destination": "/mnt/bind", "source": str(shared_dir), **mount})
    cid = rt.new_id()
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert where in result.stderr, result
    assert_nothing_left(rt, cid)


def test_a_file_where_init_cannot_reach_the_source(rt, make_config, bundle, open_rootfs,
                                                   open_out, shared_dir):
    """A file is idmapped too; init, as the container's root, cannot reach the source
    (tmp_path is 0700), so what to attach is told by the detached copy, not the source."""
    config = userns_config(make_config, open_rootfs, open_out, ["sleep", "100"])
    config["mounts"].append(idmapped(shared_dir / "five", "/mnt/file", ("bind", "idmap")))
    cid, _ = started(rt, bundle, config)
    assert owners(cid, rt, "/mnt/file") == {"/mnt/file": ("5", "5")}
