"""podman (through conmon) with ocirt as its OCI runtime, and with runc to prove each test.

podman calls the runtime as ``<runtime> --log-format=json --log FILE create --bundle B
--pid-file P ID``, then ``start``, ``exec --process F --detach --pid-file F2
[--console-socket S]``, ``kill ID SIGNAL``, ``pause``, ``resume``, ``update --resources F``,
``delete --force``, each from conmon or podman with the environment podman had (here: no PATH,
no HOME). conmon turns the runtime's ``exec:`` error wording into exit codes 127 and 126.
Resources and security settings: test_podman_settings.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from .helpers import IMAGE, freezer_state, pid_alive, run_in_pty, wait_for
from .podman import Podman

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the manager tests need root"),
]

# A container process that ends at once on SIGTERM (a shell as PID 1 ignores it otherwise).
SERVE = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
# Counts in /tmp/count while it runs (renamed into place: a reader never sees it half written).
COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /tmp/next; mv /tmp/next /tmp/count; "
           "sleep 0.02; done")


# --- podman run -------------------------------------------------------------------------------

def test_run_exit_code_and_output(podman: Podman) -> None:
    result = podman(*podman.run_args("--rm", IMAGE, "sh", "-c",
                                     "echo out; echo err >&2; ls /proc/$$/fd; exit 3"))
    assert result.returncode == 3, result
    lines = result.stdout.split()
    assert lines[0] == "out", result
    # Only stdio reaches the program: nothing conmon or the runtime had open (conmon's sync
    # and start pipes, say) leaks into the container.
    assert lines[1:] == ["0", "1", "2"], result
    assert "err" in result.stderr, result


def test_run_stdin(podman: Podman) -> None:
    result = podman(*podman.run_args("--rm", "-i", IMAGE, "sh", "-c",
                                     "read line; echo got:$line; cat"),
                    input="hello\nsecond line\n")
    assert result.returncode == 0, result
    assert result.stdout == "got:hello\nsecond line\n", result


def test_run_tty(podman: Podman) -> None:
    code, screen = run_in_pty(podman_argv(podman, "--rm", "-t", IMAGE, "sh", "-c",
                                          "tty; test -t 0 && echo stdin-tty; exit 5"),
                              podman.env, cwd=podman.base)
    assert code == 5, screen
    lines = screen.splitlines()
    assert "/dev/pts/0" in lines, screen
    assert "stdin-tty" in lines, screen
    # (No check of the size: podman 4.3 sets no process.consoleSize; conmon resizes the pty
    # after the start, which races with the program.)


def test_run_tty_input(podman: Podman) -> None:
    code, screen = run_in_pty(podman_argv(podman, "--rm", "-it", IMAGE, "sh", "-c",
                                          "read word; echo got:$word"),
                              podman.env, cwd=podman.base, input=b"typed\r")
    assert code == 0, screen
    assert "got:typed" in screen, screen


def test_missing_program(podman: Podman) -> None:
    """conmon maps runc's words to 127 (not found) and 126 (cannot run)."""
    not_found = podman(*podman.run_args("--rm", IMAGE, "no-such-program"))
    assert not_found.returncode == 127, not_found
    assert "executable file not found in $PATH" in not_found.stderr, not_found
    no_file = podman(*podman.run_args("--rm", IMAGE, "/no/such/file"))
    assert no_file.returncode == 127, no_file
    assert "no such file or directory" in no_file.stderr, no_file
    not_executable = podman(*podman.run_args("--rm", IMAGE, "/etc/passwd"))
    assert not_executable.returncode == 126, not_executable
    assert "permission denied" in not_executable.stderr, not_executable


