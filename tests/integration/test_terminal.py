"""process.terminal: the pty master over ``--console-socket``, the relay of ``run`` and
``exec -t`` in the foreground, and the rules for terminal and console socket."""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
from pathlib import Path

from .feature_subreaper import SubreaperCall
from .feature_support import started
from .feature_terminals import ConsoleListener, UnderPty, read_to_end, read_until
from .support import ROOT_MARKS, assert_nothing_left

pytestmark = ROOT_MARKS

TIOCGPTN = 0x80045430
PTY_SLAVE_MAJOR = 136
# What the shell inside prints about its terminal: markers that the echo of the typed
# command cannot match (they need digits or a path where the command has "$(").
PROBE = (b'echo "SIZE=$(stty size)"; echo "TTY=$(tty)"; '
         b'echo "FDS=$(readlink /proc/$$/fd/0) $(readlink /proc/$$/fd/1) '
         b'$(readlink /proc/$$/fd/2)"; echo "CONSOLE=$(stat -c %t:%T /dev/console)"; exit 3\n')


def pty_number(master):
    return struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]


def stat_fields(pid):
    """/proc/<pid>/stat after the command name: index 0 is the state (field 3)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2:].split()


def controlling_tty(pid):
    return int(stat_fields(pid)[4])  # field 7, tty_nr


def session_id(pid):
    return int(stat_fields(pid)[3])  # field 6


def probe_values(output):
    text = output.decode(errors="replace").replace("\r", "")
    values = {}
    for key in ("SIZE", "TTY", "FDS", "CONSOLE"):
        found = re.findall(rf"^{key}=(/\S.*|\d.*)$", text, re.M)
        if found:
            values[key] = found[-1].strip()
    return values


def test_console_socket_gets_the_pty_master(rt, make_config, bundle):
    config = make_config(["sh"], process__terminal=True,
                         process__consoleSize={"height": 40, "width": 100})
    with ConsoleListener() as listener:
        cid = rt.new_id()
        rt.ok("create", "--console-socket", listener.path, "--bundle", str(bundle(config)), cid)
        master = listener.receive()
        number = pty_number(master)
        pid = rt.state(cid)["pid"]
        # From outside: the pty is the controlling terminal of init, which leads its session.
        assert controlling_tty(pid) == (PTY_SLAVE_MAJOR << 8) | number
        assert session_id(pid) == pid
        rt.ok("start", cid)
        read_until(master, b"# ")  # the interactive shell's prompt
        os.write(master, PROBE)
        values = probe_values(read_to_end(master))
        rt.wait_status(cid, "stopped")
    assert values["SIZE"] == "40 100", values
    assert values["TTY"] == f"/dev/pts/{number}", values
    assert values["FDS"] == " ".join([f"/dev/pts/{number}"] * 3), values
    assert values["CONSOLE"] == f"{PTY_SLAVE_MAJOR:x}:{number:x}", "/dev/console is the pty"


def test_console_socket_input_and_output(rt, make_config, bundle):
    config = make_config(["sh", "-c", "read line; echo \"got:$line\"; exit 4"],
                         process__terminal=True)
    with ConsoleListener() as listener:
        cid = rt.new_id()
        rt.ok("create", "--console-socket", listener.path, "--bundle", str(bundle(config)), cid)
        master = listener.receive()
        rt.ok("start", cid)
        os.write(master, b"hello through the pty\n")
        output = read_to_end(master).replace(b"\r", b"")
        rt.wait_status(cid, "stopped")
    assert b"got:hello through the pty\n" in output


def test_run_relays_the_callers_terminal(rt, make_config, bundle, tmp_path):
    """``run`` with terminal and no console socket: the caller's terminal is relayed (raw),
    its size passed on, the exit status returned, and the caller's settings restored."""
    # The size is the caller's once the relay runs, which it does by the time a typed line
    # arrives (runc and ocirt both start the program first).
    program = ('echo "TTY=$(tty)"; echo ready; read line; echo "SIZE=$(stty size)"; '
               'echo "got:$line"; exit 7')
    config = make_config(["sh", "-c", program], process__terminal=True)
    cid = rt.new_id()
    before, after = tmp_path / "stty", tmp_path / "stty.after"
    wrapper = ['sh', '-c', 'stty -g > "$0"; "$@"; rc=$?; stty -g > "$0.after"; exit $rc',
               str(before), *rt.argv("run", "--bundle", str(bundle(config)), cid)]
    with UnderPty(wrapper, rt.env, rows=33, cols=111) as caller:
        seen = read_until(caller.master, b"ready")
        caller.send(b"typed by the user\n")
        status, rest = caller.wait()
    output = (seen + rest).replace(b"\r", b"")
    assert status == 7, output
    assert b"got:typed by the user\n" in output
    values = probe_values(output)
    assert values["SIZE"] == "33 111", output
    assert values["TTY"].startswith("/dev/pts/"), output
    assert after.read_text() == before.read_text(), "the caller's terminal was not restored"
    assert_nothing_left(rt, cid)


