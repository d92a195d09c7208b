"""Validate config.json and state documents against ``schemas/``, fast, without jsonschema.

The schemas are compiled once into Python by ``compile_schema`` and the code object is cached
with ``marshal`` in ``cache_dir()``, named by the Python version and the identity of the schema
files and the generator's source (device, inode, size and modification time in ns of each, as
the code pack and Python's own ``.pyc`` check their sources): finding and loading it reads
no schema and costs well under a millisecond. A cache
that cannot be read or written (read-only disk, foreign owner, corrupt file) only costs speed:
the schemas are then compiled in memory. Nothing here imports ``typing``, ``hashlib`` or ``re``
up front: each costs milliseconds, and this runs on every ``ocirt create``.

Cache directory: ``ocirt.cache.cache_dir()`` (``$OCIRT_CACHE_DIR``, else ``/var/cache/ocirt``
for root, else ``$XDG_CACHE_HOME/ocirt``), shared with the seccomp filters. Schemas:
``$OCIRT_SCHEMA_DIR`` if set, else ``ocirt/config/schemas/``, found beside this module (they
ship in the wheel as package data; no ``importlib.resources``, whose import costs
milliseconds).
"""

from __future__ import annotations

import marshal
import os
import sys

from ocirt.cache import cache_dir, read_trusted, write_atomic
from ocirt.errors import ConfigError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType
    from typing import Any

    # run(schema_file_name, document) -> (json_path, message) of the first error, or None
    Runner = Callable[[str, object], "tuple[str, str] | None"]

CONFIG_SCHEMA = "config-schema.json"
STATE_SCHEMA = "state-schema.json"
_HERE = os.path.dirname(os.path.abspath(__file__))
# The generator's own source is part of the cache key: an edit to it makes the cached code stale.
_GENERATOR = (os.path.join(_HERE, "compile_schema.py"), os.path.join(_HERE, "schema_emit.py"))
_runner: Runner | None = None


def validate_config(doc: object, file: str = "config.json") -> None:
    """Raise ConfigError for the first place where ``doc`` breaks the config schema."""
    _check(CONFIG_SCHEMA, doc, file)


def validate_state(doc: object, file: str = "state.json") -> None:
    """Raise ConfigError for the first place where ``doc`` breaks the state schema."""
    _check(STATE_SCHEMA, doc, file)


def _check(schema: str, doc: object, file: str) -> None:
    global _runner
    if _runner is None:
        _runner = load_validator()
    error = _runner(schema, doc)
    if error is not None:
        raise ConfigError(error[0], error[1], file)


def schema_dir() -> str:
    """Where the JSON Schemas live: inside the package, unless ``$OCIRT_SCHEMA_DIR`` says."""
    return os.environ.get("OCIRT_SCHEMA_DIR") or os.path.join(_HERE, "schemas")


def load_validator(schemas: str | None = None, cache: str | None = None) -> Runner:
    """The compiled validator for the schemas in ``schemas``, from or into ``cache``."""
    schemas = schemas or schema_dir()
    cache = cache or cache_dir()
    try:
        key = _key(schemas)
    except OSError as err:
        raise _unreadable(schemas, err) from None
    path = os.path.join(cache, f"validator-{sys.implementation.cache_tag}-{key}.marshal")
    code = _load_code(path)
    if code is not None:
        try:
            return _instantiate(code)
        except Exception:
            pass  # a damaged cache file: fall through and rebuild it
    try:
        files = _read_schemas(schemas)
    except OSError as err:
        raise _unreadable(schemas, err) from None
    code = compile_validator(files)
    _store_code(path, code)
    return _instantiate(code)


def _unreadable(schemas: str, err: OSError) -> SyscallError:
    return SyscallError.of(f"reading {schemas}", err, "cannot read the config schemas",
                           "see OCIRT_SCHEMA_DIR")


def build_validator(files: dict[str, bytes]) -> Runner:
    """A validator compiled in memory from schema files (name -> JSON bytes); no cache."""
    return _instantiate(compile_validator(files))


def compile_validator(files: dict[str, bytes]) -> CodeType:
    """Compile schema files (name -> JSON bytes) into the validator's code object."""
    import json

    from ocirt.config.compile_schema import generate

    source = generate({name: json.loads(data) for name, data in files.items()})
    return compile(source, "<ocirt schema validator>", "exec")


def _instantiate(code: CodeType) -> Runner:
    namespace: dict[str, Any] = {"__name__": "ocirt.config._validator"}
    exec(code, namespace)
    run: Runner = namespace["run"]
    return run


def _read_schemas(directory: str) -> dict[str, bytes]:
    files = {}
    for name in _schema_names(directory):
        with open(os.path.join(directory, name), "rb") as f:
            files[name] = f.read()
    return files


def _schema_names(directory: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".json"))


def _key(directory: str) -> str:
    """The cache key: the Python version, then each schema file's and generator file's name,
    device, inode, size and mtime (ns). An edited, replaced or added file changes it; a copy
    elsewhere (``$OCIRT_SCHEMA_DIR``) has other inodes. Only ints are hashed, whose ``hash``
    is the same in every process (no hash randomisation), and the cache file name carries the
    Python version too."""
    parts: list[int] = [sys.hexversion]
    names = _schema_names(directory)
    paths = [(os.path.join(directory, name), True) for name in names]
    for path, needed in paths + [(generator, False) for generator in _GENERATOR]:
        try:
            st = os.stat(path)
        except OSError:
            if needed:
                raise
            continue  # a generator file missing: it is needed only on a cache miss
        parts += (int.from_bytes(os.fsencode(path), "little"), st.st_dev, st.st_ino,
                  st.st_size, st.st_mtime_ns)
    return f"{hash(tuple(parts)) & 0xFFFFFFFFFFFFFFFF:016x}"


def _load_code(path: str) -> CodeType | None:
    """The cached code object, if the file is safely ours (see ``ocirt.cache``)."""
    data = read_trusted(path)
    if data is None:
        return None
    try:
        code = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, type(_load_code.__code__)) else None


def _store_code(path: str, code: CodeType) -> None:
    """Write the cache atomically (temp file + rename); failing to is not an error."""
    if write_atomic(path, marshal.dumps(code)) is None:
        _remove_stale(os.path.dirname(path), os.path.basename(path))


# Validators of other schemas or generators kept beside the newest: two installs or checkouts
# of ocirt that use one cache directory (a shared machine, CI, a developer's branches) would
# otherwise delete each other's validator on every call, and each call would compile (~30 ms).
KEEP_VALIDATORS = 4


def _remove_stale(directory: str, keep: str) -> None:
    """Drop validators for this Python (same name prefix) but the newest KEEP_VALIDATORS."""
    prefix = keep[: keep.rindex("-") + 1]
    try:
        names = os.listdir(directory)
    except OSError:
        return
    dated = []
    for name in names:
        if name.startswith(prefix) and name.endswith(".marshal") and name != keep:
            try:
                dated.append((os.stat(os.path.join(directory, name)).st_mtime_ns, name))
            except OSError:
                pass
    for _, name in sorted(dated, reverse=True)[KEEP_VALIDATORS - 1:]:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
