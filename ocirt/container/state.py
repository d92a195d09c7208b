"""Container state: the status machine, the state document, and the state directory.

One directory per container under the state root (``--root``; default /run/ocirt, or
``$XDG_RUNTIME_DIR/ocirt`` when rootless), mode 0700; the root itself is made 0700 too.
A root out of the user's reach is one clear error (``AccessError``), never a traceback.
``state.json`` is written atomically (temporary file, rename in the same directory), so a killed
writer leaves the old document or the new one, never a truncated one. Every command that changes
a container holds an exclusive flock on the container's directory, so two commands on one ID
never interleave; a command that gets the lock after a ``delete`` sees the directory gone.

``create`` writes the first document before it makes anything (cgroup directories it is about
to make, the mounts under the rootfs before it, its own PID and start time) and a copy of it,
``cleanup.json``, a separate file never written again: if state.json is later damaged,
``delete --force`` undoes the container from that copy (see ``delete.recover``).

The status is derived, not trusted: the saved status (creating, created, running) holds only
while the process behind it is alive, which is checked by PID *and* its start time, so a reused
PID never makes a stopped container look alive. For ``creating`` that process is the runtime
that creates the container: once it is gone (killed mid-way), the container is ``stopped``.

Reading a state (``Store.load``, the ``state`` command) imports no ``os`` (~1 ms): paths go
through ``ocirt.paths``, and the functions that change the state root import ``os`` themselves.
"""

from __future__ import annotations

# ocirt.errors only where an error is raised: reading a state never needs it (~0.25 ms)
from ocirt import OCI_VERSION, jsonfast, paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from ocirt.errors import OcirtError

DEFAULT_ROOT = "/run/ocirt"
# The cgroup directory is "ocirt-<id>" and must fit in a file name (NAME_MAX, 255 bytes).
MAX_ID_LENGTH = 249
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


