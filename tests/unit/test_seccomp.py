"""seccomp without root: profile checks with JSON paths, compiling, the BPF cache, flags, the
default profile, and a filter really loaded in a forked child (no_new_privs makes that legal
for anyone)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ocirt import log
from ocirt.config import validate
from ocirt.config.seccomp_profile import default_profile
from ocirt.errors import ConfigError
from ocirt.linux import seccomp
from ocirt.linux.seccomp import SeccompFilter, bpf_cache, rules
from ocirt.linux.syscalls import seccomp as kseccomp

OFFICIAL = Path(__file__).parents[3] / "shared/oci-runtime-spec/schema"
PR_SET_NO_NEW_PRIVS = 38


def profile(default: str = "SCMP_ACT_ALLOW", rules: list[dict[str, Any]] | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"defaultAction": default, "syscalls": rules or [], **extra}


def umask_rule(**extra: Any) -> dict[str, Any]:
    return {"names": ["umask"], "action": "SCMP_ACT_ERRNO", **extra}


def error_of(doc: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        SeccompFilter(doc)
    return info.value


# --- checks -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("doc", "where", "words"), [
    (profile(rules=[{"names": ["umask"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5}]),
     "$.linux.seccomp.syscalls[0].errnoRet", "takes no errno"),
    (profile("SCMP_ACT_KILL", defaultErrnoRet=3), "$.linux.seccomp.defaultErrnoRet",
     "takes no errno"),
    (profile(rules=[umask_rule(errnoRet=70000)]), "$.linux.seccomp.syscalls[0].errnoRet",
     "16 bits"),
    (profile(rules=[umask_rule(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}])]),
     "$.linux.seccomp.syscalls[0].args[0].index", "arguments 0 to 5"),
    (profile(rules=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]),
     "$.linux.seccomp.listenerPath", "listenerPath"),
    (profile(listenerMetadata="x"), "$.linux.seccomp.listenerMetadata", "without listenerPath"),
    (profile("SCMP_ACT_NOTIFY", listenerPath="/x"), "$.linux.seccomp.defaultAction",
     "cannot be the default"),
    (profile(listenerPath="/x", rules=[{"names": ["getpid", "sendmsg"],
                                        "action": "SCMP_ACT_NOTIFY"}]),
     "$.linux.seccomp.syscalls[0].names[1]", "sendmsg"),
    (profile(architectures=["SCMP_ARCH_PDP11"]), "$.linux.seccomp.architectures[0]",
     "SCMP_ARCH_PDP11"),
    (profile(flags=["SECCOMP_FILTER_FLAG_FAST"]), "$.linux.seccomp.flags[0]",
     "SECCOMP_FILTER_FLAG_FAST"),
])
def test_profile_errors_name_the_path(doc: dict[str, Any], where: str, words: str) -> None:
    err = error_of(doc)
    assert err.where == where
    assert words in str(err)


def test_actions_encode_like_libseccomp() -> None:
    pyseccomp = pytest.importorskip("pyseccomp")
    assert rules.ACTIONS["SCMP_ACT_KILL_PROCESS"] == pyseccomp.KILL_PROCESS
    assert rules.ACTIONS["SCMP_ACT_TRAP"] == pyseccomp.TRAP
    assert rules.ACTIONS["SCMP_ACT_LOG"] == pyseccomp.LOG
    assert rules.ACTIONS["SCMP_ACT_NOTIFY"] == pyseccomp.NOTIFY
    assert SeccompFilter(profile("SCMP_ACT_ERRNO", defaultErrnoRet=38)).default_action \
        == pyseccomp.ERRNO(38)
    assert SeccompFilter(profile("SCMP_ACT_TRACE")).default_action == pyseccomp.TRACE(1)
    for name in ("X86", "X86_64", "X32", "ARM", "AARCH64", "PPC64LE", "S390X", "RISCV64"):
        assert rules.ARCHES[f"SCMP_ARCH_{name}"] == getattr(pyseccomp.Arch, name)
    assert rules.OPERATORS["SCMP_CMP_MASKED_EQ"] == pyseccomp.MASKED_EQ


def test_flags() -> None:
    both = ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    plain = SeccompFilter(profile(flags=both))
    assert plain.flags() == 1 | 2 | 4  # WAIT_KILLABLE_RECV means nothing without a listener
    notify = SeccompFilter(profile(flags=both, listenerPath="/x", rules=[
        {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]))
    assert notify.flags() == 2 | 4 | 8 | 32  # NEW_LISTENER, and no TSYNC with it


def test_describe_lists_the_rules() -> None:
    lines = SeccompFilter(profile("SCMP_ACT_ERRNO", defaultErrnoRet=1, rules=[
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        umask_rule(errnoRet=13, args=[{"index": 0, "value": 18, "op": "SCMP_CMP_EQ"}]),
    ])).describe()
    assert "default SCMP_ACT_ERRNO(1)" in lines[0] and "2 rules" in lines[0]
    assert lines[1].endswith("SCMP_ACT_ALLOW: read write")
    assert lines[2].endswith("SCMP_ACT_ERRNO(13) [arg0 EQ 0x12]: umask")


# --- compiling and the cache ------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "seccomp"
    path.mkdir(mode=0o700)
    return path


def test_unknown_names_and_default_action_rules_are_skipped(cache: Path) -> None:
    pytest.importorskip("pyseccomp")
    doc = profile(rules=[{"names": ["ocirt_no_such_call", "umask"], "action": "SCMP_ACT_ERRNO"},
                         {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}])
    lines: list[str] = []
    previous = log.current
    log.current = log.Log(None, "text", True)
    log.current.debug = lines.append  # type: ignore[method-assign]
    try:
        SeccompFilter(doc).prepare(str(cache))
    finally:
        log.current = previous
    assert any("ocirt_no_such_call" in line and "syscalls[0].names[0]" in line
               for line in lines), lines
    assert any("syscalls[1] has the default action" in line for line in lines), lines


def test_conflicting_rules_name_the_path(cache: Path) -> None:
    pytest.importorskip("pyseccomp")
    arg = [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]
    doc = profile("SCMP_ACT_KILL", rules=[umask_rule(args=arg), {
        "names": ["umask"], "action": "SCMP_ACT_TRAP", "args": arg}])
    with pytest.raises(ConfigError) as info:
        SeccompFilter(doc).prepare(str(cache))
    assert info.value.where == "$.linux.seccomp.syscalls[1].names[0]"


def test_cache_miss_then_hit_without_pyseccomp(cache: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyseccomp")
    doc = profile(rules=[umask_rule(errnoRet=13)])
    first = SeccompFilter(doc)
    first.prepare(str(cache))
    assert not first.from_cache and first.bpf
    files = list(cache.iterdir())
    assert [f.name for f in files] == [f"{first.key()}.bpf"]
    assert files[0].stat().st_mode & 0o777 == 0o600
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # importing it now fails
    second = SeccompFilter(json.loads(json.dumps(doc)))
    second.prepare(str(cache))
    assert second.from_cache and second.bpf == first.bpf


def test_key_follows_the_rules_not_the_listener(cache: Path) -> None:
    base = SeccompFilter(profile(rules=[umask_rule()])).key()
    assert SeccompFilter(profile(rules=[umask_rule(errnoRet=2)])).key() != base
    assert SeccompFilter(profile("SCMP_ACT_LOG", rules=[umask_rule()])).key() != base
    assert SeccompFilter(profile(rules=[umask_rule()], flags=["SECCOMP_FILTER_FLAG_LOG"],
                                 listenerPath="/a")).key() == base
    reordered = {"syscalls": [umask_rule()], "defaultAction": "SCMP_ACT_ALLOW"}
    assert SeccompFilter(reordered).key() == base


@pytest.mark.parametrize("damage", ["group-writable", "truncated", "dir-world-writable"])
def test_untrusted_or_damaged_cache_is_ignored(cache: Path, damage: str) -> None:
    pytest.importorskip("pyseccomp")
    doc = profile(rules=[umask_rule()])
    first = SeccompFilter(doc)
    first.prepare(str(cache))
    path = cache / f"{first.key()}.bpf"
    if damage == "group-writable":
        path.chmod(0o620)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-3])
    else:
        cache.chmod(0o777)
    again = SeccompFilter(doc)
    again.prepare(str(cache))
    assert not again.from_cache and again.bpf == first.bpf


def test_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    pytest.importorskip("pyseccomp")
    blocker = tmp_path / "file"
    blocker.write_text("")
    f = SeccompFilter(profile(rules=[umask_rule()]))
    f.prepare(str(blocker / "seccomp"))
    assert f.bpf and not f.from_cache


# --- the default profile ----------------------------------------------------------------------

def test_default_profile_passes_both_schemas() -> None:
    doc = {"ociVersion": "1.2.0", "linux": {"seccomp": default_profile()}}
    validate.validate_config(doc)
    if OFFICIAL.is_dir():
        jsonschema = pytest.importorskip("jsonschema")
        referencing = pytest.importorskip("referencing")
        from referencing.jsonschema import DRAFT4

        docs = {p.name: json.loads(p.read_text()) for p in OFFICIAL.glob("*.json")}
        registry = referencing.Registry().with_resources(
            (name, DRAFT4.create_resource(d)) for name, d in docs.items())
        validator = jsonschema.Draft4Validator(docs["config-schema.json"], registry=registry)
        assert [e.message for e in validator.iter_errors(doc)] == []


def test_default_profile_shape() -> None:
    doc = default_profile("x86_64")
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == errno.EPERM
    assert doc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert default_profile("aarch64")["architectures"][0] == "SCMP_ARCH_AARCH64"
    assert "architectures" not in default_profile("mips")
    allowed = {n for r in doc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
               for n in r["names"]}
    for name in ("read", "write", "execve", "clone3", "mmap", "exit_group"):
        assert (name in allowed) == (name != "clone3")
    for name in ("reboot", "swapon", "swapoff", "init_module", "finit_module", "delete_module",
                 "kexec_load", "mount", "umount2", "pivot_root", "unshare", "setns", "bpf",
                 "open_by_handle_at", "keyctl", "add_key", "perf_event_open", "acct"):
        assert name not in allowed, name
    SeccompFilter(doc)  # and it passes ocirt's own checks


def test_default_profile_compiles(cache: Path) -> None:
    pytest.importorskip("pyseccomp")
    f = SeccompFilter(default_profile())
    f.prepare(str(cache))
    assert f.bpf and len(f.bpf) % 8 == 0 and len(f.bpf) // 8 < 4096


# --- loading, in a forked child ---------------------------------------------------------------

def run_in_child(bpf: bytes, flags: int, call: Any) -> int:
    """Fork; the child sets no_new_privs, loads ``bpf`` and exits with call()'s result."""
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            kseccomp.install_filter(bpf, flags)
            os._exit(call())
        except BaseException:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def umask_errno() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(95, 0o22)  # umask on x86_64
    return ctypes.get_errno() if result < 0 else 0


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="uses the x86_64 umask number")
@pytest.mark.parametrize("flags", [0, rules.SECCOMP_FILTER_FLAG_LOG,
                                   rules.SECCOMP_FILTER_FLAG_TSYNC])
def test_install_really_filters(cache: Path, flags: int) -> None:
    pytest.importorskip("pyseccomp")
    f = SeccompFilter(profile(rules=[umask_rule(errnoRet=errno.EXDEV)]))
    f.prepare(str(cache))
    assert f.bpf is not None
    assert run_in_child(f.bpf, flags, umask_errno) == errno.EXDEV
    assert umask_errno() == 0  # the parent is untouched


def test_features() -> None:
    feats = seccomp.features()
    assert feats["enabled"] is True
    assert set(feats["supportedFlags"]) <= set(feats["knownFlags"])
    assert "SCMP_ACT_NOTIFY" in feats["actions"] and "SCMP_CMP_MASKED_EQ" in feats["operators"]


def test_cache_keeps_the_newest(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyseccomp")
    monkeypatch.setattr(bpf_cache, "CACHE_ENTRIES", 2)
    for errno_ret in (1, 2, 3):
        SeccompFilter(profile(rules=[umask_rule(errnoRet=errno_ret)])).prepare(str(cache))
    names = {p.name for p in cache.iterdir()}
    assert len(names) == 2
    assert f"{SeccompFilter(profile(rules=[umask_rule(errnoRet=3)])).key()}.bpf" in names
