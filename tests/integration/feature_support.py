"""Helpers shared by the per-feature integration tests (exec, terminal, hooks, userns, ...).

``support`` and ``conftest`` give the runtime under test, configs and the host checks; this
module adds what several feature files need on top: a container that runs, namespace and
/proc/<pid>/status readings from outside, runtime calls in the background and a namespace of
the tests' own for the runtime. A subreaper caller is in ``feature_subreaper``, the
console-socket listener and the pseudo-terminal driver in ``feature_terminals``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from .support import Runtime, parse_mountinfo_text, wait_for

# OCI namespace type -> name under /proc/<pid>/ns
NS_NAMES = {"pid": "pid", "mount": "mnt", "network": "net", "ipc": "ipc", "uts": "uts",
            "cgroup": "cgroup", "user": "user", "time": "time"}


# --- containers -------------------------------------------------------------------------------

def run_ok(rt, bundle, config, *options, name="bundle"):
    """``run`` in the foreground; the container's stdout."""
    cid = rt.new_id()
    result = rt("run", *options, "--bundle", str(bundle(config, name)), cid)
    assert result.returncode == 0, result
    return result.stdout


def started(rt, bundle, config, name="bundle", *options):
    """create + start a container (meant to keep running): (id, host pid of its process)."""
    cid = rt.new_id(name[:8])
    rt.ok("create", "--bundle", str(bundle(config, name)), *options, cid)
    rt.ok("start", cid)
    state = rt.state(cid)
    assert state["status"] == "running", state
    return cid, state["pid"]


def with_namespaces(config, kinds, joins=None):
    """Replace linux.namespaces: new ones of ``kinds``, joined ones from ``joins``."""
    config["linux"]["namespaces"] = [{"type": kind} for kind in kinds]
    for kind, path in (joins or {}).items():
        config["linux"]["namespaces"].append({"type": kind, "path": path})
    if "uts" not in kinds:
        config.pop("hostname", None)
    return config


def with_userns(config, uid_maps=((0, 100000, 65536),), gid_maps=None):
    """Add a new user namespace with these (containerID, hostID, size) ranges."""
    def ranges(maps):
        return [{"containerID": c, "hostID": h, "size": s} for c, h, s in maps]

    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = ranges(uid_maps)
    config["linux"]["gidMappings"] = ranges(gid_maps if gid_maps is not None else uid_maps)
    return config


@pytest.fixture(scope="session")
def open_rootfs(rootfs):
    """The shared rootfs copied where every user may pass: in a user namespace the container's
    root is an unprivileged host uid, which must reach the rootfs (and any bind source)."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-it-open-"))
    top.chmod(0o755)
    path = top / "rootfs"
    subprocess.run(["cp", "-a", str(rootfs), str(path)], check=True)
    (path / "mnt" / "file").touch()  # a mount point for a bind-mounted file
    yield path
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def open_out():
    """A directory for /out that a user namespace's root can reach (mode 0777, under /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="ocirt-it-out-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def userns_config(make_config, open_rootfs, open_out, args, uid_maps=((0, 100000, 65536),),
                  gid_maps=None, **overrides):
    """A config with a new user namespace, the ``open_rootfs`` and ``open_out`` on /out."""
    from .support import bind_mount

    config = make_config(args, out=False, rootfs_path=open_rootfs, **overrides)
    config["mounts"].append(bind_mount(open_out, "/out"))
    return with_userns(config, uid_maps, gid_maps)


# --- the host's view of a process -------------------------------------------------------------

def ns_links(pid):
    """Every namespace of ``pid`` the kernel has: name -> inode."""
    return {name: os.stat(f"/proc/{pid}/ns/{name}").st_ino
            for name in NS_NAMES.values() if os.path.exists(f"/proc/{pid}/ns/{name}")}


def status_fields(text):
    """/proc/<pid>/status text -> key -> list of words."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def status_of(pid):
    return status_fields(Path(f"/proc/{pid}/status").read_text())


def id_map(pid, name):
    """/proc/<pid>/uid_map (or gid_map) as a list of (inside, outside, size)."""
    lines = Path(f"/proc/{pid}/{name}").read_text().splitlines()
    return [tuple(int(word) for word in line.split()) for line in lines]


def limits_of(pid):
    """/proc/<pid>/limits -> name ("Max open files") -> (soft, hard) as text."""
    result = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name = line[:26].strip()
        soft, hard = line[26:].split()[:2]
        result[name] = (soft, hard)
    return result


def host_mountinfo_of(pid):
    """The mount table of ``pid`` read from outside, paths as the process sees them."""
    return parse_mountinfo_text(Path(f"/proc/{pid}/mountinfo").read_text())


def mounts_under(*paths):
    """The host's mount points at or below any of ``paths``: what a test may compare before
    and after without other tests' mounts elsewhere on the host getting in the way."""
    from .support import mount_points

    tops = [str(path).rstrip("/") for path in paths]
    return sorted(point for point in mount_points()
                  if any(point == top or point.startswith(top + "/") for top in tops))