class Status(str):
    """A container's status (runtime.md "State"), with what each allows.

    Plain strings with one instance per status (compare with ``is``), not an enum: ``enum``
    costs ~2.5 ms to import, and ``state`` is the command managers call most.
    """

    __slots__ = ()
    CREATING: ClassVar[Status]
    CREATED: ClassVar[Status]
    RUNNING: ClassVar[Status]
    STOPPED: ClassVar[Status]
    PAUSED: ClassVar[Status]  # derived, never saved: running or created, with a frozen cgroup

    def __new__(cls, name: str) -> Status:
        try:
            return _STATUSES[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a container status") from None

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def can_start(self) -> bool:
        return self is Status.CREATED

    @property
    def can_kill(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING, Status.PAUSED)

    @property
    def can_pause(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING)

    @property
    def can_resume(self) -> bool:
        return self is Status.PAUSED

    @property
    def can_delete(self) -> bool:
        return self is Status.STOPPED


_STATUSES: dict[str, Status] = {}
for _name in ("creating", "created", "running", "stopped", "paused"):
    _STATUSES[_name] = str.__new__(Status, _name)
    setattr(Status, _name.upper(), _STATUSES[_name])


def check_id(container_id: str) -> None:
    if container_id and len(container_id) <= MAX_ID_LENGTH and container_id not in (".", "..") \
            and set(container_id) <= _ID_CHARS:
        return
    from ocirt.errors import InvalidID

    if not container_id:
        raise InvalidID("invalid container ID: it is empty")
    if len(container_id) > MAX_ID_LENGTH:
        raise InvalidID(f"invalid container ID: longer than {MAX_ID_LENGTH} characters")
    raise InvalidID(f"invalid container ID {container_id!r}: use letters, digits and "
                    "'_', '+', '-', '.' only (no '/', not '.' or '..')")


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class ContainerState:
    """What state.json holds: the spec's fields, the init's start time, cgroups, config, and
    while it is being created, who creates it and what it may have made."""

    FIELDS = ("id", "bundle", "rootfs", "pid", "pid_start", "status", "created", "owner",
              "annotations", "cgroup", "config", "host_mounts", "creator", "mounts_before")

    def __init__(self, id: str, bundle: str, rootfs: str, pid: int = 0, pid_start: int = 0,
                 status: Status = Status.CREATING, created: str = "", owner: str = "",
                 annotations: dict[str, str] | None = None,
                 cgroup: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None,
                 host_mounts: list[list[Any]] | None = None,
                 creator: list[int] | None = None,
                 mounts_before: list[list[Any]] | None = None) -> None:
        self.id, self.bundle, self.rootfs = id, bundle, rootfs
        self.pid, self.pid_start, self.status = pid, pid_start, status
        self.created, self.owner = created, owner
        self.annotations = annotations or {}
        self.cgroup: dict[str, Any] = cgroup or {}
        self.config: dict[str, Any] = config or {}
        # [mount ID, mount point] of the mounts create made in the runtime's mount namespace
        # (a container without one of its own): ``delete`` detaches them (see hostmounts).
        self.host_mounts: list[list[Any]] = host_mounts or []
        # While creating: [PID, start time] of the runtime that creates the container, and
        # (without a mount namespace) the mounts under the rootfs before it began, so a create
        # that died leaves a container that is `stopped` and whose mounts can still be found.
        self.creator: list[int] = creator or []
        self.mounts_before = mounts_before

    def creator_alive(self) -> bool:
        return (len(self.creator) == 2
                and process_start_time(self.creator[0]) == self.creator[1])

    def current_status(self) -> Status:
        if self.status is Status.CREATING:
            return Status.CREATING if self.creator_alive() else Status.STOPPED
        if self.status is Status.STOPPED or self.pid <= 0:
            return Status.STOPPED
        if process_start_time(self.pid) != self.pid_start:
            return Status.STOPPED
        if self.cgroup and self.status in (Status.CREATED, Status.RUNNING):
            from ocirt.linux.frozen import frozen_state

            if frozen_state(self.cgroup):
                return Status.PAUSED
        return self.status

    def document(self) -> dict[str, Any]:
        """The state document of runtime.md (plus runc's extra fields)."""
        status = self.current_status()
        doc: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": self.id, "pid": 0,
                               "status": status.value, "bundle": self.bundle,
                               "rootfs": self.rootfs, "created": self.created,
                               "owner": self.owner}
        if status in (Status.CREATED, Status.RUNNING, Status.PAUSED):
            doc["pid"] = self.pid
        if self.annotations:
            doc["annotations"] = self.annotations
        return doc

    def hook_document(self, status: Status, pid: int | None = None) -> dict[str, Any]:
        """The state passed to hooks: the status the spec gives at that moment, and the pid
        as the hook's namespace sees it."""
        doc: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": self.id,
                               "status": status.value, "bundle": self.bundle,
                               "annotations": self.annotations}
        if status is not Status.STOPPED:
            doc["pid"] = self.pid if pid is None else pid
        return doc

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.FIELDS}
        data["status"] = self.status.value
        return data

    @classmethod
    def from_json(cls, data: Any) -> ContainerState:
        """The state a document describes; ``ValueError`` naming the field if it is not one
        this runtime wrote (unknown fields are ignored, missing optional ones take defaults)."""
        from ocirt.container.state_shape import SHAPES, check_cgroup, check_shape, kind

        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object but {kind(data)}")
        fields: dict[str, Any] = {}
        for name in cls.FIELDS:
            if name not in data:
                if name in ("id", "bundle", "rootfs", "status"):
                    raise ValueError(f"field {name!r} is missing")
                continue
            check_shape(data[name], SHAPES[name], name)
            fields[name] = data[name]
        fields["status"] = Status(fields["status"])
        if fields.get("cgroup"):
            check_cgroup(fields["cgroup"])
        return cls(**fields)


