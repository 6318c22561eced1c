"""Submission rate limits that hold across every process: a token bucket in Redis.

Celery's own `rate_limit` is per worker and delays execution; this refuses the
*submission* instead, in the caller of `.delay()`, with a clear error — e.g.
at most 10 submissions per user per minute, whatever the number of workers or web
processes. Declared on a task with `@task(submit_limit=SubmitLimit("user_id", 10))`;
the plugin's settings field `submit_limit_per_minute` (env
`<PLUGIN>_SUBMIT_LIMIT_PER_MINUTE`) overrides the default, and 0 switches it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import BanktasksError

# KEYS[1] bucket; ARGV[1] capacity (tokens), ARGV[2] refill per second.
# Uses the server's clock, so every caller on every host shares one notion of time.
TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
local wait = 0
if allowed == 0 then wait = (1 - tokens) / rate end
return {allowed, tostring(wait)}
"""


class SubmissionRateLimited(BanktasksError):
    """Too many submissions of one task for one key (e.g. one user) in a minute."""


@dataclass(frozen=True)
class SubmitLimit:
    """At most `per_minute` submissions per value of argument `per` (bursts up to that)."""

    per: str
    per_minute: int
    setting: str = "submit_limit_per_minute"


def effective_limit(limit: SubmitLimit, plugin_settings: Any) -> int:
    """The limit in force: the plugin's setting if it has one, else the declared default."""
    value = getattr(plugin_settings, limit.setting, None)
    return int(limit.per_minute if value is None else value)


def check_submission(
    client: Any, task_name: str, limit: SubmitLimit, per_minute: int, kwargs: dict[str, Any]
) -> None:
    """Take one token for this submission or raise SubmissionRateLimited."""
    if per_minute <= 0 or limit.per not in kwargs:
        return
    key = submission_key(task_name, kwargs[limit.per])
    allowed, wait = client.eval(TOKEN_BUCKET, 1, key, per_minute, per_minute / 60.0)
    if not int(allowed):
        raise SubmissionRateLimited(
            f"{task_name}: more than {per_minute} submissions per minute for "
            f"{limit.per}={kwargs[limit.per]}; try again in {float(wait):.0f}s"
        )


# KEYS = buckets; ARGV[1] capacity, ARGV[2] refill per second, ARGV[3..] tokens wanted per
# bucket (same order as KEYS). All or nothing: the tokens are taken only if every bucket
# has enough; else nothing changes and the first short bucket (1-based) and its wait are
# returned. A bucket is refilled as TOKEN_BUCKET does, on the server's clock.
TOKEN_BUCKET_MANY = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local left = {}
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[i + 2])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or capacity
  local ts = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  if tokens < want then
    return {0, i, tostring((want - tokens) / rate)}
  end
  left[i] = tokens - want
end
local ttl = math.ceil(capacity / rate) + 60
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'tokens', tostring(left[i]), 'ts', tostring(now))
  redis.call('EXPIRE', key, ttl)
end
return {1, 0, '0'}
"""


def submission_key(task_name: str, value: Any) -> str:
    """The Redis key of the token bucket of one task for one value of its limit argument."""
    return f"banktasks:submit:{task_name}:{value}"


def take_submissions(
    client: Any, task_name: str, limit: SubmitLimit, per_minute: int, counts: dict[Any, int]
) -> None:
    """Take `counts[value]` tokens from each value's bucket in one atomic call, or none.

    `counts` maps a value of the limit's argument (e.g. a user id) to the number of
    submissions a bulk send makes for it. If any bucket lacks tokens, nothing is taken
    and SubmissionRateLimited names that value: the whole bulk send is refused.
    """
    if per_minute <= 0 or not counts:
        return
    values = list(counts)
    for value in values:
        if counts[value] > per_minute:
            raise SubmissionRateLimited(
                f"{task_name}: {counts[value]} submissions for {limit.per}={value} in one "
                f"call, more than the limit of {per_minute} per minute; send fewer at once"
            )
    keys = [submission_key(task_name, value) for value in values]
    wanted = [counts[value] for value in values]
    allowed, index, wait = client.eval(
        TOKEN_BUCKET_MANY, len(keys), *keys, per_minute, per_minute / 60.0, *wanted
    )
    if not int(allowed):
        value = values[int(index) - 1]
        raise SubmissionRateLimited(
            f"{task_name}: more than {per_minute} submissions per minute for "
            f"{limit.per}={value} ({counts[value]} in this call); nothing was sent; "
            f"try again in {float(wait):.0f}s"
        )
