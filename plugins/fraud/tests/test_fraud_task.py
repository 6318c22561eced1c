"""The task: result, idempotency, window checks, watermark + overlap, schedule, retry policy."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from banktasks_testing import assert_not_scheduled, assert_retry_policy, assert_schedule
from core import TaskArgumentError, hookimpl
from plugins.fraud import FraudWatermark, analyze_fraud_patterns

from .helpers import T0, Bank

MINUTE = timedelta(minutes=1)


def plant_one_of_each(bank):
    """One large transaction, one velocity burst, one structuring pair."""
    account = bank.account()
    bank.tx(account, "15000.00", T0, kind="transfer")
    bank.burst(bank.account(), T0, 11, MINUTE)
    bank.txs(bank.account(), [("9500.00", T0), ("9600.00", T0 + MINUTE)], kind="deposit")


def test_result_is_json_safe_and_counts_new_alerts(bank, run):
    plant_one_of_each(bank)
    bank.tx(bank.account(), "1.00", T0 - timedelta(days=10))  # outside the window
    result = run()
    assert result == {
        "since": (T0 - timedelta(days=2)).isoformat(),
        "until": (T0 + timedelta(days=2)).isoformat(),
        "from_watermark": False,
        "scanned": 1 + 11 + 2,
        "findings": 3,
        "alerts_created": 3,
        "by_rule": {"large_transaction": 1, "structuring": 1, "velocity": 1},
        "emitted": 2,  # velocity is medium; the default FRAUD_ALERT_MIN_SEVERITY is high
        "notify_failed": 0,
        "suppressed": 0,
        "suppressed_by_rule": {},
        "cases_opened": 3,  # three customers (one account each), one case each
        "case_notify_failed": 0,
    }


def test_running_a_window_twice_creates_nothing_new(bank, run):
    plant_one_of_each(bank)
    first = run()
    second = run()
    assert first["alerts_created"] == 3
    assert second["alerts_created"] == 0
    assert second["by_rule"] == {"large_transaction": 0, "structuring": 0, "velocity": 0}
    assert second["findings"] == 3
    assert len(bank.alerts()) == 3
    # An overlapping, shifted window finds the same patterns and stores nothing new either.
    assert run(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=3))["alerts_created"] == 0


def test_since_must_be_before_until(fraud_app):
    with pytest.raises(TaskArgumentError, match=r"since=.* must be before until="):
        analyze_fraud_patterns(since=T0, until=T0)
    with pytest.raises(TaskArgumentError, match="must be before"):
        analyze_fraud_patterns(since=T0 + MINUTE, until=T0)


def test_naive_times_are_taken_as_utc_and_others_converted(bank):
    result = analyze_fraud_patterns(
        since=datetime(2024, 5, 1, 0, 0), until="2024-05-01T12:00:00+02:00"
    )
    assert result["since"] == "2024-05-01T00:00:00+00:00"
    assert result["until"] == "2024-05-01T10:00:00+00:00"


def test_bad_argument_types_are_refused(fraud_app):
    with pytest.raises(TaskArgumentError, match="since"):
        analyze_fraud_patterns(since="yesterday-ish")


def test_since_alone_runs_to_now_and_leaves_the_watermark(bank, fraud_app):
    result = analyze_fraud_patterns(since=T0)
    assert datetime.fromisoformat(result["until"]) > T0
    assert result["from_watermark"] is False
    with fraud_app.runtime.db.session() as session:
        assert session.get(FraudWatermark, "analyze_fraud_patterns") is None


# -- watermark + overlap ------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """Set what the analysis takes as now: `clock(datetime)`."""

    def set_now(moment):
        monkeypatch.setattr("plugins.fraud.engine.utcnow", lambda: moment)

    return set_now


def test_first_run_looks_back_then_runs_from_the_watermark_minus_overlap(bank, clock):
    clock(T0)
    first = analyze_fraud_patterns()
    assert first["from_watermark"] is True
    assert first["since"] == (T0 - timedelta(days=30)).isoformat()
    assert first["until"] == T0.isoformat()
    clock(T0 + timedelta(minutes=15))
    second = analyze_fraud_patterns()
    assert second["since"] == (T0 - timedelta(hours=24)).isoformat()
    assert second["until"] == (T0 + timedelta(minutes=15)).isoformat()


def test_lookback_and_overlap_settings(bank_with, clock):
    bank_with(FRAUD_INITIAL_LOOKBACK_DAYS="2", FRAUD_OVERLAP_HOURS="36")
    clock(T0)
    assert analyze_fraud_patterns()["since"] == (T0 - timedelta(days=2)).isoformat()
    clock(T0 + timedelta(hours=1))
    assert analyze_fraud_patterns()["since"] == (T0 - timedelta(hours=36)).isoformat()


def test_a_burst_spanning_two_runs_is_found_once(bank, clock):
    account = bank.account()
    before = bank.burst(account, T0 - 10 * MINUTE, 6, MINUTE)  # 6 before the first run
    bank.burst(account, T0 + MINUTE, 6, MINUTE)  # 6 after it
    clock(T0)
    assert analyze_fraud_patterns()["by_rule"]["velocity"] == 0
    clock(T0 + timedelta(minutes=15))
    assert analyze_fraud_patterns()["by_rule"]["velocity"] == 1
    clock(T0 + timedelta(minutes=30))
    assert analyze_fraud_patterns()["alerts_created"] == 0
    (alert,) = bank.alerts("velocity")
    assert alert.transaction_id == before[0]
    assert alert.evidence["count"] == 12


def test_a_burst_seen_early_keeps_its_key_when_it_grows(bank, clock):
    account = bank.account()
    first_part = bank.burst(account, T0 - 20 * MINUTE, 11, MINUTE)  # over the limit already
    clock(T0)
    assert analyze_fraud_patterns()["by_rule"]["velocity"] == 1
    bank.burst(account, T0 + MINUTE, 8, MINUTE)  # the burst goes on after the first run
    clock(T0 + timedelta(minutes=15))
    assert analyze_fraud_patterns()["alerts_created"] == 0
    (alert,) = bank.alerts("velocity")
    assert alert.transaction_id == first_part[0]


def test_a_structuring_run_spanning_two_runs_is_found(bank, clock):
    account = bank.account()
    first = bank.tx(account, "9500.00", T0 - timedelta(hours=20), kind="deposit")
    clock(T0)
    assert analyze_fraud_patterns()["by_rule"]["structuring"] == 0
    bank.tx(account, "9500.00", T0 + timedelta(minutes=5), kind="deposit")
    clock(T0 + timedelta(minutes=15))
    assert analyze_fraud_patterns()["by_rule"]["structuring"] == 1
    assert bank.alerts("structuring")[0].transaction_id == first


def test_explicit_windows_do_not_move_the_watermark(bank, fraud_app, clock):
    clock(T0)
    analyze_fraud_patterns()
    analyze_fraud_patterns(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))
    with fraud_app.runtime.db.session() as session:
        assert session.get(FraudWatermark, "analyze_fraud_patterns").analysed_until == T0


# -- schedule and retry policy ------------------------------------------------------------


def test_schedule_every_15_minutes(fraud_app):
    assert_schedule(
        fraud_app,
        "analyze-fraud-patterns",
        task="fraud.analyze_fraud_patterns",
        cron="*/15 * * * *",
        kwargs={},
    )
    entry = fraud_app.conf.beat_schedule["analyze-fraud-patterns"]
    assert entry["options"]["expires"] == 14 * 60  # a stale queued run is dropped
    assert entry["schedule"].minute == {0, 15, 30, 45}
    assert entry["schedule"].hour == set(range(24))


def test_schedule_can_be_switched_off(make_app, monkeypatch):
    monkeypatch.setenv("FRAUD_SCHEDULE", "off")
    app = make_app("fraud")
    assert_not_scheduled(app, "analyze-fraud-patterns")
    assert "fraud.analyze_fraud_patterns" in app.tasks


@pytest.mark.parametrize("name", ["analyze_fraud_patterns", "analyze_fraud_patterns_chunked"])
def test_retry_policy_maps_onto_celery(fraud_app, name):
    assert_retry_policy(
        fraud_app,
        f"fraud.{name}",
        max_retries=3,
        retry_on=(OperationalError, DisconnectionError, InterfaceError),
        backoff=15,
        backoff_max=600,
    )
    celery_task = fraud_app.tasks[f"fraud.{name}"]
    assert celery_task.route_queue == "fraud"
    assert celery_task.retry_jitter is True
    assert TaskArgumentError in celery_task.dont_autoretry_for
    assert celery_task.acks_late is True


class FlakyDatabaseRule:
    """A rule whose database connection drops every time (counts its tries)."""

    name = "flaky"
    version = "1"
    severity = "low"

    def __init__(self, error):
        self.error = error
        self.calls = 0

    def find(self, ctx):
        self.calls += 1
        raise self.error


class FlakyRules:
    banktasks_name = "flaky_rules"

    def __init__(self, rule):
        self.rule = rule

    @hookimpl
    def register_fraud_rules(self):
        return [self.rule]


DROPPED = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


@pytest.mark.parametrize(
    ("error", "tries"),
    [(DROPPED, 4), (ValueError("a bug in the rule"), 1)],
    ids=["connection-error-retried-3-times", "other-error-not-retried"],
)
def test_connection_errors_retry_three_times_and_others_fail_at_once(make_app, error, tries):
    rule = FlakyDatabaseRule(error)
    app = make_app("fraud", FlakyRules(rule))
    outcome = app.tasks["fraud.analyze_fraud_patterns"].apply(
        kwargs={"since": T0.isoformat(), "until": (T0 + MINUTE).isoformat()}
    )
    assert outcome.failed()
    assert isinstance(outcome.result, type(error))
    assert rule.calls == tries


def test_a_validation_error_is_not_retried(fraud_app):
    outcome = fraud_app.tasks["fraud.analyze_fraud_patterns"].apply(
        kwargs={"since": T0.isoformat(), "until": T0.isoformat()}
    )
    assert outcome.failed()
    assert isinstance(outcome.result, TaskArgumentError)
    assert outcome.traceback and "Retry" not in outcome.traceback


def test_a_bad_argument_is_refused_before_anything_is_sent(fraud_app):
    with pytest.raises(TaskArgumentError, match="since"):
        fraud_app.tasks["fraud.analyze_fraud_patterns"].delay(since="not a time")


# -- read, then write ---------------------------------------------------------------------


class WriteLockProbe:
    """A rule run after the built-ins (names sort) that checks nobody holds SQLite's write
    lock: another connection must get it at once while the rules run."""

    name = "zz_write_lock_probe"
    version = "1"
    severity = "low"

    path = ""  # the app's SQLite file, set once the app exists
    free = None

    def find(self, ctx):
        other = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # takes the write lock, or fails at once
            other.execute("ROLLBACK")
            self.free = True
        except sqlite3.OperationalError:  # database is locked
            self.free = False
        finally:
            other.close()
        return []


def test_rules_read_without_holding_the_write_lock(make_app):
    probe = WriteLockProbe()
    app = make_app("fraud", FlakyRules(probe))
    probe.path = app.runtime.db.engine.url.database
    plant_one_of_each(Bank(app.runtime.db))  # the rules before the probe find something
    result = analyze_fraud_patterns(since=T0 - MINUTE, until=T0 + timedelta(hours=1))
    assert result["alerts_created"] == 3
    assert probe.free is True  # the alerts are inserted after every rule has read
