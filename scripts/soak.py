"""Soak a runtime with random container lifecycles, some with the runtime SIGKILLed mid-way.

    sudo /opt/ocirt/venv/bin/python scripts/soak.py [--lifecycles 200] [--seed N]
                                                    [--runtime CMD] [--kill-rate 0.3]

Each lifecycle makes a container of one of three configs (the default one, one without a pid
namespace whose init leaves a child behind, one without a mount namespace) and walks it through
a random sequence of legal and illegal operations: create, start, state, kill, kill --all,
delete with and without --force, a second create of the same ID, a second start. With
probability ``--kill-rate`` a create, start, kill or delete --force is SIGKILLed after a random
delay within the time that operation takes here (half the killed creates within 20 ms of their
state directory appearing, when the state and the cgroups are being made). After every
operation nothing runs but this script, so a ``state`` that says ``creating`` is a *dead
creating*: nobody is creating it any more. Each lifecycle ends with ``delete --force`` and a
search for what is left: the state directory, a cgroup named after the ID in any hierarchy, a
process carrying the lifecycle's token in its environment, a mount under the rootfs. What is
found is counted, then removed (those processes by pid, those cgroups, those mounts), so
lifecycles stay independent.

The runtime is ``python -m ocirt`` from this checkout unless ``--runtime`` names another command
(``runc``, a launcher). The script runs in a private mount namespace of its own, so the mounts of
a container without a mount namespace never reach the host's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKEN_VAR = "OCIRT_SOAK"
TIMEOUT = 30.0
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 0x40000
KILLABLE = ("create", "start", "kill", "delete --force")


def private_mount_namespace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE,
                                                     None) != 0:
        sys.exit(f"soak: private mount namespace: {os.strerror(ctypes.get_errno())}")


def make_bundles(base: Path) -> dict[str, Path]:
    rootfs = base / "rootfs"
    shutil.copytree(REPO / "bundles" / "busybox" / "rootfs", rootfs, symlinks=True)
    config = json.loads((REPO / "bundles" / "busybox" / "config.json").read_text())
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "sleep 300 & exec sleep 301"]
    namespaces = config["linux"]["namespaces"]
    variants = {
        "default": config,
        "no-pid-ns": {**config, "linux": {**config["linux"], "namespaces": [
            ns for ns in namespaces if ns["type"] != "pid"]}},
        "no-mount-ns": {**config, "linux": {  # runc refuses masks without a mount namespace
            **{k: v for k, v in config["linux"].items()
               if k not in ("maskedPaths", "readonlyPaths")},
            "namespaces": [ns for ns in namespaces if ns["type"] != "mount"]}},
    }
    bundles = {}
    for name, variant in variants.items():
        (base / name).mkdir()
        (base / name / "config.json").write_text(json.dumps(variant, indent=2))
        bundles[name] = base / name
    return bundles


class Soak:
    def __init__(self, runtime: list[str], root: Path, rootfs: Path, rng: random.Random,
                 kill_rate: float) -> None:
        self.runtime, self.root, self.rootfs = runtime, root, rootfs
        self.rng, self.kill_rate = rng, kill_rate
        self.env = dict(os.environ)
        if runtime[1:3] == ["-m", "ocirt"]:
            self.env["PYTHONPATH"] = str(REPO)
        self.duration: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.dead_creating: set[str] = set()

    def note(self, what: str, example: str) -> None:
        self.counts[what] += 1
        self.examples.setdefault(what, example)

    def call(self, token: str, *args: str, kill: bool = False) -> tuple[int, str, str]:
        """Run one runtime command (SIGKILLed after a random delay if ``kill``); its exit
        status (-9 if killed), stdout and stderr (files, never pipes: a container created
        without a terminal keeps the runtime's stdio)."""
        env = {**self.env, TOKEN_VAR: token}
        op = "delete --force" if args[:2] == ("delete", "--force") else args[0]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            began = time.monotonic()
            proc = subprocess.Popen([*self.runtime, "--root", str(self.root), *args], env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            try:
                if kill and op == "create" and self.rng.random() < 0.5:
                    # aim at the start of the work: the state and the cgroups are made then
                    self.wait_for_state_dir(args[-1], proc)
                    time.sleep(self.rng.uniform(0, 0.02))
                elif kill:
                    time.sleep(self.rng.uniform(0, self.duration.get(op, 0.1) * 1.1))
                if kill:
                    proc.send_signal(signal.SIGKILL)
                status = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                status = -1
            if not kill and status == 0:
                self.duration.setdefault(op, time.monotonic() - began)
            if kill:
                self.note(f"killed mid-way: {op}", " ".join(args))
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            text = err.read().decode(errors="replace")
        if status == -1:
            self.note("timeouts", f"{' '.join(args)} (after {TIMEOUT:.0f} s)")
        if "Traceback" in text or "internal error" in text or "panic" in text:
            self.note("tracebacks or internal errors", f"{' '.join(args)}: {text[-300:]}")
        return status, stdout, text

    def wait_for_state_dir(self, cid: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while (not (self.root / cid).exists() and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.0002)

    def status(self, token: str, cid: str) -> str:
        code, out, _ = self.call(token, "state", cid)
        if code != 0:
            return "absent"
        try:
            status: str = json.loads(out)["status"]
        except (ValueError, KeyError):
            return "absent"
        if status == "creating":
            self.note("dead `creating` seen", cid)
            self.dead_creating.add(cid)
        return status

    def lifecycle(self, n: int, bundle: Path) -> None:
        cid = f"soak-{n}-{os.urandom(3).hex()}"
        token = cid
        self.counts["lifecycles"] += 1
        steps = ["create", *self.rng.choices(
            ["start", "state", "kill", "kill --all", "delete", "delete --force", "create",
             "start", "state", "kill KILL"], k=self.rng.randint(2, 6))]
        for step in steps:
            kill = step.split()[0] in ("create", "start", "kill") or step == "delete --force"
            kill = kill and self.rng.random() < self.kill_rate
            if step == "create":
                self.call(token, "create", "--bundle", str(bundle), cid, kill=kill)
            elif step == "state":
                self.status(token, cid)
                continue
            elif step == "kill --all":
                self.call(token, "kill", "--all", cid, "KILL", kill=kill)
            elif step == "kill KILL":
                self.call(token, "kill", cid, "KILL", kill=kill)
            elif step == "kill":
                self.call(token, "kill", cid, "TERM", kill=kill)
            elif step == "delete --force":
                self.call(token, "delete", "--force", cid, kill=kill)
            else:
                self.call(token, step, cid, kill=kill)
            self.counts["operations"] += 1
            self.status(token, cid)
        code, _, text = self.call(token, "delete", "--force", cid)
        if code != 0:
            self.note("final delete --force failed", f"{cid}: {text.strip()[-300:]}")
        time.sleep(0.05)  # what delete killed may take a moment to go
        self.leftovers(cid, token)

    def calibrate(self, bundle: Path) -> None:
        """How long each killable operation takes here, unkilled: the range of the delays."""
        cid = f"soak-calibrate-{os.urandom(3).hex()}"
        for args in (("create", "--bundle", str(bundle), cid), ("start", cid),
                     ("kill", cid, "KILL"), ("delete", "--force", cid)):
            if self.call(cid, *args)[0] != 0:
                sys.exit(f"soak: {' '.join(args)} fails: the runtime cannot run this bundle")
        self.leftovers(cid, cid)
        self.counts.clear()
        self.examples.clear()

    def leftovers(self, cid: str, token: str) -> None:
        found = []
        if (self.root / cid).exists():
            found.append("state dir")
            shutil.rmtree(self.root / cid, ignore_errors=True)
        pids = processes_with(f"{TOKEN_VAR}={token}".encode())
        if pids:
            found.append("process")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        mounts = mounts_under(self.rootfs)
        if mounts:
            found.append("mount")
            for point in reversed(mounts):
                subprocess.run(["umount", "-l", point], check=False)
        cgroups = cgroup_dirs({cid, f"ocirt-{cid}"})
        if cgroups:
            found.append("cgroup")
            remove_cgroups(cgroups)
        for what in found:
            self.note(f"leftover after delete --force: {what}", cid)
        if found:
            self.note("lifecycles with leftovers", cid)

    def summary(self, runtime: str, seed: int, seconds: float) -> str:
        c = self.counts
        killed = {k.split(": ", 1)[1]: v for k, v in c.items() if k.startswith("killed")}
        left = {k.rsplit(": ", 1)[1]: v for k, v in c.items() if k.startswith("leftover")}
        lines = [
            f"soak: {runtime}: {c['lifecycles']} lifecycles, {c['operations']} operations, "
            f"seed {seed}, {seconds:.0f} s",
            f"  runtime SIGKILLed mid-way:        {sum(killed.values())} {killed or ''}",
            f"  dead `creating` seen by `state`:  {c['dead `creating` seen']} times, in "
            f"{len(self.dead_creating)} lifecycles",
            f"  lifecycles with leftovers:        {c['lifecycles with leftovers']} "
            f"{left or ''}",
            f"  final delete --force failed:      {c['final delete --force failed']}",
            f"  tracebacks / internal errors:     {c['tracebacks or internal errors']}",
            f"  timeouts:                         {c['timeouts']}",
        ]
        for what, example in sorted(self.examples.items()):
            if not what.startswith("killed"):
                lines.append(f"  e.g. {what}: {example}")
        return "\n".join(lines)


def processes_with(needle: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as handle:
                    if needle in handle.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                continue
    return found


def mounts_under(path: Path) -> list[str]:
    prefix = f"{path}/"
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return [p for p in points if p == str(path) or p.startswith(prefix)]


def cgroup_dirs(names: set[str]) -> list[str]:
    found = []
    for top in Path("/sys/fs/cgroup").iterdir():
        if top.is_dir() and not top.is_symlink():
            for here, dirs, _ in os.walk(top):
                found += [os.path.join(here, d) for d in dirs if d in names]
    return found


def remove_cgroups(directories: list[str]) -> None:
    for directory in directories:
        for pid in Path(directory, "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        freezer = Path(directory, "freezer.state")
        if freezer.exists():
            freezer.write_text("THAWED")
    for directory in sorted(directories, key=len, reverse=True):
        for _ in range(100):
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--kill-rate", type=float, default=0.3,
                        help="chance that a create/start/kill/delete --force is SIGKILLed")
    parser.add_argument("--runtime", default=f"{sys.executable} -m ocirt",
                        help="the runtime's command (default: this checkout's ocirt)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak: needs root")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    private_mount_namespace()
    base = Path(tempfile.mkdtemp(prefix="ocirt-soak-"))
    try:
        bundles = make_bundles(base)
        soak = Soak(shlex.split(args.runtime), base / "state", base / "rootfs",
                    random.Random(seed), args.kill_rate)
        began = time.monotonic()
        soak.calibrate(bundles["default"])
        names = sorted(bundles)
        for n in range(args.lifecycles):
            soak.lifecycle(n, bundles[soak.rng.choice(names)])
            if (n + 1) % 50 == 0:
                print(f"soak: {n + 1}/{args.lifecycles}", file=sys.stderr)
        print(soak.summary(args.runtime, seed, time.monotonic() - began))
    finally:
        for point in reversed(mounts_under(base)):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
