"""One handler per command: turn parsed options into lifecycle calls and an exit code.

Every ``OcirtError`` becomes one line on stderr (and in the ``--log`` file), exit code 1;
an unexpected exception too, with its traceback only under ``--debug``.
"""

from __future__ import annotations

import gc
import os
import sys

from ocirt import jsonfast
from ocirt import log as logging
from ocirt.cli.table import Command
from ocirt.container.state import Store, check_id
from ocirt.errors import (
    OcirtError,
    SyscallError,
    UnsupportedError,
    access_hint,
    errno_text,
)
from ocirt.log import Log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Handler = Callable[[Store, dict[str, Any], dict[str, Any]], int]


def dispatch(globals_: dict[str, Any], command: Command, values: dict[str, Any]) -> int:
    log = logging.configure(globals_.get("log"), globals_.get("log_format") or "text",
                            bool(globals_.get("debug")))
    try:
        root = globals_.get("root")
        if not root:  # managers pass --root
            from ocirt.linux.rootless import default_root

            root = default_root()
        store = Store(root)
        return HANDLERS[command.name](store, globals_, values)
    except OcirtError as err:
        return _fail(log, str(err), err, bool(globals_.get("debug")), err.exit_code)
    except KeyboardInterrupt:
        return _fail(log, "interrupted", None, False, 130)
    except BrokenPipeError:  # `ocirt features | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    except OSError as err:
        # A kernel call's failure no lower layer put into words: still one line that names
        # the errno and the call's target (and, for a denial, what to do), never "internal
        # error".
        text = (f"{command.name}: {errno_text(err)} on {err.filename or '(no path)'}"
                f"{access_hint(err)}")
        return _fail(log, text, err, bool(globals_.get("debug")), 1)
    except Exception as err:
        return _fail(log, f"internal error: {type(err).__name__}: {err}", err,
                     bool(globals_.get("debug")), 1)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _fail(log: Log, message: str, err: BaseException | None, debug: bool, code: int) -> int:
    if debug and err is not None:
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    log.error(message)
    print(f"ocirt: {message}", file=sys.stderr)
    return code


def _options(globals_: dict[str, Any], values: dict[str, Any], timings: Any = None) -> Any:
    from ocirt.container.plan import Options

    return Options(pid_file=values.get("pid_file"), no_pivot=bool(values.get("no_pivot")),
                   no_new_keyring=bool(values.get("no_new_keyring")),
                   preserve_fds=int(values.get("preserve_fds") or 0),
                   console_socket=values.get("console_socket"),
                   debug=bool(globals_.get("debug")), timings=timings,
                   cgroup_driver="systemd" if globals_.get("systemd_cgroup") else "cgroupfs",
                   pidfd_socket=values.get("pidfd_socket"))


def _timings(values: dict[str, Any]) -> Any:
    """``--timings``: the runtime's timeline, begun at its fork (None without the flag)."""
    if not values.get("timings"):
        return None
    from ocirt import ENTERED, timings

    return timings.start(ENTERED)


def _report(timings: Any, command: str, globals_: dict[str, Any]) -> None:
    if timings is not None:
        sys.stdout.flush()
        print(timings.report(command, globals_.get("log_format") or "text"), file=sys.stderr)


