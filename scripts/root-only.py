"""Check that only root can change what is read from some paths (used by scripts/setup.sh).

    python3 -IS scripts/root-only.py PATH...

For each path, the path itself (symlinks resolved), everything below it when it is a directory,
and each of its parents must belong to root and be writable by no one else: no other owner, no
group write for a group other than root's, no write for others. A parent may be a sticky
directory such as /tmp (nobody else can rename or remove what root made in it); the path and
what is below it may not. A path that does not exist is judged by its parents (``sys.path``
lists a python311.zip that need not exist).

Prints the first problems on one line and exits 1 when there is one, 0 otherwise.
"""

from __future__ import annotations

import os
import stat
import sys


def why_unsafe(path: str, st: os.stat_result, sticky_ok: bool) -> str | None:
    """Why a user other than root could change ``path`` (with ``st``), or None."""
    sticky = sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_uid != 0:
        return f"{path} belongs to uid {st.st_uid}"
    if st.st_mode & 0o002 and not sticky and not stat.S_ISLNK(st.st_mode):
        return f"{path} is writable by every user"
    if st.st_mode & 0o020 and st.st_gid != 0 and not sticky and not stat.S_ISLNK(st.st_mode):
        return f"{path} is writable by group {st.st_gid}"
    return None


def problems_of(path: str) -> list[str]:
    """Everything that lets a user other than root change what is read from ``path``."""
    real = os.path.realpath(path)
    found = []
    if os.path.lexists(real):
        for top, dirs, files in os.walk(real):
            for name in (top, *(os.path.join(top, n) for n in (*dirs, *files))):
                why = why_unsafe(name, os.lstat(name), sticky_ok=False)
                if why:
                    found.append(why)
            if len(found) > 3:
                break
        if not os.path.isdir(real):
            why = why_unsafe(real, os.lstat(real), sticky_ok=False)
            if why:
                found.append(why)
    parent = os.path.dirname(real)
    while True:
        if os.path.lexists(parent):
            why = why_unsafe(parent, os.stat(parent), sticky_ok=True)
            if why:
                found.append(why)
        if parent == "/":
            return found
        parent = os.path.dirname(parent)


def main(paths: list[str]) -> int:
    problems = list(dict.fromkeys(why for path in paths for why in problems_of(path)))
    print("; ".join(problems[:3]) + (" (and more)" if problems[3:] else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
