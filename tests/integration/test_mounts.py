"""Mounts: the defaults, config mounts and their flags, devices, a read-only root, pivot and
no-pivot, symlinks that try to lead a mount out of the rootfs; the host's mounts untouched."""

from __future__ import annotations

import os
import subprocess

import pytest

from .support import IS_OCIRT, ROOT_MARKS, bind_mount, host_mounts, parse_mountinfo_text

pytestmark = ROOT_MARKS


def run_ok(rt, bundle, config, *options, name="bundle"):
    cid = rt.new_id()
    result = rt("run", *options, "--bundle", str(bundle(config, name)), cid)
    assert result.returncode == 0, result
    return result.stdout


def container_mountinfo(rt, make_config, bundle, *options, **overrides):
    return parse_mountinfo_text(run_ok(rt, bundle, make_config(
        ["cat", "/proc/self/mountinfo"], **overrides), *options))


@pytest.mark.parametrize("no_pivot", [False, True], ids=["pivot", "no-pivot"])
def test_default_mounts(rt, make_config, bundle, no_pivot):
    mounts = container_mountinfo(rt, make_config, bundle, *(["--no-pivot"] if no_pivot else []))
    expected = {
        "/proc": ("proc", set()),
        "/dev": ("tmpfs", {"nosuid"}),
        "/dev/pts": ("devpts", {"nosuid", "noexec"}),
        "/dev/shm": ("tmpfs", {"nosuid", "nodev", "noexec"}),
        "/dev/mqueue": ("mqueue", {"nosuid", "nodev", "noexec"}),
        "/sys": ("sysfs", {"ro", "nosuid", "nodev", "noexec"}),
    }
    for point, (fstype, flags) in expected.items():
        assert point in mounts, f"{point} is not mounted: {sorted(mounts)}"
        assert mounts[point]["fstype"] == fstype, (point, mounts[point])
        assert flags <= mounts[point]["options"], (point, mounts[point])
    assert "/" in mounts
    assert "ro" in mounts["/"]["options"], "root.readonly is true"
    assert mounts["/out"]["options"] >= {"rw"}
    # Nothing of the host's mount table is visible: every mount point is one the config made.
    made = {"/", "/out", "/sys/fs/cgroup", *expected}
    stray = [point for point in mounts if point not in made
             and not point.startswith(("/sys/fs/cgroup/", "/proc/", "/sys/firmware"))]
    assert not stray, stray


def test_masked_and_readonly_paths(rt, make_config, bundle):
    program = ("cat /proc/self/mountinfo; echo ---; wc -c < /proc/keys; "
               "echo 1 > /proc/sys/kernel/domainname && echo proc-sys-writable; "
               "ls /sys/firmware | wc -l")
    output = run_ok(rt, bundle, make_config(["sh", "-c", program]))
    table, _, rest = output.partition("---\n")
    mounts = parse_mountinfo_text(table)
    assert "ro" in mounts["/proc/sys"]["options"]
    assert mounts["/sys/firmware"]["fstype"] == "tmpfs"
    assert "/proc/keys" in mounts
    lines = rest.split()
    assert lines[0] == "0", "/proc/keys is masked"
    assert "proc-sys-writable" not in rest
    assert lines[-1] == "0", "/sys/firmware is masked by an empty tmpfs"


def test_device_nodes(rt, make_config, bundle):
    devices = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
               "urandom": (1, 9), "tty": (5, 0)}
    paths = " ".join(f"/dev/{name}" for name in devices)
    output = run_ok(rt, bundle, make_config(
        ["sh", "-c", f"stat -c '%n %t %T %a %F %u %g' {paths} /dev/mine; "
                     "echo x > /dev/null && head -c 4 /dev/zero | wc -c"],
        linux__devices=[{"path": "/dev/mine", "type": "c", "major": 10, "minor": 229,
                         "fileMode": 0o620, "uid": 0, "gid": 0}]))
    lines = output.splitlines()
    seen = {}
    for line in lines[:-1]:
        name, major, minor, mode, *kind = line.split()
        seen[name] = (int(major, 16), int(minor, 16), mode, " ".join(kind[:-2]))
    for name, (major, minor) in devices.items():
        assert seen[f"/dev/{name}"] == (major, minor, "666", "character special file"), name
    assert seen["/dev/mine"] == (10, 229, "620", "character special file")
    assert lines[-1] == "4"


