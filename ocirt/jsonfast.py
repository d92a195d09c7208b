"""JSON for the hot path, without ``import json``: the C scanner and encoder of ``_json``.

``import json`` costs about 7 ms here, a third of a ``state`` call: its pure-Python decoder
imports ``re``, which imports ``enum``. The commands managers call most (state, kill, delete,
start) only read and write small documents, so they use the C parts directly. The results are
the same as ``json.loads``, ``json.dumps`` and ``json.dumps(indent=2)`` give (a unit test checks
them against ``json``); a malformed document raises ``json``'s own ``JSONDecodeError``.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_WHITESPACE = " \t\n\r"


class _ScannerContext:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``: the defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


def _no_default(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_scan = _json.make_scanner(_ScannerContext())  # type: ignore[arg-type]  # duck-typed context
_encoders: dict[tuple[bool, bool], Any] = {}


def _encoder(compact: bool, sort_keys: bool) -> Any:
    encoder = _encoders.get((compact, sort_keys))
    if encoder is None:
        separators = (":", ",") if compact else (": ", ", ")
        encoder = _encoders[compact, sort_keys] = _json.make_encoder(
            None, _no_default, _json.encode_basestring_ascii, None, *separators, sort_keys,
            False, True)
    return encoder


def _error(message: str, text: str, index: int) -> Exception:
    from json import JSONDecodeError

    return JSONDecodeError(message, text, index)


def loads(data: str | bytes) -> Any:
    text = data.decode() if isinstance(data, bytes) else data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as err:
        raise _error("Expecting value", text, err.value) from None
    except SystemError:
        # CPython 3.11's scanner raises its errors as json.decoder.JSONDecodeError, which it
        # looks up among the modules already imported: import it, then scan again.
        import json.decoder  # noqa: F401

        value, end = _scan(text, start)
    rest = text[end:]
    if rest.strip(_WHITESPACE):
        raise _error("Extra data", text, end + len(rest) - len(rest.lstrip(_WHITESPACE)))
    return value


def dumps(obj: object, compact: bool = False, sort_keys: bool = False) -> str:
    """``json.dumps(obj, sort_keys=sort_keys)``, with ``separators=(",", ":")`` if ``compact``."""
    if isinstance(obj, str):
        result: str = _json.encode_basestring_ascii(obj)
        return result
    return "".join(_encoder(compact, sort_keys)(obj, 0))


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    return str(key)


def pretty(obj: object, indent: int = 2, _level: int = 0) -> str:
    """``json.dumps(obj, indent=2)``."""
    if isinstance(obj, dict) and obj:
        pad = "\n" + " " * (indent * (_level + 1))
        items = [f"{pad}{dumps(_key(key))}: {pretty(value, indent, _level + 1)}"
                 for key, value in obj.items()]
        return "{" + ",".join(items) + "\n" + " " * (indent * _level) + "}"
    if isinstance(obj, (list, tuple)) and obj:
        pad = "\n" + " " * (indent * (_level + 1))
        elements = [pad + pretty(value, indent, _level + 1) for value in obj]
        return "[" + ",".join(elements) + "\n" + " " * (indent * _level) + "]"
    return dumps(obj)
