"""linux.netDevices: move network devices of the runtime's network namespace into the container's.

config-linux.md asks three things: check the move is possible (at plan time: the device exists
here and the container has a network namespace of its own), move it under its new name (the
kernel refuses a name that is taken unless it is a ``%d`` template), keep its permanent
global-scope addresses (a move drops them all), and set it up. The runtime moves the device
(``RTM_NEWLINK`` with ``IFLA_NET_NS_FD``) once stage-1 has made the namespace; init, inside it,
puts the addresses back and sets the link up. Nothing is moved back on delete: when the
namespace goes, the kernel returns physical devices and destroys virtual ones (as the spec says).

Spoken over rtnetlink (``AF_NETLINK``/``NETLINK_ROUTE``) with ``struct``, no external tool.
"""

from __future__ import annotations

import _socket as socket  # the C module under ``socket``: no enum, selectors (~4 ms)
import _struct as struct  # struct.py only re-exports it, and costs a sys.path search (~0.15 ms)
import os
from _functools import partial  # functools.partial; functools imports collections (~2 ms)

from ocirt.errors import ConfigError, OcirtError, SyscallError
from ocirt.linux.plan import Step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RTM_NEWLINK, RTM_NEWADDR, RTM_GETADDR = 16, 20, 22
_RTM_NAMES = {RTM_NEWLINK: "RTM_NEWLINK", RTM_NEWADDR: "RTM_NEWADDR", RTM_GETADDR: "RTM_GETADDR"}
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_IFNAME, IFLA_NET_NS_FD = 3, 28
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1


class Address:
    """One address of a device, as RTM_NEWADDR takes it back."""

    def __init__(self, family: int, prefixlen: int, attrs: dict[int, bytes]) -> None:
        self.family, self.prefixlen, self.attrs = family, prefixlen, attrs

    def __str__(self) -> str:
        raw = self.attrs.get(IFA_LOCAL) or self.attrs.get(IFA_ADDRESS) or b""
        return f"{socket.inet_ntop(self.family, raw)}/{self.prefixlen}"


class NetDevice:
    """A device to move: its name and index here, its name there, its addresses."""

    def __init__(self, host_name: str, name: str, index: int) -> None:
        self.host_name, self.name, self.index = host_name, name, index
        self.addresses: list[Address] = []


def plan(linux: dict[str, Any], has_own_netns: bool) -> list[NetDevice]:
    """Check linux.netDevices against this host; nothing is changed yet."""
    wanted = linux.get("netDevices") or {}
    if not wanted:
        return []
    if not has_own_netns:
        raise ConfigError("$.linux.netDevices", "moving network devices needs a network "
                          "namespace for the container (a new one, or one joined by path)")
    devices = []
    for host_name, entry in wanted.items():
        where = f"$.linux.netDevices[{host_name!r}]"
        name = (entry or {}).get("name") or host_name
        if len(name.replace("%d", "")) > 15 or "/" in name or not name.strip():
            raise ConfigError(f"{where}.name", f"{name!r} is not a valid interface name")
        try:
            index = socket.if_nametoindex(host_name)
        except OSError:
            raise ConfigError(where, f"no network device {host_name!r} in the runtime's "
                              "network namespace") from None
        device = NetDevice(host_name, name, index)
        device.addresses = _permanent_global_addresses(device)  # noted now: a move drops them
        devices.append(device)
    return devices


def check_names_free(devices: list[NetDevice]) -> None:
    """In the container's network namespace, before the move: a name already there is an
    error (the kernel would move the device first and fail the rename after)."""
    for device in devices:
        if "%d" in device.name:
            continue  # a template: the kernel picks a free name
        try:
            socket.if_nametoindex(device.name)
        except OSError:
            continue
        raise OcirtError(f"$.linux.netDevices[{device.host_name!r}]: a network device named "
                         f"{device.name!r} already exists in the container's network namespace")


