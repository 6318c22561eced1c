"""Input that must be refused: property-based tests over every task's arguments.

For any arguments, each task either returns a result or raises TaskArgumentError —
never another exception — and a refusal writes no file and no row. The caller of
`.delay()` validates the same way before anything reaches the broker: it refuses
nothing the task would accept, and every malformed argument (types, missing or extra
arguments, absurd numbers, impossible dates, huge strings, unknown or path-like
format names) is refused there already. Only what needs the database (an unknown
user) is left to the worker.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.security.conftest import USERS, Outcome, SecApp

FRAUD = "fraud.analyze_fraud_patterns"
CHUNKED = "fraud.analyze_fraud_patterns_chunked"
COMBINE = "fraud.combine_fraud_slices"
REPORTS = "reports.generate_daily_reports"
NOTIFY = "notifications.send_email_notification"
ADMIN = "notifications.send_admin_email"
EXPORT = "export.export_transaction_data"
HEALTH = "health.system_health_check"

PROPERTY = settings(
    max_examples=int(os.environ.get("BANKTASKS_SEC_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HUGE = "x" * (1 << 20) + "!"  # more than 1 MiB
HUGE_UTF8 = "é" * (1 << 19) + "é"  # more than 1 MiB once encoded
PATH_LIKE = [
    "../x",
    "/etc/passwd",
    "csv/../../x",
    "../../../../etc/passwd",
    "..",
    ".",
    "./csv",
    "csv/",
    "csv\x00",
    "csv\n",
    "..\\..\\x",
    "c:\\windows\\x",
    "~/x",
    "%2e%2e%2fx",
    "CSV",
    " csv",
    "csv ",
    "",
    "csv.csv",
    "-csv",
    HUGE,
]
BAD_DATES = [
    "2024-02-30",
    "2023-02-29",
    "2024-13-01",
    "2024-00-10",
    "2024-06-31",
    "0000-01-01",
    "10000-01-01",
    "2024/01/01",
    "01-02-2024",
    "yesterday",
    "NaN",
    "",
    "2024-01-01T25:00:00",
    "2024-01-01T12:61:00",
    "2024-01-01T12:00:00+25:00",
    "-2024-01-01",
    HUGE,
]
ABSURD_INTS = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=0),
    st.sampled_from([2**31, 2**32, 2**63 - 1, 2**63, 2**64, -1, 0, 10**400]),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    ABSURD_INTS,
    FLOATS,
    st.text(max_size=20),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(PATH_LIKE),
    st.sampled_from(BAD_DATES),
)
TIMEZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12, minutes=59))]
)
DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=TIMEZONES
)
DATES = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
EXTRA_NAMES = st.sampled_from(
    ["extra", "user", "format", "path", "since_", "__class__", "x" * 300, "y" * (1 << 20)]
)


def arguments(
    valid: dict[str, st.SearchStrategy[Any]],
    bad: dict[str, st.SearchStrategy[Any]],
    required: tuple[str, ...] = (),
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid arguments (optional ones sometimes left out), then up to two of them broken:
    replaced by a bad value, dropped, or joined by an argument the task does not have.

    Starting from valid arguments lets each bad value reach the check it is meant for
    (and lets valid calls run the task body), rather than tripping on the first field.
    """

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        kwargs = {
            name: draw(strategy)
            for name, strategy in valid.items()
            if name in required or draw(st.booleans())
        }
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            action = draw(st.sampled_from(["replace", "replace", "drop", "extra"]))
            if action == "extra" or not valid:
                kwargs[draw(EXTRA_NAMES)] = draw(JUNK)
                continue
            name = draw(st.sampled_from(sorted(valid)))
            if action == "drop":
                kwargs.pop(name, None)
            else:
                kwargs[name] = draw(st.one_of(bad.get(name, JUNK), JUNK))
        return kwargs

    return build()


