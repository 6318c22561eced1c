"""Implementations of hooks owned by other plugins: reports, fraud, export and metrics.

Each event hook reserves its event's outbox row and queues a task with `.delay()`
(`events.queue_event_email`), so the e-mail is retried on its own, apart from the
task that called the hook, and no caller's key can stand in for it. They use only
the attributes of the object the hook passes (documented by the owner's hookspec)
and never import the owner: when reports, fraud or export is disabled they are
simply never called.

For the metrics default plugin: `register_metrics` declares the worker counter
`banktasks_notifications_emails_queued_total{event}` (counted by the event hooks
here), and `collect_metrics` reports the outbox by outcome at scrape time. With
metrics disabled neither is called and nothing is counted.
"""

from __future__ import annotations

import html
import json
from typing import Any

from sqlalchemy import func, select

from core import get_logger, hookimpl
from core.logging import redact_value
from plugins.notifications.events import queue_event_email
from plugins.notifications.models import OutboxEntry, OutboxStatus

log = get_logger(__name__)
METRICS: dict[str, Any] = {}
"""The worker metrics declared through `register_metrics` (empty outside a worker)."""


def count_queued(event: str) -> None:
    """One more event e-mail queued (a no-op when metrics are off or not in a worker)."""
    queued = METRICS.get("queued")
    if queued is not None:
        queued.inc(event=event)


@hookimpl
def register_metrics(metrics: Any) -> None:
    """Metrics' hook (in each worker): `emails_queued_total{event}`."""
    METRICS["queued"] = metrics.counter(
        "emails_queued",
        "Event e-mails queued by this plugin's hooks, by event "
        "(daily-report, fraud-case, export-ready)",
        labels=["event"],
    )


@hookimpl
def collect_metrics(ctx: Any) -> list[dict[str, Any]]:
    """Metrics' hook (at scrape time): `emails{status, kind}`, the outbox rows by outcome
    (sent, failed for good, pending: waiting or being retried); every outcome appears."""
    query = select(OutboxEntry.status, OutboxEntry.kind, func.count()).group_by(
        OutboxEntry.status, OutboxEntry.kind
    )
    with ctx.db.session() as session:
        rows = session.execute(query).all()
    counts = {(status.value, kind): 0 for status in OutboxStatus for kind in ("admin", "user")}
    for status, kind, count in rows:
        counts[(status, kind)] = int(count)
    return [
        {
            "name": "emails",
            "help": "E-mails in the outbox by outcome (sent, failed, pending) and kind "
            "(admin, user)",
            "labels": {"status": status, "kind": kind},
            "value": count,
        }
        for (status, kind), count in sorted(counts.items())
    ]


@hookimpl
def on_report_generated(report: Any) -> dict[str, str]:
    """Reports' hook: queue an admin e-mail with the daily report summary (text and HTML).

    Uses `report.report_date`, `report.summary_text()` (else `report.sections`) and
    `report.files` (file names only, never the server path). Key `event:daily-report:<date>`.
    """
    day = report.report_date
    summary = _report_summary(report)
    files = getattr(report, "files", None) or {}
    file_items = "".join(
        f"<li>{html.escape(str(fmt))}: {html.escape(_basename(path))}</li>"
        for fmt, path in sorted(files.items())
    )
    html_body = (
        f"<!doctype html><html><body><h1>Daily report {html.escape(str(day))}</h1>"
        f"<pre>{html.escape(summary)}</pre>"
        + (f"<p>Files:</p><ul>{file_items}</ul>" if file_items else "")
        + "</body></html>"
    )
    result = queue_event_email(
        f"daily-report:{day}", subject=f"Daily report {day}", text=summary, html=html_body
    )
    count_queued("daily-report")
    log.info("report_email_queued", report_date=str(day), task_id=result.id)
    return {"queued": result.id}


