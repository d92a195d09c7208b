"""The code emitter behind ``compile_schema``: one handler per JSON-Schema keyword family.

``Generator`` walks schema nodes and writes Python lines that check a value against each node,
in the fixed order ``compile_schema``'s docstring gives (type, enum/const, string, number,
object, array, allOf, anyOf/oneOf, not, if); a ``$ref`` target or a subschema that is tried
(anyOf, oneOf, not, if) gets a function of its own. Keywords outside the supported subset, and
``$ref``s that do not resolve, raise ``SchemaCompileError`` at compile time. The generated lines
call the helpers of ``compile_schema.PRELUDE`` (``_fail``, ``_q``, ``_t``, ``_eq``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "definitions",
        "$defs",
    }
)
STRING_KEYS = ("minLength", "maxLength", "pattern")
NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
OBJECT_KEYS = ("required", "properties", "patternProperties", "additionalProperties",
               "propertyNames", "minProperties", "maxProperties")  # fmt: skip
ARRAY_KEYS = ("items", "minItems", "maxItems")
LOGIC_KEYS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else")
KEYWORDS = ANNOTATIONS.union(
    STRING_KEYS, NUMBER_KEYS, OBJECT_KEYS, ARRAY_KEYS, LOGIC_KEYS,
    ("type", "enum", "const", "$ref", "x-message"),
)  # fmt: skip
SUBSCHEMA_KEYS = frozenset(
    {"$ref", "properties", "patternProperties", "additionalProperties", "propertyNames", "items"}
).union(LOGIC_KEYS)
TYPE_TESTS = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    "integer": "type({v}) is int",
    "number": "(type({v}) is int or type({v}) is float)",
    "boolean": "({v} is True or {v} is False)",
    "null": "{v} is None",
}
REGEX_META = frozenset("\\.^$*+?{}[]|()")


class SchemaCompileError(Exception):
    """A schema uses something the generator does not support, or a $ref does not resolve."""


class _At(NamedTuple):
    """Where code is being emitted: which schema node, for which value, at what indent."""

    file: str  # the schema file holding the node
    ptr: str  # the node's JSON pointer in that file
    v: str  # the Python local holding the value
    path: tuple[str, ...]  # Python expressions: JSON path from the function's argument
    ind: int  # indentation level of the lines to emit

    def into(self, key: str, v: str | None = None, part: str | None = None, ind: int = 0) -> _At:
        """The site of subschema ``key`` (a pointer suffix), maybe for another value."""
        path = self.path if part is None else (*self.path, part)
        return _At(self.file, f"{self.ptr}/{key}", v or self.v, path, self.ind + ind)

    def parts(self) -> str:
        """The JSON path as a Python expression: the function's prefix ``p`` plus ours."""
        return "p + (" + "".join(p + ", " for p in self.path) + ")" if self.path else "p"


