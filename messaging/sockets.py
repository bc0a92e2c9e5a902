"""How many sockets each person has open, across every server process: a person (or a script with
their cookie) cannot tie up the servers with thousands of sockets.

With Redis (`REDIS_URL`, several processes) each person has a sorted set in Redis of their open
sockets' channel names, each scored with the time its lease runs out. A socket renews its lease when
it re-checks its session (`consumers.SESSION_RECHECK`), so a socket whose process was killed, and
could not say goodbye, stops counting when its lease runs out. Claiming is one Lua script, so two
processes cannot both take the last place. If Redis cannot be reached the socket is let in (counted
in its own process only): Redis being away must not lock a whole school out.

Without Redis (one process, the embedded default) the count is kept in the process.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Add `member` to the set KEYS[1] unless it already holds `limit` live members (leases not yet run out).
# ARGV: now, limit, member, lease end, seconds to keep the key.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class SocketCount:
    """The sockets each person has open: `claim` a place (False: the person has `limit` already),
    `renew` it now and then, `release` it when the socket closes."""

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.local: set[tuple[int, str]] = set()  # (person, channel) of this process's sockets

    @staticmethod
    def _redis() -> Redis | None:
        """A connection for one exchange (a socket opens and closes, and renews once a minute: not
        often enough to keep connections open, which would belong to one event loop)."""
        return Redis.from_url(settings.REDIS_URL, socket_timeout=2) if settings.REDIS_URL else None

    @staticmethod
    def _key(person: int) -> str:
        return f"{settings.CHANNEL_LAYERS['default'].get('CONFIG', {}).get('prefix', 'commonroom')}:sockets:{person}"

    def held(self, person: int) -> int:
        """The places `person` holds in this process."""
        return sum(1 for who, _ in self.local if who == person)

    async def claim(self, person: int, channel: str, *, limit: int, now: float | None = None) -> bool:
        client = self._redis()
        if client is not None:
            now = time.time() if now is None else now
            try:
                async with client:
                    claimed: Any = await client.eval(  # type: ignore[misc]  # redis-py types it as sync or async
                        _CLAIM, 1, self._key(person), now, limit, channel, now + self.lease, int(self.lease) + 1
                    )
            except (RedisError, OSError):
                logger.warning("the socket count could not be asked of Redis; counting in this process only")
            else:
                if not claimed:
                    return False
                self.local.add((person, channel))
                return True
        if self.held(person) >= limit:
            return False
        self.local.add((person, channel))
        return True

    async def renew(self, person: int, channel: str, now: float | None = None) -> None:
        client = self._redis()
        if client is None:
            return
        now = time.time() if now is None else now
        try:
            async with client:
                await client.zadd(self._key(person), {channel: now + self.lease})
                await client.expire(self._key(person), int(self.lease) + 1)
        except (RedisError, OSError):
            logger.warning("a socket's place could not be renewed in Redis")

    async def release(self, person: int, channel: str) -> None:
        self.local.discard((person, channel))
        client = self._redis()
        if client is None:
            return
        try:
            async with client:
                await client.zrem(self._key(person), channel)
        except (RedisError, OSError):
            logger.warning("a socket's place could not be released in Redis; its lease will run out")
