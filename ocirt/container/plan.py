"""The container plan: config.json turned into the steps that build the container.

Everything that can be known before a process is forked is decided here: which namespaces to
create or join, which cgroup files to write, the mounts, devices and pivot, the process's
identity and limits. A mistake in the config is reported now, before anything exists. The
same plan is printed by ``--explain`` and carried out by ``create``.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import os
import stat

from ocirt import log
from ocirt.container import phases
from ocirt.errors import ConfigError, SyscallError, UnsupportedError, access_hint
from ocirt.identity import running_rootless
from ocirt.linux import (
    affinity,
    cgroups,
    devices,
    mountopts,
    namespaces,
    netdevices,
    pivot,
    process_attrs,
    rootfs,
    sysctl,
)
from ocirt.linux import syscalls as sc
from ocirt.linux.namespaces import NamespacePlan
from ocirt.linux.plan import Note, Step
from ocirt.linux.process import ProcessSetup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.linux import idmap
    from ocirt.timings import Timings


class Options:
    """The command line's say in how a container is built."""

    def __init__(self, pid_file: str | None = None, no_pivot: bool = False,
                 no_new_keyring: bool = False, preserve_fds: int = 0,
                 console_socket: str | None = None, debug: bool = False,
                 timings: Timings | None = None, pidfd_socket: str | None = None,
                 cgroup_driver: str = "cgroupfs") -> None:
        self.pid_file, self.no_pivot, self.no_new_keyring = pid_file, no_pivot, no_new_keyring
        self.preserve_fds, self.console_socket, self.debug = preserve_fds, console_socket, debug
        self.timings = timings  # --timings: each process's phases (None: not measured)
        self.pidfd_socket = pidfd_socket  # gets init's pidfd (ocirt.linux.pidfd)
        self.cgroup_driver = cgroup_driver  # cgroupfs, systemd (--systemd-cgroup) or none


class ContainerPlan:
    """Everything ``create`` will do, as data: built by ``build``, run by ``create``."""

    def __init__(self, container_id: str, bundle: str, rootfs: str, config: dict[str, Any],
                 options: Options, namespaces: NamespacePlan, cgroup: cgroups.CgroupDriver,
                 cgroup_steps: list[Step | Note], mount_steps: list[Step | Note],
                 root_steps: list[Step | Note],
                 process: ProcessSetup | None, oom_score_adj: int | None,
                 net_devices: list[netdevices.NetDevice] | None = None,
                 idmapped: list[idmap.IdmappedMount] | None = None) -> None:
        self.container_id, self.bundle, self.rootfs = container_id, bundle, rootfs
        self.config, self.options, self.namespaces = config, options, namespaces
        self.cgroup, self.cgroup_steps = cgroup, cgroup_steps
        self.mount_steps = mount_steps  # in the container's mount namespace, before pivot_root
        self.root_steps = root_steps  # pivot_root and what follows it
        # None: the config has no process (config.md: OPTIONAL, REQUIRED when start is called)
        self.process, self.oom_score_adj = process, oom_score_adj
        self.net_devices = net_devices or []  # linux.netDevices: moved by create, set up by init
        self.idmapped = idmapped or []  # detached idmapped mounts: the runtime's, before it forks
        self.terminal = bool((config.get("process") or {}).get("terminal"))
        self.console_size: dict[str, int] | None = (config.get("process") or {}).get(
            "consoleSize")
        # The connected console socket (create sets it just before forking init).
        self.console_sock: socket.socket | None = None
        # Decided once, for the runtime and its children alike (see ocirt.container.protocol):
        # the id maps are written by a runtime without root through newuidmap, and the
        # runtime runs the prestart and createRuntime hooks while init waits.
        self.unprivileged = os.geteuid() != 0
        self.runtime_hooks = bool(_hooks_of(config, "prestart")
                                  or _hooks_of(config, "createRuntime"))

    @property
    def direct(self) -> bool:
        """Whether the runtime clones init itself, straight into its new namespaces (one
        clone3; no stage-1). Only a stage-1, a process in the new namespaces before init
        exists, can do what these need, so each keeps it: a new user namespace (the runtime
        writes its id maps between unshare(CLONE_NEWUSER) and the fork), a namespace joined by
        path (setns precedes the fork of the pid namespace's first member), a new time
        namespace (its clock offsets are written before init enters it), network devices
        (moved into the new network namespace before init is forked), a seccomp notify
        listener (stage-1 connects it on the host), and a cgroup driver that must place the
        child before it goes on (systemd: the scope is started with the child's pid, and
        stage-1 waits for "go" after that; init cloned directly would run unplaced, and root
        its cgroup namespace outside the scope)."""
        ns = self.namespaces
        seccomp = self.process.seccomp if self.process is not None else None
        return not (ns.new_user or ns.join or "time" in ns.create or self.net_devices
                    or (seccomp is not None and seccomp.notify)
                    or self.cgroup.waits_for_adopt())

    def explain(self) -> str:
        """Every step of every phase, in the order ``create`` and its children run them."""
        return phases.explain(self)


