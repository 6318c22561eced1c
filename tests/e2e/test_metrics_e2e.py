"""The metrics endpoint scraped for real: Valkey, a prefork worker with the five plugins,
`banktasks metrics serve`; tasks that succeed, retry, dead-letter, raise fraud alerts and
send e-mail to a real SMTP server. Every metric is in the scrape with the right value,
and so is every metric the alert rules and the Grafana dashboard use."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from banktasks_testing import free_port, http_status, seed_data, send_unchecked, wait_for
from banktasks_testing.processes import stop_group

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "prom:Scrape-Only-4u7Qz"
NOW = datetime.now(UTC)
SAMPLE = re.compile(r"\bbanktasks_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the endpoint: (name, labels) → value."""
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(LOGIN.encode()).decode())
    with urllib.request.urlopen(request, timeout=20) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def names(samples: dict[Any, float]) -> set[str]:
    return {name for name, _ in samples}


def customers_with_alerts(app: Any, *severities: str) -> int:
    """How many customers have a fraud alert (of one of `severities`, if given): fraud opens
    one case for each of them, and notifications sends one admin e-mail for each with an
    alert at or above FRAUD_ALERT_MIN_SEVERITY (on a fresh database, every case is new)."""
    query = (
        "SELECT COUNT(DISTINCT a.user_id) FROM fraud_alerts f "
        "JOIN accounts a ON a.id = f.account_id"
    )
    if severities:
        query += " WHERE f.severity IN (" + ", ".join(f"'{s}'" for s in severities) + ")"
    with app.runtime.db.session() as session:
        return int(session.execute(text(query)).scalar_one())


