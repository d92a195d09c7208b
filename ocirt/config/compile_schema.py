"""Compile the JSON Schemas under ``ocirt/config/schemas/`` into plain Python validation code.

``import jsonschema`` costs ~110 ms, too much for every ``ocirt create``; so the schemas are
turned once into straight-line Python (``validate.py`` caches the compiled code object).
Only the subset of draft 7 that our schemas use is supported; anything else is refused at
compile time rather than silently ignored:

  type, enum, const, properties, required, additionalProperties, patternProperties,
  propertyNames, minProperties, maxProperties, items (one schema), minItems, maxItems,
  minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
  allOf, anyOf, oneOf, not, if/then/else, $ref (``file.json#/json/pointer``), definitions,
  and the annotations $schema, $id, $comment, title, description, default, examples.

One extension: ``x-message`` replaces the text of a failed enum/const/string/range check at
its node; ``{value}`` in it becomes the offending value as JSON.

Semantics are draft 7's with one deliberate difference: ``integer`` is a JSON number without
fraction or exponent (a Python ``int``, not ``bool``, not ``1.0``), as Go's encoding/json
reads it. Checks run in a fixed order (type, enum/const, string, number, required,
properties in schema order, other keys in document order, items, allOf, anyOf/oneOf, not,
if), so the first error reported is deterministic.

The generated module defines ``run(name, doc) -> (where, what) | None``: ``name`` is a schema
file name (``config-schema.json``), ``where`` a JSON path (``$.process.args[0]``).
``python -m ocirt.config.compile_schema [SCHEMA_DIR]`` prints it.
"""

from __future__ import annotations

import _sre  # type: ignore[import-not-found]
import json
import os
import re
import sys
from typing import Any

from ocirt.config.schema_emit import Generator, SchemaCompileError

__all__ = ["SchemaCompileError", "generate", "load_schemas", "main"]

# The runtime part of the generated module: the failure, JSON paths and value formatting.
PRELUDE = """\
class Invalid(Exception):
    def __init__(self, parts, what):
        self.parts = parts
        self.what = what

_MISSING = object()
_RE = {}
_RX = {}

def _re(pattern):
    rx = _RE.get(pattern)
    if rx is None:
        try:  # compiled when the validator was generated: no ``import re`` (~3 ms)
            import _sre
            rx = _sre.compile(pattern, *_RX[pattern])
        except Exception:
            import re
            rx = re.compile(pattern)
        _RE[pattern] = rx
    return rx

def _fail(parts, what):
    raise Invalid(parts, what)

def _q(value):
    import json
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."

def _t(value):
    if value is None: return "null"
    if value is True or value is False: return "boolean"
    if type(value) is int: return "integer"
    if type(value) is float: return "number"
    if isinstance(value, str): return "string"
    if isinstance(value, list): return "array"
    if isinstance(value, dict): return "object"
    return type(value).__name__

def _eq(a, b):
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict, bool)) or isinstance(b, (list, dict, bool)):
        return type(a) is type(b) and a == b
    return a == b

def _passes(fn, v):
    try:
        fn(v, ())
    except Invalid:
        return False
    return True

def _none_matches(fn, v, p):
    try:
        fn(v, p)
    except Invalid as e:
        return "matches none of the allowed forms (first: " + _where(e.parts) + ": " + e.what + ")"
    return "matches none of the allowed forms"

def _where(parts):
    text = "$"
    for p in parts:
        if type(p) is int:
            text += "[%d]" % p
        elif p.isidentifier():
            text += "." + p
        else:
            text += "[" + _q(p) + "]"
    return text

def run(name, doc):
    try:
        ROOTS[name](doc, ())
    except Invalid as err:
        return _where(err.parts), err.what
    return None
"""


def load_schemas(schema_dir: str) -> dict[str, Any]:
    """Read every ``*.json`` in ``schema_dir``: file name -> parsed schema."""
    docs: dict[str, Any] = {}
    for name in sorted(os.listdir(schema_dir)):
        if name.endswith(".json"):
            with open(os.path.join(schema_dir, name), "rb") as f:
                docs[name] = json.loads(f.read())
    return docs


def generate(docs: dict[str, Any], roots: list[str] | None = None) -> str:
    """Python source validating against ``roots`` (default: every ``*-schema.json``)."""
    names = roots if roots is not None else [n for n in docs if n.endswith("-schema.json")]
    gen = Generator(docs)
    entries = [f"{name!r}: {gen.function_for(name, '')}" for name in names]
    gen.drain()
    consts = [f"{name} = {value}" for value, name in gen.consts.items()]
    compiled = {p: args for p in sorted(gen.patterns) if (args := _sre_args(p)) is not None}
    consts.append(f"_RX = {compiled!r}")
    body = "\n".join([*consts, "", *gen.out])
    return f"{PRELUDE}\n{body}\n\nROOTS = {{{', '.join(entries)}}}\n"


def _sre_args(pattern: str) -> tuple[Any, ...] | None:
    """What ``re.compile(pattern)`` hands to ``_sre.compile`` after the pattern (flags, code,
    groups, group names), so the validator makes its regexes without importing ``re``; None
    where this Python's ``re`` is not laid out as 3.11's. The cache key holds the Python
    version, so the code is only ever read back by the ``_sre`` that it was made for."""
    try:
        parsed = re._parser.parse(pattern, 0)  # type: ignore[attr-defined]
        code = re._compiler._code(parsed, 0)  # type: ignore[attr-defined]
        groupindex = dict(parsed.state.groupdict)
        indexgroup: list[str | None] = [None] * parsed.state.groups
        for name, index in groupindex.items():
            indexgroup[index] = name
        args = (int(parsed.state.flags), [int(op) for op in code], parsed.state.groups - 1,
                groupindex, tuple(indexgroup))  # plain ints: the opcodes' repr is their name
        probe = _sre.compile(pattern, *args)
        if probe.pattern != pattern or probe.flags != re.compile(pattern).flags:
            return None
    except Exception:
        return None
    return args


def main(argv: list[str]) -> int:
    """Print the generated validator for a schema directory (default: ocirt's own, beside
    this module; ``validate`` imports this module, never the other way round)."""
    own = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
    sys.stdout.write(generate(load_schemas(argv[1] if len(argv) > 1 else own)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
