"""Capabilities: the five sets of process.capabilities, through libcap-ng (bound in
``ocirt.linux.syscalls.capng``).

``resolve`` (in the parent, at plan time) turns names into numbers: a name libcap-ng does not
know is an error naming it and its JSON path; a capability this host's bounding set lacks (so no
process here can have it) is left out with a warning, as the spec asks. The functions that apply
the sets work on the calling process, so ``create``'s init and ``exec`` share them:

  drop_bounding   cut the bounding set, while the process still holds CAP_SETPCAP
  (the identity change keeps the permitted set across setuid: PR_SET_KEEPCAPS)
  apply_sets      set effective, permitted and inheritable exactly, then raise the ambient set

What the program then holds is execve(2)'s rule applied to these sets: a non-root program keeps
its ambient set (so effective = permitted = ambient); root gets bounding | inheritable, cut to
the permitted set when no_new_privs is on. A configuration whose sets agree with that rule is
what /proc/self/status shows in the container, set for set.
"""

from __future__ import annotations

from ocirt import log
from ocirt.errors import ConfigError
from ocirt.linux import syscalls as sc
from ocirt.linux.syscalls import capng

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
CAP_SYS_ADMIN = 21
_CAPNG_TYPE = {"effective": capng.CAPNG_EFFECTIVE, "permitted": capng.CAPNG_PERMITTED,
               "inheritable": capng.CAPNG_INHERITABLE}


def _capng() -> None:
    """Load libcap-ng now: after pivot_root the host's library can no longer be found."""
    capng.load()


def capability_number(name: str) -> int:
    """CAP_NET_ADMIN -> 12; -1 when libcap-ng does not know the name."""
    if not name.startswith("CAP_"):
        return -1
    return capng.name_to_capability(name[4:].lower())


def resolve(capabilities: dict[str, Any], where: str = "$.process.capabilities"
            ) -> dict[str, list[int]]:
    """Turn each set's names into numbers; an unknown name is an error (the spec says so).

    A capability outside this host's bounding set cannot be granted to any process: it is left
    out with a warning that names it (runc drops it with "ignoring unknown or unavailable
    capabilities"; the spec says such a value MUST be logged as a warning).
    """
    capng.load()  # loaded here, in the parent: the container's init applies the sets after
    # pivot_root, where the host's libcap-ng cannot be found (a config with only empty sets
    # used to fail exactly so)
    host = host_bounding_set()
    result: dict[str, list[int]] = {}
    missing: dict[str, list[str]] = {}
    for set_name in SETS:
        numbers = []
        for index, name in enumerate(capabilities.get(set_name, [])):
            number = capability_number(name)
            if number < 0:
                raise ConfigError(f"{where}.{set_name}[{index}]",
                                  f"unknown capability {name!r}")
            if host is not None and not host >> number & 1:
                missing.setdefault(name, []).append(f"{set_name}[{index}]")
                continue
            numbers.append(number)
        result[set_name] = numbers
    for name, places in missing.items():
        log.current.warning(f"{where}: {name} ({', '.join(places)}) is not in this host's "
                            "bounding set, so the container cannot have it: left out")
    for number in ambient_not_raisable(result):
        log.current.debug(f"{where}.ambient: capability {number} is not both permitted and "
                          "inheritable: the kernel will not make it ambient (skipped, as runc)")
    return result


def host_bounding_set() -> int | None:
    """The calling process's bounding set (/proc/self/status CapBnd) as a bit mask."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def status_sets(status_text: str) -> dict[str, int]:
    """/proc/PID/status text -> {"bounding": mask, ...} for the five Cap* lines."""
    keys = {"CapBnd": "bounding", "CapEff": "effective", "CapInh": "inheritable",
            "CapPrm": "permitted", "CapAmb": "ambient"}
    result = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            result[keys[key]] = int(value.strip(), 16)
    return result


def mask(numbers: list[int]) -> int:
    value = 0
    for number in numbers:
        value |= 1 << number
    return value


def describe(capabilities: dict[str, Any]) -> list[str]:
    return [f"capabilities {set_name}: {' '.join(capabilities.get(set_name, [])) or '(none)'}"
            for set_name in SETS]


def drop_bounding(sets: dict[str, list[int]]) -> None:
    capng.apply_sets(capng.CAPNG_SELECT_BOUNDS, {capng.CAPNG_BOUNDING_SET: sets["bounding"]})


def apply_sets(sets: dict[str, list[int]]) -> None:
    """Set effective, permitted and inheritable exactly, then raise the ambient set."""
    capng.apply_sets(capng.CAPNG_SELECT_CAPS,
                     {kind: sets[name] for name, kind in _CAPNG_TYPE.items()})
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    # The kernel only lets a capability be ambient if it is permitted and inheritable; like
    # runc, ocirt skips the others rather than failing (runc 1.1's default spec asks for them;
    # ``ambient_not_raisable`` names them for a debug log line at plan time).
    raisable = set(sets["permitted"]) & set(sets["inheritable"])
    for number in sets["ambient"]:
        if number in raisable:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, number)


def ambient_not_raisable(sets: dict[str, list[int]]) -> list[int]:
    """Ambient capabilities the kernel will refuse: not both permitted and inheritable."""
    raisable = set(sets["permitted"]) & set(sets["inheritable"])
    return [number for number in sets["ambient"] if number not in raisable]
