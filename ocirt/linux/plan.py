"""Plans before actions: a step is a kernel operation that can describe itself or run.

Building blocks turn the config into lists of steps; the lifecycle runs them in the right
process at the right moment, and ``--explain`` prints the same lists without running them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Step:
    """One kernel operation: ``text`` says what it does, ``action`` does it; ``phase`` names
    its row in ``--timings`` (empty: the row of the list it is in)."""

    __slots__ = ("action", "phase", "text")

    def __init__(self, text: str, action: Callable[[], object], phase: str = "") -> None:
        self.text = text
        self.action = action
        self.phase = phase

    def __repr__(self) -> str:
        return f"Step({self.text!r})"

    def describe(self) -> str:
        return self.text

    def run(self) -> None:
        global current_step
        outer, current_step = current_step, self
        try:
            self.action()
        finally:
            current_step = outer


current_step: Step | None = None
"""The Step whose action is running (the binding layer's recording double notes it with each
call, so a test can tell which Step made which call)."""


def run_all(steps: list[Step]) -> None:
    for step in steps:
        step.run()
