"""The sync channel: messages that overtake the awaited one are kept for later, never lost."""

from __future__ import annotations

import pytest

from ocirt.container.sync import Channel
from ocirt.errors import OcirtError


def test_init_ready_overtaking_stage1_pid_is_kept() -> None:
    parent, child = Channel.pair()
    try:
        child.send("ready")  # init was quicker than stage-1
        child.send("pid", pid=42)
        assert parent.expect("pid", "forking", later=("hooks", "ready"))["pid"] == 42
        assert parent.expect("ready", "setting up")["type"] == "ready"
    finally:
        parent.close()
        child.close()


def test_unexpected_and_error_messages() -> None:
    parent, child = Channel.pair()
    try:
        child.send("ready")
        with pytest.raises(OcirtError, match="unexpected sync message 'ready'"):
            parent.expect("pid", "forking")
        child.send("error", msg="mount failed")
        with pytest.raises(OcirtError, match="mount failed"):
            parent.expect("pid", "forking", later=("ready",))
        child.close()
        with pytest.raises(OcirtError, match="exited before it was set up"):
            parent.expect("pid", "forking")
    finally:
        parent.close()


def test_an_error_sent_before_the_peer_exits_with_our_message_unread_is_read() -> None:
    """A child that fails before it reads "go" closes with "go" unread: the kernel reports
    ECONNRESET to the parent once, before the child's error, which must still come through."""
    parent, child = Channel.pair()
    try:
        child.send("error", msg="joining the cgroup: EINVAL")
        parent.send("go")  # never read
        child.close()
        with pytest.raises(OcirtError, match="joining the cgroup: EINVAL"):
            parent.expect("pid", "exec: forking the process")
    finally:
        parent.close()