def recent(days_back: int = 40) -> st.SearchStrategy[date]:
    today = datetime.now(UTC).date()
    return st.dates(min_value=today - timedelta(days=days_back), max_value=today)


def recent_moments() -> st.SearchStrategy[datetime]:
    now = datetime.now(UTC).replace(tzinfo=None)
    return st.datetimes(
        min_value=now - timedelta(days=40), max_value=now + timedelta(days=1), timezones=TIMEZONES
    )


MOMENTS_BAD = st.one_of(
    DATETIMES, DATETIMES.map(lambda d: d.isoformat()), st.sampled_from(BAD_DATES)
)
DATES_BAD = st.one_of(
    DATES,
    DATES.map(date.isoformat),
    st.sampled_from([date(1, 1, 1), date(9999, 12, 31), "9999-12-31", "0001-01-01"]),
    st.sampled_from(BAD_DATES),
)
FORMAT_NAMES_BAD = st.one_of(
    st.sampled_from([*PATH_LIKE, "pdf", "xlsx", "PDF"]), st.text(max_size=12)
)


def observe(outcome: Outcome) -> Outcome:
    """Label the example for `--hypothesis-show-statistics`: ran, or refused where."""
    if not outcome.refused_in_process:
        event("ran")
    else:
        event("refused by the caller" if outcome.refused_by_caller else "refused by the task")
    return outcome


# --- fraud.analyze_fraud_patterns(since=None, until=None) ----------------------------

FRAUD_ARGS = arguments(
    {
        "since": st.one_of(st.none(), recent_moments()),
        "until": st.one_of(st.none(), recent_moments()),
    },
    {"since": MOMENTS_BAD, "until": MOMENTS_BAD},
)


@PROPERTY
@given(kwargs=FRAUD_ARGS)
def test_fraud_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    observe(sec_app.check(FRAUD, kwargs))


# --- fraud.analyze_fraud_patterns_chunked(since, until, chunks=4) ---------------------

CHUNKED_ARGS = arguments(
    {
        "since": recent_moments(),
        "until": recent_moments(),
        "chunks": st.integers(min_value=1, max_value=8),
    },
    {
        "since": MOMENTS_BAD,
        "until": MOMENTS_BAD,
        "chunks": st.one_of(ABSURD_INTS, st.integers(min_value=65, max_value=10**6), FLOATS),
    },
    required=("since", "until"),
)


@PROPERTY
@given(kwargs=CHUNKED_ARGS)
def test_fraud_chunked_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    observe(sec_app.check(CHUNKED, kwargs))


# --- fraud.combine_fraud_slices(results) (the chord's callback) ----------------------

COUNTS = st.integers(min_value=0, max_value=10**6)
SLICE_RESULT = st.fixed_dictionaries(
    {
        "since": recent_moments().map(lambda d: d.isoformat()),
        "until": recent_moments().map(lambda d: d.isoformat()),
        "scanned": COUNTS,
        "findings": COUNTS,
        "alerts_created": COUNTS,
        "by_rule": st.dictionaries(st.sampled_from(["velocity", "large_transaction"]), COUNTS),
        "emitted": COUNTS,
        "notify_failed": COUNTS,
    }
)
COMBINE_ARGS = arguments(
    {"results": st.lists(SLICE_RESULT, min_size=1, max_size=4)},
    {
        "results": st.one_of(
            st.just([]),
            st.lists(JUNK, min_size=1, max_size=3),
            st.lists(SLICE_RESULT, min_size=65, max_size=65),
            SLICE_RESULT.map(lambda r: [{**r, "scanned": -1}]),
            SLICE_RESULT.map(lambda r: [{**r, "by_rule": {"velocity": "many"}}]),
        )
    },
    required=("results",),
)


@PROPERTY
@given(kwargs=COMBINE_ARGS)
def test_fraud_combine_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    observe(sec_app.check(COMBINE, kwargs))