class Generator:
    """Turns schema nodes into Python functions: one per $ref target or tried subschema."""

    def __init__(self, docs: dict[str, Any]) -> None:
        self.docs = docs
        self.funcs: dict[tuple[str, str], str] = {}
        self.pending: list[tuple[str, str, str]] = []
        self.consts: dict[str, str] = {}
        self.patterns: set[str] = set()  # every regex the validator uses (see _sre_args)
        self.out: list[str] = []
        self.lines: list[str] = []
        self.counter = 0

    # -- bookkeeping -------------------------------------------------------------------------

    def function_for(self, file: str, ptr: str) -> str:
        """The name of the function checking node ``file#ptr``; written by ``drain``."""
        if (file, ptr) not in self.funcs:
            self.funcs[file, ptr] = f"_v{len(self.funcs)}"
            self.pending.append((self.funcs[file, ptr], file, ptr))
        return self.funcs[file, ptr]

    def drain(self) -> None:
        while self.pending:
            name, file, ptr = self.pending.pop(0)
            self.lines, self.counter = [f"def {name}(v, p):"], 0
            self.emit(self.node_at(file, ptr), _At(file, ptr, "v", (), 1))
            self.out.extend([*self.lines, "    return None", ""])

    def node_at(self, file: str, ptr: str) -> Any:
        if file not in self.docs:
            raise SchemaCompileError(f"$ref to unknown schema file {file!r}")
        node = self.docs[file]
        for raw in ptr.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise SchemaCompileError(f"{file}#{ptr}: does not resolve") from None
        return node

    def const(self, value: str) -> str:
        if value not in self.consts:
            self.consts[value] = f"_C{len(self.consts)}"
        return self.consts[value]

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def line(self, at: _At, text: str, extra: int = 0) -> None:
        self.lines.append("    " * (at.ind + extra) + text)

    def fail(self, at: _At, what: str, extra: int = 1) -> None:
        """A line raising Invalid at ``at``'s path; ``what`` is a Python expression."""
        self.line(at, f"_fail({at.parts()}, {what})", extra)

    def fail_value(self, at: _At, node: Any, expected: str) -> None:
        """Raise ``expected, got <value>``, or the node's ``x-message`` if it has one."""
        head, found, tail = node.get("x-message", f"{expected}, got {{value}}").partition("{value}")
        what = f"{head!r} + _q({at.v})" if found else repr(head)
        self.fail(at, what + (f" + {tail!r}" if tail else ""))

    # -- code emission -----------------------------------------------------------------------

    def emit(self, node: Any, at: _At) -> None:
        """Emit lines checking the value ``at.v`` against ``node``."""
        if node is True or node == {}:
            return
        if node is False:
            self.fail(at, "'no value is allowed here'", 0)
            return
        if not isinstance(node, dict):
            raise SchemaCompileError(f"{at.file}#{at.ptr}: a schema must be an object or boolean")
        unknown = set(node) - KEYWORDS
        if unknown:
            raise SchemaCompileError(f"{at.file}#{at.ptr}: unsupported keywords {sorted(unknown)}")
        if "$ref" in node:
            self.emit_ref(node, at)
            return
        types = [node["type"]] if isinstance(node.get("type"), str) else node.get("type")
        if types is not None:
            tests = " or ".join(TYPE_TESTS[t].format(v=at.v) for t in types)
            self.line(at, f"if not ({tests}):")
            self.fail(at, f"'expected {' or '.join(types)}, got ' + _t({at.v})")
        self.emit_enum(node, at)
        self.guarded(node, "string", STRING_KEYS, types, at, self.emit_string)
        self.guarded(node, "number", NUMBER_KEYS, types, at, self.emit_number)
        self.guarded(node, "object", OBJECT_KEYS, types, at, self.emit_object)
        self.guarded(node, "array", ARRAY_KEYS, types, at, self.emit_array)
        for i, sub in enumerate(node.get("allOf", [])):
            self.emit(sub, at.into(f"allOf/{i}"))
        self.emit_alternatives(node, at)
        if "not" in node:
            self.line(at, f"if _passes({self.function_for(at.file, at.ptr + '/not')}, {at.v}):")
            self.fail(at, "'matches a form that is not allowed'")
        if "if" in node:
            self.emit_if(node, at)

    def emit_block(self, node: Any, at: _At) -> None:
        """``emit`` as the body of an ``if`` or ``for``: a ``pass`` keeps an empty body valid."""
        before = len(self.lines)
        self.emit(node, at)
        if len(self.lines) == before:
            self.line(at, "pass")

    def emit_ref(self, node: Any, at: _At) -> None:
        siblings = set(node) - ANNOTATIONS - {"$ref"}
        if siblings:
            raise SchemaCompileError(
                f"{at.file}#{at.ptr}: draft 7 ignores keywords beside $ref: {sorted(siblings)}"
            )
        target, _, ptr = node["$ref"].partition("#")
        file = target or at.file
        resolved = self.node_at(file, ptr)
        if not (isinstance(resolved, dict) and SUBSCHEMA_KEYS & set(resolved)):
            self.emit(resolved, at._replace(file=file, ptr=ptr))  # a leaf: inline it
            return
        self.line(at, f"{self.function_for(file, ptr)}({at.v}, {at.parts()})")

    def guarded(
        self, node: Any, kind: str, keys: tuple[str, ...], types: list[str] | None, at: _At,
        body: Callable[[Any, _At], None],
    ) -> None:  # fmt: skip
        """Emit ``body`` for keywords that apply to one JSON type, behind a type test."""
        if not any(k in node for k in keys):
            return
        if types == [kind] or (kind == "number" and types == ["integer"]):
            body(node, at)  # the type check above already guarantees the type
            return
        self.line(at, "if " + TYPE_TESTS[kind].format(v=at.v) + ":")
        before = len(self.lines)
        body(node, at._replace(ind=at.ind + 1))
        if len(self.lines) == before:
            self.line(at, "pass", 1)

    def emit_enum(self, node: Any, at: _At) -> None:
        if "enum" in node:
            values = node["enum"]
            if all(isinstance(x, str) for x in values):
                const = self.const(f"frozenset({sorted(values)!r})")
                self.line(at, f"if not isinstance({at.v}, str) or {at.v} not in {const}:")
            else:
                const = self.const(repr(values))
                self.line(at, f"if not any(_eq({at.v}, x) for x in {const}):")
            listed = ", ".join(json.dumps(x) for x in values)
            self.fail_value(at, node, f"expected one of {listed}")
        if "const" in node:
            value = node["const"]
            if isinstance(value, str):
                self.line(at, f"if not isinstance({at.v}, str) or {at.v} != {value!r}:")
            else:
                self.line(at, f"if not _eq({at.v}, {self.const(repr(value))}):")
            self.fail_value(at, node, f"expected {json.dumps(value)}")

    def emit_string(self, node: Any, at: _At) -> None:
        for key, op, word in (("minLength", "<", "at least"), ("maxLength", ">", "at most")):
            if key in node:
                n = int(node[key])
                self.line(at, f"if len({at.v}) {op} {n}:")
                self.fail_value(at, node, f"expected {word} {n} character{'s' * (n != 1)}")
        if "pattern" in node:
            pattern = node["pattern"]
            literal = pattern[1:]
            if pattern.startswith("^") and not REGEX_META & set(literal):
                self.line(at, f"if not {at.v}.startswith({literal!r}):")  # no regex needed
            else:
                self.patterns.add(pattern)
                self.line(at, f"if _re({pattern!r}).search({at.v}) is None:")
            self.fail_value(at, node, f"expected a string matching {pattern}")

    def emit_number(self, node: Any, at: _At) -> None:
        checks = [("minimum", "<", ">="), ("maximum", ">", "<=")]
        checks += [("exclusiveMinimum", "<=", ">"), ("exclusiveMaximum", ">=", "<")]
        if "minimum" in node and "maximum" in node:
            low, high = node["minimum"], node["maximum"]
            self.line(at, f"if not {low!r} <= {at.v} <= {high!r}:")
            self.fail_value(at, node, f"expected {low} to {high}")
            checks = checks[2:]
        for key, op, text in checks:
            if key in node:
                self.line(at, f"if {at.v} {op} {node[key]!r}:")
                self.fail_value(at, node, f"expected {text} {node[key]}")

    def emit_object(self, node: Any, at: _At) -> None:
        for key in node.get("required", []):
            self.line(at, f"if {key!r} not in {at.v}:")
            self.fail(at, repr(f"missing required property {json.dumps(key)}"))
        for key, op, word in (
            ("minProperties", "<", "at least"),
            ("maxProperties", ">", "at most"),
        ):
            if key in node:
                self.line(at, f"if len({at.v}) {op} {node[key]}:")
                self.fail(at, f"'expected {word} {node[key]} properties, got ' + str(len({at.v}))")
        props: dict[str, Any] = node.get("properties", {})
        for key, sub in props.items():
            if sub is not True and sub != {}:
                x = self.fresh("x")
                self.line(at, f"{x} = {at.v}.get({key!r}, _MISSING)")
                self.line(at, f"if {x} is not _MISSING:")
                self.emit_block(sub, at.into(f"properties/{_escape(key)}", x, repr(key), 1))
        self.emit_other_keys(node, at)

    def emit_other_keys(self, node: Any, at: _At) -> None:
        """propertyNames, patternProperties, additionalProperties: one loop over the keys."""
        patterns: dict[str, Any] = node.get("patternProperties", {})
        extra = node.get("additionalProperties", True)
        names = node.get("propertyNames", True)
        if not patterns and extra is True and names is True:
            return
        k, x, matched = self.fresh("k"), self.fresh("x"), self.fresh("m")
        self.line(at, f"for {k}, {x} in {at.v}.items():")
        inner = at._replace(ind=at.ind + 1)
        if names is not True:
            self.line(inner, "try:")
            self.line(inner, f"{self.function_for(at.file, at.ptr + '/propertyNames')}({k}, ())", 1)
            self.line(inner, "except Invalid as e:")
            self.fail(inner._replace(path=(*at.path, k)), "'invalid key: ' + e.what")
        if patterns:
            self.line(inner, f"{matched} = False")
        for pattern, sub in patterns.items():
            self.patterns.add(pattern)
            self.line(inner, f"if _re({pattern!r}).search({k}) is not None:")
            self.line(inner, f"{matched} = True", 1)
            self.emit_block(sub, at.into(f"patternProperties/{_escape(pattern)}", x, k, 2))
        if extra is True:
            return
        conds = []
        if node.get("properties"):
            known = self.const(f"frozenset({sorted(node['properties'])!r})")
            conds.append(f"{k} not in {known}")
        if patterns:
            conds.append(f"not {matched}")
        if conds:
            self.line(inner, f"if {' and '.join(conds)}:")
            inner = inner._replace(ind=inner.ind + 1)
        if extra is False:
            self.fail(inner, f"'unexpected property ' + _q({k})", 0)
        else:
            sub_at = at.into("additionalProperties", x, k)
            self.emit_block(extra, sub_at._replace(ind=inner.ind))

    def emit_array(self, node: Any, at: _At) -> None:
        for key, op, word in (("minItems", "<", "at least"), ("maxItems", ">", "at most")):
            if key in node:
                n = node[key]
                self.line(at, f"if len({at.v}) {op} {n}:")
                what = f"expected {word} {n} item{'s' * (n != 1)}, got "
                self.fail(at, f"{what!r} + str(len({at.v}))")
        items = node.get("items", True)
        if isinstance(items, list):
            raise SchemaCompileError(f"{at.file}#{at.ptr}: tuple-form items is not supported")
        if items is not True and items != {}:
            i, x = self.fresh("i"), self.fresh("x")
            self.line(at, f"for {i}, {x} in enumerate({at.v}):")
            self.emit_block(items, at.into("items", x, i, 1))

    def emit_alternatives(self, node: Any, at: _At) -> None:
        for key in ("anyOf", "oneOf"):
            if key in node:
                fns = [
                    self.function_for(at.file, f"{at.ptr}/{key}/{n}") for n in range(len(node[key]))
                ]
                count = self.fresh("c")
                self.line(
                    at, f"{count} = sum(1 for f in ({', '.join(fns)},) if _passes(f, {at.v}))"
                )
                self.line(at, f"if {count} == 0:")
                self.fail(at, f"_none_matches({fns[0]}, {at.v}, {at.parts()})")
                if key == "oneOf":
                    self.line(at, f"if {count} > 1:")
                    self.fail(at, "'matches more than one of the allowed forms'")

    def emit_if(self, node: Any, at: _At) -> None:
        test = f"_passes({self.function_for(at.file, at.ptr + '/if')}, {at.v})"
        if "then" in node:
            self.line(at, f"if {test}:")
            self.emit_block(node["then"], at.into("then", ind=1))
            if "else" in node:
                self.line(at, "else:")
                self.emit_block(node["else"], at.into("else", ind=1))
        elif "else" in node:
            self.line(at, f"if not {test}:")
            self.emit_block(node["else"], at.into("else", ind=1))


def _escape(key: str) -> str:
    """A property name as a JSON-pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")