def _hooks_of(config: dict[str, Any], kind: str) -> bool:
    return bool((config.get("hooks") or {}).get(kind))


# Fields ocirt cannot honour: the spec says a runtime MUST error rather than ignore them.
UNSUPPORTED = (
    (("process", "selinuxLabel"), "SELinux labels are not supported by ocirt"),
    (("linux", "mountLabel"), "SELinux mount labels are not supported by ocirt"),
    (("linux", "intelRdt"), "Intel RDT is not supported by ocirt"),
)


def refuse_unsupported(config: dict[str, Any]) -> None:
    selinux_on = os.path.exists("/sys/fs/selinux/enforce")
    for (section, key), why in UNSUPPORTED:
        if (config.get(section) or {}).get(key):
            if key in ("mountLabel", "selinuxLabel") and not selinux_on:
                # A label means nothing where SELinux is off (runc and crun skip it too):
                # said out loud, not silently ignored.
                log.current.warning(f"$.{section}.{key}: SELinux is not enabled on this host: "
                                    "the label is not applied")
                continue
            raise UnsupportedError(f"$.{section}.{key}: {why}")


def _check_shared_mount_namespace(ns: NamespacePlan, linux: dict[str, Any]) -> None:
    """What a container that inherits the runtime's mount namespace cannot have."""
    if ns.has("user"):
        raise ConfigError("$.linux.namespaces", "a user namespace needs a mount namespace too: "
                          "from a new user namespace the runtime's mounts cannot be changed")
    if linux.get("rootfsPropagation"):
        raise ConfigError("$.linux.rootfsPropagation", "needs a mount namespace: without one "
                          "it would change the propagation of the runtime's own mounts")


def _sysfs_as_bind(mount: dict[str, Any]) -> dict[str, Any]:
    """sysfs can only be mounted by the owner of the network namespace: a container in a user
    namespace without a network namespace of its own (or any rootless one) gets the host's
    /sys bound instead, with the mount's flags, as runc does rootless."""
    kept = [o for o in mount.get("options", []) if o in _SYSFS_KEPT]
    return {"destination": mount["destination"], "type": "bind", "source": "/sys",
            "options": ["rbind", *kept]}


