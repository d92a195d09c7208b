"""The command line, declared once as data: global options, commands, their options and args.

Two parsers read this table: ``fastparse`` for the common case (no click import, which costs
~25 ms on every call) and ``clickapp`` for help, usage errors and anything unusual. Handlers
live in ``ocirt.cli.commands`` and are named here, so neither parser imports them early.
"""

from __future__ import annotations


class Opt:
    """An option; ``kind`` is flag, str, int or multi (repeatable)."""

    def __init__(self, names: tuple[str, ...], dest: str, kind: str = "flag",
                 default: object = None, help: str = "", metavar: str = "",
                 choices: tuple[str, ...] = ()) -> None:
        self.names, self.dest, self.kind, self.default = names, dest, kind, default
        self.help, self.metavar, self.choices = help, metavar, choices


class Arg:
    """A positional argument; ``rest`` takes every remaining word (options included)."""

    def __init__(self, name: str, required: bool = True, rest: bool = False) -> None:
        self.name, self.required, self.rest = name, required, rest


class Command:
    def __init__(self, name: str, help: str, args: tuple[Arg, ...] = (),
                 opts: tuple[Opt, ...] = (), usage: str = "") -> None:
        self.name, self.help, self.args, self.opts, self.usage = name, help, args, opts, usage


GLOBAL_OPTS = (
    Opt(("--root",), "root", "str", None, "root directory for container state (default: "
        "/run/ocirt; $XDG_RUNTIME_DIR/ocirt when not root)", "DIR"),
    Opt(("--log",), "log", "str", None, "write log lines (and errors) to FILE", "FILE"),
    Opt(("--log-format",), "log_format", "str", "text", "log format: text or json", "FORMAT",
        ("text", "json")),
    Opt(("--debug",), "debug", help="debug logging, and a traceback with any error"),
    Opt(("--systemd-cgroup",), "systemd_cgroup",
        help="use systemd for cgroups: the container in a transient scope "
        "(cgroupsPath slice:prefix:name)"),
    Opt(("--rootless",), "rootless", "str", "auto", "accepted for runc compatibility: "
        "ocirt decides by itself (not root, or in a user namespace: see docs/rootless.md)",
        "VALUE"),
    Opt(("--criu",), "criu", "str", None, "accepted for runc compatibility, unused", "PATH"),
)

_BUNDLE = Opt(("--bundle", "-b"), "bundle", "str", None,
              "path to the bundle (directory with config.json); default: current directory",
              "DIR")
_PID_FILE = Opt(("--pid-file",), "pid_file", "str", None,
                "write the container process's host PID to FILE", "FILE")
_CONSOLE = Opt(("--console-socket",), "console_socket", "str", None,
               "unix socket to receive the pty master of a terminal container", "PATH")
_TIMINGS = Opt(("--timings",), "timings",
               help="print where the time went, phase by phase and process by process, on "
               "stderr (JSON lines with --log-format json)")
_PIDFD = Opt(("--pidfd-socket",), "pidfd_socket", "str", None,
             "unix socket to receive a pidfd of the container's process (SCM_RIGHTS)", "PATH")
_BUILD_OPTS = (
    _BUNDLE, _CONSOLE, _PIDFD, _PID_FILE,
    Opt(("--no-pivot",), "no_pivot", help="use MS_MOVE and chroot instead of pivot_root"),
    Opt(("--no-new-keyring",), "no_new_keyring",
        help="do not create a new session keyring for the container"),
    Opt(("--preserve-fds",), "preserve_fds", "int", 0,
        "pass N more file descriptors (3 .. 3+N-1) to the container", "N"),
    Opt(("--explain",), "explain",
        help="print the plan of kernel steps (cgroups, namespaces, mounts, process) and stop"),
    _TIMINGS,
)
_ID = Arg("container-id")


def _value(names: tuple[str, ...], dest: str, help: str, metavar: str = "VALUE") -> Opt:
    return Opt(names, dest, "str", None, help, metavar)


