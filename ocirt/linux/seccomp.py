"""seccomp: config.json ``linux.seccomp`` checked, compiled to BPF, cached, and loaded.

Three stages, each in the process that can do it best:

* ``SeccompFilter(profile)`` (the parent, at plan time) checks what the schema cannot: errno
  values on actions that take none, argument indexes, NOTIFY without a listener. Every error
  names the JSON path, the value and why.
* ``prepare()`` (the parent, before it forks) turns the profile into a classic BPF program.
  The program is cached, as crun does, under ``<cache_dir>/seccomp/<key>.bpf`` where the key is a
  sha256 of the canonical JSON of the rules, the libseccomp version, the machine and the kernel
  release. On a hit the raw program is read back and ``pyseccomp`` (~20 ms to import, plus an
  ``ldconfig`` run) is never imported; on a miss libseccomp compiles it through pyseccomp and
  ``seccomp_export_bpf`` writes it to the cache. A cache that cannot be read or written (foreign
  owner, group/world writable, read-only disk) only costs speed; it keeps the newest 256.
* ``load()`` (the container's init, as the very last step before execve) installs the program
  with seccomp(2) itself, cached or not, so every flag is ours to pass: SECCOMP_FILTER_FLAG_LOG,
  SPEC_ALLOW, TSYNC and, when a rule uses SCMP_ACT_NOTIFY, NEW_LISTENER (plus
  WAIT_KILLABLE_RECV if asked). The listener fd is then sent with SCM_RIGHTS to
  ``listenerPath``, with the container process state as payload, as config-linux.md says; the
  connection to that socket is made by stage-1 in the host's namespaces (``connect_listener``),
  because the host path cannot be reached from inside the rootfs.

Behaviour follows runc where the spec is silent: a syscall name libseccomp does not know is
skipped with a debug log line; a rule whose action equals the default action is skipped (libseccomp
refuses it); several conditions on the same argument become one rule per condition (OR); an
architecture this libseccomp cannot encode is left out (its syscalls then meet the bad-arch
action, which kills). The ``exec`` command can reuse all of it: build a filter from the container's
profile in the parent, call ``load()`` in the child just before it execs.

The seccomp(2) binding lives here rather than in ``syscalls`` because it is only needed with a
seccomp profile, like libcap-ng in ``capabilities``.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import ctypes
import os
import struct

from ocirt import jsonfast, log
from ocirt.cache import read_trusted, write_atomic
from ocirt.errors import ConfigError, OcirtError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Action values (linux/seccomp.h SECCOMP_RET_*, as libseccomp's SCMP_ACT_* encode them).
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # the actions that take errnoRet
EPERM = 1

# AUDIT_ARCH_* (linux/audit.h): the ELF machine | 64-bit | little-endian bits.
_64, _LE = 0x80000000, 0x40000000
ARCHES: dict[str, int] = {
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _64,
    "SCMP_ARCH_MIPS64N32": 8 | _64 | 0x20000000,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _64 | _LE | 0x20000000,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _64,
    "SCMP_ARCH_PPC64LE": 21 | _64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _64,
    "SCMP_ARCH_RISCV64": 243 | _64 | _LE,
    "SCMP_ARCH_LOONGARCH64": 258 | _64 | _LE,
    "SCMP_ARCH_M68K": 4,
    "SCMP_ARCH_SH": 42 | _LE,
    "SCMP_ARCH_SHEB": 42,
}
# Argument comparisons (enum scmp_compare).
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
# seccomp(2) filter flags (linux/seccomp.h).
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}
# seccomp(2) by machine; prctl(PR_SET_SECCOMP) is the fallback (it takes no flags).
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348,
                "i686": 354, "armv7l": 383}
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_BPF_MAXINSNS = 4096
_NR_SCMP_ERROR = -1  # what libseccomp resolves an unknown syscall name to
# Bump when the way a profile is compiled changes: old cache entries then miss.
_COMPILER_VERSION = "1"
# Syscalls init makes between loading a filter and having sent its listener fd: a NOTIFY on
# them would wait for an agent that has not got the fd yet.
_NEEDED_BEFORE_LISTENER = ("sendmsg",)


class Rule:
    """One entry of ``syscalls``: names, the action's value and the argument conditions."""

    __slots__ = ("action", "action_name", "conditions", "index", "names")

    def __init__(self, index: int, names: list[str], action_name: str, action: int,
                 conditions: list[tuple[int, int, int, int]]) -> None:
        self.index, self.names, self.action_name = index, names, action_name
        self.action, self.conditions = action, conditions  # (arg index, op, value, valueTwo)


