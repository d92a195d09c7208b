"""config.json: load it from a bundle, validate it (and state documents), write the default.

load.py            bundle path -> parsed, validated config (``load_config``)
validate.py        ``validate_config`` / ``validate_state``: compiled schemas, cached
compile_schema.py  the JSON-Schema -> Python generator behind validate.py (cache misses only)
schema_emit.py     its code emitter: one handler per keyword family
default.py         ``default_spec``: what ``ocirt spec`` writes
schemas/           the config and state JSON Schemas (package data, read by validate.py)
seccomp_default.json  the default seccomp profile (package data, read by linux/seccomp/support.py)
"""

from ocirt.config.load import bundle_path, config_path, load_config, parse_config
from ocirt.config.validate import validate_config, validate_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.config.default import default_spec


def __getattr__(name: str) -> object:
    # default.py pulls in the seccomp profile (and libseccomp's helpers): only `spec` needs it
    if name == "default_spec":
        from ocirt.config.default import default_spec

        return default_spec
    raise AttributeError(f"module 'ocirt.config' has no attribute {name!r}")

__all__ = [
    "bundle_path",
    "config_path",
    "default_spec",
    "load_config",
    "parse_config",
    "validate_config",
    "validate_state",
]
