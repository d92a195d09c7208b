"""What this host offers for seccomp: the ``linux.seccomp`` part of ``ocirt features``.

(The default profile ``ocirt spec`` writes is config data: ``ocirt.config.seccomp_profile``.)"""

from __future__ import annotations

from ocirt.errors import OcirtError
from ocirt.linux.seccomp.compile import libseccomp_version
from ocirt.linux.seccomp.rules import (
    ACTIONS,
    ARCHES,
    FLAGS,
    OPERATORS,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
)
from ocirt.linux.syscalls import seccomp as kseccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def features() -> dict[str, Any]:
    """linux.seccomp of the Features structure (features-linux.md)."""
    try:
        libseccomp_version()
    except OcirtError:
        return {"enabled": False}
    # WAIT_KILLABLE_RECV is only valid with a listener: asked together with NEW_LISTENER.
    supported = [name for name, flag in FLAGS.items() if kseccomp.flag_supported(
        flag | (SECCOMP_FILTER_FLAG_NEW_LISTENER
                if flag == SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV else 0))]
    return {"enabled": True, "actions": list(ACTIONS), "operators": list(OPERATORS),
            "archs": list(ARCHES), "knownFlags": list(FLAGS), "supportedFlags": supported}