class SeccompFilter:
    """``linux.seccomp``, checked; ``prepare`` gives it a BPF program, ``load`` installs it."""

    def __init__(self, profile: dict[str, Any], where: str = "$.linux.seccomp") -> None:
        self.profile, self.where = profile, where
        self.default_name: str = profile["defaultAction"]
        self.default_action = _action(self.default_name, profile.get("defaultErrnoRet"),
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
        self.rules = [_rule(i, entry, f"{where}.syscalls[{i}]")
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
        from ocirt.config.validate import _sha256

        relevant = {k: self.profile.get(k) for k in
                    ("defaultAction", "defaultErrnoRet", "architectures", "syscalls")}
        digest = _sha256()
        digest.update(jsonfast.dumps(relevant, compact=True, sort_keys=True).encode())
        uname = os.uname()
        digest.update(f"\0{_COMPILER_VERSION}\0{libseccomp_version()}\0{uname.machine}\0"
                      f"{uname.release}".encode())
        hexdigest: str = digest.hexdigest()
        return hexdigest

    def prepare(self, cache: str | None = None) -> None:
        """Give the filter its BPF program: from the cache, or compiled (and then cached)."""
        if self.bpf is not None:
            return
        path = os.path.join(cache or default_cache_dir(), f"{self.key()}.bpf")
        bpf = _read_cached(path)
        if bpf is not None:
            self.bpf, self.from_cache = bpf, True
            if log.current.debug_enabled:  # say what compiling would have said
                self._log_unknown_names()
            return
        self.bpf = self.compile()
        _write_cache(path, self.bpf)

    def _log_unknown_names(self) -> None:
        lib = _libseccomp()
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        for rule in self.rules:
            for j, name in enumerate(rule.names):
                if lib.seccomp_syscall_resolve_name(name.encode()) == _NR_SCMP_ERROR:
                    log.current.debug(f"seccomp: unknown syscall {name!r} "
                                      f"({self.where}.syscalls[{rule.index}].names[{j}]) ignored")

    def compile(self) -> bytes:
        """Compile the profile with libseccomp (through pyseccomp) into raw BPF."""
        import pyseccomp

        debug = log.current.debug
        try:
            compiled = pyseccomp.SyscallFilter(self.default_action)
        except OSError as err:
            raise ConfigError(f"{self.where}.defaultAction",
                              f"libseccomp refused {self.default_name!r}: {err.strerror}"
                              ) from None
        for i, arch in enumerate(self.arches):
            try:
                compiled.add_arch(ARCHES[arch])
            except OSError as err:
                if err.errno != 17:  # EEXIST: the native architecture is always there
                    debug(f"seccomp: architecture {arch} ({self.where}.architectures[{i}]) "
                          f"left out: libseccomp {libseccomp_version()} cannot encode it")
        for rule in self.rules:
            self._add_rule(pyseccomp, compiled, rule)
        fd = os.memfd_create("ocirt-seccomp-bpf", os.MFD_CLOEXEC)
        try:
            with os.fdopen(fd, "r+b", closefd=False) as handle:
                compiled.export_bpf(handle)
            size = os.lseek(fd, 0, os.SEEK_CUR)
            os.lseek(fd, 0, os.SEEK_SET)
            bpf = _read_all(fd, size)
        except OSError as err:
            raise OcirtError(f"exporting the seccomp filter of {self.where}: {err}") from err
        finally:
            os.close(fd)
        if not bpf or len(bpf) % 8 or len(bpf) // 8 > _BPF_MAXINSNS:
            raise ConfigError(self.where, f"the compiled filter has {len(bpf) // 8} instructions; "
                              f"the kernel takes at most {_BPF_MAXINSNS}")
        return bpf

    def _add_rule(self, pyseccomp: Any, compiled: Any, rule: Rule) -> None:
        debug = log.current.debug
        path = f"{self.where}.syscalls[{rule.index}]"
        if rule.action == self.default_action:
            debug(f"seccomp: {path} has the default action: skipped")
            return
        indexes = [c[0] for c in rule.conditions]
        # Two conditions on one argument cannot be one libseccomp rule: as runc, add one rule
        # per condition (so they combine with OR).
        groups = ([[c] for c in rule.conditions] if len(set(indexes)) < len(indexes)
                  else [rule.conditions])
        for j, name in enumerate(rule.names):
            number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
            if number == _NR_SCMP_ERROR:
                debug(f"seccomp: unknown syscall {name!r} ({path}.names[{j}]) ignored")
                continue
            for group in groups:
                args = [pyseccomp.Arg(index, op, value, value_two)
                        for index, op, value, value_two in group]
                try:
                    compiled.add_rule(rule.action, number, *args)
                except OSError as err:
                    why = {17: "it conflicts with an earlier rule for the same syscall",
                           22: "libseccomp cannot express it"}.get(err.errno or 0, err.strerror)
                    raise ConfigError(f"{path}.names[{j}]",
                                      f"{name!r} with {rule.action_name}: {why}") from None

    def describe(self) -> list[str]:
        """What ``--explain`` prints: the load, then one line per rule."""
        default = self.default_name
        if default in _WITH_DATA:
            default += f"({self.default_action & 0xFFFF})"
        where = ("from the cache" if self.from_cache else "compiled and cached") \
            if self.bpf is not None else "not compiled yet"
        size = f"{len(self.bpf) // 8} BPF instructions, " if self.bpf is not None else ""
        flags = " ".join(self.flag_names) or "none"
        lines = [f"seccomp: load filter ({size}{where}): default {default}; architectures "
                 f"{' '.join(self.arches) or '(native)'}; flags {flags}; {len(self.rules)} rules"]
        if self.notify:
            lines.append(f"seccomp:   send the notify fd to {self.listener_path}")
        for rule in self.rules:
            action = rule.action_name
            if action in _WITH_DATA:
                action += f"({rule.action & 0xFFFF})"
            conditions = "".join(f" [arg{i} & {a:#x} == {b:#x}]" if op == 7
                                 else f" [arg{i} {_op_name(op)} {a:#x}]"
                                 for i, op, a, b in rule.conditions)
            lines.append(f"seccomp:   {action}{conditions}: {' '.join(rule.names)}")
        return lines

    # --- stage-1 and init ------------------------------------------------------------------

    def connect_listener(self) -> None:
        """In the host's namespaces (stage-1): connect to listenerPath if NOTIFY is used."""
        if not self.notify or self.listener is not None:
            return
        path = self.listener_path or ""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as err:
            sock.close()
            raise OcirtError(f"seccomp listener {path!r} ({self.where}.listenerPath): "
                             f"cannot connect: {err.strerror}") from err
        self.listener = sock

    def load(self) -> None:
        """Install the filter in this process; with NOTIFY, send the fd to the listener.

        Nothing but the seccomp(2) call, one sendmsg with a listener, and the caller's execve
        should follow: every later syscall meets the filter.
        """
        if self.bpf is None:
            raise OcirtError("seccomp: the filter was not prepared")
        fd = install(self.bpf, self.flags())
        if fd < 0:
            return
        if self.listener is None:
            raise OcirtError("seccomp: SCMP_ACT_NOTIFY is used but no listener is connected")
        payload = jsonfast.dumps({"ociVersion": self.state.get("ociVersion", ""),
                                  "fds": ["seccompFd"], "pid": self.state.get("pid", 0),
                                  "metadata": self.metadata or "",
                                  "state": self.state}).encode()
        try:
            self.listener.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                               struct.pack("i", fd))])
        except OSError as err:
            raise OcirtError(f"seccomp: sending the notify fd to {self.listener_path!r}: "
                             f"{err.strerror}") from err
        # Both fds are close-on-exec: the execve that follows closes the connection.


