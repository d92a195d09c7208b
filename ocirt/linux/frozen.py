"""Whether a container's cgroup is frozen, read from its saved cgroup state (``Manager.to_state``).

Apart from ``ocirt.linux.cgroups`` so that ``state``, the command managers call most, tells a
paused container without importing the cgroup drivers (~0.5 ms).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def frozen_state(saved: dict[str, Any]) -> bool:
    """Is the container whose saved cgroup state this is frozen? (for ``state``: paused)"""
    dirs: dict[str, str] = saved.get("dirs") or {}
    for name, directory in dirs.items():
        if "freezer" in name.split(","):
            return _read(f"{directory}/freezer.state").strip() == "FROZEN"
    if "unified" in dirs:
        return _read(f"{dirs['unified']}/cgroup.freeze").strip() == "1"
    return False


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""
