"""One file of ocirt's compiled modules, which the launcher imports from (``install``).

Importing a module the usual way costs ~60-100 us before its code even runs: importlib's path
finder looks for it in each ``sys.path`` entry, then the source loader stats the source, opens
the ``.pyc``, checks its header and reads it (~12 system calls and much Python). ``run`` imports
some 50 of ocirt's modules, ``state`` 9. Set-up (scripts/setup.sh) writes ``codepack.bin``
beside the installed package (``python -m ocirt.codepack DIR``): every module's code object,
marshalled, behind an index. The launcher then puts a finder first in ``sys.meta_path``, and
each ocirt module costs one ``stat`` of its source, one ``fstat`` and one
``pread`` of the pack and the unmarshalling.

Nothing changes but the time: a module is served from the pack only while its source file has
the size and modification time (ns) the pack recorded; otherwise (edited, reinstalled, a pack
from another Python) the usual import finds it. Modules keep their real ``__file__``,
``__path__`` and ``__cached__``, so data files beside them and tracebacks are as before.
Without a pack (a checkout, ``python -m ocirt``) nothing is installed. The pack is opened once
(close-on-exec) and read through that descriptor, each time only after ``fstat`` shows it is
still the file (device and inode) opened at start-up, else the usual import: never a file put
at the pack's path later (a new pack from set-up, or one inside a container's root after
pivot_root), nor another file that got the descriptor's number once init closed it.

Two more differences, not in behaviour: ``from __future__ import annotations`` is applied when
the pack is made (the compiler flag) rather than executed, so no command imports ``__future__``
(~0.15 ms), and the pack's code has no docstrings (``__doc__`` is None, as under ``-OO``, but
``assert`` stays): ~12 % less to read and unmarshal, ~0.3 ms of ``run``; nothing in ocirt reads
a docstring, and the usual import (a checkout, ``python -m ocirt``) keeps them. This module
does without the ``__future__`` import (its annotations are strings) for the same reason.
"""

import marshal
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any

PACK_NAME = "codepack.bin"
_MAGIC = b"ocirt-codepack-1\n"
# importlib's own (already loaded at start-up): the pack is for this Python's bytecode only
_BOOTSTRAP: "Any" = sys.modules["_frozen_importlib_external"]
_SPEC: "Any" = type(sys.__spec__)  # ModuleSpec, without importing importlib.machinery


class PackFinder:
    """A meta path finder (and loader) for the modules of one pack file."""

    def __init__(self, path: str, fd: int, identity: "tuple[int, int]",
                 index: "dict[str, Any]", base: int) -> None:
        self.path = path
        self.fd = fd  # the pack, open (close-on-exec) since start-up
        self.identity = identity  # its (st_dev, st_ino)
        # name -> (is_package, source, its mtime (ns), its size, its .pyc path, offset, length)
        self.index = index
        self.base = base  # where the code objects begin in the file

    def find_spec(self, name: str, path: "Sequence[str] | None" = None,
                  target: "ModuleType | None" = None) -> "Any":
        entry = self.index.get(name)
        if entry is None:
            return None
        is_package, origin, mtime_ns, size = entry[:4]
        try:
            st = posix.stat(origin)
            pack = posix.fstat(self.fd)
        except OSError:
            return None  # no such source, or the descriptor was closed: as usual
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            return None  # the source changed since the pack was made: the usual import
        if (pack.st_dev, pack.st_ino) != self.identity:
            return None  # the number now names another file (init closed ours): as usual
        spec = _SPEC(name, self, origin=origin, is_package=is_package)
        if is_package:
            spec.submodule_search_locations = [origin.rpartition("/")[0]]
        spec.has_location = True
        spec.cached = entry[4]
        return spec

    def create_module(self, spec: "Any") -> None:
        return None  # the default module object

    def exec_module(self, module: "ModuleType") -> None:
        # (find_spec has just checked the descriptor; nothing closes it in between)
        offset, length = self.index[module.__name__][5:]
        data = posix.pread(self.fd, length, self.base + offset)
        if len(data) != length:
            raise ImportError(f"{self.path}: truncated at {module.__name__}",
                              name=module.__name__)
        exec(marshal.loads(data), module.__dict__)