def test_runtime_given_by_path(podman: Podman, runtime: str) -> None:
    """`podman --runtime /path/to/runtime`, without any configuration: the runtime's own
    default state root, and nothing left in it."""
    binary = podman.runtimes[runtime]
    default_root = Path("/run/ocirt" if runtime == "ocirt" else "/run/runc")
    cidfile = podman.base / f"cid-{os.urandom(4).hex()}"
    podman.runtime, name = binary, runtime
    try:
        result = podman(*podman.run_args("--rm", "--cidfile", str(cidfile), IMAGE,
                                         "sh", "-c", "echo by-path; exit 7"))
    finally:
        podman.runtime = name
    assert result.returncode == 7, result
    assert result.stdout == "by-path\n", result
    container_id = cidfile.read_text().strip()
    cidfile.unlink()
    assert not (default_root / container_id).exists()


# --- a detached container ---------------------------------------------------------------------

def test_detached_exec_stop_rm(podman: Podman) -> None:
    name = f"detached-{os.urandom(3).hex()}"
    started = podman.ok(*podman.run_args("-d", "--name", name, IMAGE, "sh", "-c", SERVE))
    assert started.seconds < 10, started
    assert podman.inspect(name, "{{.State.Status}}") == "running"
    pid = int(podman.inspect(name, "{{.State.Pid}}"))
    assert pid_alive(pid)
    # The pid file named the workload's process, which the runtime left to conmon (the
    # subreaper that called create).
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sh", b"-c"]
    assert parent_of(pid) == int(podman.inspect(name, "{{.State.ConmonPid}}"))

    result = podman("exec", name, "sh", "-c", "echo in:$$; cat /proc/1/cmdline; exit 4")
    assert result.returncode == 4, result
    assert result.stdout.startswith("in:"), result
    assert "while" in result.stdout, result  # the same PID namespace as the container's sh

    result = podman("exec", "-i", name, "cat", input="through exec\n")
    assert result.returncode == 0, result
    assert result.stdout == "through exec\n", result

    result = podman("exec", "--user", "65534:65534", "--workdir", "/tmp", "-e", "EXTRA=1",
                    name, "sh", "-c", "id -u; id -g; pwd; echo $EXTRA")
    assert result.returncode == 0, result
    assert result.stdout.split() == ["65534", "65534", "/tmp", "1"], result

    missing = podman("exec", name, "no-such-program")
    assert missing.returncode == 127, missing

    code, screen = run_in_pty(podman_argv(podman, "exec", "-t", name, "sh", "-c",
                                          "tty; exit 6", command="exec"), podman.env,
                              cwd=podman.base)
    assert code == 6, screen
    assert screen.splitlines()[0].startswith("/dev/pts/"), screen

    detached = podman.ok("exec", "-d", name, "sleep", "300")
    assert detached.stdout.strip(), detached

    stopped = podman.ok("stop", "--time", "5", name)
    assert stopped.seconds < 5, stopped  # SIGTERM ended it: no SIGKILL after the timeout
    assert podman.inspect(name, "{{.State.Status}}") == "exited"
    assert podman.inspect(name, "{{.State.ExitCode}}") == "0"
    assert not pid_alive(pid)
    podman.ok("rm", name)
    assert podman("inspect", name).returncode != 0


def test_kill_and_restart(podman: Podman) -> None:
    name = f"kill-{os.urandom(3).hex()}"
    podman.ok(*podman.run_args("-d", "--name", name, IMAGE, "sleep", "300"))
    podman.ok("kill", "--signal", "KILL", name)
    wait_for(lambda: podman.inspect(name, "{{.State.Status}}") == "exited",
             what="the container to exit after SIGKILL")
    assert podman.inspect(name, "{{.State.ExitCode}}") == "137"
    not_running = podman("kill", name)
    assert not_running.returncode != 0, not_running
    # A stopped container starts again: a new create and start of the same ID.
    podman.ok("start", name)
    assert podman.inspect(name, "{{.State.Status}}") == "running"
    podman.ok("rm", "--force", "--time", "0", name)


