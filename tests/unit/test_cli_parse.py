"""The fast argv parser agrees with click on what it accepts, and leaves the rest to click."""

from __future__ import annotations

import pytest

from ocirt.cli import fastparse
from ocirt.cli.table import COMMANDS

ACCEPTED = [
    (
        ["--root", "/r", "create", "--bundle", "/b", "--pid-file", "/p", "c1"],
        "create",
        {"container_id": "c1", "bundle": "/b", "pid_file": "/p"},
    ),
    (
        ["create", "-b", "/b", "c1", "--preserve-fds=2"],
        "create",
        {"container_id": "c1", "bundle": "/b", "preserve_fds": 2},
    ),
    (
        ["--log", "/l", "--log-format", "json", "kill", "c1", "KILL"],
        "kill",
        {"container_id": "c1", "signal": "KILL"},
    ),
    (["kill", "--all", "c1", "9"], "kill", {"all": True, "signal": "9"}),
    (["delete", "-f", "c1"], "delete", {"force": True, "container_id": "c1"}),
    (
        ["run", "-d", "--bundle", "/b", "c1"],
        "run",
        {"detach": True, "container_id_or_bundle": "c1"},
    ),
    (["list", "-q"], "list", {"quiet": True, "format": "table"}),
    (["list", "--format", "json"], "list", {"format": "json"}),
    (["state", "--", "c1"], "state", {"container_id": "c1"}),
]


@pytest.mark.parametrize(("argv", "command", "expected"), ACCEPTED)
def test_fast_path_parses(argv: list[str], command: str, expected: dict[str, object]) -> None:
    parsed = fastparse.parse(argv)
    assert parsed is not None
    _, cmd, values = parsed
    assert cmd.name == command
    for key, value in expected.items():
        assert values[key] == value


def test_globals_before_the_command() -> None:
    parsed = fastparse.parse(["--root", "/r", "--debug", "--log-format=json", "state", "x"])
    assert parsed is not None
    globals_, _, _ = parsed
    assert globals_["root"] == "/r" and globals_["debug"] is True
    assert globals_["log_format"] == "json"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["create", "--help"],
        ["create"],
        ["state", "a", "b"],
        ["bogus"],
        ["kill", "--bogus", "x"],
        ["--log-format", "xml", "state", "x"],
        ["create", "--preserve-fds", "many", "x"],
        ["--version"],
    ],
)
def test_unusual_argv_goes_to_click(argv: list[str]) -> None:
    assert fastparse.parse(argv) is None


def test_click_app_knows_every_command_and_option() -> None:
    from ocirt.cli.clickapp import app

    group = app()
    for name, spec in COMMANDS.items():
        command = group.commands[name]
        names = {n for p in command.params for n in getattr(p, "opts", [])}
        for opt in spec.opts:
            assert set(opt.names) <= names, (name, opt.names)


@pytest.mark.parametrize(
    ("argv", "code"), [(["create"], 1), (["--help"], 0), (["kill", "--bogus", "x"], 1)]
)
def test_click_exit_codes(argv: list[str], code: int) -> None:
    from ocirt.cli.clickapp import main

    assert main(argv) == code
