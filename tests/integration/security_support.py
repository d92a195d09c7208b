"""Helpers for the security tests: a tiny static C tool run inside containers, and rootfs copies.

``sectool`` (compiled once per session with ``gcc -static``, as crun's tests do) does what
busybox cannot: a raw syscall by name with numeric arguments (printing ``ret=R errno=E``), the
same under a SIGSYS handler (``trap``), the open fds with their targets, the ids, a write-open of
a path, an i386 syscall through ``int $0x80``. Tests copy it into a per-test rootfs as
``/sectool``; without gcc they skip.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

SOURCE = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const struct { const char *name; long nr; } table[] = {
    {"reboot", SYS_reboot}, {"swapon", SYS_swapon}, {"swapoff", SYS_swapoff},
    {"init_module", SYS_init_module}, {"finit_module", SYS_finit_module},
    {"delete_module", SYS_delete_module}, {"umask", SYS_umask}, {"getppid", SYS_getppid},
    {"getpid", SYS_getpid}, {"getuid", SYS_getuid}, {"getpgid", SYS_getpgid},
    {"kexec_load", SYS_kexec_load}, {"unshare", SYS_unshare}, {"setns", SYS_setns},
    {"keyctl", SYS_keyctl}, {"add_key", SYS_add_key}, {"bpf", SYS_bpf}, {"acct", SYS_acct},
    {"chroot", SYS_chroot}, {"mount", SYS_mount}, {"personality", SYS_personality},
    {"sethostname", SYS_sethostname}, {"clone3", SYS_clone3}, {"uname", SYS_uname},
    {"open_by_handle_at", SYS_open_by_handle_at}, {"userfaultfd", SYS_userfaultfd},
    {"settimeofday", SYS_settimeofday}, {"syslog", SYS_syslog}, {"iopl", SYS_iopl},
    {0, 0}};

static long lookup(const char *name) {
    for (int i = 0; table[i].name; i++)
        if (!strcmp(table[i].name, name)) return table[i].nr;
    fprintf(stderr, "sectool: unknown syscall %s\n", name);
    exit(2);
}

static int sys(int argc, char **argv) {
    unsigned long a[6] = {0};
    for (int i = 0; i < 6 && i + 1 < argc; i++) a[i] = strtoull(argv[i + 1], 0, 0);
    errno = 0;
    long r = syscall(lookup(argv[0]), a[0], a[1], a[2], a[3], a[4], a[5]);
    printf("ret=%ld errno=%d\n", r, r < 0 ? errno : 0);
    fflush(stdout);
    return 0;
}

static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "SIGSYS syscall=%d\n", info->si_syscall);
    write(1, buf, n);
    _exit(42);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "sys") && argc >= 3) return sys(argc - 2, argv + 2);
    if (!strcmp(cmd, "trap") && argc >= 3) {
        struct sigaction sa = {0};
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSYS, &sa, 0);
        return sys(argc - 2, argv + 2);
    }
    if (!strcmp(cmd, "fds")) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
            char path[64], target[4096];
            snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n < 0 ? 0 : n] = 0;
            printf("%s %s\n", e->d_name, target);
        }
        return 0;
    }
    if (!strcmp(cmd, "ids")) {
        printf("uid=%d euid=%d gid=%d egid=%d\n", getuid(), geteuid(), getgid(), getegid());
        return 0;
    }
    if (!strcmp(cmd, "openw") && argc >= 3) {
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0) printf("errno=%d %s\n", errno, strerror(errno));
        else printf("opened\n");
        return 0;
    }
    if (!strcmp(cmd, "cwd")) {
        char buf[4096];
        printf("%s\n", getcwd(buf, sizeof buf) ? buf : strerror(errno));
        return 0;
    }
    if (!strcmp(cmd, "watch-exe") && argc >= 5) {
        /* Find a process whose /proc/PID/exe is the file DEV:INO (the host's runtime binary),
           as a CVE-2019-5736 attacker would; print what it could do with it. Never writes. */
        unsigned long dev = strtoul(argv[2], 0, 0), ino = strtoul(argv[3], 0, 0);
        int seconds = atoi(argv[4]), self = getpid(), seen = 0;
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        printf("watching\n");
        fflush(stdout);
        for (;;) {
            DIR *d = opendir("/proc");
            struct dirent *e;
            while ((e = readdir(d))) {
                int pid = atoi(e->d_name);
                if (pid <= 0 || pid == self) continue;
                char path[64];
                snprintf(path, sizeof path, "/proc/%d/exe", pid);
                int fd = open(path, O_RDONLY);
                if (fd < 0) continue;
                struct stat st;
                struct statvfs vfs;
                if (!fstat(fd, &st) && st.st_dev == dev && st.st_ino == ino) {
                    fstatvfs(fd, &vfs);
                    printf("FOUND pid=%d readonly-mount=%d\n", pid, !!(vfs.f_flag & ST_RDONLY));
                    return 0;
                }
                close(fd);
                seen++;
            }
            closedir(d);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > seconds) break;
        }
        printf("NOT FOUND (%d exe links opened)\n", seen);
        return 0;
    }
    if (!strcmp(cmd, "i386-getpid")) {
        long r;
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
        printf("ret=%ld\n", r);
        return 0;
    }
    return 2;
}
"""

