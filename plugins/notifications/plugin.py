"""Hook implementations of the notifications plugin (re-exported by the package)."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from core import ConfigError, get_logger, hookimpl
from core.logging import redact_value

log = get_logger(__name__)


@hookimpl
def register_hookspecs(pm: Any) -> None:
    """Add `register_notification_channels`."""
    from plugins.notifications import hookspecs

    pm.add_hookspecs(hookspecs)


@hookimpl
def register_settings() -> tuple[str, type]:
    """`NotificationsSettings` under the name `notifications`."""
    from plugins.notifications.settings import NotificationsSettings

    return ("notifications", NotificationsSettings)


@hookimpl
def register_tasks() -> list[Any]:
    """`send_email_notification` and `send_admin_email`, on the `notifications` queue."""
    from plugins.notifications.tasks import send_admin_email, send_email_notification

    return [send_email_notification, send_admin_email]


@hookimpl
def configure_app(app: Any, settings: Any) -> None:
    """Stop start-up with one clear line when EMAIL_BACKEND names no registered channel."""
    from plugins.notifications.channels import PLUGIN, registered_channels

    runtime = app.runtime
    if PLUGIN not in runtime.plugin_settings:  # registered under another name: nothing to check
        return
    backend = runtime.settings_for(PLUGIN).email_backend
    channels = registered_channels(runtime)
    if backend not in channels:
        raise ConfigError(
            f"EMAIL_BACKEND={backend!r}: no such notification channel; "
            f"channels there are: {', '.join(sorted(channels)) or '(none)'}"
        )
    _check_lease_fits_retries(app, runtime.settings_for(PLUGIN))


def _check_lease_fits_retries(app: Any, settings: Any) -> None:
    """Refuse a broker visibility timeout too short for the outbox lease.

    A copy of a task that finds its key leased (by a worker that died mid-send, say)
    retries until the lease has expired; retries wait at most half the visibility
    timeout (core caps them), so the retries must add up to the lease, or that e-mail
    would give up and never be sent. Only a low BROKER_VISIBILITY_TIMEOUT can fail this.
    """
    from plugins.notifications.sending import MAX_RETRIES, lease_for

    timeout = app.conf.broker_transport_options.get("visibility_timeout")
    lease = lease_for(settings).total_seconds()
    if timeout and (timeout // 2) * MAX_RETRIES < lease:
        needed = 2 * math.ceil(lease / MAX_RETRIES)
        raise ConfigError(
            f"BROKER_VISIBILITY_TIMEOUT={timeout} is too short for the e-mail outbox: a "
            f"delivery holds its key for up to {lease:.0f} s (60 s + 10 x SMTP_TIMEOUT) and "
            f"{MAX_RETRIES} retries of at most {timeout // 2} s would give up on a key held "
            f"by a worker that died; set it to at least {needed} or lower SMTP_TIMEOUT"
        )


@hookimpl
def register_commands(cli: Any) -> None:
    """`banktasks outbox [--status failed] [--limit N] [--json]`."""
    from plugins.notifications.cli import outbox_command

    cli.add_command(outbox_command)


@hookimpl
def register_notification_channels() -> list[Any]:
    """The built-in channels: smtp, file and console."""
    from plugins.notifications.channels import builtin_channels

    return builtin_channels()


# --- hooks owned by other plugins (called only when their owner is enabled) ---


@hookimpl
def on_report_generated(report: Any) -> dict[str, str]:
    """Queue an admin e-mail with the daily report summary (plain text and HTML)."""
    from plugins.notifications.tasks import send_admin_email

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
    result = send_admin_email.delay(
        subject=f"Daily report {day}",
        message=summary,
        html_message=html_body,
        idempotency_key=f"daily-report:{day}",
    )
    log.info("report_email_queued", report_date=str(day), task_id=result.id)
    return {"queued": result.id}


@hookimpl
def on_fraud_alert(alert: Any) -> dict[str, str]:
    """Queue an admin e-mail about a new fraud alert (ids only, never an account number)."""
    from plugins.notifications.tasks import send_admin_email

    evidence = redact_value("evidence", getattr(alert, "evidence", None) or {})
    lines = [
        f"Fraud alert #{alert.id}",
        f"rule: {alert.rule}",
        f"severity: {alert.severity}",
        f"score: {getattr(alert, 'score', '')}",
        f"account id: {alert.account_id}",
        f"transaction id: {getattr(alert, 'transaction_id', None) or '-'}",
        f"created at: {getattr(alert, 'created_at', '')}",
        f"evidence: {json.dumps(evidence, sort_keys=True, default=str)}",
        "",
        "Review it with: banktasks alerts list",
    ]
    text = "\n".join(lines)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in (line.split(": ", 1) for line in lines[1:8])
    )
    html_body = (
        f"<!doctype html><html><body><h1>Fraud alert #{alert.id}</h1>"
        f"<table>{rows}</table></body></html>"
    )
    result = send_admin_email.delay(
        subject=f"[fraud] {alert.severity} {alert.rule} alert #{alert.id}",
        message=text,
        html_message=html_body,
        idempotency_key=f"fraud-alert:{alert.id}",
    )
    log.info("fraud_alert_email_queued", alert_id=alert.id, task_id=result.id)
    return {"queued": result.id}


@hookimpl
def on_export_ready(export: Any) -> dict[str, str]:
    """Tell the user their export is ready: the file name only, never the data."""
    from plugins.notifications.tasks import send_email_notification

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
    result = send_email_notification.delay(
        user_id=export.user_id,
        subject="Your transaction export is ready",
        message=text,
        html_message=html_body,
        idempotency_key=f"export-ready:{export.id}",
    )
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
