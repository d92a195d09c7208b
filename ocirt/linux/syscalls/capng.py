"""libcap-ng: capability names and numbers, and setting the calling process's sets.

The library is loaded on first use (only configs with capabilities need it). ``load`` loads it
early: the container's init applies the sets after pivot_root, where the host's library can no
longer be found, so the parent loads it at plan time.
"""

from __future__ import annotations

from ocirt.errors import OcirtError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy checks the binding against ctypes' own stubs
    import ctypes as ffi
else:
    from ocirt.linux.syscalls import ffi

CALLS = ("load", "name_to_capability", "capability_to_name", "apply_sets")

CAPNG_DROP, CAPNG_ADD = 0, 1
CAPNG_EFFECTIVE, CAPNG_PERMITTED, CAPNG_INHERITABLE, CAPNG_BOUNDING_SET = 1, 2, 4, 8
CAPNG_SELECT_CAPS, CAPNG_SELECT_BOUNDS, CAPNG_SELECT_BOTH = 16, 32, 48
_SELECT_NAMES = {CAPNG_SELECT_CAPS: "CAPNG_SELECT_CAPS", CAPNG_SELECT_BOUNDS: "CAPNG_SELECT_BOUNDS",
                 CAPNG_SELECT_BOTH: "CAPNG_SELECT_BOTH"}
_KIND_NAMES = {CAPNG_EFFECTIVE: "effective", CAPNG_PERMITTED: "permitted",
               CAPNG_INHERITABLE: "inheritable", CAPNG_BOUNDING_SET: "bounding"}

_lib: ffi.CDLL | None = None


def _capng() -> ffi.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ffi.CDLL("libcap-ng.so.0", use_errno=True)
        except OSError as err:
            raise OcirtError(f"loading libcap-ng (package libcap-ng0): {err}") from err
        lib.capng_name_to_capability.argtypes = [ffi.c_char_p]
        lib.capng_capability_to_name.argtypes = [ffi.c_uint]
        lib.capng_capability_to_name.restype = ffi.c_char_p
        lib.capng_update.argtypes = [ffi.c_int, ffi.c_int, ffi.c_uint]
        lib.capng_clear.argtypes = [ffi.c_int]
        lib.capng_apply.argtypes = [ffi.c_int]
        _lib = lib
    return _lib


def load() -> None:
    """Load libcap-ng now (an ``OcirtError`` naming the package when it is missing)."""
    _capng()


def name_to_capability(name: str) -> int:
    """"net_admin" -> 12 (libcap-ng's lower-case names, without CAP_); -1 when unknown."""
    number: int = _capng().capng_name_to_capability(name.encode())
    return number


def capability_to_name(number: int) -> str | None:
    """12 -> "net_admin"; None past the last capability libcap-ng knows."""
    name: bytes | None = _capng().capng_capability_to_name(number)
    return name.decode() if name else None


def apply_sets(select: int, sets: dict[int, list[int]]) -> None:
    """Set the calling process's ``select``ed sets to exactly ``sets`` ({CAPNG_EFFECTIVE:
    [numbers], ...}): clear, add each capability, apply (capng_clear/update/apply)."""
    lib = _capng()
    lib.capng_clear(select)
    for kind, numbers in sets.items():
        for number in numbers:
            lib.capng_update(CAPNG_ADD, kind, number)
    if lib.capng_apply(select) != 0:
        shown = ", ".join(f"{_KIND_NAMES.get(kind, kind)}: {numbers}"
                          for kind, numbers in sets.items())
        raise SyscallError(f"capng_apply({_SELECT_NAMES.get(select, select)}, {{{shown}}})",
                           ffi.get_errno() or 1)
