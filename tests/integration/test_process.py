"""The container's process: program lookup, environment, cwd, identity, limits, capabilities."""

from __future__ import annotations

import os
import sys

import pytest
from testkit import build_pack, install_copy

from .feature_support import status_fields
from .support import (
    CONTAINER_PATH,
    IS_OCIRT,
    ROOT_MARKS,
    TOKEN_VAR,
    assert_nothing_left,
    requires_ocirt,
    run_captured,
)

pytestmark = ROOT_MARKS

NOT_FOUND = "executable file not found in $PATH"


def run(rt, bundle, config, *options, name="bundle", **kwargs):
    cid = rt.new_id()
    return cid, rt("run", *options, "--bundle", str(bundle(config, name)), cid, **kwargs)


def run_ok(rt, bundle, config, *options, **kwargs):
    _, result = run(rt, bundle, config, *options, **kwargs)
    assert result.returncode == 0, result
    return result.stdout


@pytest.mark.parametrize("args,path", [
    (["echo", "found"], CONTAINER_PATH),
    (["echo", "found"], "PATH=/nowhere:/bin"),
    (["/bin/echo", "found"], "PATH=/nowhere"),
    (["echo", "found"], "PATH=/bin/"),
])
def test_program_lookup(rt, make_config, bundle, args, path):
    config = make_config(args, process__env=[path])
    assert run_ok(rt, bundle, config) == "found\n"


def test_args_are_passed_verbatim(rt, make_config, bundle):
    args = ["printf", "[%s]", "a b", "", "$HOME", "*", "--flag", "x\ny"]
    assert run_ok(rt, bundle, make_config(args)) == "[a b][][$HOME][*][--flag][x\ny]"


def test_only_process_env_reaches_the_program(rt, make_config, bundle):
    env = [CONTAINER_PATH, "ONE=1", "SPACED=a b c", "EMPTY=", f"{TOKEN_VAR}={rt.token}",
           "HOME=/home/user"]
    caller = dict(rt.env, ITEST_LEAK_CHECK="from-the-host", TERM="dumb")
    output = run_ok(rt, bundle, make_config(["env"], process__env=env), env=caller)
    assert "ITEST_LEAK_CHECK" not in output
    assert sorted(output.splitlines()) == sorted(env)


def test_home_is_set_when_missing(rt, make_config, bundle):
    output = run_ok(rt, bundle, make_config(["env"], process__env=[CONTAINER_PATH]))
    assert "HOME=/root" in output.splitlines()


@pytest.mark.parametrize("cwd", ["/", "/home/user", "/tmp"])
def test_cwd(rt, make_config, bundle, cwd):
    assert run_ok(rt, bundle, make_config(["pwd"], process__cwd=cwd)) == f"{cwd}\n"


def test_missing_cwd_is_created(rt, make_config, bundle, private_rootfs):
    config = make_config(["pwd"], process__cwd="/does/not/exist", rootfs_path=private_rootfs)
    assert run_ok(rt, bundle, config) == "/does/not/exist\n"
    assert (private_rootfs / "does" / "not" / "exist").is_dir()


def test_user_uid_gid_additional_gids(rt, make_config, bundle):
    config = make_config(["sh", "-c", "id -u; id -g; grep -E '^(Uid|Gid|Groups):' "
                                      "/proc/self/status; touch /out/by-user"],
                         process__user={"uid": 1000, "gid": 1001,
                                        "additionalGids": [10, 20, 1001]})
    lines = run_ok(rt, bundle, config).splitlines()
    assert lines[:2] == ["1000", "1001"]
    fields = status_fields("\n".join(lines[2:]))
    assert fields["Uid"] == ["1000"] * 4
    assert fields["Gid"] == ["1001"] * 4
    assert sorted(map(int, fields["Groups"])) == [10, 20, 1001]


def test_user_without_additional_gids_has_no_groups(rt, make_config, bundle):
    config = make_config(["grep", "^Groups:", "/proc/self/status"],
                         process__user={"uid": 65534, "gid": 65534})
    assert run_ok(rt, bundle, config).split() == ["Groups:"]


