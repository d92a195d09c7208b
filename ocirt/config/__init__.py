"""config.json: load it from a bundle, validate it (and state documents), write the default.

load.py            bundle path -> parsed, validated config (``load_config``)
validate.py        ``validate_config`` / ``validate_state``: compiled schemas, cached
compile_schema.py  the JSON-Schema -> Python generator behind validate.py (cache misses only)
schema_emit.py     its code emitter: one handler per keyword family
default.py         ``default_spec``: what ``ocirt spec`` writes
schemas/           the config and state JSON Schemas (package data, read by validate.py)
seccomp_profile.py the default seccomp profile as data (``default_profile``)
seccomp_default.json  its rules (package data, read by seccomp_profile.py)
"""

from ocirt.config.load import bundle_path, config_path, load_config, parse_config
from ocirt.config.validate import validate_config, validate_state

__all__ = [
    "bundle_path",
    "config_path",
    "load_config",
    "parse_config",
    "validate_config",
    "validate_state",
]