def test_dev_symlinks(rt, make_config, bundle):
    links = ["/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/ptmx"]
    output = run_ok(rt, bundle, make_config(
        ["sh", "-c", " ".join(f"readlink {link};" for link in links)]))
    assert output.split() == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                              "/proc/self/fd/2", "pts/ptmx"]


def test_bind_mounts_and_their_flags(rt, make_config, bundle, tmp_path):
    rw, ro, opts = (tmp_path / name for name in ("rw", "ro", "opts"))
    for path in (rw, ro, opts):
        path.mkdir()
    (ro / "file").write_text("read me\n")
    program = ("cat /proc/self/mountinfo; echo ---; echo written > /mnt/bind/new; "
               "cat /mnt/ro/file; echo x > /mnt/ro/other || echo ro-refused")
    config = make_config(["sh", "-c", program])
    config["mounts"] += [bind_mount(rw, "/mnt/bind"), bind_mount(ro, "/mnt/ro", "ro"),
                         bind_mount(opts, "/mnt/opts", "nosuid", "nodev", "noexec")]
    output = run_ok(rt, bundle, config)
    table, _, rest = output.partition("---\n")
    mounts = parse_mountinfo_text(table)
    assert "rw" in mounts["/mnt/bind"]["options"]
    assert "ro" in mounts["/mnt/ro"]["options"]
    assert {"nosuid", "nodev", "noexec"} <= mounts["/mnt/opts"]["options"]
    assert "ro" not in mounts["/mnt/opts"]["options"]
    assert rest.split("\n")[:2] == ["read me", "ro-refused"]
    assert (rw / "new").read_text() == "written\n"
    assert not (ro / "other").exists()


def test_bind_source_relative_to_bundle(rt, make_config, bundle, tmp_path):
    data = tmp_path / "bundle" / "data"
    data.mkdir(parents=True)
    (data / "hello").write_text("from the bundle\n")
    config = make_config(["cat", "/mnt/bind/hello"])
    config["mounts"].append({"destination": "/mnt/bind", "type": "bind", "source": "data",
                             "options": ["rbind", "ro"]})
    assert run_ok(rt, bundle, config) == "from the bundle\n"


