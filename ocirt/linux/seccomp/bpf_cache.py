"""The cache of compiled seccomp programs, as crun keeps one.

A program is stored as ``<cache_dir>/seccomp/<key>.bpf``, the key being a sha256 of the canonical
JSON of what the program depends on (the rules, the default action, the architectures), the
compiler's version, the libseccomp version, the machine and the kernel release. A cache that
cannot be read or written (foreign owner, group/world writable, read-only disk) only costs
speed; it keeps the newest ``CACHE_ENTRIES`` programs.
"""

from __future__ import annotations

import os

from ocirt import jsonfast, log
from ocirt.cache import cache_dir, read_trusted, sha256, write_atomic
from ocirt.linux.seccomp.compile import libseccomp_version
from ocirt.linux.seccomp.rules import BPF_MAXINSNS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Bump when the way a profile is compiled changes: old cache entries then miss.
_COMPILER_VERSION = "1"
CACHE_ENTRIES = 256


def default_cache_dir() -> str:
    return os.path.join(cache_dir(), "seccomp")


def cache_key(profile: dict[str, Any]) -> str:
    """What the BPF program of ``profile`` depends on, hashed."""
    relevant = {k: profile.get(k) for k in
                ("defaultAction", "defaultErrnoRet", "architectures", "syscalls")}
    digest = sha256()
    digest.update(jsonfast.dumps(relevant, compact=True, sort_keys=True).encode())
    uname = os.uname()
    digest.update(f"\0{_COMPILER_VERSION}\0{libseccomp_version()}\0{uname.machine}\0"
                  f"{uname.release}".encode())
    hexdigest: str = digest.hexdigest()
    return hexdigest


def read_cached(path: str) -> bytes | None:
    """The cached program, if the file is safely ours (see ``ocirt.cache``) and whole."""
    bpf = read_trusted(path)
    if not bpf or len(bpf) % 8 or len(bpf) > BPF_MAXINSNS * 8:
        return None
    return bpf


def write_cache(path: str, bpf: bytes) -> None:
    """Store atomically (temp file + rename); failing to is only logged."""
    directory = os.path.dirname(path)
    why = write_atomic(path, bpf, dir_mode=0o700, file_mode=0o600)
    if why is not None:
        log.current.debug(f"seccomp: cannot cache the filter in {directory}: {why}")
        return
    _evict(directory)


def _evict(directory: str) -> None:
    """Keep the newest ``CACHE_ENTRIES`` programs (only on a miss, so hits stay cheap)."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".bpf")]
        if len(names) <= CACHE_ENTRIES:
            return
        aged = sorted(names, key=lambda n: os.stat(os.path.join(directory, n)).st_mtime)
        for name in aged[:len(names) - CACHE_ENTRIES]:
            os.unlink(os.path.join(directory, name))
    except OSError:
        pass