def read_pack(path: str) -> "PackFinder | None":
    """The finder for the pack at ``path``, which it keeps open; None if there is none or it
    is not for this Python (then ocirt imports as usual)."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = posix.fstat(fd)
        head = posix.read(fd, 16384)  # the index of ~80 modules is ~9 KB
        prefix = _MAGIC + _BOOTSTRAP.MAGIC_NUMBER
        if not head.startswith(prefix):
            raise ValueError(path)
        start = len(prefix) + 8
        end = start + int.from_bytes(head[len(prefix):start], "little")
        if end > len(head):
            head += posix.pread(fd, end - len(head), len(head))
        index = marshal.loads(head[start:end])
        if not isinstance(index, dict):
            raise ValueError(path)
    except (OSError, ValueError, EOFError, TypeError):
        posix.close(fd)
        return None
    return PackFinder(path, fd, (st.st_dev, st.st_ino), index, end)


def held_fds() -> "set[int]":
    """The descriptors of the packs installed: ocirt's own, never a caller's to pass on."""
    return {finder.fd for finder in sys.meta_path if isinstance(finder, PackFinder)}


def install(package_dir: str) -> None:
    """Import ocirt's modules from ``package_dir``'s pack, if it has a usable one. The finder
    goes first: it answers only for the pack's own names (one dict lookup for any other), so
    ocirt's modules skip the built-in and frozen importers' searches."""
    finder = read_pack(f"{package_dir}/{PACK_NAME}")
    if finder is not None:
        sys.meta_path.insert(0, finder)


def build(package_dir: str) -> str:
    """Write ``package_dir``'s pack (atomically) from the ``.py`` files under it, compiled as
    ``compileall`` does (``from __future__ import annotations`` as a flag: see above); the
    pack's path."""
    import __future__

    import ast
    import os

    root = os.path.dirname(os.path.abspath(package_dir))
    index: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for directory, subdirs, files in os.walk(os.path.abspath(package_dir)):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for file_name in sorted(files):
            if not file_name.endswith(".py"):
                continue
            source = os.path.join(directory, file_name)
            parts = os.path.relpath(source, root)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            with open(source, "rb") as handle:
                st = os.fstat(handle.fileno())
                tree = ast.parse(handle.read(), source)
            flags = 0
            for node in tree.body:
                if (isinstance(node, ast.ImportFrom) and node.module == "__future__"
                        and [alias.name for alias in node.names] == ["annotations"]):
                    tree.body.remove(node)
                    flags = __future__.annotations.compiler_flag
                    break
            _drop_docstrings(tree, ast)
            # as the launcher runs: no -O, no __future__ of this module's
            code = compile(tree, source, "exec", flags=flags, dont_inherit=True, optimize=0)
            blob = marshal.dumps(code)
            index[name] = (is_package, source, st.st_mtime_ns, st.st_size,
                           _BOOTSTRAP.cache_from_source(source), offset, len(blob))
            blobs.append(blob)
            offset += len(blob)
    head = marshal.dumps(index)
    pack = os.path.join(package_dir, PACK_NAME)
    tmp = f"{pack}.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        out.write(_MAGIC + _BOOTSTRAP.MAGIC_NUMBER + len(head).to_bytes(8, "little") + head)
        for blob in blobs:
            out.write(blob)
    os.replace(tmp, pack)
    return pack


def _drop_docstrings(tree: "Any", ast: "Any") -> None:
    """Remove the docstrings of the module and of every class and function in ``tree`` (a
    sole docstring becomes ``pass``), as ``-OO`` does but keeping ``assert``s."""
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
            continue
        first = node.body[0] if node.body else None
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            if len(node.body) == 1:
                node.body[0] = ast.copy_location(ast.Pass(), first)
            else:
                del node.body[0]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m ocirt.codepack PACKAGE_DIR (the installed ocirt directory)")
    print(build(sys.argv[1]))