# pause, resume, update, events, ps: the container's cgroup (ocirt.linux.cgroups).
CGROUP_COMMANDS = (
    Command("pause", "freeze every process of the container", (_ID,)),
    Command("resume", "thaw a paused container", (_ID,)),
    Command("update", "change the resources of a running container", (_ID,), (
        _value(("--resources", "-r"), "resources", "a linux.resources JSON document, from "
               "FILE or - (standard input); per-device blockIO entries update the "
               "container's entry for that device or add one", "FILE"),
        _value(("--blkio-weight",), "blkio_weight", "block IO weight (10-1000)"),
        _value(("--cpu-period",), "cpu_period", "CFS period (microseconds)"),
        _value(("--cpu-quota",), "cpu_quota", "CFS quota per period (microseconds; -1: none)"),
        _value(("--cpu-shares", "--cpu-share"), "cpu_shares", "relative CPU weight (shares)"),
        _value(("--cpu-burst",), "cpu_burst", "CFS burst (microseconds)"),
        _value(("--cpu-rt-period",), "cpu_rt_period", "realtime period (microseconds)"),
        _value(("--cpu-rt-runtime",), "cpu_rt_runtime", "realtime runtime (microseconds)"),
        _value(("--cpu-idle",), "cpu_idle", "1: SCHED_IDLE weight, 0: normal"),
        _value(("--cpuset-cpus",), "cpuset_cpus", "CPUs allowed (0-3,7)", "LIST"),
        _value(("--cpuset-mems",), "cpuset_mems", "memory nodes allowed (0-1)", "LIST"),
        _value(("--memory",), "memory", "memory limit (bytes, 512m, 1g; -1: none)"),
        _value(("--memory-reservation",), "memory_reservation", "memory soft limit"),
        _value(("--memory-swap",), "memory_swap", "memory+swap limit (-1: none)"),
        _value(("--kernel-memory",), "kernel_memory", "kernel memory limit (v1, obsolete)"),
        _value(("--kernel-memory-tcp",), "kernel_memory_tcp", "kernel TCP buffer limit "
               "(v1, obsolete)"),
        _value(("--pids-limit",), "pids_limit", "maximum number of tasks (-1: none)"),
    )),
    Command("events", "print the container's statistics and OOM events as JSON lines",
            (_ID,), (
                Opt(("--interval",), "interval", "str", "5s", "time between statistics",
                    "DURATION"),
                Opt(("--stats",), "stats", help="print the statistics once and exit"))),
    Command("ps", "list the container's processes", (_ID, Arg("ps-args", False, rest=True)),
            (Opt(("--format", "-f"), "format", "str", "table", "table or json", "FORMAT",
                 ("table", "json")),),
            usage="ps [OPTIONS] CONTAINER-ID [PS-ARGS]..."),
)

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("create", "create a container (it waits for `start`)", (_ID,), _BUILD_OPTS),
    Command("start", "start a created container: exec its program", (_ID,)),
    Command("state", "print the state of a container as JSON", (_ID,)),
    Command("kill", "send a signal (default SIGTERM) to the container's process",
            (_ID, Arg("signal", required=False)),
            (Opt(("--all", "-a"), "all", help="signal every process in the container's "
                 "cgroup"),)),
    Command("delete", "delete a stopped container and what it holds", (_ID,),
            (Opt(("--force", "-f"), "force", help="kill the container first if it runs"),)),
    Command("run", "create and start a container; in the foreground, wait for it",
            (Arg("container-id-or-bundle"),),
            (*_BUILD_OPTS,
             Opt(("--detach", "-d"), "detach", help="return once the program runs"),
             Opt(("--id",), "id", "str", None,
                 "container ID when the argument is a bundle (default: generated)", "ID"),
             Opt(("--keep",), "keep", help="do not delete the container when it exits")),
            usage="run [OPTIONS] (CONTAINER-ID | BUNDLE)"),
    Command("list", "list the containers", (),
            (Opt(("--format", "-f"), "format", "str", "table", "table or json", "FORMAT",
                 ("table", "json")),
             Opt(("--quiet", "-q"), "quiet", help="print only the IDs"))),
    Command("exec", "run a new process inside a running container",
            (_ID, Arg("command", required=False, rest=True)),
            (Opt(("--process", "-p"), "process", "str", None,
                 "process.json: the whole process object (instead of COMMAND and flags)",
                 "FILE"),
             Opt(("--detach", "-d"), "detach", help="return once the process runs"),
             _PID_FILE, _CONSOLE, _PIDFD,
             Opt(("--cgroup",), "cgroup", "multi", None,
                 "run the process in an existing sub-cgroup of the container's: PATH, or "
                 "CONTROLLER[,CONTROLLER]:PATH on cgroup v1 (repeatable)",
                 "[CONTROLLER:]PATH"),
             Opt(("--tty", "-t"), "tty", help="give the process a terminal"),
             Opt(("--cwd",), "cwd", "str", None, "working directory in the container", "DIR"),
             Opt(("--env", "-e"), "env", "multi", None, "add an environment variable",
                 "KEY=VALUE"),
             Opt(("--user", "-u"), "user", "str", None, "run as UID[:GID]", "UID[:GID]"),
             Opt(("--additional-gids", "-g"), "additional_gids", "multi", None,
                 "an additional group", "GID"),
             Opt(("--cap", "-c"), "cap", "multi", None, "add a capability", "CAP"),
             Opt(("--no-new-privs",), "no_new_privs", help="set no_new_privileges"),
             Opt(("--preserve-fds",), "preserve_fds", "int", 0,
                 "pass N more file descriptors (3 .. 3+N-1) to the process", "N"),
             Opt(("--process-label",), "process_label", "str", None,
                 "SELinux label (not supported: refused)", "LABEL"),
             Opt(("--apparmor",), "apparmor", "str", None,
                 "AppArmor profile for the process", "PROFILE"),
             Opt(("--explain",), "explain",
                 help="print the plan of kernel steps (cgroups, namespaces, process) and stop"),
             _TIMINGS),
            usage="exec [OPTIONS] CONTAINER-ID [COMMAND [ARG...]]"),
    Command("features", "print the features this runtime supports, as JSON (features.md)"),
    Command("spec", "write a default config.json", (),
            (_BUNDLE, Opt(("--rootless",), "rootless",
                          help="a config for a container run by a non-root user"))),
    *CGROUP_COMMANDS,
)}
