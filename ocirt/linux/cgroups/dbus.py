"""A small client of systemd's D-Bus API (org.freedesktop.systemd1.Manager), over jeepney.

jeepney is pure Python and small, but its import costs ~20 ms (typing, enum, socket), so only
the systemd cgroup driver imports this module, and only when it talks to systemd (create,
update, delete of a container made with ``--systemd-cgroup``). Every failure is an
``OcirtError`` naming the method, the unit and systemd's error name and message.

Jobs: StartUnit-like calls return a job object; ``wait`` watches the manager's JobRemoved
signal for it (subscribed before the call, so the signal cannot be missed) and returns its
result (``done``, ``failed``, ``canceled``, ``timeout``, ``dependency``, ``skipped``).
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque

from jeepney import DBusAddress, DBusErrorResponse, MatchRule, Properties, new_method_call
from jeepney.bus import get_bus
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, Proxy, open_dbus_connection

from ocirt.errors import OcirtError
from ocirt.identity import host_uid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                      interface="org.freedesktop.systemd1.Manager")
TIMEOUT = 30.0  # as runc waits for a job
AUTH_TIMEOUT = 5.0


class SystemdError(OcirtError):
    """A D-Bus call to systemd failed: ``name`` is systemd's error name (or "")."""

    def __init__(self, text: str, name: str = "") -> None:
        super().__init__(text)
        self.name = name


def user_bus_address() -> str:
    """The calling user's own bus, as runc finds it: $DBUS_SESSION_BUS_ADDRESS, else
    ``unix:path=$XDG_RUNTIME_DIR/bus`` when that socket exists. Otherwise a one-line error: a
    rootless ``--systemd-cgroup`` needs the user's systemd (user@UID.service) and its bus."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    uid = host_uid()
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    path = f"{runtime_dir}/bus"
    if not os.path.exists(path):
        raise SystemdError(
            f"systemd: no user bus for uid {uid}: DBUS_SESSION_BUS_ADDRESS is unset and "
            f"{path} does not exist; a rootless --systemd-cgroup needs the user's systemd "
            f"(user@{uid}.service: log in, or `loginctl enable-linger`) and its D-Bus "
            "(Debian: dbus-user-session)")
    return f"unix:path={path}"


def _read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("the bus closed the connection while authenticating")
        line += chunk
    return line[:-2]


def _open_user_bus(address: str) -> DBusConnection:
    """A connection to the user's bus. EXTERNAL authentication without an identity (as
    sd-bus does): the bus takes our uid from the socket's peer credentials, which the kernel
    gives as the bus sees them. jeepney would send our euid, which is 0 when rootless podman
    runs us as root of its user namespace, and the user's bus refuses that."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(AUTH_TIMEOUT)
    try:
        sock.connect(get_bus(address))
        sock.sendall(b"\0AUTH EXTERNAL\r\n")
        line = _read_line(sock)
        if line == b"DATA" or line.startswith(b"DATA "):
            sock.sendall(b"DATA\r\n")
            line = _read_line(sock)
        if not line.startswith(b"OK "):
            said = line.decode(errors="replace")
            raise ConnectionError(f"EXTERNAL authentication refused ({said})")
        sock.sendall(b"BEGIN\r\n")
        return DBusConnection(sock)
    except BaseException:
        sock.close()
        raise


