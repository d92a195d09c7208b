"""The runtime's error hierarchy: every failure a user can see is one of these.

Each error carries what was being done, on what, and why; the CLI prints ``str(err)`` as one
line (or one JSON log line) and exits with ``err.exit_code``. Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import errno as _errno
import posix  # not os: `state` never imports os (~1 ms), see docs/architecture.md


class OcirtError(Exception):
    """Base class: a message meant for the user and an exit code."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(OcirtError):
    """config.json is unreadable, not JSON, or does not match the schema.

    ``where`` is the JSON path (``$.process.args[0]``) or ``line:column`` for a parse error.
    """

    def __init__(self, where: str, what: str, file: str = "config.json") -> None:
        super().__init__(f"{file}: {where}: {what}")
        self.where = where
        self.what = what


class ContainerNotFound(OcirtError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container does not exist: {container_id}")
        self.container_id = container_id


class ContainerExists(OcirtError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id exists: {container_id}")


class InvalidID(OcirtError):
    pass


class StateError(OcirtError):
    """An operation is not allowed in the container's current status."""


class NotRunning(StateError):
    """Worded as runc words it; managers (containerd, conmon) match this text."""

    def __init__(self) -> None:
        super().__init__("container not running")


class SyscallError(OcirtError, OSError):
    """A kernel call failed: names the call, its arguments and the errno's name and text.

    ``call`` is the call as made (``mount('proc', '/x/proc', 'proc', 0xe, None)``); ``detail``
    what it was for. Also an ``OSError`` with ``errno`` and ``strerror``, of the subclass Python
    gives that errno (``FileNotFoundError`` for ENOENT...), so code that handles a failure by
    its errno treats it as it would the ``os`` module's. The CLI prints ``str(err)``:
    ``<detail>: <call>: <strerror> (<ERRNO>)``.
    """

    def __new__(cls, call: str, err: int, detail: str = "", hint: str = "") -> SyscallError:
        kind = _OS_ERRORS.get(err) if cls is SyscallError else None
        if kind is not None:
            cls = _with_errno_class(kind)
        self: SyscallError = OSError.__new__(cls)
        return self

    def __init__(self, call: str, err: int, detail: str = "", hint: str = "") -> None:
        name = _errno.errorcode.get(err, str(err))
        text = f"{call}: {posix.strerror(err)} ({name})"
        if detail:
            text = f"{detail}: {text}"
        super().__init__(f"{text}: {hint}" if hint else text)
        self.errno = err
        self.strerror = posix.strerror(err)
        self.call = call
        self.detail = detail

    def __str__(self) -> str:
        return self.message

    @classmethod
    def of(cls, call: str, err: OSError, detail: str = "", hint: str = "") -> SyscallError:
        """The same shape for an ``OSError`` raised by Python's ``os`` functions (``call`` says
        which, with its arguments); a ``SyscallError`` keeps the call it already names."""
        if isinstance(err, SyscallError):
            call = err.call
            detail = f"{detail}: {err.detail}" if detail and err.detail else detail or err.detail
        return cls(call, err.errno or _errno.EIO, detail, hint)


_OS_ERRORS: dict[int, type[OSError]] = {
    _errno.ENOENT: FileNotFoundError, _errno.EEXIST: FileExistsError,
    _errno.ENOTDIR: NotADirectoryError, _errno.EISDIR: IsADirectoryError,
    _errno.EACCES: PermissionError, _errno.EPERM: PermissionError,
    _errno.ESRCH: ProcessLookupError, _errno.EINTR: InterruptedError,
    _errno.EAGAIN: BlockingIOError, _errno.ECHILD: ChildProcessError,
    _errno.EPIPE: BrokenPipeError, _errno.ETIMEDOUT: TimeoutError,
}
_ERRNO_CLASSES: dict[type[OSError], type[SyscallError]] = {}


def _with_errno_class(kind: type[OSError]) -> type[SyscallError]:
    """SyscallError that is also ``kind`` (made once per kind)."""
    made = _ERRNO_CLASSES.get(kind)
    if made is None:
        made = _ERRNO_CLASSES[kind] = type("SyscallError", (SyscallError, kind), {})
    return made


class ExecError(OcirtError):
    """The user's program cannot be run; worded like runc so managers map 127/126."""


class UnsupportedError(OcirtError):
    """The config asks for something this kernel or host cannot do."""


class AccessError(OcirtError):
    """The kernel said EPERM or EACCES: what ocirt was doing, on what, and what to do."""

    def __init__(self, doing: str, path: str, err: OSError, hint: str) -> None:
        code = _errno.errorcode.get(err.errno or 0, str(err.errno))
        super().__init__(f"{doing} {path}: {err.strerror or posix.strerror(err.errno or 0)} "
                         f"({code}): {hint}")
        self.errno = err.errno


def errno_text(err: OSError) -> str:
    """``No such file or directory (ENOENT)``: an OSError's text and errno name, for a message
    about a failure whose call is not known here (where it is, raise ``SyscallError``)."""
    if err.errno is None:
        return str(err)
    name = _errno.errorcode.get(err.errno, str(err.errno))
    return f"{err.strerror or posix.strerror(err.errno)} ({name})"


def state_root_hint(root: str) -> str:
    """What to do when the state root is out of this user's reach."""
    return (f"uid {posix.geteuid()} may not use the state root {root}: pass --root a directory "
            "this user owns (the default is /run/ocirt for root, $XDG_RUNTIME_DIR/ocirt "
            "otherwise), or run as the user that created the container")


def is_denied(err: OSError) -> bool:
    return err.errno in (_errno.EACCES, _errno.EPERM)


def access_hint(err: OSError, what: str = "a path") -> str:
    """``": <what to do>"`` for a denial, empty otherwise: appended to an error's text."""
    if not is_denied(err):
        return ""
    from ocirt.identity import host_uid, running_rootless  # a failure's: not on the hot path

    if running_rootless():
        return (f": uid {host_uid()} may not reach it: use {what} this user may use, or "
                "give the user access (docs/rootless.md)")
    return ": denied to root too: check the mount (read-only, nosuid) and security modules"


class StateDamaged(OcirtError):
    """A container's state file cannot be used: names the file and what is wrong with it."""

    def __init__(self, container_id: str, path: str, what: str) -> None:
        super().__init__(f"container {container_id}: state file {path} is damaged: {what} "
                         f"(`delete --force {container_id}` removes what it can find)")
        self.container_id = container_id
        self.path = path
        self.what = what
