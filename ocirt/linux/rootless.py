"""Rootless: where a rootless runtime keeps its state.

Whether the runtime is rootless at all is ``ocirt.identity``'s (every layer asks it, the error
messages included). A rootless runtime keeps its state in ``$XDG_RUNTIME_DIR/ocirt`` unless
``--root`` says otherwise.

Cheap on purpose: every command asks for the default root, so this reads at most one small
/proc file and imports nothing but ``ocirt.identity``.
"""

from __future__ import annotations

import os

from ocirt.identity import in_user_namespace

ROOT_STATE = "/run/ocirt"


def default_root() -> str:
    """The state root when ``--root`` is not given: runc's ``XDG_RUNTIME_DIR`` rule."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir and (os.geteuid() != 0 or (in_user_namespace()
                                             and os.environ.get("USER") != "root")):
        return os.path.join(runtime_dir, "ocirt")
    return ROOT_STATE
