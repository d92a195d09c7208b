"""scripts/root-only.py, the check setup.sh makes before it writes the launcher that podman,
containerd and conmon run as root: nothing it imports may be changeable by another user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes files owned by another user")


def root_only(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-IS", str(REPO / "scripts" / "root-only.py"),
                           *map(str, paths)], capture_output=True, text=True, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A package directory of root's alone: tmp_path/site/pkg/mod.py."""
    tmp_path.chmod(0o755)
    package = tmp_path / "site" / "pkg"
    package.mkdir(parents=True)
    (package / "mod.py").write_text("")
    os.symlink("mod.py", package / "link.py")
    return tmp_path / "site"


def test_roots_own_tree_passes(tree: Path) -> None:
    result = root_only(tree, tree / "missing.zip")
    assert result.returncode == 0, result
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("change", ["file owner", "file o+w", "dir g+w", "parent o+w",
                                    "sticky dir itself"])
def test_what_others_may_change_is_refused(tree: Path, change: str) -> None:
    target = {"file owner": tree / "pkg" / "mod.py", "file o+w": tree / "pkg" / "mod.py",
              "dir g+w": tree / "pkg", "parent o+w": tree.parent,
              "sticky dir itself": tree / "pkg"}[change]
    if change == "file owner":
        os.chown(target, 1000, 1000)
    elif change == "dir g+w":
        os.chown(target, 0, 1000)
        target.chmod(0o775)
    elif change == "sticky dir itself":
        target.chmod(0o1777)
    else:
        target.chmod(target.stat().st_mode | 0o002)
    result = root_only(tree)
    assert result.returncode == 1, result
    assert str(target) in result.stdout, result


def test_a_sticky_parent_is_allowed(tree: Path) -> None:
    tree.parent.chmod(0o1777)  # as /tmp: others cannot rename or remove what root made in it
    result = root_only(tree)
    assert result.returncode == 0, result
