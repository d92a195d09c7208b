"""The exec trampoline (ocirt/linux/trampoline.py) and the interpreter pre-check, without root:
the hand-made ELF runs, passes argv[0], the environment and the exit status through, and stops
when it is run as an interpreter through /proc/self/exe."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ocirt.errors import ExecError
from ocirt.linux import trampoline
from ocirt.linux.program import check_interpreter as _check_interpreter

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64",
                                reason="the trampoline is written for x86_64")


@pytest.fixture
def tramp(tmp_path: Path) -> Path:
    code = trampoline.program()
    assert code is not None
    path = tmp_path / "tramp"
    path.write_bytes(code)
    path.chmod(0o755)
    return path


def test_runs_the_program_with_its_own_argv0(tramp: Path) -> None:
    result = subprocess.run([str(tramp), "/bin/sh", "my-name", "-c", 'echo "$0"'],
                            capture_output=True, text=True, env={"A": "1"}, check=False)
    assert (result.returncode, result.stdout) == (0, "my-name\n")
    env = subprocess.run([str(tramp), "/usr/bin/env", "env"], capture_output=True, text=True,
                         env={"A": "1", "B": "two words"}, check=False)
    assert sorted(env.stdout.splitlines()) == ["A=1", "B=two words"]
    status = subprocess.run([str(tramp), "/bin/sh", "sh", "-c", "exit 7"], check=False)
    assert status.returncode == 7


def test_failure_is_127_and_one_line(tramp: Path) -> None:
    result = subprocess.run([str(tramp), "/nonexistent", "x"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 127
    assert result.stderr == "ocirt: exec of the container's program failed\n"


def test_as_an_interpreter_it_stops(tramp: Path, tmp_path: Path) -> None:
    script = tmp_path / "evil"
    script.write_text(f"#!{tramp}\n")
    script.chmod(0o755)
    result = subprocess.run([str(tramp), str(script), "evil"], capture_output=True, timeout=10,
                            check=False)
    assert result.returncode == 127


def test_prepared_memfd_is_sealed_and_executable() -> None:
    import fcntl

    fd = trampoline.prepare()
    assert fd >= 0
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
        reopened = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)  # as a container could
        try:
            with pytest.raises(PermissionError):
                os.write(reopened, b"x")
        finally:
            os.close(reopened)
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            try:
                trampoline.execve(fd, "/bin/true", ["true"], {})
            finally:
                os._exit(99)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)


def test_missing_interpreters_are_found_before_exec(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/sh -e\necho\n")
    with pytest.raises(ExecError, match='exec: "script": no such file or directory'):
        _check_interpreter("script", str(script))
    script.write_text("#!/bin/sh\necho\n")
    _check_interpreter("script", str(script))
    _check_interpreter("python", "/bin/sh")  # an ELF whose PT_INTERP exists
    elf = bytearray(Path("/bin/sh").read_bytes()[:4096])
    at = elf.find(b"/lib64/ld-linux-x86-64.so.2")
    if at < 0:
        pytest.skip("/bin/sh has another loader")
    elf[at:at + 5] = b"/nope"
    fake = tmp_path / "fake"
    fake.write_bytes(bytes(elf))
    with pytest.raises(ExecError):
        _check_interpreter("fake", str(fake))
