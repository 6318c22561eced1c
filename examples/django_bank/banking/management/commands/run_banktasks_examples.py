"""`manage.py run_banktasks_examples`: send the seed document's three task examples from
the bank's own code, and print their task ids as JSON.

The examples run verbatim from `banking/task_examples.py` (the seed's block keeps only
the reports result in a variable, so the ids of the e-mail and the export are taken
from Celery's `after_task_publish` signal as the tasks are sent). `--wait` then waits
for the three results. banktasks is configured as usual (environment, `.env`,
`BANKTASKS_CONFIG`); unset, BANKTASKS_CONFIG is this project's `banktasks.toml`.
"""

from __future__ import annotations

import json
import os
import runpy
from typing import Any

from celery.signals import after_task_publish
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

EXAMPLES_MODULE = "banking.task_examples"
KEYS = {
    "generate_daily_reports": "reports",
    "send_email_notification": "email",
    "export_transaction_data": "export",
}


def send_seed_examples() -> tuple[dict[str, str], dict[str, Any]]:
    """Run the seed's examples; return {"reports"|"email"|"export": task id} and the
    tasks by the same keys."""
    published: dict[str, str] = {}

    def record(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        function = (sender or "").rsplit(".", 1)[-1]
        if function in KEYS and headers and "id" in headers:
            published.setdefault(KEYS[function], headers["id"])

    after_task_publish.connect(record, weak=False)
    try:
        namespace = runpy.run_module(EXAMPLES_MODULE, run_name=EXAMPLES_MODULE)
    finally:
        after_task_publish.disconnect(record)

    ids = {key: published.get(key) for key in KEYS.values()}
    ids["reports"] = namespace["result"].id  # the one result the seed's block keeps
    missing = sorted(key for key, task_id in ids.items() if not task_id)
    if missing:
        raise CommandError(f"no task id seen for {', '.join(missing)}")
    tasks = {key: namespace[function] for function, key in KEYS.items()}
    return {key: str(task_id) for key, task_id in ids.items()}, tasks


class Command(BaseCommand):
    """Send the seed's task examples through banktasks' `core.tasks`."""

    help = "Send the seed document's task examples (reports, e-mail, export); print the ids."

    def add_arguments(self, parser: CommandParser) -> None:
        """--wait and --timeout."""
        parser.add_argument("--wait", action="store_true", help="wait for the results, print them")
        parser.add_argument(
            "--timeout", type=float, default=120.0, help="seconds to wait for each result"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the ids as one line of JSON; with --wait, the results as a second line."""
        os.environ.setdefault("BANKTASKS_CONFIG", str(settings.BASE_DIR / "banktasks.toml"))
        ids, tasks = send_seed_examples()
        self.stdout.write(json.dumps(ids))
        if options["wait"]:
            results = {
                key: tasks[key].AsyncResult(task_id).get(timeout=options["timeout"])
                for key, task_id in ids.items()
            }
            self.stdout.write(json.dumps(results, default=str))
