"""Mount options as the kernel reports them (mountinfo inside, and from the host through
/proc/<pid>/mountinfo) and as they behave: per-mount and superblock flags, bind and rbind,
propagation, rro, tmpfs options, rootfsPropagation, masked and read-only paths, linux.devices,
a destination that leads through a symlink."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from .feature_support import host_mountinfo_of, mounts_under, run_ok, started
from .support import (
    IS_OCIRT,
    ROOT_MARKS,
    bind_mount,
    parse_mountinfo_text,
    propagation_tags,
)

pytestmark = ROOT_MARKS

MOUNTINFO = "cat /proc/self/mountinfo"


def tmpfs(destination, *options):
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs",
            "options": list(options)}


def mounts_of(rt, make_config, bundle, extra_mounts, program=MOUNTINFO, **overrides):
    """Run ``program`` (which prints mountinfo first, then ``---`` and more) with the extra
    mounts; (mount table, the rest of the output)."""
    config = make_config(["sh", "-c", program], **overrides)
    config["mounts"] += extra_mounts
    table, _, rest = run_ok(rt, bundle, config).partition("---\n")
    return parse_mountinfo_text(table), rest


def host_mount(*args):
    subprocess.run(["mount", *args], check=True, capture_output=True)


def host_umount(path):
    subprocess.run(["umount", "-R", "-l", str(path)], check=False, capture_output=True)


@pytest.fixture
def host_tree():
    """A host directory with a tmpfs mounted on its ``sub`` (holding ``file``); unmounted and
    removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-mo-tree-"))
    (top / "sub").mkdir()
    (top / "top-file").write_text("top\n")
    host_mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(top / "sub"))
    try:
        (top / "sub" / "file").write_text("in the submount\n")
        yield top
    finally:
        host_umount(top / "sub")
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def shared_dir():
    """A host directory that is a shared mount (bound on itself, --make-shared)."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-mo-shared-"))
    host_mount("--bind", str(top), str(top))
    try:
        host_mount("--make-shared", str(top))
        yield top
    finally:
        host_umount(top)
        shutil.rmtree(top, ignore_errors=True)


# --- flags ------------------------------------------------------------------------------------

PER_MOUNT = [
    (["ro"], {"ro"}, set()),
    (["rw"], {"rw"}, {"ro"}),
    (["nosuid"], {"nosuid"}, set()),
    (["nodev"], {"nodev"}, set()),
    (["noexec"], {"noexec"}, set()),
    (["ro", "rw"], {"rw"}, {"ro"}),  # the last word wins
    (["noexec", "exec"], set(), {"noexec"}),
    (["noatime"], {"noatime"}, {"relatime"}),
    (["relatime"], {"relatime"}, {"noatime"}),
    (["strictatime"], set(), {"relatime", "noatime"}),
    (["nodiratime"], {"nodiratime"}, set()),
    (["nosymfollow"], {"nosymfollow"}, set()),
]


@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
@pytest.mark.parametrize("options,present,absent", PER_MOUNT,
                         ids=["+".join(case[0]) for case in PER_MOUNT])
def test_per_mount_flags(rt, make_config, bundle, tmp_path, kind, options, present, absent):
    if kind == "tmpfs":
        mount = tmpfs("/mnt/opts", *options)
    else:
        (tmp_path / "src").mkdir()
        mount = bind_mount(tmp_path / "src", "/mnt/opts", *options)
    mounts, _ = mounts_of(rt, make_config, bundle, [mount])
    flags = mounts["/mnt/opts"]["options"]
    assert present <= flags, (options, flags)
    assert not absent & flags, (options, flags)


@pytest.mark.parametrize("option", ["sync", "dirsync"])
def test_superblock_flags(rt, make_config, bundle, option):
    mounts, _ = mounts_of(rt, make_config, bundle, [tmpfs("/mnt/opts", option)])
    assert option in mounts["/mnt/opts"]["super"], mounts["/mnt/opts"]


def test_flags_take_effect(rt, make_config, bundle):
    program = (f"{MOUNTINFO}; echo ---; "
               "echo x > /mnt/ro/f 2>/dev/null && echo ro-written || echo ro-refused; "
               "cp /bin/busybox /mnt/opts/bb && /mnt/opts/bb true 2>/dev/null "
               "&& echo exec-ran || echo exec-refused; "
               "echo data > /mnt/tmpfs/target; ln -s target /mnt/tmpfs/link; "
               "cat /mnt/tmpfs/link 2>/dev/null || echo symlink-refused; "
               "readlink /mnt/tmpfs/link")
    _, rest = mounts_of(rt, make_config, bundle, [
        tmpfs("/mnt/ro", "ro"), tmpfs("/mnt/opts", "noexec"), tmpfs("/mnt/tmpfs", "nosymfollow")],
        program)
    assert rest.split() == ["ro-refused", "exec-refused", "symlink-refused", "target"]


# --- bind, rbind, rro -------------------------------------------------------------------------

def test_bind_leaves_submounts_out(rt, make_config, bundle, host_tree):
    mount = {"destination": "/mnt/bind", "type": "bind", "source": str(host_tree),
             "options": ["bind"]}
    program = f"{MOUNTINFO}; echo ---; cat /mnt/bind/top-file; ls /mnt/bind/sub | wc -l"
    mounts, rest = mounts_of(rt, make_config, bundle, [mount], program)
    assert "/mnt/bind" in mounts and "/mnt/bind/sub" not in mounts
    assert rest.split() == ["top", "0"]


def test_rbind_takes_submounts(rt, make_config, bundle, host_tree):
    program = f"{MOUNTINFO}; echo ---; cat /mnt/bind/sub/file"
    mounts, rest = mounts_of(rt, make_config, bundle, [bind_mount(host_tree, "/mnt/bind")],
                             program)
    assert mounts["/mnt/bind/sub"]["fstype"] == "tmpfs"
    assert rest == "in the submount\n"


def test_ro_bind_leaves_submounts_writable(rt, make_config, bundle, host_tree):
    """Plain ro is per mount: the submount under an rbind stays writable (rro is for that)."""
    program = (f"{MOUNTINFO}; echo ---; touch /mnt/bind/sub/new && echo sub-written; "
               "touch /mnt/bind/new 2>/dev/null || echo top-refused")
    mounts, rest = mounts_of(rt, make_config, bundle,
                             [bind_mount(host_tree, "/mnt/bind", "ro")], program)
    assert "ro" in mounts["/mnt/bind"]["options"]
    assert "rw" in mounts["/mnt/bind/sub"]["options"]
    assert rest.split() == ["sub-written", "top-refused"]


def test_rro_makes_submounts_read_only(rt, make_config, bundle, host_tree):
    program = (f"{MOUNTINFO}; echo ---; touch /mnt/bind/sub/new 2>/dev/null || "
               "echo sub-refused; touch /mnt/bind/new 2>/dev/null || echo top-refused")
    mounts, rest = mounts_of(rt, make_config, bundle,
                             [bind_mount(host_tree, "/mnt/bind", "rro")], program)
    assert "ro" in mounts["/mnt/bind"]["options"]
    assert "ro" in mounts["/mnt/bind/sub"]["options"]
    assert rest.split() == ["sub-refused", "top-refused"]
    assert not (host_tree / "sub" / "new").exists()


def test_recursive_nosuid_nodev_noexec(rt, make_config, bundle, host_tree):
    mounts, _ = mounts_of(rt, make_config, bundle,
                          [bind_mount(host_tree, "/mnt/bind", "rnosuid", "rnodev", "rnoexec")])
    for point in ("/mnt/bind", "/mnt/bind/sub"):
        assert {"nosuid", "nodev", "noexec"} <= mounts[point]["options"], point


# --- propagation ------------------------------------------------------------------------------

@pytest.mark.parametrize("option,tags", [
    ("rprivate", set()),
    ("rslave", {"master"}),
    ("rshared", {"shared", "master"}),
    ("runbindable", {"unbindable"}),
])
def test_propagation_option(rt, make_config, bundle, shared_dir, option, tags):
    config = make_config(["cat", "/proc/self/mountinfo"])
    config["mounts"].append(bind_mount(shared_dir, "/mnt/bind", option))
    found = propagation_tags(run_ok(rt, bundle, config))["/mnt/bind"]
    assert found == tags, (option, found)


@pytest.mark.parametrize("option,receives", [("rslave", True), ("rprivate", False)])
def test_propagation_from_the_host(rt, make_config, bundle, shared_dir, option, receives):
    """A mount made on the host after create reaches a slave bind, not a private one; nothing
    made in the container reaches the host."""
    (shared_dir / "later").mkdir()
    config = make_config(["sleep", "100"])
    config["mounts"].append(bind_mount(shared_dir, "/mnt/bind", option))
    _, pid = started(rt, bundle, config)
    host_mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(shared_dir / "later"))
    try:
        seen = "/mnt/bind/later" in host_mountinfo_of(pid)
    finally:
        host_umount(shared_dir / "later")
    assert seen is receives
    assert mounts_under(shared_dir) == [str(shared_dir)], "only the test's own mount"


# --- tmpfs ------------------------------------------------------------------------------------

def test_tmpfs_options(rt, make_config, bundle):
    program = f"{MOUNTINFO}; echo ---; stat -c '%a %u %g' /mnt/tmpfs"
    mounts, rest = mounts_of(rt, make_config, bundle, [
        tmpfs("/mnt/tmpfs", "nosuid", "size=2m", "mode=1770", "nr_inodes=100", "uid=1000",
              "gid=1001")], program)
    entry = mounts["/mnt/tmpfs"]
    assert entry["fstype"] == "tmpfs"
    assert {"size=2048k", "nr_inodes=100", "mode=1770", "uid=1000", "gid=1001"} <= \
        entry["super"], entry
    owner = rest.split()[1:]
    assert owner == ["1000", "1001"]
    if IS_OCIRT:  # runc gives the tmpfs the mode of the directory it covers
        assert rest.split()[0] == "1770"


# --- rootfsPropagation ------------------------------------------------------------------------

@pytest.fixture
def shared_rootfs(shared_dir, busybox_rootfs):
    """A rootfs on a shared host mount, so that the propagation of / inside shows."""
    path = shared_dir / "rootfs"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(path)], check=True)
    for name in ("mnt/later", "out"):
        (path / name).mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("propagation,tags,receives", [
    ("private", set(), False),
    ("rprivate", set(), False),
    ("rslave", {"master"}, True),
])
def test_rootfs_propagation(rt, make_config, bundle, shared_rootfs, propagation, tags,
                            receives):
    config = make_config(["sleep", "100"], rootfs_path=shared_rootfs,
                         linux__rootfsPropagation=propagation)
    _, pid = started(rt, bundle, config)
    found = propagation_tags(Path(f"/proc/{pid}/mountinfo").read_text())["/"]
    assert found == tags, (propagation, found)
    later = shared_rootfs / "mnt" / "later"
    host_mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(later))
    try:
        seen = "/mnt/later" in host_mountinfo_of(pid)
    finally:
        host_umount(later)
    assert seen is receives, "a host mount under the rootfs after create"
    assert mounts_under(shared_rootfs) == []


@pytest.mark.parametrize("propagation", ["shared", "rshared"])
@pytest.mark.parametrize("on_shared_mount", [False, True], ids=["private-host", "shared-host"])
def test_rootfs_propagation_shared(rt, make_config, bundle, rootfs, shared_rootfs, out_dir,
                                   propagation, on_shared_mount):
    config = make_config(["cat", "/proc/self/mountinfo"],
                         rootfs_path=shared_rootfs if on_shared_mount else rootfs,
                         linux__rootfsPropagation=propagation)
    tags = propagation_tags(run_ok(rt, bundle, config))
    assert "/" in tags
    if IS_OCIRT:  # runc leaves / private whatever rootfsPropagation says
        assert "shared" in tags["/"]
    assert mounts_under(shared_rootfs, out_dir) == []


# --- masked and read-only paths ---------------------------------------------------------------

def test_masked_paths(rt, make_config, bundle):
    program = (f"{MOUNTINFO}; echo ---; wc -c < /etc/group; stat -c %t:%T /etc/group; "
               "ls -A /home | wc -l; touch /home/new 2>/dev/null || echo dir-refused")
    config = make_config(["sh", "-c", program])
    config["linux"]["maskedPaths"] += ["/etc/group", "/home", "/does/not/exist"]
    table, _, rest = run_ok(rt, bundle, config).partition("---\n")
    mounts = parse_mountinfo_text(table)
    assert mounts["/home"]["fstype"] == "tmpfs" and "ro" in mounts["/home"]["options"]
    assert "/etc/group" in mounts and "/does/not/exist" not in mounts
    assert rest.split() == ["0", "1:3", "0", "dir-refused"]


def test_readonly_paths(rt, make_config, bundle, private_rootfs):
    program = (f"{MOUNTINFO}; echo ---; touch /home/user/new 2>/dev/null || echo ro-refused; "
               "touch /home/other && echo rw-written; "
               "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo sys-refused")
    config = make_config(["sh", "-c", program], rootfs_path=private_rootfs,
                         root__readonly=False)
    config["linux"]["readonlyPaths"] += ["/home/user", "/does/not/exist"]
    table, _, rest = run_ok(rt, bundle, config).partition("---\n")
    mounts = parse_mountinfo_text(table)
    assert "ro" in mounts["/home/user"]["options"]
    assert "ro" in mounts["/proc/sys"]["options"]
    assert "/does/not/exist" not in mounts
    assert rest.split() == ["ro-refused", "rw-written", "sys-refused"]
    assert not (private_rootfs / "home" / "user" / "new").exists()


# --- linux.devices ----------------------------------------------------------------------------

DEVICES = [
    {"path": "/dev/mychar", "type": "c", "major": 1, "minor": 7, "fileMode": 0o640,
     "uid": 1000, "gid": 1001},
    {"path": "/dev/myblock", "type": "b", "major": 7, "minor": 99, "fileMode": 0o600,
     "uid": 0, "gid": 6},
    {"path": "/dev/myunbuf", "type": "u", "major": 1, "minor": 9, "fileMode": 0o666},
    {"path": "/dev/sub/dir/myfifo", "type": "p", "fileMode": 0o620, "uid": 5, "gid": 5},
]
KINDS = {"c": stat.S_ISCHR, "u": stat.S_ISCHR, "b": stat.S_ISBLK, "p": stat.S_ISFIFO}


def test_devices(rt, make_config, bundle):
    config = make_config(["sleep", "100"], linux__devices=DEVICES)
    cid, pid = started(rt, bundle, config)
    listing = rt.ok("exec", cid, "ls", "-ln", *(d["path"] for d in DEVICES)).stdout
    inside = {line.split()[-1]: line.split() for line in listing.splitlines()}
    for device in DEVICES:
        st = os.lstat(f"/proc/{pid}/root{device['path']}")
        assert KINDS[device["type"]](st.st_mode), device
        assert stat.S_IMODE(st.st_mode) == device["fileMode"], (device, oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (device.get("uid", 0), device.get("gid", 0)), device
        words = inside[device["path"]]
        assert words[2:4] == [str(device.get("uid", 0)), str(device.get("gid", 0))], words
        assert words[0][0] == {"c": "c", "u": "c", "b": "b", "p": "p"}[device["type"]]
        if device["type"] != "p":
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (
                device["major"], device["minor"]), device
            assert words[4:6] == [f"{device['major']},", str(device["minor"])], words


# --- a destination through a symlink ----------------------------------------------------------

def test_destination_through_a_symlink_stays_in_rootfs(rt, make_config, bundle, private_rootfs,
                                                       tmp_path):
    """rootfs/escape -> <host dir>: a tmpfs on /escape/deeper/sub lands in the rootfs at
    <host dir>/deeper/sub; neither the host directory nor the host's mount table change."""
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    os.symlink(str(host_dir), private_rootfs / "escape")
    config = make_config(["sleep", "100"], rootfs_path=private_rootfs, root__readonly=False)
    config["mounts"].append(tmpfs("/escape/deeper/sub", "size=64k"))
    _, pid = started(rt, bundle, config)
    assert mounts_under(tmp_path) == [], "a mount reached the host"
    assert os.listdir(host_dir) == [], "the host directory was written to"
    inside = host_mountinfo_of(pid)
    assert inside[f"{host_dir}/deeper/sub"]["fstype"] == "tmpfs"
    assert (private_rootfs / str(host_dir).lstrip("/") / "deeper" / "sub").is_dir()
    assert (private_rootfs / "escape").is_symlink()
