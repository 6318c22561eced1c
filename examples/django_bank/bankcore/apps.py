"""App config of the bank's `core` app, whose Python package is now `bankcore`."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bank's `core` app: branches.

    This project's app used to be the package `core`, which clashes with banktasks'
    top-level `core` package (`from core.tasks import ...`) in the same virtualenv. The
    Python package moved to `bankcore`; the app LABEL stays `core`, and Django derives
    table names (`core_branch`), migration history (`django_migrations.app = 'core'`),
    content types and permissions from the label, so the database is unchanged: no
    table is renamed and no migration is re-run.
    """

    name = "bankcore"
    label = "core"  # keep: tables and migrations belong to the label, not the module
    verbose_name = "Bank core"