class Store:
    """The state root: one locked directory per container."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = paths.abspath(root)

    def path(self, container_id: str, *names: str) -> str:
        return paths.join(self.root, container_id, *names)

    def socket_path(self, container_id: str, lock: Lock) -> str:
        """The start socket's path through the locked directory's fd: always short enough
        for AF_UNIX (108 bytes), however long the state root and the ID."""
        return f"/proc/self/fd/{lock.fd}/start.sock"

    def denied(self, doing: str, path: str, err: OSError) -> OcirtError:
        """The error for a state-root operation that failed with ``err``."""
        from ocirt.errors import AccessError, OcirtError, errno_text, is_denied, state_root_hint

        if is_denied(err):
            return AccessError(doing, path, err, state_root_hint(self.root))
        return OcirtError(f"{doing} {path}: {errno_text(err)}")

    def ids(self) -> list[str]:
        import os

        try:
            return sorted(name for name in os.listdir(self.root)
                          if os.path.isfile(self.path(name, "state.json")))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise self.denied("listing the state root", self.root, err) from None

    def create(self, container_id: str) -> Lock:
        import os

        check_id(container_id)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as err:
            raise self.denied("creating the state root", self.root, err) from None
        try:
            os.mkdir(self.path(container_id), 0o700)
        except FileExistsError:
            from ocirt.errors import ContainerExists

            raise ContainerExists(container_id) from None
        except OSError as err:
            raise self.denied("creating the state directory", self.path(container_id),
                              err) from None
        return self.lock(container_id)

    def lock(self, container_id: str) -> Lock:
        check_id(container_id)
        try:
            return Lock(self.path(container_id), container_id)
        except OSError as err:
            raise self.denied("opening the state of container", self.path(container_id),
                              err) from None

    def load(self, container_id: str, name: str = "state.json") -> ContainerState:
        """The container's state (or its ``cleanup.json`` copy); ``StateDamaged`` naming the
        file and what is wrong if it cannot be used."""
        path = self.path(container_id, name)
        problem = ""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            from ocirt.errors import ContainerNotFound

            raise ContainerNotFound(container_id) from None
        except OSError as err:
            from ocirt.errors import StateDamaged, errno_text, is_denied

            if is_denied(err):
                raise self.denied("reading the state of container", path, err) from None
            raise StateDamaged(container_id, path, f"cannot read it: {errno_text(err)}") from err
        if not data.strip():
            problem = "the file is empty"
        else:
            try:
                state = ContainerState.from_json(jsonfast.loads(data))
            except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                problem = str(err)
            except RecursionError:
                problem = "nested too deeply"
            else:
                if state.id == container_id:
                    return state
                problem = f"it describes container {state.id!r}"
        from ocirt.errors import StateDamaged

        raise StateDamaged(container_id, path, problem)

    def save(self, state: ContainerState, with_cleanup_copy: bool = False) -> None:
        """Write state.json (the one place that does); ``with_cleanup_copy``: also the
        separate ``cleanup.json`` (create, before it makes anything)."""
        from ocirt.container.statefiles import write_atomic

        data = jsonfast.dumps(state.to_json()).encode()
        path = self.path(state.id, "state.json")
        try:
            write_atomic(path, data, exchange=True)
            if with_cleanup_copy:
                path = self.path(state.id, "cleanup.json")
                write_atomic(path, data)
        except OSError as err:
            raise self.denied("writing the state of container", path, err) from None

    def remove(self, container_id: str) -> None:
        import os

        directory = self.path(container_id)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


class Lock:
    """An exclusive flock on a container's directory, held for the life of one command."""

    def __init__(self, directory: str, container_id: str) -> None:
        import fcntl
        import os

        from ocirt.errors import ContainerNotFound

        try:
            self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        if os.fstat(self.fd).st_nlink == 0:  # deleted while we waited for the lock
            os.close(self.fd)
            raise ContainerNotFound(container_id)

    def release(self) -> None:
        import os

        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