def _rule(index: int, entry: dict[str, Any], where: str) -> Rule:
    action_name: str = entry["action"]
    action = _action(action_name, entry.get("errnoRet"), f"{where}.action", f"{where}.errnoRet")
    conditions = []
    for k, arg in enumerate(entry.get("args") or []):
        if arg["index"] > 5:
            raise ConfigError(f"{where}.args[{k}].index",
                              f"{arg['index']}: a syscall has arguments 0 to 5")
        conditions.append((arg["index"], OPERATORS[arg["op"]], arg["value"],
                           arg.get("valueTwo", 0)))
    return Rule(index, list(entry["names"]), action_name, action, conditions)


def _action(name: str, errno_ret: int | None, where: str, errno_where: str) -> int:
    if name not in ACTIONS:
        raise ConfigError(where, f"unknown seccomp action {name!r}")
    if name in _WITH_DATA:
        value = EPERM if errno_ret is None else errno_ret
        if not 0 <= value <= 0xFFFF:
            raise ConfigError(errno_where, f"{value}: the kernel keeps 16 bits of it")
        return ACTIONS[name] | value
    if errno_ret is not None:
        raise ConfigError(errno_where, f"{errno_ret}: {name} takes no errno "
                          "(only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")
    return ACTIONS[name]


def _op_name(op: int) -> str:
    for name, value in OPERATORS.items():
        if value == op:
            return name[len("SCMP_CMP_"):]
    return str(op)


# --- the kernel ---------------------------------------------------------------------------

