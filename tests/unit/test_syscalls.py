"""The binding layer: the one place that loads libraries and makes foreign calls, its table of
system call numbers per machine, and the one shape of a failed kernel call."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

from ocirt.errors import OcirtError, SyscallError
from ocirt.linux import syscalls as sc
from ocirt.linux.syscalls import libc, numbers

OCIRT = Path(__file__).resolve().parents[2] / "ocirt"
BINDING = OCIRT / "linux" / "syscalls"
# Modules through which Python code reaches foreign code.
FOREIGN_MODULES = ("ctypes", "_ctypes", "pyseccomp", "cffi", "seccomp")
LOADERS = ("CDLL", "PyDLL", "LoadLibrary", "find_library", "cdll", "pydll", "dlopen")

# The audit architecture tokens libseccomp takes (linux/audit.h AUDIT_ARCH_*).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7, "riscv64": 0xC00000F3,
              "ppc64le": 0xC0000015, "s390x": 0x80000016}


def _modules_outside_the_binding_layer() -> list[Path]:
    return [p for p in sorted(OCIRT.rglob("*.py")) if BINDING not in p.parents]


def test_no_module_outside_the_binding_layer_reaches_foreign_code() -> None:
    offences = []
    for path in _modules_outside_the_binding_layer():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, (ast.Name, ast.Attribute)):
                name = node.id if isinstance(node, ast.Name) else node.attr
                if name in LOADERS:
                    offences.append(f"{path.relative_to(OCIRT)}:{node.lineno}: {name}")
                continue
            else:
                continue
            for name in names:
                if name.split(".")[0] in FOREIGN_MODULES:
                    offences.append(f"{path.relative_to(OCIRT)}:{node.lineno}: import {name}")
    assert not offences, offences


def test_the_binding_layer_is_where_libraries_are_loaded() -> None:
    # (so the check above would notice if they moved out again)
    text = "".join(p.read_text() for p in BINDING.glob("*.py"))
    for library in ("CDLL(None", "libcap-ng.so.0", "libseccomp.so.2", "import pyseccomp"):
        assert library in text, library


def test_binding_modules_stay_small() -> None:
    for path in BINDING.glob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path


def _names_called_by_number() -> set[str]:
    """Every ``syscall("name", ...)`` in the binding layer, plus the ones looked up in NR."""
    found = set()
    for path in BINDING.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "syscall" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                found.add(node.args[0].value)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "NR" and isinstance(node.args[0], ast.Constant)):
                found.add(node.args[0].value)
    return found


def test_every_call_made_by_number_is_in_every_machines_table() -> None:
    used = _names_called_by_number()
    assert {"pivot_root", "seccomp", "bpf", "clone3", "openat2"} <= used
    assert {"x86_64", "aarch64"} <= set(numbers.TABLE)
    for machine, table in numbers.TABLE.items():
        assert used <= set(table), (machine, sorted(used - set(table)))


@pytest.mark.parametrize(("machine", "name", "number"), [
    ("x86_64", "pivot_root", 155), ("aarch64", "pivot_root", 41),
    ("x86_64", "seccomp", 317), ("aarch64", "seccomp", 277),
    ("x86_64", "bpf", 321), ("aarch64", "bpf", 280),
    ("x86_64", "keyctl", 250), ("aarch64", "keyctl", 219),
    ("x86_64", "clone3", 435), ("aarch64", "clone3", 435),
    ("x86_64", "mount_setattr", 442), ("aarch64", "mount_setattr", 442),
])
def test_known_numbers(machine: str, name: str, number: int) -> None:
    assert numbers.TABLE[machine][name] == number


@pytest.mark.parametrize("machine", sorted(numbers.TABLE))
def test_table_agrees_with_libseccomp(machine: str) -> None:
    from ocirt.linux.syscalls import seccomp

    try:
        seccomp.libseccomp_version()
    except OcirtError:
        pytest.skip("no libseccomp here")
    checked = 0
    for name, number in numbers.TABLE[machine].items():
        known = seccomp.resolve_name(name, AUDIT_ARCH[machine])
        if known < 0:
            continue  # a call newer than this libseccomp
        assert known == number, (machine, name)
        checked += 1
    assert checked >= 15


def test_this_machine_has_its_numbers() -> None:
    assert numbers.NR is numbers.TABLE[numbers.MACHINE] or numbers.MACHINE not in numbers.TABLE
    assert numbers.ALIASES["arm64"] == "aarch64"


def test_a_machine_without_numbers_gets_enosys_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libc, "NR", {})
    monkeypatch.setattr(libc, "MACHINE", "m68k")
    with pytest.raises(SyscallError) as info:
        sc.pivot_root("/new", "/new")
    assert info.value.errno == errno.ENOSYS
    assert str(info.value) == ("ocirt knows no number for pivot_root on m68k: "
                               "pivot_root: Function not implemented (ENOSYS)")


# --- one error shape --------------------------------------------------------------------------

def test_a_failed_call_names_itself_its_arguments_and_the_errno() -> None:
    with pytest.raises(SyscallError) as info:
        sc.setns(-1, sc.CLONE_NEWNET, "joining the network namespace")
    err = info.value
    assert str(err) == ("joining the network namespace: setns(-1, 0x40000000): "
                        "Bad file descriptor (EBADF)")
    assert err.errno == errno.EBADF and err.call == "setns(-1, 0x40000000)"
    assert isinstance(err, OcirtError) and isinstance(err, OSError)


def test_the_error_is_the_oserror_subclass_of_its_errno() -> None:
    err = SyscallError("openat2(3, 'x', 0x0, resolve=0x10)", errno.ENOENT)
    assert isinstance(err, FileNotFoundError) and isinstance(err, SyscallError)
    assert err.strerror == "No such file or directory"
    assert isinstance(SyscallError("kill(1, 0)", errno.EPERM), PermissionError)
    assert type(SyscallError("mount", errno.EINVAL)) is SyscallError
    assert str(SyscallError("mount", 9999)).endswith("(9999)")


def test_an_os_error_takes_the_same_shape() -> None:
    try:
        Path("/nonexistent-ocirt-dir/x").read_text()
    except OSError as raw:
        err = SyscallError.of("open('/nonexistent-ocirt-dir/x', O_RDONLY)", raw, "reading x")
    assert str(err) == ("reading x: open('/nonexistent-ocirt-dir/x', O_RDONLY): "
                        "No such file or directory (ENOENT)")


def _binding_calls() -> dict[str, set[str]]:
    """Each binding module (dotted name) and the calls the recording double swaps in it."""
    from ocirt.linux.syscalls import bpf, capng, mounts, seccomp, task

    return {"ocirt.linux.syscalls": set(mounts.CALLS + task.CALLS),
            "ocirt.linux.syscalls.capng": set(capng.CALLS),
            "ocirt.linux.syscalls.seccomp": set(seccomp.CALLS),
            "ocirt.linux.syscalls.bpf": set(bpf.CALLS)}


def test_bindings_are_looked_up_when_called() -> None:
    """Callers reach a binding through its module at call time (``sc.mount(...)``, also in a
    Step's lambda), never a reference kept from import or plan time (``from ... import mount``,
    ``partial(sc.mount, ...)``): the recording double could not see those calls."""
    bindings = _binding_calls()
    offences = []
    for path in _modules_outside_the_binding_layer():
        tree = ast.parse(path.read_text(), str(path))
        local: dict[str, set[str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    dotted = f"{node.module}.{alias.name}"
                    if dotted in bindings:
                        local[alias.asname or alias.name] = bindings[dotted]
                    elif node.module in bindings and alias.name in bindings[node.module]:
                        offences.append(f"{path.name}:{node.lineno}: imports {alias.name}")
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.attr in local.get(node.value.id, ()) and id(node) not in called):
                offences.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr} "
                                "kept, not called")
    assert not offences, offences


def test_errno_text_is_formatted_in_one_place() -> None:
    """A failed call is reported as ``SyscallError`` (or with ``errors.errno_text``), never by
    formatting ``err.strerror`` by hand (which drops the errno's name and the call)."""
    allowed = {
        "errors.py",  # the one shape
        "config/load.py",  # already names the errno, with the bundle's access hint
        "linux/cgroups/files.py",  # CgroupError: the file, the field and the errno name
        "linux/program.py",  # exec's errors, worded as runc's for managers to match
    }
    offences = []
    for path in _modules_outside_the_binding_layer():
        name = str(path.relative_to(OCIRT))
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "strerror":
                offences.append(f"{name}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "strerror"):
                offences.append(f"{name}:{node.lineno}: os.strerror")
    assert not offences, offences


@pytest.mark.parametrize(("path", "words"), [
    ("/nonexistent/ns/net", "open('/nonexistent/ns/net', O_RDONLY): No such file or directory "
                            "(ENOENT)"),
    ("/proc/self/ns/uts", "'/proc/self/ns/uts' is a uts namespace, not network"),
])
def test_a_namespace_to_join_is_a_config_problem_at_its_json_path(path: str, words: str) -> None:
    from ocirt.errors import ConfigError
    from ocirt.linux import namespaces

    plan = namespaces.plan_namespaces({"namespaces": [{"type": "pid"},
                                                      {"type": "network", "path": path}]})
    with pytest.raises(ConfigError) as info:
        namespaces.open_namespaces(plan)
    assert info.value.where == "$.linux.namespaces[1].path"
    assert words in str(info.value) and "\n" not in str(info.value)


def test_libraries_stay_lazy() -> None:
    """Importing the binding layer (and capabilities, seccomp) loads no library but libc:
    libcap-ng and libseccomp on first use, pyseccomp only to compile (a BPF cache miss)."""
    import subprocess
    import sys

    code = ("import sys\n"
            f"sys.path.insert(0, {str(OCIRT.parent)!r})\n"
            "import ocirt.linux.syscalls, ocirt.linux.syscalls.capng\n"
            "import ocirt.linux.syscalls.seccomp, ocirt.linux.syscalls.bpf\n"
            "import ocirt.linux.capabilities, ocirt.linux.seccomp\n"
            "maps = open('/proc/self/maps').read()\n"
            "print('libcap-ng' in maps, 'libseccomp' in maps, 'pyseccomp' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "False"]


def test_every_binding_is_listed_for_the_double() -> None:
    """Each public function of a binding module is in its ``CALLS``, so the double swaps it."""
    import inspect

    from ocirt.linux.syscalls import bpf, capng, mounts, seccomp, task

    for module in (mounts, task, capng, seccomp, bpf):
        functions = {name for name, value in vars(module).items()
                     if inspect.isfunction(value) and value.__module__ == module.__name__
                     and not name.startswith("_")}
        assert functions == set(module.CALLS), module.__name__


# --- ffi: the binding layer's C types, on _ctypes -----------------------------------------------

def test_ffi_types_are_made_as_ctypes_makes_its_own() -> None:
    import ctypes

    from ocirt.linux.syscalls import ffi

    for name in (n for n in ffi.__all__ if n.startswith("c_")):
        ours, theirs = getattr(ffi, name), getattr(ctypes, name)
        assert ours is not theirs, name  # never the same objects: the two must not mix
        assert (ours._type_, ffi.sizeof(ours), ctypes.alignment(ours)) \
            == (theirs._type_, ctypes.sizeof(theirs), ctypes.alignment(theirs)), name
    for use_errno in (False, True):
        assert (ffi.CDLL(None, use_errno=use_errno)._FuncPtr._flags_
                == ctypes.CDLL(None, use_errno=use_errno)._FuncPtr._flags_)
        assert (ffi.PyDLL(None, use_errno=use_errno)._FuncPtr._flags_
                == ctypes.PyDLL(None, use_errno=use_errno)._FuncPtr._flags_)
    assert ffi.PyDLL(None)._FuncPtr._flags_ == ctypes.pythonapi._FuncPtr._flags_
    assert ffi.CDLL(None)._FuncPtr._restype_._type_ == "i"
    for args in ((b"ab\0c",), (b"ab\0c", 4), (b"ab", 8), (5,)):
        assert ffi.create_string_buffer(*args).raw == ctypes.create_string_buffer(*args).raw
    with pytest.raises(TypeError):
        ffi.create_string_buffer("text")  # type: ignore[arg-type]


def test_ffi_calls_reach_libc_and_keep_errno() -> None:
    import os

    from ocirt.linux.syscalls import ffi

    libc = ffi.CDLL(None, use_errno=True)
    assert libc.getpid() == os.getpid()
    assert libc.close(-1) == -1 and ffi.get_errno() == errno.EBADF
    with pytest.raises(AttributeError):
        _ = libc.no_such_function_in_libc
