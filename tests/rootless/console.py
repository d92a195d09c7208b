"""A console socket the rootless test user may connect to."""

from __future__ import annotations

from testkit import ConsoleSocket

from .support import UserRuntime, Workspace


class UserConsoleListener(ConsoleSocket):
    """A ``--console-socket`` the test user may connect to (in the session's directory)."""

    def __init__(self, space: Workspace) -> None:
        super().__init__(str(space.new_dir("cs")), owner=(space.user.uid, space.user.gid),
                         timeout=5.0)

    def master_from(self, urt: UserRuntime, verb: str, *args: str) -> int:
        """Run ``verb --console-socket <ours> args...`` as the user: the pty master it sends."""
        urt.ok(verb, "--console-socket", self.path, *args)
        return self.receive()
