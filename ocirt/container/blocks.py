"""Blocks of steps the phases of create and exec share: entering existing namespaces,
labelling steps for ``--timings``, the dumpable flag, what a hook step says."""

from __future__ import annotations

import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.container import hooks
from ocirt.linux import namespaces
from ocirt.linux import syscalls as sc
from ocirt.linux.plan import Note, Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class Joining:
    """The namespace fds a stage-1 joins (opened by the runtime before it forks)."""

    ns_fds: list[tuple[str, int]]
    in_cgroup2: bool  # stage-1 was born in the container's cgroup2 directory


def labelled(steps: Sequence[Step | Note], label: str) -> list[Step | Note]:
    """``steps``, each without a ``--timings`` row of its own put in the row ``label``."""
    for step in steps:
        if isinstance(step, Step) and not step.phase:
            step.phase = label
    return list(steps)


def join_steps(joins: list[tuple[str, str]], live: Joining, new_user: list[Step | Note],
               has_user: bool, label: str) -> list[Step | Note]:
    """Entering existing namespaces (create's stage-1 and exec's): the user namespace first
    (it grants the rights for the rest), then ``new_user`` (create's own user namespace), root
    in it, then the others in ``JOIN_ORDER``; the fds closed."""
    steps: list[Step | Note] = [Step(f"setns {path} (user)", partial(_setns, live, "user"),
                                     label) for kind, path in joins if kind == "user"]
    steps += new_user
    if has_user:
        steps.append(Step("setresgid 0 0 0; setresuid 0 0 0 (root in the user namespace)",
                          _become_root, label))
    steps += [Step(f"setns {path} ({kind})", partial(_setns, live, kind), label)
              for kind, path in joins if kind != "user"]
    if joins:
        steps.append(Step("close the namespace fds", lambda: namespaces.close_all(live.ns_fds),
                          label))
    return steps


def _setns(live: Joining, kind: str) -> None:
    namespaces.join([(k, fd) for k, fd in live.ns_fds if k == kind])


def _become_root() -> None:
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def flag_names(kinds: list[str]) -> str:
    names = {"mount": "NS", "network": "NET"}
    return " | ".join(f"CLONE_NEW{names.get(kind, kind.upper())}" for kind in kinds)


def unshare(flags: int) -> None:
    """(looked up when run, so the binding layer's recording double sees the call)"""
    sc.unshare(flags)


def runtime_steps() -> list[Step | Note]:
    """The runtime's own, before it forks: no process of the container may ptrace it or read
    its memory; init (or the exec'd process) becomes its child once stage-1 exits, so a
    failure can reap it (once the runtime exits it moves on to the caller's nearest subreaper,
    conmon or containerd-shim, as with runc)."""
    return [Step("prctl(PR_SET_DUMPABLE, 0) (the runtime)", not_dumpable, "runtime: prctl"),
            Step("prctl(PR_SET_CHILD_SUBREAPER, 1) (the runtime)", _subreaper,
                 "runtime: prctl")]


def _subreaper() -> None:
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)


def new_session() -> None:
    """setsid, looked up when it runs (so the binding layer's double sees it)."""
    os.setsid()


def not_dumpable() -> None:
    sc.prctl(sc.PR_SET_DUMPABLE, 0)


def dumpable() -> None:
    sc.prctl(sc.PR_SET_DUMPABLE, 1)


def hooks_text(config: dict[str, Any], kind: str) -> str:
    text = f"{kind} hooks: {len(hooks.hooks_of(config, kind))}"
    if kind == "prestart":
        text += f", then createRuntime hooks: {len(hooks.hooks_of(config, 'createRuntime'))}"
    return text
