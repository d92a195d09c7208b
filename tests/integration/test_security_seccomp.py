"""seccomp: the filter the config describes is the one the container's program runs under.

Each test runs ``/sectool`` (a static helper, see ``security_support``) in the container to make
a syscall and print its result, or reads ``Seccomp:`` from /proc/self/status.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from ocirt.config.seccomp_profile import default_profile

from .security_support import (
    NotifyAgent,
    libc_syscall_number,
    parse_result,
    seccomp_profile,
    sectool,
    status_fields,
    with_sectool,
)
from .support import ROOT_MARKS, RUNTIME_NAME, requires_ocirt

pytestmark = ROOT_MARKS

SIGSYS_EXIT = 128 + 31
EPERM, ENOENT, EBADF, EACCES, EFAULT, EXDEV, EINVAL, ENOSYS = 1, 2, 9, 13, 14, 18, 22, 38
UMASK_LOW, UMASK, UMASK_HIGH = 0o21, 0o22, 0o23


@pytest.fixture
def tool_rootfs(private_rootfs: Path) -> Path:
    with_sectool(private_rootfs)
    return private_rootfs


def run(rt, bundle, config, name="c"):
    cid = rt.new_id(name)
    return rt("run", "--bundle", str(bundle(config, name=cid)), cid, timeout=20)


def script(*lines: str) -> list[str]:
    return ["sh", "-c", "; ".join(lines)]


def syscall_result(rt, bundle, config):
    result = run(rt, bundle, config)
    assert result.returncode == 0, result
    return parse_result(result.stdout)


ADMIN_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_BOOT",
              "CAP_SYS_MODULE", "CAP_SYS_ADMIN"]
# Arguments that cannot do anything even where allowed: a bad reboot magic, NULL paths, fd -1.
BLOCKED = [("reboot", "0 0 0 0"), ("swapon", "0 0"), ("swapoff", "0"),
           ("init_module", "0 0 0"), ("finit_module", "4294967295 0 0"),
           ("delete_module", "0 0")]


def test_default_profile_blocks_admin_syscalls_and_a_shell_works(rt, make_config, bundle,
                                                                   tool_rootfs):
    """The seed's filter (what `ocirt spec` writes): even with the capabilities these
    syscalls need, the filter answers EPERM; without it the kernel gets to say no itself."""
    calls = [f"/sectool sys {name} {args}" for name, args in BLOCKED]
    caps = {kind: ADMIN_CAPS for kind in ("bounding", "effective", "permitted")}
    filtered = make_config(script(*calls), rootfs_path=tool_rootfs, process__capabilities=caps)
    filtered["linux"]["seccomp"] = default_profile()
    result = run(rt, bundle, filtered)
    assert result.returncode == 0, result
    errnos = [parse_result(line)["errno"] for line in result.stdout.splitlines()]
    assert errnos == [EPERM] * len(BLOCKED), result

    control = make_config(script(*calls), rootfs_path=tool_rootfs, process__capabilities=caps)
    result = run(rt, bundle, control)
    assert result.returncode == 0, result
    errnos = [parse_result(line)["errno"] for line in result.stdout.splitlines()]
    assert EPERM not in errnos, f"the control run must not fail with EPERM: {result}"

    session = make_config(["sh", "-c", """
        set -e
        grep '^Seccomp:' /proc/self/status
        cd /dev/shm && mkdir d && echo hello > d/f && cat d/f | tr a-z A-Z
        (sleep 0.1; echo sub) & wait
        ls /bin | wc -l >/dev/null; id -u; date >/dev/null; ps >/dev/null
        echo "$(hostname)" >/dev/null; kill -0 $$; test -x /bin/sh && echo done
    """], rootfs_path=tool_rootfs)
    session["linux"]["seccomp"] = default_profile()
    result = run(rt, bundle, session)
    assert result.returncode == 0, result
    assert result.stdout.split() == ["Seccomp:", "2", "HELLO", "sub", "0", "done"], result


def test_no_profile_no_filter(rt, make_config, bundle):
    result = run(rt, bundle, make_config(["grep", "^Seccomp:", "/proc/self/status"]))
    assert result.returncode == 0, result
    assert result.stdout.split() == ["Seccomp:", "0"]


def test_errno_ret_and_default_errno_ret(rt, make_config, bundle, tool_rootfs):
    config = make_config(["/sectool", "sys", "umask", "18"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES}])
    assert syscall_result(rt, bundle, config) == {"ret": -1, "errno": EACCES}

    config = make_config(["/sectool", "sys", "umask", "18"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO"}])
    assert syscall_result(rt, bundle, config) == {"ret": -1, "errno": EPERM}  # the default

    config = make_config(["/sectool", "sys", "reboot", "0", "0", "0", "0"],
                         rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = dict(default_profile(), defaultErrnoRet=EXDEV)
    assert syscall_result(rt, bundle, config) == {"ret": -1, "errno": EXDEV}


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_KILL_PROCESS"])
def test_kill_actions(rt, make_config, bundle, tool_rootfs, action):
    config = make_config(["/sectool", "sys", "umask", "18"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[{"names": ["umask"], "action": action}])
    result = run(rt, bundle, config)
    assert result.returncode == SIGSYS_EXIT, result
    assert "ret=" not in result.stdout


def test_trap_sends_sigsys(rt, make_config, bundle, tool_rootfs):
    config = make_config(["/sectool", "trap", "umask", "18"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_TRAP"}])
    result = run(rt, bundle, config)
    assert result.returncode == 42, result
    assert result.stdout.strip() == f"SIGSYS syscall={_nr('umask')}"


def test_trace_without_tracer_is_enosys(rt, make_config, bundle, tool_rootfs):
    config = make_config(["/sectool", "sys", "umask", "18"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}])
    assert syscall_result(rt, bundle, config) == {"ret": -1, "errno": ENOSYS}


def test_log_allows(rt, make_config, bundle, tool_rootfs):
    config = make_config(["/sectool", "sys", "umask", "18"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile("SCMP_ACT_ALLOW", rules=[
        {"names": ["umask"], "action": "SCMP_ACT_LOG"}])
    assert syscall_result(rt, bundle, config) == {"ret": 0o022, "errno": 0}


def test_allow_rule_over_an_errno_default(rt, make_config, bundle, tool_rootfs):
    """add_key is not in the default allow-list; a rule allowing it lets the kernel answer."""
    config = make_config(["/sectool", "sys", "add_key", "0", "0", "0", "0", "0"],
                         rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = default_profile()
    assert syscall_result(rt, bundle, config) == {"ret": -1, "errno": EPERM}
    profile = default_profile()
    profile["syscalls"].append({"names": ["add_key"], "action": "SCMP_ACT_ALLOW"})
    config["linux"]["seccomp"] = profile
    assert syscall_result(rt, bundle, config) == {"ret": -1, "errno": EFAULT}


# (op, value, valueTwo) -> which of umask(0o21), umask(0o22), umask(0o23) it matches
COMPARISONS = {
    "SCMP_CMP_NE": (UMASK, 0, [True, False, True]),
    "SCMP_CMP_LT": (UMASK, 0, [True, False, False]),
    "SCMP_CMP_LE": (UMASK, 0, [True, True, False]),
    "SCMP_CMP_EQ": (UMASK, 0, [False, True, False]),
    "SCMP_CMP_GE": (UMASK, 0, [False, True, True]),
    "SCMP_CMP_GT": (UMASK, 0, [False, False, True]),
    # (arg & 0o3) == 0o1
    "SCMP_CMP_MASKED_EQ": (0o3, 0o1, [True, False, False]),
}


@pytest.mark.parametrize("op", sorted(COMPARISONS))
def test_argument_comparisons(rt, make_config, bundle, tool_rootfs, op):
    value, value_two, expected = COMPARISONS[op]
    arg: dict[str, object] = {"index": 0, "value": value, "op": op}
    if op == "SCMP_CMP_MASKED_EQ":
        arg["valueTwo"] = value_two
    calls = [f"/sectool sys umask {mode}" for mode in (UMASK_LOW, UMASK, UMASK_HIGH)]
    config = make_config(script(*calls), rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES, "args": [arg]}])
    result = run(rt, bundle, config)
    assert result.returncode == 0, result
    matched = [parse_result(line)["errno"] == EACCES for line in result.stdout.splitlines()]
    assert matched == expected, result


def test_two_conditions_on_one_argument_are_or(rt, make_config, bundle, tool_rootfs):
    calls = [f"/sectool sys umask {mode}" for mode in (UMASK_LOW, UMASK, UMASK_HIGH)]
    config = make_config(script(*calls), rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES,
         "args": [{"index": 0, "value": UMASK_LOW, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": UMASK_HIGH, "op": "SCMP_CMP_EQ"}]}])
    result = run(rt, bundle, config)
    assert result.returncode == 0, result
    matched = [parse_result(line)["errno"] == EACCES for line in result.stdout.splitlines()]
    assert matched == [True, False, True], result


@pytest.mark.skipif(platform.machine() != "x86_64", reason="i386 syscalls on x86_64 only")
def test_architectures(rt, make_config, bundle, tool_rootfs):
    host = subprocess.run([str(sectool()), "i386-getpid"], capture_output=True, text=True,
                          check=False)
    if host.returncode != 0:
        pytest.skip("this kernel runs no i386 syscalls (no IA32 emulation)")
    config = make_config(["/sectool", "i386-getpid"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(architectures=["SCMP_ARCH_X86_64"])
    result = run(rt, bundle, config)
    assert result.returncode == SIGSYS_EXIT, result  # an architecture not listed is killed

    config["linux"]["seccomp"] = seccomp_profile(
        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        rules=[{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV}])
    result = run(rt, bundle, config)
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"ret={-EXDEV}"  # the i386 getpid met the rule


@pytest.mark.parametrize("flags", [["SECCOMP_FILTER_FLAG_LOG"], ["SECCOMP_FILTER_FLAG_TSYNC"],
                                   ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                                   ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                    "SECCOMP_FILTER_FLAG_TSYNC"]])
def test_flags(rt, make_config, bundle, tool_rootfs, flags):
    if RUNTIME_NAME == "runc":
        pytest.skip("runc 1.1 refuses seccomp flags (\"not yet supported by runc\")")
    config = make_config(script("grep -E '^(Seccomp|Speculation_Store_Bypass):' "
                                "/proc/self/status", "/sectool sys umask 18"),
                         rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(flags=flags, rules=[
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV}])
    result = run(rt, bundle, config)
    assert result.returncode == 0, result
    fields = status_fields(result.stdout)
    assert fields["Seccomp"] == "2"
    assert parse_result(result.stdout)["errno"] == EXDEV
    host = status_fields(Path("/proc/self/status").read_text())["Speculation_Store_Bypass"]
    if "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in flags and "thread" in host:
        assert "force mitigated" not in fields["Speculation_Store_Bypass"], result


def test_unknown_syscall_name_is_skipped(rt, make_config, bundle, tool_rootfs, tmp_path):
    config = make_config(["/sectool", "sys", "umask", "18"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["ocirt_no_such_syscall", "umask"], "action": "SCMP_ACT_ERRNO",
         "errnoRet": EXDEV}])
    cid = rt.new_id()
    log = tmp_path / "runtime.log"
    result = rt("--log", str(log), "--debug", "run", "--bundle", str(bundle(config)), cid)
    assert result.returncode == 0, result
    assert parse_result(result.stdout) == {"ret": -1, "errno": EXDEV}
    if "ocirt" in " ".join(rt.argv()):
        assert "ocirt_no_such_syscall" in log.read_text()


def test_notify_fd_reaches_the_listener(rt, make_config, bundle, tool_rootfs):
    """SCMP_ACT_NOTIFY: the agent gets the container process state with seccompFd, and its
    answers are what the program's syscalls return."""
    if platform.machine() != "x86_64":
        pytest.skip("the agent knows x86_64 syscall numbers only")
    getppid = libc_syscall_number("getppid")
    socket_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    listener = socket_dir / f"ocirt-agent-{os.getpid()}-{os.urandom(3).hex()}.sock"
    agent = NotifyAgent(listener, lambda nr: (4242, 0) if nr == getppid else (0, -EPERM))
    try:
        config = make_config(["/sectool", "sys", "getppid"], rootfs_path=tool_rootfs)
        config["linux"]["seccomp"] = seccomp_profile(
            listenerPath=str(listener), listenerMetadata="hello agent",
            rules=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}])
        cid = rt.new_id("notify")
        result = rt("run", "--bundle", str(bundle(config)), cid, timeout=20)
        assert result.returncode == 0, result
        assert parse_result(result.stdout) == {"ret": 4242, "errno": 0}
    finally:
        agent.close()
        listener.unlink(missing_ok=True)
    assert not agent.errors, agent.errors
    assert agent.handled == [getppid]
    state = agent.state
    assert state is not None
    assert state["fds"] == ["seccompFd"] and agent.fd_count == 1
    assert state["metadata"] == "hello agent"
    assert state["state"]["id"] == cid and state["pid"] > 1
    assert state["state"]["pid"] == state["pid"]


