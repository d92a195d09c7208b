"""Plans before actions: a step is a kernel operation that can describe itself or run.

Building blocks turn the config into lists of steps; the lifecycle runs them in the right
process at the right moment, and ``--explain`` prints the same lists without running them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Step:
    """One kernel operation: ``text`` says what it does, ``action`` does it."""

    text: str
    action: Callable[[], object] = field(repr=False)

    def describe(self) -> str:
        return self.text

    def run(self) -> None:
        self.action()


def run_all(steps: list[Step]) -> None:
    for step in steps:
        step.run()
