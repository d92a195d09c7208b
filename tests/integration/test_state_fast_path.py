"""``ocirt [--root DIR] state ID`` is answered without the command table and its parser (see
``ocirt.cli._plain_state``): the same document, errors and exit codes as the full path."""

from __future__ import annotations

import json

from .feature_support import started
from .support import ROOT_MARKS, requires_ocirt

pytestmark = [*ROOT_MARKS, requires_ocirt]


def test_same_document_as_the_full_path(rt, make_config, bundle):
    created = rt.new_id("fast")
    rt.create(created, bundle(make_config(["true"], out=False), "created"))
    running, _ = started(rt, bundle, make_config(["sleep", "100"], out=False), "running")
    for cid in (created, running):
        fast = rt("state", cid)  # --root DIR state ID: the short path
        full = rt("state", cid, global_opts=("--log-format", "text"))  # any other argv: parsed
        assert fast.returncode == full.returncode == 0, (fast, full)
        assert fast.stdout == full.stdout and fast.stderr == full.stderr == "", (fast, full)
        assert json.loads(fast.stdout)["id"] == cid


def test_errors_as_the_full_path(rt):
    for cid in ("no-such-container", "bad/id", ".."):
        fast = rt("state", cid)
        full = rt("state", cid, global_opts=("--log-format", "text"))
        assert fast.returncode == full.returncode != 0, (fast, full)
        assert fast.stderr == full.stderr and fast.stderr.startswith("ocirt: "), (fast, full)
        assert "Traceback" not in fast.stderr and fast.stdout == "", fast
