"""The task `refresh_sanctions_list`: loading, idempotence, bad files; its wiring and settings."""

from __future__ import annotations

import pytest
from banktasks_testing import assert_not_scheduled, assert_retry_policy, assert_schedule
from core import ConfigError
from sqlalchemy import select

from banktasks_sanctions import SanctionsEntry, SanctionsListError, SanctionsListState
from tests.helpers import LISTED, run

REFRESH = "sanctions.refresh_sanctions_list"


def listed(app):
    """(name, normalised, program) of every entry, by name."""
    with app.runtime.db.session() as s:
        rows = s.execute(
            select(SanctionsEntry.name, SanctionsEntry.normalised, SanctionsEntry.program)
        )
        return sorted(tuple(row) for row in rows)


def state(app):
    with app.runtime.db.session() as s:
        return s.get(SanctionsListState, 1)


def test_the_list_is_loaded_with_its_normalised_names(make_app, write_list):
    path = write_list()
    app = make_app("sanctions", plugin_settings={"sanctions": {"list_path": str(path)}})
    result = run(app, REFRESH)
    assert (result["entries"], result["source"]) == (2, str(path))
    assert listed(app) == [
        ("ACME Holdings Ltd.", "acmeholdingsltd", "SDGT"),
        ("Blue Harbor Shipping", "blueharborshipping", "IRAN"),
    ]
    assert (state(app).entries, state(app).refreshed_at.isoformat()) == (2, result["refreshed_at"])


# --8<-- [start:test-idempotent]
def test_refreshing_twice_gives_the_same_list(make_app, write_list):
    app = make_app("sanctions", plugin_settings={"sanctions": {"list_path": str(write_list())}})
    run(app, REFRESH)
    first = listed(app)
    again = run(app, REFRESH)
    assert listed(app) == first
    assert again["entries"] == len(LISTED)
    assert state(app).refreshed_at.isoformat() == again["refreshed_at"]


# --8<-- [end:test-idempotent]


def test_a_new_file_replaces_the_whole_list(make_app, write_list, monkeypatch):
    app = make_app("sanctions", plugin_settings={"sanctions": {"list_path": str(write_list())}})
    run(app, REFRESH)
    write_list([{"name": "Northwind Trading", "program": ""}])
    assert run(app, REFRESH)["entries"] == 1
    assert listed(app) == [("Northwind Trading", "northwindtrading", None)]


def test_names_that_normalise_alike_are_one_entry(make_app, write_list):
    rows = [
        {"name": "ACME Holdings Ltd.", "program": "A"},
        {"name": "acme holdings ltd", "program": "B"},
    ]
    app = make_app("sanctions", plugin_settings={"sanctions": {"list_path": str(write_list(rows))}})
    assert run(app, REFRESH)["entries"] == 1
    assert listed(app) == [("ACME Holdings Ltd.", "acmeholdingsltd", "A")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,program\n", "no names; the current list is kept"),
        ("  ,x\n,\n", "no `name` column"),
        ("entity\nACME\n", "no `name` column in the header row ['entity']"),
    ],
)
def test_a_bad_file_fails_at_once_and_keeps_the_list(make_app, write_list, content, message):
    path = write_list()
    app = make_app("sanctions", plugin_settings={"sanctions": {"list_path": str(path)}})
    run(app, REFRESH)
    path.write_text(content)
    result = app.tasks[REFRESH].apply()
    assert isinstance(result.result, SanctionsListError)
    assert message in str(result.result)
    assert len(listed(app)) == len(LISTED)


def test_without_a_path_the_task_says_which_setting_to_give(make_app):
    app = make_app("sanctions")
    with pytest.raises(ConfigError, match="SANCTIONS_LIST_PATH is not set"):
        run(app, REFRESH)


# --8<-- [start:test-wiring]
def test_the_retry_policy(make_app):
    assert_retry_policy(
        make_app("sanctions"),
        REFRESH,
        max_retries=3,
        retry_on=(OSError, ConnectionError),
        backoff=30,
        backoff_max=600,
    )


def test_the_schedule_and_its_override(make_app, monkeypatch):
    assert_schedule(make_app("sanctions"), "refresh-sanctions-list", task=REFRESH, cron="0 5 * * *")
    monkeypatch.setenv("SANCTIONS_SCHEDULE", "30 6 * * 1-5")
    assert_schedule(
        make_app("sanctions"), "refresh-sanctions-list", task=REFRESH, cron="30 6 * * 1-5"
    )
    monkeypatch.setenv("SANCTIONS_SCHEDULE", "off")
    assert_not_scheduled(make_app("sanctions"), "refresh-sanctions-list")


def test_a_bad_setting_stops_start_up_with_one_line(make_app, monkeypatch):
    monkeypatch.setenv("SANCTIONS_MAX_AGE_HOURS", "0")
    with pytest.raises(ConfigError) as info:
        make_app("sanctions")
    assert str(info.value) == (
        "SANCTIONS_MAX_AGE_HOURS='0': Input should be greater than or equal to 1"
    )


# --8<-- [end:test-wiring]


def test_a_directory_is_not_a_list_path(make_app, tmp_path):
    with pytest.raises(ConfigError) as info:
        make_app("sanctions", plugin_settings={"sanctions": {"list_path": str(tmp_path)}})
    assert str(info.value) == (
        f"SANCTIONS_LIST_PATH='{tmp_path}': is a directory; give the path of the CSV file"
    )
