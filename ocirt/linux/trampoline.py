"""The last exec goes through a sealed memfd, so the container never reaches the runtime's binary.

CVE-2019-5736: whatever binary a process is when it execs the container's program is what that
program's ``#!/proc/self/exe`` (or an ELF interpreter of /proc/self/exe) runs, and the container
can then open it through /proc/PID/exe. ocirt's init is the host's Python interpreter, so the
container could hold a writable fd to /usr/bin/python3.X. runc answers by re-executing itself
from a sealed memfd copy; a Python runtime cannot afford that (a new interpreter start).

Instead init execs a 235-byte static program built here (x86_64 machine code, no libc) from a
sealed memfd: it only calls ``execve(argv[1], &argv[2], envp)`` (and on failure writes one line
and exits 127). The program then starts from a process whose /proc/self/exe is that memfd, which
cannot be written (F_SEAL_WRITE) and holds nothing of the host. Capabilities, no_new_privs,
seccomp and the rest carry over the extra execve unchanged (root: bounding | inheritable again;
others: the ambient set again); a seccomp profile sees one more execve.

The trampoline is reached as /proc/self/fd/N with plain execve (never execveat, which a profile
may kill). Without /proc in the container (then /proc/self/exe cannot be named either) or on
another machine, init execs the program directly.
"""

from __future__ import annotations

import _struct as struct  # struct.py only re-exports it, and costs a sys.path search (~0.15 ms)
import fcntl
import os

_BASE = 0x400000
_MESSAGE = b"ocirt: exec of the container's program failed\n"
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")


def _x86_64_code(message_offset: int) -> bytes:
    """_start: if argc >= 3, execve(argv[1], &argv[2], envp); write(2, message); exit(127).

    (argc < 3 is the trampoline run as some program's interpreter through /proc/self/exe: it
    stops there rather than exec that program again and again.)
    """
    run = bytearray()
    run += bytes.fromhex("488b7c2410")  # mov rdi, [rsp+16]       argv[1]: the path
    run += bytes.fromhex("488d742418")  # lea rsi, [rsp+24]       &argv[2]: its argv
    run += bytes.fromhex("488b0424")  # mov rax, [rsp]            argc
    run += bytes.fromhex("488d54c410")  # lea rdx, [rsp+rax*8+16] envp
    run += bytes.fromhex("b83b000000")  # mov eax, 59             execve
    run += bytes.fromhex("0f05")  # syscall
    code = bytearray(bytes.fromhex("48833c2403"))  # cmp qword [rsp], 3
    code += bytes.fromhex("7c") + bytes([len(run)])  # jl fail
    code += run
    code += bytes.fromhex("bf02000000")  # fail: mov edi, 2
    lea_end = len(code) + 7
    code += bytes.fromhex("488d35") + struct.pack("<i", message_offset - lea_end)  # lea rsi
    code += bytes.fromhex("ba") + struct.pack("<I", len(_MESSAGE))  # mov edx, len
    code += bytes.fromhex("b801000000")  # mov eax, 1              write
    code += bytes.fromhex("0f05")  # syscall
    code += bytes.fromhex("bf7f000000")  # mov edi, 127
    code += bytes.fromhex("b83c000000")  # mov eax, 60             exit
    code += bytes.fromhex("0f05")  # syscall
    return bytes(code)


def program(machine: str | None = None) -> bytes | None:
    """The trampoline as a static ELF executable, or None on a machine it is not written for."""
    if (machine or os.uname().machine) != "x86_64":
        return None
    headers = _ELF_HEADER.size + _PROGRAM_HEADER.size
    code_length = len(_x86_64_code(0))
    code = _x86_64_code(code_length)  # the message follows the code
    size = headers + len(code) + len(_MESSAGE)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, SysV
    elf = _ELF_HEADER.pack(ident, 2, 62, 1, _BASE + headers, _ELF_HEADER.size, 0, 0,
                           _ELF_HEADER.size, _PROGRAM_HEADER.size, 1, 0, 0, 0)
    phdr = _PROGRAM_HEADER.pack(1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, R+X
    return elf + phdr + code + _MESSAGE


def prepare() -> int:
    """A sealed, close-on-exec memfd holding the trampoline; -1 where there is none."""
    code = program()
    if code is None:
        return -1
    fd = -1
    try:
        try:
            fd = os.memfd_create("ocirt-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | 0x10)
        except OSError:  # before Linux 6.3 there is no MFD_EXEC (0x10)
            fd = os.memfd_create("ocirt-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.write(fd, code)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        return fd
    except OSError:
        if fd >= 0:
            os.close(fd)
        return -1


def execve(fd: int, path: str, args: list[str], env: dict[str, str]) -> None:
    """Exec ``path`` through the trampoline in ``fd``, or directly when that cannot be done.

    Raises OSError only from the direct execve (the program's own error).
    """
    if fd >= 0:
        try:
            os.execve(f"/proc/self/fd/{fd}", ["ocirt-exec", path, *args], env)
        except OSError:
            pass  # no /proc here, or memfds may not be executed: the direct way
    os.execve(path, args, env)
