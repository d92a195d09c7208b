"""CPU affinity of the container's processes, as runc 1.4 sets it.

The container never inherits the runtime's own affinity (``taskset -c 1 ocirt run``): once a
process is in the container's cgroups, its mask is reset to every possible CPU, which the
kernel narrows to the cgroup's cpuset. ``process.execCPUAffinity`` (runtime-spec 1.2) is for
``exec``: ``initial`` is the mask of the runtime's child before it joins the container's
cgroup, ``final`` the process's mask once it is in it (without ``final`` it keeps ``initial``,
unless joining the cgroup resets it: a cgroup v2 cpuset does, for a task born in it with clone3
CLONE_INTO_CGROUP or moved into it, in runc as in ocirt).
"""

from __future__ import annotations

from ocirt import log
from ocirt.errors import ConfigError, OcirtError, SyscallError
from ocirt.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CPUS = 64 * 1024  # the kernel clamps a longer mask to the CPUs it supports
_ALL = b"\xff" * (MAX_CPUS // 8)


class Mask:
    """A parsed CPU list: the bytes sched_setaffinity takes, and the text it came from."""

    def __init__(self, text: str, mask: bytes, field: str) -> None:
        self.text, self.mask, self.field = text, mask, field


def parse(text: str | None, field: str) -> Mask | None:
    """``"0-3,7"`` -> a Mask; an empty or missing list is no mask (as runc)."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise ConfigError(field, f"{text!r} is not a CPU list (like 0-3,7)") from None
        if first < 0 or first > last:
            raise ConfigError(field, f"invalid range {part!r} in {text!r}")
        if last >= MAX_CPUS:
            raise ConfigError(field, f"CPU {last} in {text!r} is beyond {MAX_CPUS - 1}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ConfigError(field, f"no CPU in {text!r}")
    mask = bytearray((max(cpus) // 64 + 1) * 8)
    for cpu in cpus:
        mask[cpu // 8] |= 1 << (cpu % 8)
    return Mask(text, bytes(mask), field)


def exec_masks(process: dict[str, Any], where: str = "$.process"
               ) -> tuple[Mask | None, Mask | None]:
    """(initial, final) of a process object's execCPUAffinity."""
    wanted = process.get("execCPUAffinity") or {}
    return (parse(wanted.get("initial"), f"{where}.execCPUAffinity.initial"),
            parse(wanted.get("final"), f"{where}.execCPUAffinity.final"))


def apply(pid: int, mask: Mask) -> None:
    """Set ``pid``'s mask (0: the calling thread); the error names the field."""
    try:
        sc.sched_setaffinity(pid, mask.mask, mask.text)
    except SyscallError as err:
        raise OcirtError(f"{mask.field}: {err}") from err


def reset(pid: int) -> None:
    """Every CPU the cgroup allows: never the runtime's own mask. A failure is a warning,
    as with runc (the process then keeps the runtime's mask)."""
    try:
        sc.sched_setaffinity(pid, _ALL, f"0-{MAX_CPUS - 1}")
    except SyscallError as err:
        log.current.warning(f"resetting the CPU affinity of pid {pid}: {err}")


def after_cgroup_join(pid: int, initial: Mask | None, final: Mask | None) -> None:
    """An exec'd process has joined the cgroup: its final mask, or a reset when neither mask
    is configured; with only ``initial`` it keeps that one (runc 1.3's semantics)."""
    if final is not None:
        apply(pid, final)
    elif initial is None:
        reset(pid)