_SYSFS_KEPT = frozenset({"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                         "relatime", "norelatime", "noatime", "strictatime", "nodiratime"})


def build(container_id: str, bundle: str, config: dict[str, Any], options: Options
          ) -> ContainerPlan:
    refuse_unsupported(config)
    linux: dict[str, Any] = config.get("linux") or {}
    process: dict[str, Any] | None = config.get("process")
    root = config.get("root") or {}
    if "path" not in root:
        raise ConfigError("$.root.path", "is required on Linux")
    rootfs_path = os.path.join(bundle, root["path"])
    try:
        is_dir = stat.S_ISDIR(os.stat(rootfs_path).st_mode)
    except OSError as err:
        raise ConfigError("$.root.path", str(SyscallError.of(
            f"stat({rootfs_path!r})", err, "the rootfs",
            access_hint(err, "a rootfs").removeprefix(": ")))) from None
    if not is_dir:
        raise ConfigError("$.root.path", f"rootfs {rootfs_path!r} is not a directory")

    ns = namespaces.plan_namespaces(linux)
    own_mount_ns = ns.has("mount")
    if not own_mount_ns:
        _check_shared_mount_namespace(ns, linux)
    for key, kind in (("hostname", "uts"), ("domainname", "uts")):
        if config.get(key) and not ns.has("uts"):
            raise ConfigError(f"$.{key}", f"setting the {key} needs a {kind} namespace (a new "
                              "one, or one joined by path)")

    net_devices = netdevices.plan(linux, ns.has("network"))
    rootless = running_rootless()
    manager = cgroups.select(linux.get("cgroupsPath"), container_id, options.cgroup_driver,
                             config.get("annotations") or {})
    if rootless and manager.kind == "cgroupfs":  # no cgroup the user may write: none
        from ocirt.linux.cgroups import none  # (runc's rule; docs/rootless.md)

        assert isinstance(manager, cgroups.Manager)
        manager = none.choose(manager, rootless, linux.get("resources"))
    cgroup_steps = manager.steps(linux.get("resources") or {}, linux.get("devices") or [])

    ctx = rootfs.RootContext(os.path.realpath(rootfs_path))
    if own_mount_ns:
        if options.no_pivot and pivot.root_propagation_is_private(
                linux.get("rootfsPropagation")):
            raise ConfigError("$.linux.rootfsPropagation", "[r]private is not safe with "
                              "--no-pivot (as runc refuses it)")
        mount_steps: list[Step | Note] = list(pivot.prepare_steps(
            ctx, linux.get("rootfsPropagation")))
    else:
        mount_steps = list(pivot.shared_namespace_steps(ctx, bool(root.get("readonly"))))

    def cgroup_mount(ctx: rootfs.RootContext, mount: dict[str, Any],
                     parsed: mountopts.MountOptions) -> list[Step]:
        return manager.mount_steps(ctx, mount, parsed.flags)

    mounts = config.get("mounts", [])
    if rootless or ns.has("user"):
        mounts = [_sysfs_as_bind(m) if m.get("type") == "sysfs"
                  and "network" not in ns.create else m for m in mounts]
    idmapped = []  # prepared by the runtime before it forks
    for index, mount in enumerate(mounts):
        if rootfs.is_idmapped(mount):
            mapped, steps = rootfs.idmapped_mount_steps(ctx, mount, index, bundle, linux,
                                                        ns.has("user"))
            idmapped.append(mapped)
            mount_steps += steps
        else:
            mount_steps += rootfs.mount_steps(ctx, mount, index, bundle, cgroup_mount)
    has_devpts = any(m.get("destination") == "/dev/pts" for m in mounts)
    mount_steps += devices.device_steps(ctx, devices.devices_from_config(linux),
                                        bind_from_host=ns.has("user") or rootless,
                                        has_devpts=has_devpts)

    setup = None
    if process is not None:
        affinity.exec_masks(process)  # for exec; a mistake is the config's, found now
        timings = options.timings if linux.get("seccomp") is not None else None
        if timings is not None:
            timings.lap("plan")
        setup = ProcessSetup(process, options.preserve_fds, seccomp=linux.get("seccomp"))
        if timings is not None:
            timings.lap("seccomp filter (compiled, or read from the cache)")
        cwd = setup.cwd
        mount_steps.append(Step(f"mkdir -p {cwd} (process.cwd, inside the rootfs)",
                                lambda: os.close(ctx.target(cwd, "dir"))))

    root_steps: list[Step | Note] = list(pivot.pivot_steps(ctx, options.no_pivot,
                                                           own_mount_ns))
    # sysctls before readonlyPaths, which usually include /proc/sys (as runc orders them)
    root_steps += sysctl.steps(linux.get("sysctl") or {}, ns)
    root_steps += pivot.finish_steps(bool(root.get("readonly")), linux.get("maskedPaths", []),
                                     linux.get("readonlyPaths", []),
                                     linux.get("rootfsPropagation"))
    root_steps += process_attrs.personality_steps(linux)
    root_steps += process_attrs.memory_policy_steps(linux)
    if config.get("hostname") is not None:
        hostname = config["hostname"]
        root_steps.append(Step(f"sethostname {hostname!r}", lambda: sc.sethostname(hostname)))
    if config.get("domainname") is not None:
        domain = config["domainname"]
        root_steps.append(Step(f"setdomainname {domain!r}", lambda: sc.setdomainname(domain)))

    return ContainerPlan(container_id=container_id, bundle=bundle, rootfs=ctx.rootfs,
                         config=config, options=options, namespaces=ns, cgroup=manager,
                         cgroup_steps=cgroup_steps, mount_steps=mount_steps,
                         root_steps=root_steps, process=setup,
                         oom_score_adj=(process or {}).get("oomScoreAdj"),
                         net_devices=net_devices, idmapped=idmapped)
