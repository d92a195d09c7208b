"""Capabilities through libcap-ng (ctypes): the five sets of process.capabilities.

The bounding set is cut first, while the process still holds CAP_SETPCAP; the identity change
keeps the permitted set (PR_SET_KEEPCAPS); then effective, permitted and inheritable are set
exactly, and finally the ambient set is raised.
"""

from __future__ import annotations

import ctypes

from ocirt.errors import ConfigError, OcirtError, SyscallError
from ocirt.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CAPNG_DROP, CAPNG_ADD = 0, 1
CAPNG_EFFECTIVE, CAPNG_PERMITTED, CAPNG_INHERITABLE, CAPNG_BOUNDING_SET = 1, 2, 4, 8
CAPNG_SELECT_CAPS, CAPNG_SELECT_BOUNDS, CAPNG_SELECT_BOTH = 16, 32, 48

SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
_CAPNG_TYPE = {"effective": CAPNG_EFFECTIVE, "permitted": CAPNG_PERMITTED,
               "inheritable": CAPNG_INHERITABLE, "bounding": CAPNG_BOUNDING_SET}

_lib: ctypes.CDLL | None = None


def _capng() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libcap-ng.so.0", use_errno=True)
        except OSError as err:
            raise OcirtError(f"loading libcap-ng (package libcap-ng0): {err}") from err
        _lib.capng_name_to_capability.argtypes = [ctypes.c_char_p]
        _lib.capng_update.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    return _lib


def capability_number(name: str) -> int:
    """CAP_NET_ADMIN -> 12; -1 when libcap-ng does not know the name."""
    if not name.startswith("CAP_"):
        return -1
    number: int = _capng().capng_name_to_capability(name[4:].lower().encode())
    return number


def resolve(capabilities: dict[str, Any]) -> dict[str, list[int]]:
    """Turn each set's names into numbers; an unknown name is an error (the spec says so)."""
    result: dict[str, list[int]] = {}
    for set_name in SETS:
        numbers = []
        for index, name in enumerate(capabilities.get(set_name, [])):
            number = capability_number(name)
            if number < 0:
                raise ConfigError(f"$.process.capabilities.{set_name}[{index}]",
                                  f"unknown capability {name!r}")
            numbers.append(number)
        result[set_name] = numbers
    return result


def describe(capabilities: dict[str, Any]) -> list[str]:
    return [f"capabilities {set_name}: {' '.join(capabilities.get(set_name, [])) or '(none)'}"
            for set_name in SETS]


def _apply(select: int, what: str) -> None:
    if _capng().capng_apply(select) != 0:
        raise SyscallError(f"capng_apply({what})", ctypes.get_errno() or 1)


def drop_bounding(sets: dict[str, list[int]]) -> None:
    lib = _capng()
    lib.capng_clear(CAPNG_SELECT_BOTH)
    for number in sets["bounding"]:
        lib.capng_update(CAPNG_ADD, CAPNG_BOUNDING_SET, number)
    _apply(CAPNG_SELECT_BOUNDS, "bounding set")


def apply_sets(sets: dict[str, list[int]]) -> None:
    """Set effective, permitted and inheritable exactly, then raise the ambient set."""
    lib = _capng()
    lib.capng_clear(CAPNG_SELECT_CAPS)
    for set_name in ("effective", "permitted", "inheritable"):
        for number in sets[set_name]:
            lib.capng_update(CAPNG_ADD, _CAPNG_TYPE[set_name], number)
    _apply(CAPNG_SELECT_CAPS, "effective/permitted/inheritable")
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    # The kernel only lets a capability be ambient if it is permitted and inheritable; like
    # runc, ocirt skips the others rather than failing (runc's default spec asks for them).
    raisable = set(sets["permitted"]) & set(sets["inheritable"])
    for number in sets["ambient"]:
        if number in raisable:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, number)
