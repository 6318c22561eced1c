"""Helpers shared by the fraud plugin's tests: a tiny bank to fill, the analysis, the seed check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import click
from click.testing import CliRunner
from sqlalchemy import select

from banktasks_testing import make_account, make_user, seed_data
from core.models import Transaction, TransactionKind
from plugins.fraud import FraudAlert, analyze_fraud_patterns

T0 = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
"""A fixed moment the boundary tests build around (not on a clock hour)."""


@dataclass
class Bank:
    """Writes accounts (with the testing kit's `make_account`) and transactions, reads alerts."""

    db: Any
    _users: int = 0

    def account(self, **fields: Any) -> int:
        """A new user with one account (`fields` as `make_account`'s); returns its id.

        The user's e-mail is our own (`fraud-test-N@…`): the kit's default
        `userN@example.com` is what the seed data uses too.
        """
        self._users += 1
        with self.db.session() as session:
            user = make_user(session, email=f"fraud-test-{self._users}@example.com")
            return make_account(session, user, **fields).id

    def tx(
        self, account_id: int, amount: str | Decimal, at: datetime, kind: str = "payment"
    ) -> int:
        """One completed transaction; returns its id."""
        return self.txs(account_id, [(amount, at)], kind)[0]

    def txs(
        self, account_id: int, items: list[tuple[str | Decimal, datetime]], kind: str = "payment"
    ) -> list[int]:
        """Several completed transactions of one account; returns their ids in order.

        Added with one flush (the kit's `make_transaction` flushes each row, which makes
        the tests that plant hundreds of rows several times slower).
        """
        with self.db.session() as session:
            rows = [
                Transaction(
                    account_id=account_id,
                    amount=Decimal(amount),
                    kind=TransactionKind(kind),
                    created_at=at,
                    updated_at=at,
                )
                for amount, at in items
            ]
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def burst(
        self,
        account_id: int,
        start: datetime,
        count: int,
        spacing: timedelta,
        amount: str = "12.34",
    ) -> list[int]:
        """`count` payments `spacing` apart from `start`."""
        return self.txs(account_id, [(amount, start + i * spacing) for i in range(count)])

    def alerts(self, rule: str | None = None) -> list[FraudAlert]:
        """Stored alerts (optionally of one rule), oldest id first."""
        query = select(FraudAlert).order_by(FraudAlert.id)
        if rule:
            query = query.where(FraudAlert.rule == rule)
        with self.db.session() as session:
            return list(session.scalars(query))


def analyse(
    since: datetime = T0 - timedelta(days=2), until: datetime = T0 + timedelta(days=2)
) -> dict[str, Any]:
    """Run the task in-process over a window that holds every test row."""
    return analyze_fraud_patterns(since=since, until=until)


SEED_NOW = datetime(2024, 6, 1, tzinfo=UTC)


def check_seed_findings(app: Any, users: int = 80, transactions: int = 4000) -> Any:
    """Seed, analyse, and check the alerts are exactly the planted patterns."""
    summary = seed_data(
        app.runtime.db, users=users, transactions=transactions, seed_value=7, now=SEED_NOW
    )
    result = analyse(since=SEED_NOW - timedelta(days=31), until=SEED_NOW)
    alerts = Bank(app.runtime.db).alerts()
    by_rule: dict[str, list[FraudAlert]] = {}
    for alert in alerts:
        by_rule.setdefault(alert.rule, []).append(alert)

    assert result["scanned"] == summary.transactions
    assert sorted(a.transaction_id for a in by_rule["large_transaction"]) == sorted(
        summary.large_transactions
    )
    structuring = [a.account_id for a in by_rule["structuring"]]
    assert sorted(structuring) == sorted(summary.structuring_accounts)
    velocity = [a.account_id for a in by_rule["velocity"]]
    assert sorted(velocity) == sorted(summary.velocity_accounts)
    assert set(by_rule) == {"large_transaction", "structuring", "velocity"}
    assert result["by_rule"] == {
        "large_transaction": len(summary.large_transactions),
        "structuring": len(summary.structuring_accounts),
        "velocity": len(summary.velocity_accounts),
    }
    flagged = {a.transaction_id for a in alerts}
    assert not flagged & set(summary.near_threshold)  # just below the line, alone: not fraud
    for alert in by_rule["velocity"]:
        assert 12 <= alert.evidence["count"] <= 15  # the seed plants 12-15 within 50 minutes
    # A second run over the same data stores nothing new.
    assert analyse(since=SEED_NOW - timedelta(days=31), until=SEED_NOW)["alerts_created"] == 0
    return summary


def commands(app: Any) -> Callable[..., Any]:
    """`invoke("cases", "list")`: the `banktasks` commands `app`'s plugins add, run in-process
    with click's CliRunner (exceptions not caught); returns click's Result."""
    group = click.Group("banktasks")
    app.runtime.hook.register_commands(cli=group)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(group, list(args), catch_exceptions=False)

    return invoke
