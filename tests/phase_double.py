"""Helpers shared by the phase tests under the recording double (tests/unit/test_phases_*.py):
``--explain``'s list of steps, and whether the steps that made the calls came in its order."""

from __future__ import annotations


def explained(text: str) -> list[tuple[str, str]]:
    """--explain's (phase heading, step text) pairs; notes left out."""
    pairs, heading = [], ""
    for line in text.splitlines()[1:]:
        if not line.startswith("  "):
            heading = line[:-1]
        elif not line.startswith("  # "):
            pairs.append((heading, line[2:]))
    return pairs


def in_order(made_by: list[str], texts: list[str]) -> bool:
    """The steps that made the calls come in the phase's order (a step may make several
    calls, and the same text may be two steps)."""
    at = 0
    for text in made_by:
        if text not in texts[at:]:
            return False
        at += texts[at:].index(text)
    return True
