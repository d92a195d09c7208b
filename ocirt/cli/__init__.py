"""The command line: parse argv (fast path first, click for the rest) and dispatch.

Kept thin: parsing, logging and exit codes only; the work is in ``ocirt.container``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from ocirt.cli import fastparse

    words = sys.argv[1:] if argv is None else argv
    parsed = fastparse.parse(words)
    if parsed is None:
        from ocirt.cli import clickapp

        code = clickapp.main(words)
    else:
        from ocirt.cli.commands import dispatch

        code = dispatch(*parsed)
    sys.stdout.flush()
    sys.exit(code)
