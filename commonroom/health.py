"""`/healthz`: is this process able to serve? Checks the database and the channel layer."""

from __future__ import annotations

import asyncio
import logging
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

CHANNEL_LAYER_TIMEOUT = 2.0


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001  (any failure means "not healthy"; the reason is logged)
        logger.warning("healthz: database check failed: %s", exc)
        return "error"
    finally:
        connection.close_if_unusable_or_obsolete()
    return "ok"


async def _check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        return "error"
    try:
        channel = await layer.new_channel("healthz.")
        token = uuid.uuid4().hex
        await asyncio.wait_for(layer.send(channel, {"type": "healthz", "token": token}), CHANNEL_LAYER_TIMEOUT)
        received = await asyncio.wait_for(layer.receive(channel), CHANNEL_LAYER_TIMEOUT)
    except Exception as exc:  # noqa: BLE001  (as above: unreachable Redis, a timeout, ...)
        logger.warning("healthz: channel layer check failed: %s", exc)
        return "error"
    return "ok" if received.get("token") == token else "error"


async def healthz(request: HttpRequest) -> JsonResponse:
    database = await sync_to_async(_check_database, thread_sensitive=True)()
    channel_layer = await _check_channel_layer()
    healthy = database == "ok" and channel_layer == "ok"
    return JsonResponse(
        {"status": "ok" if healthy else "error", "database": database, "channel_layer": channel_layer},
        status=200 if healthy else 503,
    )