def used_metrics() -> set[str]:
    """The sample names the alert rules and the dashboard query."""
    rules = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    dashboard = json.loads((ROOT / "deploy/grafana/banktasks.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if "query" in v]
    found = set(SAMPLE.findall(rules))
    for expr in exprs:
        found |= set(SAMPLE.findall(expr))
    return found


def test_every_metric_after_real_tasks(e2e, smtp_server):
    e2e.set(
        EMAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
        NOTIFICATIONS_RETRY_BACKOFF="1",
        METRICS_BASIC_AUTH=LOGIN,
        METRICS_HEARTBEAT_SECONDS="1",
        FRAUD_ALERT_MIN_SEVERITY="high",
    )
    app = e2e.app()
    seed_data(app.runtime.db, users=40, transactions=1500, seed_value=11, now=NOW)
    worker = e2e.start_worker(concurrency=2)
    port = free_port()
    log = (e2e.tmp / "metrics.log").open("wb")
    endpoint = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "metrics", "serve", f"--port={port}"],
        env={**e2e.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: http_status(url) == 401, 40, "the metrics endpoint")
        assert http_status(url, "prom:wrong-password-123") == 401
        assert http_status(url.replace("/metrics", "/"), LOGIN) == 404
        assert http_status(url, LOGIN) == 200

        # a retry: the SMTP server is down for the first attempt
        smtp_server.stop()
        mail = app.tasks["notifications.send_email_notification"].delay(
            user_id=1, subject="Account Update", message="Updated."
        )
        wait_for(lambda: "Retry in" in worker.log(), 30, "a retry")
        smtp_server.start()
        assert mail.get(timeout=60)["status"] == "sent"
        attempts = mail.get()["attempts"]

        # fraud alerts, one case per customer with alerts, and one e-mail per case holding an
        # alert at or above FRAUD_ALERT_MIN_SEVERITY (high) through the notifications plugin
        analysis = app.tasks["fraud.analyze_fraud_patterns"].delay(
            since=(NOW - timedelta(days=31)).isoformat(), until=NOW.isoformat()
        )
        found = analysis.get(timeout=90)
        opened = customers_with_alerts(app)
        cases = customers_with_alerts(app, "high", "critical")
        assert 0 < cases < opened <= found["alerts_created"]  # velocity's are medium
        assert (found["cases_opened"], found["case_notify_failed"]) == (opened, 0)
        wait_for(lambda: len(smtp_server.messages) == 1 + cases, 60, "the case e-mails")

        # a failure that dead-letters (bad arguments reach the worker)
        bad = send_unchecked(app, "reports.generate_daily_reports", kwargs={"report_date": "x"})
        with pytest.raises(Exception, match="report_date"):
            bad.get(timeout=30)

        # the missed-schedule data: the health check starts tracking every beat entry
        app.tasks["health.system_health_check"].delay().get(timeout=60)

        samples = wait_for(
            lambda: (s := scrape(url)) and value(s, "banktasks_workers_up") == 1 and s,
            20,
            "a scrape with the worker up",
        )
        lateness = value(samples, "banktasks_reports_lateness_seconds")
        assert 0 < lateness <= (NOW - NOW.replace(hour=0, minute=0, second=0)).total_seconds() + 600

        # yesterday's report, sent as beat's entry would be: lateness 0, last success set
        app.tasks["reports.generate_daily_reports"].apply_async(
            headers={"banktasks_schedule": "generate-daily-reports"}
        ).get(timeout=60)
        wait_for(lambda: len(smtp_server.messages) == 2 + cases, 60, "the report e-mail")

        samples = scrape(url)
        total = "banktasks_tasks_total"
        assert value(samples, total, task="fraud.analyze_fraud_patterns", queue="fraud") == 1
        assert value(samples, total, task="fraud.analyze_fraud_patterns", state="success") == 1
        mail_task = "notifications.send_email_notification"
        assert value(samples, total, task=mail_task, state="retry") == attempts - 1 >= 1
        assert value(samples, total, task=mail_task, state="success") == 1
        assert value(samples, "banktasks_task_retries_total", task=mail_task) == attempts - 1
        admin = "notifications.send_admin_email"
        assert value(samples, total, task=admin, state="success") == cases + 1
        report = "reports.generate_daily_reports"
        assert value(samples, total, task=report, state="failure") == 1
        assert value(samples, total, task=report, state="success") == 1
        assert value(samples, total, task="health.system_health_check", state="success") == 1
        assert (
            value(
                samples,
                "banktasks_dead_letters_total",
                task=report,
                reason="TaskArgumentError",
            )
            == 1
        )
        assert value(samples, "banktasks_dead_letters_total") == 1
        runs = value(samples, total)
        assert value(samples, "banktasks_task_runtime_seconds_count") == runs
        assert value(samples, "banktasks_task_queue_wait_seconds_count") == runs
        assert value(samples, "banktasks_task_runtime_seconds_count", task=report) == 2
        wait = value(samples, "banktasks_task_queue_wait_seconds_sum", task=mail_task)
        # a retry's countdown is spent in the worker, waiting for its eta: not queue wait
        assert 0 <= wait < 1.0

        by_rule = found["by_rule"]
        assert by_rule and sum(by_rule.values()) == found["alerts_created"] > 0
        for rule, count in by_rule.items():
            assert value(samples, "banktasks_fraud_alerts_total", rule=rule) == count
            assert value(samples, "banktasks_fraud_alerts_unresolved", rule=rule) == count
        emails = "banktasks_notifications_emails"
        assert value(samples, emails, status="sent", kind="user") == 1
        assert value(samples, emails, status="sent", kind="admin") == cases + 1
        assert value(samples, emails, status="failed") == 0
        queued = "banktasks_notifications_emails_queued_total"
        assert value(samples, queued, event="fraud-case") == cases
        assert value(samples, queued, event="daily-report") == 1
        assert value(samples, "banktasks_reports_lateness_seconds") == 0
        for plugin in ("fraud", "reports", "notifications"):
            assert value(samples, "banktasks_metrics_collector_up", plugin=plugin) == 1

        entry = {"entry": "generate-daily-reports", "task": report}
        last = value(samples, "banktasks_schedule_last_success_timestamp_seconds", **entry)
        assert abs(last - datetime.now(UTC).timestamp()) < 120
        due = value(samples, "banktasks_schedule_due_timestamp_seconds", **entry)
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        assert due == (midnight + timedelta(days=1)).timestamp()
        fraud_due = value(
            samples, "banktasks_schedule_due_timestamp_seconds", entry="analyze-fraud-patterns"
        )
        assert 0 < fraud_due - datetime.now(UTC).timestamp() <= 15 * 60 + 60

        queues = {dict(labels)["queue"] for n, labels in samples if n == "banktasks_queue_depth"}
        assert {"celery", "fraud", "reports", "notifications", "health", "export"} <= queues
        assert value(samples, "banktasks_queue_depth") == 0

        missing = used_metrics() - names(samples)
        assert not missing, f"used by the rules or the dashboard, not in the scrape: {missing}"

        # the worker stops: no worker up; messages wait, priority lists included
        worker.stop()
        task = app.tasks["health.system_health_check"]
        task.delay()
        task.apply_async(priority=5)
        samples = scrape(url)
        assert value(samples, "banktasks_workers_up") == 0
        assert value(samples, "banktasks_queue_depth", queue="health") == 2
        assert value(samples, "banktasks_queue_depth") == 2
        # the workers' totals outlive the worker (its pool processes' files stay)
        assert value(samples, total, task=report, state="failure") == 1
    finally:
        stop_group(endpoint)
        log.close()
    assert "Traceback" not in (e2e.tmp / "metrics.log").read_text()
