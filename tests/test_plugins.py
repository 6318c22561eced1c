"""Plugin loading: entry points, allow/deny lists, owned hookspecs, app composition."""

from __future__ import annotations

import sys

import pytest

from banktasks_testing import fake_plugin
from core import ConfigError, Schedule, task
from core.plugins import DEFAULT_PLUGINS, build_plugin_set


def test_entry_point_plugin_is_discovered(acme_site):
    plugin_set = build_plugin_set(allow=["acme_rules"])
    info = plugin_set.infos["acme_rules"]
    assert info.enabled
    assert info.version == "1.0"
    assert "acme-rules" in info.source
    assert "register_tasks" in info.hooks


def test_allow_list_blocks_the_rest_without_importing_them(acme_site):
    plugin_set = build_plugin_set(allow=["acme_rules"])
    assert plugin_set.enabled() == [*DEFAULT_PLUGINS, "acme_rules"]  # defaults: only deny blocks
    for name in ("fraud", "reports", "notifications", "export", "health"):
        assert plugin_set.pm.is_blocked(name)
        assert not plugin_set.infos[name].enabled


def test_deny_list_blocks_one(acme_site):
    sys.modules.pop("acme_rules", None)
    plugin_set = build_plugin_set(allow=["acme_rules", "health"], deny=["acme_rules"])
    assert plugin_set.pm.is_blocked("acme_rules")
    assert "acme_rules" not in sys.modules  # a blocked plugin is never imported


@pytest.mark.parametrize("setting", ["allow", "deny"])
def test_unknown_plugin_name_is_a_clear_error(acme_site, setting):
    with pytest.raises(ConfigError) as info:
        build_plugin_set(**{setting: ["acme_rulez"]})
    message = str(info.value)
    assert "unknown plugin(s) acme_rulez" in message
    assert "acme_rules" in message  # says what is installed
    assert ("BANKTASKS_PLUGINS" if setting == "allow" else "BANKTASKS_DISABLE") in message


def test_plugin_owned_hookspecs_are_added_and_called(acme_site):
    extra = fake_plugin("extra", acme_extra=lambda: ["from extra"])
    import acme_rules

    plugin_set = build_plugin_set(plugins=[acme_rules, extra])
    assert plugin_set.pm.hook.acme_extra.spec is not None  # owned by acme_rules
    assert plugin_set.pm.hook.acme_extra() == [["from extra"]]


def test_hook_whose_owner_is_disabled_is_simply_never_called(acme_site):
    calls = []
    extra = fake_plugin("extra", acme_extra=lambda: calls.append("called") or ["x"])
    plugin_set = build_plugin_set(plugins=[extra])  # acme_rules (the owner) is absent
    assert plugin_set.enabled() == [*DEFAULT_PLUGINS, "extra"]
    assert plugin_set.pm.hook.acme_extra.spec is None
    assert calls == []


def test_app_registers_task_queue_retry_and_schedule(make_app, acme_site, monkeypatch):
    import acme_rules

    monkeypatch.setenv("ACME_RULES_THRESHOLD", "11")
    app = make_app(plugins=[acme_rules])
    flaky = app.tasks["acme_rules.flaky"]
    assert flaky.route_queue == "acme_rules"
    assert flaky.max_retries == 3
    assert flaky.autoretry_for == (ConnectionError,)
    assert (flaky.retry_backoff, flaky.retry_backoff_max, flaky.retry_jitter) == (1, 4, False)
    assert flaky.acks_late and flaky.reject_on_worker_lost
    assert app.conf.task_routes["acme_rules.add"] == {"queue": "acme-fast"}
    entry = app.conf.beat_schedule["acme-add"]
    assert entry["task"] == "acme_rules.add"
    assert entry["kwargs"] == {"x": 11}
    assert app.conf.task_routes["acme_rules.flaky"] == {"queue": "acme_rules"}
    assert {q.name for q in app.conf.task_queues} >= {"acme_rules", "acme-fast"}
    assert app.conf.accept_content == ["json"]
    assert app.conf.timezone == "UTC"


def test_schedule_override_and_off(make_app, acme_site, monkeypatch):
    import acme_rules

    monkeypatch.setenv("ACME_RULES_SCHEDULE", "0 2 * * *")
    schedule = make_app(plugins=[acme_rules]).conf.beat_schedule["acme-add"]["schedule"]
    assert schedule.hour == {2} and schedule.minute == {0}
    monkeypatch.setenv("ACME_RULES_SCHEDULE", "off")
    assert "acme-add" not in make_app(plugins=[acme_rules]).conf.beat_schedule


