"""What the systemd driver asks systemd for: unit names, slices, and unit properties.

Converted as runc converts them (opencontainers/cgroups, systemd/v2.go and common.go):
MemoryMax, MemoryLow and MemorySwapMax (swap is memory+swap in the spec, swap alone here);
CPUWeight from cpu shares (the same formula as cpu.weight, or 0 for cpu.idle=1 on systemd 252
and later); CPUQuotaPerSecUSec from quota/period, rounded up to a whole 10 ms because systemd
keeps a percentage, and CPUQuotaPeriodUSec (systemd 242+); TasksMax; AllowedCPUs and
AllowedMemoryNodes as bit masks (systemd 244+); the known linux.resources.unified keys. Beyond
runc's v2 driver: IOWeight, IODeviceWeight and the IO*Max limits. The device list becomes
DevicePolicy=strict with DeviceAllow entries (``auto`` when everything is allowed); ocirt's
own BPF filter still enforces the exact list. Values are (D-Bus signature, value) pairs.

Annotations ``org.systemd.property.<Name>`` are passed through as runc passes them: the value
in GVariant text form (``uint64 10``, ``true``, ``'text'``, ``42``), a name ending in ``Sec``
converted to ``USec`` (seconds to microseconds).
"""

from __future__ import annotations

from ocirt.errors import ConfigError, UnsupportedError
from ocirt.linux.cgroups import devices as devrules
from ocirt.linux.cgroups.v2 import cpu_weight, io_weight, swap_max

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Prop = tuple[str, tuple[str, "Any"]]
INFINITY = (1 << 64) - 1  # systemd's "infinity" for bytes, tasks and USec
PERIOD = 100000  # the kernel's default CFS period, in microseconds
PREFIX = "org.systemd.property."


def expand_slice(name: str) -> str:
    """``a-b-c.slice`` -> ``/a.slice/a-b.slice/a-b-c.slice`` (``-.slice`` is the root)."""
    where = "$.linux.cgroupsPath"
    if not name.endswith(".slice") or len(name) <= len(".slice") or "/" in name:
        raise ConfigError(where, f"{name!r} is not a slice name (such as system.slice)")
    stem = name[: -len(".slice")]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise ConfigError(where, f"invalid slice name {name!r} (an empty part between "
                              "dashes)")
        path += f"/{prefix}{part}.slice"
        prefix += f"{part}-"
    return path


def parse_path(cgroups_path: str | None, container_id: str, rootless: bool
               ) -> tuple[str, str]:
    """cgroupsPath ``slice:prefix:name`` -> (slice, unit); runc's defaults where parts are
    empty (system.slice, user.slice when rootless; the prefix ``ocirt``; the container id)."""
    text = cgroups_path or f":ocirt:{container_id}"
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError("$.linux.cgroupsPath", f"{text!r}: the systemd cgroup driver "
                          "expects slice:prefix:name (such as system.slice:ocirt:web)")
    slice_name, prefix, name = parts
    slice_name = slice_name or ("user.slice" if rootless else "system.slice")
    expand_slice(slice_name)
    if name.endswith(".slice"):
        raise UnsupportedError(f"$.linux.cgroupsPath {text!r}: a container in a slice unit of "
                               "its own is not supported; use a scope (slice:prefix:name)")
    name = name or container_id
    for part, value in (("prefix", prefix), ("name", name)):
        if "/" in value or value in (".", ".."):
            raise ConfigError("$.linux.cgroupsPath", f"{part} {value!r} must be a plain name")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    return slice_name, unit


