"""load_config: what a user sees when config.json is missing, not JSON, or wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ocirt.config import bundle_path, load_config, parse_config, validate
from ocirt.config.default import default_spec
from ocirt.errors import ConfigError


def write_bundle(tmp_path: Path, content: str | bytes | dict[str, Any]) -> Path:
    if isinstance(content, dict):
        content = json.dumps(content, indent=4)
    data = content.encode() if isinstance(content, str) else content
    (tmp_path / "config.json").write_bytes(data)
    return tmp_path


def error_of(bundle: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config(str(bundle))
    return err.value


def test_loads_a_valid_bundle(tmp_path: Path) -> None:
    spec = default_spec()
    assert load_config(str(write_bundle(tmp_path, spec))) == spec


def test_relative_bundle_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_bundle(tmp_path, default_spec())
    monkeypatch.chdir(tmp_path.parent)
    assert load_config(tmp_path.name)["hostname"] == "ocirt"
    assert bundle_path(tmp_path.name) == str(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert bundle_path() == str(tmp_path)


def test_missing_config_names_path_and_errno(tmp_path: Path) -> None:
    err = error_of(tmp_path)
    path = str(tmp_path / "config.json")
    assert str(err) == f"{path}: cannot read: No such file or directory (ENOENT)"
    assert err.where == "cannot read"


def test_missing_bundle(tmp_path: Path) -> None:
    err = error_of(tmp_path / "nope")
    assert "nope/config.json: cannot read: No such file or directory" in str(err)


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    assert str(error_of(tmp_path)).endswith("cannot read: Is a directory (EISDIR)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config(tmp_path: Path) -> None:
    write_bundle(tmp_path, default_spec())
    (tmp_path / "config.json").chmod(0)
    assert str(error_of(tmp_path)).endswith("cannot read: Permission denied (EACCES)")


def test_parse_error_gives_line_and_column(tmp_path: Path) -> None:
    err = error_of(write_bundle(tmp_path, '{\n    "ociVersion": "1.2.0",\n}\n'))
    assert err.where == "line 3 column 1"
    assert err.what == "Expecting property name enclosed in double quotes"
    assert str(err) == f"{tmp_path / 'config.json'}: line 3 column 1: {err.what}"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "line 1 column 1"),
        ('{"ociVersion": "1.2.0"', "line 1 column 23"),
        ('{"ociVersion": "1.2.0"} x', "line 1 column 25"),
        ("{\n\n  'single': 1}", "line 3 column 3"),
    ],
)
def test_parse_error_positions(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert err.value.where == where


def test_not_utf8(tmp_path: Path) -> None:
    err = error_of(write_bundle(tmp_path, b'{"ociVersion": "1.2.0", "hostname": "\xff"}'))
    assert "not valid utf-8" in str(err)


def proc(**fields: Any) -> dict[str, Any]:
    """A config whose process has ``fields`` on top of a valid cwd and args."""
    return {"ociVersion": "1.2.0", "process": {"cwd": "/", "args": ["sh"], **fields}}


def linux(**fields: Any) -> dict[str, Any]:
    return {"ociVersion": "1.2.0", "linux": fields}


CWD = 'missing required property "cwd"'
NAMESPACE_TYPES = '"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"'
SCHEMA_ERRORS = [
    ([], "$", "expected object, got array"),
    ({}, "$", 'missing required property "ociVersion"'),
    ({"ociVersion": 1}, "$.ociVersion", "expected string, got integer"),
    (proc(args="sh"), "$.process.args", "expected array, got string"),
    (proc(args=["sh", 1]), "$.process.args[1]", "expected string, got integer"),
    (proc(args=[]), "$.process.args", "expected at least 1 item, got 0"),
    (proc(cwd="."), "$.process.cwd", 'expected an absolute path, got "."'),
    ({"ociVersion": "1.2.0", "process": {"args": ["a"]}}, "$.process", CWD),
    (proc(user={"uid": 0}), "$.process.user", 'missing required property "gid"'),
    (proc(user={"uid": 1.5, "gid": 0}), "$.process.user.uid", "expected integer, got number"),
    (proc(user={"uid": True, "gid": 0}), "$.process.user.uid", "expected integer, got boolean"),
    (
        proc(rlimits=[{"type": "NOFILE", "soft": 1, "hard": 1}]),
        "$.process.rlimits[0].type",
        'expected a string matching ^RLIMIT_[A-Z]+$, got "NOFILE"',
    ),
    (
        linux(uidMappings=[{"containerID": 0, "hostID": 2**32, "size": 1}]),
        "$.linux.uidMappings[0].hostID",
        "expected 0 to 4294967295, got 4294967296",
    ),
    (
        linux(namespaces=[{"type": "pid"}, {"type": "net"}]),
        "$.linux.namespaces[1].type",
        f'expected one of {NAMESPACE_TYPES}, got "net"',
    ),
    (
        {"ociVersion": "1.2.0", "annotations": {"org.example.key": 1}},
        '$.annotations["org.example.key"]',
        "expected string, got integer",
    ),
    (
        {"ociVersion": "1.2.0", "hooks": {"poststop": [{"path": "rel/hook"}]}},
        "$.hooks.poststop[0].path",
        'expected an absolute path, got "rel/hook"',
    ),
    (
        {"ociVersion": "1.2.0", "hooks": {"prestart": [{"path": "/x", "timeout": 0}]}},
        "$.hooks.prestart[0].timeout",
        "expected >= 1, got 0",
    ),
    (
        linux(seccomp={"defaultAction": "SCMP_ACT_LOG", "syscalls": [{"names": [], "action": ""}]}),
        "$.linux.seccomp.syscalls[0].names",
        "expected at least 1 item, got 0",
    ),
    (
        linux(devices=[{"type": "c", "path": "/dev/null", "major": 1}]),
        "$.linux.devices[0]",
        'missing required property "minor"',
    ),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "where", "what"), SCHEMA_ERRORS)
def test_schema_errors_name_the_json_path(
    tmp_path: Path, doc: dict[str, Any], where: str, what: str
) -> None:
    err = error_of(write_bundle(tmp_path, json.dumps(doc)))
    assert (err.where, err.what) == (where, what)
    assert str(err) == f"{tmp_path / 'config.json'}: {where}: {what}"


def test_validate_config_default_file_name() -> None:
    with pytest.raises(ConfigError) as err:
        validate.validate_config({"ociVersion": "1.2.0", "process": {"cwd": "/", "args": "sh"}})
    assert str(err.value) == "config.json: $.process.args: expected array, got string"


@pytest.mark.parametrize(
    "version",
    ["1.0.0", "1.0.1", "1.0.2", "1.0.2-dev", "1.1.0", "1.1.0-rc.1", "1.2.0", "1.2.1", "1.3.0",
     "1.3.0-rc.2+build.5", "1.2.10"],
)  # fmt: skip
def test_supported_oci_versions(version: str) -> None:
    validate.validate_config({"ociVersion": version})


@pytest.mark.parametrize(
    "version",
    ["0.9.0", "2.0.0", "1.4.0", "1.10.0", "1.2", "1", "", "v1.2.0", "1.2.0-", "1.02.0", "1.2.x",
     " 1.2.0", "1.2.0 "],
)  # fmt: skip
def test_unsupported_oci_versions(version: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate.validate_config({"ociVersion": version})
    assert err.value.where == "$.ociVersion"
    assert err.value.what == f'unsupported ociVersion "{version}" (supported: 1.0.x to 1.3.x)'


def test_unknown_properties_are_ignored() -> None:
    spec = default_spec()
    spec["com.example.extension"] = {"anything": [1, 2]}
    spec["process"]["futureField"] = True
    spec["linux"]["resources"]["newController"] = {"x": 1}
    validate.validate_config(spec)


def test_validate_state() -> None:
    state = {"ociVersion": "1.2.0", "id": "c1", "status": "created", "pid": 7, "bundle": "/b"}
    validate.validate_state(state)
    with pytest.raises(ConfigError) as err:
        validate.validate_state({**state, "status": "zombie"})
    assert str(err.value) == (
        'state.json: $.status: expected one of "creating", "created", "running", "stopped", '
        '"paused", got "zombie"'
    )
    with pytest.raises(ConfigError) as err:
        validate.validate_state({**state, "bundle": "relative"}, file="/run/ocirt/c1/state.json")
    assert str(err.value).startswith("/run/ocirt/c1/state.json: $.bundle: ")
