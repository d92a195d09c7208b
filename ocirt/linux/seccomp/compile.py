"""seccomp rules compiled to classic BPF by libseccomp, through pyseccomp.

Only a cache miss comes here for the program: ``pyseccomp`` costs ~20 ms to import (plus an
``ldconfig`` run), so it is imported inside ``compile_bpf`` and nowhere else. What a cache hit
needs of libseccomp (its version for the cache key, the names it knows for the debug log) is
asked of the library directly, with a dlopen.

Behaviour follows runc where the spec is silent: a syscall name libseccomp does not know is
skipped with a debug log line; a rule whose action equals the default action is skipped (libseccomp
refuses it); several conditions on the same argument become one rule per condition (OR); an
architecture this libseccomp cannot encode is left out (its syscalls then meet the bad-arch
action, which kills).
"""

from __future__ import annotations

import ctypes
import os

from ocirt import log
from ocirt.errors import ConfigError, OcirtError
from ocirt.linux.seccomp.rules import ARCHES, BPF_MAXINSNS, Rule

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NR_SCMP_ERROR = -1  # what libseccomp resolves an unknown syscall name to
_version: str | None = None
_lib: ctypes.CDLL | None = None


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as err:
            raise OcirtError(f"loading libseccomp (package libseccomp2): {err}") from err
    return _lib


def libseccomp_version() -> str:
    """"2.5.4": asked of libseccomp itself (a dlopen, not the pyseccomp import)."""
    global _version
    if _version is None:
        class Version(ctypes.Structure):
            _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint),
                        ("micro", ctypes.c_uint)]

        lib = _libseccomp()
        lib.seccomp_version.restype = ctypes.POINTER(Version)
        v = lib.seccomp_version().contents
        _version = f"{v.major}.{v.minor}.{v.micro}"
    return _version


def log_unknown_names(rules: list[Rule], where: str) -> None:
    """Debug-log the names libseccomp does not know, as compiling would (for a cache hit)."""
    lib = _libseccomp()
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    for rule in rules:
        for j, name in enumerate(rule.names):
            if lib.seccomp_syscall_resolve_name(name.encode()) == _NR_SCMP_ERROR:
                log.current.debug(f"seccomp: unknown syscall {name!r} "
                                  f"({where}.syscalls[{rule.index}].names[{j}]) ignored")


def compile_bpf(default_name: str, default_action: int, arches: list[str], rules: list[Rule],
                where: str) -> bytes:
    """Compile a checked profile (at JSON path ``where``) with libseccomp into raw BPF."""
    import pyseccomp

    debug = log.current.debug
    try:
        compiled = pyseccomp.SyscallFilter(default_action)
    except OSError as err:
        raise ConfigError(f"{where}.defaultAction",
                          f"libseccomp refused {default_name!r}: {err.strerror}") from None
    for i, arch in enumerate(arches):
        try:
            compiled.add_arch(ARCHES[arch])
        except OSError as err:
            if err.errno != 17:  # EEXIST: the native architecture is always there
                debug(f"seccomp: architecture {arch} ({where}.architectures[{i}]) "
                      f"left out: libseccomp {libseccomp_version()} cannot encode it")
    for rule in rules:
        _add_rule(pyseccomp, compiled, rule, default_action, f"{where}.syscalls[{rule.index}]")
    fd = os.memfd_create("ocirt-seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(fd, "r+b", closefd=False) as handle:
            compiled.export_bpf(handle)
        size = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, 0, os.SEEK_SET)
        bpf = _read_all(fd, size)
    except OSError as err:
        raise OcirtError(f"exporting the seccomp filter of {where}: {err}") from err
    finally:
        os.close(fd)
    if not bpf or len(bpf) % 8 or len(bpf) // 8 > BPF_MAXINSNS:
        raise ConfigError(where, f"the compiled filter has {len(bpf) // 8} instructions; "
                          f"the kernel takes at most {BPF_MAXINSNS}")
    return bpf


def _add_rule(pyseccomp: Any, compiled: Any, rule: Rule, default_action: int,
              path: str) -> None:
    debug = log.current.debug
    if rule.action == default_action:
        debug(f"seccomp: {path} has the default action: skipped")
        return
    indexes = [c[0] for c in rule.conditions]
    # Two conditions on one argument cannot be one libseccomp rule: as runc, add one rule
    # per condition (so they combine with OR).
    groups = ([[c] for c in rule.conditions] if len(set(indexes)) < len(indexes)
              else [rule.conditions])
    for j, name in enumerate(rule.names):
        number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
        if number == _NR_SCMP_ERROR:
            debug(f"seccomp: unknown syscall {name!r} ({path}.names[{j}]) ignored")
            continue
        for group in groups:
            args = [pyseccomp.Arg(index, op, value, value_two)
                    for index, op, value, value_two in group]
            try:
                compiled.add_rule(rule.action, number, *args)
            except OSError as err:
                why = {17: "it conflicts with an earlier rule for the same syscall",
                       22: "libseccomp cannot express it"}.get(err.errno or 0, err.strerror)
                raise ConfigError(f"{path}.names[{j}]",
                                  f"{name!r} with {rule.action_name}: {why}") from None


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
