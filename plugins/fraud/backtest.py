"""The back-test: run fraud rules over a window of history, with settings changed or not,
and compare what they find with the alerts already stored. Nothing is written.

`run_backtest(rules, since, until, overrides)` reads exactly as the analysis does
(`plugins.fraud.engine`: the same rule selection, `RuleContext`, `alert_rows` and
`current().data_session`), in a session that is rolled back: no alert, no watermark,
no audit row, and no hook is called. The task `fraud.backtest_fraud_rules` and the
command `banktasks fraud backtest` call it.

What the rules see. `now` is the moment the back-test runs, as in
`analyse(since, until)`: a pattern anchored in `[since, until)` is completed with the
rows up to one rule window after `until` (never past now). That is what the scheduled
runs stored for that window, since each re-reads FRAUD_OVERLAP_HOURS before its
watermark: with `now = until` instead, a burst starting just before `until` and
completed after it would be missed and reported as no longer raised although the
scheduled analysis raised it. So with unchanged settings a back-test finds exactly
the alerts `analyse(since, until)` would store.

How a stored alert belongs to the window (for `no_longer_raised`). Its time is the
time of the transaction it points at (`fraud_alerts.transaction_id`, read from
`current().data` in a second query, never joined with `fraud_alerts`), or, for an
alert without one, the moment in its key `account:<id>:<micros>` (`Finding.window_start`);
an alert with neither is never counted as no longer raised. That transaction is
the rule's anchor for every built-in rule and typology but two, whose anchor comes
later: `pass_through` points at the deposit and is completed by an outflow up to
FRAUD_PASS_THROUGH_HOURS after it, `dormant_reactivation` at the first new
transaction, completed up to FRAUD_DORMANT_ACTIVITY_DAYS after it. A stored alert
belongs to the window when `since <= time` and `time + lead < until`, `lead` being
that span (the longer of the configured and the back-tested settings; 0 for every
other rule): an alert whose pattern may have completed after `until` (or before
`since`) is left out, so `no_longer_raised` never lists an alert the window could
not have raised. Hits are compared by `(rule, dedup_key)` with every stored alert
of the rule, whatever its time or status.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import click
from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import ConfigError, Contribution, TaskArgumentError, current, get_logger
from core.db import to_micros, utcnow
from core.validators import as_utc
from plugins.fraud.api import RuleContext, rule_settings_hash
from plugins.fraud.bankdata import transaction_times
from plugins.fraud.cli_errors import BadInput
from plugins.fraud.engine import alert_rows, resolve_window
from plugins.fraud.models import FraudAlert
from plugins.fraud.rules import collect_rules, select_rules, unknown_rules
from plugins.fraud.settings import FraudSettings

log = get_logger(__name__)

TASK = "fraud.backtest_fraud_rules"
SAMPLE_KEYS = 20
"""How many keys of new / no longer raised hits a report lists per rule."""
WINDOW_KEY = re.compile(r"^account:\d+:(-?\d+)$")
"""The key `finding_key` derives from `account_id` + `window_start` (epoch µs)."""


@dataclass
class RuleBacktest:
    """One rule's back-test: its hits (dedup keys) and how they compare with stored alerts.

    `new`: hits whose `(rule, dedup_key)` is not stored; `unchanged`: hits stored
    too; `no_longer_raised`: stored alerts of the rule that belong to the window (see
    the module's docstring) and are not hit now. `compared` is False when the back-test
    ran with `compare=False` (the three are then empty).
    """

    name: str
    plugin: str
    version: str
    settings_hash: str
    keys: list[str]
    seconds: float
    compared: bool = False
    new: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    no_longer_raised: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def hits(self) -> int:
        """How many alerts the rule would raise in the window (distinct dedup keys)."""
        return len(self.keys)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: counts, the first SAMPLE_KEYS new / no longer raised keys, all keys."""
        return {
            "rule": self.name,
            "plugin": self.plugin,
            "version": self.version,
            "settings_hash": self.settings_hash,
            "hits": self.hits,
            "seconds": round(self.seconds, 6),
            "compared": self.compared,
            "new": len(self.new),
            "unchanged": len(self.unchanged),
            "no_longer_raised": len(self.no_longer_raised),
            "new_sample": self.new[:SAMPLE_KEYS],
            "no_longer_raised_sample": self.no_longer_raised[:SAMPLE_KEYS],
            "keys": list(self.keys),
        }


@dataclass
class BacktestReport:
    """What `run_backtest` found: the window, the settings changed, and one entry per rule."""

    since: datetime
    until: datetime
    overrides: dict[str, str]
    rules: list[RuleBacktest]
    compared: bool

    def totals(self) -> dict[str, Any]:
        """The rules' hits, new, unchanged, no longer raised and seconds added up."""
        return {
            "hits": sum(r.hits for r in self.rules),
            "new": sum(len(r.new) for r in self.rules),
            "unchanged": sum(len(r.unchanged) for r in self.rules),
            "no_longer_raised": sum(len(r.no_longer_raised) for r in self.rules),
            "seconds": round(sum(r.seconds for r in self.rules), 6),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the task's result, `banktasks fraud backtest --json`)."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "overrides": dict(self.overrides),
            "compared": self.compared,
            "rules": [r.as_dict() for r in self.rules],
            "totals": self.totals(),
        }


# -- --set NAME=VALUE -----------------------------------------------------------------------


class _Assigned(EnvSettingsSource):
    """pydantic-settings' environment source reading given variables instead of os.environ,
    so a value is decoded exactly as the variable would be (comma lists, JSON, aliases)."""

    def __init__(self, settings_cls: Any, variables: dict[str, str]) -> None:
        self._variables = variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> dict[str, str | None]:
        if self.case_sensitive:
            return dict(self._variables)
        return {name.lower(): value for name, value in self._variables.items()}


def _variables(model: Any) -> dict[str, str]:
    """Setting variable → field name for one built settings model (`<PREFIX>_<FIELD>`, and
    a field's own alias when it has one)."""
    prefix = str(model.model_config.get("env_prefix") or "")
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[f"{prefix}{name}".upper()] = name
        if isinstance(info.validation_alias, str):
            names[info.validation_alias.upper()] = name
    return names


def _validation_message(exc: ValidationError, variables: dict[str, str], given: set[str]) -> str:
    """One line per error, naming the variable of the field in question (unless it is the
    one variable set, which the message starts with already)."""
    by_field = {field: name for name, field in variables.items() if name.endswith(field.upper())}
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        where = by_field.get(str(err["loc"][0])) if err["loc"] else None
        parts.append(f"{where}: {msg}" if where and given != {where} else msg)
    return "; ".join(parts)


def apply_overrides(
    owners: dict[str, Any], overrides: dict[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """`owners` (plugin → its settings) with `overrides` (variable → text) applied.

    Each variable must be a setting of one of those plugins (`FRAUD_CTR_AMOUNT`); its
    value is decoded as the environment variable would be and the whole model is
    validated again (cross-field checks included). Returns the new settings per plugin
    and the overrides by canonical (upper-case) name. TaskArgumentError, naming the
    variable and what is expected, for an unknown name or a bad value.
    """
    overrides = dict(overrides or {})
    known = {plugin: _variables(type(model)) for plugin, model in owners.items()}
    per_plugin: dict[str, dict[str, str]] = {}
    canonical: dict[str, str] = {}
    for raw_name, value in overrides.items():
        name = str(raw_name).strip().upper()
        owner = next((plugin for plugin, names in known.items() if name in names), None)
        if owner is None:
            every = sorted(n for names in known.values() for n in names)
            raise TaskArgumentError(
                f"{TASK}: --set {raw_name}: not a setting of the fraud plugin or of a plugin "
                f"that registers fraud rules; settings: {', '.join(every)}"
            )
        if not isinstance(value, str):
            raise TaskArgumentError(
                f"{TASK}: --set {name}: expected the value as text, as in the environment"
            )
        per_plugin.setdefault(owner, {})[name] = value
        canonical[name] = value
    result = dict(owners)
    for plugin, variables in per_plugin.items():
        model = owners[plugin]
        cls = type(model)
        try:
            decoded = _Assigned(cls, variables)()
            result[plugin] = cls.model_validate({**model.model_dump(), **decoded})
        except (ValidationError, ValueError) as exc:
            shown = ", ".join(f"{n}={v}" for n, v in variables.items())
            if isinstance(exc, ValidationError):
                detail = _validation_message(exc, known[plugin], set(variables))
            else:  # a complex value that is not JSON (pydantic-settings' SettingsError)
                detail = str(exc)
            raise TaskArgumentError(f"{TASK}: --set {shown}: {detail}") from None
    return result, canonical


# -- the back-test ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Validated arguments: the window, the rules with their settings, the overrides."""

    since: datetime
    until: datetime
    fraud: FraudSettings
    configured: FraudSettings
    rules: list[tuple[Contribution, Any, str]]
    overrides: dict[str, str]


def _window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """Both bounds given, in UTC, in order (TaskArgumentError otherwise)."""
    if since is None or until is None:
        raise TaskArgumentError(f"{TASK}: give both since and until (ISO 8601 times)")
    settings = current().settings_for("fraud")
    try:
        window = resolve_window(
            None,  # type: ignore[arg-type]  # explicit bounds never read the watermark
            settings,
            as_utc(since),
            as_utc(until),
            utcnow(),
            TASK,
        )
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, TaskArgumentError):
            raise
        raise TaskArgumentError(
            f"{TASK}: since={since} until={until} is out of range; "
            "give times between the years 1 and 9999 UTC"
        ) from None
    return window.since, window.until


def _choose(
    registered: list[Contribution], names: list[str] | None, fraud: FraudSettings
) -> list[Contribution]:
    """The named rules (any registered one, on by default or not), else the active ones."""
    if names is None:
        try:
            return select_rules(registered, fraud)
        except ConfigError as exc:
            raise TaskArgumentError(f"{TASK}: {exc}") from None
    by_name = {rule.name: rule for rule in registered}
    problem = unknown_rules(names, by_name)
    if problem:
        raise TaskArgumentError(f"{TASK}: {problem}")
    if not names:
        raise TaskArgumentError(f"{TASK}: rules=[] names no rule; omit it for the active rules")
    return [by_name[name] for name in sorted(set(names))]


def plan_backtest(
    rules: list[str] | None,
    since: datetime,
    until: datetime,
    overrides: dict[str, str] | None = None,
) -> _Plan:
    """Check every argument and work out what would run, touching no table.

    TaskArgumentError for a bad window, an unknown rule, or a bad `--set`.
    """
    runtime = current()
    start, end = _window(since, until)
    registered = collect_rules(runtime.plugins)
    configured: FraudSettings = runtime.settings_for("fraud")
    owners = {"fraud": configured}
    for contribution in registered:
        owners.setdefault(contribution.plugin, runtime.settings_for(contribution.plugin))
    settings, canonical = apply_overrides(owners, overrides)
    fraud: FraudSettings = settings["fraud"]
    chosen = _choose(registered, rules, fraud)
    planned = []
    for contribution in chosen:
        own = fraud if contribution.plugin == "fraud" else settings[contribution.plugin]
        planned.append((contribution, own, rule_settings_hash(contribution.obj, own, fraud)))
    return _Plan(start, end, fraud, configured, planned, canonical)


def check_backtest(
    since: datetime,
    until: datetime,
    rules: list[str] | None = None,
    overrides: dict[str, str] | None = None,
) -> None:
    """The task's `check`: refuse a bad window, an unknown rule or a bad `--set` before
    anything is sent (and again in the worker)."""
    plan_backtest(rules, since, until, overrides)


def _stored(session: Session, names: list[str]) -> dict[str, dict[str, int | None]]:
    """Per rule, its stored alerts: dedup key → transaction id (one query)."""
    stored: dict[str, dict[str, int | None]] = {name: {} for name in names}
    if not names:
        return stored
    query = select(FraudAlert.rule, FraudAlert.dedup_key, FraudAlert.transaction_id).where(
        FraudAlert.rule.in_(names)
    )
    for rule, key, transaction_id in session.execute(query):
        stored[rule][key] = transaction_id
    return stored


def _lead(contribution: Contribution, own: Any) -> int:
    """How long (µs) after its transaction a stored alert's pattern may complete: the rule's
    optional `completes_within(settings)`, with the settings of the back-test and with
    those configured (whichever is longer); 0 without it (the transaction is the anchor)."""
    completes_within = getattr(contribution.obj, "completes_within", None)
    if completes_within is None:
        return 0
    configured = current().settings_for(contribution.plugin)
    spans = (completes_within(settings) for settings in (own, configured))
    return max(span // timedelta(microseconds=1) for span in spans)


def _compare(
    results: list[RuleBacktest],
    stored: dict[str, dict[str, int | None]],
    data: Session,
    plan: _Plan,
) -> None:
    """Fill each result's new / unchanged / no_longer_raised (see the module's docstring)."""
    missing: dict[str, dict[str, int | None]] = {}
    for result in results:
        keys, known = set(result.keys), stored.get(result.name, {})
        result.compared = True
        result.new = [key for key in result.keys if key not in known]
        result.unchanged = [key for key in result.keys if key in known]
        missing[result.name] = {k: t for k, t in known.items() if k not in keys}
    times = transaction_times(
        data, (tid for gone in missing.values() for tid in gone.values() if tid is not None)
    )
    since_us, until_us = to_micros(plan.since), to_micros(plan.until)
    leads = {c.name: _lead(c, own) for c, own, _ in plan.rules}
    for result in results:
        lead = leads[result.name]
        gone = []
        for key, tid in missing[result.name].items():
            if tid is not None:
                at = times.get(tid)
            else:
                match = WINDOW_KEY.match(key)
                at = int(match.group(1)) if match else None
            if at is not None and since_us <= at and at + lead < until_us:
                gone.append(key)
        result.no_longer_raised = sorted(gone)


def run_backtest(
    rules: list[str] | None,
    since: datetime,
    until: datetime,
    overrides: dict[str, str] | None = None,
    *,
    compare: bool = True,
) -> BacktestReport:
    """Run fraud rules over `[since, until)` of history; write nothing, call no hook.

    `rules`: rule names (any registered rule, one that is off by default included), or
    None for the rules the analysis runs (FRAUD_RULES / FRAUD_ENABLE_RULES /
    FRAUD_DISABLE_RULES, after `overrides`). `overrides`: setting variable → value as
    text (`{"FRAUD_LARGE_AMOUNT": "5000"}`), settings of the fraud plugin or of a plugin
    that registers rules, validated as the environment variable would be. Naive times
    are taken as UTC. With `compare`, each rule's hits are compared with its stored
    alerts (new, unchanged, no longer raised). TaskArgumentError, before anything runs,
    for a bad window, an unknown rule or a bad override.
    """
    plan = plan_backtest(rules, since, until, overrides)
    runtime = current()
    now = utcnow()
    results: list[RuleBacktest] = []
    with runtime.db.session() as session:
        try:
            with runtime.data_session(session) as data:
                for contribution, own, digest in plan.rules:
                    results.append(_run_rule(contribution, own, digest, plan, data, now))
                if compare:
                    stored = _stored(session, [r.name for r in results])
                    _compare(results, stored, data, plan)
        finally:
            session.rollback()  # whatever a rule did, nothing is kept
    report = BacktestReport(plan.since, plan.until, plan.overrides, results, compare)
    log.info(
        "fraud_backtest_done",
        since=plan.since.isoformat(),
        until=plan.until.isoformat(),
        rules=[r.name for r in results],
        overrides=sorted(plan.overrides),
        **report.totals(),
    )
    return report


def _run_rule(
    contribution: Contribution,
    own: Any,
    digest: str,
    plan: _Plan,
    data: Session,
    now: datetime,
) -> RuleBacktest:
    """One rule over the window, timed around `find` (and turning findings into rows)."""
    rule = contribution.obj
    ctx = RuleContext(
        data,
        plan.since,
        plan.until,
        own,
        now,
        fraud_settings=plan.fraud,
        tables=current().data,
    )
    started = time.perf_counter()
    try:
        rows = alert_rows(rule, rule.find(ctx), now, digest)
    except Exception as exc:
        exc.add_note(f"in fraud rule {rule.name!r} (back-test)")
        raise
    seconds = time.perf_counter() - started
    return RuleBacktest(
        name=rule.name,
        plugin=contribution.plugin,
        version=rule.version,
        settings_hash=digest,
        keys=[row["dedup_key"] for row in rows],
        seconds=seconds,
        rows=rows,
    )


# -- banktasks fraud backtest ---------------------------------------------------------------


def _moment(value: str, option: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise TaskArgumentError(
            f"{option} {value!r}: expected an ISO 8601 time such as 2024-05-01 or "
            "2024-05-01T10:30:00+00:00 (naive times are UTC)"
        ) from None


def _assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise TaskArgumentError(
                f"--set {pair!r}: expected NAME=VALUE, e.g. FRAUD_LARGE_AMOUNT=5000"
            )
        overrides[name.strip()] = value
    return overrides


def format_table(report: BacktestReport) -> list[str]:
    """The report as the lines `banktasks fraud backtest` prints."""
    lines = [f"back-test of [{report.since.isoformat()}, {report.until.isoformat()})"]
    if report.overrides:
        lines.append("with " + " ".join(f"{n}={v}" for n, v in report.overrides.items()))
    header = (
        f"{'rule':22} {'hits':>7} {'new':>7} {'unchanged':>9} {'no longer':>9} "
        f"{'seconds':>9}  {'version':8} settings hash"
    )
    lines.append(header)

    def counts(new: int | str, unchanged: int | str, gone: int | str) -> str:
        return f"{new:>7} {unchanged:>9} {gone:>9}"

    for r in report.rules:
        compared = (
            counts(len(r.new), len(r.unchanged), len(r.no_longer_raised))
            if r.compared
            else counts("-", "-", "-")
        )
        lines.append(
            f"{r.name:22} {r.hits:>7} {compared} {r.seconds:>9.3f}  {r.version:8} {r.settings_hash}"
        )
    t = report.totals()
    compared = (
        counts(t["new"], t["unchanged"], t["no_longer_raised"])
        if report.compared
        else counts("-", "-", "-")
    )
    lines.append(f"{'total':22} {t['hits']:>7} {compared} {t['seconds']:>9.3f}")
    return lines


@click.command("backtest")
@click.argument("rules", nargs=-1)
@click.option("--since", required=True, help="Start of the window (ISO 8601, naive = UTC).")
@click.option("--until", required=True, help="End of the window, excluded (ISO 8601).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Run with a setting changed, e.g. FRAUD_LARGE_AMOUNT=5000 (repeatable).",
)
@click.option("--no-compare", is_flag=True, help="Do not compare with the stored alerts.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def backtest_command(
    rules: tuple[str, ...],
    since: str,
    until: str,
    assignments: tuple[str, ...],
    no_compare: bool,
    as_json: bool,
) -> None:
    """Run rules over history and compare with the stored alerts; writes nothing.

    RULE ...: the rules to run (any registered one); none: the active rules. Prints per
    rule its hits, how they compare with the stored alerts (new, unchanged, no longer
    raised), the seconds it took, its version and settings hash.
    """
    import json

    try:
        report = run_backtest(
            list(rules) or None,
            _moment(since, "--since"),
            _moment(until, "--until"),
            _assignments(assignments),
            compare=not no_compare,
        )
    except (TaskArgumentError, ConfigError) as exc:
        raise BadInput(str(exc).removeprefix(TASK + ": ")) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    for line in format_table(report):
        click.echo(line)
