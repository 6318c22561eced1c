"""Planting known patterns into seeded data: the truth `banktasks fraud evaluate` measures
the rules against (`banktasks fraud plant`).

`plant_typologies` appends, to a database that `banktasks db seed` filled with
background traffic, `per_typology` instances of every rule the fraud plugin ships
(the five typologies and the three built-in rules), each on users and accounts it
creates (ids after the existing ones), and as many near-misses per rule: patterns
just short of one of the rule's limits (at the line, one cent under it, one
counterparty short, a day too early...), which must NOT fire. Every instance sits
comfortably inside the rule's settings as the app has them (the defaults unless
FRAUD_* says otherwise) and is built to fire that rule only: structuring deposits
fall on two business days (so no day's cash is over the CTR line), a CTR day is
made of deposits no larger than FRAUD_PASS_THROUGH_MIN_AMOUNT (so no pass-through),
fan-in deposits stay small, and so on.

Same database, same `seed` (and `now`, `days`): same rows, same ids, same truth.
Amounts are drawn as integer cents, times as whole seconds (epoch microseconds in the
database); every table gets one executemany INSERT. The truth names, per instance,
the rule, the user, the accounts, the transactions and the window of the pattern; it
is written as JSON (`var/planted-typologies.json` by default): data to regenerate,
never to commit.

The seed's own patterns. `db seed` plants some fraud of its own into its background
(transfers above $10,000, payments just under it, structuring accounts, velocity
bursts: its `SeedSummary`, printed by `banktasks db seed --json`). Given that summary
(`seed_summary`, `--seed-summary`), the truth names them too, each entry marked
`"source": "db seed"` (the patterns planted here: `"source": "planted"`): every large
transaction an instance of `large_transaction`, every structuring account one of
`structuring` (its deposits in the structuring band), every velocity account one of
`velocity` (its transactions in its densest hour), and every near-threshold payment a
near-miss of `large_transaction`. Their accounts, customers and transaction ids are
read from the database in one set-based query per kind; every entry has transaction
ids. Without the summary, the truth has no `db_seed` section and the evaluation says
that its background still holds those patterns.

banktasks never writes a bank's own tables: with DATA_MAPPING set, planting is refused.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import BigInteger, func, insert, select, type_coerce
from sqlalchemy.orm import Session

from core import BanktasksError, NoAppError, current
from core.db import Database, from_micros, from_minor, to_micros, to_minor, utcnow
from core.files import write_bytes_atomic
from core.models import Account, Transaction, User
from plugins.fraud.cli_errors import BadInput
from plugins.fraud.settings import FraudSettings

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
TRUTH_FILE = "planted-typologies.json"
"""The truth's file name in BANKTASKS_VAR_DIR (`--truth` chooses another path)."""
TRUTH_VERSION = 1
PLANTED = "planted"
DB_SEED = "db seed"
"""An entry's `source`: planted by `plant_typologies`, or by `db seed` (its summary)."""
SEED_LISTS = ("large_transactions", "near_threshold", "structuring_accounts", "velocity_accounts")
"""The SeedSummary lists the truth takes (transaction ids, then account ids)."""
PLANTED_RULES = (
    "amount_deviation",
    "cash_threshold",
    "dormant_reactivation",
    "fan_in_out",
    "large_transaction",
    "pass_through",
    "structuring",
    "velocity",
)
"""The rules planted: the five typologies and the three built-in rules."""

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
FIRMS = [
    "Northwind",
    "Contoso",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Acme",
    "Stark",
    "Wayne",
    "Tyrell",
    "Soylent",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Oceanic",
]
SUFFIXES = ["LLC", "Ltd", "Trading", "Holdings", "Imports", "Services"]
MERCHANTS = ["Grocer & Sons", "City Power", "Coffee Bar", "Book Nook", "Fuel Stop", "Pharmacy 24"]
PAYERS = [f"{first} {last}" for first in FIRST for last in LAST] + [
    f"{firm} {suffix}" for firm in FIRMS for suffix in SUFFIXES
]


class PlantingError(BanktasksError):
    """Planting cannot run here (a mapped database, no seeded data, a window too short)."""