def test_notify_without_listener_fails_create(rt, make_config, bundle):
    config = make_config(["true"])
    config["linux"]["seccomp"] = seccomp_profile(
        rules=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}])
    cid = rt.new_id()
    rt.fails("create", "--bundle", str(bundle(config)), cid)


@requires_ocirt
def test_filter_comes_after_everything_the_runtime_does(rt, make_config, bundle, tool_rootfs):
    """Blocking what init uses to build the container (mount, pivot_root, the identity change,
    capabilities, the sync socket, hostname, keyring, chdir) does not stop it: only the
    program runs under the filter."""
    blocked = ["mount", "umount2", "pivot_root", "sethostname", "setresuid", "setresgid",
               "setgroups", "capset", "prctl", "keyctl", "chdir", "fchdir", "select",
               "pselect6", "accept", "accept4", "recvfrom", "recvmsg", "sendto", "sendmsg",
               "socket", "connect", "rt_sigaction", "rt_sigprocmask", "umask", "openat2",
               "setsid", "unshare", "setrlimit", "prlimit64", "wait4", "clone", "fork"]
    config = make_config(["/sectool", "sys", "umask", "18"], rootfs_path=tool_rootfs,
                         process__user={"uid": 1000, "gid": 1000})
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": blocked, "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV}])
    assert syscall_result(rt, bundle, config) == {"ret": -1, "errno": EXDEV}


