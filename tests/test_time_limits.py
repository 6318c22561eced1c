"""Time limits: every task has a soft and a hard one; plugins set them, settings override."""

from __future__ import annotations

from typing import Any

import pytest

from banktasks_testing import fake_plugin
from core import ConfigError, task
from core.timelimits import TimeLimits, parse_overrides


def _plugin(**task_options: Any) -> Any:
    def quick() -> int:
        """A task without limits of its own."""
        return 1

    def long_one() -> int:
        """A task whose plugin gives it limits."""
        return 2

    return fake_plugin(
        "limits",
        register_tasks=lambda: [task(quick), task(long_one, **task_options)],
    )


def test_a_task_without_limits_gets_the_defaults(make_app: Any) -> None:
    app = make_app(("limits", _plugin()))
    quick = app.tasks["limits.quick"]
    assert (quick.soft_time_limit, quick.time_limit) == (300, 360)
    app = make_app(("limits", _plugin()), banktasks_soft_time_limit=20, banktasks_time_limit=30)
    assert (app.tasks["limits.quick"].soft_time_limit, app.tasks["limits.quick"].time_limit) == (
        20,
        30,
    )


def test_a_plugin_sets_its_tasks_limits_and_settings_override_them(make_app: Any) -> None:
    plugin = _plugin(soft_time_limit=900, time_limit=960)
    app = make_app(("limits", plugin))
    assert (
        app.tasks["limits.long_one"].soft_time_limit,
        app.tasks["limits.long_one"].time_limit,
    ) == (
        900,
        960,
    )
    app = make_app(("limits", plugin), banktasks_time_limits="limits.long_one=60/90")
    long_one = app.tasks["limits.long_one"]
    assert (long_one.soft_time_limit, long_one.time_limit) == (60, 90)
    assert app.tasks["limits.quick"].time_limit == 360, "the others keep theirs"


def test_every_bound_task_has_both_limits(make_app: Any) -> None:
    app = make_app()  # every installed plugin
    for name, spec in app.runtime.tasks.items():
        bound = app.tasks[name]
        assert 0 < bound.soft_time_limit < bound.time_limit, name
        assert spec.name == name


def test_the_visibility_timeout_exceeds_the_longest_hard_limit(make_app: Any) -> None:
    app = make_app(("limits", _plugin(soft_time_limit=5000, time_limit=5100)))
    assert app.conf.broker_transport_options["visibility_timeout"] > 5100


def test_a_visibility_timeout_below_a_hard_limit_is_refused_naming_the_task(
    make_app: Any,
) -> None:
    with pytest.raises(ConfigError, match=r"BROKER_VISIBILITY_TIMEOUT=100: .*\(360 s, limits\."):
        make_app(("limits", _plugin()), broker_visibility_timeout=100)
    app = make_app(
        ("limits", _plugin()),
        broker_visibility_timeout=100,
        banktasks_soft_time_limit=50,
        banktasks_time_limit=60,
    )
    assert app.conf.broker_transport_options["visibility_timeout"] == 100


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"banktasks_time_limits": "limits.nope=1/2"},
            "BANKTASKS_TIME_LIMITS names limits.nope: no such task",
        ),
        ({"banktasks_time_limits": "limits.quick=10"}, "expected soft/hard seconds"),
        ({"banktasks_time_limits": "limits.quick"}, "expected task=soft/hard"),
        ({"banktasks_time_limits": "limits.quick=9/9"}, "expected 0 < soft < hard"),
        ({"banktasks_time_limits": "limits.quick=a/9"}, "not a whole number of seconds"),
        (
            {"banktasks_soft_time_limit": 60, "banktasks_time_limit": 60},
            "BANKTASKS_SOFT_TIME_LIMIT=60 must be shorter than BANKTASKS_TIME_LIMIT=60",
        ),
    ],
)
def test_a_wrong_limit_stops_start_up_with_one_line(
    make_app: Any, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises((ConfigError, ValueError), match=message):
        make_app(("limits", _plugin()), **overrides)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"soft_time_limit": 10}, "soft_time_limit given alone"),
        ({"time_limit": 10}, "time_limit given alone"),
        ({"soft_time_limit": 10, "time_limit": 5}, "expected 0 < soft < hard"),
    ],
)
def test_a_plugin_gives_both_limits_or_neither(
    make_app: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"plugin 'limits': @task limits.long_one: .*{message}"):
        make_app(("limits", _plugin(**options)))


def test_overrides_parse_from_text_and_mappings() -> None:
    assert parse_overrides("a.x=1/2, b.y = 30/40,") == {
        "a.x": TimeLimits(1, 2),
        "b.y": TimeLimits(30, 40),
    }
    assert parse_overrides({"a.x": "5/6", "b.y": [7, 8]}) == {
        "a.x": TimeLimits(5, 6),
        "b.y": TimeLimits(7, 8),
    }
    assert parse_overrides("") == {} == parse_overrides(None)


def test_messages_carry_no_limits_unless_the_call_sets_them(make_app: Any) -> None:
    """The worker's settings decide a task's limits, not the sender's (a sender with other
    BANKTASKS_TIME_LIMITS would otherwise impose its own through the message)."""
    import json

    app = make_app(("limits", _plugin(soft_time_limit=900, time_limit=960)))
    long_one = app.tasks["limits.long_one"]
    long_one.delay()
    long_one.delay_many([{}, {}])
    long_one.apply_async(soft_time_limit=5, time_limit=9)
    raw = app.redis_client().lrange("limits", 0, -1)
    limits = [json.loads(item)["headers"]["timelimit"] for item in reversed(raw)]
    assert limits == [[None, None]] * 3 + [[9, 5]]
