"""Deterministic synthetic data with planted fraud patterns (`banktasks db seed`, the demo,
the testing kit's `seed_data`).

Baseline activity stays well clear of the fraud thresholds, so what the rules
find is exactly what was planted: amounts above and just below $10,000,
structuring deposits, bursts of more than ten transactions in an hour and old
pending transactions. Rows are bulk-inserted in stored form (integer cents and
epoch microseconds): a million transactions take seconds, not minutes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Engine, func, select

from core.db import Base, Database, to_micros, utcnow
from core.models import Account, Transaction, User

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
KINDS = ["deposit", "withdrawal", "transfer", "payment", "fee"]
KIND_WEIGHTS = [25, 20, 20, 30, 5]
COUNTERPARTIES = ["ACME Corp", "Grocer & Sons", "City Power", "Rent Ltd", "Coffee Bar", None]
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
BASELINE_MAX_CENTS = 500_000  # $5,000: far below every fraud threshold


@dataclass
class SeedSummary:
    """What `seed` wrote, including exactly which fraud patterns were planted."""

    users: int = 0
    accounts: int = 0
    transactions: int = 0
    since: str = ""
    until: str = ""
    large_transactions: list[int] = field(default_factory=list)
    near_threshold: list[int] = field(default_factory=list)
    structuring_accounts: list[int] = field(default_factory=list)
    velocity_accounts: list[int] = field(default_factory=list)
    old_pending: list[int] = field(default_factory=list)

    def as_dict(self, full: bool = False) -> dict[str, Any]:
        """JSON-safe summary; lists become counts unless `full`."""
        data = asdict(self)
        if not full:
            for key, value in list(data.items()):
                if isinstance(value, list):
                    data[key] = len(value)
        return data


def _insert(engine: Engine, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Bulk insert in stored form: COPY on PostgreSQL, chunked executemany on SQLite."""
    cols = ", ".join(columns)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
        driver: Any = conn.connection.driver_connection
        cursor = driver.cursor()
        iterator = iter(rows)
        while chunk := list(islice(iterator, 50_000)):
            cursor.executemany(sql, chunk)
        cursor.close()


