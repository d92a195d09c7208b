"""``posixpath``'s ``join``, ``normpath`` and ``abspath``, without importing ``os``.

``posixpath`` imports ``os``, and ``os`` imports ``_collections_abc``: ~1 ms of every ``state``,
the command managers call most, which otherwise needs nothing of ``os`` (see
docs/architecture.md "Speed"). Same results as ``os.path`` for ``str`` paths
(tests/unit/test_paths.py compares them).
"""

from __future__ import annotations

import posix


def join(path: str, *names: str) -> str:
    for name in names:
        if name.startswith("/") or not path:
            path = name
        elif path.endswith("/"):
            path += name
        else:
            path += "/" + name
    return path


def normpath(path: str) -> str:
    if not path:
        return "."
    # POSIX keeps two leading slashes (implementation-defined), and folds three or more to one
    slashes = 2 if path.startswith("//") and not path.startswith("///") else int(
        path.startswith("/"))
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not slashes and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * slashes + "/".join(parts) or "."


def abspath(path: str) -> str:
    if not path.startswith("/"):
        path = join(posix.getcwd(), path)
    return normpath(path)