def test_files_created_by_user(rt, make_config, bundle, out_dir):
    config = make_config(["touch", "/out/by-user"], process__user={"uid": 1234, "gid": 4321})
    run_ok(rt, bundle, config)
    st = (out_dir / "by-user").stat()
    assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_umask(rt, make_config, bundle):
    config = make_config(["sh", "-c", "umask"], process__user={"uid": 0, "gid": 0,
                                                              "umask": 0o27})
    assert run_ok(rt, bundle, config).strip() == "0027"


def test_rlimits(rt, make_config, bundle):
    config = make_config(["sh", "-c", "ulimit -Sn; ulimit -Hn"],
                         process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 777}])
    assert run_ok(rt, bundle, config).split() == ["512", "777"]


def test_capabilities_and_no_new_privileges(rt, make_config, bundle):
    output = run_ok(rt, bundle, make_config(["cat", "/proc/self/status"]))
    fields = status_fields(output)
    expected = (1 << 29) | (1 << 5) | (1 << 10)  # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    for name in ("CapPrm", "CapEff", "CapBnd"):
        assert int(fields[name][0], 16) == expected, name
    assert int(fields["CapInh"][0], 16) == 0
    assert fields["NoNewPrivs"] == ["1"]


def test_no_new_privileges_off(rt, make_config, bundle):
    config = make_config(["grep", "^NoNewPrivs:", "/proc/self/status"],
                         process__noNewPrivileges=False)
    assert run_ok(rt, bundle, config).split() == ["NoNewPrivs:", "0"]


def test_missing_program_with_run(rt, make_config, bundle):
    cid, result = run(rt, bundle, make_config(["no-such-program", "arg"]))
    assert result.returncode != 0, result
    assert NOT_FOUND in result.stderr
    assert "no-such-program" in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_left(rt, cid)


def test_missing_program_with_create(rt, make_config, bundle):
    cid = rt.new_id()
    result = rt.fails("create", "--bundle", str(bundle(make_config(["no-such-program"]))), cid)
    assert NOT_FOUND in result.stderr
    assert_nothing_left(rt, cid)
    rt.fails("state", cid)


def test_missing_absolute_program(rt, make_config, bundle):
    cid, result = run(rt, bundle, make_config(["/bin/no-such-program"]))
    assert result.returncode != 0, result
    assert "/bin/no-such-program" in result.stderr
    assert "no such file or directory" in result.stderr.lower()
    assert_nothing_left(rt, cid)


def test_program_not_executable(rt, make_config, bundle, private_rootfs):
    (private_rootfs / "bin" / "notexec").write_text("#!/bin/sh\necho ran\n")
    (private_rootfs / "bin" / "notexec").chmod(0o644)
    cid, result = run(rt, bundle, make_config(["/bin/notexec"], rootfs_path=private_rootfs))
    assert result.returncode != 0, result
    assert "permission denied" in result.stderr.lower()
    assert "ran" not in result.stdout
    assert_nothing_left(rt, cid)


def test_path_lookup_skips_non_executables(rt, make_config, bundle, private_rootfs):
    (private_rootfs / "first").mkdir()
    (private_rootfs / "first" / "hello").write_text("#!/bin/sh\necho wrong\n")
    (private_rootfs / "second").mkdir()
    (private_rootfs / "second" / "hello").write_text("#!/bin/sh\necho right\n")
    (private_rootfs / "second" / "hello").chmod(0o755)
    config = make_config(["hello"], rootfs_path=private_rootfs,
                         process__env=["PATH=/first:/second:/bin"])
    assert run_ok(rt, bundle, config) == "right\n"


@pytest.mark.skipif(not IS_OCIRT, reason="ocirt's wording")
def test_bad_cwd_error_names_it(rt, make_config, bundle, private_rootfs):
    (private_rootfs / "afile").write_text("")
    cid, result = run(rt, bundle, make_config(["true"], process__cwd="/afile",
                                              rootfs_path=private_rootfs))
    assert result.returncode != 0, result
    assert "/afile" in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_left(rt, cid)


def test_relative_program_path_is_relative_to_cwd(rt, make_config, bundle):
    config = make_config(["./busybox", "echo", "relative"], process__cwd="/bin")
    assert run_ok(rt, bundle, config) == "relative\n"


