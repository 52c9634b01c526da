"""Processes of this machine, as the local runtime names them (``host:pid``)."""

from __future__ import annotations

import os
import socket


def runner_name() -> str:
    """This process's name: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_gone(runner: str | None) -> bool:
    """The process ``runner`` names (``host:pid``) ran on this machine and is no longer
    alive; False where that cannot be known (another host, not a name, no permission)."""
    host, _, pid = str(runner or "").rpartition(":")
    if not host or host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
