"""The shape of a state document: what ``ContainerState.from_json`` accepts.

A state file that is not what this runtime wrote (damaged on disk, truncated by hand, garbage)
is refused with the field that is wrong, never half-used: ``delete`` would otherwise walk, kill
and remove whatever a damaged document named. Imported only when a state file is read.
"""

from __future__ import annotations

from ocirt.paths import normpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The shape of each field: a type, (type,) for "a list of", {type: type} for "a dict of", a list
# of types for a fixed-length list, or None in a tuple for "or null".
_PAIR = [int, str]
SHAPES: dict[str, Any] = {
    "id": str, "bundle": str, "rootfs": str, "pid": int, "pid_start": int, "status": str,
    "created": str, "owner": str, "annotations": {str: str}, "cgroup": dict, "config": dict,
    "host_mounts": (_PAIR,), "creator": (int,), "mounts_before": ((_PAIR,), None),
}
_CGROUP_SHAPES: dict[str, Any] = {"path": str, "dirs": {str: str}, "created": (str,),
                                   "hierarchies": (dict,)}
_HIERARCHY_SHAPES: dict[str, Any] = {"version": int, "mountpoint": str,
                                      "controllers": (str,), "own_dir": str}


def kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), "?")


def check_shape(value: Any, shape: Any, where: str) -> None:
    if isinstance(shape, tuple) and None in shape:  # (shape, None): shape or null
        if value is not None:
            check_shape(value, shape[0], where)
        return
    if isinstance(shape, type):
        if type(value) is not shape:  # bool is not an int here
            raise ValueError(f"field {where!r} is {kind(value)}, not "
                             f"{kind(shape())}: {value!r:.40}")
    elif isinstance(shape, tuple):
        check_shape(value, list, where)
        for index, item in enumerate(value):
            check_shape(item, shape[0], f"{where}[{index}]")
    elif isinstance(shape, dict):
        check_shape(value, dict, where)
        value_type = next(iter(shape.values()))  # JSON keys are always strings
        for key, item in value.items():
            check_shape(item, value_type, f"{where}.{key}")
    else:  # a fixed-length list
        check_shape(value, list, where)
        if len(value) != len(shape):
            raise ValueError(f"field {where!r} has {len(value)} items, not {len(shape)}")
        for index, (item, item_shape) in enumerate(zip(value, shape, strict=True)):
            check_shape(item, item_shape, f"{where}[{index}]")


def check_cgroup(saved: dict[str, Any]) -> None:
    """What ``delete`` would walk and kill must be a cgroup below a recorded hierarchy's
    mount point (never a hierarchy's root, never a path with '..')."""
    for name, shape in _CGROUP_SHAPES.items():
        if name not in saved:
            raise ValueError(f"field 'cgroup.{name}' is missing")
        check_shape(saved[name], shape, f"cgroup.{name}")
    mountpoints = []
    for index, hierarchy in enumerate(saved["hierarchies"]):
        for name, shape in _HIERARCHY_SHAPES.items():
            if name not in hierarchy:
                raise ValueError(f"field 'cgroup.hierarchies[{index}].{name}' is missing")
            check_shape(hierarchy[name], shape, f"cgroup.hierarchies[{index}].{name}")
        mountpoints.append(hierarchy["mountpoint"].rstrip("/") + "/")
    for directory in [*saved["dirs"].values(), *saved["created"]]:
        if (normpath(directory) != directory
                or not any(directory.startswith(m) for m in mountpoints)):
            raise ValueError(f"cgroup directory {directory!r} is not below a cgroup "
                             "hierarchy this state records")
