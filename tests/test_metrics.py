"""The `metrics` default plugin without a worker: its API, what the endpoint computes at
scrape time, logins and production refusals, the files folder, and the alert rules
(promtool). The scrape after real tasks is in tests/e2e/test_metrics_e2e.py."""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from banktasks_testing import fake_plugin, seed_data
from core import ConfigError, hookimpl
from core.default_plugins.metrics.api import Metrics, metric_name
from core.default_plugins.metrics.collect import queue_lists
from core.default_plugins.metrics.plugin import build_registry, start_problems
from core.default_plugins.metrics.server import check_login, parse_logins
from core.default_plugins.metrics.settings import MetricsSettings
from core.default_plugins.metrics.worker import (
    LOCK_FILE,
    WORKERS_KEY,
    _waiting_since,
    prepare_folder,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC)


def scrape(app) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(build_registry(app)).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def test_a_default_plugin_that_can_be_disabled(make_app):
    app = make_app("health")
    assert "metrics" in app.runtime.plugins.enabled()
    assert app.runtime.settings_for("metrics").address == "127.0.0.1"
    off = make_app("health", banktasks_disable=["metrics"])
    assert "metrics" not in off.runtime.plugins.enabled()
    hook = getattr(off.runtime.plugins.pm.hook, "collect_metrics", None)
    assert hook is None or hook.spec is None  # not declared: implementations are not called


def test_the_declaring_api_names_and_labels():
    registry = CollectorRegistry()
    metrics = Metrics("acme-rules", registry)
    hits = metrics.counter("hits", "Hits", labels=["kind"])
    hits.inc(kind="a")
    hits.inc(2, kind="a")
    took = metrics.histogram("took_seconds", "Took", buckets=[1, 10])
    took.observe(3)
    level = metrics.gauge("level", "Level")
    level.set(7)
    text = generate_latest(registry).decode()
    assert 'banktasks_acme_rules_hits_total{kind="a"} 3.0' in text
    assert 'banktasks_acme_rules_took_seconds_bucket{le="10.0"} 1.0' in text
    assert "banktasks_acme_rules_level 7.0" in text
    with pytest.raises(ConfigError, match="metric name"):
        metrics.counter("Bad-Name", "x")
    with pytest.raises(ConfigError, match="bad label"):
        metrics.counter("ok", "x", labels=["le"])
    with pytest.raises(ConfigError, match="mode"):
        metrics.gauge("g", "x", mode="sum-of-all")
    assert metric_name("fraud", "alerts") == "banktasks_fraud_alerts"


def test_queue_lists_include_every_priority_list(make_app):
    app = make_app("health")
    lists = queue_lists(app)
    assert set(lists) >= {"celery", "health"}
    steps = app.conf.broker_transport_options.get("priority_steps") or [0]
    assert lists["health"][0] == "health"
    assert len(lists["health"]) == len(set(steps))
    if len(steps) > 1:
        assert lists["health"][1] == f"health\x06\x16{sorted(steps)[1]}"


def test_what_the_endpoint_computes_at_scrape_time(make_app):
    app = make_app("fraud", "reports", "notifications", "health")
    seed_data(app.runtime.db, users=40, transactions=1500, seed_value=11, now=NOW)
    client = app.redis_client()
    lists = queue_lists(app)
    client.lpush(lists["fraud"][0], b"{}", b"{}")
    client.lpush(lists["fraud"][-1], b"{}")
    now = datetime.now(UTC).timestamp()
    client.zadd(WORKERS_KEY, {"w1@host": now, "w2@host": now - 5, "gone@host": now - 3600})
    last = (NOW - timedelta(hours=1)).replace(microsecond=0)
    client.hset(
        "banktasks:schedules:generate-daily-reports",
        mapping={
            "first_seen": (NOW - timedelta(days=3)).isoformat(),
            "last_success": last.isoformat(),
        },
    )
    found = (
        app.tasks["fraud.analyze_fraud_patterns"]
        .apply(kwargs={"since": NOW - timedelta(days=31), "until": NOW})
        .get()
    )

    samples = scrape(app)
    assert value(samples, "banktasks_queue_depth", queue="fraud") == 3
    assert value(samples, "banktasks_queue_depth", queue="reports") == 0
    assert value(samples, "banktasks_workers_up") == 2
    entry = {"entry": "generate-daily-reports", "task": "reports.generate_daily_reports"}
    assert value(samples, "banktasks_schedule_last_success_timestamp_seconds", **entry) == (
        last.timestamp()
    )
    due = value(samples, "banktasks_schedule_due_timestamp_seconds", **entry)
    next_midnight = (last + timedelta(days=1)).replace(hour=0, minute=0, second=0)
    assert due == next_midnight.timestamp()
    # an entry never seen and never run: no due time yet (tracking has not begun)
    assert (
        "banktasks_schedule_due_timestamp_seconds",
        frozenset(
            {"entry": "analyze-fraud-patterns", "task": "fraud.analyze_fraud_patterns"}.items()
        ),
    ) not in samples
    for rule, count in found["by_rule"].items():
        assert value(samples, "banktasks_fraud_alerts_total", rule=rule) == count
        assert value(samples, "banktasks_fraud_alerts_unresolved", rule=rule) == count
    late = value(samples, "banktasks_reports_lateness_seconds")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert late == pytest.approx((datetime.now(UTC) - midnight).total_seconds(), abs=30)
    assert value(samples, "banktasks_notifications_emails", status="sent") == 0
    assert (
        "banktasks_notifications_emails",
        frozenset({"status": "pending", "kind": "admin"}.items()),
    ) in samples
    assert value(samples, "banktasks_metrics_collector_up", plugin="fraud") == 1


