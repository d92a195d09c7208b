"""Fixtures every test suite shares."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from testkit import BUSYBOX_ROOTFS, REPO


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
