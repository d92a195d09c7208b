"""The compiled-validator cache: written once, reused, rebuilt when damaged, never required.

Also the reason it exists: ``ocirt.config.load`` plus a validation must not import jsonschema
(~110 ms) or other heavy modules, checked in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocirt.cache import cache_dir
from ocirt.config import validate
from ocirt.config.default import default_spec
from ocirt.errors import ConfigError

REPO = Path(__file__).parents[2]
SCHEMAS = REPO / "ocirt" / "config" / "schemas"


def cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("validator-*.marshal"))


def forbid_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(_files: object) -> None:
        raise AssertionError("compiled although the cache was valid")

    monkeypatch.setattr(validate, "compile_validator", fail)


def test_written_once_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    run = validate.load_validator(cache=str(cache))
    assert run("config-schema.json", default_spec()) is None
    (name,) = cached_files(cache)
    assert name.startswith(f"validator-{sys.implementation.cache_tag}-")
    assert (cache / name).stat().st_mode & 0o777 == 0o644
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    forbid_compiling(monkeypatch)
    again = validate.load_validator(cache=str(cache))
    assert again("config-schema.json", {"ociVersion": "2.0.0"}) is not None


def test_env_var_chooses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIRT_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setattr(validate, "_runner", None)
    assert cache_dir() == str(tmp_path / "env-cache")
    validate.validate_config(default_spec())
    assert len(cached_files(tmp_path / "env-cache")) == 1


def test_default_cache_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIRT_CACHE_DIR", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cache_dir() == "/var/cache/ocirt"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", "/home/u/.xdg")
    assert cache_dir() == "/home/u/.xdg/ocirt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert cache_dir() == "/home/u/.cache/ocirt"


@pytest.mark.parametrize("damage", [b"", b"garbage", b"\xe3" + b"\0" * 100])
def test_damaged_cache_is_rebuilt(tmp_path: Path, damage: bytes) -> None:
    validate.load_validator(cache=str(tmp_path))
    (name,) = cached_files(tmp_path)
    (tmp_path / name).write_bytes(damage)
    run = validate.load_validator(cache=str(tmp_path))
    assert run("config-schema.json", default_spec()) is None
    assert (tmp_path / name).stat().st_size > 1000


def test_cache_of_wrong_kind_is_replaced(tmp_path: Path) -> None:
    """Valid marshal data that is not a code object, or code that does not define run()."""
    import marshal

    validate.load_validator(cache=str(tmp_path))
    (name,) = cached_files(tmp_path)
    for data in [marshal.dumps([1, 2]), marshal.dumps(compile("x = 1", "f", "exec"))]:
        (tmp_path / name).write_bytes(data)
        run = validate.load_validator(cache=str(tmp_path))
        assert run("config-schema.json", {"ociVersion": "1.2.0"}) is None


def test_writable_by_others_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    validate.load_validator(cache=str(tmp_path))
    (name,) = cached_files(tmp_path)
    (tmp_path / name).chmod(0o666)
    compiled = []
    real = validate.compile_validator

    def counting(files: dict[str, bytes]) -> object:
        compiled.append(1)
        return real(files)

    monkeypatch.setattr(validate, "compile_validator", counting)
    validate.load_validator(cache=str(tmp_path))
    assert compiled == [1]
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o644  # rewritten safely


def test_unwritable_cache_still_validates(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run = validate.load_validator(cache=str(blocker / "cache"))
    assert run("config-schema.json", {"ociVersion": "1.2.0", "process": {}}) == (
        "$.process",
        'missing required property "cwd"',
    )


def test_schema_change_gets_a_new_cache(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    cache = tmp_path / "cache"
    validate.load_validator(schemas=str(schemas), cache=str(cache))
    assert len(cached_files(cache)) == 1
    config = json.loads((schemas / "config-schema.json").read_text())
    config["properties"]["hostname"]["maxLength"] = 3
    (schemas / "config-schema.json").write_text(json.dumps(config))
    run = validate.load_validator(schemas=str(schemas), cache=str(cache))
    assert len(cached_files(cache)) == 2  # the other one stays (another install may use it)
    doc = {"ociVersion": "1.2.0", "hostname": "toolong"}
    assert run("config-schema.json", doc) == (
        "$.hostname",
        'expected at most 3 characters, got "toolong"',
    )


def test_schema_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIRT_SCHEMA_DIR", str(tmp_path))
    assert validate.schema_dir() == str(tmp_path)
    monkeypatch.delenv("OCIRT_SCHEMA_DIR")
    assert validate.schema_dir() == str(SCHEMAS)


HEAVY = ["jsonschema", "typing", "hashlib", "pathlib", "tempfile", "ocirt.config.compile_schema"]
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import ocirt.config.load as load
t1 = time.perf_counter()
load.validate_config(json.loads(sys.argv[1]))
t2 = time.perf_counter()
try:
    load.validate_config({"ociVersion": "2.0.0"})
except Exception as err:
    message = str(err)
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
times = {"import_ms": (t1 - t0) * 1e3, "validate_ms": (t2 - t1) * 1e3}
print(json.dumps({**times, "heavy": heavy, "message": message}))
"""


def probe(cache: Path) -> dict[str, object]:
    env = {**os.environ, "OCIRT_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(default_spec()), json.dumps(HEAVY)],
        env=env,
        cwd=str(REPO),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_hot_path_stays_light(tmp_path: Path) -> None:
    first = probe(tmp_path)  # compiles and writes the cache
    assert isinstance(first["heavy"], list) and "jsonschema" not in first["heavy"]
    assert "ocirt.config.compile_schema" in first["heavy"]
    second = probe(tmp_path)  # the path every `ocirt create` takes
    assert second["heavy"] == []
    assert second["message"] == (
        'config.json: $.ociVersion: unsupported ociVersion "2.0.0" (supported: 1.0.x to 1.3.x)'
    )
    # Typically ~1 ms; the bound only catches a heavy import (jsonschema alone is ~110 ms).
    assert isinstance(second["validate_ms"], float) and second["validate_ms"] < 50


def test_validation_errors_are_config_errors() -> None:
    run = validate.build_validator({p.name: p.read_bytes() for p in SCHEMAS.glob("*.json")})
    assert run("config-schema.json", {"ociVersion": "1.2.0"}) is None
    with pytest.raises(ConfigError):
        validate.validate_config({"ociVersion": None})


def test_only_the_newest_validators_are_kept(tmp_path: Path) -> None:
    """Validators of other schemas stay, up to KEEP_VALIDATORS with the newest: installs that
    share a cache directory do not delete each other's on every call; older ones go."""
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    cache = tmp_path / "cache"
    made = []
    for length in range(1, validate.KEEP_VALIDATORS + 3):
        config = json.loads((SCHEMAS / "config-schema.json").read_text())
        config["properties"]["hostname"]["maxLength"] = length
        (schemas / "config-schema.json").write_text(json.dumps(config))
        validate.load_validator(schemas=str(schemas), cache=str(cache))
        (new,) = set(cached_files(cache)) - set(made)
        made.append(new)
        for age, name in enumerate(reversed(made)):  # distinct mtimes, newest first
            if (cache / name).exists():
                os.utime(cache / name, ns=(0, 10**18 - age * 10**9))
    assert cached_files(cache) == sorted(made[-validate.KEEP_VALIDATORS:])
