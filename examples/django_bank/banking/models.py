"""Accounts and transactions of the example bank.

Amounts are `Decimal` with two places, in the currency of the row; stored values of
the choice fields are upper-case (`ACTIVE`, `DEPOSIT`, `COMPLETED`, ...). Owners are
Django's own `auth.User`.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class Account(models.Model):
    """A customer's account (table `banking_account`)."""

    class Status(models.TextChoices):
        """Lifecycle of an account."""

        ACTIVE = "ACTIVE", "Active"
        FROZEN = "FROZEN", "Frozen"
        CLOSED = "CLOSED", "Closed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="accounts"
    )
    number = models.CharField(max_length=34, unique=True)
    currency = models.CharField(max_length=3, default="USD")
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    opened_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.number} ({self.currency})"


class Transaction(models.Model):
    """One movement on an account (table `banking_transaction`); `amount` is positive,
    its direction is given by `transaction_type`."""

    class Type(models.TextChoices):
        """What the transaction is."""

        DEPOSIT = "DEPOSIT", "Deposit"
        WITHDRAWAL = "WITHDRAWAL", "Withdrawal"
        TRANSFER = "TRANSFER", "Transfer"
        PAYMENT = "PAYMENT", "Payment"
        FEE = "FEE", "Fee"

    class Status(models.TextChoices):
        """Where the transaction is in its processing."""

        PENDING = "PENDING", "Pending"
        COMPLETED = "COMPLETED", "Completed"
        FAILED = "FAILED", "Failed"
        REVERSED = "REVERSED", "Reversed"

    class Channel(models.TextChoices):
        """How the money moved; null on rows from before channels were recorded."""

        CASH = "CASH", "Cash"
        CARD = "CARD", "Card"
        WIRE = "WIRE", "Wire"
        ACH = "ACH", "ACH"
        BOOK = "BOOK", "Book transfer"  # between two accounts of this bank

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="transactions")
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3, default="USD")
    transaction_type = models.CharField(max_length=16, choices=Type.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETED)
    channel = models.CharField(max_length=16, choices=Channel.choices, null=True, blank=True)
    counterparty = models.CharField(max_length=200, null=True, blank=True)
    description = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "created_at"])]

    def __str__(self) -> str:
        return f"{self.transaction_type} {self.amount} {self.currency} on {self.account_id}"
