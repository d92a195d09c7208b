"""A user namespace made by root: id maps (one range, several), root inside only, the rootfs
still usable, devices bind-mounted from the host."""

from __future__ import annotations

import os
import stat

from . import feature_support
from .feature_support import (
    id_map,
    ns_links,
    run_ok,
    started,
    status_of,
    userns_config,
)
from .support import ROOT_MARKS, bind_mount, parse_mountinfo_text, requires_ocirt

pytestmark = ROOT_MARKS
# Fixtures of feature_support, used by name below.
open_out = feature_support.open_out
open_rootfs = feature_support.open_rootfs


SEVERAL = ((0, 100000, 1), (1, 200001, 999), (1000, 300000, 1000))
OVERFLOW = "65534"  # how an unmapped host id shows inside


def config_for(make_config, open_rootfs, open_out, args, **kwargs):
    return userns_config(make_config, open_rootfs, open_out, args, **kwargs)


def test_one_range(rt, make_config, bundle, open_rootfs, open_out):
    config = config_for(make_config, open_rootfs, open_out, ["sleep", "100"],
                        uid_maps=((0, 100000, 65536),), gid_maps=((0, 200000, 65536),))
    cid, pid = started(rt, bundle, config)
    assert id_map(pid, "uid_map") == [(0, 100000, 65536)]
    assert id_map(pid, "gid_map") == [(0, 200000, 65536)]
    assert ns_links(pid)["user"] != ns_links("self")["user"]
    fields = status_of(pid)
    assert fields["Uid"] == ["100000"] * 4 and fields["Gid"] == ["200000"] * 4
    output = rt.ok("exec", cid, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map").stdout
    lines = output.splitlines()
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", "100000", "65536"]


def test_several_ranges(rt, make_config, bundle, open_rootfs, open_out):
    config = config_for(make_config, open_rootfs, open_out, ["sleep", "100"],
                        uid_maps=SEVERAL)
    cid, pid = started(rt, bundle, config)
    assert id_map(pid, "uid_map") == list(SEVERAL)
    assert id_map(pid, "gid_map") == list(SEVERAL)
    # Each range maps where it says: a process as 1500 inside is 300500 outside.
    output = rt.ok("exec", "--user", "1500:500", cid, "sh", "-c",
                   "id -u; id -g; touch /out/by-1500").stdout
    assert output.split() == ["1500", "500"]
    st = (open_out / "by-1500").stat()
    assert (st.st_uid, st.st_gid) == (300500, 200500)


def test_root_inside_is_mapped_outside(rt, make_config, bundle, open_rootfs, open_out):
    config = config_for(make_config, open_rootfs, open_out,
                        ["sh", "-c", "id -u; id -g; touch /out/by-root"])
    assert run_ok(rt, bundle, config).split() == ["0", "0"]
    st = (open_out / "by-root").stat()
    assert (st.st_uid, st.st_gid) == (100000, 100000)


def test_rootfs_works(rt, make_config, bundle, open_rootfs, open_out):
    """The rootfs belongs to host root, unmapped here: its files show as the overflow id and
    busybox (world-executable) still runs every applet."""
    config = config_for(make_config, open_rootfs, open_out,
                        ["sh", "-c", "stat -c '%u %g' /bin/busybox; ls /etc >/dev/null && "
                                     "echo listed; cat /etc/passwd | head -n 1; hostname"])
    lines = run_ok(rt, bundle, config).splitlines()
    assert lines[0] == f"{OVERFLOW} {OVERFLOW}"
    assert lines[1] == "listed"
    assert lines[2].startswith("root:")
    assert lines[3] == "itest"


def test_root_inside_is_not_host_root(rt, make_config, bundle, open_rootfs, open_out):
    host_file = open_out / "host-root-file"
    host_file.write_text("host data\n")
    os.chown(host_file, 0, 0)
    host_file.chmod(0o644)
    config = config_for(make_config, open_rootfs, open_out,
                        ["sh", "-c", "stat -c '%u %g' /mnt/file; cat /mnt/file; "
                                     "echo changed >> /mnt/file && echo wrote || echo refused; "
                                     "chown 0 /mnt/file && echo chowned || echo no-chown"])
    config["mounts"].append(bind_mount(host_file, "/mnt/file"))
    lines = run_ok(rt, bundle, config).splitlines()
    assert lines == [f"{OVERFLOW} {OVERFLOW}", "host data", "refused", "no-chown"]
    assert host_file.read_text() == "host data\n"


def test_devices_are_bind_mounted(rt, make_config, bundle, open_rootfs, open_out):
    program = ("cat /proc/self/mountinfo; echo ---; "
               "mknod /dev/shm/null c 1 3 2>/dev/null && echo mknod-allowed || echo no-mknod; "
               "echo x > /dev/null && echo null-writable; head -c 3 /dev/zero | wc -c; "
               "stat -c '%t:%T' /dev/null /dev/zero /dev/urandom")
    config = config_for(make_config, open_rootfs, open_out, ["sh", "-c", program])
    table, _, rest = run_ok(rt, bundle, config).partition("---\n")
    mounts = parse_mountinfo_text(table)
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        assert f"/dev/{name}" in mounts, f"/dev/{name} is not a bind mount"
    assert rest.split() == ["no-mknod", "null-writable", "3", "1:3", "1:5", "1:9"]


def test_devices_from_outside(rt, make_config, bundle, open_rootfs, open_out):
    config = config_for(make_config, open_rootfs, open_out, ["sleep", "100"])
    _, pid = started(rt, bundle, config)
    for name, number in (("null", (1, 3)), ("zero", (1, 5)), ("tty", (5, 0))):
        st = os.stat(f"/proc/{pid}/root/dev/{name}")
        assert stat.S_ISCHR(st.st_mode), name
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == number, name
        host = os.stat(f"/dev/{name}")
        assert (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino), \
            f"/dev/{name} is the host's node, bind-mounted"


@requires_ocirt  # runc 1.1 wants uidMappings even for a user namespace it joins
def test_join_the_user_namespace_of_another_container(rt, make_config, bundle, open_rootfs,
                                                      open_out):
    first = config_for(make_config, open_rootfs, open_out, ["sleep", "100"],
                       uid_maps=SEVERAL)
    _, pid1 = started(rt, bundle, first, "first")
    second = make_config(["sleep", "100"], out=False, rootfs_path=open_rootfs)
    second["linux"]["namespaces"].append({"type": "user", "path": f"/proc/{pid1}/ns/user"})
    cid2, pid2 = started(rt, bundle, second, "second")
    assert ns_links(pid2)["user"] == ns_links(pid1)["user"]
    assert ns_links(pid2)["mnt"] != ns_links(pid1)["mnt"]
    assert id_map(pid2, "uid_map") == list(SEVERAL)
    assert status_of(pid2)["Uid"] == ["100000"] * 4
    assert rt.ok("exec", cid2, "id", "-u").stdout == "0\n"
