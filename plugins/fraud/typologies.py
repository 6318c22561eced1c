"""The typologies: cash_threshold, amount_deviation, fan_in_out, pass_through and
dormant_reactivation.

Like the built-in rules, each is set-based SQL over `ctx.tables` (never the core
tables by name, so a bank's own tables seen through `DATA_MAPPING` work too),
portable between SQLite (>= 3.28) and PostgreSQL (>= 11), with times and money in
their stored form (epoch microseconds, integer cents). Python only shapes the
returned rows into findings.

They count **completed** transactions only: a failed, reversed or pending cash
deposit moved no cash, and a history or a pass-through made of attempts says
little. (The built-in rules count every status: an attempted large transfer is a
signal too.)

Direction comes from `kind` (amounts are positive): a `deposit` pays INTO the
account; a `withdrawal`, `payment` or `transfer` pays OUT of it (a transfer in is
the receiving account's deposit); a `fee` is the bank's own charge, neither in
nor out, and is not customer activity either.

Anchors. A rule reports only findings anchored in `[since, until)`, so adjacent
windows and the slices of the chunked task never report one twice:

- `amount_deviation`: the transaction itself (its history is read backwards, up
  to FRAUD_DEVIATION_HISTORY_DAYS before `since`).
- `fan_in_out`: the first transaction of a burst, as the built-in burst rules
  (rows read from `since - W` to `until + W`, never past now).
- `cash_threshold`, `pass_through`, `dormant_reactivation`: the transaction that
  completes the pattern (takes the day's cash over the line, the outflows to the
  percentage, the reactivation to the amount). The moment that makes a pattern
  is always a new row, so the scheduled run that first sees it finds it without
  any overlap; the alert's key names the day, the deposit or the first new
  transaction, and the evidence shows everything of the pattern read so far
  (never past now).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Numeric,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)

from core.db import from_micros, from_minor, to_micros, to_minor
from core.models import TransactionChannel, TransactionKind, TransactionStatus
from plugins.fraud.api import Finding, RuleContext
from plugins.fraud.builtin import EVIDENCE_IDS, HOUR_US, scan_conditions

DAY_US = 24 * HOUR_US
COMPLETED = TransactionStatus.completed.value
DEPOSIT = TransactionKind.deposit.value
WITHDRAWAL = TransactionKind.withdrawal.value
INBOUND = (DEPOSIT,)
OUTBOUND = (
    TransactionKind.withdrawal.value,
    TransactionKind.payment.value,
    TransactionKind.transfer.value,
)
"""Kinds that pay into / out of an account (a fee is neither)."""
CUSTOMER_KINDS = INBOUND + OUTBOUND
PERCENTILE = 95  # amount_deviation's baseline: the nearest-rank 95th percentile
_ORDINAL_SHIFT = -to_micros(datetime(1, 1, 1, tzinfo=UTC))
"""µs from 0001-01-01 to the epoch: `(local_us + shift) // day_us` is a date's ordinal - 1."""


@dataclass(frozen=True)
class _Tx:
    """One reference to the transactions a rule reads, time and money as raw integers."""

    table: Any
    id: Any
    account_id: Any
    at: Any
    cents: Any
    kind: Any
    status: Any
    channel: Any
    counterparty: Any


def _tx(ctx: RuleContext, name: str | None = None) -> _Tx:
    """`ctx.tables.transactions` (aliased as `name` for a self-join)."""
    table = ctx.tables.transactions
    if name is not None:
        table = table.alias(name)
    c = table.c
    return _Tx(
        table,
        c.id,
        c.account_id,
        type_coerce(c.created_at, BigInteger),
        type_coerce(c.amount_minor, BigInteger),
        c.kind,
        c.status,
        c.channel,
        c.counterparty,
    )


def _iso(micros: int) -> str:
    return from_micros(micros).isoformat()


def _row_filter(ctx: RuleContext, *conditions: Any) -> Any:
    """`conditions` on the inner side of a self-join (rows reached through the outer row's
    account and a time range).

    On SQLite they are written so that no index serves them: its planner, without
    statistics, would otherwise reach the inner rows through `(status, created_at)` and
    scan every account's rows of the time range for each outer row, where
    `(account_id, created_at)` reaches just the account's. PostgreSQL plans from
    statistics, which such a CASE would only blur, so it gets the conditions as they are.
    """
    if ctx.session.get_bind().dialect.name == "sqlite":
        return case((and_(*conditions), 1), else_=0) == 1
    return and_(*conditions)


def _const(value: int) -> Any:
    """An integer computed here written inline (typed BIGINT on PostgreSQL by its size, and
    never a NUMERIC parameter that would turn `//` into a fraction)."""
    return literal_column(str(int(value)), BigInteger)


