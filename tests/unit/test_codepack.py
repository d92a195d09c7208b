"""The code pack the launcher imports ocirt's modules from (ocirt/codepack.py): what it serves
is exactly the installed modules, with their real file names, and a module whose source changed
after the pack was made is imported as usual."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testkit import build_pack, install_copy

# Run in a fresh interpreter, as the launcher does: install the pack, import, report.
PROBE = """
import sys
site = sys.argv[1]
sys.path[:0] = [site]
from ocirt import codepack

codepack.install(site + "/ocirt")
import ocirt.container.state as state
import ocirt.config.validate as validate
from ocirt.cli import fastparse

for module in (state, validate, fastparse):
    print(module.__name__, type(module.__loader__).__name__, module.__file__, module.__cached__)
print("validate._HERE", validate._HERE)
print("state.MAX_ID_LENGTH", state.MAX_ID_LENGTH)
print("annotation", repr(state.ContainerState.__init__.__annotations__["annotations"]))
print("__future__", "__future__" in sys.modules)
print("docstrings", *(doc is None for doc in (state.__doc__, state.ContainerState.__doc__,
                                              fastparse.parse.__doc__)))
"""


def probe(site: Path) -> dict[str, list[str]]:
    result = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, str(site)],
                            capture_output=True, text=True, check=True, cwd="/")
    return {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}


def test_modules_come_from_the_pack_with_their_real_files(tmp_path: Path) -> None:
    site = install_copy(tmp_path)
    pack = build_pack(site)
    assert pack == site / "ocirt" / "codepack.bin"
    seen = probe(site)
    state = seen["ocirt.container.state"]
    assert state[0] == "PackFinder"
    assert state[1] == str(site / "ocirt" / "container" / "state.py")
    assert state[2] == str(site / "ocirt" / "container" / "__pycache__"
                           / f"state.{sys.implementation.cache_tag}.pyc")
    assert seen["ocirt.cli.fastparse"][0] == "PackFinder"
    # data files beside a module are found from its real __file__
    assert seen["validate._HERE"] == [str(site / "ocirt" / "config")]
    assert seen["state.MAX_ID_LENGTH"] == ["249"]
    # `from __future__ import annotations` applied as the compiler flag, never executed
    assert seen["annotation"] == ["'dict[str,", "str]", "|", "None'"]
    assert seen["__future__"] == ["False"]
    # no docstrings in the pack's code (nothing reads them): less to unmarshal
    assert seen["docstrings"] == ["True", "True", "True"]


def test_a_changed_source_is_imported_as_usual(tmp_path: Path) -> None:
    site = install_copy(tmp_path)
    build_pack(site)
    source = site / "ocirt" / "container" / "state.py"
    text = source.read_text().replace("MAX_ID_LENGTH = 249", "MAX_ID_LENGTH = 248")
    source.write_text(text)
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    seen = probe(site)
    assert seen["ocirt.container.state"][0] == "SourceFileLoader"
    assert seen["state.MAX_ID_LENGTH"] == ["248"]
    assert seen["docstrings"][0] == "False"  # the usual import keeps them
    assert seen["ocirt.cli.fastparse"][0] == "PackFinder"  # the others still from the pack


def test_no_pack_or_a_foreign_one_changes_nothing(tmp_path: Path) -> None:
    site = install_copy(tmp_path)
    assert probe(site)["ocirt.container.state"][0] == "SourceFileLoader"
    (site / "ocirt" / "codepack.bin").write_bytes(b"ocirt-codepack-1\n\x00\x00\x00\x00garbage")
    assert probe(site)["ocirt.container.state"][0] == "SourceFileLoader"


def state_loader_after(site: Path, meddle: str) -> list[str]:
    """In a fresh interpreter: install the pack, run ``meddle`` (Python, with ``os``,
    ``codepack`` and ``site`` at hand), then import ocirt.container.state; its loader's class
    name and MAX_ID_LENGTH."""
    code = ("import os, sys\n"
            "site = sys.argv[1]\n"
            "sys.path[:0] = [site]\n"
            "from ocirt import codepack\n"
            "codepack.install(site + '/ocirt')\n"
            f"{meddle}"
            "import ocirt.container.state as state\n"
            "print(type(state.__loader__).__name__, state.MAX_ID_LENGTH)\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(site)],
                            capture_output=True, text=True, check=True, cwd="/")
    return result.stdout.split()


def test_another_file_at_the_pack_path_is_never_read(tmp_path: Path) -> None:
    """A module is read from the pack the launcher opened, never from another file put at its
    path later (a new pack set-up wrote, or one a container's root holds after pivot_root)."""
    site = install_copy(tmp_path)
    pack = build_pack(site)
    seen = state_loader_after(site, (
        "pack = site + '/ocirt/codepack.bin'\n"
        "data = open(pack, 'rb').read()\n"
        "with open(pack + '.new', 'wb') as out:\n"
        "    out.write(data[:len(data) // 2] + b'garbage' * 100000)\n"
        "os.replace(pack + '.new', pack)\n"))
    assert seen == ["PackFinder", "249"]
    assert pack.exists()


def test_another_file_behind_the_packs_descriptor_is_refused(tmp_path: Path) -> None:
    """Init closes every fd it does not keep, the pack's too; a file that gets the same number
    later (one of the container's, say) is never read as the pack: the usual import."""
    site = install_copy(tmp_path)
    build_pack(site)
    seen = state_loader_after(site, (
        "finder = sys.meta_path[0]\n"
        "os.close(finder.fd)\n"
        "other = os.open(site + '/ocirt/container/state.py', os.O_RDONLY)\n"
        "assert other == finder.fd, (other, finder.fd)\n"))
    assert seen == ["SourceFileLoader", "249"]
