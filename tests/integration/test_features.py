"""``features``: the Features structure of features.md, valid against the spec's schema and
true: the versions and every mount option it lists are accepted by create."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .feature_support import run_ok
from .support import IS_OCIRT, REPO, ROOT_MARKS, RUNTIME_CMD

pytestmark = ROOT_MARKS

# The spec's schemas: shared/ sits beside the checkout (in CI too).
SCHEMA_DIR = REPO.parent / "shared" / "oci-runtime-spec" / "schema"
HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop"]
NAMESPACES = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}


def _features():
    try:
        proc = subprocess.run([*RUNTIME_CMD, "features"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


# Read once when the tests are collected: the mount options become test parameters.
FEATURES = _features()
# runc 1.1.5 lists these yet fails them on a bind mount (EINVAL): its bugs, not the test's.
RUNC_FAILS = {"ratime", "rnostrictatime", "remount"}
MOUNT_OPTIONS = [
    pytest.param(option, marks=pytest.mark.xfail(
        not IS_OCIRT and option in RUNC_FAILS, strict=True,
        reason="runc 1.1.5 lists the option but fails to mount with it"))
    for option in (FEATURES or {}).get("mountOptions") or ["(features failed)"]]


@pytest.fixture
def features():
    assert FEATURES is not None, f"{RUNTIME_CMD} features failed or printed no JSON"
    return FEATURES


def version_key(version):
    match = re.match(r"(\d+)\.(\d+)\.(\d+)(.*)", version)
    assert match, version
    major, minor, patch, rest = match.groups()
    # 1.0.2-dev comes before 1.0.2
    return int(major), int(minor), int(patch), rest == "", rest


def test_valid_against_the_spec_schema(features):
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    if not (SCHEMA_DIR / "features-schema.json").exists():
        pytest.skip(f"no runtime-spec schemas at {SCHEMA_DIR}")
    draft4 = referencing.jsonschema.DRAFT4
    resources = [(path.name, draft4.create_resource(json.loads(path.read_text())))
                 for path in SCHEMA_DIR.glob("*.json")]
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((SCHEMA_DIR / "features-schema.json").read_text())
    validator = jsonschema.Draft4Validator(schema, registry=registry)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(features)]
    assert errors == []


def test_required_fields_and_versions(features):
    assert version_key(features["ociVersionMin"]) <= version_key(features["ociVersionMax"])
    assert features["ociVersionMin"].startswith("1.")


def test_known_top_level_properties_only(features):
    """features.md: the structure MUST NOT contain properties the spec does not define."""
    known = {"ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "linux",
             "annotations", "potentiallyUnsafeConfigAnnotations"}
    assert set(features) <= known
    linux_known = {"namespaces", "capabilities", "cgroup", "seccomp", "apparmor", "selinux",
                   "intelRdt", "mountExtensions", "memoryPolicy", "netDevices"}
    assert set(features.get("linux", {})) <= linux_known


def test_hooks(features):
    assert features["hooks"] == HOOKS


def test_namespaces_and_capabilities(features):
    linux = features["linux"]
    assert set(linux["namespaces"]) <= NAMESPACES
    assert {"pid", "network", "mount", "ipc", "uts", "user", "cgroup"} <= set(linux["namespaces"])
    caps = linux["capabilities"]
    assert all(re.fullmatch(r"CAP_[A-Z_]+", cap) for cap in caps), caps
    assert len(caps) == len(set(caps))
    assert {"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_RESOURCE"} <= set(caps)


@pytest.mark.skipif(not IS_OCIRT, reason="what ocirt implements beyond runc 1.1")
def test_ocirt_lists_what_it_implements(features):
    assert "time" in features["linux"]["namespaces"]
    assert {"rro", "rnosuid", "nosymfollow", "rbind", "rshared"} <= set(features["mountOptions"])


@pytest.mark.parametrize("which", ["ociVersionMin", "ociVersionMax"])
def test_the_versions_are_accepted(rt, make_config, bundle, features, which):
    """features.md: the runtime MUST accept both as the ociVersion of config.json."""
    config = make_config(["true"], ociVersion=features[which])
    run_ok(rt, bundle, config)


@pytest.mark.parametrize("option", MOUNT_OPTIONS)
def test_every_listed_mount_option_is_accepted(rt, make_config, bundle, tmp_path, option):
    assert FEATURES is not None, f"{RUNTIME_CMD} features failed or printed no JSON"
    (tmp_path / "src").mkdir()
    config = make_config(["true"])
    mount = {"destination": "/mnt/opts", "type": "bind", "source": str(tmp_path / "src"),
             "options": ["rbind", option]}
    if option in ("idmap", "ridmap"):  # config.md: an error without a mapping to apply
        mount["uidMappings"] = mount["gidMappings"] = [
            {"containerID": 0, "hostID": 1000, "size": 1}]
    config["mounts"].append(mount)
    run_ok(rt, bundle, config)


def test_a_reader_that_stops_early_is_no_error(rt, tmp_path):
    argv = " ".join(f"'{word}'" for word in rt.argv("features"))
    # The reader exits at once, long before the runtime has started and writes.
    proc = subprocess.run(["sh", "-c", f"{argv} | true"], env=rt.env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.stderr == ""


def test_features_needs_no_state(rt):
    assert not Path(rt.root).exists() or not any(Path(rt.root).iterdir())
    rt.ok("features")
    assert not Path(rt.root).exists() or not any(Path(rt.root).iterdir())
