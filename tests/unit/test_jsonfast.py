"""jsonfast gives what json gives: loads, dumps (spaced and compact) and indent=2 output."""

from __future__ import annotations

import json
import math

import pytest

from ocirt import jsonfast

DOCS = [
    {},
    [],
    {"ociVersion": "1.3.0", "id": "c1", "pid": 42, "status": "running", "bundle": "/b",
     "annotations": {"org.example/key": "välue \"quoted\"\n\ttab \u2603 \U0001f600"}},
    {"nested": {"list": [1, -2, 3.5, 1e100, True, False, None, [], {}, [[]]],
                "empty": {}, "s": ""}, "int": 2 ** 70},
    ["top", "level", 1, None],
    "a string",
    12,
    -0.5,
    None,
    {"\u0000control\u001f": "\\backslash/"},
]


@pytest.mark.parametrize("doc", DOCS)
def test_same_as_json(doc):
    assert jsonfast.dumps(doc) == json.dumps(doc)
    assert jsonfast.dumps(doc, compact=True) == json.dumps(doc, separators=(",", ":"))
    assert jsonfast.pretty(doc) == json.dumps(doc, indent=2)
    assert (jsonfast.dumps(doc, compact=True, sort_keys=True)
            == json.dumps(doc, separators=(",", ":"), sort_keys=True))
    text = json.dumps(doc, indent=4)
    assert jsonfast.loads(text) == doc
    assert jsonfast.loads(text.encode()) == doc
    assert jsonfast.loads(f"  \n{text}\n ") == doc


def test_keys_that_are_not_strings_as_json_writes_them():
    doc = {2: "a", False: "b", None: "c", 2.5: "d", True: "e"}
    assert jsonfast.pretty(doc) == json.dumps(doc, indent=2)


def test_constants():
    assert math.isinf(jsonfast.loads("[Infinity]")[0])
    assert math.isnan(jsonfast.loads("NaN"))


@pytest.mark.parametrize("text", ["", "{", '{"a": }', "[1, 2] x", "nul", '{"a": 1,}', "'a'"])
def test_malformed_is_jsons_error(text):
    with pytest.raises(json.JSONDecodeError) as ours:
        jsonfast.loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert ours.value.pos == theirs.value.pos, (ours.value, theirs.value)


def test_not_serializable():
    with pytest.raises(TypeError, match="set"):
        jsonfast.dumps({"a": {1, 2}})


def test_malformed_without_json_imported_yet():
    """The C scanner needs json.decoder for its errors; a fresh interpreter has none."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from ocirt import jsonfast\n"
            "assert 'json' not in sys.modules\n"
            "try:\n    jsonfast.loads('{\"a\": 1,')\n"
            "except ValueError as err:\n    print(type(err).__name__, err.lineno, err.colno)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], check=False)
    assert result.stdout.strip() == "JSONDecodeError 1 9", result  # as json.loads says
