"""The @task decorator: validation from type hints, JSON on the wire, retry mapping."""

from __future__ import annotations

import random
from datetime import date, datetime
from decimal import Decimal

import pytest

from core import RetryPolicy, TaskArgumentError, task


@task
def export_like(
    user_id: int,
    start_date: date,
    end_date: date,
    export_format: str = "csv",
    limit: Decimal | None = None,
) -> dict:
    return {"user_id": user_id, "days": (end_date - start_date).days, "format": export_format}


def test_message_kwargs_are_json_and_only_those_given():
    kwargs = export_like.message_kwargs(
        (), {"user_id": "1", "start_date": "2024-01-01", "end_date": date(2024, 1, 31)}
    )
    assert kwargs == {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-31"}


def test_positional_arguments_become_keywords():
    kwargs = export_like.message_kwargs((7, "2024-01-01", "2024-01-02"), {})
    assert kwargs == {"user_id": 7, "start_date": "2024-01-01", "end_date": "2024-01-02"}


def test_direct_call_validates_and_fills_defaults():
    assert export_like(user_id=1, start_date="2024-01-01", end_date="2024-01-31") == {
        "user_id": 1,
        "days": 30,
        "format": "csv",
    }


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            {"user_id": "abc", "start_date": "2024-01-01", "end_date": "2024-01-31"},
            "argument 'user_id'='abc'",
        ),
        (
            {"user_id": 1, "start_date": "2024-02-30", "end_date": "2024-01-31"},
            "argument 'start_date'='2024-02-30'",
        ),
        ({"user_id": 1, "start_date": "2024-01-01"}, "missing a required argument: 'end_date'"),
        (
            {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-02", "color": "red"},
            "unexpected keyword argument 'color'",
        ),
        (
            {"user_id": 1, "start_date": "2024-01-01", "end_date": "2024-01-02", "limit": "x"},
            "argument 'limit'='x'",
        ),
    ],
)
def test_bad_arguments_raise_a_clear_error(kwargs, fragment):
    with pytest.raises(TaskArgumentError) as info:
        export_like.message_kwargs((), kwargs)
    assert fragment in str(info.value)
    assert str(info.value).startswith("export_like")


def test_huge_value_is_shortened_in_the_error():
    with pytest.raises(TaskArgumentError) as info:
        export_like.message_kwargs(
            (),
            {"user_id": "9" * 10_000 + "x", "start_date": "2024-01-01", "end_date": "2024-01-02"},
        )
    assert len(str(info.value)) < 400


def test_missing_type_hint_is_refused_at_decoration():
    with pytest.raises(TypeError, match="needs a type hint"):

        @task
        def untyped(x):  # type: ignore[no-untyped-def]
            return x


def test_var_kwargs_are_refused():
    with pytest.raises(TypeError, match=r"\*args/\*\*kwargs"):

        @task
        def loose(**kwargs: int) -> None:
            return None


def test_datetime_round_trip_keeps_timezone():
    @task
    def window(since: datetime) -> None:
        return None

    kwargs = window.message_kwargs((), {"since": "2024-01-01T10:00:00+00:00"})
    assert kwargs == {"since": "2024-01-01T10:00:00Z"}


# Retry policy ------------------------------------------------------------------------------


def test_retry_policy_maps_onto_celery_options():
    policy = RetryPolicy(max_retries=5, backoff=60, backoff_max=900, retry_on=(ConnectionError,))
    assert policy.celery_options() == {
        "autoretry_for": (ConnectionError,),
        "max_retries": 5,
        "retry_backoff": 60,
        "retry_backoff_max": 900,
        "retry_jitter": True,
    }


def test_backoff_doubles_and_is_capped():
    policy = RetryPolicy(max_retries=6, backoff=10, backoff_max=100, jitter=False)
    assert [policy.countdown(n) for n in range(6)] == [10, 20, 40, 80, 100, 100]
    assert policy.longest_wait == 100


def test_backoff_matches_celerys_own_formula():
    from celery.utils.time import get_exponential_backoff_interval

    policy = RetryPolicy(max_retries=6, backoff=3, backoff_max=50, jitter=False)
    for retries in range(6):
        assert policy.countdown(retries) == get_exponential_backoff_interval(
            factor=3, retries=retries, maximum=50, full_jitter=False
        )


def test_jitter_stays_within_zero_and_the_capped_value():
    policy = RetryPolicy(max_retries=5, backoff=10, backoff_max=60, jitter=True)
    rng = random.Random(1)
    for retries in range(5):
        capped = min(60, 10 * 2**retries)
        values = {policy.countdown(retries, rng) for _ in range(300)}
        assert min(values) >= 0
        assert max(values) <= capped
        assert len(values) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"backoff": 0},
        {"backoff": 10, "backoff_max": 5},
        {"retry_on": ("ConnectionError",)},
    ],
)
def test_bad_retry_policy_is_refused(kwargs):
    with pytest.raises((ValueError, TypeError)):
        RetryPolicy(**kwargs)


def _end_after_start(start: date, end: date) -> None:
    if end < start:
        raise ValueError(f"end {end} is before start {start}")


@task(check=_end_after_start)
def ranged(start: date, end: date) -> dict:
    return {}


def test_cross_argument_check_runs_before_sending():
    assert ranged.message_kwargs((), {"start": "2024-01-01", "end": "2024-01-01"})
    with pytest.raises(TaskArgumentError, match="ranged: end 2023-12-31 is before start"):
        ranged.message_kwargs((), {"start": "2024-01-01", "end": "2023-12-31"})
    with pytest.raises(TaskArgumentError):
        ranged(start="2024-01-02", end="2024-01-01")