class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(bpf: bytes, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): the listener fd with NEW_LISTENER, else -1.

    Needs no_new_privs or CAP_SYS_ADMIN in the process's user namespace (the kernel's rule).
    """
    buffer = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    number = _SYS_SECCOMP.get(os.uname().machine)
    if number is not None:
        result: int = libc.syscall(ctypes.c_long(number), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                                   ctypes.c_long(flags), ctypes.byref(prog))
    elif flags & ~SECCOMP_FILTER_FLAG_TSYNC == 0:
        result = libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)
    else:
        raise OcirtError(f"seccomp flags {flags:#x} need seccomp(2), whose number on "
                         f"{os.uname().machine} ocirt does not know")
    if result < 0:
        err = ctypes.get_errno()
        hint = {13: " (without noNewPrivileges, loading a filter needs CAP_SYS_ADMIN)",
                22: " (a flag or action this kernel does not support?)"}.get(err, "")
        raise SyscallError(f"seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x}, "
                           f"<{len(bpf) // 8} instructions>)", err, "loading the seccomp filter"
                           + hint)
    return result if flags & SECCOMP_FILTER_FLAG_NEW_LISTENER else -1


_version: str | None = None
_lib: ctypes.CDLL | None = None


def _libseccomp() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as err:
            raise OcirtError(f"loading libseccomp (package libseccomp2): {err}") from err
    return _lib


def libseccomp_version() -> str:
    """"2.5.4": asked of libseccomp itself (a dlopen, not the pyseccomp import)."""
    global _version
    if _version is None:
        class Version(ctypes.Structure):
            _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint),
                        ("micro", ctypes.c_uint)]

        lib = _libseccomp()
        lib.seccomp_version.restype = ctypes.POINTER(Version)
        v = lib.seccomp_version().contents
        _version = f"{v.major}.{v.minor}.{v.micro}"
    return _version


# --- the cache ----------------------------------------------------------------------------

def default_cache_dir() -> str:
    from ocirt.config.validate import cache_dir

    return os.path.join(cache_dir(), "seccomp")


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_cached(path: str) -> bytes | None:
    """The cached program, if the file is safely ours (see ``ocirt.cache``) and whole."""
    bpf = read_trusted(path)
    if not bpf or len(bpf) % 8 or len(bpf) > _BPF_MAXINSNS * 8:
        return None
    return bpf


def _write_cache(path: str, bpf: bytes) -> None:
    """Store atomically (temp file + rename); failing to is only logged."""
    directory = os.path.dirname(path)
    why = write_atomic(path, bpf, dir_mode=0o700, file_mode=0o600)
    if why is not None:
        log.current.debug(f"seccomp: cannot cache the filter in {directory}: {why}")
        return
    _evict(directory)


_CACHE_ENTRIES = 256


def _evict(directory: str) -> None:
    """Keep the newest ``_CACHE_ENTRIES`` programs (only on a miss, so hits stay cheap)."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".bpf")]
        if len(names) <= _CACHE_ENTRIES:
            return
        aged = sorted(names, key=lambda n: os.stat(os.path.join(directory, n)).st_mtime)
        for name in aged[:len(names) - _CACHE_ENTRIES]:
            os.unlink(os.path.join(directory, name))
    except OSError:
        pass


# --- the default profile ------------------------------------------------------------------

# The architectures a default profile lists, by the host's machine (as Docker's archMap).
_DEFAULT_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """The profile ``ocirt spec`` writes (ocirt/config/seccomp_default.json), for this host."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config",
                        "seccomp_default.json")
    with open(path, "rb") as handle:
        profile: dict[str, Any] = jsonfast.loads(handle.read())
    arches = _DEFAULT_ARCHES.get(machine or os.uname().machine)
    if arches is None:
        profile.pop("architectures", None)  # the native architecture only
    else:
        profile["architectures"] = list(arches)
    return profile


# --- features -----------------------------------------------------------------------------

def features() -> dict[str, Any]:
    """linux.seccomp of the Features structure (features-linux.md)."""
    try:
        libseccomp_version()
    except OcirtError:
        return {"enabled": False}
    # WAIT_KILLABLE_RECV is only valid with a listener: asked together with NEW_LISTENER.
    supported = [name for name, flag in FLAGS.items() if flag_supported(
        flag | (SECCOMP_FILTER_FLAG_NEW_LISTENER
                if flag == SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV else 0))]
    return {"enabled": True, "actions": list(ACTIONS), "operators": list(OPERATORS),
            "archs": list(ARCHES), "knownFlags": list(FLAGS), "supportedFlags": supported}


def flag_supported(flag: int) -> bool:
    """Ask the kernel: seccomp(SET_MODE_FILTER, flag, NULL) fails EFAULT for a known flag."""
    number = _SYS_SECCOMP.get(os.uname().machine)
    if number is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(ctypes.c_long(number), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                          ctypes.c_long(flag), ctypes.c_void_p(None))
    return result < 0 and ctypes.get_errno() == 14
