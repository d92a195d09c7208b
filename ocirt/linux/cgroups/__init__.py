"""cgroups: the container's cgroup, through one of three drivers behind one interface.

- ``discovery``: the host's hierarchies (pure v2, pure v1 or hybrid) and where we sit in them;
- ``files``: reading and writing cgroup files, and ``CgroupError``;
- ``driver``: the interface (``CgroupDriver``) and ``load`` for a saved container;
- ``fs``: the cgroupfs driver (``Manager``), with ``v1``/``v2`` saying what each version's
  files are (``ops`` the operations, ``devices``/``bpf`` the device filter, ``stats``);
- ``systemd``: a transient scope made by systemd over D-Bus (``dbus``), then written as
  cgroupfs writes v2;
- ``none``: no cgroup (rootless without delegation: ``none.choose``).

``select`` picks the driver for a new container. Start-up cost matters: this package imports
only what ``create`` needs anyway; the version drivers, statistics, the BPF device filter and
the systemd driver (with its D-Bus client) are imported when used.
"""

from __future__ import annotations

from ocirt.linux.cgroups.discovery import FREEZER, V2_CORE, V2_NAMES, Hierarchy, discover
from ocirt.linux.cgroups.driver import CgroupDriver, load
from ocirt.linux.cgroups.files import CgroupError, read_file, read_text, write_file
from ocirt.linux.cgroups.fs import Manager, resolve_path

__all__ = ["FREEZER", "V2_CORE", "V2_NAMES", "CgroupDriver", "CgroupError", "Hierarchy",
           "Manager", "discover", "load", "read_file", "read_text",
           "resolve_path", "select", "write_file"]


def select(cgroups_path: str | None, container_id: str, driver: str = "cgroupfs",
           annotations: dict[str, str] | None = None) -> CgroupDriver:
    """The driver for a new container: ``cgroupfs`` (the default) or ``systemd``
    (``--systemd-cgroup``; ``annotations`` may hold org.systemd.property.*). A rootless
    runtime then asks ``none.choose`` whether it may write the cgroupfs cgroup at all
    (plan.build)."""
    if driver == "systemd":
        from ocirt.linux.cgroups.systemd import SystemdManager

        return SystemdManager.for_container(cgroups_path, container_id, annotations)
    return Manager(discover(), resolve_path(cgroups_path, container_id))

