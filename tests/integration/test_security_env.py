"""Environment: the program sees process.env (and HOME, as runc adds it), nothing of the
runtime's own environment."""

from __future__ import annotations

from .support import CONTAINER_PATH, ROOT_MARKS, TOKEN_VAR

pytestmark = ROOT_MARKS


def test_only_process_env_reaches_the_program(rt, make_config, bundle):
    config = make_config(["env"])
    config["process"]["env"] += ["GREETING=hello world", "EMPTY=", "DUP=first", "DUP=second"]
    env = dict(rt.env, RUNTIME_SECRET="s3cret", LD_PRELOAD="/nonexistent.so",
               PYTHONSTARTUP="/nonexistent.py", HOME="/host/home")
    cid = rt.new_id("env")
    result = rt("run", "--bundle", str(bundle(config)), cid, env=env)
    assert result.returncode == 0, result
    seen = sorted(result.stdout.splitlines())
    expected = sorted([CONTAINER_PATH, f"{TOKEN_VAR}={rt.token}", "GREETING=hello world",
                       "EMPTY=", "DUP=second", "HOME=/root"])
    assert seen == expected, result


def test_home_from_config_wins(rt, make_config, bundle):
    config = make_config(["sh", "-c", "echo $HOME"])
    config["process"]["env"].append("HOME=/somewhere")
    cid = rt.new_id("env")
    result = rt("run", "--bundle", str(bundle(config)), cid, env=dict(rt.env, HOME="/host"))
    assert result.stdout.strip() == "/somewhere", result
