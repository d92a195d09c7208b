"""OCI hooks: run each hook of a kind with the state document on stdin, in order.

Where and when each kind runs (config.md, "POSIX-platform Hooks"):

  prestart, createRuntime  create, runtime namespace (the runtime itself), after the container's
                           namespaces and mounts exist, before pivot_root; status "creating"
  createContainer          create, in the container's namespaces (init runs it), before
                           pivot_root, so its path still resolves on the host; "creating"
  startContainer           start, in the container (init runs it, after pivot_root) just before
                           the program is exec'd; status "created"
  poststart                start, runtime namespace, after the exec; status "running"
  poststop                 delete, runtime namespace, after the container is gone; "stopped"

A failing hook of the first four kinds (non-zero exit, killed, or past its ``timeout``) fails
the operation; poststop failures are warnings only. A failing poststart hook follows the spec
version the bundle declares (its ``ociVersion``): up to 1.2 it is a warning and the lifecycle
goes on; from 1.3 on it fails ``start`` and stops the container (runtime.md lifecycle step 9
changed in 1.3.0; runc 1.1 already fails).
"""

from __future__ import annotations

import os
import select
import time

from ocirt import jsonfast, log
from ocirt.errors import OcirtError, errno_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any
else:  # the C module under ``signal``: the same calls, int constants, no enum (~2.5 ms)
    import _signal as signal

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")


class HookError(OcirtError):
    pass


def hooks_of(config: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = (config.get("hooks") or {}).get(kind) or []
    return hooks


def describe(config: dict[str, Any], kind: str) -> list[str]:
    return [f"{kind} hook: {' '.join(h.get('args') or [h['path']])}"
            for h in hooks_of(config, kind)]


def poststart_failure_stops(config: dict[str, Any]) -> bool:
    """Whether the bundle's spec version makes a failing poststart hook an error (>= 1.3)."""
    parts = str(config.get("ociVersion", "")).split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (1, 3)
    except (ValueError, IndexError):
        return True  # not a version we know: the current rule


def run_hooks(config: dict[str, Any], kind: str, state: dict[str, Any]) -> None:
    """Run every hook of ``kind`` in order; the first failure raises ``HookError``."""
    data = jsonfast.dumps(state).encode()
    for index, hook in enumerate(hooks_of(config, kind)):
        run_hook(hook, data, f"{kind} hook #{index} ({hook['path']})")


def run_hooks_warning(config: dict[str, Any], kind: str, state: dict[str, Any]) -> None:
    """Run every hook of ``kind``; a failure is a warning and the next hook still runs
    (poststop: "the remaining hooks and lifecycle continue as if the hook had succeeded")."""
    data = jsonfast.dumps(state).encode()
    for index, hook in enumerate(hooks_of(config, kind)):
        try:
            run_hook(hook, data, f"{kind} hook #{index} ({hook['path']})")
        except HookError as err:
            log.current.warning(str(err))


def run_hook(hook: dict[str, Any], state: bytes, name: str) -> None:
    args = hook.get("args") or [hook["path"]]
    env = hook.get("env") or []
    timeout = hook.get("timeout")
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the hook: stdin is the state, stdout and stderr are collected
        try:
            os.dup2(stdin_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.closerange(3, 65536)
            for signum in range(1, signal.NSIG):
                try:
                    signal.signal(signum, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.execve(hook["path"], args, dict(e.split("=", 1) for e in env if "=" in e))
        except OSError as err:
            os.write(2, f"execve({hook['path']!r}): {errno_text(err)}".encode())
        finally:
            os._exit(127)
    os.close(stdin_r)
    os.close(out_w)
    try:
        os.write(stdin_w, state)
    except BrokenPipeError:
        pass  # a hook need not read its stdin
    os.close(stdin_w)
    output, timed_out = _collect(out_r, pid, timeout)
    _, status = os.waitpid(pid, 0)
    detail = output.decode(errors="replace").strip()[-2000:]
    if timed_out:
        raise HookError(f"{name}: timed out after {timeout} s" + (f": {detail}" if detail else ""))
    if os.WIFSIGNALED(status):
        raise HookError(f"{name}: killed by signal {os.WTERMSIG(status)}"
                        + (f": {detail}" if detail else ""))
    code = os.WEXITSTATUS(status)
    if code != 0:
        raise HookError(f"{name}: exit status {code}" + (f": {detail}" if detail else ""))


def _collect(fd: int, pid: int, timeout: int | None) -> tuple[bytes, bool]:
    """Read the hook's output until EOF; on timeout kill it and say so."""
    deadline = time.monotonic() + timeout if timeout else None
    chunks: list[bytes] = []
    try:
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0)
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                return b"".join(chunks), True
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
    finally:
        os.close(fd)
