"""Fault 3: PostgreSQL is stopped while a fraud analysis, an export and a daily report are
sent; they fail, retry with backoff, and succeed once it is back — each writing once. The
health check reports the database `down` while it is gone and `ok` after.

The test runs its own PostgreSQL cluster (Debian's server binaries), so it can stop it.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest

from banktasks_testing import wait_for
from core.default_plugins.seed import seed
from plugins.reports.models import StoredReport
from tests.reliability.helpers import (
    alerts,
    dead_letters,
    duplicates,
    exports,
    result_meta,
    rows,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

NOW = datetime(2024, 6, 1, tzinfo=UTC)
MIN_OUTAGE = 6.0  # seconds the database stays down, at least


def state(result) -> str:
    return result.backend.get_task_meta(result.id, cache=False)["status"]


def test_postgres_outage_then_recovery(e2e, pg_cluster, figures):
    e2e.set(
        DATABASE_URL=pg_cluster.create_database(),
        EXPORT_SUBMIT_LIMIT_PER_MINUTE="0",
        HEALTH_PENDING_MAX_AGE_HOURS="800000",  # the seed's old pending rows: not our subject
        BANKTASKS_PLUGINS="fraud,export,reports,health",  # (no e-mails: not our subject)
    )
    app = e2e.app()
    assert app.runtime.db.dialect == "postgresql"
    planted = seed(app.runtime.db, users=20, transactions=1000, seed_value=3, now=NOW)
    expected_alerts = (
        len(planted.large_transactions)
        + len(planted.structuring_accounts)
        + len(planted.velocity_accounts)
    )
    worker = e2e.start_worker(concurrency=3)
    health = app.tasks["health.system_health_check"]
    before = health.delay().get(timeout=30)
    assert before["checks"]["database"]["status"] == "ok" and before["status"] == "ok", before

    # The database goes away.
    pg_cluster.stop("fast")
    stopped_at = time.monotonic()
    during = health.delay().get(timeout=30)
    fraud = app.tasks["fraud.analyze_fraud_patterns"].delay(
        since=(NOW - timedelta(days=31)).isoformat(), until=NOW.isoformat()
    )
    export = app.tasks["export.export_transaction_data"].delay(
        user_id=1, start_date="2024-05-01", end_date="2024-05-31"
    )
    report = app.tasks["reports.generate_daily_reports"].delay(report_date="2024-05-30")
    tasks = {"fraud": fraud, "export": export, "reports": report}
    for name, result in tasks.items():
        wait_for(lambda r=result: state(r) == "RETRY", 30, f"{name} to fail and retry")
    assert during["status"] == "down", during
    assert during["checks"]["database"]["status"] == "down", during
    assert during["checks"]["broker"]["status"] == "ok", during
    time.sleep(max(0.0, MIN_OUTAGE - (time.monotonic() - stopped_at)))

    # It comes back; every task finishes on a later try.
    pg_cluster.start()
    outage = round(time.monotonic() - stopped_at, 1)
    outcomes = {name: result.get(timeout=240) for name, result in tasks.items()}
    recovered = round(time.monotonic() - stopped_at, 1)
    after = health.delay().get(timeout=30)
    assert after["checks"]["database"]["status"] == "ok" and after["status"] == "ok", after

    metas = result_meta(app, [r.id for r in tasks.values()])
    tries = {name: metas[r.id]["retries"] + 1 for name, r in tasks.items()}
    assert all(n >= 2 for n in tries.values()), tries  # each failed at least once, then made it
    waits = {
        name: [
            line.split("Retry in ")[1].split("s:")[0]
            for line in worker.log().splitlines()
            if r.id in line and "Retry in " in line
        ]
        for name, r in tasks.items()
    }

    stored = alerts(app)
    assert outcomes["fraud"]["alerts_created"] == expected_alerts == len(stored)
    assert duplicates([(a.rule, a.dedup_key) for a in stored]) == 0
    records = exports(app)
    assert len(records) == 1 and outcomes["export"]["export_id"] == records[0].id
    reports = rows(app, StoredReport)
    assert [r.report_date for r in reports] == [date(2024, 5, 30)] and reports[0].runs == 1
    assert dead_letters(app) == []

    figures.update(
        scenario="3. PostgreSQL outage",
        injected=(
            f"pg_ctl stop -m fast for {outage} s while a fraud analysis, an export and a daily "
            "report were sent"
        ),
        tasks_sent=3,
        tasks_completed=sum(1 for m in metas.values() if m["status"] == "SUCCESS"),
        duplicates=duplicates([(a.rule, a.dedup_key) for a in stored])
        + (len(records) - 1)
        + (len(reports) - 1),
        lost=3 - sum(1 for m in metas.values() if m["status"] == "SUCCESS"),
        tries=tries,
        retry_waits_s=waits,
        health_during=f"{during['status']} (database: {during['checks']['database']['status']})",
        health_after=f"{after['status']} (database: {after['checks']['database']['status']})",
        seconds_until_all_done=recovered,
        dead_letters=0,
    )
