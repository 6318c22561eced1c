"""The built-in sections: exact totals, grouping, day boundaries, new customers."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from plugins.reports import generate_daily_reports
from plugins.reports.sections import day_window

from .helpers import DAY, add_account, add_tx, at, stored_rows


def _report(app: Any, day: Any = DAY) -> dict[str, Any]:
    result = generate_daily_reports(report_date=day)
    (row,) = [r for r in stored_rows(app) if r.report_date == day]
    return {"result": result, "sections": row.sections}


def test_totals_to_the_cent_where_float_would_drift(reports_app: Any, in_session: Any) -> None:
    amounts = [Decimal("0.10"), Decimal("0.20"), Decimal("0.30")] * 400
    amounts += [Decimal("9999999.99"), Decimal("12345678.91"), Decimal("0.01"), Decimal("0.07")]
    amounts += [Decimal("1234567.89")] * 7
    expected = sum(amounts, Decimal("0"))
    # The data is chosen so that a float sum drifts (30987894.210000005):
    assert Decimal(repr(sum(float(a) for a in amounts))) != expected

    def fill(session: Any) -> None:
        account = add_account(session)
        for i, amount in enumerate(amounts):
            kind = "deposit" if i % 2 else "payment"
            add_tx(session, account, amount, at(DAY, i % 24, i % 60, i % 60), kind=kind)

    in_session(fill)
    out = _report(reports_app)
    tx = out["sections"]["transactions"]
    assert tx["count"] == len(amounts)
    assert tx["by_currency"]["USD"] == {"count": len(amounts), "sum": str(expected)}
    assert Decimal(tx["by_currency"]["USD"]["sum"]) == expected
    deposits = sum((a for i, a in enumerate(amounts) if i % 2), Decimal("0"))
    payments = sum((a for i, a in enumerate(amounts) if not i % 2), Decimal("0"))
    assert tx["by_kind"]["deposit"]["sums"] == {"USD": str(deposits)}
    assert tx["by_kind"]["payment"]["sums"] == {"USD": str(payments)}
    assert out["result"]["totals"] == {"transactions": len(amounts), "sums": {"USD": str(expected)}}


def test_grouping_by_kind_status_and_currency(reports_app: Any, in_session: Any) -> None:
    plan = [
        ("USD", "deposit", "completed", "100.00"),
        ("USD", "deposit", "completed", "0.01"),
        ("USD", "withdrawal", "failed", "50.50"),
        ("USD", "payment", "pending", "19.99"),
        ("USD", "fee", "completed", "1.25"),
        ("EUR", "deposit", "completed", "200.00"),
        ("EUR", "transfer", "reversed", "75.10"),
        ("EUR", "payment", "pending", "0.90"),
        ("EUR", "payment", "failed", "3.33"),
        ("GBP", "transfer", "completed", "999999.99"),
    ]

    def fill(session: Any) -> None:
        accounts = {c: add_account(session, currency=c) for c in ("USD", "EUR", "GBP")}
        for i, (cur, kind, status, amount) in enumerate(plan):
            add_tx(session, accounts[cur], amount, at(DAY, i), kind=kind, status=status)

    in_session(fill)
    tx = _report(reports_app)["sections"]["transactions"]

    def expect(field: int) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for row in plan:
            counts[row[field]] += 1
            sums[row[field]][row[0]] += Decimal(row[3])
        return {
            key: {"count": counts[key], "sums": {c: str(v) for c, v in sorted(sums[key].items())}}
            for key in counts
        }

    by_kind, by_status = expect(1), expect(2)
    for kind, value in tx["by_kind"].items():
        assert value == by_kind.get(kind, {"count": 0, "sums": {}}), kind
    for status, value in tx["by_status"].items():
        assert value == by_status.get(status, {"count": 0, "sums": {}}), status
    assert list(tx["by_kind"]) == ["deposit", "withdrawal", "transfer", "payment", "fee"]
    assert list(tx["by_status"]) == ["pending", "completed", "failed", "reversed"]
    assert tx["by_currency"] == {
        "EUR": {"count": 4, "sum": "279.33"},
        "GBP": {"count": 1, "sum": "999999.99"},
        "USD": {"count": 5, "sum": "171.75"},
    }
    assert tx["pending"] == 2
    assert tx["failed"] == 2
    assert tx["count"] == len(plan)
    assert tx["active_accounts"] == 3


def test_day_is_midnight_to_midnight_utc(reports_app: Any, in_session: Any) -> None:
    start, end = day_window(DAY)
    assert (start.isoformat(), end.isoformat()) == (
        "2024-01-31T00:00:00+00:00",
        "2024-02-01T00:00:00+00:00",
    )
    tiny = timedelta(microseconds=1)

    def fill(session: Any) -> None:
        account = add_account(session)
        add_tx(session, account, "1.00", start - tiny)  # previous day, last microsecond
        add_tx(session, account, "2.00", start)  # exactly midnight: in
        add_tx(session, account, "4.00", end - tiny)  # 23:59:59.999999: in
        add_tx(session, account, "8.00", end)  # next midnight: next day

    in_session(fill)
    tx = _report(reports_app)["sections"]["transactions"]
    assert tx["count"] == 2
    assert tx["by_currency"]["USD"]["sum"] == "6.00"
    before = _report(reports_app, DAY - timedelta(days=1))["sections"]["transactions"]
    after = _report(reports_app, DAY + timedelta(days=1))["sections"]["transactions"]
    assert before["by_currency"]["USD"] == {"count": 1, "sum": "1.00"}
    assert after["by_currency"]["USD"] == {"count": 1, "sum": "8.00"}


def test_new_users_and_accounts_of_the_day(reports_app: Any, in_session: Any) -> None:
    start, end = day_window(DAY)
    tiny = timedelta(microseconds=1)

    def fill(session: Any) -> None:
        add_account(session, created_at=start, user_created=start)  # both in
        add_account(session, created_at=end - tiny, user_created=start - tiny)  # account only
        add_account(session, created_at=end, user_created=end)  # next day
        add_account(session)  # long ago

    in_session(fill)
    sections = _report(reports_app)["sections"]
    assert sections["customers"] == {"new_users": 1, "new_accounts": 2}


def test_empty_day_still_gives_a_full_report(reports_app: Any) -> None:
    out = _report(reports_app)
    tx = out["sections"]["transactions"]
    assert tx["count"] == 0
    assert tx["by_currency"] == {}
    assert tx["pending"] == tx["failed"] == 0
    assert all(v == {"count": 0, "sums": {}} for v in tx["by_kind"].values())
    assert out["result"]["totals"] == {"transactions": 0, "sums": {}}
    assert set(out["result"]["files"]) == {"json", "csv", "html"}
