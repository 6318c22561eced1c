"""`banktasks delivery status|sweep`."""

from __future__ import annotations

import json

import click

from core import current_app


@click.group("delivery")
def delivery_group() -> None:
    """The delivery ledger, its reconciler and the transactional outbox."""


@delivery_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(as_json: bool) -> None:
    """Tracked submissions, suspects, re-sends so far and the outbox backlog."""
    from core.default_plugins.delivery.api import status

    now = status(current_app())
    if as_json:
        click.echo(json.dumps(now, indent=2))
        return
    click.echo(f"tracked submissions     {now['tracked']}")
    click.echo(f"  older than the grace  {now['older_than_grace']}")
    click.echo(f"  oldest (seconds)      {now['oldest_seconds']}")
    click.echo(f"  suspect (nowhere)     {now['suspect']}")
    for name, value in now["totals"].items():
        click.echo(f"{name:<24}{value}")
    click.echo(f"last sweep (s ago)      {now['last_sweep_seconds_ago']}")
    outbox = now["outbox"]
    click.echo(f"outbox rows pending     {outbox.get('pending')}")
    if outbox.get("error"):
        click.echo(f"  outbox: {outbox['error']}")


@delivery_group.command("sweep")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sweep_command(as_json: bool) -> None:
    """Run one sweep now, in this process: outbox relay, then the reconciler."""
    from core.default_plugins.delivery.api import sweep_once

    report = sweep_once(current_app())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if report["skipped"]:
        click.echo("another sweep is running; nothing done")
        return
    click.echo(
        f"checked {report['checked']} of {report['tracked']} tracked: settled "
        f"{report['settled']}, unacked {report['unacked']}, queued {report['queued']}, "
        f"suspect {report['suspect']}, resent {len(report['resent'])}, given up "
        f"{len(report['given_up'])}; outbox relayed {report['outbox']['relayed']} "
        f"({report['seconds']} s)"
    )
    if report["outbox"]["error"]:
        click.echo(f"outbox: {report['outbox']['error']}")
