"""What fraud gives its neighbours: the daily report section and the health check."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

import plugins.fraud
from plugins.fraud import FraudAlert, register_report_sections

DAY = date(2024, 5, 1)
MIDNIGHT = datetime(2024, 5, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


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


def test_report_section_counts_alerts_opened_that_utc_day(fraud_app):
    db = fraud_app.runtime.db
    add_alert(db, "velocity", MIDNIGHT - US)  # the day before
    add_alert(db, "velocity", MIDNIGHT)  # first microsecond of the day
    add_alert(db, "large_transaction", MIDNIGHT + timedelta(hours=12), status="resolved")
    add_alert(db, "large_transaction", MIDNIGHT + timedelta(days=1) - US, severity="critical")
    add_alert(db, "structuring", MIDNIGHT + timedelta(days=1))  # the next day
    assert register_report_sections(report_date=DAY) == (
        "fraud",
        {
            "alerts_opened": 3,
            "by_rule": {"large_transaction": 2, "velocity": 1},
            "by_severity": {"critical": 1, "high": 2},
        },
    )


def test_report_section_of_a_quiet_day(fraud_app):
    assert register_report_sections(report_date=DAY) == (
        "fraud",
        {"alerts_opened": 0, "by_rule": {}, "by_severity": {}},
    )


def test_report_section_through_the_reports_hookspec(make_app):
    import plugins.reports

    app = make_app(plugins=[plugins.fraud, plugins.reports])
    add_alert(app.runtime.db, "velocity", MIDNIGHT + timedelta(hours=1))
    results = app.runtime.hook.register_report_sections(report_date=DAY)
    assert (
        "fraud",
        {"alerts_opened": 1, "by_rule": {"velocity": 1}, "by_severity": {"high": 1}},
    ) in (results)


@pytest.fixture
def health_app(make_app):
    import plugins.health

    return make_app(plugins=[plugins.fraud, plugins.health])


def run_check(app, now):
    from plugins.health import CheckContext

    (check,) = [
        c
        for batch in app.runtime.hook.register_health_checks()
        for c in batch
        if c.name == "fraud_unresolved_alerts"
    ]
    return check.run(CheckContext(app=app, db=app.runtime.db, now=now, timeout=5.0))


NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC)


def test_health_ok_without_stale_alerts(health_app):
    db = health_app.runtime.db
    add_alert(db, "velocity", NOW - timedelta(days=7))  # exactly 7 days: not older
    add_alert(db, "velocity", NOW - timedelta(days=30), status="resolved")
    add_alert(db, "velocity", NOW - timedelta(days=30), status="false_positive")
    result = run_check(health_app, NOW)
    assert (result.status, result.value, result.threshold) == ("ok", 0, 7)
    assert result.detail == "no unresolved fraud alerts older than 7 days"


@pytest.mark.parametrize("status", ["open", "investigating"])
def test_health_degraded_by_an_old_unresolved_alert(health_app, status):
    add_alert(health_app.runtime.db, "structuring", NOW - timedelta(days=7) - US, status=status)
    result = run_check(health_app, NOW)
    assert (result.status, result.value, result.threshold) == ("degraded", 1, 7)
    assert "1 fraud alert(s) open or investigating for more than 7 days" in result.detail


def test_health_threshold_setting(make_app, monkeypatch):
    import plugins.health

    monkeypatch.setenv("FRAUD_UNRESOLVED_MAX_AGE_DAYS", "2")
    app = make_app(plugins=[plugins.fraud, plugins.health])
    add_alert(app.runtime.db, "velocity", NOW - timedelta(days=3))
    result = run_check(app, NOW)
    assert (result.status, result.value, result.threshold) == ("degraded", 1, 2)


def test_fraud_works_without_its_neighbours(fraud_app):
    hook = fraud_app.runtime.hook
    assert not hasattr(hook, "register_health_checks") or not hook.register_health_checks.spec
    result = plugins.fraud.analyze_fraud_patterns(since=MIDNIGHT, until=NOW)
    assert result["alerts_created"] == 0