# -- cash_threshold -------------------------------------------------------------------------


def business_zone(name: str) -> tzinfo:
    """The zone of FRAUD_BUSINESS_TIMEZONE (UTC needs no time zone database)."""
    return UTC if name == "UTC" else ZoneInfo(name)


def _offset_us(zone: tzinfo, micros: int) -> int:
    offset = from_micros(micros).astimezone(zone).utcoffset() or timedelta(0)
    return offset // timedelta(microseconds=1)


def offset_segments(zone: tzinfo, lo: int, hi: int) -> list[tuple[int, int]]:
    """`[(from_us, utc_offset_us), ...]`: the zone's UTC offset over `[lo, hi)`, each from
    the instant it starts (the first from `lo`). Offsets are sampled every 6 hours and
    each change is bisected to the microsecond (zones change at most once in 6 hours)."""
    current = _offset_us(zone, lo)
    segments = [(lo, current)]
    if zone is UTC:
        return segments
    step = 6 * HOUR_US
    at = lo
    while at < hi - 1:
        probe = min(at + step, hi - 1)
        if _offset_us(zone, probe) != current:
            before, after = at, probe  # offset(before) == current != offset(after)
            while after - before > 1:
                middle = (before + after) // 2
                if _offset_us(zone, middle) == current:
                    before = middle
                else:
                    after = middle
            current = _offset_us(zone, after)
            segments.append((after, current))
        at = probe
    return segments


def day_start(zone: tzinfo, day: date) -> int:
    """The first instant (epoch µs) whose local date in `zone` is `day` (local midnight;
    where midnight falls in a DST gap, the end of the gap)."""
    naive = datetime.combine(day, time())
    candidates = [
        moment
        for fold in (0, 1)
        if (moment := naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)).astimezone(zone).date()
        == day
    ]
    return to_micros(min(candidates)) if candidates else to_micros(naive.replace(tzinfo=zone))


def local_date(zone: tzinfo, micros: int) -> date:
    """The business day of an instant."""
    return from_micros(micros).astimezone(zone).date()


def _local_day(at: Any, segments: list[tuple[int, int]]) -> Any:
    """SQL: the local date of `at` as `date.toordinal() - 1`, from the offsets in force."""
    offset: Any = _const(segments[-1][1])
    if len(segments) > 1:
        whens = [
            (at < _const(segments[i + 1][0]), _const(segments[i][1]))
            for i in range(len(segments) - 1)
        ]
        offset = case(*whens, else_=offset)
    return (at + offset + _const(_ORDINAL_SHIFT)) // _const(DAY_US)


