"""default_spec: runc's ``spec`` output with ocirt's documented changes, valid for both schemas.

The fixtures in data/ are what ``runc spec`` and ``runc spec --rootless`` (runc 1.1.5, run as
root) printed. runc 1.2 no longer sets ambient capabilities and adds the cgroup namespace on
cgroup v2 hosts; ocirt follows 1.2 there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ocirt import OCI_VERSION
from ocirt.config import validate
from ocirt.config.default import default_spec
from ocirt.config.seccomp_profile import default_profile

DATA = Path(__file__).parent / "data"
OFFICIAL = Path(__file__).parents[3] / "shared/oci-runtime-spec/schema"


def as_ocirt_writes_it(runc: dict[str, Any]) -> dict[str, Any]:
    """runc 1.1.5's output with the differences default.py documents applied."""
    runc["ociVersion"] = OCI_VERSION
    runc["hostname"] = "ocirt"
    runc["process"]["terminal"] = False
    runc["linux"]["seccomp"] = default_profile()
    del runc["process"]["capabilities"]["ambient"]
    namespaces = runc["linux"]["namespaces"]
    after_mount = [ns["type"] for ns in namespaces].index("mount") + 1
    namespaces.insert(after_mount, {"type": "cgroup"})
    for mapping in runc["linux"].get("uidMappings", []):
        mapping["hostID"] = os.geteuid()
    for mapping in runc["linux"].get("gidMappings", []):
        mapping["hostID"] = os.getegid()
    return runc


@pytest.mark.parametrize(
    ("rootless", "fixture"),
    [(False, "runc-1.1.5-spec.json"), (True, "runc-1.1.5-spec-rootless.json")],
)
def test_matches_runc_spec(rootless: bool, fixture: str) -> None:
    runc = json.loads((DATA / fixture).read_text())
    assert default_spec(rootless=rootless) == as_ocirt_writes_it(runc)


def test_process_defaults() -> None:
    process = default_spec()["process"]
    assert process["args"] == ["sh"]
    assert process["terminal"] is False
    assert process["cwd"] == "/"
    assert process["user"] == {"uid": 0, "gid": 0}
    assert "TERM=xterm" in process["env"]
    assert process["noNewPrivileges"] is True


def test_args_and_fresh_copies() -> None:
    spec = default_spec(args=["/bin/echo", "hi"])
    assert spec["process"]["args"] == ["/bin/echo", "hi"]
    spec["mounts"].clear()
    spec["process"]["env"].append("X=1")
    spec["linux"]["maskedPaths"].clear()
    again = default_spec()
    assert len(again["mounts"]) == 7
    assert "X=1" not in again["process"]["env"]
    assert again["linux"]["maskedPaths"]


def test_rootless_variant() -> None:
    spec = default_spec(rootless=True)
    linux = spec["linux"]
    types = [ns["type"] for ns in linux["namespaces"]]
    assert types == ["pid", "ipc", "uts", "mount", "cgroup", "user"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/sys"] == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }
    assert not any(
        o.startswith(("gid=", "uid=")) for m in spec["mounts"] for o in m.get("options", [])
    )


@pytest.mark.parametrize("rootless", [False, True])
def test_default_passes_our_schema(rootless: bool) -> None:
    validate.validate_config(default_spec(rootless=rootless))


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="the official runtime-spec schemas are absent")
@pytest.mark.parametrize("rootless", [False, True])
def test_default_passes_official_schema(rootless: bool) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    from referencing.jsonschema import DRAFT4

    docs = {p.name: json.loads(p.read_text()) for p in OFFICIAL.glob("*.json")}
    registry = referencing.Registry().with_resources(
        (name, DRAFT4.create_resource(doc)) for name, doc in docs.items()
    )
    validator = jsonschema.Draft4Validator(docs["config-schema.json"], registry=registry)
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(default_spec(rootless=rootless))
    ]
    assert errors == []