def test_without_no_new_privileges_a_non_root_process_is_filtered(rt, make_config, bundle,
                                                                  tool_rootfs):
    """noNewPrivileges false and no CAP_SYS_ADMIN after the user change: the filter must be
    loaded before that change, or the kernel refuses it."""
    config = make_config(script("grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status",
                                "/sectool sys umask 18"),
                         rootfs_path=tool_rootfs, process__noNewPrivileges=False,
                         process__user={"uid": 1000, "gid": 1000})
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV}])
    result = run(rt, bundle, config)
    assert result.returncode == 0, result
    fields = status_fields(result.stdout)
    assert (fields["Seccomp"], fields["NoNewPrivs"]) == ("2", "0"), result
    assert parse_result(result.stdout)["errno"] == EXDEV


@pytest.mark.parametrize("caps", [None, ["CAP_KILL"]], ids=["no-capabilities", "one-capability"])
def test_early_filter_does_not_block_the_runtime(rt, make_config, bundle, tool_rootfs, caps):
    """noNewPrivileges false, a non-root user, and a profile refusing what ocirt itself uses
    to find the program and check the cwd (faccessat2, getcwd; as the OCI conformance suite's
    profile does): the container still starts, the program is filtered, and CAP_SYS_ADMIN
    (kept only to load the filter) is gone."""
    config = make_config(script("grep -E '^(Seccomp|CapEff):' /proc/self/status",
                                "/sectool sys umask 18"),
                         rootfs_path=tool_rootfs, process__noNewPrivileges=False,
                         process__user={"uid": 1000, "gid": 1000}, process__cwd="/tmp")
    if caps is None:
        config["process"].pop("capabilities", None)
    else:
        config["process"]["capabilities"] = {name: caps for name in
                                             ("bounding", "effective", "permitted")}
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["faccessat2", "getcwd", "umask"], "action": "SCMP_ACT_ERRNO",
         "errnoRet": EXDEV}])
    result = run(rt, bundle, config)
    assert result.returncode == 0, result
    fields = status_fields(result.stdout)
    assert fields["Seccomp"] == "2", result
    # A non-root program without ambient capabilities holds none after execve: above all not
    # the CAP_SYS_ADMIN init kept to load the filter.
    assert fields["CapEff"] == "0000000000000000", result
    assert parse_result(result.stdout)["errno"] == EXDEV


