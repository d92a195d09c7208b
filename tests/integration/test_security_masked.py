"""maskedPaths and readonlyPaths of the default spec: nothing of the host can be read there, and
the read-only ones cannot be written."""

from __future__ import annotations

import pytest

from ocirt.config.default import MASKED_PATHS, READONLY_PATHS

from .support import IS_OCIRT, ROOT_MARKS

pytestmark = ROOT_MARKS


def in_container(rt, make_config, bundle, command):
    config = make_config(["sh", "-c", command])
    config["linux"]["maskedPaths"] = list(MASKED_PATHS)
    config["linux"]["readonlyPaths"] = list(READONLY_PATHS)
    cid = rt.new_id("mask")
    result = rt("run", "--bundle", str(bundle(config, name=cid)), cid)
    assert result.returncode == 0, result
    return result.stdout


@pytest.mark.parametrize("path", ["/proc/kcore", "/proc/keys", "/proc/timer_list",
                                  "/proc/sched_debug", "/proc/latency_stats"])
def test_masked_files_read_empty(rt, make_config, bundle, path):
    out = in_container(rt, make_config, bundle,
                       f"if [ -e {path} ]; then cat {path} | wc -c; else echo absent; fi")
    assert out.strip() in ("0", "absent"), out


@pytest.mark.parametrize("path", ["/sys/firmware", "/proc/acpi", "/proc/scsi", "/proc/asound"])
def test_masked_directories_are_empty(rt, make_config, bundle, path):
    out = in_container(rt, make_config, bundle,
                       f"if [ -e {path} ]; then ls -A {path} | wc -l; touch {path}/x 2>&1 "
                       "&& echo WROTE; else echo absent; fi; true")
    assert out.split()[0] in ("0", "absent") and "WROTE" not in out, out


def test_the_host_really_has_them():
    """So the masking above hides something: what exists of them on the host has content."""
    import os

    present = [p for p in ("/proc/keys", "/proc/timer_list", "/proc/kcore") if os.path.exists(p)]
    assert present
    for path in present:
        with open(path, "rb") as handle:
            assert handle.read(1), path


@pytest.mark.parametrize("path", ["/proc/sysrq-trigger", "/proc/sys/kernel/hostname",
                                  "/proc/sys/vm/drop_caches"])
def test_readonly_paths_cannot_be_written(rt, make_config, bundle, path):
    out = in_container(rt, make_config, bundle,
                       f"(echo 0 > {path}) 2>/dev/null && echo WROTE || echo refused; "
                       "grep -E ' /proc/(sys|sysrq-trigger|bus|fs|irq) ' /proc/self/mounts")
    lines = out.splitlines()
    assert lines[0] == "refused", out
    for line in lines[1:]:
        assert line.split()[3].split(",")[0] == "ro", line


MASKED_DIRS = ["/sys/firmware", "/proc/driver", "/proc/tty", "/sys/kernel/mm"]


@pytest.mark.skipif(not IS_OCIRT, reason="runc 1.5 shares the tmpfs; Debian's runc 1.1.5 "
                    "mounts one per directory")
def test_masked_directories_share_one_read_only_tmpfs(rt, make_config, bundle):
    """runc 1.5: every masked directory is covered by the same empty read-only tmpfs (one
    superblock), not one mount each; files are still covered by /dev/null."""
    config = make_config(["sh", "-c", "cat /proc/self/mountinfo; echo ==; for d in "
                          + " ".join(MASKED_DIRS) + "; do ls -A $d | wc -l; touch $d/x 2>&1 "
                          "&& echo WROTE; done; stat -c %t:%T /proc/keys"])
    config["linux"]["maskedPaths"] = [*MASKED_DIRS, "/proc/keys"]
    cid = rt.new_id("mask")
    result = rt("run", "--bundle", str(bundle(config, name=cid)), cid)
    assert result.returncode == 0, result
    mountinfo, _, rest = result.stdout.partition("==\n")
    mounts = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        after = fields[fields.index("-") + 1:]
        mounts[fields[4]] = (fields[2], after[0], fields[5].split(","))
    covering = [mounts[d] for d in MASKED_DIRS]
    assert {device for device, _, _ in covering} == {covering[0][0]}, covering
    assert all(fstype == "tmpfs" and "ro" in options for _, fstype, options in covering)
    lines = rest.splitlines()
    assert [line for line in lines if line.isdigit()] == ["0"] * len(MASKED_DIRS), rest
    assert "WROTE" not in rest
    assert lines[-1] == "1:3", "masked files keep the /dev/null bind"
