"""The built-in rules: large_transaction, velocity, structuring.

Each is one or two set-based SQL statements over the window, portable between
SQLite (>= 3.28) and PostgreSQL (>= 11). Times and money are compared in their
stored form (epoch microseconds, integer cents), so window arithmetic is integer
math. Rolling windows are half-open: a window of W starting at t holds the
rows with t <= created_at < t + W.

A "burst" is a chain of overlapping hot windows of one account (a hot window
starts at a row and breaks the rule's threshold). It gives ONE alert, keyed by
the first row of the chain. Whether a row starts a chain depends only on the
rows less than W before and after it: it must be hot (the W after it) and no
row in the W before it may be hot (the 2W around it). So a burst rule reads the
rows in `[since - W, until + W)` and reports only the bursts that START in
`[since, until)`: adjacent windows never report the same burst, and a window cut
into slices reports exactly what one analysis of the whole window does, bursts
straddling the cuts included. Nothing stamped after the moment the analysis runs
is read: in the scheduled run `until` is now, and a burst still growing keeps its
key from run to run (a row that turns hot later either has an earlier chain start
that was hot already, since windows only gain rows, or is the start itself, found
by the next run, whose overlap covers W).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
    union_all,
)

from core.db import from_micros, from_minor, to_minor
from core.models import TransactionKind
from plugins.fraud.api import Finding, RuleContext

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
EVIDENCE_IDS = 50  # at most this many transaction ids in a burst's evidence
MEMBER_CHUNK = 100  # bursts per UNION ALL statement (SQLite allows 500 arms)


@dataclass(frozen=True)
class _Columns:
    """The transactions a rule reads (`ctx.tables`), with time and money as raw integers."""

    tx: Any
    at: Any
    cents: Any


def _columns(ctx: RuleContext) -> _Columns:
    tx = ctx.tables.transactions
    return _Columns(
        tx, type_coerce(tx.c.created_at, BigInteger), type_coerce(tx.c.amount_minor, BigInteger)
    )


def _iso(micros: int) -> str:
    return from_micros(micros).isoformat()


class LargeTransaction:
    """A transaction whose amount is strictly greater than FRAUD_LARGE_AMOUNT."""

    name = "large_transaction"
    version = "1"
    settings_fields = ("large_amount",)
    severity = "high"

    def find(self, ctx: RuleContext) -> Iterator[Finding]:
        """One finding per transaction above the line in the window."""
        limit = ctx.fraud_settings.large_amount
        c = _columns(ctx)
        query = select(c.tx.c.id, c.tx.c.account_id, c.cents, c.at, c.tx.c.kind).where(
            *scan_conditions(ctx, c.at, (ctx.since_us, ctx.until_us), c.cents > to_minor(limit))
        )
        for tid, account_id, cents, at, kind in ctx.session.execute(query):
            amount = from_minor(cents)
            yield Finding(
                account_id=account_id,
                transaction_id=tid,
                score=round(float(amount / limit), 4),
                evidence={
                    "amount": str(amount),
                    "threshold": str(limit),
                    "kind": str(kind),
                    "at": _iso(at),
                },
            )


@dataclass
class _Burst:
    first_id: int
    account_id: int
    start_us: int
    count: int
    total_cents: int


def _frame(aggregate: str, window_us: int) -> Any:
    """`aggregate OVER` the half-open window [at, at + W) of the same account.

    Written out because SQLAlchemy 2.1 binds frame offsets as INTEGER, which a
    window of an hour in microseconds overflows on PostgreSQL. `window_us` is
    an int computed here, never user text.
    """
    return literal_column(
        f"{aggregate} OVER (PARTITION BY account_id ORDER BY at "
        f"RANGE BETWEEN CURRENT ROW AND CAST({int(window_us) - 1} AS BIGINT) FOLLOWING)"
    )


def _burst_starts(
    rows: CTE, window_us: int, span: tuple[int, int], hot: Any, label: str, with_total: bool
) -> Select[Any]:
    """Rows of `rows` (id, account_id, at, cents) that start a burst in `span` [since, until).

    `hot(count, total)` is the SQL condition for a window to break the rule; the
    window's sum of cents is computed only `with_total` (else it is 0).
    """
    windows = select(
        rows.c.id,
        rows.c.account_id,
        rows.c.at,
        _frame("count(*)", window_us).label("cnt"),
        (_frame("sum(cents)", window_us) if with_total else literal(0)).label("total"),
    ).cte(f"{label}_windows")
    hot_rows = (
        select(
            windows,
            func.lag(windows.c.at)
            .over(partition_by=windows.c.account_id, order_by=(windows.c.at, windows.c.id))
            .label("prev_at"),
        )
        .where(hot(windows.c.cnt, windows.c.total))
        .cte(f"{label}_hot")
    )
    return select(
        hot_rows.c.id, hot_rows.c.account_id, hot_rows.c.at, hot_rows.c.cnt, hot_rows.c.total
    ).where(
        hot_rows.c.at >= span[0],
        hot_rows.c.at < span[1],
        or_(hot_rows.c.prev_at.is_(None), hot_rows.c.at - hot_rows.c.prev_at >= window_us),
    )


def _members(
    ctx: RuleContext,
    bursts: list[_Burst],
    window_us: int,
    read_until: int,
    extra: list[ColumnElement[bool]],
) -> dict[int, list[tuple[int, int, int]]]:
    """Per burst, the rows of its first window: {first_id: [(id, at, cents), ...]}.

    One UNION ALL statement per chunk of bursts; each arm is a range scan of the
    transactions(account_id, created_at) index.
    """
    members: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    c = _columns(ctx)
    for start in range(0, len(bursts), MEMBER_CHUNK):
        arms = [
            select(literal(b.first_id).label("first_id"), c.tx.c.id, c.at, c.cents).where(
                c.tx.c.account_id == b.account_id,
                c.at >= b.start_us,
                c.at < min(b.start_us + window_us, read_until),
                *extra,
            )
            for b in bursts[start : start + MEMBER_CHUNK]
        ]
        for first_id, tid, at, cents in ctx.session.execute(union_all(*arms)):
            members[first_id].append((tid, at, cents))
    for rows in members.values():
        rows.sort(key=lambda r: (r[1], r[0]))
    return members


SCAN_SHARE = 0.5
"""On SQLite, a read range covering at least this share of the transactions' time span is
read by scanning the table (`scan_conditions`)."""


def _time_span(ctx: RuleContext) -> tuple[int | None, int | None]:
    """The first and the last transaction's created_at (two index seeks), read once per
    session: every rule of one analysis asks, and a heuristic needs no fresher figure."""
    cache = ctx.session.info.setdefault("fraud_time_span", {})
    key = id(ctx.tables.transactions)
    if key not in cache:
        c = _columns(ctx)
        first = ctx.session.execute(select(func.min(c.at))).scalar()
        last = ctx.session.execute(select(func.max(c.at))).scalar()
        cache[key] = (first, last)
    return cache[key]


def scans_table(ctx: RuleContext, span: tuple[int, int]) -> bool:
    """True on SQLite when `[span[0], span[1])` covers at least SCAN_SHARE of the time
    between the first and the last transaction (two index seeks tell): see
    `scan_conditions`."""
    if ctx.session.get_bind().dialect.name != "sqlite":
        return False
    first, last = _time_span(ctx)
    if first is None or last is None:
        return False
    return min(span[1], last + 1) - max(span[0], first) >= SCAN_SHARE * (last + 1 - first)


def scan_conditions(
    ctx: RuleContext, at: Any, span: tuple[int, int], *conditions: Any
) -> list[ColumnElement[bool]]:
    """`conditions` and `span[0] <= at < span[1]` (`at`: the created_at, as an integer, of
    the transactions read), written so that SQLite scans the table when the range holds
    most of it.

    SQLite has no statistics (nothing runs ANALYZE): it reads a range through an index
    on `(status, created_at)` or `(created_at)` whatever its size, one look-up in the
    table per row. When the range covers most of the data (`scans_table`), reading the
    table straight through is cheaper, so the conditions are then wrapped in a CASE no
    index serves. (A window over the rows read must then not be ordered by an indexed
    column alone, or SQLite walks that index instead, one look-up per row again.)
    PostgreSQL plans from statistics and gets them as they are.
    """
    plain = [*conditions, at >= span[0], at < span[1]]
    if not scans_table(ctx, span):
        return plain
    return [case((and_(*plain), 1), else_=0) == 1]


def in_account_order(ctx: RuleContext, account_id: Any) -> list[ColumnElement[bool]]:
    """On SQLite, `account_id IN (SELECT id FROM accounts)`: a condition that changes no
    result but lets its planner read the transactions account by account through the
    `(account_id, created_at)` index (a seek per account into the time range), already in
    the order of a window `PARTITION BY account_id ORDER BY created_at`, instead of
    through `(created_at)` and a sort of every row read. PostgreSQL plans from statistics
    and gets nothing."""
    if ctx.session.get_bind().dialect.name != "sqlite":
        return []
    return [account_id.in_(select(ctx.tables.accounts.c.id))]


DENSE_INLINE = 10_000
"""Up to this many accounts `_dense_accounts` are written into the next statement as an
IN list of integers (the planners then probe each account's rows through the index);
more, and it is a sub-select."""


def _dense_accounts(
    ctx: RuleContext, label: str, window_us: int, span: tuple[int, int], min_rows: int
) -> Any:
    """Accounts with at least `min_rows` rows of `span` within less than `window_us` of
    each other: the only ones where a window can hold that many; a condition on
    `account_id` that keeps their rows.

    One ordered pass (LEAD of the `min_rows - 1`-th next row, through the
    `(account_id, created_at)` index, see `in_account_order`) in place of a RANGE frame
    over every row: the exact windows are then counted for these accounts' rows only. A
    row whose window holds `min_rows` rows also has them among itself and the rows after
    it, when counted from the first row of its instant, so no hot window is missed. (Rows
    of one instant are in any order: LEAD gives each position the same value whatever
    the order of equal times, so no `id` is needed and PostgreSQL reads the index only.)
    """
    c = _columns(ctx)
    account = c.tx.c.account_id
    nth = func.lead(c.at, literal_column(str(int(min_rows) - 1))).over(
        partition_by=account, order_by=c.at
    )
    ahead = (
        select(account.label("account_id"), c.at.label("at"), nth.label("nth_at"))
        .where(c.at >= span[0], c.at < span[1], *in_account_order(ctx, account))
        .subquery(f"{label}_ahead")
    )
    dense = select(ahead.c.account_id).where(ahead.c.nth_at < ahead.c.at + window_us)
    return accounts_among(ctx, account, dense.distinct(), label)


def accounts_among(ctx: RuleContext, account: Any, accounts: Select[Any], label: str) -> Any:
    """`account IN accounts`, the accounts fetched first and written in as a list of
    integers when there are at most DENSE_INLINE of them (a sub-select otherwise): the
    planners then probe each account's rows through the `(account_id, created_at)` index,
    where a sub-select they cannot size may make PostgreSQL hash-join every row."""
    ids = [int(i) for i in ctx.session.scalars(accounts.limit(DENSE_INLINE + 1))]
    if len(ids) > DENSE_INLINE:
        return account.in_(accounts.scalar_subquery())
    return account.in_(bindparam(f"{label}_accounts", ids, expanding=True, literal_execute=True))


def _bursts(
    ctx: RuleContext,
    label: str,
    window_us: int,
    hot: Any,
    extra: list[ColumnElement[bool]],
    with_total: bool = False,
    min_rows: int | None = None,
) -> tuple[list[_Burst], dict[int, list[tuple[int, int, int]]]]:
    """Burst starts in `[since, until)` and, per start, the rows of its first window.

    Rows are read from `since - window` to `until + window` (never past now, see
    `RuleContext.lookahead_until_us`): whether a row starts a burst depends on the
    window before it and on its own window after it (see the module's docstring).
    `min_rows`: a hot window holds at least this many rows (with no `extra` filter),
    so only the accounts where some window does (`_dense_accounts`) are analysed.
    """
    read_until = ctx.lookahead_until_us(window_us)
    c = _columns(ctx)
    span_read = (ctx.since_us - window_us, read_until)
    only: list[ColumnElement[bool]] = []
    if min_rows is not None and not extra:
        only = [_dense_accounts(ctx, label, window_us, span_read, min_rows)]
    account: Any = c.tx.c.account_id
    if only:
        where = [c.at >= span_read[0], c.at < span_read[1], *only]
    else:
        where = scan_conditions(ctx, c.at, span_read, *extra)
        if scans_table(ctx, span_read):
            account = account + 0  # the windows' order: a sort, not the account index
    rows = (
        select(c.tx.c.id, account.label("account_id"), c.at.label("at"), c.cents.label("cents"))
        .where(*where)
        .cte(f"{label}_rows")
    )
    span = (ctx.since_us, ctx.until_us)
    starts = _burst_starts(rows, window_us, span, hot, label, with_total).subquery()
    bursts = [
        _Burst(r.id, r.account_id, r.at, r.cnt, r.total)
        for r in ctx.session.execute(select(starts).order_by(starts.c.at, starts.c.id))
    ]
    return bursts, _members(ctx, bursts, window_us, read_until, extra)


def _burst_evidence(burst: _Burst, rows: list[tuple[int, int, int]]) -> dict[str, Any]:
    return {
        "count": burst.count,
        "first_at": _iso(rows[0][1]) if rows else _iso(burst.start_us),
        "last_at": _iso(rows[-1][1]) if rows else _iso(burst.start_us),
        "transaction_ids": [r[0] for r in rows[:EVIDENCE_IDS]],
        "total": str(from_minor(sum(r[2] for r in rows))),
    }


class Velocity:
    """More than FRAUD_VELOCITY_LIMIT transactions by one account in any rolling window.

    Medium; high when the first window holds at least twice the limit.
    """

    name = "velocity"
    version = "1"
    settings_fields = ("velocity_limit", "velocity_window_minutes")
    severity = "medium"

    def find(self, ctx: RuleContext) -> Iterator[Finding]:
        """One finding per burst (chain of overlapping windows over the limit)."""
        limit = ctx.fraud_settings.velocity_limit
        minutes = ctx.fraud_settings.velocity_window_minutes
        bursts, members = _bursts(
            ctx,
            "velocity",
            minutes * MINUTE_US,
            lambda cnt, _total: cnt > limit,
            [],
            min_rows=limit + 1,
        )
        for burst in bursts:
            yield Finding(
                account_id=burst.account_id,
                transaction_id=burst.first_id,
                score=round(burst.count / limit, 4),
                dedup_key=f"account:{burst.account_id}:burst:{burst.first_id}",
                severity="high" if burst.count >= 2 * limit else "medium",
                evidence={
                    **_burst_evidence(burst, members[burst.first_id]),
                    "limit": limit,
                    "window_minutes": minutes,
                },
            )


class Structuring:
    """Deposits split to stay under the reporting line (31 USC 5324).

    At least FRAUD_STRUCTURING_MIN_COUNT deposits by one account within
    FRAUD_STRUCTURING_WINDOW_HOURS, each in [band_low * large_amount, large_amount),
    together above large_amount. Critical when the run has more deposits than the
    minimum, else high.
    """

    name = "structuring"
    version = "1"
    settings_fields = (
        "large_amount",
        "structuring_band_low",
        "structuring_window_hours",
        "structuring_min_count",
    )
    severity = "high"

    def find(self, ctx: RuleContext) -> Iterable[Finding]:
        """One finding per run of structured deposits."""
        s = ctx.fraud_settings
        line = to_minor(s.large_amount)
        low = math.ceil(Decimal(line) * s.structuring_band_low)
        c = _columns(ctx)
        band = [
            c.tx.c.kind == TransactionKind.deposit.value,
            c.cents >= low,
            c.cents < line,
        ]

        def hot(cnt: Any, total: Any) -> Any:
            return and_(cnt >= s.structuring_min_count, total > line)

        hours = s.structuring_window_hours
        bursts, members = _bursts(ctx, "structuring", hours * HOUR_US, hot, band, with_total=True)
        for burst in bursts:
            rows = members[burst.first_id]
            yield Finding(
                account_id=burst.account_id,
                transaction_id=burst.first_id,
                score=round(burst.total_cents / line, 4),
                dedup_key=f"account:{burst.account_id}:burst:{burst.first_id}",
                severity="critical" if burst.count > s.structuring_min_count else "high",
                evidence={
                    **_burst_evidence(burst, rows),
                    "amounts": [str(from_minor(r[2])) for r in rows[:EVIDENCE_IDS]],
                    "threshold": str(s.large_amount),
                    "band": [str(from_minor(low)), str(from_minor(line))],
                    "min_count": s.structuring_min_count,
                    "window_hours": hours,
                },
            )


BUILTIN_RULES = (LargeTransaction(), Velocity(), Structuring())
"""The rules the fraud plugin registers through its own `register_fraud_rules`."""
