"""Result caching: a read-only task returns the stored result of identical arguments.

Declared with `@task(cache_ttl=60)` (seconds, or a timedelta). In the worker, before the
task's function runs, its validated arguments (defaults filled in, as JSON with sorted
keys) and its `cache_version` make a key; a result stored under that key within the TTL
is returned and the function does not run. After a successful run the result is stored
for the TTL. Failures are never stored. The key lives on the broker
(`banktasks:cache:<task>:<version>:<sha256>`), so every worker shares it.

A plugin settings field named `result_cache_seconds` (env
`<PLUGIN>_RESULT_CACHE_SECONDS`) overrides the TTL of the plugin's cached tasks; 0 switches
their caching off.

What invalidates an entry: its TTL, a new `cache_version` of the task (bump it when
the result's shape or meaning changes), `clear(client, task)`, and
BANKTASKS_RESULT_CACHE=false (nothing is read or stored). Two identical calls at the same
moment may both run. Caching is for tasks without effects only: a cached call does
not run, so writes or e-mails it would have made do not happen.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

PREFIX = "banktasks:cache:"


def ttl_seconds(task_name: str, value: int | timedelta | None) -> int | None:
    """`cache_ttl` as whole seconds (None: not cached); ValueError if it is not positive."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 1:
        raise ValueError(
            f"@task {task_name}: cache_ttl={value!r:.40} is not a number of seconds >= 1 "
            "(or a timedelta)"
        )
    return int(seconds)


def effective_ttl(declared: int | None, plugin_settings: Any) -> int:
    """The TTL in force: 0 (not cached) unless the task declares one; the plugin's
    `result_cache_seconds` setting if it has one, else the declared TTL."""
    if not declared:
        return 0
    value = getattr(plugin_settings, "result_cache_seconds", None)
    return int(declared if value is None else value)


def cache_key(task_name: str, version: str, arguments: dict[str, Any]) -> str:
    """The key of one task's result for these arguments (JSON-safe, defaults filled in)."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{PREFIX}{task_name}:{version}:{digest}"


def lookup(client: Any, key: str) -> tuple[bool, Any]:
    """(True, result) when a result is stored under `key`, else (False, None)."""
    raw = client.get(key)
    if raw is None:
        return False, None
    return True, json.loads(raw)


def store(client: Any, key: str, result: Any, ttl: int) -> None:
    """Keep a JSON-safe result under `key` for `ttl` seconds."""
    client.set(key, json.dumps(result, separators=(",", ":")), ex=ttl)


def clear(client: Any, task_name: str | None = None) -> int:
    """Delete the stored results of one task (or of every task); return how many."""
    pattern = f"{PREFIX}{task_name}:*" if task_name else f"{PREFIX}*"
    deleted = 0
    batch: list[Any] = []
    for name in client.scan_iter(match=pattern, count=1000):
        batch.append(name)
        if len(batch) == 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted
