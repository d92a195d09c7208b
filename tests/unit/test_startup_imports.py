"""The hot path's import budget: what ``run``/``create`` and the commands managers call most
(state, kill, delete, start) must not import. Each of these modules costs 1-4 ms of every call
(``enum`` through ``signal``/``socket``/``re``, ``collections`` through ``functools``/``array``,
``json``, ``typing``); see docs/architecture.md "Speed". None of them, nor ``exec``, nor a
seccomp filter read from the cache and loaded, imports ``ctypes``: the binding layer is made
on ``_ctypes`` (``ocirt.linux.syscalls.ffi``), and only compiling a profile (pyseccomp) needs
``ctypes`` itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("enum", "re", "socket", "selectors", "json", "typing", "collections", "functools",
             "array", "types", "click", "jsonschema", "hashlib", "ocirt.timings", "termios",
             "ocirt.linux.console", "ocirt.linux.seccomp", "importlib", "warnings",
             "struct")  # (_struct, the C module under it, is allowed: no sys.path search)
# What each command imports once argv is parsed (the handlers import these).
COMMANDS = {
    "state": ["ocirt.cli.commands", "ocirt.container.state"],
    "kill": ["ocirt.cli.commands", "ocirt.container.kill"],
    "delete": ["ocirt.cli.commands", "ocirt.container.delete"],
    "start": ["ocirt.cli.commands", "ocirt.container.start"],
    "create": ["ocirt.cli.commands", "ocirt.container.plan", "ocirt.container.create"],
    "run": ["ocirt.cli.commands", "ocirt.container.create", "ocirt.container.run"],
}
# The commands that load the binding layer: on _ctypes, without ctypes.
BINDING = {"create", "run"}


def loaded_after(modules: list[str]) -> set[str]:
    """Every module a fresh interpreter (as the launcher runs it) holds once it has imported
    ``ocirt.cli.fastparse`` and ``modules``."""
    code = ("import sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from ocirt.cli import fastparse\n"
            + "".join(f"import {module}\n" for module in modules)
            + "print(' '.join(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hot_path_imports(command: str) -> None:
    loaded = loaded_after(COMMANDS[command])
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
    assert "ctypes" not in loaded
    assert ("_ctypes" in loaded) == (command in BINDING)


def test_exec_imports_the_binding_layer_without_ctypes() -> None:
    loaded = loaded_after(["ocirt.cli.commands", "ocirt.container.exec"])
    assert "_ctypes" in loaded and "ocirt.linux.syscalls" in loaded
    assert "ctypes" not in loaded


def test_a_cached_seccomp_filter_loads_without_ctypes(tmp_path: Path) -> None:
    """The default profile read from the cache (compiled first, in another process: pyseccomp
    imports ctypes) and loaded with seccomp(2) in a child: no ctypes."""
    pytest.importorskip("pyseccomp")
    prepare = ("import sys\n"
               f"sys.path.insert(0, {str(REPO)!r})\n"
               "from ocirt.config.seccomp_profile import default_profile\n"
               "from ocirt.linux.seccomp import SeccompFilter\n"
               "f = SeccompFilter(default_profile())\n"
               f"f.prepare({str(tmp_path)!r})\n"
               "print(f.from_cache)\n")
    load = ("import os\n"
            "from ocirt.linux import syscalls as sc\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)\n"
            "    f.load()\n"
            "    os._exit(0)\n"
            "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0\n"
            "print(' '.join(sorted(sys.modules)))\n")
    first = subprocess.run([sys.executable, "-I", "-c", prepare],  # with site: pyseccomp
                           capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-I", "-S", "-c", prepare + load],
                            capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    from_cache, modules = second.stdout.splitlines()
    loaded = set(modules.split())
    assert from_cache == "True"
    assert "ocirt.linux.syscalls.seccomp" in loaded and "ctypes" not in loaded


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
