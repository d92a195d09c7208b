"""Plans before actions: a step is a kernel operation that can describe itself or run.

Building blocks turn the config into lists of steps; the lifecycle groups them into phases, one
per process and moment (``ocirt.container.phases``), runs each phase in its process, and
``--explain`` prints the same phases without running them. A ``Note`` explains what a phase
does without acting (a rule of the seccomp filter, why there is no cgroup): it is printed,
never run.

A watcher (``watch``) sees every phase begin and runs every step itself, so a test knows which
step is running when a call is made and that nothing acts outside one; without a watcher a
step costs one global lookup more than calling its action.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol

    class Timings(Protocol):  # ocirt.timings.Timings, as far as a phase uses it
        def run_steps(self, steps: list[Step], phase: str) -> None: ...

    class Watcher(Protocol):
        def phase(self, phase: Phase) -> None: ...
        def step(self, step: Step) -> None: ...


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
            if _watcher is None:
                self.action()
            else:
                _watcher.step(self)
        finally:
            current_step = outer


current_step: Step | None = None
"""The Step whose action is running (the binding layer's recording double notes it with each
call, so a test can tell which Step made which call)."""


class Note:
    """What a phase does, said for ``--explain``: no action, never run."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Note({self.text!r})"

    def describe(self) -> str:
        return self.text


class Phase:
    """The steps one process runs at one moment, in order, with the notes that explain them.

    ``process`` is the process that runs it (runtime, stage-1, init, process), ``title`` the
    heading ``--explain`` prints, ``label`` the ``--timings`` row of a step without one."""

    __slots__ = ("items", "label", "process", "steps", "title")

    def __init__(self, process: str, title: str, items: Sequence[Step | Note],
                 label: str = "") -> None:
        self.process, self.title, self.label = process, title, label
        self.items = list(items)
        self.steps = [item for item in self.items if isinstance(item, Step)]

    def __repr__(self) -> str:
        return f"Phase({self.process!r}, {self.title!r})"

    def explain(self) -> list[str]:
        """The heading, then a line per step; a note's line starts with ``#``."""
        return [f"{self.process}, {self.title}:",
                *([f"  {'# ' if isinstance(item, Note) else ''}{item.describe()}"
                   for item in self.items] or ["  (nothing)"])]

    def run(self, timings: Timings | None = None) -> None:
        if _watcher is not None:
            _watcher.phase(self)
        if timings is None:
            for step in self.steps:
                step.run()
        else:
            timings.run_steps(self.steps, self.label)


def run_all(steps: Sequence[Step | Note]) -> None:
    for step in steps:
        if isinstance(step, Step):
            step.run()


_watcher: Watcher | None = None


def watch(watcher: Watcher | None) -> Watcher | None:
    """Let ``watcher`` see every phase and run every step (None: stop); the previous one."""
    global _watcher
    previous, _watcher = _watcher, watcher
    return previous


class Recorder:
    """A watcher that records every phase and step (``ran``: (phase heading, step text)); it
    runs the steps ``runs`` accepts (None: all). While a step runs, ``current_step`` is it."""

    def __init__(self, runs: Callable[[Step], bool] | None = None) -> None:
        self.runs = runs
        self.ran: list[tuple[str, str]] = []
        self.current = ""  # the phase, as --explain heads it

    def phase(self, phase: Phase) -> None:
        self.current = f"{phase.process}, {phase.title}"

    def step(self, step: Step) -> None:
        self.ran.append((self.current, step.text))
        if self.runs is None or self.runs(step):
            step.action()