@hookimpl
def on_fraud_case_opened(case: Any, alert: Any) -> dict[str, str]:
    """Fraud's hook: queue ONE admin e-mail per case, about the alert fraud announces it with
    (its first at or above FRAUD_ALERT_MIN_SEVERITY, usually the one that opened it).

    Further alerts on the customer attach to the open case and send nothing, so a stream
    of alerts gives one e-mail. Uses `case.id`, `user_id`, `opened_at` and the alert's
    `id`, `rule`, `rule_version`, `severity`, `score`, `account_id`, `transaction_id`,
    `created_at` and `evidence` (numbers masked); ids only, never an account number.
    Key `event:fraud-case:<case id>`.
    """
    evidence = redact_value("evidence", getattr(alert, "evidence", None) or {})
    rule = str(alert.rule)
    version = getattr(alert, "rule_version", None)
    fields = [
        ("customer (user) id", str(case.user_id)),
        ("opened at", str(getattr(case, "opened_at", None) or "")),
        ("alert", f"#{alert.id}"),
        ("rule", f"{rule} (version {version})" if version else rule),
        ("severity", str(alert.severity)),
        ("score", str(getattr(alert, "score", ""))),
        ("account id", str(alert.account_id)),
        ("transaction id", str(getattr(alert, "transaction_id", None) or "-")),
        ("alert created at", str(getattr(alert, "created_at", None) or "")),
        ("evidence", json.dumps(evidence, sort_keys=True, default=str)),
    ]
    work_it = f"banktasks cases show {case.id}"
    lines = [f"{k}: {v}" for k, v in fields]
    text = "\n".join([f"Fraud case #{case.id} opened", *lines, "", f"Work it with: {work_it}"])
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in fields
    )
    html_body = (
        f"<!doctype html><html><body><h1>Fraud case #{case.id} opened</h1>"
        f"<table>{rows}</table><p>Work it with: <code>{html.escape(work_it)}</code></p>"
        "</body></html>"
    )
    result = queue_event_email(
        f"fraud-case:{case.id}",
        subject=f"[fraud] case #{case.id} opened: {alert.severity} {rule}",
        text=text,
        html=html_body,
    )
    count_queued("fraud-case")
    log.info("fraud_case_email_queued", case_id=case.id, alert_id=alert.id, task_id=result.id)
    return {"queued": result.id}


@hookimpl
def on_export_ready(export: Any) -> dict[str, str]:
    """Export's hook: tell the user their export is ready (the file name only, never the data).

    Uses `export.id`, `user_id`, `file_name` (else the last part of `path`),
    `start_date` and `end_date`. Key `event:export-ready:<id>`.
    """
    name = getattr(export, "file_name", None) or _basename(str(export.path))
    period = ""
    start, end = getattr(export, "start_date", None), getattr(export, "end_date", None)
    if start and end:
        period = f" for {start} to {end}"
    text = (
        f"Your transaction export{period} is ready.\n\n"
        f"File: {name}\n\n"
        "If you did not ask for this export, please contact us."
    )
    html_body = (
        "<!doctype html><html><body>"
        f"<p>Your transaction export{html.escape(period)} is ready.</p>"
        f"<p>File: <strong>{html.escape(name)}</strong></p>"
        "<p>If you did not ask for this export, please contact us.</p></body></html>"
    )
    result = queue_event_email(
        f"export-ready:{export.id}",
        user_id=export.user_id,
        subject="Your transaction export is ready",
        text=text,
        html=html_body,
    )
    count_queued("export-ready")
    log.info("export_email_queued", export_id=export.id, task_id=result.id)
    return {"queued": result.id}


def _report_summary(report: Any) -> str:
    summary_text = getattr(report, "summary_text", None)
    if callable(summary_text):
        return str(summary_text())
    sections = getattr(report, "sections", {}) or {}
    return f"Daily report {report.report_date}\n" + json.dumps(
        sections, indent=2, sort_keys=True, default=str
    )


def _basename(path: str) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]
