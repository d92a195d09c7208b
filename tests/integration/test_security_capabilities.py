"""Capabilities: the five sets of process.capabilities are what /proc/self/status shows.

execve(2) decides what a program finally holds from the sets the runtime leaves; the configs here
agree with its rules (see ``ocirt.linux.capabilities``), so each set must come out exactly.
"""

from __future__ import annotations

import pytest

from .security_support import CAPS, cap_mask, host_bounding, status_fields
from .support import ROOT_MARKS, requires_ocirt

pytestmark = ROOT_MARKS

STATUS = ["grep", "^Cap", "/proc/self/status"]
BOUNDING = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
            "CAP_SETUID", "CAP_SETGID"]


def caps_in_container(rt, make_config, bundle, **overrides):
    cid = rt.new_id("caps")
    result = rt("run", "--bundle", str(bundle(make_config(STATUS, **overrides))), cid)
    assert result.returncode == 0, result
    fields = status_fields(result.stdout)
    return {key: int(fields[key], 16) for key in ("CapBnd", "CapEff", "CapInh", "CapPrm",
                                                  "CapAmb")}, result


def expect(bounding, effective, inheritable, permitted, ambient):
    return {"CapBnd": cap_mask(bounding), "CapEff": cap_mask(effective),
            "CapInh": cap_mask(inheritable), "CapPrm": cap_mask(permitted),
            "CapAmb": cap_mask(ambient)}


def test_root_gets_all_five_sets(rt, make_config, bundle):
    inheritable = ["CAP_KILL", "CAP_NET_RAW"]
    sets = {"bounding": BOUNDING, "effective": BOUNDING, "permitted": BOUNDING,
            "inheritable": inheritable, "ambient": ["CAP_KILL"]}
    got, _ = caps_in_container(rt, make_config, bundle, process__capabilities=sets)
    assert got == expect(BOUNDING, BOUNDING, inheritable, BOUNDING, ["CAP_KILL"])


def test_root_with_no_new_privs_keeps_a_smaller_permitted_set(rt, make_config, bundle):
    """no_new_privs: exec cannot raise root's permitted set back to the bounding set."""
    sets = {"bounding": BOUNDING, "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
    got, _ = caps_in_container(rt, make_config, bundle, process__capabilities=sets)
    assert got == expect(BOUNDING, ["CAP_KILL"], [], ["CAP_KILL"], [])


def test_non_root_keeps_its_capabilities_across_the_user_change(rt, make_config, bundle):
    """keep-caps across setuid, then ambient: a non-root program holds exactly these."""
    kept = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
    sets = {"bounding": BOUNDING, "effective": kept, "permitted": kept, "inheritable": kept,
            "ambient": kept}
    got, _ = caps_in_container(rt, make_config, bundle, process__capabilities=sets,
                               process__user={"uid": 1000, "gid": 1000})
    assert got == expect(BOUNDING, kept, kept, kept, kept)


def test_non_root_without_ambient_has_none(rt, make_config, bundle):
    sets = {"bounding": BOUNDING, "effective": BOUNDING, "permitted": BOUNDING}
    got, _ = caps_in_container(rt, make_config, bundle, process__capabilities=sets,
                               process__user={"uid": 1000, "gid": 1000})
    assert got == expect(BOUNDING, [], [], [], [])


def test_empty_sets(rt, make_config, bundle):
    sets = {kind: [] for kind in ("bounding", "effective", "permitted", "inheritable",
                                  "ambient")}
    got, _ = caps_in_container(rt, make_config, bundle, process__capabilities=sets)
    assert got == expect([], [], [], [], [])


def test_capabilities_really_bind(rt, make_config, bundle, tmp_path):
    """Without CAP_CHOWN root cannot chown; with it, it can."""
    def chown(caps):
        cid = rt.new_id("chown")
        config = make_config(["sh", "-c", "touch /dev/shm/f && chown 1234 /dev/shm/f && echo ok"],
                             process__capabilities={k: caps for k in
                                                    ("bounding", "effective", "permitted")})
        return rt("run", "--bundle", str(bundle(config, name=cid)), cid)

    assert chown(["CAP_CHOWN"]).stdout.strip() == "ok"
    denied = chown(["CAP_KILL"])
    assert denied.returncode != 0 and "ok" not in denied.stdout, denied


@requires_ocirt
def test_unknown_capability_is_an_error_naming_it(rt, make_config, bundle):
    config = make_config(["true"])
    config["process"]["capabilities"]["bounding"] = ["CAP_KILL", "CAP_NOT_A_THING"]
    result = rt.fails("create", "--bundle", str(bundle(config)), rt.new_id())
    assert "CAP_NOT_A_THING" in result.stderr, result
    assert "$.process.capabilities.bounding[1]" in result.stderr, result


@requires_ocirt  # runc 1.1 fails: "unable to apply caps: operation not permitted"
def test_capability_the_host_lacks_is_reported(rt, make_config, bundle):
    missing = [name for name, number in CAPS.items() if not host_bounding() >> number & 1]
    if not missing:
        pytest.skip("this host's bounding set has every capability")
    name = missing[0]
    sets = {kind: ["CAP_KILL", name] for kind in ("bounding", "effective", "permitted")}
    got, result = caps_in_container(rt, make_config, bundle, process__capabilities=sets)
    assert got["CapBnd"] == cap_mask(["CAP_KILL"])
    assert got["CapEff"] == cap_mask(["CAP_KILL"])
    assert name in result.stderr and "bounding set" in result.stderr, result
