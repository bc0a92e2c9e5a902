"""The case clock inside the server: each daphne process runs `escalate_overdue` every
COMMONROOM_CASE_CLOCK_SECONDS (several processes at once are safe: each change is made once)."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from moderation.cases import escalate_overdue

logger = logging.getLogger(__name__)

_running: dict[str, asyncio.Task[None]] = {}  # the clock's task, once started


async def run(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            tick = await database_sync_to_async(escalate_overdue)()
        except Exception:  # a database outage must not stop the clock for good
            logger.exception("the case clock failed; trying again in %s s", interval)
            continue
        if tick.escalated or tick.emailed:
            logger.info("case clock: escalated %s, emailed contacts for %s", tick.escalated, tick.emailed)


def ensure_started() -> asyncio.Task[None] | None:
    """Start the clock in the running event loop, once (called on every request; cheap after the first)."""
    interval = settings.COMMONROOM_CASE_CLOCK_SECONDS
    if not interval:
        return None
    loop = asyncio.get_running_loop()
    task = _running.get("clock")
    if task is None or task.done() or task.get_loop() is not loop:
        task = _running["clock"] = loop.create_task(run(interval))
    return task


def stop() -> None:
    task = _running.pop("clock", None)
    if task is not None:
        task.cancel()