def _range_bits(text: str, where: str) -> bytes:
    """``0-2,4`` -> the little-endian bit mask systemd's AllowedCPUs takes."""
    mask = 0
    for chunk in text.replace(" ", "").split(","):
        if not chunk:
            continue
        low, _, high = chunk.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ConfigError(where, f"{text!r} is not a list of ranges such as 0-2,4")
        for bit in range(int(low), int(high or low) + 1):
            mask |= 1 << bit
    return mask.to_bytes(max(1, (mask.bit_length() + 7) // 8), "little")


def _quota(quota: int | None, period: int | None, version: int) -> list[Prop]:
    result: list[Prop] = []
    if period and version >= 242:
        result.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota or period:
        per_second = INFINITY
        if quota and quota > 0:
            per_second = quota * 1_000_000 // (period or PERIOD)
            if per_second % 10000:
                per_second = (per_second // 10000 + 1) * 10000
        result.append(("CPUQuotaPerSecUSec", ("t", per_second)))
    return result


def _bytes(value: int) -> int:
    return INFINITY if value < 0 else value


def resource_properties(resources: dict[str, Any], version: int) -> list[Prop]:
    props: list[Prop] = []
    memory = resources.get("memory") or {}
    limit = memory.get("limit")
    if limit:
        props.append(("MemoryMax", ("t", _bytes(limit))))
    if memory.get("reservation"):
        props.append(("MemoryLow", ("t", _bytes(memory["reservation"]))))
    if memory.get("swap"):
        swap = swap_max(memory["swap"], limit or 0)
        if swap:
            props.append(("MemorySwapMax", ("t", _bytes(swap))))
    cpu = resources.get("cpu") or {}
    idle = cpu.get("idle") == 1 and version >= 252
    if idle:
        props.append(("CPUWeight", ("t", 0)))
    elif cpu.get("shares"):
        props.append(("CPUWeight", ("t", cpu_weight(int(cpu["shares"])))))
    props += _quota(cpu.get("quota"), cpu.get("period"), version)
    if version >= 244:
        for key, name in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
            if cpu.get(key):
                props.append((name, ("ay", _range_bits(str(cpu[key]),
                                                       f"$.linux.resources.cpu.{key}"))))
    limit = (resources.get("pids") or {}).get("limit")
    if limit is not None and (limit > 0 or limit == -1):
        props.append(("TasksMax", ("t", _bytes(limit))))
    props += _io(resources.get("blockIO") or {})
    props += _unified(resources.get("unified") or {}, version)
    return props


def _io(blkio: dict[str, Any]) -> list[Prop]:
    props: list[Prop] = []
    if blkio.get("weight"):
        props.append(("IOWeight", ("t", io_weight(int(blkio["weight"])))))
    weights = [(f"/dev/block/{e['major']}:{e['minor']}", io_weight(int(e["weight"])))
               for e in blkio.get("weightDevice") or [] if e.get("weight") is not None]
    if weights:
        props.append(("IODeviceWeight", ("a(st)", weights)))
    for key, name in (("throttleReadBpsDevice", "IOReadBandwidthMax"),
                      ("throttleWriteBpsDevice", "IOWriteBandwidthMax"),
                      ("throttleReadIOPSDevice", "IOReadIOPSMax"),
                      ("throttleWriteIOPSDevice", "IOWriteIOPSMax")):
        limits = [(f"/dev/block/{e['major']}:{e['minor']}", int(e["rate"]))
                  for e in blkio.get(key) or []]
        if limits:
            props.append((name, ("a(st)", limits)))
    return props


def _unified(unified: dict[str, Any], version: int) -> list[Prop]:
    props: list[Prop] = []
    memory_names = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow",
                    "memory.min": "MemoryMin", "memory.max": "MemoryMax",
                    "memory.swap.max": "MemorySwapMax"}
    for key, raw in unified.items():
        value = str(raw).strip()
        where = f"$.linux.resources.unified[{key!r}]"
        number = INFINITY if value == "max" else (int(value) if value.isdigit() else None)
        if key in memory_names or key == "pids.max":
            if number is None:
                raise ConfigError(where, f"{value!r} must be a number or max")
            props.append((memory_names.get(key, "TasksMax"), ("t", number)))
        elif key == "cpu.weight" and number is not None:
            props.append(("CPUWeight", ("t", number)))
        elif key == "cpu.max":
            fields = value.split()
            quota = None if fields[0] == "max" else int(fields[0])
            props += _quota(quota or 0, int(fields[1]) if len(fields) > 1 else PERIOD,
                            version)
        elif key in ("cpuset.cpus", "cpuset.mems") and version >= 244:
            name = "AllowedCPUs" if key == "cpuset.cpus" else "AllowedMemoryNodes"
            props.append((name, ("ay", _range_bits(value, where))))
    return props


def device_properties(resource_devices: list[dict[str, Any]] | None,
                      linux_devices: list[dict[str, Any]] | None) -> list[Prop]:
    rules = devrules.rules(resource_devices, linux_devices)
    if any(allow and kind == "a" and major is None and minor is None and set(access) ==
           set("rwm") for allow, kind, major, minor, access in rules):
        return [("DevicePolicy", ("s", "auto"))]
    names = _proc_devices()
    allowed: list[tuple[str, str]] = []
    for allow, kind, major, minor, access in rules:
        if not allow or kind == "a":
            continue  # denies: ocirt's own BPF filter keeps them exact
        group = "char" if kind == "c" else "block"
        if major is None:
            entry = f"{group}-*"
        elif minor is None:
            if (group, major) not in names:
                continue  # no driver of that major: nothing to allow
            entry = f"{group}-{names[(group, major)]}"
        else:
            entry = f"/dev/{group}/{major}:{minor}"
        if (entry, access) not in allowed:
            allowed.append((entry, access))
    return [("DevicePolicy", ("s", "strict")), ("DeviceAllow", ("a(ss)", allowed))]


def _proc_devices() -> dict[tuple[str, int], str]:
    names: dict[tuple[str, int], str] = {}
    group = ""
    try:
        with open("/proc/devices") as handle:
            for line in handle:
                if line.startswith("Character"):
                    group = "char"
                elif line.startswith("Block"):
                    group = "block"
                elif line.strip():
                    number, name = line.split(None, 1)
                    names.setdefault((group, int(number)), name.strip())
    except OSError:
        pass
    return names


_TYPES = {"byte": "y", "int16": "n", "uint16": "q", "int32": "i", "uint32": "u",
          "int64": "x", "uint64": "t", "double": "d", "boolean": "b", "string": "s"}


def annotation_properties(annotations: dict[str, str]) -> list[Prop]:
    props: list[Prop] = []
    for key, text in sorted(annotations.items()):
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        where = f"$.annotations[{key!r}]"
        if len(name) < 3 or not name.isascii() or not name.isalpha():
            raise ConfigError(where, f"systemd property name {name!r}: latin letters only, "
                              "at least 3 of them")
        signature, value = _variant(text.strip(), where)
        if name.endswith("Sec") and name[-4:-3].islower():
            if signature not in ("y", "n", "q", "i", "u", "x", "t", "d"):
                raise ConfigError(where, f"{name} takes a number of seconds, not {text!r}")
            name, signature, value = name[:-3] + "USec", "t", int(value * 1_000_000)
        props.append((name, (signature, value)))
    return props


def _variant(text: str, where: str) -> tuple[str, Any]:
    """A GVariant text value: ``true``, ``'text'``, ``42``, ``4.5``, ``uint64 10``, ``@t 10``."""
    if text in ("true", "false"):
        return "b", text == "true"
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return "s", text[1:-1]
    word, _, rest = text.partition(" ")
    signature = _TYPES.get(word) or (word[1:] if word.startswith("@") and rest else "")
    if signature:
        text = rest.strip()
        if signature == "b":
            return "b", text == "true"
        if signature == "s":
            return "s", text.strip("'\"")
    try:
        if signature == "d" or (not signature and "." in text):
            return "d", float(text)
        return signature or "i", int(text)
    except ValueError:
        raise ConfigError(where, f"{text!r} is not a D-Bus value in GVariant text form "
                          "(such as uint64 10, true, 'text')") from None
