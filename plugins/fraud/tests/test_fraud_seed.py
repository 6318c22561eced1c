"""The rules find exactly what the seed data (`banktasks_testing.seed_data`) planted, and nothing
else."""

from __future__ import annotations

from datetime import UTC, datetime

from banktasks_testing import seed_data
from plugins.fraud import analyze_fraud_patterns

from .helpers import check_seed_findings

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def test_detects_exactly_what_the_seed_planted(fraud_app):
    summary = check_seed_findings(fraud_app)
    assert summary.large_transactions and summary.structuring_accounts
    assert summary.velocity_accounts


def test_scheduled_first_run_covers_the_seed(fraud_app, monkeypatch):
    monkeypatch.setattr("plugins.fraud.engine.utcnow", lambda: NOW)
    summary = seed_data(fraud_app.runtime.db, users=50, transactions=2000, seed_value=3, now=NOW)
    result = analyze_fraud_patterns()  # what `banktasks demo` sends: {}
    assert result["from_watermark"] is True
    assert result["alerts_created"] == (
        len(summary.large_transactions)
        + len(summary.structuring_accounts)
        + len(summary.velocity_accounts)
    )
