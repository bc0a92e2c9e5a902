"""Baseline B1 of the load benchmark: the plain Channels pattern, run under daphne.

An `AsyncWebsocketConsumer` that relays each `send` to its room's group with `group_send` over
channels_redis: no database, no audit, no screening, no authentication. It speaks the same subset of
Commonroom's protocol as B0 (`bench/baseline_ws.py`): `/ws/?user=7&rooms=3,4`, `ready`, `send` and
`ack`, and `message` frames to the whole room.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/daphne -p 8102 bench.baseline_channels:application
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="baseline-only",  # noqa: S106  (nothing is signed: no sessions, no cookies)
    INSTALLED_APPS=["channels"],
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")],
                "prefix": os.environ.get("CHANNEL_PREFIX", "baseline"),
            },
        }
    },
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402  (after settings)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


class RelayConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no type information
    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.user = int(query.get("user", ["0"])[0])
        self.joined = [int(room) for room in query.get("rooms", [""])[0].split(",") if room]
        for room in self.joined:
            await self.channel_layer.group_add(f"room.{room}", self.channel_name)
        await self.accept()
        await self.send(text_data=_dumps({"type": "ready", "rooms": [{"id": room} for room in self.joined]}))

    async def disconnect(self, code: int) -> None:
        for room in getattr(self, "joined", []):
            await self.channel_layer.group_discard(f"room.{room}", self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = json.loads(text_data or "{}")
        room = frame.get("room")
        if frame.get("type") != "send" or room not in self.joined:
            await self.send(text_data=_dumps({"type": "error", "code": "invalid_frame", "detail": "Not here."}))
            return
        message = {"room": room, "author": {"id": self.user}, "body": frame.get("body")}
        await self.send(text_data=_dumps({"type": "ack", "client_id": frame.get("client_id"), "message": message}))
        text = _dumps({"type": "message", "message": message})
        await self.channel_layer.group_send(f"room.{room}", {"type": "room.message", "text": text})

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/", RelayConsumer.as_asgi())])})
