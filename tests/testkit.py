"""What the test suites share: where the checkout and its busybox rootfs are, what the
checkout holds (to catch tests that write into it), and polling for a condition. On sys.path
through pytest's ``pythonpath`` setting (pyproject.toml)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BUSYBOX_ROOTFS = REPO / "bundles" / "busybox" / "rootfs"

# What may appear in the checkout during a test run: byte-compiled modules (and git's own
# files), and the bundles' root filesystems, which the busybox_rootfs fixture builds with
# scripts/build-rootfs.sh when they are missing. Anything else a test writes there is a bug
# (tests/conftest.py: checkout_untouched).
_NOT_COUNTED = ("__pycache__", ".git")
_NOT_COUNTED_IN_A_BUNDLE = ("rootfs", ".rootfs-stamp")


def checkout_files(repo: Path = REPO) -> set[str]:
    """Every file and directory in ``repo``, as paths relative to it, but for those that the
    build may add (see _NOT_COUNTED)."""
    found = set()
    for top, dirs, files in os.walk(repo):
        rel = os.path.relpath(top, repo)
        in_bundle = os.path.dirname(rel) == "bundles"

        def counted(name: str, in_bundle: bool = in_bundle) -> bool:
            if in_bundle and (name in _NOT_COUNTED_IN_A_BUNDLE or name.startswith("rootfs.")):
                return False
            return name not in _NOT_COUNTED

        dirs[:] = [name for name in dirs if counted(name)]
        found.update(os.path.normpath(os.path.join(rel, name))
                     for name in (*dirs, *files) if counted(name))
    return found


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.01,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")
