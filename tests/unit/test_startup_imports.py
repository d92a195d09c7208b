"""The hot path's import budget: what ``run``/``create`` and the commands managers call most
(state, kill, delete, start) must not import. Each of these modules costs 1-4 ms of every call
(``enum`` through ``signal``/``socket``/``re``, ``collections`` through ``functools``/``array``,
``json``, ``typing``); see docs/architecture.md "Speed"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("enum", "re", "socket", "selectors", "json", "typing", "collections", "functools",
             "array", "types", "click", "jsonschema", "hashlib", "ocirt.timings", "termios",
             "ocirt.linux.console", "ocirt.linux.seccomp", "importlib", "warnings")
# What each command imports once argv is parsed (the handlers import these).
COMMANDS = {
    "state": ["ocirt.cli.commands", "ocirt.container.state"],
    "kill": ["ocirt.cli.commands", "ocirt.container.kill"],
    "delete": ["ocirt.cli.commands", "ocirt.container.delete"],
    "start": ["ocirt.cli.commands", "ocirt.container.start"],
    "run": ["ocirt.cli.commands", "ocirt.container.create", "ocirt.container.run"],
}
# ctypes (the one binding layer) pulls in ``types``; state, kill, delete and start avoid it.
ALLOWED_WITH_CTYPES = {"types"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hot_path_imports(command: str) -> None:
    code = ("import sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from ocirt.cli import fastparse\n"
            + "".join(f"import {module}\n" for module in COMMANDS[command])
            + "print(' '.join(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    allowed = ALLOWED_WITH_CTYPES if "ctypes" in loaded else set()
    assert not (loaded & set(FORBIDDEN)) - allowed, sorted(loaded & set(FORBIDDEN))
    if command in ("state", "kill", "delete", "start"):
        assert "ctypes" not in loaded


def test_plain_state_imports_no_os(tmp_path: Path) -> None:
    """``ocirt state ID`` (cli._plain_state) reads and prints the state without ``os`` (and so
    without ``_collections_abc``, ``posixpath`` and ``stat``: ~1 ms)."""
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "state.json").write_text(
        '{"id": "c1", "bundle": "/b", "rootfs": "/b/rootfs", "status": "stopped", '
        '"created": "2026-01-01T00:00:00Z", "owner": "root"}')
    code = ("import sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from ocirt import cli\n"
            f"assert cli._plain_state(['--root', {str(tmp_path)!r}, 'state', 'c1'])\n"
            "print(' '.join(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    document, modules = result.stdout.rsplit("\n", 2)[:2]
    assert '"status": "stopped"' in document
    loaded = set(modules.split())
    assert not loaded & {"os", "posixpath", "_collections_abc", "stat"}, sorted(loaded)