def test_a_failing_collector_is_reported_and_the_rest_served(make_app):
    def collect_metrics(ctx):
        raise RuntimeError("boom")

    def good_metrics(ctx):
        return [{"name": "things", "value": 2, "help": "Things", "labels": {"k": "v"}}]

    broken = fake_plugin("broken", collect_metrics=hookimpl(collect_metrics))
    good = fake_plugin("good", collect_metrics=hookimpl(good_metrics))
    app = make_app("health", broken, good)
    samples = scrape(app)
    assert value(samples, "banktasks_metrics_collector_up", plugin="broken") == 0
    assert value(samples, "banktasks_metrics_collector_up", plugin="good") == 1
    assert value(samples, "banktasks_good_things", k="v") == 2
    assert not [n for n, _ in samples if n.startswith("banktasks_broken_")]


def test_logins_are_checked():
    logins = parse_logins("prom:first-password-1,other:second:with-colon")

    def header(login: str) -> str:
        return "Basic " + base64.b64encode(login.encode()).decode()

    assert check_login(header("prom:first-password-1"), logins)
    assert check_login(header("other:second:with-colon"), logins)
    assert not check_login(header("prom:second:with-colon"), logins)
    assert not check_login(header("prom:"), logins)
    assert not check_login("Basic !!!", logins)
    assert not check_login("Bearer x", logins)
    assert not check_login(None, logins)


def test_an_empty_login_is_refused_everywhere():
    with pytest.raises(ValueError, match="always asks for a login"):
        MetricsSettings(basic_auth="")


@pytest.mark.parametrize(
    ("auth", "address", "says"),
    [
        ("prom:password1234", "127.0.0.1", "is a common password"),
        ("prom:x9Qz", "127.0.0.1", "shorter than 12"),
        ("prom:Strong-Secret-42x", "0.0.0.0", "plain HTTP"),
    ],
)
def test_production_refusals(auth, address, says):
    problems = start_problems(MetricsSettings(basic_auth=auth), True, address)
    assert len(problems) == 1 and says in problems[0]
    assert auth.split(":")[1] not in problems[0]
    assert start_problems(MetricsSettings(basic_auth=auth), False, address) == []
    assert (
        start_problems(MetricsSettings(basic_auth="p:Strong-Secret-42x"), True, "127.0.0.1") == []
    )
    proxied = MetricsSettings(basic_auth="p:Strong-Secret-42x", behind_tls_proxy=True)
    assert start_problems(proxied, True, "0.0.0.0") == []


def test_serve_refuses_a_weak_login_in_production(bt_env, monkeypatch, capsys):
    from core.celery import reset_default_app
    from core.cli import main

    for key, val in {
        "BANKTASKS_ENV": "production",
        "REDIS_URL": "redis://:Broker-pw-0f3a9c1e7b@redis.internal:6379/0",
        "DATABASE_URL": "postgresql+psycopg://bank:Db-pw-5e1d2c9a4f@db.internal:5432/bank",
        "FLOWER_BASIC_AUTH": "ops:Vq7-tR2m-Xk9p-Lw4z",
        "METRICS_BASIC_AUTH": "prom:password1234",
        "BANKTASKS_PLUGINS": "health",
    }.items():
        monkeypatch.setenv(key, val)
    reset_default_app()
    try:
        with pytest.raises(SystemExit) as stopped:
            main(["metrics", "serve"])
    finally:
        reset_default_app()
    assert stopped.value.code != 0
    err = capsys.readouterr().err
    assert "METRICS_BASIC_AUTH" in err and "common password" in err, err
    assert "password1234" not in err


def test_the_wait_starts_at_the_later_of_sent_and_eta():
    sent = 1_700_000_000.0
    later = datetime.fromtimestamp(sent + 30, UTC).isoformat()
    assert _waiting_since(SimpleNamespace(banktasks_sent_at=sent, eta=None)) == sent
    assert _waiting_since(SimpleNamespace(banktasks_sent_at=sent, eta=later)) == sent + 30
    earlier = datetime.fromtimestamp(sent - 30, UTC).isoformat()
    assert _waiting_since(SimpleNamespace(banktasks_sent_at=sent, eta=earlier)) == sent
    headers = SimpleNamespace(headers={"banktasks_sent_at": sent}, eta=None)
    assert _waiting_since(headers) == sent
    assert _waiting_since(SimpleNamespace(eta=None)) is None
    assert _waiting_since(SimpleNamespace(banktasks_sent_at=True, eta=None)) is None


def test_the_folder_is_private_and_wiped_only_when_no_worker_uses_it(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir(mode=0o755)
    (folder / "counter_123.db").write_bytes(b"x")
    first = prepare_folder(folder)
    try:
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        assert not list(folder.glob("*.db")), "no other worker: the old files go"
        (folder / "counter_456.db").write_bytes(b"x")  # the first worker's file
        second = prepare_folder(folder)  # a second worker on the same folder
        os.close(second)
        assert (folder / "counter_456.db").exists(), "a live worker's files are kept"
    finally:
        os.close(first)
    probe = os.open(folder / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # both gone: free again
    finally:
        os.close(probe)
    third = prepare_folder(folder)
    os.close(third)
    assert not (folder / "counter_456.db").exists()


def test_promtool_accepts_the_alert_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is not installed (Debian package `prometheus`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": CI must check the alert rules")
        pytest.skip(message)
    done = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "deploy/prometheus/alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
