"""Reading and writing cgroup files, and the error that names the file, value and field."""

from __future__ import annotations

import errno
import os

from ocirt.errors import OcirtError


class CgroupError(OcirtError):
    """A cgroup file could not be read or written: names the file, the value, the config field
    it expresses and the errno as text (plus a hint where the cause is known)."""

    def __init__(self, action: str, path: str, err: OSError | None = None, field: str = "",
                 hint: str = "") -> None:
        text = f"cgroup: {action} {path}"
        if field:
            text += f" ({field})"
        if err is not None:
            code = errno.errorcode.get(err.errno or 0, str(err.errno))
            text += f": {err.strerror or os.strerror(err.errno or 0)} ({code})"
        if hint:
            text += f": {hint}"
        super().__init__(text)
        self.path = path
        self.errno = err.errno if err is not None else 0


def _read(path: str) -> str:
    """The whole file, through open/read/close (``open()`` adds an fstat, an ioctl, two lseeks
    and a text wrapper: ~25 reads of a ``run`` and ~20 of a ``delete``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def read_text(path: str) -> str:
    """A file's text, or "" when it cannot be read (for probes, not for what must exist)."""
    try:
        return _read(path)
    except OSError:
        return ""


def read_file(path: str, field: str = "") -> str:
    """A cgroup file's text, stripped; a missing or unreadable file is a ``CgroupError``."""
    try:
        return _read(path).strip()
    except OSError as err:
        raise CgroupError("reading", path, err, field) from err


def write_file(path: str, value: str, field: str = "", hint: str = "") -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as err:
        missing = err.errno == errno.ENOENT and os.path.isdir(os.path.dirname(path))
        raise CgroupError(f"writing {value!r} to", path, err, field,
                          hint or ("this kernel has no such cgroup file" if missing else "")
                          ) from err
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise CgroupError(f"writing {value!r} to", path, err, field, hint) from err
    finally:
        os.close(fd)
