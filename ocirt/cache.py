"""On-disk caches (the compiled config validator, compiled seccomp filters): where, and how.

Both caches live under one directory (``cache_dir``): ``$OCIRT_CACHE_DIR`` if set, else
``/var/cache/ocirt`` for root, else ``$XDG_CACHE_HOME/ocirt`` (``~/.cache/ocirt``); both name
their entries by what the entry depends on (the seccomp filters by a ``sha256`` of the rules,
the validator by the identity of its source files). A cache file is only trusted when it
and its directory belong to us and nobody else can write them; it is written atomically (a
temporary file, then rename), and failing to write it is never an error: the caller just
compiles again next time.
"""

from __future__ import annotations

import os

from ocirt.errors import errno_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cache_dir() -> str:
    """Where compiled validators and filters are cached (see the module docstring)."""
    explicit = os.environ.get("OCIRT_CACHE_DIR")
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/var/cache/ocirt"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ocirt")


def sha256() -> Any:
    """sha256 from the built-in module: ``import hashlib`` loads OpenSSL (~5 ms)."""
    for module in ("_sha2", "_sha256", "hashlib"):  # 3.12+, 3.11, anything else
        try:
            return __import__(module).sha256()
        except (ImportError, AttributeError):
            continue
    raise ImportError("no sha256 implementation")


def read_trusted(path: str) -> bytes | None:
    """The file's bytes, or None when it is missing, unreadable or not safely ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        parent = os.stat(os.path.dirname(path))
        euid = os.geteuid()
        if (st.st_uid != euid or st.st_mode & 0o022 or parent.st_uid != euid
                or parent.st_mode & 0o022):
            return None
        chunks = []
        while chunk := os.read(fd, max(st.st_size, 65536)):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def write_atomic(path: str, data: bytes, dir_mode: int = 0o755, file_mode: int = 0o644
                 ) -> str | None:
    """Store ``data`` at ``path``; None on success, else why not (the errno text)."""
    directory = os.path.dirname(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, file_mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return errno_text(err)
    return None