@requires_ocirt
@pytest.mark.parametrize(("rule", "where"), [
    ({"names": ["umask"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1},
     "$.linux.seccomp.syscalls[0].errnoRet"),
    ({"names": ["umask"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]},
     "$.linux.seccomp.syscalls[0].args[0].index"),
    ({"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"},
     "$.linux.seccomp.syscalls[0].names[0]"),
])
def test_bad_rules_fail_create_naming_the_path(rt, make_config, bundle, rule, where):
    config = make_config(["true"])
    config["linux"]["seccomp"] = seccomp_profile(rules=[rule], listenerPath="/nonexistent")
    result = rt.fails("create", "--bundle", str(bundle(config)), rt.new_id())
    assert where in result.stderr, result


def _nr(name: str) -> int:
    return {"umask": 95}[name] if platform.machine() == "x86_64" else -1


def test_exec_runs_under_the_container_filter(rt, make_config, bundle, tool_rootfs):
    config = make_config(["sleep", "30"], rootfs_path=tool_rootfs)
    config["linux"]["seccomp"] = seccomp_profile(rules=[
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": EXDEV}])
    cid = rt.new_id("exec")
    rt.ok("run", "--detach", "--bundle", str(bundle(config)), cid)
    result = rt("exec", cid, "/sectool", "sys", "umask", "18")
    assert result.returncode == 0, result
    assert parse_result(result.stdout) == {"ret": -1, "errno": EXDEV}
