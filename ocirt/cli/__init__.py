"""The command line: parse argv (fast path first, click for the rest) and dispatch.

Kept thin: parsing, logging and exit codes only; the work is in ``ocirt.container``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else argv
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
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.exit(code)
