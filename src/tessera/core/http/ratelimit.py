"""Token-bucket rate limits per API key and per client IP.

The in-process backend serves the embedded mode; the Redis backend (one Lua script, atomic)
is selected by ``rate_limit_backend=redis`` so that limits hold across API processes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int = 0


class RateLimiter(Protocol):
    async def hit(self, key: str, per_minute: int) -> Decision: ...


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    async def hit(self, key: str, per_minute: int) -> Decision:
        now = time.monotonic()
        rate = per_minute / 60.0
        tokens, last = self._buckets.get(key, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - last) * rate)
        if tokens >= 1.0:
            tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            reset = math.ceil((per_minute - tokens) / rate)
            return Decision(True, per_minute, int(tokens), reset)
        self._buckets[key] = (tokens, now)
        retry = math.ceil((1.0 - tokens) / rate)
        return Decision(False, per_minute, 0, retry, retry)


_LUA = """
local key = KEYS[1]
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local b = redis.call('HMGET', key, 't', 'ts')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
tokens = math.min(cap, tokens + (now - ts) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', key, 't', tokens, 'ts', now)
redis.call('EXPIRE', key, math.ceil(cap / rate) + 1)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url)
        self._script = self._redis.register_script(_LUA)

    async def hit(self, key: str, per_minute: int) -> Decision:
        rate = per_minute / 60.0
        allowed, tokens_s = await self._script(
            keys=[f"tessera:rl:{key}"], args=[per_minute, rate, time.time()]
        )
        tokens = float(tokens_s)
        if int(allowed):
            return Decision(True, per_minute, int(tokens), math.ceil((per_minute - tokens) / rate))
        retry = math.ceil((1.0 - tokens) / rate)
        return Decision(False, per_minute, 0, retry, retry)