_IOPRIO_GET = 252  # x86_64
_IOPRIO_WHO_PROCESS = 1


def ioprio_get(pid):
    """(class, level) of ``pid``'s I/O priority, as ioprio_get(2) reports it."""
    libc = ctypes.CDLL(None, use_errno=True)
    value = libc.syscall(_IOPRIO_GET, _IOPRIO_WHO_PROCESS, pid)
    if value < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return value >> 13, value & 0x1FFF


class Background:
    """Runtime calls left running in the background (``exec`` in the foreground of a runtime
    that waits for its process, which it also reaps). ``stop`` kills what is left."""

    def __init__(self, rt):
        self.rt = rt
        self.procs = []

    def exec(self, cid, tmp_path, *args, options=()):
        """``exec --pid-file`` of ``args`` (a sleeper by default) in the background: the host
        pid of the new process, once it runs."""
        pid_file = tmp_path / f"exec-{len(self.procs)}.pid"
        log = tmp_path / f"exec-{len(self.procs)}.log"
        argv = self.rt.argv("exec", "--pid-file", str(pid_file), *options, cid,
                            *(args or ("sleep", "100")))
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=self.rt.env)
        self.procs.append((proc, pid_file))

        def pid_or_exit():
            if proc.poll() is not None:
                pytest.fail(f"{argv} exited ({proc.returncode}): {log.read_text()}")
            text = pid_file.read_text().strip() if pid_file.exists() else ""
            return int(text) if text else None

        return wait_for(pid_or_exit, what="the exec'd process's pid file")

    def stop(self):
        for proc, pid_file in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def background(rt):
    keeper = Background(rt)
    yield keeper
    keeper.stop()


def unquote(text):
    """runc logs through logrus, which escapes quotes: exec: \\"x\\" -> exec: "x"."""
    return text.replace('\\"', '"')


# --- a namespace of the tests' own for the runtime ------------------------------------------

NSENTER_OPTION = {"mnt": "--mount", "net": "--net"}


class NamespaceHolder:
    """A process alone in a new namespace of kind ``name`` (``mnt`` private, or ``net``), made
    for one test with unshare and ended by pid; ``runtime(base)`` runs the runtime there."""

    def __init__(self, name: str) -> None:
        self.name = name
        extra = ["--propagation", "private"] if name == "mnt" else []
        self.proc = subprocess.Popen(["unshare", NSENTER_OPTION[name], *extra, "sleep", "600"])
        self.pid = self.proc.pid
        wait_for(lambda: ns_links(self.pid).get(name) != ns_links("self")[name], 3.0,
                 what=f"the holder's {name} namespace")

    def nsenter(self) -> list[str]:
        return ["nsenter", f"{NSENTER_OPTION[self.name]}=/proc/{self.pid}/ns/{self.name}", "--"]

    def runtime(self, base: Runtime) -> Runtime:
        holder = self

        class Entered(Runtime):
            def argv(self, *args, global_opts=()):
                return [*holder.nsenter(), *super().argv(*args, global_opts=global_opts)]

        entered = Entered(base.root, base.token)
        entered.ids = base.ids  # one list: the base's cleanup sees these IDs too
        return entered

    def end(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def private_mount_ns():
    """A private mount namespace made for one test, where the runtime runs: a test file of
    containers without a mount namespace of their own takes it as its ``holder_ns``."""
    holder = NamespaceHolder("mnt")
    yield holder
    holder.end()


@pytest.fixture
def holder(holder_ns):
    """The pid of the test's ``holder_ns`` (a NamespaceHolder fixture of the test file)."""
    return holder_ns.pid


@pytest.fixture
def ns_runtime(rt, holder_ns):
    """The runtime under test, run inside the test's ``holder_ns``; its containers are
    force-deleted there, before the holder goes."""
    runtime = holder_ns.runtime(rt)
    yield runtime
    problems = runtime.cleanup()
    assert not problems, problems
