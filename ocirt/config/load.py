"""Read a bundle's config.json: resolve the bundle, parse the JSON, validate it.

Every failure is a ConfigError naming the file and where in it: the errno text when it cannot
be read, ``line L column C`` when it is not JSON, the JSON path when it breaks the schema.
Only ``json`` is imported here; validation is ``ocirt.config.validate`` (no jsonschema).
"""

from __future__ import annotations

import errno
import os

from ocirt import jsonfast
from ocirt.config.validate import validate_config
from ocirt.errors import ConfigError, access_hint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONFIG_NAME = "config.json"


def bundle_path(bundle: str | None = None) -> str:
    """The bundle directory as an absolute path (default: the current directory, like runc)."""
    return os.path.abspath(bundle or ".")


def config_path(bundle: str | None = None) -> str:
    """The absolute path of the bundle's config.json."""
    return os.path.join(bundle_path(bundle), CONFIG_NAME)


def load_config(bundle_dir: str) -> dict[str, Any]:
    """Read, parse and validate ``<bundle_dir>/config.json``; errors name the absolute path."""
    path = config_path(bundle_dir)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        code = err.errno or 0
        name = errno.errorcode.get(code, str(code))
        raise ConfigError("cannot read", f"{err.strerror} ({name}){access_hint(err, 'a bundle')}",
                          path) from None
    return parse_config(data, path)


def parse_config(data: bytes | str, file: str = CONFIG_NAME) -> dict[str, Any]:
    """Parse config.json text and validate it; ``file`` names it in error messages."""
    try:
        doc = jsonfast.loads(data)
    except UnicodeDecodeError as err:
        raise ConfigError(f"byte {err.start}", f"not valid {err.encoding}", file) from None
    except ValueError as err:  # json.JSONDecodeError
        where = f"line {getattr(err, 'lineno', '?')} column {getattr(err, 'colno', '?')}"
        raise ConfigError(where, getattr(err, "msg", str(err)), file) from None
    validate_config(doc, file)
    config: dict[str, Any] = doc
    return config
