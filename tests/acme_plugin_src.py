"""Source of the `acme_rules` test plugin, installed by tests as a real distribution.

It has a settings model, a task with a retry policy and a schedule, and a hook
of its own (`acme_extra`) that another plugin may implement.
"""

import json
import os
import time
from pathlib import Path

from celery import current_task

from core import (
    PluginSettings,
    RetryPolicy,
    Schedule,
    SubmitLimit,
    get_logger,
    hookimpl,
    hookspec,
    task,
)


class AcmeSettings(PluginSettings):
    threshold: int = 5
    submit_limit_per_minute: int | None = None


class AcmeHooks:
    @hookspec
    def acme_extra(self) -> list[str]:
        """Owned by acme_rules: other plugins add strings."""


@task(
    retry=RetryPolicy(
        max_retries=3, backoff=1, backoff_max=4, jitter=False, retry_on=(ConnectionError,)
    ),
)
def flaky(key: str, fail_times: int = 0, error: str = "connection") -> dict:
    """Fail `fail_times` times with ConnectionError (or once with ValueError), then succeed."""
    retries = current_task.request.retries if current_task else 0
    log = Path(os.environ["BANKTASKS_VAR_DIR"]) / f"attempts-{key}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(json.dumps({"t": time.time(), "retries": retries}) + "\n")
    if error == "value":
        raise ValueError("permanent problem")
    if retries < fail_times:
        raise ConnectionError(f"transient problem {retries}")
    return {"key": key, "attempts": retries + 1}


@task(queue="acme-fast")
def add(x: int, y: int = 1) -> dict:
    """Add two integers."""
    get_logger(__name__).info("adding", x=x, y=y, owner="ann@example.com", password="hunter2")
    return {"sum": x + y}


@task(queue="acme-fast", submit_limit=SubmitLimit("user_id", per_minute=3))
def notify(user_id: int) -> dict:
    """A task whose submissions are limited per user."""
    return {"user_id": user_id}


@hookimpl
def register_hookspecs(pm):
    pm.add_hookspecs(AcmeHooks)


@hookimpl
def register_settings():
    return ("acme_rules", AcmeSettings)


@hookimpl
def register_tasks():
    return [flaky, add, notify]


@hookimpl
def register_schedule(settings):
    entries = [Schedule("acme-add", add, cron="*/5 * * * *", kwargs={"x": settings.threshold})]
    tick = float(os.environ.get("ACME_TICK_SECONDS", "0"))
    if tick:
        entries.append(Schedule("acme-tick", add, every=tick, kwargs={"x": 0}))
    return entries
