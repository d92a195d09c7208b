"""A small argv parser for the table in ``ocirt.cli.table``: the fast path, with no click.

It accepts ``--opt VALUE``, ``--opt=VALUE``, short flags, options before or after the
positional arguments, and ``--``. Anything else (``--help``, an unknown option, a missing
argument, a bad value) returns None, and the caller hands argv to click, which explains.
"""

from __future__ import annotations

from ocirt.cli.table import COMMANDS, GLOBAL_OPTS, Command, Opt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Parsed = tuple[dict[str, Any], Command, dict[str, Any]]


def _defaults(opts: tuple[Opt, ...]) -> dict[str, Any]:
    return {o.dest: ([] if o.kind == "multi" else False if o.kind == "flag" else o.default)
            for o in opts}


def _take(opts: tuple[Opt, ...], argv: list[str], i: int, into: dict[str, Any]) -> int | None:
    """Parse the option at argv[i] into ``into``; the next index, or None if not ours."""
    word = argv[i]
    name, eq, inline = word.partition("=")
    for opt in opts:
        if name not in opt.names:
            continue
        if opt.kind == "flag":
            if eq:
                return None
            into[opt.dest] = True
            return i + 1
        if eq:
            value, nxt = inline, i + 1
        elif i + 1 < len(argv):
            value, nxt = argv[i + 1], i + 2
        else:
            return None
        if opt.choices and value not in opt.choices:
            return None
        if opt.kind == "int":
            if not value.isdigit():
                return None
            into[opt.dest] = int(value)
        elif opt.kind == "multi":
            into[opt.dest].append(value)
        else:
            into[opt.dest] = value
        return nxt
    return None


def parse(argv: list[str]) -> Parsed | None:
    globals_ = _defaults(GLOBAL_OPTS)
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        nxt = _take(GLOBAL_OPTS, argv, i, globals_)
        if nxt is None:
            return None
        i = nxt
    if i >= len(argv) or argv[i] not in COMMANDS:
        return None
    command = COMMANDS[argv[i]]
    values = _defaults(command.opts)
    positional: list[str] = []
    i += 1
    rest_from = next((n for n, a in enumerate(command.args) if a.rest), None)
    while i < len(argv):
        word = argv[i]
        if rest_from is not None and len(positional) > rest_from:
            positional += argv[i:]
            break
        if word == "--":
            positional += argv[i + 1:]
            break
        if word.startswith("-") and word != "-":
            nxt = _take(command.opts, argv, i, values)
            if nxt is None:
                return None
            i = nxt
            continue
        positional.append(word)
        i += 1
    required = sum(1 for a in command.args if a.required and not a.rest)
    if len(positional) < required:
        return None
    if rest_from is None and len(positional) > len(command.args):
        return None
    for n, arg in enumerate(command.args):
        key = arg.name.replace("-", "_")
        if arg.rest:
            values[key] = positional[n:]
            break
        values[key] = positional[n] if n < len(positional) else None
    return globals_, command, values
