"""The testing kit as a plugin author meets it: a fresh pytest session (pytester, in a
subprocess) with nothing but the installed `banktasks[testing]` pytest plugin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from banktasks_testing import assert_not_scheduled, assert_retry_policy, assert_schedule
from tests.conftest import install_dist

HERE = Path(__file__).resolve().parent


def run(pytester: pytest.Pytester, source: str, *args: str, **env: str) -> pytest.RunResult:
    pytester.makepyfile(test_author=source)
    for key, value in env.items():
        os.environ[key] = value
    try:
        return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", *args)
    finally:
        for key in env:
            os.environ.pop(key, None)


def test_no_broker_is_started_for_a_test_that_never_touches_one(pytester):
    result = run(
        pytester,
        """
        def test_builds_and_queries_only(make_app, session_broker):
            app = make_app("health")
            assert "health.system_health_check" in app.tasks
            assert not session_broker.started

        def test_sending_starts_it(make_app, session_broker):
            app = make_app("health")
            app.tasks["health.system_health_check"].delay()
            assert session_broker.started
            assert app.redis_client().llen("health") == 1
        """,
    )
    result.assert_outcomes(passed=2)


def test_isolation_clears_every_installed_plugins_variables(pytester, tmp_path):
    site = install_dist(
        tmp_path / "site",
        "acme_rules",
        "acme-rules",
        HERE / "acme_plugin_src.py",
        {"acme_rules": "acme_rules"},
    )
    result = run(
        pytester,
        """
        import os

        def test_clean(bt_env):
            for name in ("ACME_RULES_THRESHOLD", "FRAUD_LARGE_AMOUNT", "SMTP_HOST",
                         "FLOWER_PORT", "REDIS_URL"):
                assert name not in os.environ, name
            assert os.environ["UNRELATED_VARIABLE"] == "kept"
        """,
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        ACME_RULES_THRESHOLD="99",
        FRAUD_LARGE_AMOUNT="1",
        SMTP_HOST="smtp.example.com",
        FLOWER_PORT="1",
        REDIS_URL="redis://elsewhere:6379/0",
        UNRELATED_VARIABLE="kept",
    )
    result.assert_outcomes(passed=1)


def test_plugin_settings_in_the_call_and_factories(pytester):
    result = run(
        pytester,
        """
        from decimal import Decimal
        from sqlalchemy import func, select
        from banktasks_testing import (
            make_account, make_transaction, make_transactions, make_user, seed_data
        )
        from core.models import Transaction

        def test_settings_and_data(make_app):
            app = make_app("fraud", plugin_settings={"fraud": {"large_amount": 5000}})
            assert app.runtime.settings_for("fraud").large_amount == Decimal("5000")
            with app.runtime.db.session() as session:
                account = make_account(session)
                make_transaction(session, account, amount="5000.01")
                make_transactions(session, account, [{"amount": "0.49"}, {"amount": "0.50"}])
            with app.runtime.db.session() as session:
                total = session.scalar(select(func.sum(Transaction.amount)))
            assert total == Decimal("5001.00")
            assert app.tasks["fraud.analyze_fraud_patterns"].apply().get()["alerts_created"] == 1

        def test_seed_data(make_app):
            app = make_app("fraud")
            summary = seed_data(app.runtime.db, users=5, transactions=300)
            assert summary.users == 5 and summary.large_transactions
            with app.runtime.db.session() as session:
                assert make_user(session).id == 6  # no clash with the seed's users
        """,
    )
    result.assert_outcomes(passed=2)


def test_retry_and_schedule_assertions(make_app):
    app = make_app("health", "fraud")
    assert_schedule(
        app, "system-health-check", task="health.system_health_check", cron="*/30 * * * *"
    )
    assert_retry_policy(app, "health.system_health_check", max_retries=0, retry_on=())
    with pytest.raises(AssertionError, match="not '0 \\* \\* \\* \\*'"):
        assert_schedule(
            app, "system-health-check", task="health.system_health_check", cron="0 * * * *"
        )
    with pytest.raises(AssertionError, match="max_retries="):
        assert_retry_policy(app, "health.system_health_check", max_retries=3, retry_on=())
    off = make_app("health", plugin_settings={"health": {"schedule": "off"}})
    assert_not_scheduled(off, "system-health-check")
    with pytest.raises(AssertionError, match="is scheduled"):
        assert_not_scheduled(app, "system-health-check")
