"""The command line: parse argv (fast path first, click for the rest) and dispatch.

Kept thin: parsing, logging and exit codes only; the work is in ``ocirt.container``.
"""

from __future__ import annotations

import gc
import posix  # not os, which `state` never needs (~1 ms)
import sys


def main(argv: list[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else argv
    if argv is None:
        # A short-lived command: reference counting frees what it makes, and the cyclic
        # collector only costs time (~10 passes over the imported modules' objects in `run`,
        # ~1-2 ms, and copy-on-write faults in the forked children). `events` turns it back on.
        gc.disable()
    try:
        if argv is None and _plain_state(words):
            code = 0
        else:
            from ocirt.cli import fastparse

            parsed = fastparse.parse(words)
            if parsed is None:
                from ocirt.cli import clickapp

                code = clickapp.main(words)
            else:
                from ocirt.cli.commands import dispatch

                code = dispatch(*parsed)
    except Exception as err:  # a bug in ocirt itself: one line, the traceback on --debug
        if "--debug" in words:
            raise
        print(f"ocirt: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        posix.dup2(posix.open("/dev/null", posix.O_WRONLY), 1)
    if argv is None:
        # The ocirt command itself: everything is written and closed, nothing is registered
        # with atexit, so the interpreter's teardown (10 ms and more with ctypes and the
        # container modules loaded) would only delay the caller.
        sys.stderr.flush()
        posix._exit(code)
    sys.exit(code)


def _plain_state(words: list[str]) -> bool:
    """``ocirt [--root DIR] state ID``, the call managers make most, answered without the
    command table, its parser and the handlers' module (~0.7 ms): what ``cmd_state`` prints.
    False for any other argv, and for any failure, which the usual path then reports."""
    if len(words) == 2 and words[0] == "state":
        root, container_id = "/run/ocirt", words[1]
    elif len(words) == 4 and words[0] == "--root" and words[1] and words[2] == "state":
        root, container_id = words[1], words[3]
    else:
        return False
    if container_id.startswith("-"):
        return False
    try:
        from ocirt import jsonfast
        from ocirt.container.state import Store, check_id

        check_id(container_id)
        text = jsonfast.pretty(Store(root).load(container_id).document())
    except Exception:
        return False
    try:
        print(text)
    except BrokenPipeError:  # as dispatch says: the reader has what it wanted (main ends it)
        pass
    return True
