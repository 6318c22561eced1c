"""App config of the `banking` app."""

from django.apps import AppConfig


class BankingConfig(AppConfig):
    """Accounts and transactions (tables `banking_account`, `banking_transaction`)."""

    name = "banking"
    verbose_name = "Banking"
