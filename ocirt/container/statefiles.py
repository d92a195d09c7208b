"""Writing files of a container's state directory: one step each, never a torn file.

``write_atomic`` replaces a file through a temporary one in the same directory (state.json,
cleanup.json, the pid file); ``write_pid_file`` is ``--pid-file``. Only the commands that change
a container load this module: reading a state (``state``) never writes.
"""

from __future__ import annotations

import sys

from ocirt import paths
from ocirt.errors import SyscallError, access_hint


def write_atomic(path: str, data: bytes, mode: int = 0o600, sync: bool = False,
                 exchange: bool = False) -> None:
    """Replace ``path`` with ``data`` as one step: a temporary file in the same directory,
    written in full, then renamed over ``path``, so a reader or a writer killed at any moment
    leaves the old content or the new, never a part. ``sync`` also fsyncs it before the rename
    (for a machine crash). State files are not synced: measured, four fsyncs made ``run`` 18-22 %
    slower on a busy disk, and after a machine crash no container is left alive while a torn
    file is the damaged state that ``delete --force`` handles.

    ``exchange`` (a regular file of ours that may exist, such as state.json): where the binding
    layer is loaded (create, run), an existing file is replaced by swapping the two names
    (renameat2 RENAME_EXCHANGE), then the temporary name, now the old content, is unlinked.
    The same one step for readers, but on ext4 a rename over an existing file makes the kernel
    write the new file's data out at once (auto_da_alloc), and unlinking it later waits for
    that write: ~0.3 ms a file on a quiet disk, ms on a busy one, for files that live 40 ms.
    """
    import os

    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    # Not imported here: `start` and `kill` keep the binding layer out (docs/architecture.md
    # "Speed").
    syscalls = sys.modules.get("ocirt.linux.syscalls") if exchange else None
    if syscalls is not None:
        try:
            syscalls.rename_exchange(tmp, path)
        except OSError:  # SyscallError: no such file yet (ENOENT), or unsupported (EINVAL)
            pass
        else:
            os.unlink(tmp)
            return
    os.rename(tmp, path)


def write_pid_file(path: str, pid: int) -> None:
    """Write ``--pid-file`` atomically, as runc does (managers read it as soon as it exists)."""
    path = paths.abspath(path)
    try:
        write_atomic(path, str(pid).encode(), 0o644)
    except OSError as err:
        raise SyscallError.of(f"write({path!r}) and rename", err, f"writing pid file {path}",
                              access_hint(err, "a pid file in a directory").removeprefix(": ")
                              ) from err
