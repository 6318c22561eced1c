"""Core domain models: users, accounts and transactions (SQLAlchemy 2, typed)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, Money, UTCDateTime, utcnow


class TransactionKind(enum.StrEnum):
    """What a transaction does to an account."""

    deposit = "deposit"
    withdrawal = "withdrawal"
    transfer = "transfer"
    payment = "payment"
    fee = "fee"


class TransactionStatus(enum.StrEnum):
    """Where a transaction is in its life."""

    pending = "pending"
    completed = "completed"
    failed = "failed"
    reversed = "reversed"


class TransactionChannel(enum.StrEnum):
    """How the money moved; None where the source does not say (rows written before
    channels, callers that give none)."""

    cash = "cash"
    card = "card"
    wire = "wire"
    ach = "ach"
    internal = "internal"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, validate_strings=True, length=16)


class User(Base):
    """A bank customer."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    accounts: Mapped[list[Account]] = relationship(back_populates="user")


class Account(Base):
    """An account of a user; `balance` is Decimal, stored as exact cents."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    number: Mapped[str] = mapped_column(String(34), unique=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    balance: Mapped[Decimal] = mapped_column("balance_minor", Money, default=Decimal("0.00"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    user: Mapped[User] = relationship(back_populates="accounts")


class Transaction(Base):
    """A money movement on an account; `amount` is a positive Decimal (exact cents)."""

    __tablename__ = "transactions"
    __table_args__ = (
        Index("ix_transactions_account_created", "account_id", "created_at"),
        Index("ix_transactions_created", "created_at"),
        Index("ix_transactions_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[Decimal] = mapped_column("amount_minor", Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    kind: Mapped[TransactionKind] = mapped_column(_enum(TransactionKind, "transaction_kind"))
    status: Mapped[TransactionStatus] = mapped_column(
        _enum(TransactionStatus, "transaction_status"), default=TransactionStatus.completed
    )
    channel: Mapped[TransactionChannel | None] = mapped_column(
        _enum(TransactionChannel, "transaction_channel"), nullable=True, default=None
    )
    counterparty: Mapped[str | None] = mapped_column(String(200), nullable=True)
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship()
