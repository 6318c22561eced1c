"""`banktasks cases list|show|assign|close` and `banktasks fraud suppress|unsuppress|
suppressions|audit`: the commands of cases, suppressions and the audit trail.

Bad input (an unknown rule or case, a date not in the future, an empty reason, a
change the case's status does not allow) exits with status 2 and one line saying
what was wrong; nothing is written.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import click

from core import BanktasksError
from plugins.fraud.audit import OBJECT_TYPES, audit_trail
from plugins.fraud.cases import assign_case, close_case, list_cases, show_case
from plugins.fraud.cli_errors import BadInput
from plugins.fraud.models import CaseResolution, CaseStatus
from plugins.fraud.suppression import create_suppression, lift_suppression, list_suppressions


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"


BY = click.option(
    "--by",
    "actor",
    default=_me,
    show_default="the OS user",
    help="Who makes the change (recorded in the audit trail).",
)


def _usage(exc: BanktasksError) -> None:
    """Refuse the command with the error's message (`BadInput`: exit 2, one line)."""
    raise BadInput(str(exc)) from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@click.group("cases")
def cases_group() -> None:
    """List fraud cases (one open per customer) and work them: assign, close."""


@cases_group.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in CaseStatus]), help="Only cases in this status."
)
@click.option("--assignee", help="Only cases assigned to this person.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="At most.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
def list_cases_command(status: str | None, assignee: str | None, limit: int, as_json: bool) -> None:
    """Newest cases first: customer, status, assignee, alerts and risk score."""
    rows = list_cases(status, assignee, limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no fraud cases")
        return
    click.echo(
        f"{'id':>6}  {'customer':28} {'status':13} {'assignee':14} {'alerts':>6} {'score':>8}  "
        "opened (UTC)"
    )
    for r in rows:
        customer = r["customer"] or f"user #{r['user_id']}"
        click.echo(
            f"{r['id']:>6}  {customer[:28]:28} {r['status']:13} {(r['assignee'] or '-')[:14]:14} "
            f"{r['alerts']:>6} {r['score']:>8.1f}  {r['opened_at'][:19]}"
        )
    if more:
        click.echo(f"(the newest {limit} only: there are more; raise --limit or filter)")


@cases_group.command("show")
@click.argument("case_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object).")
def show_case_command(case_id: int, as_json: bool) -> None:
    """One case: its alerts (account numbers masked) and its audit trail."""
    try:
        case = show_case(case_id)
    except BanktasksError as exc:
        _usage(exc)
    if as_json:
        _echo_json(case)
        return
    click.echo(
        f"case #{case['id']}  customer {case['customer'] or '-'} (user #{case['user_id']})  "
        f"{case['status']}  assignee {case['assignee'] or '-'}  score {case['score']:.1f}"
    )
    click.echo(f"opened {case['opened_at']}  closed {case['closed_at'] or '-'}")
    if case["resolution"]:
        click.echo(f"resolution {case['resolution']}: {case['note'] or '(no note)'}")
    click.echo(f"alerts ({len(case['alerts'])}):")
    for a in case["alerts"]:
        click.echo(
            f"  #{a['id']:<6} {a['created_at'][:19]}  {a['rule']:20} {a['severity']:8} "
            f"{a['status']:14} {a['account']}"
        )
    click.echo("audit:")
    for row in case["audit"]:
        details = json.dumps(row["details"], sort_keys=True, default=str)
        click.echo(f"  {row['at'][:19]}  {row['actor']:14} {row['action']:18} {details}")


@cases_group.command("assign")
@click.argument("case_id", type=int)
@click.option("--to", "assignee", required=True, help="Who investigates the case.")
@BY
def assign_case_command(case_id: int, assignee: str, actor: str) -> None:
    """Assign a case; an open case becomes investigating."""
    try:
        case = assign_case(case_id, assignee, actor)
    except BanktasksError as exc:
        _usage(exc)
    click.echo(f"case #{case.id} is now {case.status}, assigned to {case.assignee}")


@cases_group.command("close")
@click.argument("case_id", type=int)
@click.option(
    "--resolution",
    required=True,
    type=click.Choice([r.value for r in CaseResolution]),
    help="Why the case is closed.",
)
@click.option(
    "--note",
    required=True,
    help="What was found (required; kept with the case and in the audit trail).",
)
@BY
def close_case_command(case_id: int, resolution: str, note: str, actor: str) -> None:
    """Close a case; its open alerts are resolved (false_positive for that resolution)."""
    try:
        case = close_case(case_id, resolution, note, actor)
    except BanktasksError as exc:
        _usage(exc)
    click.echo(f"case #{case.id} is closed ({case.resolution})")


def _until(value: str) -> tuple[datetime, bool]:
    """`--until` as a moment, and whether it was a date alone: a date alone means the END
    of that day (the next day, 00:00 UTC), so that `--until 2027-03-31` covers the 31st."""
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        return datetime.combine(day + timedelta(days=1), time(), UTC), True
    try:
        return datetime.fromisoformat(text), False
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date: give an ISO date or moment, e.g. 2027-01-31 (to the "
            "end of that day, UTC) or 2027-01-31T18:00:00+01:00 (naive: UTC)",
            param_hint="--until",
        ) from None


@click.command("suppress")
@click.argument("rule")
@click.option(
    "--account", "account_id", type=int, help="Suppress the rule for this (existing) account id."
)
@click.option(
    "--counterparty",
    help="Suppress the rule for this counterparty (compared trimmed, case-insensitive; also "
    "matches alerts whose evidence lists it, e.g. fan_in_out's).",
)
@click.option(
    "--until",
    "until",
    required=True,
    help="Until when: an ISO date, which means the END of that day (2027-03-31: until "
    "2027-04-01 00:00 UTC), or a moment (2027-03-31T18:00:00+01:00; naive is UTC). At most "
    "FRAUD_SUPPRESSION_MAX_DAYS days ahead (default 365).",
)
@click.option("--reason", required=True, help="Why (required; kept in the audit trail).")
@BY
def suppress_command(
    rule: str,
    account_id: int | None,
    counterparty: str | None,
    until: str,
    reason: str,
    actor: str,
) -> None:
    """Suppress RULE's alerts for one account or counterparty until a date (they are still
    stored, as `suppressed`, and counted)."""
    moment, day_only = _until(until)
    try:
        row = create_suppression(
            rule, moment, reason, actor, account_id=account_id, counterparty=counterparty
        )
    except BanktasksError as exc:
        _usage(exc)
    target = f"account {row.account_id}" if row.account_id is not None else row.counterparty
    end = f" (the end of {until.strip()})" if day_only else ""
    click.echo(f"suppression #{row.id}: {row.rule} for {target} until {row.until.isoformat()}{end}")


@click.command("unsuppress")
@click.argument("suppression_id", type=int)
@BY
def unsuppress_command(suppression_id: int, actor: str) -> None:
    """Lift a suppression now: the rule's next hits alert again."""
    try:
        row = lift_suppression(suppression_id, actor)
    except BanktasksError as exc:
        _usage(exc)
    click.echo(f"suppression #{row.id} lifted")


@click.command("suppressions")
@click.option("--all", "show_all", is_flag=True, help="Lifted and expired ones too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
def suppressions_command(show_all: bool, as_json: bool) -> None:
    """Active suppressions (newest first), with how many alerts each suppressed."""
    rows = list_suppressions(include_inactive=show_all)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no fraud suppressions")
        return
    click.echo(
        f"{'id':>5}  {'rule':20} {'account/counterparty':24} {'until (UTC)':19}  "
        f"{'hits':>5}  {'by':12} reason"
    )
    for r in rows:
        target = f"account {r['account_id']}" if r["account_id"] is not None else r["counterparty"]
        state = "" if r["active"] else (" (lifted)" if r["lifted_at"] else " (expired)")
        click.echo(
            f"{r['id']:>5}  {r['rule']:20} {target[:24]:24} {r['until'][:19]:19}  "
            f"{r['hits']:>5}  {r['created_by'][:12]:12} {r['reason']}{state}"
        )


@click.command("audit")
@click.option("--object", "object_type", type=click.Choice(OBJECT_TYPES), help="Only this kind.")
@click.option("--id", "object_id", type=int, help="Only the object with this id (with --object).")
@click.option(
    "--limit",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Only the newest N rows (printed oldest first).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
def audit_command(
    object_type: str | None, object_id: int | None, limit: int, as_json: bool
) -> None:
    """The audit trail of cases, alerts and suppressions, oldest first."""
    if object_id is not None and object_type is None:
        raise BadInput(
            "--id needs --object: case, alert and suppression ids overlap "
            f"(e.g. --object case --id {object_id})"
        )
    rows = audit_trail(object_type, object_id, limit)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no audit rows")
        return
    click.echo(f"{'id':>6}  {'at (UTC)':19}  {'actor':14} {'action':20} object  details")
    for r in rows:
        click.echo(
            f"{r['id']:>6}  {r['at'][:19]}  {r['actor']:14} {r['action']:20} "
            f"{r['object_type']} #{r['object_id']}  {json.dumps(r['details'])}"
        )


FRAUD_COMMANDS = (suppress_command, unsuppress_command, suppressions_command, audit_command)
"""The commands `add_commands` puts in the `banktasks fraud` group."""