def test_create_with_terminal_and_no_console_socket_fails(rt, make_config, bundle):
    cid = rt.new_id()
    config = make_config(["sh"], process__terminal=True)
    result = rt.fails("create", "--bundle", str(bundle(config)), cid)
    assert re.search(r"cannot allocate tty if \w+ will detach without setting console socket",
                     result.stderr), result
    assert_nothing_left(rt, cid)


def test_console_socket_without_terminal_fails(rt, make_config, bundle):
    cid = rt.new_id()
    with ConsoleListener() as listener:
        result = rt.fails("create", "--console-socket", listener.path, "--bundle",
                          str(bundle(make_config(["true"]))), cid)
    assert re.search(r"cannot use console socket if \w+ will not detach or allocate tty",
                     result.stderr), result
    assert_nothing_left(rt, cid)


def test_exec_tty_under_a_pty(rt, make_config, bundle, tmp_path):
    cid, _ = started(rt, bundle, make_config(["sleep", "100"]))
    program = ('echo "TTY=$(tty)"; echo ready; read line; echo "SIZE=$(stty size)"; '
               'echo "got:$line"; exit 5')
    wrapper = ['sh', '-c', 'stty -g > "$0"; "$@"; rc=$?; stty -g > "$0.after"; exit $rc',
               str(tmp_path / "stty"), *rt.argv("exec", "-t", cid, "sh", "-c", program)]
    with UnderPty(wrapper, rt.env, rows=20, cols=70) as caller:
        seen = read_until(caller.master, b"ready")
        caller.send(b"exec input\n")
        status, rest = caller.wait()
    output = (seen + rest).replace(b"\r", b"")
    assert status == 5, output
    assert b"got:exec input\n" in output
    values = probe_values(output)
    assert values["SIZE"] == "20 70", output
    assert values["TTY"].startswith("/dev/pts/"), output
    assert (tmp_path / "stty.after").read_text() == (tmp_path / "stty").read_text()
    assert rt.status(cid) == "running"


def test_exec_tty_with_console_socket(rt, make_config, bundle, tmp_path):
    cid, _ = started(rt, bundle, make_config(["sleep", "100"]))
    pid_file = tmp_path / "exec.pid"
    with ConsoleListener() as listener:
        argv = rt.argv("exec", "--tty", "--detach", "--console-socket", listener.path,
                       "--pid-file", str(pid_file), cid, "sh")
        call = SubreaperCall(argv, pid_file, rt.env, tmp_path)
        try:
            master = listener.receive()
            number = pty_number(master)
            call.seen()
            pid = int(pid_file.read_text())
            assert controlling_tty(pid) == (PTY_SLAVE_MAJOR << 8) | number
            assert session_id(pid) == pid, "the exec'd process leads a new session"
            read_until(master, b"# ")
            os.write(master, PROBE)
            values = probe_values(read_to_end(master))
            result, log = call.finish()
        finally:
            call.close()
    assert result["rc"] == 0, log
    assert result["exit"] == 3
    assert values["TTY"] == f"/dev/pts/{number}", values
    assert values["FDS"] == " ".join([f"/dev/pts/{number}"] * 3), values
    assert rt.status(cid) == "running"


def test_exec_process_file_terminal_and_console_size(rt, make_config, bundle, tmp_path):
    """``exec -p`` with terminal and consoleSize in process.json, the master over the console
    socket (detached)."""
    cid, _ = started(rt, bundle, make_config(["sleep", "100"]))
    process = {"terminal": True, "consoleSize": {"height": 27, "width": 93},
               "user": {"uid": 0, "gid": 0}, "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/"}
    (tmp_path / "process.json").write_text(json.dumps(process))
    pid_file = tmp_path / "exec.pid"
    with ConsoleListener() as listener:
        argv = rt.argv("exec", "--detach", "--console-socket", listener.path, "--pid-file",
                       str(pid_file), "--process", str(tmp_path / "process.json"), cid)
        call = SubreaperCall(argv, pid_file, rt.env, tmp_path)
        try:
            master = listener.receive()
            number = pty_number(master)
            call.seen()
            read_until(master, b"# ")
            os.write(master, PROBE)
            values = probe_values(read_to_end(master))
            result, log = call.finish()
        finally:
            call.close()
    assert result["rc"] == 0, log
    assert values["SIZE"] == "27 93", values
    assert values["TTY"] == f"/dev/pts/{number}", values
