"""Fixtures every test suite shares."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import BUSYBOX_ROOTFS, REPO, checkout_files

_HYPOTHESIS_DIR = ""
_CHECKOUT_BEFORE: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    """Before collection (importing a test module that uses hypothesis already makes it pick its
    storage directory): hypothesis keeps its caches in the current directory unless told
    otherwise, here in a temporary directory of the run; and the checkout as it was."""
    global _HYPOTHESIS_DIR, _CHECKOUT_BEFORE
    if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
        _HYPOTHESIS_DIR = tempfile.mkdtemp(prefix="ocirt-hypothesis-")
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _HYPOTHESIS_DIR
    _CHECKOUT_BEFORE = checkout_files()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HYPOTHESIS_DIR:
        os.environ.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
        shutil.rmtree(_HYPOTHESIS_DIR, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """Fail the run if it leaves new files in the checkout (a test's or a tool's droppings:
    conmon's ``oom``, hypothesis's ``.hypothesis/``); a fresh clone must stay as it was."""
    yield
    new = sorted(checkout_files() - _CHECKOUT_BEFORE)
    if new:
        pytest.fail(f"the test run wrote into the checkout {REPO}: {new[:20]} (tests must write "
                    "only into their temporary directories)")


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    """The project's busybox rootfs, built by scripts/build-rootfs.sh if it is missing."""
    if not (BUSYBOX_ROOTFS / "bin" / "busybox").exists():
        if os.geteuid() != 0:
            pytest.skip("the busybox rootfs is missing and building it needs root")
        build = subprocess.run(["bash", str(REPO / "scripts" / "build-rootfs.sh")],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=120, check=False)
        if build.returncode != 0:
            pytest.skip(f"bundles/busybox/rootfs is missing and scripts/build-rootfs.sh "
                        f"failed: {build.stderr.strip()}")
    return BUSYBOX_ROOTFS