def test_tmpfs_with_size_and_mode(rt, make_config, bundle):
    program = "cat /proc/self/mountinfo; echo ---; stat -c %a /mnt/tmpfs"
    config = make_config(["sh", "-c", program])
    config["mounts"].append({"destination": "/mnt/tmpfs", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev", "size=1m", "mode=0710"]})
    table, _, rest = run_ok(rt, bundle, config).partition("---\n")
    entry = parse_mountinfo_text(table)["/mnt/tmpfs"]
    assert entry["fstype"] == "tmpfs"
    assert {"size=1024k", "mode=710"} <= entry["super"]
    assert {"nosuid", "nodev"} <= entry["options"]
    if IS_OCIRT:  # runc gives the tmpfs the mode of the directory it covers (0755 here)
        assert rest.strip() == "710"


def test_mount_destination_created_in_rootfs(rt, make_config, bundle, private_rootfs):
    config = make_config(["sh", "-c", "touch /made/by/runtime/f && echo ok"],
                         rootfs_path=private_rootfs)
    config["mounts"].append({"destination": "/made/by/runtime", "type": "tmpfs",
                             "source": "tmpfs", "options": ["size=64k"]})
    assert run_ok(rt, bundle, config) == "ok\n"
    assert (private_rootfs / "made" / "by" / "runtime").is_dir()


@pytest.mark.parametrize("readonly", [True, False])
def test_root_readonly(rt, make_config, bundle, private_rootfs, readonly):
    program = "touch /created-by-container && echo wrote || echo refused"
    config = make_config(["sh", "-c", program], rootfs_path=private_rootfs,
                         root__readonly=readonly)
    output = run_ok(rt, bundle, config)
    assert output.strip() == ("refused" if readonly else "wrote")
    assert (private_rootfs / "created-by-container").exists() is not readonly


def test_no_pivot(rt, make_config, bundle, out_dir):
    program = "echo $$ > /out/pid; ls / > /out/root; cat /proc/self/mountinfo"
    output = run_ok(rt, bundle, make_config(["sh", "-c", program]), "--no-pivot")
    assert (out_dir / "pid").read_text() == "1\n"
    assert set((out_dir / "root").read_text().split()) >= {"bin", "dev", "etc", "proc", "out"}
    mounts = parse_mountinfo_text(output)
    assert "/proc" in mounts and "/out" in mounts


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_symlink_destination_stays_in_rootfs(rt, make_config, bundle, private_rootfs,
                                             out_dir, tmp_path, kind):
    """rootfs/evil -> <host dir>: a mount on /evil must land in the rootfs, not on the host."""
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    target = str(host_dir) if kind == "absolute" else "../" * 20 + str(host_dir).lstrip("/")
    os.symlink(target, private_rootfs / "evil")
    before = host_mounts((f"{tmp_path}/", f"{rt.root}/"))
    program = "echo inside > /evil/written; cat /proc/self/mountinfo"
    config = make_config(["sh", "-c", program], rootfs_path=private_rootfs, root__readonly=False)
    config["mounts"].append(bind_mount(out_dir, "/evil"))
    output = run_ok(rt, bundle, config)
    assert os.listdir(host_dir) == [], "the mount reached the host directory"
    assert (out_dir / "written").read_text() == "inside\n", "the mount is not where /evil leads"
    mounts = parse_mountinfo_text(output)
    assert str(host_dir) in mounts, "the mount point is the symlink's target inside the rootfs"
    assert (private_rootfs / "evil").is_symlink(), "the symlink itself was replaced"
    assert host_mounts((f"{tmp_path}/", f"{rt.root}/")) == before


def test_dotdot_destination_stays_in_rootfs(rt, make_config, bundle, private_rootfs, out_dir,
                                            tmp_path):
    host_dir = tmp_path / "hostdir2"
    host_dir.mkdir()
    destination = "/../../../../../.." + str(host_dir)
    config = make_config(["sh", "-c", f"echo inside > {host_dir}/written"],
                         rootfs_path=private_rootfs, root__readonly=False)
    config["mounts"].append(bind_mount(out_dir, destination))
    run_ok(rt, bundle, config)
    assert os.listdir(host_dir) == []
    assert (out_dir / "written").read_text() == "inside\n"


def test_host_mounts_unchanged(rt, make_config, bundle, tmp_path, rootfs):
    ours = (f"{tmp_path}/", f"{rt.root}/", f"{rootfs}/")
    before = host_mounts(ours)
    config = make_config(["sh", "-c", "mount -t tmpfs none /mnt/tmpfs 2>/dev/null; true"])
    config["mounts"].append(bind_mount(tmp_path, "/mnt/bind"))
    cid = rt.new_id()
    rt.create(cid, bundle(config))
    assert host_mounts(ours) == before, "create changed the host's mounts"
    rt.ok("start", cid)
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert host_mounts(ours) == before


def test_relative_root_path(rt, make_config, bundle, busybox_rootfs, tmp_path):
    path = tmp_path / "relbundle"
    path.mkdir()
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(path / "rootfs")], check=True)
    config = make_config(["sh", "-c", "echo $$; cat /etc/hostname"], out=False,
                         root__path="rootfs")
    cid = rt.new_id()
    result = rt("run", "--bundle", str(bundle(config, "relbundle")), cid)
    assert result.returncode == 0, result
    assert result.stdout == "1\nocirt-busybox\n"


def test_bind_mount_a_file(rt, make_config, bundle, private_rootfs, tmp_path):
    source = tmp_path / "file.conf"
    source.write_text("from the host\n")
    config = make_config(["sh", "-c", "cat /etc/bound.conf; echo x >> /etc/bound.conf "
                                      "|| echo refused"], rootfs_path=private_rootfs)
    config["mounts"].append(bind_mount(source, "/etc/bound.conf", "ro"))
    assert run_ok(rt, bundle, config) == "from the host\nrefused\n"
    assert (private_rootfs / "etc" / "bound.conf").is_file()
    assert source.read_text() == "from the host\n"


def test_mount_destination_with_a_space(rt, make_config, bundle, private_rootfs):
    config = make_config(["sh", "-c", "touch '/mnt/with space/f' && cat /proc/self/mountinfo"],
                         rootfs_path=private_rootfs)
    config["mounts"].append({"destination": "/mnt/with space", "type": "tmpfs",
                             "source": "tmpfs", "options": ["size=64k"]})
    mounts = parse_mountinfo_text(run_ok(rt, bundle, config))
    assert mounts["/mnt/with space"]["fstype"] == "tmpfs"
