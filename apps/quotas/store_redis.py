"""The distributed mode's counter store: the only module with the limiter's Redis keys and script.

Keys: `<RATELIMIT_KEY_PREFIX>:<limit key>` holds a sliding log (a sorted set of request times,
members unique per request) or a calendar counter (an integer); `<prefix>!refused:<limit key>`
marks that this window already saw a refusal, so "quota exceeded" is audited once per window,
not once per refused request. Every key expires with its window.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis

from homepocket.redis_clients import sync_client
from django.conf import settings

from apps.quotas.limiter import CheckResult, Count, Limit, StoreUnavailable

logger = logging.getLogger(__name__)

# KEYS: per limit, its counter key then its refusal-flag key.
# ARGV: now_ms, a unique member, cost (units to consume; 0 only reads), then per limit: limit,
# window_ms, calendar_end_ms. Consumes min(cost, the room every limit has left), all or nothing.
# Returns {allowed, refused_index (1-based, 0 if none), first_refusal, granted, used_1, reset_1, ...}.
CHECK_AND_CONSUME = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local cost = tonumber(ARGV[3])
local consume = cost > 0
local n = #KEYS / 2
local used, reset, refused = {}, {}, 0
local room = cost
for i = 1, n do
  local key = KEYS[2 * i - 1]
  local limit = tonumber(ARGV[4 + 3 * (i - 1)])
  local window = tonumber(ARGV[5 + 3 * (i - 1)])
  local calendar_end = tonumber(ARGV[6 + 3 * (i - 1)])
  if calendar_end == 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    used[i] = redis.call('ZCARD', key)
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if oldest[2] then reset[i] = tonumber(oldest[2]) + window else reset[i] = now + window end
  else
    used[i] = tonumber(redis.call('GET', key) or '0')
    reset[i] = calendar_end
  end
  if refused == 0 and used[i] >= limit then refused = i end
  room = math.min(room, limit - used[i])
end
local out = {}
if refused > 0 then
  local first = 0
  if consume then
    -- The flag holds the end of the window it was set in (compared with the caller's clock,
    -- like everything here), and expires with it.
    local flagged = tonumber(redis.call('GET', KEYS[2 * refused]) or '0')
    if flagged <= now then
      redis.call('SET', KEYS[2 * refused], reset[refused], 'PX', math.max(reset[refused] - now, 1))
      first = 1
    end
  end
  out = {0, refused, first, 0}
else
  out = {1, 0, 0, math.max(room, 0)}
  if consume then
    for i = 1, n do
      local key = KEYS[2 * i - 1]
      local window = tonumber(ARGV[5 + 3 * (i - 1)])
      local calendar_end = tonumber(ARGV[6 + 3 * (i - 1)])
      if calendar_end == 0 then
        for unit = 1, room do
          redis.call('ZADD', key, now, member .. ':' .. unit)
        end
        redis.call('PEXPIRE', key, window)
        used[i] = used[i] + room
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        reset[i] = tonumber(oldest[2]) + window
      else
        used[i] = redis.call('INCRBY', key, room)
        redis.call('PEXPIRE', key, math.max(calendar_end - now, 1) + 60000)
      end
    end
  end
end
for i = 1, n do
  out[#out + 1] = used[i]
  out[#out + 1] = reset[i]
end
return out
"""


class RedisStore:
    """Runs the script; after a failure it does not try Redis again for RATELIMIT_STORE_RETRY seconds.

    That short circuit keeps a dead Redis from adding a connect timeout to every request: for
    those seconds each check fails fast with StoreUnavailable and the policies' fail modes apply.
    """

    def __init__(self):
        # The "quotas" client of homepocket/redis_clients.py: a blocking pool of
        # RATELIMIT_REDIS_MAX_CONNECTIONS (past it a check waits up to the store timeout for a free
        # connection instead of failing at once), no retries (the fail modes decide, at once).
        self._client = sync_client("quotas")
        self._script = self._client.register_script(CHECK_AND_CONSUME)
        self._down_until = 0.0
        self._lock = threading.Lock()

    def check(self, limits: list[Limit], *, now_ms: int, cost: int = 1) -> CheckResult:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("rate-limit store marked down")
        prefix = settings.RATELIMIT_KEY_PREFIX
        keys: list[str] = []
        args: list[int | str] = [now_ms, uuid.uuid4().hex, cost]
        for limit in limits:
            keys += [f"{prefix}:{limit.key}", f"{prefix}!refused:{limit.key}"]
            args += [limit.limit, limit.window_ms, limit.calendar_end_ms]
        try:
            raw = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            with self._lock:
                if time.monotonic() >= self._down_until:
                    logger.warning(
                        "rate-limit store unreachable; fail modes apply",
                        extra={"error": type(exc).__name__, "retry_seconds": settings.RATELIMIT_STORE_RETRY},
                    )
                self._down_until = time.monotonic() + settings.RATELIMIT_STORE_RETRY
            raise StoreUnavailable(str(exc)) from exc
        allowed, refused, first, granted = int(raw[0]), int(raw[1]), bool(raw[2]), int(raw[3])
        counts = [Count(int(raw[i]), int(raw[i + 1])) for i in range(4, len(raw), 2)]
        return CheckResult(bool(allowed), counts, refused - 1 if refused else None, first, granted)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False
