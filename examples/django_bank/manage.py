#!/usr/bin/env python
"""Django's command-line utility for the example bank (`python manage.py migrate`, …)."""

import os
import sys


def main() -> None:
    """Run a management command with the example bank's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
