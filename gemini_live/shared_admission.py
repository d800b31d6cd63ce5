"""MAX_SESSIONS and MAX_SESSIONS_PER_CLIENT held across every process that shares one Redis.

Each open session holds a slot: a member of two sorted sets (all sessions, and its client's),
scored by when it expires. The process that owns a slot renews it every few seconds; a process
that dies stops renewing and its slots expire within SLOT_TTL_SECONDS. Admission is one Lua
script, so two processes can never both take the last slot. Redis's own clock is used, so
the processes' clocks need not agree.
"""

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

SLOT_TTL_SECONDS = 30.0

_ADMIT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
local expires = now + tonumber(ARGV[1])
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], expires, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return 0
"""

# KEYS: the all-sessions set, then each slot's client set; ARGV: the TTL, then each slot id.
_RENEW = """
local t = redis.call('TIME')
local expires = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i])
  redis.call('ZADD', KEYS[i], 'XX', expires, ARGV[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""


@dataclass(frozen=True)
class Slot:
    id: str
    client_key: str
    # False when Redis could not be asked: the session runs on the process's own limits.
    held: bool = True


class SharedAdmission:
    def __init__(
        self,
        redis: Redis,
        *,
        max_sessions: int,
        max_per_client: int,
        prefix: str = "intake",
        ttl: float = SLOT_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self._max = max_sessions
        self._max_per_client = max_per_client
        self._all = f"{prefix}:sessions"
        self._prefix = prefix
        self._ttl_ms = int(ttl * 1000)
        self._ttl = ttl
        self._slots: set[Slot] = set()
        self._admit = redis.register_script(_ADMIT)
        self._renew = redis.register_script(_RENEW)
        self._unreachable_logged = False

    def _client_key(self, client: str) -> str:
        # Client addresses are not written to Redis, only a digest that groups them.
        digest = hashlib.sha256(client.encode()).hexdigest()[:24]
        return f"{self._prefix}:client:{digest}"

    async def admit(self, client: str) -> Slot | str:
        """A slot for a new session from `client`, or why it is refused."""
        slot = Slot(uuid.uuid4().hex, self._client_key(client))
        try:
            verdict = await self._admit(
                keys=[self._all, slot.client_key],
                args=[self._ttl_ms, slot.id, self._max, self._max_per_client],
            )
        except (RedisError, OSError) as exc:
            if not self._unreachable_logged:
                logger.warning(
                    "Redis unreachable (%s): admitting on this process's limits", type(exc).__name__
                )
                self._unreachable_logged = True
            return Slot(slot.id, slot.client_key, held=False)
        self._unreachable_logged = False
        if verdict == 1:
            return f"The server is at its limit of {self._max} sessions; try again shortly."
        if verdict == 2:
            return f"Too many sessions from your address (limit {self._max_per_client})."
        self._slots.add(slot)
        return slot

    async def release(self, slot: Slot) -> None:
        self._slots.discard(slot)
        if not slot.held:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._all, slot.id)
                pipe.zrem(slot.client_key, slot.id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # The slot expires by itself within the TTL.
            logger.warning("Redis: a session's slot was not released (%s)", type(exc).__name__)

    async def renew_forever(self) -> None:
        """Keep this process's slots alive; run as one background task per process."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            held = [slot for slot in self._slots if slot.held]
            if not held:
                continue
            try:
                await self._renew(
                    keys=[self._all, *(slot.client_key for slot in held)],
                    args=[self._ttl_ms, *(slot.id for slot in held)],
                )
            except (RedisError, OSError) as exc:
                logger.warning("Redis: session slots not renewed (%s)", type(exc).__name__)

    async def close(self) -> None:
        for slot in list(self._slots):
            await self.release(slot)
        await self._redis.aclose()
