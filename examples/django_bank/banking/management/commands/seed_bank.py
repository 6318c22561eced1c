"""`manage.py seed_bank`: deterministic users, accounts and transactions, written
through the Django ORM, with planted fraud patterns.

Every transaction falls on one UTC day (`--day`, default yesterday). Planted, with
the fraud plugin's default thresholds in mind (FRAUD_LARGE_AMOUNT=10000,
FRAUD_VELOCITY_LIMIT=10 per 60 minutes, structuring band [9000.00, 10000.00)):

- large: a few amounts strictly above 10,000.00, and one of exactly 10,000.00 that
  must NOT be an alert (the rule fires strictly above the threshold);
- velocity: one account with 12 transactions within 30 minutes;
- structuring: one account with 3 deposits of 9,500.00 within 2 hours.

The background cannot raise any alert: its amounts stay at or below 4,500.00, and no
account gets more than 10 background transactions in any 60-minute window. The same
`--seed` gives the same rows (ids included, on an empty database).
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction as db_transaction
from django.db.models import F

from bankcore.models import Branch
from banking.models import Account, Transaction

BATCH_SIZE = 5_000
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US

LARGE_THRESHOLD = Decimal("10000.00")
LARGE_AMOUNTS = (
    (Decimal("10000.01"), Transaction.Type.TRANSFER),
    (Decimal("12500.00"), Transaction.Type.DEPOSIT),
    (Decimal("25000.50"), Transaction.Type.WITHDRAWAL),
    (Decimal("48250.75"), Transaction.Type.PAYMENT),
)
VELOCITY_COUNT = 12  # within 30 minutes: 150 s apart, plus under a minute of jitter
STRUCTURING_AMOUNT = Decimal("9500.00")
STRUCTURING_OFFSETS_US = (0, 50 * MINUTE_US, 100 * MINUTE_US)  # plus < 10 min: within 2 h
PLANTED_COUNT = len(LARGE_AMOUNTS) + 1 + VELOCITY_COUNT + len(STRUCTURING_OFFSETS_US)

BACKGROUND_WINDOW_US = 60 * MINUTE_US
BACKGROUND_MAX_NEIGHBOURS = 9  # so no 60-minute window holds more than 10
BACKGROUND_ATTEMPTS = 500

# (low, high) in cents of the background amounts: all far below the structuring band
AMOUNT_CENTS: dict[str, tuple[int, int]] = {
    Transaction.Type.DEPOSIT: (5_000, 450_000),
    Transaction.Type.WITHDRAWAL: (2_000, 100_000),
    Transaction.Type.TRANSFER: (1_000, 400_000),
    Transaction.Type.PAYMENT: (199, 80_000),
    Transaction.Type.FEE: (50, 3_500),
}
TYPE_WEIGHTS = {
    Transaction.Type.PAYMENT: 40,
    Transaction.Type.DEPOSIT: 20,
    Transaction.Type.TRANSFER: 17,
    Transaction.Type.WITHDRAWAL: 15,
    Transaction.Type.FEE: 8,
}
STATUS_WEIGHTS = {
    Transaction.Status.COMPLETED: 85,
    Transaction.Status.PENDING: 7,
    Transaction.Status.FAILED: 5,
    Transaction.Status.REVERSED: 3,
}

FIRST_NAMES = (
    "Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro",
    "Ines", "Jonas", "Kemi", "Luca", "Maya", "Nikhil", "Olga", "Pablo",
)  # fmt: skip
LAST_NAMES = (
    "Anderson", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
    "Ivanova", "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov",
)  # fmt: skip
EMPLOYERS = ("ACME Payroll", "Globex Corp", "Initech Payroll", "Umbrella Health")
MERCHANTS = ("Corner Grocery", "City Transit", "Bookshop 42", "Cloud Streaming", "Fuel Stop")
FEES = ("Monthly maintenance fee", "Wire transfer fee", "Overdraft fee", "Card replacement fee")
BRANCHES = (("NYC001", "New York Midtown"), ("LON001", "London City"), ("SFO001", "San Francisco"))


def parse_day(value: str) -> date:
    """`--day` as a date (YYYY-MM-DD)."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def iban(country: str, bban: str) -> str:
    """An IBAN with valid check digits (ISO 13616, mod 97) for `bban`."""
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def cents(value: int) -> Decimal:
    """`value` cents as a Decimal with two places."""
    return (Decimal(value) / 100).quantize(Decimal("0.01"))


