"""The compiled validator agrees with jsonschema (draft 7) on our schemas, document by document.

jsonschema is the oracle here only (tests/schema_oracle.py); ocirt never imports it at run time.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from schema_oracle import Path_, agree, jsonpath, oracle_for

from ocirt.config import compile_schema, validate
from ocirt.config.default import default_spec
from ocirt.errors import ConfigError

DATA = Path(__file__).parent / "data"
SCHEMAS = Path(__file__).parents[2] / "ocirt" / "config" / "schemas"


@pytest.fixture(scope="module")
def schema_docs() -> dict[str, Any]:
    return compile_schema.load_schemas(str(SCHEMAS))


@pytest.fixture(scope="module")
def runner(schema_docs: dict[str, Any]) -> validate.Runner:
    files = {name: json.dumps(doc).encode() for name, doc in schema_docs.items()}
    return validate.build_validator(files)


@pytest.fixture(scope="module")
def config_oracle(schema_docs: dict[str, Any]) -> Any:
    return oracle_for(schema_docs, "config-schema.json")


@pytest.fixture(scope="module")
def state_oracle(schema_docs: dict[str, Any]) -> Any:
    return oracle_for(schema_docs, "state-schema.json")


# -- documents and their mutants ---------------------------------------------------------------


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


VALID_CONFIGS: dict[str, Callable[[], Any]] = {
    "default": lambda: default_spec(),
    "default-rootless": lambda: default_spec(rootless=True),
    "runc-1.1.5": lambda: load("runc-1.1.5-spec.json"),
    "runc-1.1.5-rootless": lambda: load("runc-1.1.5-spec-rootless.json"),
    "full": lambda: load("config-full.json"),
}


def nodes(doc: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from nodes(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from nodes(value, (*path, index))


def replaced(doc: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return out


def deleted(doc: Any, path: Path_) -> Any:
    out = copy.deepcopy(doc)
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return out


def replacements(value: Any) -> list[Any]:
    """Wrong types, boundary numbers and odd strings for one node."""
    if isinstance(value, bool):
        return ["true", 0, None, not value]
    if isinstance(value, int):
        return ["1", float(value), True, -1, value + 1, -value - 1, 2**16, 2**32, 2**63, 2**64]
    if isinstance(value, str):
        return [None, 7, "", "x", "/x", value + "\n", value.lower(), "RLIMIT_x", "9.9.9"]
    if isinstance(value, list):
        return ["x", {}, [], [None], [1], [*value, "x"], [*value, {}]]
    if isinstance(value, dict):
        return ["x", [], {}, {**value, "zz-unknown": 1}, {**value, "": "x"}]
    return ["x", 1, None]


def mutants(doc: Any) -> Iterator[tuple[str, Any]]:
    for path, value in nodes(doc):
        for new in replacements(value):
            yield f"{jsonpath(path)} = {new!r}"[:120], replaced(doc, path, new)
        if path and isinstance(path[-1], str):
            yield f"del {jsonpath(path)}", deleted(doc, path)


def slices(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Small documents holding one part each, so the (slow) oracle sees less per mutant."""
    head = {"ociVersion": doc["ociVersion"]}
    yield "ociVersion", head
    for key, value in doc.items():
        if key == "linux":
            for sub, part in value.items():
                yield f"linux.{sub}", {**head, "linux": {sub: part}}
        elif key != "ociVersion":
            yield key, {**head, key: value}


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID_CONFIGS))
def test_valid_configs_pass_both(name: str, runner: validate.Runner, config_oracle: Any) -> None:
    assert agree(runner, config_oracle, "config-schema.json", VALID_CONFIGS[name](), name)


@pytest.mark.parametrize("name", sorted(VALID_CONFIGS))
def test_mutated_configs_agree(name: str, runner: validate.Runner, config_oracle: Any) -> None:
    invalid = 0
    seen = set()
    for part, doc in slices(VALID_CONFIGS[name]()):
        for label, mutant in mutants(doc):
            key = json.dumps(mutant, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            schema = "config-schema.json"
            invalid += not agree(runner, config_oracle, schema, mutant, f"{name}/{part}: {label}")
    assert invalid > 50  # the mutations do reach the schema's rules


def test_mutations_of_whole_document_agree(runner: validate.Runner, config_oracle: Any) -> None:
    doc = load("config-full.json")
    for key, value in doc.items():
        agree(runner, config_oracle, "config-schema.json", deleted(doc, (key,)), f"del {key}")
        for new in replacements(value):
            agree(runner, config_oracle, "config-schema.json", {**doc, key: new}, f"{key}={new!r}")
    for new in [None, [], "x", 1, {}]:
        agree(runner, config_oracle, "config-schema.json", new, f"document = {new!r}")


STATES = [
    {"ociVersion": "1.2.0", "id": "c1", "status": "created", "pid": 42, "bundle": "/b"},
    {"ociVersion": "1.0.2-dev", "id": "c1", "status": "stopped", "bundle": "/b"},
    {
        "ociVersion": "1.2.0",
        "id": "x",
        "status": "running",
        "pid": 1,
        "bundle": "/containers/redis",
        "annotations": {"myKey": "myValue"},
        "rootfs": "/containers/redis/rootfs",
    },
]


@pytest.mark.parametrize("state", STATES, ids=lambda s: s["status"])
def test_states_agree(state: dict[str, Any], runner: validate.Runner, state_oracle: Any) -> None:
    assert agree(runner, state_oracle, "state-schema.json", state, "state")
    for label, mutant in mutants(state):
        agree(runner, state_oracle, "state-schema.json", mutant, label)


def test_running_state_needs_pid(runner: validate.Runner) -> None:
    state = {"ociVersion": "1.2.0", "id": "c", "status": "running", "bundle": "/b"}
    assert runner("state-schema.json", state) == ("$", 'missing required property "pid"')


def test_first_error_is_deterministic(runner: validate.Runner) -> None:
    doc = {
        "ociVersion": "1.2.0",
        "process": {"cwd": "relative", "args": []},
        "linux": {"namespaces": [{"type": "bogus"}]},
    }
    assert runner("config-schema.json", doc) == (
        "$.process.cwd",
        'expected an absolute path, got "relative"',
    )
    for _ in range(3):
        with pytest.raises(ConfigError) as err:
            validate.validate_config(doc)
        assert (
            str(err.value)
            == 'config.json: $.process.cwd: expected an absolute path, got "relative"'
        )


def slice_for(base: dict[str, Any], path: Path_) -> dict[str, Any]:
    """The part of ``base`` that holds ``path`` (see ``slices``)."""
    if not path:
        return base
    doc = {"ociVersion": base["ociVersion"]}
    if path[0] == "linux" and len(path) > 1:
        doc["linux"] = {str(path[1]): base["linux"][path[1]]}
    else:
        doc[str(path[0])] = base[str(path[0])]
    return doc


def test_hypothesis_random_values_agree(runner: validate.Runner, config_oracle: Any) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    base = load("config-full.json")
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )

    @hypothesis.settings(max_examples=150, derandomize=True, deadline=None, database=None)  # type: ignore[untyped-decorator]
    @hypothesis.given(st.sampled_from([p for p, _ in nodes(base)]), values)  # type: ignore[untyped-decorator]
    def check(path: Path_, value: Any) -> None:
        doc = replaced(slice_for(base, path), path, value)
        agree(runner, config_oracle, "config-schema.json", doc, jsonpath(path))

    check()