# --- reports.generate_daily_reports(report_date=None, formats=None) -----------------

REPORT_ARGS = arguments(
    {
        "report_date": st.one_of(st.none(), recent(), recent().map(date.isoformat)),
        "formats": st.one_of(
            st.none(),
            st.lists(
                st.sampled_from(["json", "csv", "html", "CSV", " html "]), min_size=1, max_size=3
            ),
        ),
    },
    {
        "report_date": DATES_BAD,
        "formats": st.one_of(
            st.lists(FORMAT_NAMES_BAD, max_size=3),
            st.lists(st.sampled_from(["csv", "../csv"]), min_size=5000, max_size=5000),
            st.sampled_from(["csv", HUGE, [HUGE], ["csv", None], [["csv"]]]),
        ),
    },
)


@PROPERTY
@given(kwargs=REPORT_ARGS)
def test_reports_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    observe(sec_app.check(REPORTS, kwargs))


# --- notifications.send_email_notification / send_admin_email ------------------------

PLAIN = st.characters(blacklist_categories=("Cc", "Cs"))
VALID_SUBJECT = st.text(PLAIN, min_size=1, max_size=40).filter(str.strip)
VALID_BODY = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80).filter(
    str.strip
)
BAD_SUBJECTS = st.one_of(
    st.sampled_from(
        [
            "Hi\r\nBcc: victim@example.net",
            "Hi\nBcc: victim@example.net",
            "Hi\rX-Injected: 1",
            "Hi\x00there",
            "Hi\u2028Bcc: victim@example.net",
            "Hi\x85Bcc: victim@example.net",
            "",
            "   ",
            "s" * 999,
            HUGE,
            "Hi \ud800",
            "=?utf-8?q?Hi=0D=0ABcc:_victim@example.net?=",
        ]
    ),
    st.text(max_size=40),
)
BAD_BODIES = st.sampled_from(["", " \n ", HUGE, HUGE_UTF8, "\ud800"])
BAD_KEYS = st.sampled_from(["", "k" * 201, "a\r\nb", "\x00", HUGE, "k\udfff"])
BAD_USER_IDS = st.one_of(
    ABSURD_INTS, st.integers(min_value=USERS + 1), st.sampled_from(["1x", "one", 1.5, True])
)
MAIL_VALID = {
    "subject": VALID_SUBJECT,
    "message": VALID_BODY,
    "html_message": st.one_of(st.none(), VALID_BODY),
    "idempotency_key": st.one_of(st.none(), st.text(PLAIN, min_size=1, max_size=30)),
}
MAIL_BAD = {
    "subject": BAD_SUBJECTS,
    "message": BAD_BODIES,
    "html_message": BAD_BODIES,
    "idempotency_key": BAD_KEYS,
}
NOTIFY_ARGS = arguments(
    {"user_id": st.integers(min_value=1, max_value=USERS), **MAIL_VALID},
    {"user_id": BAD_USER_IDS, **MAIL_BAD},
    required=("user_id", "subject", "message"),
)
ADMIN_ARGS = arguments(MAIL_VALID, MAIL_BAD, required=("subject", "message"))


@PROPERTY
@given(kwargs=NOTIFY_ARGS)
def test_user_notification_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    observe(sec_app.check(NOTIFY, kwargs))


@PROPERTY
@given(kwargs=ADMIN_ARGS)
def test_admin_email_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    observe(sec_app.check(ADMIN, kwargs))


# --- export.export_transaction_data(user_id, start_date, end_date, export_format) ---

EXPORT_ARGS = arguments(
    {
        "user_id": st.integers(min_value=1, max_value=USERS),
        "start_date": st.one_of(recent(), recent().map(date.isoformat)),
        "end_date": st.one_of(recent(), recent().map(date.isoformat)),
        "export_format": st.sampled_from(["csv", "jsonl"]),
    },
    {
        "user_id": BAD_USER_IDS,
        "start_date": DATES_BAD,
        "end_date": DATES_BAD,
        "export_format": FORMAT_NAMES_BAD,
    },
    required=("user_id", "start_date", "end_date"),
)


