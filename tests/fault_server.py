"""The Commonroom application with two places where a test can make its server process die, by
SIGKILL (nothing is cleaned up, as when a machine loses power), for `tests/test_faults.py`:

- a message whose body contains DIE_BEFORE_SAVE kills the process as it is about to be saved;
- one whose body contains DIE_AFTER_SAVE kills it once the message is committed, before it is
  published to the room or acknowledged to its sender.

Started with `daphne_processes(..., application="tests.fault_server:application")`.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from commonroom.asgi import application
from messaging import services
from messaging.models import Room

DIE_BEFORE_SAVE = "[die before save]"
DIE_AFTER_SAVE = "[die after save]"

__all__ = ["application"]

_send_message = services.send_message


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def send_message(**kwargs: Any) -> services.Sent:
    if DIE_BEFORE_SAVE in str(kwargs.get("body")):
        _die()
    return _send_message(**kwargs)


def die_after_save(room: Room, event: dict[str, Any]) -> None:
    """The first of the publishers, which run after the commit."""
    if DIE_AFTER_SAVE in str((event.get("message") or {}).get("body")):
        _die()


services.send_message = send_message
services._publishers.insert(0, die_after_save)
