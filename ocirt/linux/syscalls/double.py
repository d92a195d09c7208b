"""The recording double of the binding layer: calls recorded instead of made.

    with syscalls.recording() as calls:
        plan.run_all(steps)
    assert calls.names() == ["mount", "pivot_root", "umount2"]

Inside the ``with``, every call of the binding layer (``ocirt.linux.syscalls`` itself and its
``capng``, ``seccomp`` and ``bpf`` modules: each lists its calls in ``CALLS``) is replaced by a
recorder: it notes the call's name (``mount``; ``capng.apply_sets`` for a module's), its
arguments and the plan Step running at the time (``ocirt.linux.plan.current_step``), and
returns a plausible result instead of calling the kernel: for a detached mount, a descriptor of
what it would show (``open_tree(path)``: ``path``; a new proc instance: ``/proc``; anything
else: ``/dev/null``), libcap-ng's capability numbers, a filter that allows everything from
libseccomp, and None where the call returns nothing. ``results`` overrides a call's result: a
value, an exception to raise, or a function of the call's arguments.

Calls that only look or move around (``openat2``, ``fstatfs_type``, ``os.chdir``,
``os.fchdir``: ``passthrough``) are recorded and also made, so paths still resolve inside a
test's rootfs (a test that runs them saves and restores its cwd); so is ``rename_exchange``,
which replaces the runtime's own state files where ``os.rename`` would. The functions of ``os`` that
change the calling process or need privilege (``OS_CALLS``: setresuid, setgroups, chroot,
dup2, closerange, mknod, chown, kill, umask, fork, execve, _exit...) are recorded as
``os.<name>`` and not made, so a phase can run inside a test process: ``os.mknod`` leaves an
empty file where the node would be; ``os.fork`` needs its result in ``results``;
``os.execve`` and ``os._exit`` raise ``Stopped`` (the process would not go on). Other ``os``
functions (open, mkdir, stat) still act, on the test's temporary directories.
Descriptors the double opened are closed when the ``with`` ends, unless the code closed them.
"""

from __future__ import annotations

import os
import stat
import sys

from ocirt.linux.syscalls import bpf, capng, mounts, seccomp, task
from ocirt.linux.syscalls.consts import PROC_SUPER_MAGIC, SECCOMP_FILTER_FLAG_NEW_LISTENER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType, TracebackType
    from typing import Any

# (module, prefix of the recorded name, the calls it binds); the package itself, whose
# re-exports of mounts and task callers use, is handed to the Recorder (it imports this module)
_BINDINGS: list[tuple[ModuleType, str, tuple[str, ...]]] = [
    (capng, "capng.", capng.CALLS),
    (seccomp, "seccomp.", seccomp.CALLS),
    (bpf, "bpf.", bpf.CALLS),
]
# libcap-ng's names, by number (linux/capability.h), for the capability calls.
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore"
)
# A classic BPF program of one instruction: return SECCOMP_RET_ALLOW.
ALLOW_ALL_BPF = bytes([0x06, 0, 0, 0, 0, 0, 0xFF, 0x7F])


# os functions that change the calling process or need privilege: recorded, and not made
# unless ``passthrough`` names them (by default os.chdir and os.fchdir are made).
OS_CALLS = ("setresuid", "setresgid", "setuid", "setgid", "setgroups", "initgroups", "setsid",
            "setpgid", "chroot", "chdir", "fchdir", "dup2", "closerange", "mknod", "chown",
            "fchown", "lchown", "kill", "killpg", "umask", "sched_setaffinity", "setpriority",
            "fork", "execve", "execv", "execvp", "execvpe", "_exit")
_NO_RETURN = ("os.execve", "os.execv", "os.execvp", "os.execvpe", "os._exit")


class RecordingError(Exception):
    """The double cannot make up a result for this call: give one in ``results``."""


class Stopped(BaseException):
    """Raised by ``os.execve`` and ``os._exit`` under the double: the process would not go on.
    ``call`` is the recorded call."""

    def __init__(self, call: Call) -> None:
        super().__init__(repr(call))
        self.call = call


class Call:
    """One recorded call: its name, arguments and the plan Step that was running."""

    __slots__ = ("args", "kwargs", "name", "step")

    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 step: object | None) -> None:
        self.name, self.args, self.kwargs, self.step = name, args, kwargs, step

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(shown)})"