def test_no_fd_leaks_into_the_container(rt, make_config, bundle, tmp_path):
    leaked = tmp_path / "leaked"
    leaked.write_text("secret\n")
    fd = os.open(leaked, os.O_RDONLY)  # inheritable in the runtime, as fd 7
    try:
        output = run_ok(rt, bundle, make_config(["ls", "/proc/self/fd"]),
                        pass_fds=(fd,), preexec_fn=lambda: os.dup2(fd, 7))
    finally:
        os.close(fd)
    # 3 is the directory ls reads.
    assert output.split() == ["0", "1", "2", "3"]


def test_preserve_fds(rt, make_config, bundle, tmp_path):
    passed = tmp_path / "passed"
    passed.write_text("handed over\n")
    fd = os.open(passed, os.O_RDONLY)
    try:
        output = run_ok(rt, bundle, make_config(["sh", "-c", "cat <&3"]),
                        "--preserve-fds", "1", pass_fds=(fd, 3),
                        preexec_fn=lambda: os.dup2(fd, 3))
    finally:
        os.close(fd)
    assert output == "handed over\n"


@pytest.mark.xfail(not IS_OCIRT, strict=False,
                   reason="runc < 1.1.12 leaks its /sys/fs/cgroup fd (CVE-2024-21626)")
def test_preserve_fds_never_passes_runtime_fds(rt, make_config, bundle):
    """The caller asks for fd 3 but has none: the container must not get one of the
    runtime's own fds in its place (a directory fd outside the root is a way out)."""
    program = ("for fd in /proc/self/fd/*; do [ -d $fd ] && readlink $fd; done; "
               "ls /proc/self/fd/3/../../../../ 2>/dev/null | head -3; true")

    def close_3():
        try:
            os.close(3)
        except OSError:
            pass

    output = run_ok(rt, bundle, make_config(["sh", "-c", program]), "--preserve-fds", "1",
                    preexec_fn=close_3)
    leaked = [line for line in output.splitlines() if not line.startswith("/proc/")]
    assert leaked == [], f"runtime fds reached the container: {leaked}"


@requires_ocirt
def test_preserve_fds_never_passes_the_code_pack(rt, make_config, bundle, tmp_path):
    """Run as set-up installs it, ocirt keeps its code pack open from start-up (close-on-exec),
    often as fd 3: the caller asks for fd 3 but has none, and the container must not get the
    pack (a host file a root process could reopen for writing) in its place."""
    site = install_copy(tmp_path)
    build_pack(site)

    def launcher(name: str, tail: str) -> str:
        path = tmp_path / name
        path.write_text(f"#!{sys.executable} -IS\nimport sys\n\n"
                        f"sys.path[:0] = [{str(site)!r}]\nfrom ocirt import codepack\n\n"
                        f"codepack.install({str(site / 'ocirt')!r})\n{tail}")
        path.chmod(0o755)
        return str(path)

    env = {k: v for k, v in rt.env.items() if k != "PYTHONPATH"}
    probe = launcher("probe", "from ocirt.linux import process\n"
                              "print(sorted(codepack.held_fds()),"
                              " type(process.__loader__).__name__)\n")
    seen = run_captured([probe], env=env, timeout=10, preexec_fn=_close_3)
    assert seen.stdout.split() == ["[3]", "PackFinder"], seen  # the pack is fd 3 here
    program = "head -c 20 /proc/self/fd/3 2>/dev/null; ls /proc/self/fd/ | wc -l"
    cid = rt.new_id()
    result = run_captured([launcher("ocirt", "from ocirt.cli import main\n\nmain()\n"),
                           "--root", str(rt.root), "run", "--preserve-fds", "1", "--bundle",
                           str(bundle(make_config(["sh", "-c", program]))), cid],
                          env=env, timeout=10, preexec_fn=_close_3)
    assert result.returncode == 0, result
    assert "codepack" not in result.stdout, result.stdout
    assert result.stdout.split() == ["4"], result.stdout  # 0, 1, 2 and ls's own directory fd


def _close_3() -> None:
    try:
        os.close(3)
    except OSError:
        pass
