"""The test suites' own guard: what counts as a file a test run left in the checkout."""

from __future__ import annotations

from pathlib import Path

from testkit import checkout_files


def test_checkout_files_counts_droppings_not_build_products(tmp_path: Path) -> None:
    for name in ("README.md", "ocirt/cli.py", "ocirt/__pycache__/cli.cpython-311.pyc",
                 "bundles/busybox/config.json", "bundles/busybox/rootfs/bin/busybox",
                 "bundles/busybox/.rootfs-stamp", "bundles/busybox/rootfs.tmp.42/bin/sh",
                 ".git/HEAD"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    before = checkout_files(tmp_path)
    assert before == {"README.md", "ocirt", "ocirt/cli.py", "bundles", "bundles/busybox",
                      "bundles/busybox/config.json"}

    (tmp_path / "oom").write_text("")  # conmon's, when podman ran in the checkout
    (tmp_path / ".hypothesis" / "unicode_data").mkdir(parents=True)
    (tmp_path / "bundles" / "busybox" / "rootfs" / "new").write_text("built")
    assert checkout_files(tmp_path) - before == {"oom", ".hypothesis",
                                                 ".hypothesis/unicode_data"}


def test_mounts_under_finds_a_mount_point_and_what_lies_under_it() -> None:
    from testkit import mount_ids_under, mounts_under

    proc = mounts_under("self", "/proc")
    assert any(line.split()[4] == "/proc" for line in proc)
    assert all((line.split()[4] + "/").startswith("/proc/") for line in proc)
    assert not [line for line in mounts_under("self", "/pro") if line.split()[4] == "/proc"]
    assert "/proc" in mount_ids_under("self", "/proc/").values()
