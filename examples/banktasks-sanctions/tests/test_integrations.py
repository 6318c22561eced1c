"""What sanctions gives reports and health, seen through their own tasks."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from banktasks_testing import make_account, make_transaction

from banktasks_sanctions import SanctionsListState
from tests.helpers import T0, run

REFRESH = "sanctions.refresh_sanctions_list"
REPORT = "reports.generate_daily_reports"
HEALTH = "health.system_health_check"
CHECK = "sanctions_list_fresh"


# --8<-- [start:test-section]
def test_the_report_has_a_sanctions_section_of_the_days_hits(make_app, write_list):
    app = make_app(
        "reports", "sanctions", plugin_settings={"sanctions": {"list_path": str(write_list())}}
    )
    refreshed = run(app, REFRESH)
    midnight = T0.replace(hour=0)
    with app.runtime.db.session() as s:
        one, other = make_account(s), make_account(s)
        make_transaction(s, one, "10.00", at=midnight, counterparty="ACME Holdings Ltd.")
        make_transaction(s, one, "5.50", at=T0, counterparty="acme holdings ltd")
        make_transaction(
            s, other, "7.25", at=T0, counterparty="Blue Harbor Shipping", currency="EUR"
        )
        make_transaction(s, one, "99.00", at=T0, counterparty="Someone Else")
        next_day = midnight + timedelta(days=1)
        make_transaction(s, one, "1.00", at=next_day, counterparty="ACME Holdings Ltd.")

    result = run(app, REPORT, report_date=T0.date(), formats=["json"])

    section = json.loads(Path(result["files"]["json"]).read_text())["sections"]["sanctions"]
    assert section == {
        "hits": 3,
        "accounts": 2,
        "by_currency": {"EUR": {"count": 1, "sum": "7.25"}, "USD": {"count": 2, "sum": "15.50"}},
        "list_entries": 2,
        "list_refreshed_at": refreshed["refreshed_at"],
    }


# --8<-- [end:test-section]


def test_the_section_of_a_day_without_a_list(make_app):
    app = make_app("reports", "sanctions")
    result = run(app, REPORT, report_date=T0.date(), formats=["json"])
    section = json.loads(Path(result["files"]["json"]).read_text())["sections"]["sanctions"]
    assert section == {
        "hits": 0,
        "accounts": 0,
        "by_currency": {},
        "list_entries": 0,
        "list_refreshed_at": None,
    }


# --8<-- [start:test-check]
def test_the_health_check_is_down_ok_then_degraded(make_app, write_list):
    app = make_app(
        "health",
        "sanctions",
        plugin_settings={"sanctions": {"list_path": str(write_list()), "max_age_hours": 6}},
    )
    never = run(app, HEALTH)["checks"][CHECK]
    assert (never["status"], never["value"], never["threshold"]) == ("down", None, 6)
    assert "never loaded" in never["detail"]

    run(app, REFRESH)
    fresh = run(app, HEALTH)["checks"][CHECK]
    assert (fresh["status"], fresh["value"], fresh["threshold"]) == ("ok", 0.0, 6)

    with app.runtime.db.session() as s:  # the list was loaded 6.5 hours ago
        s.get(SanctionsListState, 1).refreshed_at -= timedelta(hours=6.5)
    stale = run(app, HEALTH)["checks"][CHECK]
    assert (stale["status"], stale["value"], stale["threshold"]) == ("degraded", 6.5, 6)
    assert "older than SANCTIONS_MAX_AGE_HOURS=6" in stale["detail"]


# --8<-- [end:test-check]


def test_the_plugin_works_without_its_neighbours(make_app, write_list):
    app = make_app("sanctions", plugin_settings={"sanctions": {"list_path": str(write_list())}})
    enabled = set(app.runtime.plugins.enabled())
    assert "sanctions" in enabled and not enabled & {"fraud", "reports", "health"}
    assert run(app, REFRESH)["entries"] == 2
