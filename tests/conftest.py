"""Fixtures every test suite shares."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import BUSYBOX_ROOTFS, REPO, checkout_files


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if it leaves new files in the checkout (a test's or a tool's droppings:
    conmon's ``oom``, hypothesis's ``.hypothesis/``); a fresh clone must stay as it was.

    Hypothesis keeps its caches in the current directory unless told otherwise: here, in the
    session's temporary directory."""
    saved = os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(tmp_path_factory.mktemp("hypothesis"))
    before = checkout_files()
    yield
    if saved is None:
        os.environ.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    else:
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = saved
    new = sorted(checkout_files() - before)
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