@dataclass
class PlantedTruth:
    """What was planted: the window, the background, the instances and the near-misses.

    `instances` and `near_misses` are dicts: `id`, `rule`, `variant`, `source`
    (`planted` or `db seed`), `user_id`, `account_ids`, `transaction_ids` and `window`
    (`from`, `until`: ISO 8601, the first row's moment and just after the last row's).
    `db_seed` is None unless the seed's summary was given: then its window and, per rule,
    how many of the instances and near-misses are the seed's.
    """

    seed: int
    per_typology: int
    since: str
    until: str
    background: dict[str, int]
    instances: list[dict[str, Any]] = field(default_factory=list)
    near_misses: list[dict[str, Any]] = field(default_factory=list)
    planted: dict[str, int] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    db_seed: dict[str, Any] | None = None
    version: int = TRUTH_VERSION

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, as written to the truth file."""
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """Counts only: per rule the instances and near-misses planted here, the rows
        written, and (`db_seed`) those the seed's summary added."""
        per_rule = _counts(self.instances, self.near_misses, PLANTED)
        return {
            "since": self.since,
            "until": self.until,
            "seed": self.seed,
            "per_typology": self.per_typology,
            "background": self.background,
            "planted": self.planted,
            "rules": per_rule,
            "db_seed": self.db_seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlantedTruth:
        """The truth read back from its JSON."""
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


def _counts(
    instances: list[dict[str, Any]], near_misses: list[dict[str, Any]], source: str
) -> dict[str, dict[str, int]]:
    """Per rule, the instances and near-misses of one `source`."""
    counts: dict[str, dict[str, int]] = {}
    for key, entries in (("instances", instances), ("near_misses", near_misses)):
        for entry in entries:
            if entry.get("source", PLANTED) == source:
                per_rule = counts.setdefault(entry["rule"], {"instances": 0, "near_misses": 0})
                per_rule[key] += 1
    return dict(sorted(counts.items()))


def default_truth_path() -> Path:
    """`<BANKTASKS_VAR_DIR>/planted-typologies.json`."""
    return current().settings.var_dir / TRUTH_FILE


def write_truth(truth: PlantedTruth, path: Path | str | None = None) -> Path:
    """Write the truth as JSON (atomically, owner-only); return its path."""
    target = Path(path) if path is not None else default_truth_path()
    data = json.dumps(truth.as_dict(), indent=1).encode()
    return write_bytes_atomic(target.parent, target.name, data).path


def load_truth(path: Path | str | None = None) -> PlantedTruth:
    """Read a truth file (FileNotFoundError when there is none)."""
    target = Path(path) if path is not None else default_truth_path()
    return PlantedTruth.from_dict(json.loads(target.read_text()))


# -- the patterns, before they have ids ------------------------------------------------------


@dataclass
class _Row:
    account: int  # index into _Planter.accounts
    cents: int
    kind: str
    at: int  # epoch µs
    channel: str | None
    counterparty: str | None = None
    status: str = "completed"


@dataclass
class _Pattern:
    rule: str
    variant: str
    near_miss: bool
    user: int  # index into _Planter.users
    accounts: list[int]
    rows: list[_Row] = field(default_factory=list)


class _Planter:
    """Draws every pattern from one `random.Random(seed)`, in a fixed order."""

    def __init__(self, rng: random.Random, s: FraudSettings, since_us: int, until_us: int) -> None:
        self.rng = rng
        self.s = s
        self.since_us = since_us
        self.until_us = until_us
        self.users: list[str] = []  # full names
        self.accounts: list[int] = []  # index of the owner in users
        self.patterns: list[_Pattern] = []
        self.zone: tzinfo = UTC if s.business_timezone == "UTC" else ZoneInfo(s.business_timezone)
        self.large = to_minor(s.large_amount)
        self.ctr = to_minor(s.ctr_amount)
        self.pt_min = to_minor(s.pass_through_min_amount)
        self.dev_min = to_minor(s.deviation_min_amount)
        self.dormant = to_minor(s.dormant_amount)
        margin = (
            max(
                s.fan_window_hours * HOUR_US,
                s.pass_through_hours * HOUR_US,
                s.structuring_window_hours * HOUR_US,
                s.dormant_activity_days * DAY_US,
                s.velocity_window_minutes * MINUTE_US,
            )
            + 2 * DAY_US
        )
        self.lo, self.hi = since_us + margin, until_us - margin
        if self.hi - self.lo < DAY_US:
            days = (until_us - since_us) / DAY_US
            raise PlantingError(
                f"the seed window is {days:.1f} days: too short to plant patterns whose "
                f"windows need {margin / DAY_US:.0f} days of room at each end; seed with more "
                "--days (banktasks db seed --days 30)"
            )

    # -- drawing ---------------------------------------------------------------------------

    def pattern(self, rule: str, variant: str, near: bool, accounts: int = 1) -> _Pattern:
        """A new pattern on a new user with `accounts` new accounts."""
        self.users.append(f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}")
        user = len(self.users) - 1
        owned = []
        for _ in range(accounts):
            self.accounts.append(user)
            owned.append(len(self.accounts) - 1)
        found = _Pattern(rule, variant, near, user, owned)
        self.patterns.append(found)
        return found

    def moment(self) -> int:
        """A whole second inside the planting span."""
        return self.rng.randrange(self.lo // SECOND_US, self.hi // SECOND_US) * SECOND_US

    def seconds(self, low_us: int, high_us: int) -> int:
        """A whole number of seconds in [low, high)."""
        return (
            self.rng.randrange(
                low_us // SECOND_US, max(high_us // SECOND_US, 1 + low_us // SECOND_US)
            )
            * SECOND_US
        )

    def local(self, day: date, hour: float) -> int:
        """The instant of `hour` (fractional) on business day `day` (FRAUD_BUSINESS_TIMEZONE)."""
        naive = datetime.combine(day, time()) + timedelta(seconds=round(hour * 3600))
        return to_micros(naive.replace(tzinfo=self.zone).astimezone(UTC))

    def business_day(self) -> date:
        return from_micros(self.moment()).astimezone(self.zone).date()

    def names(self, count: int, pool: list[str] = PAYERS) -> list[str]:
        return self.rng.sample(pool, count)

    def split(self, total: int, parts: int) -> list[int]:
        """`total` cents in `parts` positive amounts, each within ±15 % of an even share."""
        weights = [self.rng.uniform(0.85, 1.15) for _ in range(parts)]
        scale = sum(weights)
        amounts = [int(total * w / scale) for w in weights]
        amounts[-1] += total - sum(amounts)
        return amounts

    def small(self) -> int:
        """An everyday amount: $1 to $600, most around $40."""
        return max(100, min(60_000, int(self.rng.lognormvariate(8.3, 0.8))))

    def history(self, pattern: _Pattern, count: int, start: int, end: int) -> None:
        """`count` everyday rows (card payments, payroll, ATM) between `start` and `end`."""
        account = pattern.accounts[0]
        payroll = f"{self.rng.choice(FIRMS)} Payroll"
        for at in sorted(self.seconds(start, end) for _ in range(count)):
            roll = self.rng.random()
            if roll < 0.2:
                row = _Row(account, self.small(), "deposit", at, "ach", payroll)
            elif roll < 0.3:
                row = _Row(account, self.small(), "withdrawal", at, "card", "ATM")
            else:
                row = _Row(account, self.small(), "payment", at, "card", self.rng.choice(MERCHANTS))
            pattern.rows.append(row)

    # -- large_transaction -----------------------------------------------------------------

    def large_transaction(self, near: str | None) -> None:
        p = self.pattern("large_transaction", near or "above", near is not None)
        at = self.moment()
        payee = self.names(1)[0]
        if near is None:
            cents = self.rng.randrange(int(self.large * 1.05), int(self.large * 3))
            kind, channel = self.rng.choice(
                [("transfer", "wire"), ("payment", "ach"), ("deposit", "wire")]
            )
        else:
            cents = self.large if near == "at_limit" else self.large - self.rng.randrange(1, 5000)
            kind, channel = "payment", "ach"
        p.rows.append(_Row(p.accounts[0], cents, kind, at, channel, payee))

    # -- velocity --------------------------------------------------------------------------

    def velocity(self, near: str | None) -> None:
        p = self.pattern("velocity", near or "burst", near is not None)
        limit, window = self.s.velocity_limit, self.s.velocity_window_minutes * MINUTE_US
        start = self.moment()
        if near == "spread":  # limit + 1 rows, never more than `limit` in one window
            step = window // limit + MINUTE_US
            times = [start + i * step for i in range(limit + 1)]
        else:
            count = limit if near == "at_limit" else limit + self.rng.randrange(1, 6)
            span = int(window * self.rng.uniform(0.4, 0.9))
            times = sorted(start + self.seconds(0, span) for _ in range(count))
        for at in times:
            cents = self.rng.randrange(300, 15_000)
            merchant = self.rng.choice([*MERCHANTS, "Online Store", "Gift Cards Inc"])
            p.rows.append(_Row(p.accounts[0], cents, "payment", at, "card", merchant))

    # -- structuring -----------------------------------------------------------------------

    def _band(self) -> tuple[int, int]:
        low = math.ceil(Decimal(self.large) * self.s.structuring_band_low)
        return max(low, int(self.large * 0.95)), self.large

    def structuring(self, near: str | None) -> None:
        p = self.pattern("structuring", near or "split_deposits", near is not None)
        low, line = self._band()
        account = p.accounts[0]
        window = self.s.structuring_window_hours * HOUR_US
        if near is None:  # evening of day D, then D+1: no business day over the CTR line
            day = self.business_day()
            count = self.s.structuring_min_count + (1 if self.rng.random() < 0.4 else 0)
            times = [self.local(day, self.rng.uniform(17, 21.5))]
            times += [
                self.local(day + timedelta(days=1), 8 + i * 0.75 + self.rng.uniform(0, 0.5))
                for i in range(count - 1)
            ]
            assert times[-1] - times[0] < window
            for i, at in enumerate(times):
                channel = "cash" if i < 2 else "ach"  # one cash deposit a business day
                p.rows.append(_Row(account, self.rng.randrange(low, line), "deposit", at, channel))
            return
        at = self.moment()
        band_low = math.ceil(Decimal(self.large) * self.s.structuring_band_low)
        amounts = [self.rng.randrange(low, line)]
        times = [at]
        if near == "window":  # the second deposit just outside the window
            amounts.append(self.rng.randrange(low, line))
            times.append(at + window + self.seconds(MINUTE_US, 30 * MINUTE_US))
        elif near == "below_band":  # one in the band, one a cent under it
            amounts.append(band_low - 1)
            times.append(at + self.seconds(HOUR_US, 5 * HOUR_US))
        for cents, moment in zip(amounts, times, strict=True):
            p.rows.append(_Row(account, cents, "deposit", moment, "ach", self.names(1)[0]))

    # -- cash_threshold --------------------------------------------------------------------

    def _cash_day(self, p: _Pattern, total: int, day: date, hours: tuple[float, float]) -> None:
        """Cash rows on `day` adding up to `total`, each at most 45 % of the CTR line and
        never above FRAUD_PASS_THROUGH_MIN_AMOUNT (so no deposit is a pass-through's)."""
        cap = min(self.pt_min, int(self.ctr * 0.45))
        parts = max(2, math.ceil(total * 1.4 / cap))
        amounts = self.split(total, parts)
        times = sorted(self.local(day, self.rng.uniform(*hours)) for _ in amounts)
        for i, (cents, at) in enumerate(zip(amounts, times, strict=True)):
            kind = "withdrawal" if i == len(amounts) - 1 and self.rng.random() < 0.4 else "deposit"
            account = p.accounts[i % len(p.accounts)]
            p.rows.append(_Row(account, cents, kind, at, "cash"))

    def cash_threshold(self, near: str | None) -> None:
        two = self.rng.random() < 0.5
        p = self.pattern("cash_threshold", near or "over_line", near is not None, 2 if two else 1)
        day = self.business_day()
        if near is None:
            total = self.rng.randrange(int(self.ctr * 1.03), int(self.ctr * 1.4))
            self._cash_day(p, total, day, (8, 18))
        elif near == "at_line":
            self._cash_day(p, self.ctr, day, (8, 18))
        elif near == "just_below":
            self._cash_day(p, self.ctr - self.rng.randrange(1, 10_000), day, (8, 18))
        elif near == "two_days":  # over the line, but over two business days
            self._cash_day(p, int(self.ctr * 0.55), day, (14, 20))
            self._cash_day(p, int(self.ctr * 0.55), day + timedelta(days=1), (8, 12))
        else:  # not_cash: over the line with one row by ACH
            self._cash_day(p, int(self.ctr * 0.8), day, (8, 12))
            at = self.local(day, self.rng.uniform(13, 17))
            p.rows.append(_Row(p.accounts[0], int(self.ctr * 0.4), "deposit", at, "ach", "Payroll"))

    # -- amount_deviation ------------------------------------------------------------------

    def amount_deviation(self, near: str | None) -> None:
        p = self.pattern("amount_deviation", near or "spike", near is not None)
        s = self.s
        at = self.moment()
        start = at - (s.deviation_history_days - 2) * DAY_US
        size = s.deviation_min_history + self.rng.randrange(3, 25)
        if near == "short_history":
            size = s.deviation_min_history - 1
        self.history(p, size, start, at - HOUR_US)
        amounts = sorted(r.cents for r in p.rows)
        p95 = amounts[math.ceil(len(amounts) * 95 / 100) - 1]
        top = int(self.large * 0.97)
        if near == "at_factor":  # the amount is exactly factor x p95: not above it
            anchor = int(self.dev_min / s.deviation_factor * Decimal("1.1")) // 100 + 1
            p95_cents = 100 * self.rng.randrange(anchor, int(top / s.deviation_factor) // 100)
            rank = math.ceil(size * 95 / 100)
            for row in sorted(p.rows, key=lambda r: r.cents)[rank - 1 :]:
                row.cents = p95_cents  # from the percentile's rank up: all equal to it
            cents = int(p95_cents * s.deviation_factor)
        elif near == "at_min_amount":
            cents = self.dev_min
        else:
            floor = max(self.dev_min, int(p95 * s.deviation_factor))
            cents = self.rng.randrange(int(floor * 1.1) + 1, top)
        kind, channel = self.rng.choice([("transfer", "wire"), ("payment", "ach")])
        p.rows.append(_Row(p.accounts[0], cents, kind, at, channel, self.names(1)[0]))

    # -- fan_in_out ------------------------------------------------------------------------

    def fan_in_out(self, near: str | None) -> None:
        p = self.pattern("fan_in_out", near or "fan", near is not None)
        n = self.s.fan_min_counterparties
        window = self.s.fan_window_hours * HOUR_US
        direction = "in" if len(self.patterns) % 2 else "out"
        if near == "card_channel":
            direction = "out"
        parties = self.names(n + (self.rng.randrange(0, 4) if near is None else 0))
        if near == "one_short":
            parties = parties[: n - 1]
        rows = list(parties)
        if near is None or near == "one_short":
            rows += [self.rng.choice(parties) for _ in range(self.rng.randrange(0, 4))]
            self.rng.shuffle(rows)
        elif near == "case_variants":  # two of them the same party, spelt differently
            rows[-1] = f"  {rows[0].upper()} "
        start = self.moment()
        if near == "spread":  # the last one just after the first one's window
            step = (window + 10 * MINUTE_US) // (len(rows) - 1)
            times = [start + i * step for i in range(len(rows))]
        else:
            span = int(window * self.rng.uniform(0.3, 0.9))
            step = span // len(rows)
            times = [start + i * step + self.seconds(0, step // 2) for i in range(len(rows))]
        for i, (party, at) in enumerate(zip(rows, times, strict=True)):
            cents = self.rng.randrange(15_000, 300_000)
            if direction == "in":
                channel = self.rng.choice(["ach", "wire", "internal"])
                p.rows.append(_Row(p.accounts[0], cents, "deposit", at, channel, party))
            else:
                kind = self.rng.choice(["transfer", "payment"])
                channel = (
                    "card"
                    if near == "card_channel" and i == 0
                    else self.rng.choice(["wire", "ach", "internal"])
                )
                p.rows.append(_Row(p.accounts[0], cents, kind, at, channel, party))

    # -- pass_through ----------------------------------------------------------------------

    def pass_through(self, near: str | None) -> None:
        p = self.pattern("pass_through", near or "in_and_out", near is not None)
        s = self.s
        hours = s.pass_through_hours * HOUR_US
        account = p.accounts[0]
        at = self.moment()
        cents = self.rng.randrange(int(self.pt_min * 1.2), int(self.large * 0.85))
        if near == "at_min_amount":
            cents = self.pt_min
        payer = self.names(1)[0]
        p.rows.append(_Row(account, cents, "deposit", at, self.rng.choice(["wire", "ach"]), payer))
        need = math.ceil(cents * s.pass_through_percent / 100)
        if near == "just_below":
            total = (cents * s.pass_through_percent - 1) // 100
        else:
            total = min(int(need * self.rng.uniform(1.04, 1.2)), int(cents * 0.99))
        parts = self.rng.randrange(1, 4)
        amounts = self.split(total, parts) if parts > 1 else [total]
        times = sorted(at + self.seconds(30 * MINUTE_US, int(hours * 0.8)) for _ in amounts)
        if near == "late":  # the outflow that reaches the percentage comes just too late
            first = int(need * 0.5)
            amounts, times = (
                [first, total - first],
                [times[0], at + hours + self.seconds(MINUTE_US, HOUR_US)],
            )
        for out, moment in zip(amounts, times, strict=True):
            kind, channel = self.rng.choice(
                [("transfer", "wire"), ("transfer", "internal"), ("payment", "ach")]
            )
            p.rows.append(_Row(account, out, kind, moment, channel, self.names(1)[0]))

    # -- dormant_reactivation --------------------------------------------------------------

    def dormant_reactivation(self, near: str | None) -> None:
        p = self.pattern("dormant_reactivation", near or "reactivated", near is not None)
        s = self.s
        first = self.moment()
        gap = (s.dormant_days + self.rng.randrange(5, 150)) * DAY_US + self.seconds(0, DAY_US)
        if near == "short_gap":
            gap = s.dormant_days * DAY_US - self.seconds(HOUR_US, 2 * DAY_US)
        last = first - gap
        self.history(p, self.rng.randrange(3, 9), last - self.rng.randrange(10, 60) * DAY_US, last)
        p.rows[-1].at = last
        activity = s.dormant_activity_days * DAY_US
        total = self.rng.randrange(int(self.dormant * 1.1), int(self.dormant * 1.8))
        if near == "just_below":
            total = self.dormant - self.rng.randrange(1, 5000)
        cap = min(self.pt_min, self.dev_min or self.pt_min, int(self.ctr * 0.45))
        amounts = self.split(total, max(2, math.ceil(total * 1.4 / cap)))
        later = (first + self.seconds(HOUR_US, int(activity * 0.8)) for _ in amounts[1:])
        times = [first, *sorted(later)]
        if near == "late_amount":  # only 60 % within the days; the rest just after them
            amounts = [*self.split(int(self.dormant * 0.6), 2), int(self.dormant * 0.6)]
            times = [first, first + self.seconds(HOUR_US, activity // 2)]
            times.append(first + activity + self.seconds(HOUR_US, 20 * HOUR_US))
        for i, (cents, at) in enumerate(zip(amounts, times, strict=True)):
            if i == 0:
                kind, channel = "deposit", self.rng.choice(["ach", "wire"])
            else:
                kind, channel = self.rng.choice(
                    [("deposit", "ach"), ("transfer", "wire"), ("withdrawal", "card")]
                )
            p.rows.append(_Row(p.accounts[0], cents, kind, at, channel, self.names(1)[0]))


NEAR_MISSES: dict[str, tuple[str, ...]] = {
    "large_transaction": ("at_limit", "just_below"),
    "velocity": ("at_limit", "spread"),
    "structuring": ("alone", "window", "below_band"),
    "cash_threshold": ("at_line", "just_below", "two_days", "not_cash"),
    "amount_deviation": ("short_history", "at_factor", "at_min_amount"),
    "fan_in_out": ("one_short", "spread", "case_variants", "card_channel"),
    "pass_through": ("just_below", "late", "at_min_amount"),
    "dormant_reactivation": ("short_gap", "just_below", "late_amount"),
}
"""Each rule's near-misses: which limit each one stays just short of."""


def _draw(planter: _Planter, per_typology: int) -> None:
    builders: dict[str, Callable[[str | None], None]] = {
        rule: getattr(planter, rule) for rule in PLANTED_RULES
    }
    for rule in PLANTED_RULES:
        for _ in range(per_typology):
            builders[rule](None)
        variants = NEAR_MISSES[rule]
        if rule == "fan_in_out" and "card" not in (planter.s.fan_ignore_channels or ()):
            variants = tuple(v for v in variants if v != "card_channel")
        for i in range(max(per_typology, len(variants))):
            builders[rule](variants[i % len(variants)])


# -- writing ---------------------------------------------------------------------------------


def _refuse_mapped() -> None:
    try:
        runtime = current()
    except NoAppError:
        return
    if runtime.data_db is not None:
        raise PlantingError(
            "DATA_MAPPING is set: banktasks reads the bank's own tables and never writes "
            "them; plant into a seeded, unmapped database instead (unset DATA_MAPPING)"
        )


def _fraud_settings(settings: FraudSettings | None) -> FraudSettings:
    if settings is not None:
        return settings
    try:
        own: FraudSettings = current().settings_for("fraud")
        return own
    except (NoAppError, LookupError):
        return FraudSettings()


def _background(session: Session) -> dict[str, int]:
    at = type_coerce(Transaction.__table__.c.created_at, BigInteger)
    users = session.execute(select(func.count(), func.max(User.id))).one()
    accounts = session.execute(select(func.count(), func.max(Account.id))).one()
    txs = session.execute(
        select(func.count(), func.max(Transaction.id), func.min(at), func.max(at))
    ).one()
    return {
        "users": users[0],
        "max_user_id": users[1] or 0,
        "accounts": accounts[0],
        "max_account_id": accounts[1] or 0,
        "transactions": txs[0],
        "max_transaction_id": txs[1] or 0,
        "first_at_us": txs[2] or 0,
        "last_at_us": txs[3] or 0,
    }


def _window(background: dict[str, int], now: datetime | None, days: int) -> tuple[int, int]:
    """The seed's window: `[now - days, now)`; without `now`, from the first background
    transaction's second to just after the last one's (what `db seed` wrote)."""
    if now is not None:
        until = to_micros(now)
        return until - days * DAY_US, until
    if not background["transactions"]:
        until = to_micros(utcnow().replace(microsecond=0))
        return until - days * DAY_US, until
    first = background["first_at_us"] // SECOND_US * SECOND_US
    last = background["last_at_us"] // SECOND_US * SECOND_US + SECOND_US
    return first, last


def _insert_ids(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """One executemany INSERT; the new ids in the order of `rows`."""
    if not rows:
        return []
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [row[0] for row in session.execute(statement, rows)]


def _store(session: Session, planter: _Planter) -> tuple[list[int], list[int], list[int]]:
    """Insert users, accounts and transactions; their ids (transactions in pattern order)."""
    first_at: dict[int, int] = {}
    for pattern in planter.patterns:
        earliest = min(row.at for row in pattern.rows)
        first_at[pattern.user] = min(first_at.get(pattern.user, earliest), earliest)
    opened = {
        user: from_micros(at - planter.rng.randrange(30, 400) * DAY_US)
        for user, at in sorted(first_at.items())
    }
    base = session.execute(select(func.coalesce(func.max(User.id), 0))).scalar_one()
    user_ids = _insert_ids(
        session,
        User.__table__,
        [
            {
                "email": f"planted-{base + i + 1}@example.com",
                "full_name": name,
                "is_active": True,
                "created_at": opened[i],
            }
            for i, name in enumerate(planter.users)
        ],
    )
    base_account = session.execute(select(func.coalesce(func.max(Account.id), 0))).scalar_one()
    account_ids = _insert_ids(
        session,
        Account.__table__,
        [
            {
                "user_id": user_ids[owner],
                "number": f"41{base_account + i + 1:010d}",
                "currency": "USD",
                "balance_minor": from_minor(planter.rng.randrange(0, 2_000_000)),
                "status": "active",
                "created_at": opened[owner],
            }
            for i, owner in enumerate(planter.accounts)
        ],
    )
    ordered = [(p, r) for p, pattern in enumerate(planter.patterns) for r in pattern.rows]
    ordered.sort(key=lambda item: item[1].at)  # ids rise with time, as a bank's do
    tx_ids = _insert_ids(
        session,
        Transaction.__table__,
        [
            {
                "account_id": account_ids[row.account],
                "amount_minor": from_minor(row.cents),
                "currency": "USD",
                "kind": row.kind,
                "status": row.status,
                "channel": row.channel,
                "counterparty": row.counterparty,
                "description": None,
                "created_at": from_micros(row.at),
                "updated_at": from_micros(row.at),
            }
            for _, row in ordered
        ],
    )
    by_row = {id(row): tid for (_, row), tid in zip(ordered, tx_ids, strict=True)}
    return user_ids, account_ids, [by_row[id(r)] for p in planter.patterns for r in p.rows]


def _seed_lists(summary: dict[str, Any]) -> dict[str, list[int]]:
    """The summary's id lists, checked: PlantingError when one is missing or not ids."""
    lists: dict[str, list[int]] = {}
    for key in SEED_LISTS:
        value = summary.get(key)
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in value
        ):
            shown = "missing" if value is None else f"{type(value).__name__} {str(value)[:40]}"
            raise PlantingError(
                f"the seed summary's {key!r} is {shown}, not a list of ids: give the "
                "summary `banktasks db seed --json` printed (the full one, with ids)"
            )
        lists[key] = sorted(set(value))
    return lists


def _seed_rows(
    session: Session, s: FraudSettings, lists: dict[str, list[int]], since_us: int, until_us: int
) -> dict[str, dict[int, list[tuple[int, int, int]]]]:
    """The seed's patterns' rows, one query per kind: per kind, per transaction id (the
    large and near-threshold ones) or per account (structuring, velocity), the rows
    `(transaction id, account id, epoch µs)`."""
    tx = Transaction.__table__
    at = type_coerce(tx.c.created_at, BigInteger)
    cents = type_coerce(tx.c.amount_minor, BigInteger)
    in_window = (at >= since_us, at < until_us)
    columns = (tx.c.id, tx.c.account_id, at.label("at"))
    found: dict[str, dict[int, list[tuple[int, int, int]]]] = {}
    by_id = select(*columns).where(
        tx.c.id.in_(lists["large_transactions"] + lists["near_threshold"])
    )
    rows = {row[0]: (row[0], row[1], row[2]) for row in session.execute(by_id)}
    for key in ("large_transactions", "near_threshold"):
        found[key] = {tid: [rows[tid]] for tid in lists[key] if tid in rows}
    line = to_minor(s.large_amount)
    low = math.ceil(Decimal(line) * s.structuring_band_low)
    band = select(*columns).where(
        tx.c.account_id.in_(lists["structuring_accounts"]),
        tx.c.kind == "deposit",
        cents >= low,
        cents < line,
        *in_window,
    )
    # Velocity: per account, the hour holding most of its rows (the earliest such hour).
    mine = (
        select(*columns)
        .where(tx.c.account_id.in_(lists["velocity_accounts"]), *in_window)
        .subquery("velocity_rows")
    )
    later = mine.alias("velocity_later")
    per_start = (
        select(
            mine.c.account_id,
            mine.c.at.label("start"),
            func.row_number()
            .over(
                partition_by=mine.c.account_id,
                order_by=(func.count(later.c.id).desc(), mine.c.at),
            )
            .label("rank"),
        )
        .join(
            later,
            (later.c.account_id == mine.c.account_id)
            & (later.c.at >= mine.c.at)
            & (later.c.at < mine.c.at + HOUR_US),
        )
        .group_by(mine.c.account_id, mine.c.id, mine.c.at)
        .subquery("velocity_starts")
    )
    densest = select(mine.c.id, mine.c.account_id, mine.c.at).join(
        per_start,
        (per_start.c.account_id == mine.c.account_id)
        & (per_start.c.rank == 1)
        & (mine.c.at >= per_start.c.start)
        & (mine.c.at < per_start.c.start + HOUR_US),
    )
    for key, query in (("structuring_accounts", band), ("velocity_accounts", densest)):
        grouped: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for tid, account, moment in session.execute(query):
            grouped[account].append((tid, account, moment))
        found[key] = {a: sorted(grouped.get(a, []), key=lambda r: (r[2], r[0])) for a in lists[key]}
    return found


def _seed_entries(
    session: Session,
    s: FraudSettings,
    summary: dict[str, Any],
    since_us: int,
    until_us: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The truth's entries for the patterns `db seed` planted (its `summary`): instances,
    near-misses and the `db_seed` section. PlantingError when the summary is not one of
    this database's (ids it does not hold)."""
    lists = _seed_lists(summary)
    found = _seed_rows(session, s, lists, since_us, until_us)
    accounts = sorted(set(lists["structuring_accounts"]) | set(lists["velocity_accounts"]))
    accounts += sorted(
        {
            r[1]
            for key in ("large_transactions", "near_threshold")
            for rows in found[key].values()
            for r in rows
        }
    )
    query = select(Account.id, Account.user_id).where(Account.id.in_(accounts))
    owners = {account: user for account, user in session.execute(query)}
    missing = [
        tid
        for key in ("large_transactions", "near_threshold")
        for tid in lists[key]
        if tid not in found[key]
    ]
    missing_accounts = [a for a in accounts if a not in owners]
    if missing or missing_accounts:
        what = f"transactions {missing[:5]}" if missing else f"accounts {missing_accounts[:5]}"
        raise PlantingError(
            f"the seed summary names {what}, which this database does not hold: give the "
            "summary of the `banktasks db seed` that filled this database (its --json output)"
        )
    kinds = (
        ("large_transactions", "large_transaction", "above", False),
        ("structuring_accounts", "structuring", "split_deposits", False),
        ("velocity_accounts", "velocity", "burst", False),
        ("near_threshold", "large_transaction", "near_threshold", True),
    )
    instances: list[dict[str, Any]] = []
    near_misses: list[dict[str, Any]] = []
    for key, rule, variant, near in kinds:
        for number, (ident, rows) in enumerate(found[key].items(), start=1):
            account_ids = [ident] if key.endswith("_accounts") else [rows[0][1]]
            moments = [r[2] for r in rows]
            entry = {
                "id": f"{rule}-seed-{variant}-{number}",
                "rule": rule,
                "variant": variant,
                "source": DB_SEED,
                "user_id": owners[account_ids[0]],
                "account_ids": account_ids,
                "transaction_ids": [r[0] for r in rows],
                "window": {
                    "from": from_micros(min(moments)).isoformat() if moments else None,
                    "until": from_micros(max(moments) + 1).isoformat() if moments else None,
                },
            }
            (near_misses if near else instances).append(entry)
    section = {
        "since": summary.get("since"),
        "until": summary.get("until"),
        "rules": _counts(instances, near_misses, DB_SEED),
    }
    return instances, near_misses, section


def plant_typologies(
    db: Database | Session,
    per_typology: int,
    seed: int = 42,
    now: datetime | None = None,
    days: int = 30,
    settings: FraudSettings | None = None,
    seed_summary: dict[str, Any] | None = None,
) -> PlantedTruth:
    """Plant `per_typology` instances of every rule in PLANTED_RULES, and near-misses, into
    a seeded database; return the truth (not written: see `write_truth`).

    `db` is a `core.db.Database` (one transaction) or a Session (the caller commits).
    The seed window is `[now - days, now)`, or without `now` the span of the
    transactions already there. `settings` are the fraud settings the patterns are
    built for (default: the current app's, else the defaults). `seed_summary`: the
    full SeedSummary of the `db seed` that filled the database (`banktasks db seed
    --json`, as a dict): its own large transactions, structuring and velocity accounts
    join the truth as instances, its near-threshold payments as near-misses (`"source":
    "db seed"`); the rows planted are the same with or without it. Refuses
    (PlantingError) with DATA_MAPPING set, when the database holds no users, or when the
    summary is not one of this database's.
    """
    if per_typology < 1:
        raise PlantingError(f"per_typology={per_typology}: plant at least one of each")
    _refuse_mapped()
    if isinstance(db, Database):
        with db.session() as session:
            return plant_typologies(session, per_typology, seed, now, days, settings, seed_summary)
    session = db
    background = _background(session)
    if not background["users"]:
        raise PlantingError(
            "the database holds no users: plant into seeded data, e.g. "
            "`banktasks db seed --users 2000 --transactions 200000` first"
        )
    since_us, until_us = _window(background, now, days)
    s = _fraud_settings(settings)
    seeded: tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]] | None = None
    if seed_summary is not None:  # read before planting: the seed's rows only
        seeded = _seed_entries(session, s, seed_summary, since_us, until_us)
    planter = _Planter(random.Random(seed), s, since_us, until_us)
    _draw(planter, per_typology)
    user_ids, account_ids, tx_ids = _store(session, planter)
    truth = PlantedTruth(
        seed=seed,
        per_typology=per_typology,
        since=from_micros(since_us).isoformat(),
        until=from_micros(until_us).isoformat(),
        background={
            key: background[key]
            for key in ("users", "accounts", "transactions", "max_account_id", "max_user_id")
        },
        planted={
            "users": len(user_ids),
            "accounts": len(account_ids),
            "transactions": len(tx_ids),
        },
        settings={
            name: str(getattr(s, name))
            for name in sorted(FraudSettings.model_fields)
            if name not in ("rules", "enable_rules", "disable_rules", "schedule")
        },
    )
    ids = iter(tx_ids)
    for number, pattern in enumerate(planter.patterns, start=1):
        rows = pattern.rows
        entry = {
            "id": f"{pattern.rule}-{number}",
            "rule": pattern.rule,
            "variant": pattern.variant,
            "source": PLANTED,
            "user_id": user_ids[pattern.user],
            "account_ids": [account_ids[a] for a in pattern.accounts],
            "transaction_ids": [next(ids) for _ in rows],
            "window": {
                "from": from_micros(min(r.at for r in rows)).isoformat(),
                "until": from_micros(max(r.at for r in rows) + 1).isoformat(),
            },
        }
        (truth.near_misses if pattern.near_miss else truth.instances).append(entry)
    if seeded is not None:
        truth.instances.extend(seeded[0])
        truth.near_misses.extend(seeded[1])
        truth.db_seed = seeded[2]
    return truth


# -- the command ------------------------------------------------------------------------------


def read_seed_summary(stream: IO[str]) -> dict[str, Any]:
    """The SeedSummary JSON `banktasks db seed --json` printed, read from `stream`: the
    whole text, else its last line that is a JSON object (lines logged before it do no
    harm). A usage error (exit status 2) naming the source when there is none."""
    text = stream.read()
    for candidate in (text, *reversed(text.splitlines())):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    name = getattr(stream, "name", "<stdin>")
    raise BadInput(
        f"--seed-summary {name}: no JSON object in it; give what `banktasks db seed "
        "--json` printed (e.g. `banktasks db seed --json > seed.json`)"
    )


@click.command("plant")
@click.option(
    "--per-typology",
    "per_typology",
    required=True,
    type=click.IntRange(1, 10_000),
    help="Instances of every rule to plant (and at least as many near-misses).",
)
@click.option("--seed", "seed_value", default=42, show_default=True, type=int, help="Random seed.")
@click.option(
    "--days",
    default=30,
    show_default=True,
    type=click.IntRange(2),
    help="The seed's days, when the database holds no transactions to date the window by.",
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the truth (default: <BANKTASKS_VAR_DIR>/planted-typologies.json).",
)
@click.option(
    "--seed-summary",
    "seed_summary_file",
    type=click.File("r"),
    help="The summary `banktasks db seed --json` printed for this database (a file, or - "
    "for stdin): the seed's own large transactions, structuring and velocity accounts "
    "join the truth as instances, its near-threshold payments as near-misses.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def plant_command(
    per_typology: int,
    seed_value: int,
    days: int,
    truth_path: Path | None,
    seed_summary_file: IO[str] | None,
    as_json: bool,
) -> None:
    """Plant instances and near-misses of every fraud rule into seeded data (`db seed`)."""
    summary_in = None if seed_summary_file is None else read_seed_summary(seed_summary_file)
    runtime = current()
    try:
        truth = plant_typologies(
            runtime.db, per_typology, seed=seed_value, days=days, seed_summary=summary_in
        )
    except BanktasksError as exc:
        raise click.ClickException(str(exc)) from None
    path = write_truth(truth, truth_path)
    summary = {**truth.summary(), "truth": str(path)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    planted = truth.planted
    own = summary["rules"].values()
    instances, near_misses = (sum(c[key] for c in own) for key in ("instances", "near_misses"))
    click.echo(
        f"planted {instances} instances and {near_misses} near-misses "
        f"({planted['users']} users, {planted['accounts']} accounts, "
        f"{planted['transactions']} transactions) in {truth.since} .. {truth.until}"
    )
    for rule, counts in summary["rules"].items():
        click.echo(
            f"  {rule:21} {counts['instances']:>4} instances {counts['near_misses']:>4} near-misses"
        )
    if truth.db_seed is not None:
        click.echo("and from the seed's summary (db seed's own patterns):")
        for rule, counts in truth.db_seed["rules"].items():
            click.echo(
                f"  {rule:21} {counts['instances']:>4} instances "
                f"{counts['near_misses']:>4} near-misses"
            )
    click.echo(f"truth: {path}  (then: banktasks fraud evaluate)")