_built: dict[str, Path] = {}


def sectool() -> Path:
    """The compiled helper (once per session); skips the test when gcc cannot build it."""
    if "path" in _built:
        return _built["path"]
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the static test helper")
    directory = Path(tempfile.mkdtemp(prefix="ocirt-sectool-"))
    atexit.register(shutil.rmtree, directory, True)
    source = directory / "sectool.c"
    source.write_text(SOURCE)
    binary = directory / "sectool"
    build = subprocess.run(["gcc", "-static", "-O1", "-o", str(binary), str(source)],
                           capture_output=True, text=True, check=False)
    if build.returncode != 0:
        pytest.skip(f"cannot build the static helper: {build.stderr.strip()[-500:]}")
    _built["path"] = binary
    return binary


def with_sectool(rootfs: Path, name: str = "sectool", mode: int = 0o755) -> Path:
    """Copy the helper into ``rootfs`` as /NAME; returns its host path."""
    target = rootfs / name
    shutil.copy2(sectool(), target)
    target.chmod(mode)
    return target


def parse_result(text: str) -> dict[str, int]:
    """``ret=R errno=E`` -> {"ret": R, "errno": E} (the last such line)."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("ret="):
            result = {k: int(v) for k, v in (part.split("=") for part in line.split())}
    return result


# Capability numbers (linux/capability.h): the tests compute masks without the runtime's code.
CAPS = {name: number for number, name in enumerate([
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"])}


def cap_mask(names: list[str]) -> int:
    value = 0
    for name in names:
        value |= 1 << CAPS[name]
    return value


def status_fields(text: str) -> dict[str, str]:
    """``/proc/self/status`` text -> its fields."""
    result = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            result[key.strip()] = value.strip()
    return result


def host_bounding() -> int:
    return int(status_fields(Path("/proc/self/status").read_text())["CapBnd"], 16)


def seccomp_profile(default: str = "SCMP_ACT_ALLOW", rules: list[dict[str, Any]] | None = None,
                    **extra: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {"defaultAction": default, "syscalls": rules or []}
    profile.update(extra)
    return profile


# --- a seccomp agent for SCMP_ACT_NOTIFY ------------------------------------------------------

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
_NOTIF = struct.Struct("=QIIiIQ6Q")  # id pid flags | nr arch instruction_pointer args[6]
_RESP = struct.Struct("=QqiI")  # id val error flags


class NotifyAgent:
    """Listens on ``path``; takes one container process state with its seccompFd, then
    answers every notification with ``reply(nr) -> (val, error)``."""

    def __init__(self, path: Path, reply: Any) -> None:
        self.path, self.reply = path, reply
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.state: dict[str, Any] | None = None
        self.fd_count = 0
        self.handled: list[int] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import select

        try:
            self.server.settimeout(15)
            conn, _ = self.server.accept()
            with conn:
                chunks: list[bytes] = []
                fds: list[int] = []
                while True:  # until the JSON is whole (some runtimes close the socket later)
                    data, got, _, _ = socket.recv_fds(conn, 65536, 4)
                    fds += got
                    chunks.append(data)
                    try:
                        self.state = json.loads(b"".join(chunks))
                        break
                    except ValueError:
                        if not data:
                            raise
            self.fd_count = len(fds)
            notify_fd = fds[0]
            while not self.stop.is_set():
                ready, _, _ = select.select([notify_fd], [], [], 0.1)
                if not ready:
                    continue
                buf = bytearray(_NOTIF.size)
                try:
                    fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
                except OSError:
                    break  # the filter's last task is gone
                fields = _NOTIF.unpack(buf)
                notif_id, nr = fields[0], fields[3]
                self.handled.append(nr)
                val, error = self.reply(nr)
                resp = bytearray(_RESP.pack(notif_id, val, error, 0))
                try:
                    fcntl.ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_SEND, resp, True)
                except OSError as err:
                    self.errors.append(f"NOTIF_SEND: {err}")
            for fd in fds:
                os.close(fd)
        except Exception as err:  # reported by the test
            self.errors.append(f"{type(err).__name__}: {err}")

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        self.thread.join(5)


def libc_syscall_number(name: str) -> int:
    """x86_64 numbers of the syscalls the notify test intercepts."""
    return {"getppid": 110, "uname": 63}[name]


def run_with_fds(argv: list[str], env: dict[str, str], fds: list[int], timeout: float = 15
                 ) -> tuple[int, str, str]:
    """Run the runtime with ``fds`` open (inheritable) in it, as a caller that leaks them."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                              pass_fds=fds, timeout=timeout, check=False)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))


def modules_disabled() -> bool:
    try:
        return Path("/proc/sys/kernel/modules_disabled").read_text().strip() == "1"
    except OSError:
        return False


__all__ = ["CAPS", "NotifyAgent", "cap_mask", "host_bounding", "libc_syscall_number",
           "modules_disabled", "parse_result", "run_with_fds", "seccomp_profile", "sectool",
           "status_fields", "with_sectool"]
