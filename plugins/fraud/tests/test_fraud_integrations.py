"""What fraud gives its neighbours: the daily report section and the health check.

The neighbours are loaded by entry-point name and reached through their hooks and
tasks only (no import of plugins.reports or plugins.health).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.db import utcnow
from plugins.fraud import FraudAlert, analyze_fraud_patterns

DAY = date(2024, 5, 1)
MIDNIGHT = datetime(2024, 5, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
CHECK = "fraud_unresolved_alerts"


def add_alert(db, rule, created_at, status="open", severity="high", key=None):
    with db.session() as session:
        alert = FraudAlert(
            rule=rule,
            account_id=1,
            transaction_id=None,
            severity=severity,
            score=1.0,
            status=status,
            evidence={},
            dedup_key=key or f"{rule}:{created_at.isoformat()}:{status}",
            created_at=created_at,
        )
        session.add(alert)
        session.flush()
        return alert.id


# -- reports: register_report_sections ----------------------------------------------------


@pytest.fixture
def reports_app(make_app):
    """fraud with reports (so reports' hookspecs and task exist)."""
    return make_app("fraud", "reports")


def fraud_sections(app, day):
    """What fraud returns from reports' `register_report_sections(report_date=day)`."""
    return [
        outcome.result
        for outcome in app.runtime.plugins.call_each("register_report_sections", report_date=day)
        if outcome.plugin == "fraud"
    ]


def test_report_section_counts_alerts_opened_that_utc_day(reports_app):
    db = reports_app.runtime.db
    add_alert(db, "velocity", MIDNIGHT - US)  # the day before
    add_alert(db, "velocity", MIDNIGHT)  # first microsecond of the day
    add_alert(db, "large_transaction", MIDNIGHT + timedelta(hours=12), status="resolved")
    add_alert(db, "large_transaction", MIDNIGHT + timedelta(days=1) - US, severity="critical")
    add_alert(db, "structuring", MIDNIGHT + timedelta(days=1))  # the next day
    assert fraud_sections(reports_app, DAY) == [
        (
            "fraud",
            {
                "alerts_opened": 3,
                "by_rule": {"large_transaction": 2, "velocity": 1},
                "by_severity": {"critical": 1, "high": 2},
            },
        )
    ]


def test_report_section_of_a_quiet_day(reports_app):
    assert fraud_sections(reports_app, DAY) == [
        ("fraud", {"alerts_opened": 0, "by_rule": {}, "by_severity": {}})
    ]


def test_the_daily_report_holds_the_fraud_section(reports_app):
    add_alert(reports_app.runtime.db, "velocity", MIDNIGHT + timedelta(hours=1))
    task = reports_app.tasks["reports.generate_daily_reports"]
    result = task.apply(kwargs={"report_date": DAY.isoformat(), "formats": ["json"]}).get()
    assert "fraud" in result["sections"]
    assert result["errors"]["sections"] == {}
    report = json.loads(Path(result["files"]["json"]).read_text())
    assert report["sections"]["fraud"] == {
        "alerts_opened": 1,
        "by_rule": {"velocity": 1},
        "by_severity": {"high": 1},
    }


# -- health: register_health_checks -------------------------------------------------------


@pytest.fixture
def health_app(make_app):
    """fraud with health (so health's hookspecs and task exist)."""
    return make_app("fraud", "health")


def run_check(app, now):
    """Run fraud's check with a context shaped like the one health gives it."""
    (check,) = [
        c for batch in app.runtime.hook.register_health_checks() for c in batch if c.name == CHECK
    ]
    ctx = SimpleNamespace(
        app=app,
        db=app.runtime.db,
        now=now,
        timeout=5.0,
        settings=app.runtime.settings_for("fraud"),
    )
    return check.run(ctx)


NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC)


def test_health_ok_without_stale_alerts(health_app):
    db = health_app.runtime.db
    add_alert(db, "velocity", NOW - timedelta(days=7))  # exactly 7 days: not older
    add_alert(db, "velocity", NOW - timedelta(days=30), status="resolved")
    add_alert(db, "velocity", NOW - timedelta(days=30), status="false_positive")
    assert run_check(health_app, NOW) == {
        "status": "ok",
        "detail": "no unresolved fraud alerts older than 7 days",
        "value": 0,
        "threshold": 7,
    }


@pytest.mark.parametrize("status", ["open", "investigating"])
def test_health_degraded_by_an_old_unresolved_alert(health_app, status):
    add_alert(health_app.runtime.db, "structuring", NOW - timedelta(days=7) - US, status=status)
    result = run_check(health_app, NOW)
    assert (result["status"], result["value"], result["threshold"]) == ("degraded", 1, 7)
    assert "1 fraud alert(s) open or investigating for more than 7 days" in result["detail"]


def test_health_threshold_setting(make_app, monkeypatch):
    monkeypatch.setenv("FRAUD_UNRESOLVED_MAX_AGE_DAYS", "2")
    app = make_app("fraud", "health")
    add_alert(app.runtime.db, "velocity", NOW - timedelta(days=3))
    result = run_check(app, NOW)
    assert (result["status"], result["value"], result["threshold"]) == ("degraded", 1, 2)


def test_the_health_task_runs_the_fraud_check_with_fraud_settings(make_app):
    """Through health's own task: the check gets fraud's settings in `ctx.settings`."""
    app = make_app("fraud", "health", plugin_settings={"fraud": {"unresolved_max_age_days": 2}})
    add_alert(app.runtime.db, "velocity", utcnow() - timedelta(days=3))
    add_alert(app.runtime.db, "velocity", utcnow() - timedelta(days=1))  # not stale yet
    report = app.tasks["health.system_health_check"].apply().get()
    check = report["checks"][CHECK]
    assert (check["status"], check["value"], check["threshold"]) == ("degraded", 1, 2)
    assert "1 fraud alert(s) open or investigating for more than 2 days" in check["detail"]
    json.dumps(report)  # the task's result is JSON


def test_fraud_works_without_its_neighbours(fraud_app):
    hook = fraud_app.runtime.hook
    for neighbours_hook in ("register_health_checks", "register_report_sections"):
        assert not hasattr(hook, neighbours_hook) or not getattr(hook, neighbours_hook).spec
    result = analyze_fraud_patterns(since=MIDNIGHT, until=NOW)
    assert result["alerts_created"] == 0
