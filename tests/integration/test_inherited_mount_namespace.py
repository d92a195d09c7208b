"""A config without a mount namespace: the container inherits the runtime's (config-linux.md,
"Namespaces"), its rootfs mounts land there, and delete (or a failed create) detaches them.

The runtime runs inside a throwaway mount namespace made for each test (``unshare -m
--propagation private``, entered with nsenter), so the "runtime's mount namespace" these
tests fill and check is never the host's: the host guard still checks the host's mounts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from testkit import mount_ids_under

from . import feature_support
from .feature_support import NS_NAMES, ns_links
from .support import (
    ROOT_MARKS,
    assert_nothing_left,
    bind_mount,
    requires_ocirt,
    wait_for,
)

pytestmark = ROOT_MARKS


# Fixtures of feature_support, used by name below: the runtime runs in a private mount
# namespace made for each test.
holder_ns = feature_support.private_mount_ns
holder = feature_support.holder
nsrt = feature_support.ns_runtime


def holder_mounts(holder: int, ours: Path) -> list[str]:
    """The holder's mountinfo, less the copies of other people's mounts under /tmp (they go
    from the holder too when their mount points are removed on the host): under /tmp only
    ``ours`` (this test's directory) counts."""
    lines = Path(f"/proc/{holder}/mountinfo").read_text().splitlines()
    return [line for line in lines
            if not line.split()[4].startswith("/tmp/")
            or (line.split()[4] + "/").startswith(f"{ours}/")]


def no_namespaces(make_config, rootfs, args, masks=True):
    """A config with no namespace at all; ``masks=False`` also drops maskedPaths and
    readonlyPaths, which runc refuses without a mount namespace."""
    config = make_config(args, rootfs_path=rootfs, hostname=None)
    config["linux"]["namespaces"] = []
    if not masks:
        del config["linux"]["maskedPaths"], config["linux"]["readonlyPaths"]
    return config


def test_every_namespace_is_the_runtimes(nsrt, holder, make_config, bundle, private_rootfs):
    config = no_namespaces(make_config, private_rootfs, ["sleep", "100"], masks=False)
    cid = nsrt.new_id()
    nsrt.create(cid, bundle(config))
    pid = nsrt.state(cid)["pid"]
    theirs, runtime = ns_links(pid), ns_links(holder)
    assert set(theirs) == set(NS_NAMES.values())
    for name in NS_NAMES.values():
        assert theirs[name] == runtime[name], name
    # its root is the rootfs, reached by chroot: the namespace's own root is untouched
    assert os.readlink(f"/proc/{pid}/root") == str(private_rootfs)
    assert os.readlink(f"/proc/{holder}/root") == "/"
    # and its mounts are in the runtime's namespace, under the rootfs
    points = set(mount_ids_under(holder, private_rootfs).values())
    assert {f"{private_rootfs}/proc", f"{private_rootfs}/dev",
            f"{private_rootfs}/out"} <= points


@requires_ocirt  # runc and crun leave these mounts behind
def test_delete_detaches_what_create_mounted(nsrt, holder, make_config, bundle,
                                             private_rootfs, out_dir):
    before = holder_mounts(holder, private_rootfs.parent)
    config = no_namespaces(make_config, private_rootfs,
                           ["sh", "-c", "touch /rootfs-is-writable; ls / > /out/ls; sleep 100"])
    cid = nsrt.new_id()
    nsrt.create(cid, bundle(config))
    made = mount_ids_under(holder, private_rootfs)
    # the read-only root needs a mount point on the rootfs: it is one of ours
    assert str(private_rootfs) in made.values()
    nsrt.ok("start", cid)
    wait_for(lambda: (out_dir / "ls").exists() and (out_dir / "ls").read_text(), 3.0,
             what="the container to list its root")
    assert "bin" in (out_dir / "ls").read_text().split()
    assert not (private_rootfs / "rootfs-is-writable").exists()  # root.readonly held
    nsrt.ok("delete", "--force", cid)
    assert holder_mounts(holder, private_rootfs.parent) == before
    assert_nothing_left(nsrt, cid)


@requires_ocirt
def test_delete_leaves_mounts_it_did_not_make(nsrt, holder, make_config, bundle,
                                              private_rootfs):
    """A mount someone else put under the rootfs before create stays after delete."""
    theirs = private_rootfs / "mnt"
    subprocess.run(["nsenter", f"--mount=/proc/{holder}/ns/mnt", "--", "mount", "-t", "tmpfs",
                    "theirs", str(theirs)], check=True)
    config = no_namespaces(make_config, private_rootfs, ["sleep", "100"])
    cid = nsrt.new_id()
    nsrt.create(cid, bundle(config))
    nsrt.ok("delete", "--force", cid)
    assert list(mount_ids_under(holder, private_rootfs).values()) == [str(theirs)]


@requires_ocirt  # runc 1.1.5 cannot exec here at all: "nsexec-1: ns paths are empty"
def test_exec_runs_in_the_containers_root(nsrt, make_config, bundle, private_rootfs):
    (private_rootfs / "marker").write_text("inside the rootfs\n")
    config = no_namespaces(make_config, private_rootfs, ["sleep", "100"], masks=False)
    cid = nsrt.new_id()
    nsrt.create(cid, bundle(config))
    nsrt.ok("start", cid)
    result = nsrt.ok("exec", cid, "cat", "/marker")
    assert result.stdout == "inside the rootfs\n"


@requires_ocirt
def test_failed_create_detaches_its_mounts(nsrt, holder, make_config, bundle, private_rootfs,
                                           tmp_path):
    before = holder_mounts(holder, private_rootfs.parent)
    config = no_namespaces(make_config, private_rootfs, ["true"])
    # the last mount fails, after /proc, /dev, /sys... were mounted in the runtime's namespace
    config["mounts"].append(bind_mount(tmp_path / "missing", "/mnt/bind"))
    cid = nsrt.new_id()
    result = nsrt.fails("create", "--bundle", str(bundle(config)), cid)
    assert "missing" in result.stderr
    assert holder_mounts(holder, private_rootfs.parent) == before
    assert_nothing_left(nsrt, cid)


@requires_ocirt
@pytest.mark.parametrize("change, where", [
    ({"namespaces": [{"type": "user"}],
      "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
      "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
     "$.linux.namespaces: a user namespace needs a mount namespace"),
    ({"rootfsPropagation": "shared"}, "$.linux.rootfsPropagation: needs a mount namespace"),
])
def test_what_needs_a_mount_namespace_is_refused(nsrt, holder, make_config, bundle,
                                                 private_rootfs, change, where):
    before = holder_mounts(holder, private_rootfs.parent)
    config = no_namespaces(make_config, private_rootfs, ["true"])
    config["linux"].update(change)
    cid = nsrt.new_id()
    result = nsrt.fails("create", "--bundle", str(bundle(config)), cid)
    assert where in result.stderr
    assert holder_mounts(holder, private_rootfs.parent) == before
    assert_nothing_left(nsrt, cid)