class Systemd:
    """One connection to a systemd manager: the system's, or (``user``) the caller's own."""

    def __init__(self, user: bool = False) -> None:
        self.user = user
        where = user_bus_address() if user else "SYSTEM"
        try:
            self.conn: DBusConnection = (_open_user_bus(where) if user
                                         else open_dbus_connection(where))
        except (OSError, ValueError, KeyError) as err:
            if user:
                raise SystemdError(f"systemd: cannot connect to the user's bus ({where}): "
                                   f"{err} (is the user's systemd, user@UID.service, running "
                                   "with its D-Bus?)") from err
            raise SystemdError(f"systemd: cannot connect to the system bus: {err} (is "
                               "systemd running, with dbus?)") from err
        # Every JobRemoved, unbounded: a scope in a new slice makes several jobs, and the one
        # waited for must not be pushed out by the others.
        self._jobs: deque[Any] = deque()
        self.conn.filter(MatchRule(type="signal", interface=MANAGER.interface,
                                   member="JobRemoved", path=MANAGER.object_path),
                         queue=self._jobs)
        self._subscribed = False

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, signature: str | None = None, body: tuple[Any, ...] = (),
             what: str = "") -> tuple[Any, ...]:
        message = new_method_call(MANAGER, method, signature, body)
        try:
            reply = self.conn.send_and_get_reply(message, timeout=TIMEOUT)
        except TimeoutError as err:
            raise SystemdError(f"systemd: {method} {what}: no reply in {TIMEOUT:g}s") from err
        try:
            from jeepney.wrappers import unwrap_msg

            result: tuple[Any, ...] = unwrap_msg(reply)
        except DBusErrorResponse as err:
            detail = err.data[0] if err.data else ""
            raise SystemdError(f"systemd: {method} {what}: {err.name}: {detail}",
                               err.name) from err
        return result

    def manager_property(self, name: str) -> Any:
        message = Properties(MANAGER).get(name)
        try:
            reply = self.conn.send_and_get_reply(message, timeout=TIMEOUT)
            from jeepney.wrappers import unwrap_msg

            return unwrap_msg(reply)[0][1]
        except (DBusErrorResponse, TimeoutError) as err:
            raise SystemdError(f"systemd: reading the manager's {name}: {err}") from err

    def version(self) -> int:
        """systemd's version as a number (``252.38-1~deb12u1`` -> 252); 0 if unknown."""
        text = str(self.manager_property("Version")).lstrip('"v')
        digits = ""
        for char in text:
            if not char.isdigit():
                break
            digits += char
        return int(digits) if digits else 0

    def _subscribe(self) -> None:
        if not self._subscribed:
            rule = MatchRule(type="signal", interface=MANAGER.interface, member="JobRemoved",
                             path=MANAGER.object_path)
            Proxy(message_bus, self.conn).AddMatch(rule)
            self._subscribed = True

    def wait(self, job: str, what: str, timeout: float = TIMEOUT) -> str:
        """Wait for ``job`` to be removed; its result (``done`` when it succeeded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemdError(f"systemd: {what}: the job {job} did not finish in "
                                   f"{timeout:g}s")
            try:
                signal = self.conn.recv_until_filtered(self._jobs, timeout=left)
            except TimeoutError:
                continue
            _, path, _, result = signal.body
            if path == job:
                return str(result)

    def start_transient(self, unit: str, properties: list[tuple[str, tuple[str, Any]]]
                        ) -> None:
        """StartTransientUnit(unit, "replace", properties) and wait for its job; a leftover
        failed unit of that name is reset and the start tried once more (as runc does). A
        ``UnitExists`` error means another live unit has the name: the caller must not stop
        it."""
        self._subscribe()
        for attempt in (1, 2):
            try:
                (job,) = self.call("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                   (unit, "replace", properties, []), unit)
            except SystemdError as err:
                if err.name.endswith(".UnitExists") and attempt == 1:
                    self.reset_failed(unit)
                    continue
                raise
            result = self.wait(job, f"starting {unit}")
            if result != "done":
                self.reset_failed(unit)
                raise SystemdError(f"systemd: starting {unit}: the job ended {result!r} "
                                   f"(journalctl -u {unit} says why)")
            return

    def stop(self, unit: str) -> None:
        """StopUnit and wait for it; a unit already gone is no error. Failed state reset."""
        self._subscribe()
        try:
            (job,) = self.call("StopUnit", "ss", (unit, "replace"), unit)
        except SystemdError as err:
            if not err.name.endswith((".NoSuchUnit", ".LoadFailed")):
                raise
        else:
            self.wait(job, f"stopping {unit}")
        self.reset_failed(unit)

    def reset_failed(self, unit: str) -> None:
        try:
            self.call("ResetFailedUnit", "s", (unit,), unit)
        except SystemdError:
            pass  # not failed, or gone: nothing to reset

    def set_properties(self, unit: str, properties: list[tuple[str, tuple[str, Any]]]
                       ) -> None:
        if properties:
            self.call("SetUnitProperties", "sba(sv)", (unit, True, properties), unit)

    def attach(self, unit: str, pid: int) -> None:
        """AttachProcessesToUnit: move ``pid`` into the unit's cgroup (systemd 238+). A user's
        manager asks the system's to do it when the process sits outside its subtree."""
        self.call("AttachProcessesToUnit", "ssau", (unit, "/", [pid]), unit)

    def unit_active(self, unit: str) -> bool:
        """Is ``unit`` loaded (in any state but gone)?"""
        try:
            self.call("GetUnit", "s", (unit,), unit)
        except SystemdError as err:
            if err.name.endswith(".NoSuchUnit"):
                return False
            raise
        return True
