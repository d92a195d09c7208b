"""no_new_privs: with noNewPrivileges a setuid-root program in the container stays unprivileged."""

from __future__ import annotations

import os

import pytest

from .security_support import status_fields, with_sectool
from .support import ROOT_MARKS

pytestmark = ROOT_MARKS


@pytest.fixture
def suid_rootfs(private_rootfs):
    tool = with_sectool(private_rootfs, "suid-ids")
    os.chown(tool, 0, 0)
    tool.chmod(0o4755)
    return private_rootfs


def run_as_user(rt, make_config, bundle, rootfs, nnp):
    config = make_config(["sh", "-c", "grep NoNewPrivs /proc/self/status; /suid-ids ids"],
                         rootfs_path=rootfs, process__noNewPrivileges=nnp,
                         process__user={"uid": 1000, "gid": 1000})
    cid = rt.new_id("nnp")
    result = rt("run", "--bundle", str(bundle(config, name=cid)), cid)
    assert result.returncode == 0, result
    return result.stdout


def test_setuid_binary_gains_nothing_with_no_new_privileges(rt, make_config, bundle,
                                                            suid_rootfs):
    out = run_as_user(rt, make_config, bundle, suid_rootfs, True)
    assert status_fields(out)["NoNewPrivs"] == "1"
    assert "uid=1000 euid=1000" in out, out


def test_setuid_binary_works_without_it(rt, make_config, bundle, suid_rootfs):
    """The control: the same binary does become root when no_new_privs is off."""
    out = run_as_user(rt, make_config, bundle, suid_rootfs, False)
    assert status_fields(out)["NoNewPrivs"] == "0"
    assert "uid=1000 euid=0" in out, out