def move_steps(devices: list[NetDevice], netns_path: str) -> list[Step]:
    """For the runtime, once the container's network namespace (``netns_path``) exists."""
    return [Step(f"RTM_NEWLINK {d.host_name} -> the container's network namespace as {d.name}",
                 partial(_move, d, netns_path)) for d in devices]


def setup_steps(devices: list[NetDevice]) -> list[Step]:
    """For init, inside the namespace: the addresses back, then the link up."""
    return [Step(f"{d.name}: add {', '.join(map(str, d.addresses)) or 'no address'}; link up",
                 partial(_set_up, d)) for d in devices]


def _move(device: NetDevice, netns_path: str) -> None:
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        attrs = (_attr(IFLA_NET_NS_FD, struct.pack("I", fd))
                 + _attr(IFLA_IFNAME, device.name.encode() + b"\0"))
        _request(RTM_NEWLINK, NLM_F_ACK, _ifinfo(device.index) + attrs,
                 f"moving {device.host_name!r} into the container's network namespace as "
                 f"{device.name!r} (linux.netDevices)")
    finally:
        os.close(fd)


def _set_up(device: NetDevice) -> None:
    # A move keeps the index when it is free in the new namespace, as it is in a new one
    # (only lo, 1, is there); the name finds it otherwise (not for a %d template).
    try:
        index = socket.if_nametoindex(device.name)
    except OSError:
        index = device.index
    for address in device.addresses:
        payload = struct.pack("BBBBI", address.family, address.prefixlen, 0,
                              RT_SCOPE_UNIVERSE, index)
        payload += b"".join(_attr(kind, value) for kind, value in address.attrs.items())
        _request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, payload,
                 f"adding {address} to {device.name!r} (linux.netDevices)")
    _request(RTM_NEWLINK, NLM_F_ACK, _ifinfo(index, IFF_UP, IFF_UP),
             f"setting {device.name!r} up (linux.netDevices)")


# --- rtnetlink ---------------------------------------------------------------------------------

def _attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("HH", length, kind) + value + b"\0" * (-length % 4)


def _ifinfo(index: int, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def _messages(sock: socket.socket) -> list[tuple[int, bytes]]:
    data = sock.recv(65536)
    result = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("IH", data, offset)
        result.append((kind, data[offset + 16:offset + length]))
        offset += (length + 3) & ~3
    return result


def _request(kind: int, flags: int, payload: bytes, what: str) -> list[bytes]:
    """Send one rtnetlink request; the replies of a dump, or raise naming ``what``."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.send(struct.pack("IHHII", 16 + len(payload), kind, NLM_F_REQUEST | flags, 1, 0)
                  + payload)
        replies: list[bytes] = []
        while True:
            for reply_kind, body in _messages(sock):
                if reply_kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("i", body)
                    if error:
                        raise SyscallError(_RTM_NAMES[kind], -error, what)
                    return replies
                if reply_kind == NLMSG_DONE:
                    return replies
                replies.append(body)
    finally:
        sock.close()


def _permanent_global_addresses(device: NetDevice) -> list[Address]:
    addresses = []
    for body in _request(RTM_GETADDR, NLM_F_DUMP, struct.pack("BBBBI", 0, 0, 0, 0, 0),
                         f"listing the addresses of {device.host_name!r}"):
        family, prefixlen, flags, scope, index = struct.unpack_from("BBBBI", body)
        if index != device.index or scope != RT_SCOPE_UNIVERSE:
            continue
        attrs: dict[int, bytes] = {}
        offset = 8
        while offset + 4 <= len(body):
            length, kind = struct.unpack_from("HH", body, offset)
            if length < 4:
                break
            attrs[kind] = body[offset + 4:offset + length]
            offset += (length + 3) & ~3
        if IFA_FLAGS in attrs:
            (flags,) = struct.unpack("I", attrs[IFA_FLAGS][:4])
        if flags & IFA_F_PERMANENT:
            kept = {k: v for k, v in attrs.items() if k in (IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST)}
            addresses.append(Address(family, prefixlen, kept))
    return addresses
