"""The program a container process runs: found on its PATH, checked before the exec.

The last execve is made through the trampoline, where an error can no longer be reported to
the starter; so what can be checked before it (the file, its permission, its interpreter) is
checked here, with runc's words for each failure (managers such as podman map them to exit
codes 127 and 126).
"""

from __future__ import annotations

import _struct as struct  # struct.py only re-exports it, and costs a sys.path search (~0.15 ms)
import os
import stat

from ocirt.errors import ExecError


def find(name: str, path: str) -> str:
    """``name`` as execvp would find it on ``path`` (a name with a slash is taken as is)."""
    if "/" in name:
        return check_executable(name, name)
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            return check_executable(name, candidate)
        except ExecError:
            continue
    raise ExecError(f'exec: "{name}": executable file not found in $PATH')


def check_executable(name: str, path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as err:
        raise ExecError(f'exec: "{name}": stat {path}: {text(err)}') from err
    # plain access(2): a seccomp profile may allow faccessat but not faccessat2 (AT_EACCESS);
    # after the identity change real and effective ids are the same anyway
    if stat.S_ISDIR(st.st_mode) or not os.access(path, os.X_OK):
        raise ExecError(f'exec: "{name}": permission denied')
    return path


def check_interpreter(name: str, path: str) -> None:
    """The errors the final execve would meet for a missing interpreter, found beforehand.

    The trampoline makes that execve in a process that can no longer report to the starter; a
    ``#!`` line or ELF PT_INTERP naming a missing file is the common case, checked here.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return
    interpreter = b""
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        interpreter = words[0] if words else b""
    elif head.startswith(b"\x7fELF") and len(head) >= 64 and head[4] == 2:
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        for index in range(phnum):
            offset = phoff + index * phentsize
            if offset + 56 > len(head):
                break
            p_type, = struct.unpack_from("<I", head, offset)
            if p_type == 3:  # PT_INTERP
                start, = struct.unpack_from("<Q", head, offset + 8)  # p_offset
                size, = struct.unpack_from("<Q", head, offset + 32)  # p_filesz
                interpreter = head[start:start + size].rstrip(b"\0")
                break
    if interpreter and not os.path.exists(os.fsdecode(interpreter)):
        raise ExecError(f'exec: "{name}": no such file or directory')


def text(err: OSError) -> str:
    return (err.strerror or str(err)).lower()
