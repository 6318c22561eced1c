"""`banktasks alerts list|show|investigate|resolve` (look at and work fraud alerts) and the
`banktasks fraud` group, whose commands live in the modules that do the work."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from core import BanktasksError, session_scope
from plugins.fraud.backtest import backtest_command
from plugins.fraud.bankdata import account_numbers, masked
from plugins.fraud.casework_cli import BY, FRAUD_COMMANDS, cases_group
from plugins.fraud.evaluate import evaluate_command
from plugins.fraud.lifecycle import investigate_alert, resolve_alert
from plugins.fraud.models import AlertStatus, FraudAlert
from plugins.fraud.planting import plant_command


def list_alerts(
    status: str | None = None, rule: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest alerts first, as dicts with a masked account number (`account`)."""
    query = (
        select(FraudAlert).order_by(FraudAlert.created_at.desc(), FraudAlert.id.desc()).limit(limit)
    )
    if status:
        query = query.where(FraudAlert.status == status)
    if rule:
        query = query.where(FraudAlert.rule == rule)
    with session_scope() as session:
        alerts = session.scalars(query).all()
        numbers = account_numbers(session, {alert.account_id for alert in alerts})
        return [
            {**alert.as_dict(), "account": masked(numbers.get(alert.account_id))}
            for alert in alerts
        ]


def _fail(exc: BanktasksError) -> None:
    raise click.ClickException(str(exc)) from None


def _summary(alert: FraudAlert) -> str:
    return f"alert #{alert.id} ({alert.rule}, account {alert.account_id}) is now {alert.status}"


def add_commands(cli: click.Group) -> None:
    """Add the `alerts` and `fraud` groups to the `banktasks` command line."""

    @cli.group("fraud")
    def fraud_group() -> None:
        """Back-test rules on history, plant patterns and measure the rules against them,
        snooze known false positives, read the audit trail."""

    fraud_group.add_command(backtest_command)
    fraud_group.add_command(plant_command)
    fraud_group.add_command(evaluate_command)

    cli.add_command(cases_group)  # cases, suppressions, audit: plugins.fraud.casework_cli
    for command in FRAUD_COMMANDS:
        fraud_group.add_command(command)

    @cli.group()
    def alerts() -> None:
        """List fraud alerts and move them through their lifecycle."""

    @alerts.command("list")
    @click.option(
        "--status", type=click.Choice([s.value for s in AlertStatus]), help="Only this status."
    )
    @click.option("--rule", help="Only alerts of this rule.")
    @click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="At most.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
    def list_command(status: str | None, rule: str | None, limit: int, as_json: bool) -> None:
        """Newest alerts first (account numbers are masked)."""
        rows = list_alerts(status, rule, limit)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo("no fraud alerts")
            return
        header = f"{'id':>6}  {'created (UTC)':19}  {'rule':18} {'severity':8}  {'score':>7}  "
        click.echo(header + f"{'status':14} {'account':10} transaction")
        for r in rows:
            click.echo(
                f"{r['id']:>6}  {r['created_at'][:19]:19}  {r['rule']:18} {r['severity']:8}  "
                f"{r['score']:>7.2f}  {r['status']:14} {r['account']:10} "
                f"{r['transaction_id'] if r['transaction_id'] is not None else '-'}"
            )

    @alerts.command("show")
    @click.argument("alert_id", type=int)
    def show_command(alert_id: int) -> None:
        """Print one alert with its evidence as JSON."""
        with session_scope() as session:
            alert = session.get(FraudAlert, alert_id)
            if alert is None:
                raise click.ClickException(f"fraud alert #{alert_id} does not exist")
            number = account_numbers(session, {alert.account_id}).get(alert.account_id)
        click.echo(json.dumps({**alert.as_dict(), "account": masked(number)}, indent=2))

    @alerts.command("investigate")
    @click.argument("alert_id", type=int)
    @BY
    def investigate_command(alert_id: int, actor: str) -> None:
        """Mark an open alert as being investigated (recorded in the audit trail)."""
        try:
            click.echo(_summary(investigate_alert(alert_id, actor)))
        except BanktasksError as exc:
            _fail(exc)

    @alerts.command("resolve")
    @click.argument("alert_id", type=int)
    @click.option("--false-positive", is_flag=True, help="Close it as a false positive.")
    @BY
    def resolve_command(alert_id: int, false_positive: bool, actor: str) -> None:
        """Close an alert: resolved, or false_positive with --false-positive (recorded in the
        audit trail)."""
        try:
            click.echo(_summary(resolve_alert(alert_id, false_positive, actor)))
        except BanktasksError as exc:
            _fail(exc)