def _fix_sequences(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("users", "accounts", "transactions"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )


def seed(
    db: Database,
    users: int = 100,
    transactions: int = 5000,
    seed_value: int = 42,
    days: int = 30,
    now: datetime | None = None,
) -> SeedSummary:
    """Write `users` users (one or two accounts each) and about `transactions` rows.

    The same arguments (and `now`) always give the same data. Refuses to write into
    a database that already holds users: start from an empty one.
    """
    if users < 1 or transactions < 0 or days < 2:
        raise ValueError("seed needs users >= 1, transactions >= 0 and days >= 2")
    engine = db.engine
    db.create_all()
    with engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(User)).scalar_one()
    if existing:
        raise ValueError(
            f"the database already holds {existing} users; seed an empty database "
            "(banktasks db seed --reset drops and recreates the tables)"
        )
    rng = random.Random(seed_value)
    now = (now or utcnow()).replace(microsecond=0)
    until_us = to_micros(now)
    since_us = until_us - days * DAY_US
    summary = SeedSummary(since=(now - timedelta(days=days)).isoformat(), until=now.isoformat())

    user_rows = []
    for uid in range(1, users + 1):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        active = uid == 1 or rng.random() > 0.02
        created = since_us - rng.randrange(DAY_US * 365)
        user_rows.append((uid, f"user{uid}@example.com", name, active, created))
    _insert(engine, "users", ["id", "email", "full_name", "is_active", "created_at"], user_rows)

    account_rows: list[tuple[int, int, str, str, int, str, int]] = []
    for uid in range(1, users + 1):
        for _ in range(2 if rng.random() < 0.2 else 1):
            aid = len(account_rows) + 1
            number = f"40{aid:010d}"
            balance = rng.randrange(0, 5_000_000)
            account_rows.append((aid, uid, number, "USD", balance, "active", user_rows[uid - 1][4]))
    _insert(
        engine,
        "accounts",
        ["id", "user_id", "number", "currency", "balance_minor", "status", "created_at"],
        account_rows,
    )
    n_accounts = len(account_rows)

    planted: list[tuple[int, int, str, str, int]] = []  # account, cents, kind, status, time

    def plant(account: int, cents: int, kind: str, at: int, status: str = "completed") -> None:
        planted.append((account, cents, kind, status, at))

    def some_time(margin_days: int = 1) -> int:
        return rng.randrange(since_us + margin_days * DAY_US, until_us - margin_days * DAY_US)

    # Boundary pair for the large-amount rule: exactly $10,000.00 is not above it.
    plant(rng.randrange(1, n_accounts + 1), 1_000_000, "transfer", some_time())
    plant(rng.randrange(1, n_accounts + 1), 1_000_001, "transfer", some_time())
    for _ in range(max(3, transactions // 2000)):
        plant(
            rng.randrange(1, n_accounts + 1),
            rng.randrange(1_000_001, 5_000_000),
            "transfer",
            some_time(),
        )
    for _ in range(max(2, transactions // 4000)):  # just below the line, alone: not fraud
        plant(
            rng.randrange(1, n_accounts + 1),
            rng.randrange(900_000, 1_000_000),
            "payment",
            some_time(),
        )
    pool = list(range(1, n_accounts + 1))
    rng.shuffle(pool)
    for _ in range(max(2, transactions // 5000)):  # structuring: deposits just under $10k
        account = pool.pop() if pool else 1
        start = some_time(2)
        for k in range(rng.choice([2, 3])):
            plant(
                account,
                rng.randrange(900_000, 1_000_000),
                "deposit",
                start + k * rng.randrange(HOUR_US, 7 * HOUR_US),
            )
        summary.structuring_accounts.append(account)
    for _ in range(max(2, transactions // 10_000)):  # velocity: 12-15 within 50 minutes
        account = pool.pop() if pool else 1
        start = some_time()
        for _k in range(rng.randrange(12, 16)):
            plant(
                account,
                rng.randrange(100, 20_000),
                "payment",
                start + rng.randrange(50 * 60 * 1_000_000),
            )
        summary.velocity_accounts.append(account)
    for _ in range(max(3, transactions // 3000)):  # pending for days
        plant(
            rng.randrange(1, n_accounts + 1),
            rng.randrange(1_000, 200_000),
            "payment",
            until_us - rng.randrange(2 * DAY_US, 10 * DAY_US),
            "pending",
        )

    quiet = set(summary.velocity_accounts) | set(summary.structuring_accounts)
    rows: list[tuple[int, int, str, str, int]] = []
    for _ in range(max(0, transactions - len(planted))):
        account = rng.randrange(1, n_accounts + 1)
        if account in quiet:
            account = 1 + (account % n_accounts)
        at = rng.randrange(since_us, until_us)
        cents = min(BASELINE_MAX_CENTS, int(rng.lognormvariate(8.5, 1.3)) + 1)
        kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
        roll = rng.random()
        status = "completed"
        if roll < 0.02:
            status = "failed"
        elif roll < 0.03:
            status = "reversed"
        elif roll < 0.05 and until_us - at < 12 * HOUR_US:
            status = "pending"
        rows.append((account, cents, kind, status, at))
    rows.extend(planted)
    rows.sort(key=lambda r: r[4])

    def tx_rows() -> Iterable[tuple]:
        for tid, (account, cents, kind, status, at) in enumerate(rows, start=1):
            if status == "pending" and until_us - at > DAY_US:
                summary.old_pending.append(tid)
            if cents > 1_000_000:
                summary.large_transactions.append(tid)
            elif cents >= 900_000 and kind != "deposit":
                summary.near_threshold.append(tid)
            yield (
                tid,
                account,
                cents,
                "USD",
                kind,
                status,
                channel_of(kind, tid),
                COUNTERPARTIES[tid % len(COUNTERPARTIES)],
                None,
                at,
                at,
            )

    _insert(
        engine,
        "transactions",
        [
            "id",
            "account_id",
            "amount_minor",
            "currency",
            "kind",
            "status",
            "channel",
            "counterparty",
            "description",
            "created_at",
            "updated_at",
        ],
        tx_rows(),
    )
    _fix_sequences(engine)
    summary.users = users
    summary.accounts = n_accounts
    summary.transactions = len(rows)
    return summary


CHANNELS_BY_KIND = {
    "deposit": ("cash", "ach", "ach"),
    "withdrawal": ("cash", "card"),
    "transfer": ("wire", "internal", "internal", "internal"),
    "payment": ("card",),
    "fee": ("internal",),
}


def channel_of(kind: str, transaction_id: int) -> str:
    """The channel of a seeded transaction: from its kind, spread by its id (no random
    draw, so the rest of the data is what the same seed always gave)."""
    choices = CHANNELS_BY_KIND[kind]
    return choices[transaction_id % len(choices)]


def reset(db: Database) -> None:
    """Drop and recreate every table of the shared metadata."""
    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)


__all__ = ["Account", "SeedSummary", "Transaction", "User", "reset", "seed"]