def test_remove_paused(podman: Podman) -> None:
    """``rm --force`` of a paused container: the runtime kills a frozen container."""
    name = f"paused-rm-{os.urandom(3).hex()}"
    podman.ok(*podman.run_args("-d", "--name", name, IMAGE, "sleep", "300"))
    pid = int(podman.inspect(name, "{{.State.Pid}}"))
    podman.ok("pause", name)
    podman.ok("rm", "--force", "--time", "0", name)
    wait_for(lambda: not pid_alive(pid), what="the paused container's process to die")


def test_pause_unpause(podman: Podman) -> None:
    name = f"pause-{os.urandom(3).hex()}"
    podman.ok(*podman.run_args("-d", "--name", name, IMAGE, "sh", "-c", COUNTER))

    def count() -> int:
        result = podman("exec", name, "cat", "/tmp/count")
        text = result.stdout.strip()
        return int(text) if result.returncode == 0 and text.isdigit() else 0

    wait_for(count, what="the container to start counting")
    pid = int(podman.inspect(name, "{{.State.Pid}}"))
    podman.ok("pause", name)
    assert podman.inspect(name, "{{.State.Status}}") == "paused"
    assert freezer_state(pid) == "FROZEN"
    assert podman("exec", name, "true").returncode != 0  # no exec into a frozen container
    podman.ok("unpause", name)
    assert podman.inspect(name, "{{.State.Status}}") == "running"
    assert freezer_state(pid) == "THAWED"
    first = count()
    wait_for(lambda: count() > first, what="the container to run again after unpause")


def test_volumes(podman: Podman) -> None:
    host = podman.base / f"volume-{os.urandom(3).hex()}"
    host.mkdir()
    (host / "from-host").write_text("hello\n")
    volume = f"vol-{os.urandom(3).hex()}"
    try:
        result = podman.ok(*podman.run_args(
            "--rm", "-v", f"{host}:/data", "-v", f"{host}:/data-ro:ro", "-v", f"{volume}:/vol",
            IMAGE, "sh", "-c",
            "cat /data/from-host; echo written > /data/from-container; "
            "touch /data-ro/x 2>/dev/null || echo ro-refused; echo kept > /vol/file"))
        assert result.stdout.split() == ["hello", "ro-refused"], result
        assert (host / "from-container").read_text() == "written\n"
        again = podman.ok(*podman.run_args("--rm", "-v", f"{volume}:/vol", IMAGE,
                                           "cat", "/vol/file"))
        assert again.stdout == "kept\n", again
    finally:
        podman("volume", "rm", "--force", volume)
        shutil.rmtree(host, ignore_errors=True)


def test_info_reports_the_runtime(podman: Podman, runtime: str) -> None:
    """podman info runs ``<runtime> --version``."""
    info = json.loads(podman.ok("info", "--format", "json").stdout)
    oci = info["host"]["ociRuntime"]
    assert oci["name"] == runtime, oci
    assert oci["version"].startswith(f"{runtime} version "), oci


def test_hostname_env_workdir(podman: Podman) -> None:
    result = podman.ok(*podman.run_args(
        "--rm", "--hostname", "managed", "-e", "GREETING=hi there", "--workdir", "/etc",
        IMAGE, "sh", "-c", 'hostname; echo "$GREETING"; pwd'))
    assert result.stdout.splitlines() == ["managed", "hi there", "/etc"], result


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


def podman_argv(podman: Podman, *args: str, command: str = "run") -> list[str]:
    """The full podman command line for a run (or exec) started outside ``podman()``."""
    if command == "run":
        return podman.argv(*podman.run_args(*args))
    return podman.argv(*args)


def test_many_containers_quickly(podman: Podman) -> None:
    """Five short containers in a row: no state, lock or cgroup of one disturbs the next."""
    started = time.monotonic()
    for number in range(5):
        result = podman(*podman.run_args("--rm", IMAGE, "sh", "-c", f"exit {number}"))
        assert result.returncode == number, result
    assert time.monotonic() - started < 20
