"""docs/architecture.md draws the parent/child protocol; the drawing must say what
``ocirt.container.protocol`` defines: every message, in order, in the right direction, with
its condition (a drifted diagram, such as one without hooks/hooks-done, fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from ocirt.container import protocol

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
MESSAGE = re.compile(r'\{"([a-z-]+)"')


def _diagrams() -> list[list[str]]:
    """The code blocks of the "The parent/child protocol" section, as lists of lines."""
    text = DOC.read_text()
    section = text[text.index("### The parent/child protocol"):]
    section = section[:section.index("\n## ")]
    return [block.splitlines() for block in section.split("```")[1::2]]


def _drawn(lines: list[str]) -> list[tuple[str, str, str]]:
    """(message, "to runtime" or "from runtime", condition) per message line."""
    drawn = []
    for index, line in enumerate(lines):
        names = [name for name in MESSAGE.findall(line) if name != protocol.ERROR]
        if not names:
            continue
        direction = "to runtime" if "<-" in line else "from runtime"
        assert ("<-" in line) != ("->" in line), line
        when = "always"
        for candidate in (line, lines[index + 1] if index + 1 < len(lines) else ""):
            if "when: " in candidate:
                when = candidate.split("when: ", 1)[1].strip()
                break
        drawn.append((names[0], direction, when))
    return drawn


def _defined(exchanges: tuple[tuple[str, str, str, str], ...]) -> list[tuple[str, str, str]]:
    return [(message, "from runtime" if sender == "runtime" else "to runtime", when)
            for message, sender, _, when in exchanges]


def test_the_diagrams_draw_the_protocol() -> None:
    create, direct, start, exec_ = _diagrams()
    assert _drawn(create) == _defined(protocol.CREATE)
    assert _drawn(direct) == _defined(protocol.CREATE_DIRECT)
    assert [row[0] for row in protocol.CREATE_DIRECT] == [
        protocol.HOOKS, protocol.HOOKS_DONE, protocol.READY]
    assert _drawn(start) == _defined(protocol.START_EXCHANGES)
    assert _drawn(exec_) == _defined(protocol.EXEC)


def test_every_message_is_in_a_diagram() -> None:
    names = {value for key, value in vars(protocol).items() if key.isupper()
             and isinstance(value, str)}
    drawn = {name for block in _diagrams() for name, _, _ in _drawn(block)}
    assert names - drawn == {protocol.ERROR}
