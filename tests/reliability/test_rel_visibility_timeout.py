"""Fault 6: a delay longer than the broker's visibility timeout.

With the Redis transport a worker holds a delayed (countdown/eta) message unacknowledged
until it is due; once it has been unacknowledged for longer than the visibility timeout,
another worker restores it to the queue, and the task runs twice. banktasks therefore:

- refuses, at submission, a `countdown` or `eta` that is not below the visibility timeout
  (TaskArgumentError, nothing sent);
- caps the wait of a retry at half the visibility timeout (this only bites when an
  operator sets BROKER_VISIBILITY_TIMEOUT below the computed default).

The last test shows, with real workers, what the refusal prevents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from banktasks_testing import send_unchecked, wait_for
from core import ConfigError, TaskArgumentError
from core.default_plugins.seed import seed
from tests.reliability.helpers import exports, result_meta


def queued_messages(app, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in app.redis_client().lrange(queue, 0, -1)]


def test_a_delay_beyond_the_visibility_timeout_is_refused(make_app, figures):
    app = make_app()
    options = app.conf.broker_transport_options
    limit = options["visibility_timeout"]
    assert limit >= 3600
    # kombu's own defaults for the rest: look for a dead worker's messages every 100 s.
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (10, 10)
    assert options["unacked_mutex_expire"] == 300
    health = app.tasks["health.system_health_check"]
    with pytest.raises(TaskArgumentError, match=r"countdown=3600 .* visibility timeout \(3600s\)"):
        health.apply_async(countdown=limit)
    with pytest.raises(TaskArgumentError, match=r"eta=.* visibility timeout"):
        health.apply_async(eta=datetime.now(UTC) + timedelta(seconds=limit + 60))
    with pytest.raises(TaskArgumentError, match="eta="):  # a naive eta is UTC, as Celery reads it
        health.apply_async(eta=(datetime.now(UTC) + timedelta(hours=2)).replace(tzinfo=None))
    assert queued_messages(app, "health") == []  # nothing was sent
    accepted = health.apply_async(countdown=limit - 60)
    [message] = queued_messages(app, "health")
    assert message["headers"]["id"] == accepted.id and message["headers"]["eta"]
    figures.update(
        scenario="6. delay beyond the visibility timeout",
        injected=(
            f"apply_async(countdown={limit}) and eta = now + {limit + 60} s against a "
            f"visibility timeout of {limit} s"
        ),
        tasks_sent=3,
        refused_at_submission=3,
        accepted_below_the_timeout=1,
        tasks_completed="n/a (refused: nothing reaches the broker)",
        duplicates=0,
        lost=0,
    )


def test_a_visibility_timeout_too_short_for_the_outbox_is_refused(make_app, monkeypatch):
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT", "30")
    # time limits below the timeout (else start-up stops on those first, see test_time_limits)
    monkeypatch.setenv("BANKTASKS_SOFT_TIME_LIMIT", "15")
    monkeypatch.setenv("BANKTASKS_TIME_LIMIT", "20")
    with pytest.raises(ConfigError, match=r"BROKER_VISIBILITY_TIMEOUT=30 is too short .* 64"):
        make_app()  # e-mail leases of 160 s (SMTP_TIMEOUT=10) vs 5 retries of 15 s at most
    monkeypatch.setenv("SMTP_TIMEOUT", "1")  # 70 s leases: fits
    assert make_app().conf.broker_transport_options["visibility_timeout"] == 30
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT", "5")
    with pytest.raises(ConfigError, match="BROKER_VISIBILITY_TIMEOUT='5'"):
        make_app()


def test_retry_waits_stay_below_a_short_visibility_timeout(make_app, monkeypatch):
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT", "20")
    monkeypatch.setenv("BANKTASKS_SOFT_TIME_LIMIT", "10")
    monkeypatch.setenv("BANKTASKS_TIME_LIMIT", "15")
    monkeypatch.setenv("BANKTASKS_PLUGINS", "export")
    app = make_app()
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == 20
    # Messages of a dead worker are looked for every 2 s, under a lock that expires in 10 s.
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] <= 2
    assert options["unacked_mutex_expire"] == 10
    export = app.tasks["export.export_transaction_data"]
    seed(app.runtime.db, users=1, transactions=10)
    # A retry from inside the task (what autoretry_for does on an OSError): export's policy
    # asks for up to 600 s, which a 20 s visibility timeout could not cover.
    kwargs = {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31"}
    export.push_request(
        id="retry-me",
        retries=0,
        kwargs=kwargs,
        args=(),
        called_directly=False,
        delivery_info={"exchange": "", "routing_key": "export"},
    )
    try:
        retried = export.retry(countdown=600, exc=OSError("disk full"), throw=False)
    finally:
        export.pop_request()
    assert "Retry in 10s" in str(retried)
    [message] = queued_messages(app, "export")
    assert message["headers"]["id"] == "retry-me" and message["headers"]["retries"] == 1
    eta = datetime.fromisoformat(message["headers"]["eta"])
    assert eta - datetime.now(UTC) <= timedelta(seconds=10)
    with pytest.raises(TaskArgumentError, match="visibility timeout"):
        export.apply_async(
            kwargs={"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31"},
            countdown=20,
        )


@pytest.mark.e2e
@pytest.mark.slow
def test_what_the_refusal_prevents(e2e, figures):
    """A message sent around the check (plain `send_task`) with a countdown beyond the
    visibility timeout is restored by a second worker while the first one holds it, and
    runs twice; the export's idempotency still writes once."""
    visibility = 10
    e2e.set(
        BANKTASKS_PLUGINS="export",
        BROKER_VISIBILITY_TIMEOUT=str(visibility),
        BANKTASKS_SOFT_TIME_LIMIT="5",
        BANKTASKS_TIME_LIMIT="8",
        EXPORT_SUBMIT_LIMIT_PER_MINUTE="0",
    )
    app = e2e.app()
    seed(app.runtime.db, users=1, transactions=50)
    workers = [e2e.start_worker(queues=["export"]) for _ in range(2)]
    kwargs = {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-12-31"}
    with pytest.raises(TaskArgumentError, match="visibility timeout"):
        app.tasks["export.export_transaction_data"].apply_async(kwargs=kwargs, countdown=13)
    result = send_unchecked(app, "export.export_transaction_data", kwargs=kwargs, countdown=13)

    def runs() -> int:
        return sum(w.log().count(f"[{result.id}] succeeded") for w in workers)

    # The first worker takes the message and holds it; after 10 s a second one restores it
    # and takes it too; at 13 s both run it.
    wait_for(lambda: runs() >= 2, 40, "the export to run twice")
    wait_for(lambda: not app.redis_client().hlen("unacked"), 30, "every copy to be done")
    records = exports(app)
    assert len(records) == 1
    done = [
        line for w in workers for line in w.log().splitlines() if f"[{result.id}] succeeded" in line
    ]
    assert sum("'duplicate': False" in line for line in done) == 1  # one run wrote the export
    assert result_meta(app, [result.id])[result.id]["status"] == "SUCCESS"
    figures.update(
        scenario="6b. what the refusal prevents",
        injected=(
            f"send_task(countdown=13) bypassing the check, visibility timeout {visibility} s, "
            "2 workers"
        ),
        tasks_sent=1,
        runs=runs(),
        tasks_completed=1,
        duplicates=len(records) - 1,
        lost=0,
        export_rows=len(records),
    )