def test_bad_schedule_override_is_a_clear_error(make_app, acme_site, monkeypatch):
    import acme_rules

    monkeypatch.setenv("ACME_RULES_SCHEDULE", "every day")
    with pytest.raises(ConfigError, match="ACME_RULES_SCHEDULE='every day': expected a cron"):
        make_app(plugins=[acme_rules])
    monkeypatch.setenv("ACME_RULES_SCHEDULE", "99 * * * *")
    with pytest.raises(ConfigError, match="not a valid cron"):
        make_app(plugins=[acme_rules])


def test_schedule_composition_across_plugins(make_app):
    @task
    def ping() -> dict:
        return {}

    first = fake_plugin(
        "first",
        register_tasks=lambda: [ping],
        register_schedule=lambda settings: [
            Schedule("ping-often", ping, every=30),
            Schedule("ping-daily", ping, cron="0 0 * * *"),
        ],
    )
    app = make_app(plugins=[first])
    # with the default plugins' own entries (the delivery sweep)
    assert set(app.conf.beat_schedule) == {"ping-often", "ping-daily", "delivery-sweep"}
    assert app.conf.beat_schedule["ping-often"]["schedule"].total_seconds() == 30


def test_schedule_of_unregistered_task_is_refused(make_app):
    @task
    def orphan() -> dict:
        return {}

    lonely = fake_plugin(
        "lonely", register_schedule=lambda settings: [Schedule("o", orphan, every=5)]
    )
    with pytest.raises(ConfigError, match="no enabled plugin registers"):
        make_app(plugins=[lonely])


def test_visibility_timeout_exceeds_longest_retry_wait(make_app, acme_site):
    import acme_rules

    app = make_app(plugins=[acme_rules])
    assert app.conf.broker_transport_options["visibility_timeout"] >= 3600


def test_countdown_beyond_visibility_timeout_is_refused(make_app, acme_site):
    import acme_rules

    from core import TaskArgumentError

    app = make_app(plugins=[acme_rules])
    limit = app.conf.broker_transport_options["visibility_timeout"]
    with pytest.raises(TaskArgumentError, match="visibility timeout"):
        app.tasks["acme_rules.add"].apply_async(kwargs={"x": 1}, countdown=limit + 1)


def test_core_tasks_resolves_lazily_and_names_disabled_plugins(make_app, acme_site, monkeypatch):
    import core.tasks

    monkeypatch.setenv("BANKTASKS_PLUGINS", "acme_rules")
    make_app()
    assert core.tasks.add.name == "acme_rules.add"
    assert core.tasks.resolve("acme_rules.flaky").name == "acme_rules.flaky"
    with pytest.raises(AttributeError, match="no enabled plugin registers a task named"):
        core.tasks.resolve("nope")

    monkeypatch.setenv("BANKTASKS_PLUGINS", "health")
    monkeypatch.setenv("BANKTASKS_DISABLE", "")
    make_app()
    with pytest.raises(ImportError, match="belongs to plugin 'acme_rules', which is disabled"):
        from core.tasks import flaky  # noqa: F401


class _Thing:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self) -> None:
        return None


def test_collect_named_keeps_registration_order_and_refuses_duplicates():
    first = fake_plugin("first", register_things=lambda: [_Thing("a"), _Thing("b")])
    second = fake_plugin("second", register_things=lambda: [_Thing("c")])
    plugin_set = build_plugin_set(plugins=[first, second])
    assert list(plugin_set.collect_named("register_things", "thing", ("run",))) == ["a", "b", "c"]

    clash = fake_plugin("clash", register_things=lambda: [_Thing("a")])
    plugin_set = build_plugin_set(plugins=[first, clash])
    with pytest.raises(ConfigError, match=r"thing 'a' is registered twice .*'first' and 'clash'"):
        plugin_set.collect_named("register_things", "thing", ("run",))

    broken = fake_plugin("broken", register_things=lambda: [object()])
    with pytest.raises(ConfigError, match=r"plugin 'broken'.*a thing needs a `name`, run\(\)"):
        build_plugin_set(plugins=[broken]).collect_named("register_things", "thing", ("run",))


def test_call_each_isolates_a_failing_implementation():
    def boom(x):
        raise RuntimeError("listener down")

    good = fake_plugin("good", on_thing=lambda x: x * 2)
    bad = fake_plugin("bad", on_thing=boom)
    outcomes = build_plugin_set(plugins=[good, bad]).call_each("on_thing", x=21)
    by_plugin = {o.plugin: o for o in outcomes}
    assert by_plugin["good"].result == 42 and by_plugin["good"].error is None
    assert isinstance(by_plugin["bad"].error, RuntimeError)


def test_started_state_is_opt_in_per_task(make_app):
    """Celery's default (no STARTED write per task) unless @task(track_started=True)."""

    app = make_app(plugins=["fraud", "export", "health"])
    assert app.tasks["health.system_health_check"].track_started is False
    assert app.tasks["fraud.analyze_fraud_patterns"].track_started is True
    assert app.tasks["export.export_transaction_data"].track_started is True
