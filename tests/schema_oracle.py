"""jsonschema (draft 7) as the oracle for ocirt's compiled validator: where both agree.

Shared by test_config_schema (our schemas) and test_schema_generator (keywords they do not use).
jsonschema's draft-7 validator gets one change, matching ocirt's documented choice: ``integer``
means a Python ``int`` (a JSON number without fraction or exponent, as Go reads it), not ``1.0``.
For every invalid document the path ocirt reports must be one jsonschema reports too (or inside
it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ocirt.config import validate

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")
from referencing.jsonschema import DRAFT7  # noqa: E402

Path_ = tuple[str | int, ...]


def strict_draft7() -> Any:
    checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: type(value) is int
    )
    return jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=checker)


def oracle_for(docs: dict[str, Any], root: str) -> Any:
    # Without "$schema", jsonschema keeps our validator class when it follows a $ref into
    # another file (with it, it would switch back to the plain Draft7Validator).
    bare = {name: {k: v for k, v in doc.items() if k != "$schema"} for name, doc in docs.items()}
    registry = referencing.Registry().with_resources(
        (name, DRAFT7.create_resource(doc)) for name, doc in bare.items()
    )
    return strict_draft7()(bare[root], registry=registry)


def jsonpath(parts: Path_) -> str:
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def oracle_paths(validator: Any, doc: Any) -> set[str]:
    """Every path jsonschema blames, including inside anyOf/if branches."""
    paths: set[str] = set()
    stack = list(validator.iter_errors(doc))
    while stack:
        error = stack.pop()
        paths.add(jsonpath(tuple(error.absolute_path)))
        stack.extend(error.context or [])
    return paths


def within(where: str, paths: set[str]) -> bool:
    return any(where == p or where.startswith((p + ".", p + "[")) for p in paths)


def agree(runner: validate.Runner, oracle: Any, schema: str, doc: Any, label: str) -> bool:
    """Assert both validators agree on ``doc``; return whether it is valid."""
    error = runner(schema, doc)
    valid = oracle.is_valid(doc)
    assert (error is None) == valid, f"{label}: ocirt says {error}, jsonschema valid={valid}"
    if error is not None:
        paths = oracle_paths(oracle, doc)
        assert within(error[0], paths), f"{label}: ocirt blames {error}, jsonschema {paths}"
    return bool(valid)
