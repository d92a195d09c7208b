"""``SeccompFilter``: one ``linux.seccomp`` profile, from its checks to the loaded filter.

Three stages, each in the process that can do it best:

* ``SeccompFilter(profile)`` (the parent, at plan time) checks what the schema cannot: errno
  values on actions that take none, argument indexes, NOTIFY without a listener. Every error
  names the JSON path, the value and why.
* ``prepare()`` (the parent, before it forks) gives it a classic BPF program: read back from the
  cache (``bpf_cache``; pyseccomp is then never imported) or compiled (``compile``) and cached.
* ``load()`` (the container's init, as the very last step before execve) installs the program
  with seccomp(2) itself (``ocirt.linux.syscalls.seccomp``), cached or not, so every flag is
  ours to pass:
  SECCOMP_FILTER_FLAG_LOG, SPEC_ALLOW, TSYNC and, when a rule uses SCMP_ACT_NOTIFY,
  NEW_LISTENER (plus WAIT_KILLABLE_RECV if asked). The listener fd is then sent with SCM_RIGHTS
  to ``listenerPath``, with the container process state as payload, as config-linux.md says; the
  connection to that socket is made by stage-1 in the host's namespaces (``connect_listener``),
  because the host path cannot be reached from inside the rootfs.

The ``exec`` command can reuse all of it: build a filter from the container's profile in the
parent, call ``load()`` in the child just before it execs.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import os

from ocirt import jsonfast, log
from ocirt.errors import ConfigError, OcirtError
from ocirt.linux import unixsock
from ocirt.linux.seccomp.bpf_cache import cache_key, default_cache_dir, read_cached, write_cache
from ocirt.linux.seccomp.compile import compile_bpf, log_unknown_names
from ocirt.linux.seccomp.rules import (
    ARCHES,
    FLAGS,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_TSYNC,
    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    action_text,
    action_value,
    condition_text,
    parse_rule,
)
from ocirt.linux.syscalls import seccomp as kseccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Syscalls init makes between loading a filter and having sent its listener fd: a NOTIFY on
# them would wait for an agent that has not got the fd yet.
_NEEDED_BEFORE_LISTENER = ("sendmsg",)


class SeccompFilter:
    """``linux.seccomp``, checked; ``prepare`` gives it a BPF program, ``load`` installs it."""

    def __init__(self, profile: dict[str, Any], where: str = "$.linux.seccomp") -> None:
        self.profile, self.where = profile, where
        self.default_name: str = profile["defaultAction"]
        self.default_action = action_value(self.default_name, profile.get("defaultErrnoRet"),
                                           f"{where}.defaultAction", f"{where}.defaultErrnoRet")
        if self.default_name == "SCMP_ACT_NOTIFY":
            raise ConfigError(f"{where}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default "
                              "action: the runtime's own calls before exec would wait on it")
        self.arches: list[str] = list(profile.get("architectures") or [])
        for i, arch in enumerate(self.arches):
            if arch not in ARCHES:
                raise ConfigError(f"{where}.architectures[{i}]", f"unknown architecture {arch!r}")
        self.flag_names: list[str] = list(profile.get("flags") or [])
        for i, flag in enumerate(self.flag_names):
            if flag not in FLAGS:
                raise ConfigError(f"{where}.flags[{i}]", f"unknown seccomp flag {flag!r}")
        self.rules = [parse_rule(i, entry, f"{where}.syscalls[{i}]")
                      for i, entry in enumerate(profile.get("syscalls") or [])]
        self.notify = any(rule.action_name == "SCMP_ACT_NOTIFY" for rule in self.rules)
        self.listener_path: str | None = profile.get("listenerPath")
        self.metadata: str | None = profile.get("listenerMetadata")
        if self.metadata is not None and not self.listener_path:
            raise ConfigError(f"{where}.listenerMetadata", "must not be set without listenerPath")
        if self.notify:
            if not self.listener_path:
                raise ConfigError(f"{where}.listenerPath", "SCMP_ACT_NOTIFY is used, so a "
                                  "listenerPath must say where to send the notify fd")
            for rule in self.rules:
                for j, name in enumerate(rule.names):
                    if rule.action_name == "SCMP_ACT_NOTIFY" and name in _NEEDED_BEFORE_LISTENER:
                        raise ConfigError(
                            f"{where}.syscalls[{rule.index}].names[{j}]",
                            f"SCMP_ACT_NOTIFY on {name!r}: ocirt needs it to send the notify fd "
                            "to the listener")
        self.bpf: bytes | None = None
        self.from_cache = False
        self.listener: socket.socket | None = None  # connected by stage-1 (connect_listener)
        self.state: dict[str, Any] = {}  # the container state sent with the notify fd

    # --- the parent ------------------------------------------------------------------------

    def flags(self) -> int:
        """The seccomp(2) flags to load with."""
        value = 0
        for name in self.flag_names:
            value |= FLAGS[name]
        if self.notify:
            value |= SECCOMP_FILTER_FLAG_NEW_LISTENER
            # The kernel refuses TSYNC with a listener (without TSYNC_ESRCH); init has one
            # thread, so TSYNC has nothing to synchronise anyway.
            value &= ~SECCOMP_FILTER_FLAG_TSYNC
        else:
            value &= ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV  # only means something with one
        return value

    def key(self) -> str:
        """The cache key: what the BPF program depends on, hashed."""
        return cache_key(self.profile)

    def prepare(self, cache: str | None = None) -> None:
        """Give the filter its BPF program: from the cache, or compiled (and then cached)."""
        if self.bpf is not None:
            return
        path = os.path.join(cache or default_cache_dir(), f"{self.key()}.bpf")
        bpf = read_cached(path)
        if bpf is not None:
            self.bpf, self.from_cache = bpf, True
            if log.current.debug_enabled:  # say what compiling would have said
                log_unknown_names(self.rules, self.where)
            return
        self.bpf = self.compile()
        write_cache(path, self.bpf)

    def compile(self) -> bytes:
        """Compile the profile with libseccomp (through pyseccomp) into raw BPF."""
        return compile_bpf(self.default_name, self.default_action, self.arches, self.rules,
                           self.where)

    def describe(self) -> list[str]:
        """What ``--explain`` prints: the load, then one line per rule."""
        default = action_text(self.default_name, self.default_action)
        where = ("from the cache" if self.from_cache else "compiled and cached") \
            if self.bpf is not None else "not compiled yet"
        size = f"{len(self.bpf) // 8} BPF instructions, " if self.bpf is not None else ""
        flags = " ".join(self.flag_names) or "none"
        lines = [f"seccomp: load filter ({size}{where}): default {default}; architectures "
                 f"{' '.join(self.arches) or '(native)'}; flags {flags}; {len(self.rules)} rules"]
        if self.notify:
            lines.append(f"seccomp:   send the notify fd to {self.listener_path}")
        for rule in self.rules:
            lines.append(f"seccomp:   {action_text(rule.action_name, rule.action)}"
                         f"{condition_text(rule)}: {' '.join(rule.names)}")
        return lines

    # --- stage-1 and init ------------------------------------------------------------------

    def connect_listener(self) -> None:
        """In the host's namespaces (stage-1): connect to listenerPath if NOTIFY is used."""
        if not self.notify or self.listener is not None:
            return
        self.listener = unixsock.connect(self.listener_path or "",
                                         f"seccomp listener ({self.where}.listenerPath)")

    def load(self) -> None:
        """Install the filter in this process; with NOTIFY, send the fd to the listener.

        Nothing but the seccomp(2) call, one sendmsg with a listener, and the caller's execve
        should follow: every later syscall meets the filter.
        """
        if self.bpf is None:
            raise OcirtError("seccomp: the filter was not prepared")
        fd = kseccomp.install_filter(self.bpf, self.flags())
        if fd < 0:
            return
        if self.listener is None:
            raise OcirtError("seccomp: SCMP_ACT_NOTIFY is used but no listener is connected")
        payload = jsonfast.dumps({"ociVersion": self.state.get("ociVersion", ""),
                                  "fds": ["seccompFd"], "pid": self.state.get("pid", 0),
                                  "metadata": self.metadata or "",
                                  "state": self.state}).encode()
        unixsock.send_fd(self.listener, fd, payload,
                         f"seccomp: sending the notify fd to {self.listener_path!r}",
                         f"notify fd {fd}")
        # Both fds are close-on-exec: the execve that follows closes the connection.