CHANNELS = {
    Transaction.Type.DEPOSIT: (Transaction.Channel.CASH, Transaction.Channel.ACH),
    Transaction.Type.WITHDRAWAL: (Transaction.Channel.CASH, Transaction.Channel.CARD),
    Transaction.Type.TRANSFER: (Transaction.Channel.WIRE, Transaction.Channel.BOOK),
    Transaction.Type.PAYMENT: (Transaction.Channel.CARD,),
    Transaction.Type.FEE: (Transaction.Channel.BOOK,),
}


def channel_of(transaction_type: str, n: int) -> str:
    """The channel of the n-th row written: from its type, spread by n (no random draw)."""
    choices = CHANNELS[Transaction.Type(transaction_type)]
    return choices[n % len(choices)]


class Command(BaseCommand):
    """Seed an empty database with a deterministic bank (see the module docstring)."""

    help = "Seed an empty database: users, accounts, one day of transactions, planted patterns."

    def add_arguments(self, parser: CommandParser) -> None:
        """--users, --transactions, --seed, --day."""
        parser.add_argument("--users", type=int, default=50, help="users to create (>= 3)")
        parser.add_argument(
            "--transactions",
            type=int,
            default=2000,
            help=f"transactions to create, planted ones included (>= {PLANTED_COUNT})",
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed")
        parser.add_argument(
            "--day", type=parse_day, default=None, help="UTC day YYYY-MM-DD (default: yesterday)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Write everything in one database transaction, then print a JSON summary."""
        users, count, seed = options["users"], options["transactions"], options["seed"]
        day: date = options["day"] or datetime.now(UTC).date() - timedelta(days=1)
        if users < 3:
            raise CommandError("--users must be at least 3 (the planted patterns need 3 accounts)")
        if count < PLANTED_COUNT:
            raise CommandError(
                f"--transactions must be at least {PLANTED_COUNT} (the planted ones)"
            )
        self._refuse_if_not_empty()

        rng = random.Random(seed)
        start = datetime.combine(day, time.min, tzinfo=UTC)
        with db_transaction.atomic():
            Branch.objects.bulk_create(Branch(code=c, name=n) for c, n in BRANCHES)
            user_rows = self._users(rng, users, start)
            accounts = self._accounts(rng, user_rows, start)
            builder = _TransactionBuilder(rng, accounts, start)
            planted = builder.plant()
            builder.background(count - PLANTED_COUNT)
            rows = builder.ordered()
            Transaction.objects.bulk_create(rows, batch_size=BATCH_SIZE)
            # auto_now stamped the seeding time: make the rows deterministic
            Transaction.objects.update(updated_at=F("created_at"))

        summary = {
            "day": day.isoformat(),
            "seed": seed,
            "users": len(user_rows),
            "accounts": len(accounts),
            "transactions": len(rows),
            "branches": len(BRANCHES),
            "planted": {name: _ids(value) for name, value in planted.items()},
        }
        self.stdout.write(json.dumps(summary))

    def _refuse_if_not_empty(self) -> None:
        existing = {
            "users": get_user_model().objects.count(),
            "accounts": Account.objects.count(),
            "transactions": Transaction.objects.count(),
            "branches": Branch.objects.count(),
        }
        if any(existing.values()):
            found = ", ".join(f"{n} {name}" for name, n in existing.items() if n)
            raise CommandError(
                f"the database already holds data ({found}); seed_bank writes into an empty "
                "database only: use a new one, or `manage.py flush` first"
            )

    def _users(self, rng: random.Random, count: int, start: datetime) -> list[Any]:
        user_model = get_user_model()
        rows: list[Any] = []
        for k in range(1, count + 1):
            rows.append(
                user_model(
                    username=f"user{k}",
                    email=f"user{k}@example.com",
                    first_name=rng.choice(FIRST_NAMES),
                    last_name=rng.choice(LAST_NAMES),
                    password="!",  # an unusable password (no random salt: deterministic)
                    is_active=k == 1 or rng.random() >= 0.04,
                    date_joined=start - timedelta(seconds=rng.randrange(30 * 86400, 1000 * 86400)),
                )
            )
        created = user_model.objects.bulk_create(rows, batch_size=BATCH_SIZE)
        return list(created)

    def _accounts(self, rng: random.Random, users: list[Any], start: datetime) -> list[Account]:
        rows: list[Account] = []
        for user in users:
            # the first account of a user is an active USD one; some users have a second
            specs = [("USD", Account.Status.ACTIVE)]
            if rng.random() < 0.4:
                currency = rng.choice(("USD", "USD", "EUR", "GBP"))
                status = rng.choices(list(Account.Status), weights=(80, 12, 8))[0]
                specs.append((currency, status))
            for currency, status in specs:
                serial = len(rows) + 1
                since = int((start - user.date_joined).total_seconds())
                rows.append(
                    Account(
                        owner=user,
                        number=iban("GB", f"BKTS400515{serial:08d}"),
                        currency=currency,
                        balance=cents(rng.randrange(0, 5_000_000)),
                        status=status,
                        opened_at=user.date_joined + timedelta(seconds=rng.randrange(since)),
                    )
                )
        return list(Account.objects.bulk_create(rows, batch_size=BATCH_SIZE))


class _TransactionBuilder:
    """Transactions of one day: planted patterns first, then a background that keeps
    every account under the velocity limit."""

    def __init__(self, rng: random.Random, accounts: list[Account], start: datetime) -> None:
        self.rng = rng
        self.accounts = accounts
        self.start = start
        self.usable = [a for a in accounts if a.status != Account.Status.CLOSED]
        self.times: dict[int, list[int]] = {a.pk: [] for a in accounts}
        self.rows: list[tuple[int, int, Transaction]] = []  # (microsecond of day, seq, row)

    def add(self, account: Account, at_us: int, **fields: Any) -> Transaction:
        """Create one row at `at_us` microseconds into the day."""
        fields.setdefault("channel", channel_of(fields["transaction_type"], len(self.rows)))
        row = Transaction(
            account=account,
            currency=account.currency,
            created_at=self.start + timedelta(microseconds=at_us),
            **fields,
        )
        bisect.insort(self.times[account.pk], at_us)
        self.rows.append((at_us, len(self.rows), row))
        return row

    def plant(self) -> dict[str, Any]:
        """The planted patterns, on distinct active USD accounts."""
        rng = self.rng
        eligible = [
            a for a in self.accounts if a.status == Account.Status.ACTIVE and a.currency == "USD"
        ]
        pool = rng.sample(eligible, k=min(len(eligible), 2 + len(LARGE_AMOUNTS) + 1))
        velocity_account, structuring_account, others = pool[0], pool[1], pool[2:]
        completed = Transaction.Status.COMPLETED

        large = [
            self.add(
                others[i % len(others)],
                rng.randrange(DAY_US),
                amount=amount,
                transaction_type=kind,
                status=completed,
                counterparty="Northwind Holdings",
                description="Large movement",
            )
            for i, (amount, kind) in enumerate(LARGE_AMOUNTS)
        ]
        exact = self.add(
            others[-1],
            rng.randrange(DAY_US),
            amount=LARGE_THRESHOLD,
            transaction_type=Transaction.Type.DEPOSIT,
            status=completed,
            counterparty="Property sale escrow",
            description="Exactly at the threshold: not an alert",
        )

        begin = rng.randrange(HOUR_US, 22 * HOUR_US)
        velocity = [
            self.add(
                velocity_account,
                begin + i * 150_000_000 + rng.randrange(MINUTE_US),
                amount=cents(rng.randrange(500, 20_000)),
                transaction_type=(Transaction.Type.PAYMENT, Transaction.Type.WITHDRAWAL)[i % 2],
                status=completed,
                counterparty=rng.choice(MERCHANTS),
                description="Card payment",
            )
            for i in range(VELOCITY_COUNT)
        ]

        begin = rng.randrange(HOUR_US, 21 * HOUR_US)
        structuring = [
            self.add(
                structuring_account,
                begin + offset + rng.randrange(10 * MINUTE_US),
                amount=STRUCTURING_AMOUNT,
                transaction_type=Transaction.Type.DEPOSIT,
                status=completed,
                counterparty=None,
                description="Cash deposit",
            )
            for offset in STRUCTURING_OFFSETS_US
        ]
        return {
            "large": large,
            "exact_threshold": exact,
            "velocity": (velocity_account, velocity),
            "structuring": (structuring_account, structuring),
        }

    def background(self, count: int) -> None:
        """`count` ordinary rows; the first ones cover every (type, status) pair."""
        rng = self.rng
        pairs = [(t, s) for t in Transaction.Type for s in Transaction.Status]
        types, type_weights = list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values())
        statuses, status_weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
        for i in range(count):
            if i < len(pairs):
                kind, status = pairs[i]
            else:
                kind = rng.choices(types, weights=type_weights)[0]
                status = rng.choices(statuses, weights=status_weights)[0]
            account, at_us = self._slot()
            low, high = AMOUNT_CENTS[kind]
            counterparty, description = self._parties(kind, account)
            self.add(
                account,
                at_us,
                amount=cents(low + int((high - low) * rng.random() ** 2)),
                transaction_type=kind,
                status=status,
                counterparty=counterparty,
                description=description,
            )

    def _slot(self) -> tuple[Account, int]:
        """An account and a time with at most 9 other rows of it within 60 minutes."""
        for _ in range(BACKGROUND_ATTEMPTS):
            account = self.rng.choice(self.usable)
            at_us = self.rng.randrange(DAY_US)
            times = self.times[account.pk]
            near = bisect.bisect_right(times, at_us + BACKGROUND_WINDOW_US) - bisect.bisect_left(
                times, at_us - BACKGROUND_WINDOW_US
            )
            if near <= BACKGROUND_MAX_NEIGHBOURS:
                return account, at_us
        raise CommandError(
            "too many transactions per account to stay under the velocity limit: "
            "use more --users or fewer --transactions"
        )

    def _parties(self, kind: str, account: Account) -> tuple[str | None, str]:
        rng = self.rng
        if kind == Transaction.Type.FEE:
            return None, rng.choice(FEES)
        if rng.random() < 0.05:
            return None, ""
        if kind == Transaction.Type.DEPOSIT:
            employer = rng.choice((*EMPLOYERS, "Cash deposit"))
            return employer, "Cash deposit" if employer == "Cash deposit" else "Salary"
        if kind == Transaction.Type.WITHDRAWAL:
            return f"ATM {rng.randrange(1, 100):04d}", "ATM withdrawal"
        if kind == Transaction.Type.TRANSFER:
            other = rng.choice(self.accounts)
            return other.number, f"Transfer to {other.number}"
        return rng.choice(MERCHANTS), "Card payment"

    def ordered(self) -> list[Transaction]:
        """All rows by time, so that ids grow with created_at."""
        return [row for _, _, row in sorted(self.rows, key=lambda item: item[:2])]


def _ids(value: Any) -> Any:
    """Planted rows as ids for the summary (after bulk_create has set them)."""
    if isinstance(value, Transaction):
        return value.pk
    if isinstance(value, list):
        return [_ids(v) for v in value]
    account, rows = value
    return {"account_id": account.pk, "transaction_ids": _ids(rows)}
