"""The schema compiler on keywords ocirt's own schemas do not (yet) use, against jsonschema.

Every keyword the generator accepts must validate as jsonschema (draft 7) does; one it cannot
compile must be refused at generation time, not mis-compiled.
"""

from __future__ import annotations

import json

import pytest
from schema_oracle import agree, oracle_for

from ocirt.config import compile_schema, validate

KITCHEN_SINK = {
    "type": "object",
    "properties": {
        "any": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
        "one": {
            "oneOf": [
                {"type": "integer", "exclusiveMinimum": 0},
                {"type": "integer", "exclusiveMaximum": 5},
            ]
        },
        "not": {"not": {"type": "string"}},
        "num": {"type": ["number", "null"], "minimum": 0.5, "maximum": 9},
        "const": {"const": [1, {"a": True}]},
        "enum": {"enum": [1, "1", True, None, [1]]},
        "closed": {
            "type": "object",
            "properties": {"a": {"type": "boolean"}},
            "patternProperties": {"^x-": {"type": "integer"}},
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 2,
        },
        "typedExtra": {
            "additionalProperties": {"type": "string"},
            "propertyNames": {"maxLength": 2},
        },
        "list": {
            "type": "array",
            "maxItems": 2,
            "items": {"allOf": [{"type": "integer"}, {"minimum": 3}]},
        },
        "never": False,
        "always": True,
        "cond": {
            "if": {"required": ["kind"], "properties": {"kind": {"const": "a"}}},
            "then": {"required": ["a"]},
            "else": {"required": ["b"]},
        },
        "elseOnly": {"if": {"type": "string"}, "else": {"type": "integer"}},
        "untyped": {"minLength": 2, "minimum": 2, "required": ["k"], "minItems": 1},
    },
}

SINK_VALUES = [
    None,
    True,
    False,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    10,
    -1,
    0.5,
    1.0,
    2.5,
    9.5,
    "",
    "a",
    "ab",
    "abcd",
    "1",
    [],
    [1],
    [3],
    [3, 4],
    [3, 4, 5],
    [2],
    ["x"],
    [1, {"a": True}],
    [1, {"a": 1}],
    [[1]],
    {},
    {"a": True},
    {"a": 1},
    {"x-1": 1},
    {"x-1": "s"},
    {"a": False, "x-2": 2, "x-3": 3},
    {"b": 1},
    {"kind": "a"},
    {"kind": "a", "a": 1},
    {"kind": "b"},
    {"kind": "b", "b": 0},
    {"k": 1},
    {"abc": "s"},
    {"ab": "s"},
    {"ab": 1},
    {"a": {"a": True}},
]


def test_generator_agrees_on_other_keywords() -> None:
    docs = {"sink-schema.json": KITCHEN_SINK}
    run = validate.build_validator({"sink-schema.json": json.dumps(KITCHEN_SINK).encode()})
    oracle = oracle_for(docs, "sink-schema.json")
    invalid = 0
    for prop in KITCHEN_SINK["properties"]:
        for value in SINK_VALUES:
            invalid += not agree(
                run, oracle, "sink-schema.json", {prop: value}, f"{prop}={value!r}"
            )
    assert invalid > 100


def test_generator_refuses_what_it_cannot_compile() -> None:
    for schema in [
        {"type": "object", "dependencies": {"a": ["b"]}},
        {"$ref": "#/definitions/x", "type": "object", "definitions": {"x": {}}},
        {"items": [{"type": "string"}]},
        {"$ref": "other.json#/x"},
        {"$ref": "#/definitions/missing"},
    ]:
        with pytest.raises(compile_schema.SchemaCompileError):
            compile_schema.generate({"t-schema.json": schema})
