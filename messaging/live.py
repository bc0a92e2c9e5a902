"""Delivering live events through the channel layer: serialized once, sent to the room's group."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from messaging.consumers import room_group, user_group
from messaging.models import Message, Room


def publish_to_room(room: Room, event: dict[str, Any]) -> None:
    """Registered with `messaging.services.subscribe`; runs after the action's transaction commits."""
    layer = get_channel_layer()
    if layer is None:
        return
    event = dict(event)
    private_to = event.pop("private_to", None)
    not_for = event.pop("not_for", None)
    message = event.get("message") or {}
    if message.get("state") == Message.State.HELD:
        private_to = message["author"]["id"]
    text = json.dumps(event, separators=(",", ":"))  # once, not once per recipient
    payload: dict[str, Any] = {"type": "room.event", "room": room.pk, "text": text}
    if private_to is not None:
        payload["private_to"] = private_to
    if not_for is not None:
        payload["not_for"] = not_for
    if event.get("type") == "room_state":  # sockets keep their rooms' states (the quiet-hours clock)
        payload["state"], payload["reason"] = event["state"], event["reason"]
    async_to_sync(layer.group_send)(room_group(room.pk), payload)


def tell_user(user_id: int, kind: str) -> None:
    """Ask a person's open sockets to re-read their rooms (`rooms.changed`) or to close (`session.ended`)."""
    tell_users([user_id], kind)


def tell_users(user_ids: list[int], kind: str) -> None:
    """The same for many people at once (an import can touch tens of thousands): one trip to the event loop."""
    _to_users(user_ids, {"type": kind})


def send_frame(user_ids: list[int], frame: dict[str, Any]) -> None:
    """Send a protocol frame (such as a staff `alert`) to every open socket of these people; serialized once.

    The layers above messaging/ deliver through this, so that messaging never imports them."""
    _to_users(user_ids, {"type": "user.frame", "text": json.dumps(frame, separators=(",", ":"))})


def _to_users(user_ids: list[int], payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None or not user_ids:
        return

    async def send_all() -> None:
        for user_id in user_ids:
            await layer.group_send(user_group(user_id), payload)

    async_to_sync(send_all)()


def _after_commit(kind: str, user_ids: set[int]) -> None:
    ids = sorted(user_ids)

    def deliver() -> None:
        tell_users(ids, kind)

    transaction.on_commit(deliver)


def on_membership_changed(sender: Any, user_ids: set[int], **kwargs: Any) -> None:
    _after_commit("rooms.changed", user_ids)


def on_sessions_ended(sender: Any, user_ids: set[int], **kwargs: Any) -> None:
    _after_commit("session.ended", user_ids)


def on_logged_out(sender: Any, user: Any, **kwargs: Any) -> None:
    if user is not None and getattr(user, "pk", None) is not None:
        tell_user(user.pk, "session.ended")
