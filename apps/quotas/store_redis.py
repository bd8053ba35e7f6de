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
from django.conf import settings

from apps.quotas.limiter import CheckResult, Count, Limit, StoreUnavailable

logger = logging.getLogger(__name__)

# KEYS: per limit, its counter key then its refusal-flag key.
# ARGV: now_ms, a unique member, consume (1/0), then per limit: limit, window_ms, calendar_end_ms.
# Returns {allowed, refused_index (1-based, 0 if none), first_refusal, used_1, reset_1, used_2, ...}.
CHECK_AND_CONSUME = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local consume = ARGV[3] == '1'
local n = #KEYS / 2
local used, reset, refused = {}, {}, 0
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
  out = {0, refused, first}
else
  out = {1, 0, 0}
  if consume then
    for i = 1, n do
      local key = KEYS[2 * i - 1]
      local window = tonumber(ARGV[5 + 3 * (i - 1)])
      local calendar_end = tonumber(ARGV[6 + 3 * (i - 1)])
      if calendar_end == 0 then
        redis.call('ZADD', key, now, member)
        redis.call('PEXPIRE', key, window)
        used[i] = used[i] + 1
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        reset[i] = tonumber(oldest[2]) + window
      else
        used[i] = redis.call('INCR', key)
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

    def __init__(self, url: str):
        # A blocking pool: past its size a check waits (up to the store timeout) for a free
        # connection instead of failing at once, which redis-py's default pool does.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=settings.RATELIMIT_REDIS_MAX_CONNECTIONS,
            timeout=settings.RATELIMIT_STORE_TIMEOUT,
            socket_timeout=settings.RATELIMIT_STORE_TIMEOUT,
            socket_connect_timeout=settings.RATELIMIT_STORE_TIMEOUT,
        )
        self._client = redis.Redis(connection_pool=pool, retry=None)
        self._script = self._client.register_script(CHECK_AND_CONSUME)
        self._down_until = 0.0
        self._lock = threading.Lock()

    def check(self, limits: list[Limit], *, now_ms: int, consume: bool = True) -> CheckResult:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("rate-limit store marked down")
        prefix = settings.RATELIMIT_KEY_PREFIX
        keys: list[str] = []
        args: list[int | str] = [now_ms, uuid.uuid4().hex, 1 if consume else 0]
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
        allowed, refused, first = int(raw[0]), int(raw[1]), bool(raw[2])
        counts = [Count(int(raw[i]), int(raw[i + 1])) for i in range(3, len(raw), 2)]
        return CheckResult(bool(allowed), counts, refused - 1 if refused else None, first)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False
