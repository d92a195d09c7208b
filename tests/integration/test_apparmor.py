"""process.apparmorProfile: the container's processes confined by the named profile.

Needs AppArmor on and apparmor_parser (the systemd VM lane, scripts/vm/systemd-tests.sh, has
both; it runs these with runc first). The test profile is loaded into the kernel of that VM
only. Without AppArmor a profile is an error naming the field (test_config_errors).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .cgroup_support import SLOW
from .support import ROOT_MARKS


def _enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as handle:
            on = handle.read().startswith("Y")
    except OSError:
        return False
    return on and os.path.isdir("/sys/kernel/security/apparmor")


pytestmark = [*ROOT_MARKS, pytest.mark.skipif(
    not (_enabled() and shutil.which("apparmor_parser")),
    reason="needs AppArmor enabled and apparmor_parser: runs in the systemd VM lane")]

PROFILE = "ocirt-it-profile"
POLICY = f"""
profile {PROFILE} flags=(attach_disconnected,mediate_deleted) {{
  file,
  capability,
  network,
  signal,
  unix,
  ptrace,
  mount,
  umount,
  pivot_root,
  deny /proc/version r,
}}
"""


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("apparmor") / "profile"
    path.write_text(POLICY)
    subprocess.run(["apparmor_parser", "-r", str(path)], check=True, capture_output=True)
    yield PROFILE
    subprocess.run(["apparmor_parser", "-R", str(path)], check=False, capture_output=True)


def test_profile_confines_init_and_exec(rt, make_config, bundle, profile):
    config = make_config(["sh", "-c", "cat /proc/self/attr/current; sleep 1000"])
    config["process"]["apparmorProfile"] = profile
    cid = rt.new_id("aa")
    rt.ok("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
    pid = int(json.loads(rt.ok("state", cid, timeout=10 * SLOW).stdout)["pid"])
    rt.ok("start", cid, timeout=10 * SLOW)
    with open(f"/proc/{pid}/attr/current") as handle:
        assert handle.read().strip() in (f"{profile} (enforce)",)
    out = rt.ok("exec", cid, "cat", "/proc/self/attr/current", timeout=10 * SLOW).stdout
    assert out.strip() == f"{profile} (enforce)"
    denied = rt("exec", cid, "cat", "/proc/version", timeout=10 * SLOW)
    assert denied.returncode != 0 and "denied" in denied.stderr.lower(), denied
    out = rt.ok("exec", "--apparmor", "unconfined", cid, "cat", "/proc/self/attr/current",
                timeout=10 * SLOW).stdout
    assert out.strip() == "unconfined"


def test_no_profile_is_unconfined(rt, make_config, bundle):
    config = make_config(["cat", "/proc/self/attr/current"])
    cid = rt.new_id("aa0")
    result = rt.ok("run", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
    assert result.stdout.strip() == "unconfined"


def test_an_unknown_profile_fails_cleanly(rt, make_config, bundle):
    config = make_config(["true"])
    config["process"]["apparmorProfile"] = "ocirt-no-such-profile"
    cid = rt.new_id("aabad")
    result = rt.fails("create", "--bundle", str(bundle(config)), cid, timeout=10 * SLOW)
    assert "apparmor" in result.stderr.lower(), result.stderr
    assert not rt.state_dir(cid).exists()
