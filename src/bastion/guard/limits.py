"""Abuse limits: rate limits per client address (before authentication) and per key, daily row
budgets per key, and a bound on requests in flight in this worker.

Rates use GCRA (the generic cell rate algorithm): one stored number per client, the
theoretical arrival time (TAT) of its next request. With emission interval T = 1/rate and a
burst of B, a request at `now` is allowed when max(TAT, now) + T - now <= B*T, and then TAT
becomes max(TAT, now) + T; otherwise it is refused, with Retry-After = the excess. It is exact
(no window edges to game), needs one value per client, and is what the `limits` and `redis-cell`
projects implement. Budgets count rows per key per UTC day and refuse a request that would go
past the budget (nothing is charged for a refused request).

The in-memory backend serves one process. The Redis backend (a real Redis server) runs the same
two algorithms as Lua scripts, atomically and on the server's clock, so several guard workers or
replicas share limits and budgets. A limiter that cannot answer within its timeout refuses the
request (503): an outage of Redis must not switch the limits off."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from typing import Any, Protocol

from bastion.errors import ConfigError
from bastion.guard.settings import LimitSettings
from bastion.records import Record

MAX_BUCKETS = 200_000  # in-memory clients remembered; the oldest idle ones go first


class Decision(Record):
    allowed: bool
    retry_after: float = 0.0  # seconds


ALLOW = Decision(allowed=True)


class LimiterUnavailable(Exception):
    """The shared limiter did not answer: refuse (503), never allow."""


class Backend(Protocol):
    async def gcra(self, key: str, rate: float, burst: int) -> Decision: ...

    async def spend(self, key: str, amount: int, budget: int) -> Decision: ...

    async def close(self) -> None: ...


def _seconds_to_midnight(now: float) -> float:
    moment = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
    tomorrow = (moment + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1.0, (tomorrow - moment).total_seconds())


def _day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).strftime("%Y%m%d")


class MemoryBackend:
    """One process's limits (the default)."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._spent: dict[str, int] = {}
        self._day = ""
        self._day_starts = self._day_ends = 0.0  # the UTC day of `_day`, in epoch seconds

    def _evict(self, now: float) -> None:
        if len(self._tat) < MAX_BUCKETS:
            return
        idle = [k for k, tat in self._tat.items() if tat <= now]
        for key in idle:
            del self._tat[key]
        while len(self._tat) >= MAX_BUCKETS:  # every client busy: drop the oldest entries
            del self._tat[next(iter(self._tat))]

    async def gcra(self, key: str, rate: float, burst: int) -> Decision:
        now = self._clock()
        interval = 1.0 / rate
        tat = max(self._tat.get(key, now), now) + interval
        excess = tat - now - burst * interval
        if excess > 0:
            return Decision(allowed=False, retry_after=excess)
        if key not in self._tat:
            self._evict(now)
        self._tat[key] = tat
        return ALLOW

    async def spend(self, key: str, amount: int, budget: int) -> Decision:
        now = self._clock()
        if now >= self._day_ends or now < self._day_starts:  # the day is read once per day
            self._spent.clear()
            self._day = _day(now)
            self._day_starts = math.floor(now / 86_400) * 86_400
            self._day_ends = self._day_starts + 86_400
        spent = self._spent.get(key, 0)
        if spent + amount > budget:
            return Decision(allowed=False, retry_after=_seconds_to_midnight(now))
        if len(self._spent) >= MAX_BUCKETS and key not in self._spent:
            return Decision(allowed=False, retry_after=60.0)  # refuse rather than forget
        self._spent[key] = spent + amount
        return ALLOW

    async def close(self) -> None:
        return None


# KEYS[1] = bucket; ARGV = interval (s), burst. Returns {allowed, retry_after_ms}.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + interval
local excess = tat - now - burst * interval
if excess > 0 then
  return {0, math.ceil(excess * 1000)}
end
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return {1, 0}
"""

# KEYS[1] = budget key prefix; ARGV = amount, budget. The day is the server's UTC day.
_SPEND_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local day = math.floor(now / 86400)
local key = KEYS[1] .. ':' .. day
local amount = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local spent = tonumber(redis.call('GET', key) or '0')
if spent + amount > budget then
  return {0, (day + 1) * 86400 - now}
end
redis.call('INCRBY', key, amount)
redis.call('EXPIRE', key, 2 * 86400)
return {1, 0}
"""


class RedisBackend:
    """Limits shared by every worker connected to one Redis server."""

    def __init__(self, url: str, prefix: str, timeout: float) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - redis is in [guard]
            from bastion.errors import MissingExtra

            raise MissingExtra("redis", "guard") from exc
        try:
            self._client = aioredis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:  # not a redis://, rediss:// or unix:// URL
            raise ConfigError(f"invalid [limits] redis_url: {exc}") from exc
        self._prefix = prefix
        self._timeout = timeout
        self._gcra = self._client.register_script(_GCRA_LUA)
        self._spend = self._client.register_script(_SPEND_LUA)

    async def _run(self, script: Any, key: str, *args: Any) -> list[Any]:
        try:
            result = await asyncio.wait_for(
                script(keys=[self._prefix + key], args=list(args)), self._timeout
            )
        except Exception as exc:  # connection refused, timeout, script error: refuse
            raise LimiterUnavailable(f"{type(exc).__name__}") from exc
        return list(result)

    async def gcra(self, key: str, rate: float, burst: int) -> Decision:
        allowed, retry_ms = await self._run(self._gcra, "rate:" + key, 1.0 / rate, burst)
        if int(allowed):
            return ALLOW
        return Decision(allowed=False, retry_after=int(retry_ms) / 1000)

    async def spend(self, key: str, amount: int, budget: int) -> Decision:
        allowed, retry = await self._run(self._spend, "budget:" + key, amount, budget)
        if int(allowed):
            return ALLOW
        return Decision(allowed=False, retry_after=max(1.0, float(retry)))

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._client.ping(), self._timeout))
        except Exception:
            return False

    async def close(self) -> None:
        await self._client.aclose()


def make_backend(settings: LimitSettings) -> Backend:
    if settings.backend == "redis":
        return RedisBackend(settings.redis_url, settings.redis_prefix, settings.redis_timeout_s)
    return MemoryBackend()


class InFlight:
    """Requests inside this worker at once (the event loop's thread only)."""

    def __init__(self) -> None:
        self.current = 0

    def enter(self, limit: int) -> bool:
        if self.current >= limit:
            return False
        self.current += 1
        return True

    def leave(self) -> None:
        self.current -= 1


def retry_after_header(seconds: float) -> str:
    """Retry-After in whole seconds (RFC 9110), at least 1."""
    return str(max(1, math.ceil(seconds)))
