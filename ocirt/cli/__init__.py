"""The command line: parse argv (fast path first, click for the rest) and dispatch.

Kept thin: parsing, logging and exit codes only; the work is in ``ocirt.container``.
"""

from __future__ import annotations

import sys
import time

ENTERED = time.perf_counter()  # the interpreter's start ends here (see ``ocirt.timings``)


def main(argv: list[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else argv
    if argv is None:
        # A short-lived command: reference counting frees what it makes, and the cyclic
        # collector only costs time (~10 passes over the imported modules' objects in `run`,
        # ~1-2 ms, and copy-on-write faults in the forked children). `events` turns it back on.
        import gc

        gc.disable()
    try:
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
    import os

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    if argv is None:
        # The ocirt command itself: everything is written and closed, nothing is registered
        # with atexit, so the interpreter's teardown (10 ms and more with ctypes and the
        # container modules loaded) would only delay the caller.
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