def cmd_create(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    timings = _timings(values)
    from ocirt.container import create as creating

    if timings is not None:
        timings.lap("imports (create)")
    plan = creating.load_plan(values["container_id"], values.get("bundle") or ".",
                              _options(globals_, values, timings))
    if values.get("explain"):
        print(plan.explain())
        return 0
    created = creating.create(store, plan)
    created.channel.close()
    created.lock.release()
    if timings is not None:
        timings.lap("close the sync channel, unlock")
    _report(timings, "create", globals_)
    return 0


def cmd_start(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container.start import start

    start(store, values["container_id"])
    return 0


def cmd_state(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    check_id(values["container_id"])
    print(jsonfast.pretty(store.load(values["container_id"]).document()))
    return 0


def cmd_kill(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container.kill import kill, parse_signal

    signum = parse_signal(values.get("signal") or "SIGTERM")
    kill(store, values["container_id"], signum, bool(values.get("all")))
    return 0


def cmd_delete(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container.delete import delete

    delete(store, values["container_id"], bool(values.get("force")))
    return 0


def cmd_run(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    timings = _timings(values)
    from ocirt.container import create as creating
    from ocirt.container.run import run

    if timings is not None:
        timings.lap("imports (create, run)")

    target = values["container_id_or_bundle"]
    bundle = values.get("bundle")
    if bundle is None and os.path.isfile(os.path.join(target, "config.json")):
        bundle = target
        container_id = values.get("id") or _generated_id(target)
    else:
        container_id = target
        bundle = bundle or "."
    plan = creating.load_plan(container_id, bundle, _options(globals_, values, timings))
    if values.get("explain"):
        print(plan.explain())
        return 0
    status = run(store, plan, detach=bool(values.get("detach")), keep=bool(values.get("keep")))
    _report(timings, "run", globals_)
    return status


def _generated_id(bundle: str) -> str:
    base = os.path.basename(os.path.abspath(bundle)) or "container"
    safe = "".join(c if c.isalnum() or c in "_+-." else "-" for c in base)
    return f"{safe}-{os.urandom(4).hex()}"


def cmd_list(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    states = []
    for container_id in store.ids():
        try:
            states.append(store.load(container_id).document())
        except OcirtError:
            continue
    if values.get("quiet"):
        for doc in states:
            print(doc["id"])
    elif values.get("format") == "json":
        print(jsonfast.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(d["id"], str(d["pid"]), d["status"], d["bundle"], d["created"], d["owner"])
                 for d in states]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_spec(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.config.default import default_spec

    path = os.path.join(values.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise OcirtError(f"file {path} exists: remove it first")
    with open(path, "w") as handle:
        handle.write(jsonfast.pretty(default_spec(rootless=bool(values.get("rootless")))))
        handle.write("\n")
    return 0


def cmd_exec(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    timings = _timings(values)
    from ocirt.container import exec as executing

    if timings is not None:
        timings.lap("imports (exec)")

    if values.get("process_label"):
        raise UnsupportedError("exec: SELinux labels are not supported by ocirt")
    check_id(values["container_id"])
    if values.get("process"):
        process = executing.process_from_file(values["process"])
        if values.get("tty"):
            process["terminal"] = True
    else:
        state = store.load(values["container_id"])
        process = executing.process_from_args(
            state.config, values.get("command") or [], bool(values.get("tty")),
            values.get("cwd"), values.get("env") or [], values.get("user"),
            values.get("additional_gids") or [], values.get("cap") or [],
            bool(values.get("no_new_privs")))
    if values.get("apparmor"):
        process["apparmorProfile"] = values["apparmor"]
    options = executing.ExecOptions(detach=bool(values.get("detach")),
                                    pid_file=values.get("pid_file"),
                                    console_socket=values.get("console_socket"),
                                    preserve_fds=int(values.get("preserve_fds") or 0),
                                    debug=bool(globals_.get("debug")), timings=timings,
                                    pidfd_socket=values.get("pidfd_socket"),
                                    cgroups=values.get("cgroup") or [],
                                    explain=bool(values.get("explain")))
    status = executing.exec_process(store, values["container_id"], process, options)
    _report(timings, "exec", globals_)
    return status


def cmd_features(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container.features import features

    print(jsonfast.pretty(features()))
    return 0


HANDLERS: dict[str, Handler] = {
    "create": cmd_create, "start": cmd_start, "state": cmd_state, "kill": cmd_kill,
    "delete": cmd_delete, "run": cmd_run, "list": cmd_list, "spec": cmd_spec,
    "exec": cmd_exec, "features": cmd_features,
}


# --- pause, resume, update, events, ps: the container's cgroup (ocirt.linux.cgroups) ---------

def cmd_pause(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container.pause import pause

    pause(store, _checked_id(values))
    return 0


def cmd_resume(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container.pause import resume

    resume(store, _checked_id(values))
    return 0


def cmd_update(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container import update

    source = values.get("resources")
    text = None
    if source == "-":
        text = sys.stdin.read()
    elif source is not None:
        try:
            with open(source) as handle:
                text = handle.read()
        except OSError as err:
            raise SyscallError.of(f"open({source!r})", err, "--resources") from err
    update.update(store, _checked_id(values), update.from_options(values, text))
    return 0


def cmd_events(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container import events

    gc.enable()  # it runs for as long as the container does (see ocirt.cli.main)
    interval = events.parse_interval(values.get("interval") or "5s")
    events.events(store, _checked_id(values), interval, bool(values.get("stats")))
    return 0


def cmd_ps(store: Store, globals_: dict[str, Any], values: dict[str, Any]) -> int:
    from ocirt.container.ps import ps

    print(ps(store, _checked_id(values), values.get("format") or "table",
             list(values.get("ps_args") or [])))
    return 0


def _checked_id(values: dict[str, Any]) -> str:
    container_id: str = values["container_id"]
    check_id(container_id)
    return container_id


HANDLERS.update({"pause": cmd_pause, "resume": cmd_resume, "update": cmd_update,
                 "events": cmd_events, "ps": cmd_ps})