class CashThreshold:
    """CTR-style: one customer's cash deposits plus cash withdrawals in one business day,
    over all the customer's accounts, strictly above FRAUD_CTR_AMOUNT.

    The business day is the local date in FRAUD_BUSINESS_TIMEZONE (DST-correct: a day
    of 23 or 25 hours is one day). The local date of each row is computed in SQL from
    the zone's UTC offsets over the window, worked out here with zoneinfo (a CASE with
    one branch per DST change, two a year); the day's running total per customer is a
    window SUM. Anchor: the transaction that takes the day over the line.
    """

    name = "cash_threshold"
    enabled_by_default = False  # FRAUD_ENABLE_RULES turns it on
    severity = "high"
    version = "1"
    settings_fields = ("ctr_amount", "business_timezone")

    def find(self, ctx: RuleContext) -> Iterator[Finding]:
        """One finding per (customer, business day) over the line."""
        s = ctx.fraud_settings
        line = to_minor(s.ctr_amount)
        zone = business_zone(s.business_timezone)
        first_day = local_date(zone, ctx.since_us)
        last_day = local_date(zone, ctx.until_us - 1)
        read_from = day_start(zone, first_day)
        day_end = day_start(zone, last_day + timedelta(days=1))
        read_until = ctx.lookahead_until_us(max(day_end - ctx.until_us, 0))
        segments = offset_segments(zone, read_from, max(read_until, read_from + 1))

        c, k = _tx(ctx, "ctr_tx"), _tx(ctx, "ctr_any")
        accounts = ctx.tables.accounts
        owner, holder = accounts.alias("ctr_owner"), accounts.alias("ctr_holder")

        def cash_rows(x: _Tx) -> list[Any]:
            return [
                x.channel == TransactionChannel.cash.value,
                x.kind.in_((DEPOSIT, WITHDRAWAL)),
                x.status == COMPLETED,
            ]

        # A day can cross the line only if all its cash does (amounts are positive, the
        # CASE keeps that true of any): one aggregate over the cash rows finds those
        # (customer, day)s, and the running totals are worked out for their rows only.
        over = (
            select(owner.c.user_id.label("user_id"), _local_day(k.at, segments).label("day"))
            .select_from(k.table.join(owner, owner.c.id == k.account_id))
            .where(*scan_conditions(ctx, k.at, (read_from, read_until), *cash_rows(k)))
            .group_by(owner.c.user_id, _local_day(k.at, segments))
            # as CASE = 1: PostgreSQL then expects few such days (as there are), not a
            # third, and reads their rows through the indexes instead of hashing all cash
            .having(case((func.sum(case((k.cents > 0, k.cents), else_=0)) > line, 1), else_=0) == 1)
            .cte("ctr_over")
        )
        cash = (
            select(
                c.id.label("id"),
                c.account_id.label("account_id"),
                holder.c.user_id.label("user_id"),
                c.at.label("at"),
                c.cents.label("cents"),
                c.kind.label("kind"),
                over.c.day.label("day"),
            )
            .select_from(
                over.join(holder, holder.c.user_id == over.c.user_id).join(
                    c.table,
                    and_(c.account_id == holder.c.id, c.at >= read_from, c.at < read_until),
                )
            )
            .where(_row_filter(ctx, *cash_rows(c)), _local_day(c.at, segments) == over.c.day)
            .cte("ctr_cash")
        )
        group = (cash.c.user_id, cash.c.day)
        running = select(
            cash,
            func.sum(cash.c.cents)
            .over(partition_by=group, order_by=(cash.c.at, cash.c.id), rows=(None, 0))
            .label("run"),
        ).subquery("ctr_running")
        crossing = and_(
            running.c.run > line,
            running.c.run - running.c.cents <= line,
            running.c.at >= ctx.since_us,
            running.c.at < ctx.until_us,
        )
        days_over = select(
            running,
            func.max(case((crossing, running.c.id)))
            .over(partition_by=(running.c.user_id, running.c.day))
            .label("crossing_id"),
        ).subquery("ctr_days")
        query = (
            select(
                days_over.c.user_id,
                days_over.c.day,
                days_over.c.crossing_id,
                days_over.c.id,
                days_over.c.account_id,
                days_over.c.at,
                days_over.c.cents,
                days_over.c.kind,
            )
            .where(days_over.c.crossing_id.is_not(None))
            .order_by(days_over.c.user_id, days_over.c.day, days_over.c.at, days_over.c.id)
        )
        days: dict[tuple[int, int], dict[str, Any]] = {}
        for user_id, day, crossing_id, tid, account_id, at, cents, kind in ctx.session.execute(
            query
        ):
            entry = days.setdefault((user_id, int(day)), {"crossing": crossing_id, "rows": {}})
            entry["rows"].setdefault(tid, (account_id, at, int(cents), str(kind)))
        for (user_id, day), entry in days.items():
            yield self._finding(ctx, user_id, date.fromordinal(day + 1), entry, line)

    @staticmethod
    def _finding(
        ctx: RuleContext, user_id: int, day: date, entry: dict[str, Any], line: int
    ) -> Finding:
        rows = entry["rows"]
        by_account: dict[int, int] = defaultdict(int)
        deposits = withdrawals = 0
        for account_id, _at, cents, kind in rows.values():
            by_account[account_id] += cents
            if kind == DEPOSIT:
                deposits += cents
            else:
                withdrawals += cents
        total = deposits + withdrawals
        top = min(by_account, key=lambda account: (-by_account[account], account))
        return Finding(
            account_id=top,
            transaction_id=entry["crossing"],
            score=round(total / line, 4),
            dedup_key=f"ctr:{user_id}:{day.isoformat()}",
            evidence={
                "user_id": user_id,
                "business_day": day.isoformat(),
                "time_zone": ctx.fraud_settings.business_timezone,
                "total": str(from_minor(total)),
                "count": len(rows),
                "deposits_total": str(from_minor(deposits)),
                "withdrawals_total": str(from_minor(withdrawals)),
                "threshold": str(ctx.fraud_settings.ctr_amount),
                "transaction_ids": list(rows)[:EVIDENCE_IDS],
                "account_ids": sorted(by_account),
            },
        )


# -- amount_deviation -----------------------------------------------------------------------


