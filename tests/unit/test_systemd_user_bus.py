"""The user's bus for a rootless ``--systemd-cgroup`` (no systemd needed): where it is found,
the one-line error when there is none, and the authentication ocirt speaks on it (EXTERNAL with
no identity, so the bus takes the uid from the socket's credentials: inside rootless podman's
user namespace our euid is 0, which the user's bus would refuse). A socket server in a thread
stands in for the bus's side of the handshake; the whole path runs against the real user bus
in the systemd VM lane (tests/rootless/test_rootless_systemd.py)."""

from __future__ import annotations

import socket
import threading

import pytest

from ocirt.errors import ConfigError, UnsupportedError
from ocirt.linux.cgroups import dbus


def test_bus_address_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/somewhere/bus")
    assert dbus.user_bus_address() == "unix:path=/somewhere/bus"
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "bus"))
    try:
        assert dbus.user_bus_address() == f"unix:path={tmp_path}/bus"
    finally:
        listener.close()


def test_no_user_bus_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(dbus.SystemdError) as caught:
        dbus.Systemd(user=True)
    text = str(caught.value)
    assert "\n" not in text
    assert f"{tmp_path}/bus does not exist" in text
    assert "enable-linger" in text and "user@" in text


def _fake_bus(path: str, reply: bytes, heard: list[bytes]) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = conn.recv(64)
                if not chunk:
                    break
                data += chunk
            heard.append(data)
            conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_external_auth_sends_no_uid_and_a_refusal_is_one_line(monkeypatch, tmp_path):
    path = str(tmp_path / "bus")
    heard: list[bytes] = []
    thread = _fake_bus(path, b"REJECTED EXTERNAL\r\n", heard)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={path}")
    with pytest.raises(dbus.SystemdError) as caught:
        dbus.Systemd(user=True)
    thread.join(5)
    assert heard == [b"\0AUTH EXTERNAL\r\n"]  # no hex uid: the bus uses SO_PEERCRED
    text = str(caught.value)
    assert "\n" not in text
    assert "cannot connect to the user's bus" in text and "REJECTED EXTERNAL" in text


def _user_manager():
    from ocirt.linux.cgroups.discovery import Hierarchy
    from ocirt.linux.cgroups.systemd import SystemdManager

    base = "/sys/fs/cgroup/user.slice/user-1001.slice/user@1001.service"
    delegated = Hierarchy(2, "/sys/fs/cgroup", frozenset({"cpu", "memory", "pids"}), base)
    return SystemdManager([delegated], "user.slice:p:c1", "user.slice", "p-c1.scope", True,
                          f"{base}/user.slice/p-c1.scope")


def test_rootless_limits_need_a_delegated_controller():
    """A limit on a controller the user's systemd is not delegated is refused at planning,
    before any unit exists, naming the field and what is delegated; the rest is planned."""
    manager = _user_manager()
    assert manager.steps({"memory": {"limit": 1 << 26}, "pids": {"limit": 9},
                          "cpu": {"quota": 50000, "period": 100000}}) == []
    with pytest.raises(UnsupportedError) as caught:
        manager.steps({"blockIO": {"weight": 500}})
    text = str(caught.value)
    assert "blockIO" in text and "io" in text and "cpu memory pids" in text
    assert "user@1001.service" in text and "\n" not in text


def test_rootless_sends_no_device_rules():
    """A user's manager cannot program devices, nor can a user attach a BPF filter: no
    DevicePolicy/DeviceAllow, no device op; a deny of every device (podman's default) is
    accepted, a narrower deny is an error naming the rule."""
    manager = _user_manager()
    deny_all = {"devices": [{"allow": False, "access": "rwm"}], "memory": {"limit": 1 << 26}}
    manager.steps(deny_all, [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    names = [name for name, _ in manager._properties(252, pid=42)]
    assert "DevicePolicy" not in names and "DeviceAllow" not in names
    assert ("PIDs", ("au", [42])) in manager._properties(252, pid=42)
    assert not any(op.controller == "devices" for _, op in manager._planned)
    with pytest.raises(ConfigError, match=r"devices\[0\]"):
        manager.steps({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3}]})