class _Filter:
    """What ``seccomp.new_filter`` gives under the double: its methods are recorded too."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def add_arch(self, token: int) -> None:
        self._recorder.record("seccomp.Filter.add_arch", (token,), {})

    def add_rule(self, action: int, number: int,
                 conditions: list[tuple[int, int, int, int]]) -> None:
        self._recorder.record("seccomp.Filter.add_rule", (action, number, conditions), {})

    def export(self) -> bytes:
        result: bytes = self._recorder.record("seccomp.Filter.export", (), {})
        return result


class Recorder(list[Call]):
    """The calls made inside the ``with``, in order (a list of ``Call``)."""

    def __init__(self, results: dict[str, object], passthrough: tuple[str, ...],
                 package: ModuleType, os_calls: tuple[str, ...] = OS_CALLS) -> None:
        super().__init__()
        self.package = package  # ocirt.linux.syscalls
        self.results = dict(results)
        self.passthrough = passthrough
        self.os_calls = os_calls
        self._real_mknod = os.mknod
        self._saved: list[tuple[ModuleType, str, object]] = []
        self._fds: list[tuple[int, tuple[int, int]]] = []

    # -- what a test reads
    def names(self) -> list[str]:
        return [call.name for call in self]

    def of(self, name: str) -> list[Call]:
        """The calls of one name, in order."""
        return [call for call in self if call.name == name]

    def by_step(self) -> list[tuple[object | None, list[str]]]:
        """The call names grouped by the Step that made them, in order of the steps."""
        groups: list[tuple[object | None, list[str]]] = []
        for call in self:
            if not groups or groups[-1][0] is not call.step:
                groups.append((call.step, []))
            groups[-1][1].append(call.name)
        return groups

    # -- swapping the bindings
    def __enter__(self) -> Recorder:
        package = (self.package, "", mounts.CALLS + task.CALLS)
        for module, prefix, names in [package, *_BINDINGS]:
            for name in names:
                original = getattr(module, name)
                self._saved.append((module, name, original))
                setattr(module, name, self._recorder(prefix + name, original))
        for name in self.os_calls:
            original = getattr(os, name)
            self._saved.append((os, name, original))
            setattr(os, name, self._recorder("os." + name, original))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)
        self._saved.clear()
        for fd, identity in self._fds:
            try:
                info = os.fstat(fd)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == identity:
                os.close(fd)
        self._fds.clear()

    def _recorder(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        if name in self.passthrough and name not in self.results:
            def record(*args: Any, **kwargs: Any) -> Any:
                self.record(name, args, kwargs)
                return original(*args, **kwargs)
        else:
            def record(*args: Any, **kwargs: Any) -> Any:
                return self.record(name, args, kwargs)

        record.__name__ = record.__qualname__ = name
        return record

    def record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        plan = sys.modules.get("ocirt.linux.plan")
        self.append(Call(name, args, kwargs, getattr(plan, "current_step", None)))
        if name in self.results:
            result = self.results[name]
            if isinstance(result, BaseException):
                raise result
            return result(*args, **kwargs) if callable(result) else result
        if name in _NO_RETURN:
            raise Stopped(self[-1])
        return self._plausible(name, args, kwargs)

    def fake_fd(self, path: str = "/dev/null") -> int:
        """A real descriptor (O_PATH, of ``path``) standing for one the kernel would make."""
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        info = os.fstat(fd)
        self._fds.append((fd, (info.st_dev, info.st_ino)))
        return fd

    def _plausible(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name == "open_tree":
            return self.fake_fd(args[0])
        if name == "fsmount_new":
            return self.fake_fd("/proc" if args[0] == "proc" else "/dev/null")
        if name in ("openat2", "bpf.load", "bpf.fd_by_id"):
            return self.fake_fd()
        if name == "seccomp.install_filter":
            return self.fake_fd() if args[1] & SECCOMP_FILTER_FLAG_NEW_LISTENER else -1
        if name == "fstatfs_type":
            return PROC_SUPER_MAGIC
        if name == "prctl":
            return 0
        if name == "getrlimit":
            return (1024, 1024)
        if name == "os.mknod":  # a plain empty file where the node would be (unprivileged)
            path, mode = args[0], (args[1] if len(args) > 1 else 0o600)
            self._real_mknod(path, stat.S_IFREG | (mode & 0o777), dir_fd=kwargs.get("dir_fd"))
            return None
        if name == "os.umask":
            return 0o022
        if name == "os.fork":
            raise RecordingError("os.fork: the double does not fork; give its result in "
                                 "results (0: be the child, a pid: be the parent)")
        if name == "clone3":
            raise RecordingError("clone3: the double does not fork; give its result in "
                                 "results (0: be the child, a pid: be the parent)")
        if name == "capng.name_to_capability":
            return CAPABILITIES.index(args[0]) if args[0] in CAPABILITIES else -1
        if name == "capng.capability_to_name":
            return CAPABILITIES[args[0]] if 0 <= args[0] < len(CAPABILITIES) else None
        if name == "seccomp.flag_supported":
            return True
        if name == "seccomp.libseccomp_version":
            return "2.5.4"
        if name == "seccomp.resolve_name":
            return sum(args[0].encode()) % 400  # a stable made-up number per name
        if name == "seccomp.new_filter":
            return _Filter(self)
        if name == "seccomp.Filter.export":
            return ALLOW_ALL_BPF
        if name == "bpf.query":
            return []
        return None
