"""Log lines for ``--log FILE`` in runc's formats: text, or JSON lines with level, msg, time.

The CLI configures ``current`` once; the lifecycle writes warnings (a failed poststop hook, say)
and debug lines through it, so library users get a quiet default.
"""

from __future__ import annotations

import os
import sys
import time

from ocirt import jsonfast
from ocirt.errors import errno_text


class Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_enabled = debug

    def _write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = jsonfast.dumps({"level": level, "msg": msg, "time": now}, compact=True)
        else:
            line = f'time="{now}" level={level} msg={jsonfast.dumps(msg)}'
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as err:
            print(f"ocirt: cannot write log {self.path}: {errno_text(err)}", file=sys.stderr)

    def error(self, msg: str) -> None:
        self._write("error", msg)

    def warning(self, msg: str) -> None:
        self._write("warning", msg)
        print(f"ocirt: warning: {msg}", file=sys.stderr)

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self._write("debug", msg)


current = Log(None, "text", False)


def configure(path: str | None, fmt: str, debug: bool) -> Log:
    global current
    current = Log(path, fmt, debug)
    return current
