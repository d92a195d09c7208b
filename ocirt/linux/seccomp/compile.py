"""seccomp rules compiled to classic BPF by libseccomp (bound in ``ocirt.linux.syscalls.seccomp``).

Only a cache miss comes here for the program: ``pyseccomp`` costs ~20 ms to import (plus an
``ldconfig`` run), so the binding imports it in ``new_filter`` and nowhere else. What a cache
hit needs of libseccomp (its version for the cache key, the names it knows for the debug log)
is asked of the library directly, with a dlopen.

Behaviour follows runc where the spec is silent: a syscall name libseccomp does not know is
skipped with a debug log line; a rule whose action equals the default action is skipped (libseccomp
refuses it); several conditions on the same argument become one rule per condition (OR); an
architecture this libseccomp cannot encode is left out (its syscalls then meet the bad-arch
action, which kills).
"""

from __future__ import annotations

from ocirt import log
from ocirt.errors import ConfigError, SyscallError
from ocirt.linux.seccomp.rules import ARCHES, BPF_MAXINSNS, Rule
from ocirt.linux.syscalls import seccomp as libseccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.linux.syscalls.seccomp import Filter


def libseccomp_version() -> str:
    """"2.5.4": asked of libseccomp itself (a dlopen, not the pyseccomp import)."""
    return libseccomp.libseccomp_version()


def log_unknown_names(rules: list[Rule], where: str) -> None:
    """Debug-log the names libseccomp does not know, as compiling would (for a cache hit)."""
    for rule in rules:
        for j, name in enumerate(rule.names):
            if libseccomp.resolve_name(name) == libseccomp.NR_SCMP_ERROR:
                log.current.debug(f"seccomp: unknown syscall {name!r} "
                                  f"({where}.syscalls[{rule.index}].names[{j}]) ignored")


def compile_bpf(default_name: str, default_action: int, arches: list[str], rules: list[Rule],
                where: str) -> bytes:
    """Compile a checked profile (at JSON path ``where``) with libseccomp into raw BPF."""
    debug = log.current.debug
    try:
        compiled = libseccomp.new_filter(default_action)
    except SyscallError as err:
        raise ConfigError(f"{where}.defaultAction",
                          f"libseccomp refused {default_name!r}: {err}") from None
    for i, arch in enumerate(arches):
        try:
            compiled.add_arch(ARCHES[arch])
        except SyscallError as err:
            if err.errno != 17:  # EEXIST: the native architecture is always there
                debug(f"seccomp: architecture {arch} ({where}.architectures[{i}]) "
                      f"left out: libseccomp {libseccomp_version()} cannot encode it")
    for rule in rules:
        _add_rule(compiled, rule, default_action, f"{where}.syscalls[{rule.index}]")
    bpf = compiled.export()
    if not bpf or len(bpf) % 8 or len(bpf) // 8 > BPF_MAXINSNS:
        raise ConfigError(where, f"the compiled filter has {len(bpf) // 8} instructions; "
                          f"the kernel takes at most {BPF_MAXINSNS}")
    return bpf


def _add_rule(compiled: Filter, rule: Rule, default_action: int, path: str) -> None:
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
        number = libseccomp.resolve_name(name)
        if number == libseccomp.NR_SCMP_ERROR:
            debug(f"seccomp: unknown syscall {name!r} ({path}.names[{j}]) ignored")
            continue
        for group in groups:
            try:
                compiled.add_rule(rule.action, number, list(group))
            except SyscallError as err:
                why = {17: "it conflicts with an earlier rule for the same syscall",
                       22: "libseccomp cannot express it"}.get(err.errno or 0, str(err))
                raise ConfigError(f"{path}.names[{j}]",
                                  f"{name!r} with {rule.action_name}: {why}") from None
