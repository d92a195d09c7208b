"""linux.personality: the execution domain of the container's process."""

from __future__ import annotations

import os
import platform

import pytest

from .feature_support import run_ok, started
from .support import ROOT_MARKS, assert_nothing_left, requires_ocirt

pytestmark = [*ROOT_MARKS,
              pytest.mark.skipif(platform.machine() != "x86_64", reason="checks x86_64's i686")]

PER_LINUX32 = 0x0008


def personality_of(pid):
    with open(f"/proc/{pid}/personality") as handle:
        return int(handle.read(), 16)


@requires_ocirt  # runc 1.1 ignores linux.personality
def test_linux32(rt, make_config, bundle):
    config = make_config(["uname", "-m"], linux__personality={"domain": "LINUX32"})
    assert run_ok(rt, bundle, config) == "i686\n"


@requires_ocirt
def test_linux32_from_outside(rt, make_config, bundle):
    config = make_config(["sleep", "100"], linux__personality={"domain": "LINUX32"})
    _, pid = started(rt, bundle, config)
    assert personality_of(pid) & 0xFF == PER_LINUX32


def test_linux(rt, make_config, bundle):
    config = make_config(["uname", "-m"], linux__personality={"domain": "LINUX"})
    assert run_ok(rt, bundle, config) == f"{os.uname().machine}\n"


def test_default_is_the_hosts(rt, make_config, bundle):
    _, pid = started(rt, bundle, make_config(["sleep", "100"]))
    assert personality_of(pid) == personality_of("self")


@requires_ocirt
def test_unknown_domain_is_refused(rt, make_config, bundle):
    cid = rt.new_id()
    config = make_config(["true"], linux__personality={"domain": "LINUX64"})
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert "personality" in result.stderr
    assert_nothing_left(rt, cid)


@requires_ocirt
def test_linux32_exec(rt, make_config, bundle):
    config = make_config(["sleep", "100"], linux__personality={"domain": "LINUX32"})
    cid, _ = started(rt, bundle, config)
    assert rt.ok("exec", cid, "uname", "-m").stdout == "i686\n"