@PROPERTY
@given(kwargs=EXPORT_ARGS)
def test_export_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    observe(sec_app.check(EXPORT, kwargs))


# --- health.system_health_check() ---------------------------------------------------


@PROPERTY
@given(kwargs=st.dictionaries(st.one_of(EXTRA_NAMES, st.text(min_size=1, max_size=8)), JUNK))
def test_health_any_arguments(sec_app: SecApp, kwargs: dict[str, Any]) -> None:
    outcome = observe(sec_app.check(HEALTH, kwargs))
    assert outcome.refused_by_caller == bool(kwargs)


# --- malformed input: refused by the caller already, with a clear message -------------

MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    # wrong types, missing and extra arguments
    (FRAUD, {"since": "last tuesday"}, "since"),
    (FRAUD, {"until": float("nan")}, "until"),
    (FRAUD, {"since": 10**400}, "since"),
    (FRAUD, {"window": 5}, "unexpected keyword argument 'window'"),
    (FRAUD, {"since": "2024-02-30T00:00:00"}, "since"),
    (FRAUD, {"since": "2024-01-02T00:00:00", "until": "2024-01-01T00:00:00"}, "before"),
    (REPORTS, {"report_date": "2024-02-30"}, "report_date"),
    (REPORTS, {"report_date": "2023-02-29"}, "report_date"),
    (REPORTS, {"report_date": 1.5}, "report_date"),
    (REPORTS, {"report_date": "9999-12-31"}, "future"),
    (REPORTS, {"formats": "csv"}, "formats"),
    (REPORTS, {"formats": ["pdf"]}, "unknown report format"),
    (REPORTS, {"formats": ["../x"]}, "'../x'"),
    (REPORTS, {"formats": ["/etc/passwd"]}, "'/etc/passwd'"),
    (REPORTS, {"formats": ["csv/../../x"]}, "'csv/../../x'"),
    (REPORTS, {"formats": []}, "no format"),
    (REPORTS, {"formats": [HUGE]}, "formats"),
    (REPORTS, {"date": "2024-01-01"}, "unexpected keyword argument 'date'"),
    (NOTIFY, {"subject": "Hi", "message": "Body"}, "missing a required argument: 'user_id'"),
    (NOTIFY, {"user_id": "one", "subject": "Hi", "message": "Body"}, "user_id"),
    (NOTIFY, {"user_id": -1, "subject": "Hi", "message": "Body"}, "user_id"),
    (NOTIFY, {"user_id": 0, "subject": "Hi", "message": "Body"}, "user_id"),
    (NOTIFY, {"user_id": 2**64, "subject": "Hi", "message": "Body"}, "user_id"),
    (NOTIFY, {"user_id": 1.5, "subject": "Hi", "message": "Body"}, "user_id"),
    (NOTIFY, {"user_id": float("inf"), "subject": "Hi", "message": "Body"}, "user_id"),
    (NOTIFY, {"user_id": 1, "subject": "Hi\r\nBcc: x@evil.test", "message": "B"}, "line break"),
    (NOTIFY, {"user_id": 1, "subject": "", "message": "Body"}, "subject"),
    (NOTIFY, {"user_id": 1, "subject": HUGE, "message": "Body"}, "subject"),
    (NOTIFY, {"user_id": 1, "subject": "Hi", "message": HUGE}, "message"),
    (NOTIFY, {"user_id": 1, "subject": "Hi", "message": HUGE_UTF8}, "message"),
    (NOTIFY, {"user_id": 1, "subject": "Hi", "message": "B", "html_message": HUGE}, "html"),
    (NOTIFY, {"user_id": 1, "subject": "Hi", "message": "B", "cc": "x@evil.test"}, "'cc'"),
    (NOTIFY, {"user_id": 1, "subject": "Hi", "message": "B", "idempotency_key": "k" * 201}, "key"),
    (ADMIN, {"subject": "Hi\nX-Injected: yes", "message": "Body"}, "line break"),
    (ADMIN, {"subject": "=?utf-8?q?Hi=0AX-Injected:_yes?=", "message": "Body"}, "line break"),
    (ADMIN, {"subject": "Hi", "message": ""}, "message"),
    (ADMIN, {"subject": "Hi", "message": "B", "to": "x@evil.test"}, "'to'"),
    (EXPORT, {"user_id": 1, "start_date": "2024-02-30", "end_date": "2024-03-01"}, "start_date"),
    (EXPORT, {"user_id": "one", "start_date": "2024-01-01", "end_date": "2024-01-31"}, "user_id"),
    (EXPORT, {"user_id": 2**64, "start_date": "2024-01-01", "end_date": "2024-01-31"}, "user_id"),
    (EXPORT, {"user_id": -5, "start_date": "2024-01-01", "end_date": "2024-01-31"}, "user_id"),
    (EXPORT, {"user_id": 1, "start_date": "2024-01-31", "end_date": "2024-01-01"}, "before"),
    (EXPORT, {"user_id": 1, "start_date": "2020-01-01", "end_date": "2024-01-01"}, "EXPORT_MAX"),
    (EXPORT, {"user_id": 1, "start_date": "9999-12-31", "end_date": "9999-12-31"}, "end_date"),
    (EXPORT, {"user_id": 1, "start_date": "2024-01-01"}, "missing a required argument: 'end_date'"),
    (EXPORT, {"user_id": 1, "start_date": 1.5, "end_date": "2024-01-01"}, "start_date"),
    *[
        (
            EXPORT,
            {
                "user_id": 1,
                "start_date": "2024-01-01",
                "end_date": "2024-01-02",
                "export_format": f,
            },
            "format",
        )
        for f in [*PATH_LIKE, "pdf", "xlsx", None, 5]
    ],
    (HEALTH, {"verbose": True}, "unexpected keyword argument 'verbose'"),
]