class AmountDeviation:
    """A transaction strictly above FRAUD_DEVIATION_FACTOR times the account's trailing
    typical amount: the nearest-rank 95th percentile of the account's completed
    transactions in the FRAUD_DEVIATION_HISTORY_DAYS before it (rows at least that far
    back are in, the transaction and rows at its very moment are out), when that
    history holds at least FRAUD_DEVIATION_MIN_HISTORY transactions.

    The baseline is trailing per transaction, not per window: a self-join of each
    window row with its history counts how many history amounts are below
    amount / factor; the row breaks the rule exactly when they are at least 95 % of
    the history (then the percentile itself is below amount / factor). Only for the
    rows that fire is the percentile itself picked (ROW_NUMBER over their history).
    """

    name = "amount_deviation"
    enabled_by_default = False  # FRAUD_ENABLE_RULES turns it on
    severity = "medium"
    version = "1"
    settings_fields = (
        "deviation_factor",
        "deviation_history_days",
        "deviation_min_history",
        "deviation_min_amount",
    )

    def find(self, ctx: RuleContext) -> Iterator[Finding]:
        """One finding per transaction far above its account's usual amounts."""
        s = ctx.fraud_settings
        ratio = Fraction(s.deviation_factor)
        history_us = s.deviation_history_days * DAY_US
        t, h, b = _tx(ctx, "dev_tx"), _tx(ctx, "dev_history"), _tx(ctx, "dev_baseline")
        below = case(
            (
                cast(h.cents, Numeric) * ratio.numerator
                < cast(t.cents, Numeric) * ratio.denominator,
                1,
            ),
            else_=0,
        )
        n = func.count(h.id)
        hits = (
            select(
                t.id.label("id"),
                t.account_id.label("account_id"),
                t.at.label("at"),
                t.cents.label("cents"),
                t.kind.label("kind"),
                n.label("n"),
            )
            .select_from(
                t.table.join(
                    h.table,
                    and_(h.account_id == t.account_id, h.at >= t.at - history_us, h.at < t.at),
                )
            )
            .where(
                *scan_conditions(
                    ctx,
                    t.at,
                    (ctx.since_us, ctx.until_us),
                    t.status == COMPLETED,
                    # as CASE = 1: PostgreSQL then expects few such amounts (as there are)
                    # and probes each one's history through the index instead of hashing
                    # every completed row as history
                    case((t.cents > to_minor(s.deviation_min_amount), 1), else_=0) == 1,
                ),
                _row_filter(ctx, h.status == COMPLETED),
            )
            .group_by(t.id, t.account_id, t.at, t.cents, t.kind)
            .having(n >= s.deviation_min_history, func.sum(below) * 100 >= n * PERCENTILE)
            .cte("dev_hits")
        )
        ranked = (
            select(
                hits.c.id,
                b.cents.label("baseline"),
                func.row_number()
                .over(partition_by=hits.c.id, order_by=(b.cents, b.id))
                .label("rank"),
            )
            .select_from(
                hits.join(
                    b.table,
                    and_(
                        b.account_id == hits.c.account_id,
                        b.at >= hits.c.at - history_us,
                        b.at < hits.c.at,
                    ),
                )
            )
            .where(_row_filter(ctx, b.status == COMPLETED))
            .subquery("dev_ranked")
        )
        query = (
            select(hits, ranked.c.baseline)
            .join(ranked, ranked.c.id == hits.c.id)
            .where(ranked.c.rank == (hits.c.n * PERCENTILE + 99) // 100)
            .order_by(hits.c.at, hits.c.id)
        )
        for tid, account_id, at, cents, kind, count, baseline in ctx.session.execute(query):
            limit = Decimal(int(baseline)) * s.deviation_factor
            yield Finding(
                account_id=account_id,
                transaction_id=tid,
                score=round(float(Decimal(int(cents)) / limit), 4) if limit else float(cents),
                evidence={
                    "amount": str(from_minor(cents)),
                    "baseline": str(from_minor(baseline)),
                    "baseline_kind": f"p{PERCENTILE}",
                    "factor": str(s.deviation_factor),
                    "history_count": int(count),
                    "history_days": s.deviation_history_days,
                    "kind": str(kind),
                    "at": _iso(at),
                },
            )


# -- fan_in_out -----------------------------------------------------------------------------


def _direction(c: _Tx) -> Any:
    return case((c.kind == DEPOSIT, literal("in")), else_=literal("out"))


def _party(c: _Tx) -> Any:
    """The counterparty as compared: trimmed, lower case."""
    return func.lower(func.trim(c.counterparty))


def _in_window(c: _Tx, anchor: Any, window_us: int, read_until: int) -> Any:
    """`c`'s rows of the same account and direction in `[anchor.at, anchor.at + window)`,
    read no further than `read_until`."""
    return and_(
        c.account_id == anchor.c.account_id,
        c.at >= anchor.c.at,
        c.at < anchor.c.at + window_us,
        c.at < read_until,
        _direction(c) == anchor.c.direction,
    )


def _fan_rows(c: _Tx, ignored: list[str]) -> list[Any]:
    """Completed, in or out, with a counterparty, not on an ignored channel."""
    conditions = [
        c.status == COMPLETED,
        c.kind.in_(CUSTOMER_KINDS),
        c.counterparty.is_not(None),
        func.trim(c.counterparty) != "",
    ]
    if ignored:
        conditions.append(or_(c.channel.is_(None), c.channel.not_in(ignored)))
    return conditions


class FanInOut:
    """At least FRAUD_FAN_MIN_COUNTERPARTIES distinct counterparties paying into one
    account (`in`: deposits) or paid from it (`out`: withdrawals, payments, transfers)
    within a rolling FRAUD_FAN_WINDOW_HOURS (half-open, as the built-in windows).

    Counterparties are compared trimmed and in lower case; rows without one are left
    out. A hot window starts at a row and holds enough distinct counterparties (a
    self-join per row, COUNT(DISTINCT): window functions cannot count distinct); a
    burst (see builtin.py) of hot windows of one account and direction is one finding,
    keyed by its first row.
    """

    name = "fan_in_out"
    enabled_by_default = False  # FRAUD_ENABLE_RULES turns it on
    severity = "medium"
    version = "1"
    settings_fields = ("fan_min_counterparties", "fan_window_hours", "fan_ignore_channels")

    def find(self, ctx: RuleContext) -> Iterator[Finding]:
        """One finding per (account, direction, burst)."""
        s = ctx.fraud_settings
        window_us = s.fan_window_hours * HOUR_US
        read_until = ctx.lookahead_until_us(window_us)
        ignored = list(s.fan_ignore_channels or ())
        a, p = _tx(ctx, "fan_all"), _tx(ctx, "fan_peer")
        r, m = _tx(ctx, "fan_window"), _tx(ctx, "fan_member")
        read = (ctx.since_us - window_us, read_until)
        # A window holds N distinct counterparties only if it holds N rows. One ordered
        # pass finds the instants whose window does: the first row of an instant (in any
        # order of equal times) has its (N-1)-th next row less than a window after it
        # exactly then. Only those windows are counted, one per instant (its rows share
        # it; the first by id is the one that can start a burst: the others follow it
        # at no distance).
        nth = func.lead(a.at, literal_column(str(int(s.fan_min_counterparties) - 1)))
        ahead = (
            select(
                a.account_id.label("account_id"),
                _direction(a).label("direction"),
                a.at.label("at"),
                # direction first: on SQLite no index serves the order (see scan_conditions)
                nth.over(partition_by=(_direction(a), a.account_id), order_by=a.at).label("nth_at"),
            )
            .where(*scan_conditions(ctx, a.at, read, *_fan_rows(a, ignored)))
            .subquery("fan_ahead")
        )
        rows = (
            select(ahead.c.account_id, ahead.c.at, ahead.c.direction)
            # as a CASE = 1, which PostgreSQL expects to hold for few rows (as it does)
            # rather than a third of them: the look-ups below then do not look costly
            # enough to switch on JIT inlining and optimisation (~1 s to compile)
            .where(case((ahead.c.nth_at < ahead.c.at + window_us, 1), else_=0) == 1)
            .distinct()
            .cte("fan_rows")
        )
        # correlated look-ups, one per instant: both planners probe the account's index
        first_id = (
            select(func.min(p.id))
            .where(
                p.account_id == rows.c.account_id,
                p.at == rows.c.at,
                _row_filter(ctx, *_fan_rows(p, ignored), _direction(p) == rows.c.direction),
            )
            .scalar_subquery()
        )
        parties = (
            select(func.count(func.distinct(_party(r))))
            .where(
                _in_window(r, rows, window_us, read_until),
                _row_filter(ctx, *_fan_rows(r, ignored)),
            )
            .scalar_subquery()
        )
        windows = select(
            first_id.label("id"),
            rows.c.account_id,
            rows.c.at,
            rows.c.direction,
            parties.label("parties"),
        ).cte("fan_windows")
        hot = (
            select(
                windows,
                func.lag(windows.c.at)
                .over(
                    partition_by=(windows.c.account_id, windows.c.direction),
                    order_by=(windows.c.at, windows.c.id),
                )
                .label("prev_at"),
            )
            .where(windows.c.parties >= s.fan_min_counterparties)
            .cte("fan_hot")
        )
        starts = (
            select(hot.c.id, hot.c.account_id, hot.c.at, hot.c.direction, hot.c.parties)
            .where(
                hot.c.at >= ctx.since_us,
                hot.c.at < ctx.until_us,
                or_(hot.c.prev_at.is_(None), hot.c.at - hot.c.prev_at >= window_us),
            )
            .cte("fan_starts")
        )
        query = (
            select(
                starts.c.id,
                starts.c.account_id,
                starts.c.direction,
                starts.c.parties,
                m.id,
                m.at,
                m.cents,
                m.counterparty,
            )
            .select_from(starts.join(m.table, _in_window(m, starts, window_us, read_until)))
            .where(_row_filter(ctx, *_fan_rows(m, ignored)))
            .order_by(starts.c.at, starts.c.id, m.at, m.id)
        )
        bursts: dict[int, dict[str, Any]] = {}
        for first_id, account_id, direction, parties, tid, at, cents, party in ctx.session.execute(
            query
        ):
            burst = bursts.setdefault(
                first_id,
                {"account": account_id, "direction": direction, "parties": parties, "rows": []},
            )
            burst["rows"].append((tid, at, int(cents), party))
        for first_id, burst in bursts.items():
            yield self._finding(ctx, first_id, burst)

    @staticmethod
    def _finding(ctx: RuleContext, first_id: int, burst: dict[str, Any]) -> Finding:
        s = ctx.fraud_settings
        rows = burst["rows"]
        seen: dict[str, str] = {}
        for _tid, _at, _cents, party in rows:
            seen.setdefault(party.strip().lower(), party.strip())
        return Finding(
            account_id=burst["account"],
            transaction_id=first_id,
            score=round(burst["parties"] / s.fan_min_counterparties, 4),
            dedup_key=f"account:{burst['account']}:{burst['direction']}:burst:{first_id}",
            evidence={
                "direction": burst["direction"],
                "distinct_counterparties": int(burst["parties"]),
                "counterparties": sorted(seen.values())[:EVIDENCE_IDS],
                "count": len(rows),
                "total": str(from_minor(sum(r[2] for r in rows))),
                "first_at": _iso(rows[0][1]),
                "last_at": _iso(rows[-1][1]),
                "transaction_ids": [r[0] for r in rows[:EVIDENCE_IDS]],
                "min_counterparties": s.fan_min_counterparties,
                "window_hours": s.fan_window_hours,
            },
        )


# -- pass_through ---------------------------------------------------------------------------


class PassThrough:
    """Money in, money out: outflows (withdrawals, payments, transfers) of the account
    from the moment of a deposit of at least FRAUD_PASS_THROUGH_MIN_AMOUNT to
    FRAUD_PASS_THROUGH_HOURS after it (half-open) add up to at least
    FRAUD_PASS_THROUGH_PERCENT % of it.

    A self-join of each deposit with the outflows after it, with their running SUM;
    anchor: the outflow that reaches the percentage. Outflows are not shared out
    between deposits: one large outflow after two deposits can complete both.
    """

    name = "pass_through"
    enabled_by_default = False  # FRAUD_ENABLE_RULES turns it on
    severity = "high"
    version = "1"
    settings_fields = ("pass_through_percent", "pass_through_hours", "pass_through_min_amount")

    def completes_within(self, settings: Any) -> timedelta:
        """How long after its deposit (the alert's transaction) a pass-through completes."""
        return timedelta(hours=settings.pass_through_hours)

    def find(self, ctx: RuleContext) -> Iterator[Finding]:
        """One finding per deposit passed through."""
        s = ctx.fraud_settings
        window_us = s.pass_through_hours * HOUR_US
        read_until = ctx.lookahead_until_us(window_us)
        percent = s.pass_through_percent
        d, o = _tx(ctx, "pt_in"), _tx(ctx, "pt_out")
        pairs = (
            select(
                d.id.label("in_id"),
                d.account_id.label("account_id"),
                d.at.label("in_at"),
                d.cents.label("in_cents"),
                o.id.label("out_id"),
                o.at.label("out_at"),
                o.cents.label("out_cents"),
                func.sum(o.cents)
                .over(partition_by=d.id, order_by=(o.at, o.id), rows=(None, 0))
                .label("run"),
            )
            .select_from(
                d.table.join(
                    o.table,
                    and_(
                        o.account_id == d.account_id,
                        o.at >= d.at,
                        o.at < d.at + window_us,
                        o.at < read_until,
                    ),
                )
            )
            .where(
                *scan_conditions(
                    ctx,
                    d.at,
                    (ctx.since_us - window_us, ctx.until_us),
                    d.kind == DEPOSIT,
                    d.status == COMPLETED,
                    d.cents > to_minor(s.pass_through_min_amount),
                ),
                _row_filter(ctx, o.kind.in_(OUTBOUND), o.status == COMPLETED),
            )
            .cte("pt_pairs")
        )
        crossings = select(pairs.c.in_id).where(
            pairs.c.run * 100 >= pairs.c.in_cents * percent,
            (pairs.c.run - pairs.c.out_cents) * 100 < pairs.c.in_cents * percent,
            pairs.c.out_at >= ctx.since_us,
            pairs.c.out_at < ctx.until_us,
        )
        query = (
            select(
                pairs.c.in_id,
                pairs.c.account_id,
                pairs.c.in_at,
                pairs.c.in_cents,
                pairs.c.out_id,
                pairs.c.out_at,
                pairs.c.out_cents,
            )
            .where(pairs.c.in_id.in_(crossings))
            .order_by(pairs.c.in_at, pairs.c.in_id, pairs.c.out_at, pairs.c.out_id)
        )
        deposits: dict[int, dict[str, Any]] = {}
        for in_id, account_id, in_at, in_cents, out_id, out_at, out_cents in ctx.session.execute(
            query
        ):
            entry = deposits.setdefault(
                in_id, {"account": account_id, "at": in_at, "cents": int(in_cents), "out": []}
            )
            entry["out"].append((out_id, out_at, int(out_cents)))
        for in_id, entry in deposits.items():
            out = entry["out"]
            out_total = sum(r[2] for r in out)
            share = Decimal(out_total * 100) / entry["cents"]
            yield Finding(
                account_id=entry["account"],
                transaction_id=in_id,
                score=round(float(share / percent), 4),
                evidence={
                    "inbound_id": in_id,
                    "inbound_amount": str(from_minor(entry["cents"])),
                    "inbound_at": _iso(entry["at"]),
                    "outbound_ids": [r[0] for r in out[:EVIDENCE_IDS]],
                    "outbound_count": len(out),
                    "outbound_total": str(from_minor(out_total)),
                    "last_outbound_at": _iso(out[-1][1]),
                    "percent": str(share.quantize(Decimal("0.01"))),
                    "min_percent": percent,
                    "hours": s.pass_through_hours,
                },
            )


# -- dormant_reactivation -------------------------------------------------------------------


class DormantReactivation:
    """An account without customer activity (completed transactions other than fees) for
    at least FRAUD_DORMANT_DAYS, then transactions (in and out) of at least
    FRAUD_DORMANT_AMOUNT from the first new one to FRAUD_DORMANT_ACTIVITY_DAYS after
    it (half-open).

    The gap before each row is LAG over the rows read (when the rows read span less than
    the quiet days, no such gap can be long enough: then only each account's first row
    read is looked at, one index probe per account, if there are fewer accounts than
    rows). For an account's first row read
    (no LAG), NOT EXISTS probes the quiet days before it that precede the rows read, and
    only for the rows that pass is the last earlier activity looked up (MAX over the
    account's earlier rows). A running SUM from each first new row over the rows of its
    activity days finds the row that reaches the amount (the anchor). Every probe goes
    through the (account_id, created_at) index.
    """

    name = "dormant_reactivation"
    enabled_by_default = False  # FRAUD_ENABLE_RULES turns it on
    severity = "medium"
    version = "1"
    settings_fields = ("dormant_days", "dormant_amount", "dormant_activity_days")

    def completes_within(self, settings: Any) -> timedelta:
        """How long after its first new transaction (the alert's) a reactivation completes."""
        return timedelta(days=settings.dormant_activity_days)

    @staticmethod
    def _fewer_accounts(ctx: RuleContext, read_from: int, read_until: int) -> bool:
        """True when there are no more accounts than transactions to read: then a probe per
        account is cheaper than ordering every row read (the rows are counted only up to
        the number of accounts)."""
        c = _tx(ctx)
        session = ctx.session
        accounts = int(
            session.execute(select(func.count()).select_from(ctx.tables.accounts)).scalar_one()
        )
        some = select(c.id).where(c.at >= read_from, c.at < read_until).limit(accounts).subquery()
        return int(session.execute(select(func.count()).select_from(some)).scalar_one()) >= accounts

    def find(self, ctx: RuleContext) -> Iterator[Finding]:
        """One finding per reactivation, keyed by its first new transaction."""
        s = ctx.fraud_settings
        gap_us = s.dormant_days * DAY_US
        activity_us = s.dormant_activity_days * DAY_US
        amount = to_minor(s.dormant_amount)
        read_from = ctx.since_us - activity_us
        read_until = ctx.lookahead_until_us(activity_us)
        r, p, q, m = (_tx(ctx, f"dr_{name}") for name in ("row", "recent", "prior", "member"))

        def active(c: _Tx) -> list[Any]:
            return [c.status == COMPLETED, c.kind.in_(CUSTOMER_KINDS)]

        if read_until - read_from <= gap_us and self._fewer_accounts(ctx, read_from, read_until):
            # No gap between two rows read can reach the quiet days: only each account's
            # first row read may follow a dormancy, found by one probe per account.
            acc, h = ctx.tables.accounts, _tx(ctx, "dr_head")
            first_id = (
                select(h.id)
                .where(
                    h.account_id == acc.c.id,
                    h.at >= read_from,
                    h.at < read_until,
                    _row_filter(ctx, *active(h)),
                )
                .order_by(h.at, h.id)
                .limit(1)
                .scalar_subquery()
            )
            heads = select(first_id.label("id")).select_from(acc).subquery("dr_heads")
            rows = (
                select(
                    r.id.label("id"),
                    r.account_id.label("account_id"),
                    r.at.label("at"),
                    cast(literal(None), BigInteger).label("lag"),
                )
                .select_from(heads.join(r.table, r.id == heads.c.id))
                .cte("dr_rows")
            )
        else:
            rows = (
                select(
                    r.id.label("id"),
                    r.account_id.label("account_id"),
                    r.at.label("at"),
                    func.lag(r.at)
                    .over(partition_by=r.account_id, order_by=(r.at, r.id))
                    .label("lag"),
                )
                .where(*active(r), r.at >= read_from, r.at < read_until)
                .cte("dr_rows")
            )
        recent = (  # activity in the quiet days before the row that precede the rows read
            select(p.id)
            .where(
                p.account_id == rows.c.account_id,
                p.at > rows.c.at - gap_us,  # a gap of exactly the days is quiet
                p.at < read_from,
                _row_filter(ctx, *active(p)),
            )
            .exists()
        )
        quiet = case((rows.c.lag.is_(None), ~recent), else_=rows.c.at - rows.c.lag >= gap_us)
        last_before = (  # the latest one, read backwards through (account_id, created_at)
            select(q.at)
            .where(
                q.account_id == rows.c.account_id,
                q.at <= rows.c.at - gap_us,
                _row_filter(ctx, *active(q)),
            )
            .order_by(q.at.desc())
            .limit(1)
            .scalar_subquery()
        )
        firsts = (
            select(
                rows.c.id,
                rows.c.account_id,
                rows.c.at,
                func.coalesce(rows.c.lag, last_before).label("prev_at"),
            )
            .where(quiet)
            .cte("dr_firsts")
            # each first's look-ups once (PostgreSQL would inline them into every row of
            # its activity days, and the cost it then expects switches on a JIT
            # compilation that takes longer than the query)
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        segments = (
            select(
                firsts.c.id.label("first_id"),
                firsts.c.account_id,
                firsts.c.prev_at,
                m.id.label("id"),
                m.at.label("at"),
                m.cents.label("cents"),
                func.sum(m.cents)
                .over(partition_by=firsts.c.id, order_by=(m.at, m.id), rows=(None, 0))
                .label("run"),
            )
            .select_from(
                firsts.join(
                    m.table,
                    and_(
                        m.account_id == firsts.c.account_id,
                        m.at >= firsts.c.at,
                        m.at < firsts.c.at + activity_us,
                        m.at < read_until,
                        _row_filter(ctx, *active(m)),
                    ),
                )
            )
            .where(firsts.c.prev_at.is_not(None))
            .cte("dr_segments")
        )
        crossings = select(segments.c.first_id).where(
            segments.c.run >= amount,
            segments.c.run - segments.c.cents < amount,
            segments.c.at >= ctx.since_us,
            segments.c.at < ctx.until_us,
        )
        query = (
            select(
                segments.c.first_id,
                segments.c.account_id,
                segments.c.prev_at,
                segments.c.id,
                segments.c.at,
                segments.c.cents,
            )
            .where(segments.c.first_id.in_(crossings))
            .order_by(segments.c.first_id, segments.c.at, segments.c.id)
        )
        found: dict[int, dict[str, Any]] = {}
        for first_id, account_id, prev_at, tid, at, cents in ctx.session.execute(query):
            entry = found.setdefault(
                first_id, {"account": account_id, "prev": int(prev_at), "rows": []}
            )
            entry["rows"].append((tid, at, int(cents)))
        for first_id, entry in found.items():
            rows_ = entry["rows"]
            total = sum(row[2] for row in rows_)
            first_at = rows_[0][1]
            yield Finding(
                account_id=entry["account"],
                transaction_id=first_id,
                score=round(total / amount, 4),
                evidence={
                    "last_activity_before": _iso(entry["prev"]),
                    "gap_days": (first_at - entry["prev"]) // DAY_US,
                    "first_transaction_id": first_id,
                    "first_at": _iso(first_at),
                    "total": str(from_minor(total)),
                    "count": len(rows_),
                    "transaction_ids": [row[0] for row in rows_[:EVIDENCE_IDS]],
                    "threshold": str(s.dormant_amount),
                    "dormant_days": s.dormant_days,
                    "activity_days": s.dormant_activity_days,
                },
            )


TYPOLOGY_RULES = (
    CashThreshold(),
    AmountDeviation(),
    FanInOut(),
    PassThrough(),
    DormantReactivation(),
)
"""The typologies the fraud plugin registers next to the built-in rules: off by default
(`enabled_by_default = False`), on with FRAUD_ENABLE_RULES (or FRAUD_RULES)."""
