"""capabilities.resolve without root: names to numbers, unknown names refused with their JSON
path, capabilities the host's bounding set lacks left out with a warning."""

from __future__ import annotations

from typing import Any

import pytest

from ocirt import log
from ocirt.errors import ConfigError
from ocirt.linux import capabilities


class Recorder(log.Log):
    def __init__(self) -> None:
        super().__init__(None, "text", True)
        self.lines: list[tuple[str, str]] = []

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def debug(self, msg: str) -> None:
        self.lines.append(("debug", msg))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(log, "current", rec)
    return rec


def test_names_become_numbers(recorder: Recorder) -> None:
    sets = capabilities.resolve({"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"],
                                 "effective": ["CAP_KILL"]})
    assert sets["bounding"] == [0, 5, 21]
    assert sets["effective"] == [5]
    assert sets["permitted"] == sets["inheritable"] == sets["ambient"] == []


@pytest.mark.parametrize(("caps", "where"), [
    ({"bounding": ["CAP_KILL", "CAP_NOPE"]}, "$.process.capabilities.bounding[1]"),
    ({"ambient": ["kill"]}, "$.process.capabilities.ambient[0]"),
    ({"effective": ["CAP_"]}, "$.process.capabilities.effective[0]"),
])
def test_unknown_names_are_errors(caps: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        capabilities.resolve(caps)
    assert info.value.where == where
    assert repr(caps[where.split(".")[-1].split("[")[0]][int(where[-2])]) in str(info.value)


def test_capability_the_host_lacks_is_left_out_with_a_warning(
        recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "host_bounding_set", lambda: ~(1 << 24) & ((1 << 41) - 1))
    sets = capabilities.resolve({"bounding": ["CAP_KILL", "CAP_SYS_RESOURCE"],
                                 "permitted": ["CAP_SYS_RESOURCE"]})
    assert sets["bounding"] == [5] and sets["permitted"] == []
    warnings = [msg for level, msg in recorder.lines if level == "warning"]
    assert len(warnings) == 1
    assert "CAP_SYS_RESOURCE" in warnings[0] and "bounding[1], permitted[0]" in warnings[0]


def test_ambient_the_kernel_refuses_is_logged(recorder: Recorder) -> None:
    sets = capabilities.resolve({"permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]})
    assert capabilities.ambient_not_raisable(sets) == [5]
    assert any(level == "debug" and "ambient" in msg for level, msg in recorder.lines)


def test_status_parsing() -> None:
    text = "Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000020\n" \
           "CapEff:\t0000000000000020\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
    sets = capabilities.status_sets(text)
    assert sets["permitted"] == capabilities.mask([5]) == sets["effective"]
    assert sets["bounding"] == 0xA80425FB and sets["ambient"] == 0


def test_host_bounding_set_is_read() -> None:
    value = capabilities.host_bounding_set()
    assert value is not None and value > 0