@pytest.mark.parametrize(
    ("task_name", "kwargs", "says"),
    MALFORMED,
    ids=[f"{t.split('.')[1]}-{i}" for i, (t, _k, _s) in enumerate(MALFORMED)],
)
def test_malformed_input_is_refused_by_the_caller(
    sec_app: SecApp, task_name: str, kwargs: dict[str, Any], says: str
) -> None:
    outcome = sec_app.check(task_name, kwargs)
    assert outcome.refused_in_process and outcome.refused_by_caller
    assert says.lower() in outcome.error.lower(), outcome.error[:300]
    assert task_name in outcome.error or "\n" not in outcome.error


@pytest.mark.parametrize(
    ("task_name", "kwargs", "says"),
    [
        (NOTIFY, {"user_id": USERS + 1, "subject": "Hi", "message": "Body"}, "no such user"),
        (NOTIFY, {"user_id": 2**62, "subject": "Hi", "message": "Body"}, "no such user"),
        (
            EXPORT,
            {"user_id": USERS + 1, "start_date": "2024-01-01", "end_date": "2024-01-02"},
            "no such user",
        ),
        (
            EXPORT,
            {"user_id": 2**62, "start_date": "2024-01-01", "end_date": "2024-01-02"},
            "no such user",
        ),
    ],
)
def test_unknown_user_is_refused_by_the_task_and_writes_nothing(
    sec_app: SecApp, task_name: str, kwargs: dict[str, Any], says: str
) -> None:
    """Whether a user exists is a database question: the worker answers it (not the caller)."""
    outcome = sec_app.check(task_name, kwargs)
    assert outcome.refused_in_process and not outcome.refused_by_caller
    assert says in outcome.error and str(kwargs["user_id"]) in outcome.error
